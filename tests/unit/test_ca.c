/* The interception CA: files and modes, refusals, forged leaves that
 * verify against the CA with hostname checking, and hostile names (commas,
 * escapes, oversize) that never add a subjectAltName entry of their own. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "capture/escape.h"
#include "check.h"
#include "proxy/ca.h"

static char dir[256];

static int verify(struct proxy_ca *ca, X509 *leaf, const char *host, const char *ip)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *param;
	FILE *f = fopen(proxy_ca_cert_path(ca), "r");
	X509 *root = PEM_read_X509(f, NULL, NULL, NULL);
	int ok;

	fclose(f);
	X509_STORE_add_cert(store, root);
	X509_STORE_CTX_init(ctx, store, leaf, NULL);
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
	if (host)
		X509_VERIFY_PARAM_set1_host(param, host, 0);
	if (ip)
		X509_VERIFY_PARAM_set1_ip_asc(param, ip);
	ok = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(root);
	return ok;
}

static void test_init_and_modes(void)
{
	char err[1024], path[512];
	struct stat st;
	struct proxy_ca *ca;

	CHECK_MSG(proxy_ca_init(dir, err, sizeof(err)) == 0, "%s", err);
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_MSG(proxy_ca_init(dir, err, sizeof(err)) < 0 && strstr(err, "exists already"),
		  "a second init must not overwrite the key: %s", err);
	ca = proxy_ca_load(dir, err, sizeof(err));
	CHECK_MSG(ca != NULL, "%s", err);
	proxy_ca_free(&ca);
	chmod(path, 0644);
	ca = proxy_ca_load(dir, err, sizeof(err));
	CHECK_MSG(ca == NULL && strstr(err, "chmod 600") && strstr(err, "644"), "got: %s", err);
	chmod(path, 0600);
}

static void test_forged_leaf_verifies(void)
{
	char err[1024];
	struct proxy_ca *ca = proxy_ca_load(dir, err, sizeof(err));
	const char *names[] = {"imap.example.org", "mail.example.org", "127.0.0.1"};
	X509 *leaf, *again;

	CHECK_MSG(ca != NULL, "%s", err);
	if (ca == NULL)
		return;
	leaf = proxy_ca_forge(ca, names, 3, NULL, 0, err, sizeof(err));
	CHECK_MSG(leaf != NULL, "%s", err);
	CHECK(verify(ca, leaf, "imap.example.org", NULL));
	CHECK(verify(ca, leaf, "mail.example.org", NULL));
	CHECK(verify(ca, leaf, NULL, "127.0.0.1"));
	CHECK_MSG(!verify(ca, leaf, "other.example.org", NULL), "a name not asked for must fail");
	CHECK(X509_check_private_key(leaf, proxy_ca_leaf_key(ca)) == 1);
	again = proxy_ca_forge(ca, names, 3, NULL, 0, err, sizeof(err));
	CHECK_MSG(again == leaf, "the same names give the cached certificate");
	X509_free(again);
	X509_free(leaf);
	proxy_ca_free(&ca);
}

static void test_created_on_load(void)
{
	char err[1024], sub[512];
	struct proxy_ca *ca;

	snprintf(sub, sizeof(sub), "%s/fresh", dir);
	ca = proxy_ca_load(sub, err, sizeof(err));
	CHECK_MSG(ca != NULL, "load creates a missing CA: %s", err);
	proxy_ca_free(&ca);
}

/* One subjectAltName entry expected: GEN_DNS with text, or GEN_IPADD
 * with len address bytes. */
struct want_name {
	int type;
	const char *text;
	const char *ip;
	int len;
};

