#include "proxy/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "capture/escape.h"

static void ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "unknown error";

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, buf);
}

bool proxy_tls_is_ip(const char *text)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, text, buf) == 1 || inet_pton(AF_INET6, text, buf) == 1;
}

static void common_options(SSL_CTX *ctx)
{
	/* idle sessions keep no record buffers; writes may be partial and
	 * come from a buffer that moves between calls (evbuffer chains) */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* many IMAP peers close without close_notify after LOGOUT: an EOF */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* one read(2) for several records instead of two per record */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
}

SSL_CTX *proxy_tls_upstream_ctx(const char *extra_ca, bool insecure, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		ssl_error(err, errlen, "cannot set up TLS");
		return NULL;
	}
	common_options(ctx);
	if (insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error(); /* no system store is not fatal with --upstream-ca */
	if (extra_ca != NULL && SSL_CTX_load_verify_locations(ctx, extra_ca, NULL) != 1) {
		ssl_error(err, errlen, extra_ca);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL *proxy_tls_upstream_ssl(SSL_CTX *ctx, const char *sni, const char *verify_name, bool insecure)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	if (sni != NULL && sni[0] != '\0' && !proxy_tls_is_ip(sni))
		SSL_set_tlsext_host_name(ssl, sni);
	if (!insecure && verify_name != NULL) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);

		if (proxy_tls_is_ip(verify_name))
			X509_VERIFY_PARAM_set1_ip_asc(param, verify_name);
		else
			X509_VERIFY_PARAM_set1_host(param, verify_name, 0);
	}
	return ssl;
}

/* Pauses every handshake once at the ClientHello, so the proxy can learn
 * the SNI, reach the upstream and forge a certificate before answering. */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	(void)arg;
	/* the owner marks the SSL with app data once it may go on */
	return SSL_get_app_data(ssl) != NULL ? SSL_CLIENT_HELLO_SUCCESS : SSL_CLIENT_HELLO_RETRY;
}

SSL_CTX *proxy_tls_client_ctx(const char *cert_file, const char *key_file, char *err,
			      size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		ssl_error(err, errlen, "cannot set up TLS");
		return NULL;
	}
	common_options(ctx);
	if (cert_file != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
			ssl_error(err, errlen, cert_file);
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			ssl_error(err, errlen, key_file);
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
	/* no server-side session cache: it would keep every client's session
	 * for its lifetime (up to 20480 of them) after the connection is gone;
	 * stateless tickets still let clients resume */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

void proxy_tls_hello_sni(SSL *ssl, char *out, size_t size)
{
	const unsigned char *p;
	size_t len, list, name;

	out[0] = '\0';
	/* server_name extension (RFC 6066 section 3): list length, then
	 * entries of type, length, name; the first host_name wins */
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
		return;
	list = ((size_t)p[0] << 8) | p[1];
	if (list + 2 > len || p[2] != TLSEXT_NAMETYPE_host_name)
		return;
	name = ((size_t)p[3] << 8) | p[4];
	if (name + 5 > len || name == 0 || name >= size)
		return;
	memcpy(out, p + 5, name);
	out[name] = '\0';
	for (size_t i = 0; i < name; i++)
		if ((unsigned char)out[i] <= 0x20 || (unsigned char)out[i] >= 0x7f) {
			out[0] = '\0'; /* not a host name: ignore it */
			return;
		}
}

static void add_name(char **names, size_t *n, size_t max, const char *name)
{
	if (*n >= max || name == NULL || name[0] == '\0')
		return;
	for (size_t i = 0; i < *n; i++)
		if (strcmp(names[i], name) == 0)
			return;
	names[*n] = strdup(name);
	if (names[*n] != NULL)
		(*n)++;
}

/* A name from the certificate as text: bytes outside printable ASCII (a
 * NUL, an escape, UTF-8) as \xNN, and a cut name ends in "...", so what
 * was not a host name never becomes one. */
static void add_asn1_name(char **names, size_t *n, size_t max, const unsigned char *s, int len)
{
	char text[4 * 256 + 4];
	size_t shown = len < 256 ? (size_t)len : 256;

	if (len <= 0)
		return;
	capture_escape(text, 4 * 256 + 1, s, shown, 0, NULL);
	if (shown < (size_t)len)
		strcat(text, "...");
	add_name(names, n, max, text);
}

size_t proxy_tls_peer_names(SSL *ssl, char **names, size_t max)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	const X509_NAME *subject;
	GENERAL_NAMES *sans;
	size_t n = 0;

	if (cert == NULL)
		return 0;
	subject = X509_get_subject_name(cert);
	for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
	     i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
		const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
		unsigned char *utf8 = NULL;
		int len = ASN1_STRING_to_UTF8(&utf8, cn);

		if (len < 0)
			ERR_clear_error();
		add_asn1_name(names, &n, max, utf8, len);
		OPENSSL_free(utf8);
	}
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		char buf[INET6_ADDRSTRLEN];

		if (gn->type == GEN_DNS) {
			add_asn1_name(names, &n, max, ASN1_STRING_get0_data(gn->d.dNSName),
				      ASN1_STRING_length(gn->d.dNSName));
		} else if (gn->type == GEN_IPADD) {
			int len = ASN1_STRING_length(gn->d.iPAddress);
			const unsigned char *ip = ASN1_STRING_get0_data(gn->d.iPAddress);

			if ((len == 4 && inet_ntop(AF_INET, ip, buf, sizeof(buf))) ||
			    (len == 16 && inet_ntop(AF_INET6, ip, buf, sizeof(buf))))
				add_name(names, &n, max, buf);
		}
	}
	GENERAL_NAMES_free(sans);
	return n;
}

void proxy_tls_peer_summary(SSL *ssl, char *out, size_t size)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	char subject[256], issuer[256];

	out[0] = '\0';
	/* after a failed verification only the chain as sent is left */
	if (cert == NULL && chain != NULL && sk_X509_num(chain) > 0)
		cert = sk_X509_value(chain, 0);
	if (cert == NULL)
		return;
	X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
	X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof(issuer));
	snprintf(out, size, "subject %s, issuer %s", subject, issuer);
}
