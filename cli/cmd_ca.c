/* imaptap ca init DIR */
#include <string.h>

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
