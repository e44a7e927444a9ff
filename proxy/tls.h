/* OpenSSL contexts for the two TLS legs and what the timeline says about
 * a finished handshake. */
#ifndef PROXY_TLS_H
#define PROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* Client context for the upstream leg: verifies against the system trust
 * store plus extra_ca (a PEM file, may be NULL), unless insecure. */
SSL_CTX *proxy_tls_upstream_ctx(const char *extra_ca, bool insecure, char *err, size_t errlen);

/* An SSL for one upstream connection: SNI (never an IP address) and the
 * name or IP address the certificate must carry. */
SSL *proxy_tls_upstream_ssl(SSL_CTX *ctx, const char *sni, const char *verify_name, bool insecure);

/* Server context for the client leg. With cert_file and key_file it serves
 * that certificate. Every handshake pauses at the ClientHello until the SSL
 * has app data set (SSL_set_app_data), so the proxy can learn the SNI,
 * reach the upstream and, without a fixed certificate, forge one for the
 * names the client expects. */
SSL_CTX *proxy_tls_client_ctx(const char *cert_file, const char *key_file, char *err,
			      size_t errlen);

/* The server name a paused ClientHello asks for; "" when none. */
void proxy_tls_hello_sni(SSL *ssl, char *out, size_t size);

/* Every subject CN and DNS/IP SAN of the peer's certificate, as strings
 * the caller frees: as sent, except bytes outside printable ASCII shown
 * as \xNN and names over 256 bytes cut (then ending in "..."), so a name
 * is a host name only when the original was. Whether one may go into a
 * certificate is proxy_ca_name_check's to say. Returns how many were
 * written to names. */
size_t proxy_tls_peer_names(SSL *ssl, char **names, size_t max);

/* Subject and issuer of the peer certificate, "" when none. */
void proxy_tls_peer_summary(SSL *ssl, char *out, size_t size);

/* True when text is an IPv4 or IPv6 address. */
bool proxy_tls_is_ip(const char *text);

#endif