/* The leaf's subjectAltName holds exactly want[0..count), in order. */
static void check_sans(X509 *leaf, const struct want_name *want, int count, const char *what)
{
	int crit = -1;
	GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	int n = sans != NULL ? sk_GENERAL_NAME_num(sans) : 0;

	CHECK_MSG(sans != NULL, "%s: no subjectAltName", what);
	CHECK_MSG(n == count, "%s: %d subjectAltName entries, want %d", what, n, count);
	for (int i = 0; i < n; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		const ASN1_STRING *v = gn->type == GEN_DNS     ? gn->d.dNSName
				       : gn->type == GEN_IPADD ? gn->d.iPAddress
							       : NULL;
		const unsigned char *data = v ? ASN1_STRING_get0_data(v) : NULL;
		int len = v ? ASN1_STRING_length(v) : -1;
		char shown[4 * 300 + 1] = "";

		if (data != NULL && len > 0)
			capture_escape(shown, sizeof(shown), data, (size_t)len, 0, NULL);
		if (i >= count) {
			CHECK_MSG(0, "%s: entry %d type %d '%s' is not expected", what, i, gn->type,
				  shown);
			continue;
		}
		CHECK_MSG(gn->type == want[i].type, "%s: entry %d has type %d, want %d", what, i,
			  gn->type, want[i].type);
		if (want[i].type == GEN_DNS)
			CHECK_MSG(len == (int)strlen(want[i].text) &&
					  memcmp(data, want[i].text, (size_t)len) == 0,
				  "%s: entry %d is '%s', want '%s'", what, i, shown, want[i].text);
		else
			CHECK_MSG(len == want[i].len && memcmp(data, want[i].ip, (size_t)len) == 0,
				  "%s: entry %d is an address of %d bytes, not the one wanted", what,
				  i, len);
	}
	GENERAL_NAMES_free(sans);
}

static void cn_of(X509 *leaf, char *out, size_t size)
{
	out[0] = '\0';
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, out,
				      (int)size) < 0)
		out[0] = '\0';
}

static bool has_control_byte(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return true;
	return false;
}

/* Commas, escapes, empty labels and oversize names from a peer are left
 * out whole, never split into entries of the peer's choosing. */
static void test_hostile_names_left_out(void)
{
	char err[1024], notice[2048], cn[128], long_name[301];
	struct proxy_ca *ca = proxy_ca_load(dir, err, sizeof(err));
	const char *names[] = {
		"a.example,DNS:evil.example", "x, IP:1.2.3.4", "ok.example\x1b[31m", long_name,
		"*.example.org", "bad..example", "192.0.2.7", "2001:db8::1", "good.example",
	};
	const struct want_name want[] = {
		{GEN_DNS, "*.example.org", NULL, 0},
		{GEN_IPADD, NULL, "\xc0\x00\x02\x07", 4},
		{GEN_IPADD, NULL, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16},
		{GEN_DNS, "good.example", NULL, 0},
	};
	X509 *leaf;

	CHECK_MSG(ca != NULL, "%s", err);
	if (ca == NULL)
		return;
	memset(long_name, 'a', 300);
	long_name[300] = '\0';
	leaf = proxy_ca_forge(ca, names, sizeof(names) / sizeof(names[0]), notice, sizeof(notice),
			      err, sizeof(err));
	CHECK_MSG(leaf != NULL, "%s", err);
	if (leaf == NULL) {
		proxy_ca_free(&ca);
		return;
	}
	check_sans(leaf, want, 4, "hostile set");
	cn_of(leaf, cn, sizeof(cn));
	CHECK_MSG(strcmp(cn, "*.example.org") == 0, "the CN is the first name kept, not '%s'", cn);
	CHECK(verify(ca, leaf, "imap.example.org", NULL));
	CHECK(verify(ca, leaf, "good.example", NULL));
	CHECK(verify(ca, leaf, NULL, "2001:db8::1"));
	CHECK_MSG(!verify(ca, leaf, "evil.example", NULL), "a name after a comma must not verify");
	CHECK_MSG(!verify(ca, leaf, NULL, "1.2.3.4"), "an address after a comma must not verify");
	/* the notice names each left-out name, printable */
	CHECK_MSG(strstr(notice, "'a.example,DNS:evil.example' (a byte other than") != NULL,
		  "notice: %s", notice);
	CHECK_MSG(strstr(notice, "'x, IP:1.2.3.4'") != NULL, "notice: %s", notice);
	CHECK_MSG(strstr(notice, "'ok.example\\x1b[31m'") != NULL, "notice: %s", notice);
	CHECK_MSG(strstr(notice, "'bad..example' (an empty label)") != NULL, "notice: %s", notice);
	CHECK_MSG(strstr(notice, "...' (longer than 253 bytes)") != NULL, "notice: %s", notice);
	CHECK_MSG(strstr(notice, "good.example") == NULL && strstr(notice, "192.0.2.7") == NULL,
		  "names kept are not in the notice: %s", notice);
	CHECK_MSG(!has_control_byte(notice), "the notice holds a control byte: %s", notice);
	X509_free(leaf);
	proxy_ca_free(&ca);
}

