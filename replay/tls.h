/* OpenSSL contexts of the replay harness: the certificate shown to a
 * client under test, and the client side toward a live server. Records
 * are written as the replay cuts them (--segment), so neither context
 * reads ahead or merges writes. */
#ifndef REPLAY_TLS_H
#define REPLAY_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* A server context showing the PEM certificate chain in cert_file with
 * the key in key_file. NULL with err saying why. */
SSL_CTX *replay_tls_server_files(const char *cert_file, const char *key_file, char *err,
				 size_t errlen);

/* A server context showing leaf with key (a certificate forged for the
 * test, proxy/ca.h). NULL with err saying why. */
SSL_CTX *replay_tls_server_leaf(X509 *leaf, EVP_PKEY *key, char *err, size_t errlen);

/* A client context verifying the server against the system's trust store
 * and extra_ca (a PEM file, or NULL), or not at all when insecure. NULL
 * with err saying why. */
SSL_CTX *replay_tls_client(const char *extra_ca, bool insecure, char *err, size_t errlen);

#endif
