#include "replay/tls.h"

#include <stdio.h>

#include <openssl/err.h>

static void common_options(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

static const char *openssl_reason(void)
{
	const char *why = ERR_reason_error_string(ERR_get_error());

	ERR_clear_error();
	return why != NULL ? why : "unknown error";
}

SSL_CTX *replay_tls_server_files(const char *cert_file, const char *key_file, char *err,
				 size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot set up TLS: %s", openssl_reason());
		return NULL;
	}
	common_options(ctx);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "cannot use --cert %s --key %s: %s", cert_file, key_file,
			 openssl_reason());
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL_CTX *replay_tls_server_leaf(X509 *leaf, EVP_PKEY *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot set up TLS: %s", openssl_reason());
		return NULL;
	}
	common_options(ctx);
	if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		snprintf(err, errlen, "OpenSSL refused it");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL_CTX *replay_tls_client(const char *extra_ca, bool insecure, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot set up TLS: %s", openssl_reason());
		return NULL;
	}
	common_options(ctx);
	if (insecure)
		return ctx;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_default_verify_paths(ctx);
	if (extra_ca != NULL && SSL_CTX_load_verify_locations(ctx, extra_ca, NULL) != 1) {
		snprintf(err, errlen, "--upstream-ca %s: cannot load it as PEM certificates", extra_ca);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
