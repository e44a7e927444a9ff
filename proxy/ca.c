#include "proxy/ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
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

#include "capture/escape.h"

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
	pthread_mutex_t cache_lock; /* the loops of --workers forge side by side */
	struct forged cache[CACHE_MAX];
	size_t cached;
	bool created; /* made by this load: the directory held no CA */
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

/* Every extension is an ASN.1 structure handed to OpenSSL, never an
 * X509V3 configuration string: no text is parsed into a certificate. */
static int add_basic_constraints(X509 *x, bool ca)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	int ok = 0;

	if (bc == NULL)
		return 0;
	bc->ca = ca ? 0xff : 0;
	if (ca) {
		bc->pathlen = ASN1_INTEGER_new();
		if (bc->pathlen == NULL || !ASN1_INTEGER_set(bc->pathlen, 0))
			goto out;
	}
	ok = X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1;
out:
	BASIC_CONSTRAINTS_free(bc);
	return ok;
}

/* bits: key usage bit numbers (RFC 5280 section 4.2.1.3), ending with -1 */
static int add_key_usage(X509 *x, const int *bits)
{
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	int ok = ku != NULL;

	for (size_t i = 0; ok && bits[i] >= 0; i++)
		ok = ASN1_BIT_STRING_set_bit(ku, bits[i], 1);
	ok = ok && X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1;
	ASN1_BIT_STRING_free(ku);
	return ok;
}

static int add_server_auth(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	int ok = eku != NULL && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0 &&
		 X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) == 1;

	sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj's objects are static */
	return ok;
}

/* The key identifier of RFC 5280 section 4.2.1.2, method 1: the SHA-1 of
 * the public key bits. */
static ASN1_OCTET_STRING *key_id(const X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	ASN1_OCTET_STRING *id;

	if (!X509_pubkey_digest(x, EVP_sha1(), md, &len))
		return NULL;
	id = ASN1_OCTET_STRING_new();
	if (id != NULL && !ASN1_OCTET_STRING_set(id, md, (int)len)) {
		ASN1_OCTET_STRING_free(id);
		return NULL;
	}
	return id;
}

static int add_subject_key_id(X509 *x)
{
	ASN1_OCTET_STRING *id = key_id(x);
	int ok = id != NULL &&
		 X509_add1_ext_i2d(x, NID_subject_key_identifier, id, 0, X509V3_ADD_DEFAULT) == 1;

	ASN1_OCTET_STRING_free(id);
	return ok;
}

/* The issuer's own subject key identifier, or one computed the same way
 * when its certificate has none. */
static int add_authority_key_id(X509 *x, const X509 *issuer)
{
	const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id((X509 *)issuer);
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	int ok = 0;

	if (akid == NULL)
		return 0;
	akid->keyid = skid != NULL ? ASN1_OCTET_STRING_dup(skid) : key_id(issuer);
	ok = akid->keyid != NULL &&
	     X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1;
	AUTHORITY_KEYID_free(akid);
	return ok;
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
	static const int ca_usage[] = {5 /* keyCertSign */, 6 /* cRLSign */, -1};
	X509 *x = X509_new();
	X509_NAME *name;
	char cn[65], stamp[32], host[256] = "localhost";
	int room;

	if (x == NULL)
		return NULL;
	gethostname(host, sizeof(host) - 1);
	/* a CN holds at most 64 bytes: a long host name is cut to fit (an
	 * EC2 name alone is 40) */
	snprintf(stamp, sizeof(stamp), ", %ld)", (long)time(NULL));
	room = 64 - (int)strlen("imaptap interception CA (") - (int)strlen(stamp);
	snprintf(cn, sizeof(cn), "imaptap interception CA (%.*s%s", room > 0 ? room : 0, host, stamp);
	name = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) || !set_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)CA_DAYS * 86400) ||
	    !X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_ASC,
					(const unsigned char *)"imaptap", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key) ||
	    !add_basic_constraints(x, true) || !add_key_usage(x, ca_usage) ||
	    !add_subject_key_id(x) ||
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
	pthread_mutex_init(&ca->cache_lock, NULL);
	if (path_in(key_path, sizeof(key_path), dir, "ca.key") < 0 ||
	    path_in(ca->cert_path, sizeof(ca->cert_path), dir, "ca.crt") < 0) {
		snprintf(err, errlen, "the directory name '%s' is too long", dir);
		goto fail;
	}
	if (access(key_path, F_OK) < 0 && access(ca->cert_path, F_OK) < 0) {
		if (proxy_ca_init(dir, err, errlen) < 0)
			goto fail;
		ca->created = true;
	}
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
	pthread_mutex_destroy(&c->cache_lock);
	free(c);
	*ca = NULL;
}

