/* The interception CA: a certificate authority kept in a directory
 * (ca.crt, ca.key) that signs leaf certificates made on the fly for the
 * names a client expects. All crypto is OpenSSL's. */
#ifndef PROXY_CA_H
#define PROXY_CA_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

struct proxy_ca;

/* Writes DIR/ca.crt and DIR/ca.key (mode 0600), creating DIR (0700) when
 * missing. Refuses to overwrite an existing key. Returns 0, or -1 with err. */
int proxy_ca_init(const char *dir, char *err, size_t errlen);

/* Loads DIR/ca.crt and DIR/ca.key, creating them first when both are
 * missing. Refuses a key readable by group or others. Generates the one
 * leaf key (EC P-256) every forged certificate uses. */
struct proxy_ca *proxy_ca_load(const char *dir, char *err, size_t errlen);
void proxy_ca_free(struct proxy_ca **ca);

/* Path of the CA certificate, for messages telling users what to trust. */
const char *proxy_ca_cert_path(const struct proxy_ca *ca);

/* A leaf certificate for names[0..count) (DNS names or IP addresses; the
 * first becomes the subject CN), signed by the CA. Cached per name set for
 * the life of the CA. The caller does not own the result. */
X509 *proxy_ca_forge(struct proxy_ca *ca, const char *const *names, size_t count, char *err,
		     size_t errlen);
EVP_PKEY *proxy_ca_leaf_key(const struct proxy_ca *ca);

#endif
