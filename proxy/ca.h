/* The interception CA: a certificate authority kept in a directory
 * (ca.crt, ca.key) that signs leaf certificates made on the fly for the
 * names a client expects. All crypto is OpenSSL's. */
#ifndef PROXY_CA_H
#define PROXY_CA_H

#include <stdbool.h>
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

/* The load made the CA: the directory held none. */
bool proxy_ca_created(const struct proxy_ca *ca);

/* Path of the CA certificate, for messages telling users what to trust. */
const char *proxy_ca_cert_path(const struct proxy_ca *ca);

/* What a name is to a forged certificate. */
enum proxy_ca_name {
	PROXY_CA_NAME_BAD,      /* neither a host name nor an address: left out */
	PROXY_CA_NAME_DNS,      /* a host name: RFC 1123 labels, no trailing dot */
	PROXY_CA_NAME_WILDCARD, /* "*." and a host name of two labels or more */
	PROXY_CA_NAME_IP,       /* an IPv4 or IPv6 address (inet_pton) */
};

/* Classifies name; for a BAD one, why_r (may be NULL) gets why, in words. */
enum proxy_ca_name proxy_ca_name_check(const char *name, const char **why_r);

/* A leaf certificate signed by the CA for the names of names[0..count)
 * that proxy_ca_name_check accepts, one subjectAltName entry each (DNS
 * name or IP address, built as ASN.1, never parsed from text); the first
 * of them of at most 64 bytes is the subject CN. Names it does not accept
 * are left out, and notice (notice_size > 0) says which and why, every
 * name made printable; "" when none was. Cached per accepted name set for
 * the life of the CA; the caller owns a reference (X509_free). Safe from
 * several threads. Returns NULL
 * with err when no name is left or OpenSSL fails. */
X509 *proxy_ca_forge(struct proxy_ca *ca, const char *const *names, size_t count, char *notice,
		     size_t notice_size, char *err, size_t errlen);
EVP_PKEY *proxy_ca_leaf_key(const struct proxy_ca *ca);

#endif