bool proxy_ca_created(const struct proxy_ca *ca)
{
	return ca->created;
}

const char *proxy_ca_cert_path(const struct proxy_ca *ca)
{
	return ca->cert_path;
}

EVP_PKEY *proxy_ca_leaf_key(const struct proxy_ca *ca)
{
	return ca->leaf_key;
}

/* Why name is not a host name, or NULL when it is one: RFC 1123 labels of
 * letters, digits and inner hyphens, 1 to 63 bytes each, 253 in all, no
 * trailing dot, and a last label that is not all digits (RFC 3696 section
 * 2), so it never passes for an address. */
static const char *host_name_problem(const char *name)
{
	size_t len = strlen(name), label = 0;
	bool digits_only = true;

	if (len == 0)
		return "empty";
	if (len > 253)
		return "longer than 253 bytes";
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '.' || c == '\0') {
			if (label == 0)
				return c == '\0' ? "ends with a dot" : "an empty label";
			if (name[i - 1] == '-')
				return "a label ending with a hyphen";
			if (c == '\0' && digits_only)
				return "an all-numeric last label, but not an IP address";
			label = 0;
			digits_only = true;
			continue;
		}
		if (c == '*')
			return "a '*' that is not the whole first label";
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return "a byte other than a letter, digit, hyphen or dot";
		if (c == '-' && label == 0)
			return "a label starting with a hyphen";
		if (c < '0' || c > '9')
			digits_only = false;
		if (++label > 63)
			return "a label longer than 63 bytes";
	}
	return NULL;
}

enum proxy_ca_name proxy_ca_name_check(const char *name, const char **why_r)
{
	unsigned char ip[16];
	const char *why;

	if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
		return PROXY_CA_NAME_IP;
	if (name[0] == '*' && name[1] == '.') {
		why = host_name_problem(name + 2);
		if (why == NULL && strchr(name + 2, '.') == NULL)
			why = "a wildcard over a single label";
		if (why == NULL)
			return PROXY_CA_NAME_WILDCARD;
	} else {
		why = host_name_problem(name);
		if (why == NULL)
			return PROXY_CA_NAME_DNS;
	}
	if (why_r != NULL)
		*why_r = why;
	return PROXY_CA_NAME_BAD;
}

/* One GENERAL_NAME for an accepted name: a dNSName (IA5String) or an
 * iPAddress of 4 or 16 bytes. */
static GENERAL_NAME *general_name(const char *name)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	unsigned char ip[16];
	int iplen = inet_pton(AF_INET, name, ip) == 1    ? 4
		    : inet_pton(AF_INET6, name, ip) == 1 ? 16
							 : 0;

	if (gn == NULL)
		return NULL;
	if (iplen > 0) {
		ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

		if (os == NULL || !ASN1_OCTET_STRING_set(os, ip, iplen)) {
			ASN1_OCTET_STRING_free(os);
			GENERAL_NAME_free(gn);
			return NULL;
		}
		GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
	} else {
		ASN1_IA5STRING *dns = ASN1_IA5STRING_new();

		if (dns == NULL || !ASN1_STRING_set(dns, name, (int)strlen(name))) {
			ASN1_IA5STRING_free(dns);
			GENERAL_NAME_free(gn);
			return NULL;
		}
		GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
	}
	return gn;
}

/* critical: RFC 5280 section 4.2.1.6 wants it so when the subject is empty */
static int add_subject_alt_names(X509 *x, const char *const *names, size_t count, bool critical)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	int ok = gens != NULL;

	for (size_t i = 0; ok && i < count; i++) {
		GENERAL_NAME *gn = general_name(names[i]);

		ok = gn != NULL && sk_GENERAL_NAME_push(gens, gn) > 0;
		if (!ok)
			GENERAL_NAME_free(gn);
	}
	ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical ? 1 : 0,
				     X509V3_ADD_DEFAULT) == 1;
	GENERAL_NAMES_free(gens);
	return ok;
}

