/* The interception CA: files and modes, refusals, and forged leaves that
 * verify against the CA with hostname checking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

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
	leaf = proxy_ca_forge(ca, names, 3, err, sizeof(err));
	CHECK_MSG(leaf != NULL, "%s", err);
	CHECK(verify(ca, leaf, "imap.example.org", NULL));
	CHECK(verify(ca, leaf, "mail.example.org", NULL));
	CHECK(verify(ca, leaf, NULL, "127.0.0.1"));
	CHECK_MSG(!verify(ca, leaf, "other.example.org", NULL), "a name not asked for must fail");
	CHECK(X509_check_private_key(leaf, proxy_ca_leaf_key(ca)) == 1);
	again = proxy_ca_forge(ca, names, 3, err, sizeof(err));
	CHECK_MSG(again == leaf, "the same names give the cached certificate");
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

int main(void)
{
	char cmd[600];

	snprintf(dir, sizeof(dir), "/tmp/imaptap-test-ca.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	test_init_and_modes();
	test_forged_leaf_verifies();
	test_created_on_load();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_finish("ca");
}
