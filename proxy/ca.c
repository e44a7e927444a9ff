#include "proxy/ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define CA_DAYS 3650
#define LEAF_DAYS 397 /* what browsers and most clients accept at most */
#define CACHE_MAX 1024

struct forged {
	char *key; /* the names, joined by "\n" */
	X509 *cert;
};

struct proxy_ca {
	char cert_path[4096];
	X509 *cert;
	EVP_PKEY *key;
	EVP_PKEY *leaf_key;
	struct forged cache[CACHE_MAX];
	size_t cached;
};

/* Appends OpenSSL's error queue to a message. */
static void ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "unknown error";

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, buf);
}

static int set_serial(X509 *x)
{
	unsigned char bytes[8];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		return 0;
	bytes[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
	ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok;
}

static int add_ext(X509 *subject, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return 0;
	ok = X509_add_ext(subject, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
	X509 *x = X509_new();
	X509_NAME *name;
	char cn[128], host[64] = "localhost";

	if (x == NULL)
		return NULL;
	gethostname(host, sizeof(host) - 1);
	snprintf(cn, sizeof(cn), "imaptap interception CA (%s, %ld)", host, (long)time(NULL));
	name = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) || !set_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)CA_DAYS * 86400) ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"imaptap", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key) ||
	    !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
	    !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    !add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    !X509_sign(x, key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static int path_in(char *out, size_t size, const char *dir, const char *file)
{
	return snprintf(out, size, "%s/%s", dir, file) < (int)size ? 0 : -1;
}

int proxy_ca_init(const char *dir, char *err, size_t errlen)
{
	char key_path[4096], cert_path[4096];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	FILE *f = NULL;
	int fd, rc = -1;

	if (path_in(key_path, sizeof(key_path), dir, "ca.key") < 0 ||
	    path_in(cert_path, sizeof(cert_path), dir, "ca.crt") < 0) {
		snprintf(err, errlen, "the directory name '%s' is too long", dir);
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (access(key_path, F_OK) == 0) {
		snprintf(err, errlen, "%s exists already; remove it (and ca.crt) to make a new CA", key_path);
		return -1;
	}
	key = EVP_EC_gen("P-256");
	cert = key ? make_ca_cert(key) : NULL;
	if (cert == NULL) {
		ssl_error(err, errlen, "cannot make the CA certificate");
		goto out;
	}
	fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) || fclose(f) != 0) {
		f = NULL;
		snprintf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
		unlink(key_path);
		goto out;
	}
	f = fopen(cert_path, "w");
	if (f == NULL || !PEM_write_X509(f, cert) || fclose(f) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", cert_path, strerror(errno));
		f = NULL;
		unlink(key_path);
		goto out;
	}
	f = NULL;
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

struct proxy_ca *proxy_ca_load(const char *dir, char *err, size_t errlen)
{
	char key_path[4096];
	struct proxy_ca *ca;
	struct stat st;
	FILE *f;

	ca = calloc(1, sizeof(*ca));
	if (ca == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (path_in(key_path, sizeof(key_path), dir, "ca.key") < 0 ||
	    path_in(ca->cert_path, sizeof(ca->cert_path), dir, "ca.crt") < 0) {
		snprintf(err, errlen, "the directory name '%s' is too long", dir);
		goto fail;
	}
	if (access(key_path, F_OK) < 0 && access(ca->cert_path, F_OK) < 0 &&
	    proxy_ca_init(dir, err, errlen) < 0)
		goto fail;
	if (stat(key_path, &st) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", key_path, strerror(errno));
		goto fail;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "%s is readable by group or others (mode %03o); a CA key must be private: "
			 "chmod 600 %s",
			 key_path, (unsigned)(st.st_mode & 0777), key_path);
		goto fail;
	}
	f = fopen(key_path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cannot read %s: %s", key_path, strerror(errno));
		goto fail;
	}
	ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (ca->key == NULL) {
		ssl_error(err, errlen, key_path);
		goto fail;
	}
	f = fopen(ca->cert_path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cannot read %s: %s", ca->cert_path, strerror(errno));
		goto fail;
	}
	ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (ca->cert == NULL) {
		ssl_error(err, errlen, ca->cert_path);
		goto fail;
	}
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "%s and %s do not belong together", ca->cert_path, key_path);
		goto fail;
	}
	ca->leaf_key = EVP_EC_gen("P-256");
	if (ca->leaf_key == NULL) {
		ssl_error(err, errlen, "cannot generate the leaf key");
		goto fail;
	}
	return ca;
fail:
	proxy_ca_free(&ca);
	return NULL;
}

void proxy_ca_free(struct proxy_ca **ca)
{
	struct proxy_ca *c = *ca;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->cached; i++) {
		free(c->cache[i].key);
		X509_free(c->cache[i].cert);
	}
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
	EVP_PKEY_free(c->leaf_key);
	free(c);
	*ca = NULL;
}

const char *proxy_ca_cert_path(const struct proxy_ca *ca)
{
	return ca->cert_path;
}

EVP_PKEY *proxy_ca_leaf_key(const struct proxy_ca *ca)
{
	return ca->leaf_key;
}

static int is_ip(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static X509 *make_leaf(struct proxy_ca *ca, const char *const *names, size_t count)
{
	X509 *x = X509_new();
	X509_NAME *name;
	char san[8192];
	size_t used = 0;
	char cn[65];

	if (x == NULL)
		return NULL;
	snprintf(cn, sizeof(cn), "%s", names[0]);
	san[0] = '\0';
	for (size_t i = 0; i < count; i++) {
		int n = snprintf(san + used, sizeof(san) - used, "%s%s:%s", used ? "," : "",
				 is_ip(names[i]) ? "IP" : "DNS", names[i]);

		if (n < 0 || (size_t)n >= sizeof(san) - used)
			break;
		used += (size_t)n;
	}
	name = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) || !set_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)LEAF_DAYS * 86400) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    !X509_set_pubkey(x, ca->leaf_key) ||
	    !add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") ||
	    !add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") ||
	    !add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") ||
	    (used > 0 && !add_ext(x, ca->cert, NID_subject_alt_name, san)) ||
	    !X509_sign(x, ca->key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

X509 *proxy_ca_forge(struct proxy_ca *ca, const char *const *names, size_t count, char *err,
		     size_t errlen)
{
	size_t len = 1;
	char *key;
	X509 *cert;

	if (count == 0) {
		snprintf(err, errlen, "no name to put in the certificate");
		return NULL;
	}
	for (size_t i = 0; i < count; i++)
		len += strlen(names[i]) + 1;
	key = malloc(len);
	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	key[0] = '\0';
	for (size_t i = 0; i < count; i++) {
		strcat(key, names[i]);
		strcat(key, "\n");
	}
	for (size_t i = 0; i < ca->cached; i++) {
		if (strcmp(ca->cache[i].key, key) == 0) {
			free(key);
			return ca->cache[i].cert;
		}
	}
	cert = make_leaf(ca, names, count);
	if (cert == NULL) {
		ssl_error(err, errlen, "cannot make a certificate");
		free(key);
		return NULL;
	}
	if (ca->cached == CACHE_MAX) {
		/* a full cache forgets its oldest entry */
		free(ca->cache[0].key);
		X509_free(ca->cache[0].cert);
		memmove(&ca->cache[0], &ca->cache[1], (CACHE_MAX - 1) * sizeof(ca->cache[0]));
		ca->cached--;
	}
	ca->cache[ca->cached].key = key;
	ca->cache[ca->cached].cert = cert;
	ca->cached++;
	return cert;
}
