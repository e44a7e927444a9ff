/* imaptap ca init DIR */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "proxy/ca.h"

static const char ca_usage[] =
	"usage: imaptap ca init DIR\n"
	"\n"
	"Creates the certificate authority that signs the certificates imaptap\n"
	"shows to clients on a TLS client leg: DIR/ca.crt (give this to the\n"
	"clients to trust) and DIR/ca.key (mode 0600, keep it private). DIR is\n"
	"created (mode 0700) when missing; an existing key is never overwritten.\n";

/* DIR/ca.key is there already. */
static bool ca_exists(const char *dir)
{
	char key[4096];

	if (snprintf(key, sizeof(key), "%s/ca.key", dir) >= (int)sizeof(key))
		return false;
	return access(key, F_OK) == 0;
}

/* init on a CA that exists: fine when it is whole and usable (the same
 * checks the proxy makes), an error naming what is wrong otherwise. */
static int ca_there(const char *dir)
{
	char err[4400];
	struct proxy_ca *ca = proxy_ca_load(dir, err, sizeof(err));

	if (ca == NULL) {
		cli_message("ca init: a CA is there already but cannot be used: %s (or remove its "
			    "ca.key and ca.crt to make a new one)", err);
		return CLI_EXIT_RUNTIME;
	}
	proxy_ca_free(&ca);
	fputs("a CA is there already: ", stdout);
	cli_write_escaped(stdout, dir, strlen(dir), 0);
	fputs("/ca.crt (trust this in the client), kept as it is\n", stdout);
	return CLI_EXIT_OK;
}

int cli_ca_main(int argc, char **argv)
{
	char err[1024];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(ca_usage, stdout);
			return CLI_EXIT_OK;
		}
	}
	if (argc != 3 || strcmp(argv[1], "init") != 0)
		return cli_usage_error("ca", "expected 'imaptap ca init DIR'");
	if (ca_exists(argv[2]))
		return ca_there(argv[2]);
	if (proxy_ca_init(argv[2], err, sizeof(err)) < 0) {
		cli_message("ca init: %s", err);
		return CLI_EXIT_RUNTIME;
	}
	/* the directory as given, escaped like every value imaptap quotes */
	fputs("wrote ", stdout);
	cli_write_escaped(stdout, argv[2], strlen(argv[2]), 0);
	fputs("/ca.crt (trust this in the client) and ", stdout);
	cli_write_escaped(stdout, argv[2], strlen(argv[2]), 0);
	fputs("/ca.key (private, mode 0600)\n", stdout);
	return CLI_EXIT_OK;
}