/* names are accepted ones, count > 0 */
static X509 *make_leaf(struct proxy_ca *ca, const char *const *names, size_t count)
{
	static const int leaf_usage[] = {0 /* digitalSignature */, -1};
	X509 *x = X509_new();
	X509_NAME *subject;
	const char *cn = NULL;

	if (x == NULL)
		return NULL;
	/* a CN holds at most 64 bytes (RFC 5280 ub-common-name): a longer
	 * name is in the subjectAltName only */
	for (size_t i = 0; i < count && cn == NULL; i++)
		if (strlen(names[i]) <= 64)
			cn = names[i];
	subject = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) || !set_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)LEAF_DAYS * 86400) ||
	    (cn != NULL && !X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
						       (const unsigned char *)cn, (int)strlen(cn),
						       -1, 0)) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    !X509_set_pubkey(x, ca->leaf_key) || !add_basic_constraints(x, false) ||
	    !add_key_usage(x, leaf_usage) || !add_server_auth(x) ||
	    !add_authority_key_id(x, ca->cert) ||
	    !add_subject_alt_names(x, names, count, cn == NULL) ||
	    !X509_sign(x, ca->key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Appends "'NAME' (why)" to the notice, the name printable and cut. */
static void note_left_out(char *notice, size_t size, const char *name, const char *why)
{
	static const char head[] = "left out of the forged certificate (not a host name or IP "
				   "address): ";
	char shown[4 * 96 + 1];
	size_t len = strlen(name), used = strlen(notice);

	if (size == 0)
		return;
	capture_escape(shown, sizeof(shown), (const uint8_t *)name, len < 96 ? len : 96, 0, NULL);
	snprintf(notice + used, size - used, "%s'%s%s' (%s)", used == 0 ? head : ", ", shown,
		 len > 96 ? "..." : "", why);
}

static X509 *forge_cached(struct proxy_ca *ca, const char *const *names, size_t count,
			  char *notice, size_t notice_size, char *err, size_t errlen)
{
	const char **kept;
	size_t n = 0, len = 1;
	char *key;
	X509 *cert;

	if (notice_size > 0)
		notice[0] = '\0';
	kept = calloc(count + 1, sizeof(*kept));
	if (kept == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < count; i++) {
		const char *why = NULL;
		bool seen = false;

		if (proxy_ca_name_check(names[i], &why) == PROXY_CA_NAME_BAD) {
			note_left_out(notice, notice_size, names[i], why);
			continue;
		}
		for (size_t j = 0; j < n && !seen; j++)
			seen = strcmp(kept[j], names[i]) == 0;
		if (!seen) {
			kept[n++] = names[i];
			len += strlen(names[i]) + 1;
		}
	}
	if (n == 0) {
		snprintf(err, errlen, count == 0 ? "no name to put in the certificate"
						 : "no name a certificate can carry");
		free(kept);
		return NULL;
	}
	/* accepted names hold no "\n": the key is unambiguous */
	key = malloc(len);
	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		free(kept);
		return NULL;
	}
	key[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(key, kept[i]);
		strcat(key, "\n");
	}
	for (size_t i = 0; i < ca->cached; i++) {
		if (strcmp(ca->cache[i].key, key) == 0) {
			free(key);
			free(kept);
			return ca->cache[i].cert;
		}
	}
	cert = make_leaf(ca, kept, n);
	free(kept);
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

X509 *proxy_ca_forge(struct proxy_ca *ca, const char *const *names, size_t count, char *notice,
		     size_t notice_size, char *err, size_t errlen)
{
	X509 *cert;

	pthread_mutex_lock(&ca->cache_lock);
	cert = forge_cached(ca, names, count, notice, notice_size, err, errlen);
	/* the cache may forget it while another loop forges: the caller's own */
	if (cert != NULL && X509_up_ref(cert) != 1) {
		snprintf(err, errlen, "out of memory");
		cert = NULL;
	}
	pthread_mutex_unlock(&ca->cache_lock);
	return cert;
}