/* A name over 64 bytes is no CN; with no CN at all the subject is empty
 * and the subjectAltName critical (RFC 5280 section 4.2.1.6). */
static void test_long_names_and_cn(void)
{
	char err[1024], notice[256], cn[128];
	struct proxy_ca *ca = proxy_ca_load(dir, err, sizeof(err));
	const char *long_host = "a234567890123456789012345678901234567890.b234567890123456789012.example";
	const char *two[] = {long_host, "short.example"};
	const char *one[] = {long_host};
	const struct want_name want_two[] = {{GEN_DNS, long_host, NULL, 0},
					     {GEN_DNS, "short.example", NULL, 0}};
	int crit = -1;
	GENERAL_NAMES *sans;
	X509 *leaf;

	CHECK_MSG(ca != NULL, "%s", err);
	if (ca == NULL)
		return;
	CHECK(strlen(long_host) > 64);
	leaf = proxy_ca_forge(ca, two, 2, notice, sizeof(notice), err, sizeof(err));
	CHECK_MSG(leaf != NULL && notice[0] == '\0', "%s %s", err, notice);
	if (leaf != NULL) {
		check_sans(leaf, want_two, 2, "long and short");
		cn_of(leaf, cn, sizeof(cn));
		CHECK_MSG(strcmp(cn, "short.example") == 0, "CN '%s'", cn);
		CHECK(verify(ca, leaf, long_host, NULL));
		X509_free(leaf);
	}
	leaf = proxy_ca_forge(ca, one, 1, notice, sizeof(notice), err, sizeof(err));
	CHECK_MSG(leaf != NULL, "%s", err);
	if (leaf != NULL) {
		CHECK(X509_NAME_entry_count(X509_get_subject_name(leaf)) == 0);
		sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
		CHECK_MSG(sans != NULL && crit == 1, "an empty subject needs a critical SAN");
		GENERAL_NAMES_free(sans);
		CHECK(verify(ca, leaf, long_host, NULL));
		X509_free(leaf);
	}
	proxy_ca_free(&ca);
}

/* Nothing a certificate can carry: no certificate, and a reason. */
static void test_no_usable_name(void)
{
	char err[1024] = "", notice[256];
	struct proxy_ca *ca = proxy_ca_load(dir, err, sizeof(err));
	const char *bad[] = {"evil,DNS:x.example", ""};

	CHECK_MSG(ca != NULL, "%s", err);
	if (ca == NULL)
		return;
	CHECK(proxy_ca_forge(ca, bad, 2, notice, sizeof(notice), err, sizeof(err)) == NULL);
	CHECK_MSG(strstr(err, "no name") != NULL, "err: %s", err);
	CHECK_MSG(strstr(notice, "'evil,DNS:x.example'") != NULL && strstr(notice, "'' (empty)"),
		  "notice: %s", notice);
	proxy_ca_free(&ca);
}

/* The same accepted names, with or without bad ones beside them, share a
 * cached certificate; the notice is given every time. */
static void test_cache_and_notice(void)
{
	char err[1024], notice[256];
	struct proxy_ca *ca = proxy_ca_load(dir, err, sizeof(err));
	const char *plain[] = {"mail.example"};
	const char *with_bad[] = {"mail.example", "a\nb"};
	X509 *a, *b;

	CHECK_MSG(ca != NULL, "%s", err);
	if (ca == NULL)
		return;
	a = proxy_ca_forge(ca, plain, 1, notice, sizeof(notice), err, sizeof(err));
	CHECK(a != NULL && notice[0] == '\0');
	b = proxy_ca_forge(ca, with_bad, 2, notice, sizeof(notice), err, sizeof(err));
	CHECK(b == a);
	CHECK_MSG(strstr(notice, "'a\\x0ab'") != NULL, "notice: %s", notice);
	X509_free(b);
	b = proxy_ca_forge(ca, with_bad, 2, notice, sizeof(notice), err, sizeof(err));
	CHECK_MSG(b == a && strstr(notice, "'a\\x0ab'") != NULL, "notice again: %s", notice);
	X509_free(b);
	X509_free(a);
	proxy_ca_free(&ca);
}

/* What may go into a certificate, and the reason given for what may not. */
static void test_name_check(void)
{
	static const struct {
		const char *name;
		enum proxy_ca_name want;
		const char *why;
	} cases[] = {
		{"imap.example.org", PROXY_CA_NAME_DNS, NULL},
		{"localhost", PROXY_CA_NAME_DNS, NULL},
		{"xn--bcher-kva.example", PROXY_CA_NAME_DNS, NULL},
		{"A-1.Example.ORG", PROXY_CA_NAME_DNS, NULL},
		{"*.example.org", PROXY_CA_NAME_WILDCARD, NULL},
		{"127.0.0.1", PROXY_CA_NAME_IP, NULL},
		{"::1", PROXY_CA_NAME_IP, NULL},
		{"2001:db8::1", PROXY_CA_NAME_IP, NULL},
		{"", PROXY_CA_NAME_BAD, "empty"},
		{"a.example,DNS:evil.example", PROXY_CA_NAME_BAD, "a byte other than"},
		{"x, IP:1.2.3.4", PROXY_CA_NAME_BAD, "a byte other than"},
		{"ok.example\x1b[31m", PROXY_CA_NAME_BAD, "a byte other than"},
		{"under_score.example", PROXY_CA_NAME_BAD, "a byte other than"},
		{"b\xc3\xbc" "cher.example", PROXY_CA_NAME_BAD, "a byte other than"},
		{"bad..example", PROXY_CA_NAME_BAD, "an empty label"},
		{".example", PROXY_CA_NAME_BAD, "an empty label"},
		{"example.org.", PROXY_CA_NAME_BAD, "ends with a dot"},
		{"-a.example", PROXY_CA_NAME_BAD, "starting with a hyphen"},
		{"a-.example", PROXY_CA_NAME_BAD, "ending with a hyphen"},
		{"*.org", PROXY_CA_NAME_BAD, "a wildcard over a single label"},
		{"*", PROXY_CA_NAME_BAD, "a '*'"},
		{"a.*.example", PROXY_CA_NAME_BAD, "a '*'"},
		{"*a.example", PROXY_CA_NAME_BAD, "a '*'"},
		{"*.*.example", PROXY_CA_NAME_BAD, "a '*'"},
		{"1.2.3.256", PROXY_CA_NAME_BAD, "all-numeric"},
		{"1.2.3", PROXY_CA_NAME_BAD, "all-numeric"},
		{"fe80::1%eth0", PROXY_CA_NAME_BAD, "a byte other than"},
		{"a\nb", PROXY_CA_NAME_BAD, "a byte other than"},
	};
	char label63[80], label64[80], total253[260], total254[260];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = NULL;
		enum proxy_ca_name got = proxy_ca_name_check(cases[i].name, &why);

		CHECK_MSG(got == cases[i].want, "case %zu: got %d, want %d", i, got, cases[i].want);
		if (cases[i].why != NULL)
			CHECK_MSG(why != NULL && strstr(why, cases[i].why) != NULL,
				  "case %zu: reason '%s', want '%s'", i, why ? why : "(none)",
				  cases[i].why);
	}
	memset(label63, 'a', 63);
	strcpy(label63 + 63, ".example");
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".example");
	CHECK(proxy_ca_name_check(label63, NULL) == PROXY_CA_NAME_DNS);
	CHECK(proxy_ca_name_check(label64, NULL) == PROXY_CA_NAME_BAD);
	/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 bytes */
	memset(total253, 'a', 253);
	total253[63] = total253[127] = total253[191] = '.';
	total253[253] = '\0';
	CHECK(proxy_ca_name_check(total253, NULL) == PROXY_CA_NAME_DNS);
	memcpy(total254, total253, 253);
	strcpy(total254 + 253, "a");
	CHECK(proxy_ca_name_check(total254, NULL) == PROXY_CA_NAME_BAD);
}

int main(void)
{
	char cmd[600];

	snprintf(dir, sizeof(dir), "/tmp/imaptap-test-ca.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	test_init_and_modes();
	test_forged_leaf_verifies();
	test_created_on_load();
	test_hostile_names_left_out();
	test_long_names_and_cn();
	test_no_usable_name();
	test_cache_and_notice();
	test_name_check();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_finish("ca");
}
