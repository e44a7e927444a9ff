/* imaptap: dispatches to a subcommand. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"

#ifndef IMAPTAP_VERSION
#define IMAPTAP_VERSION "0.1.0"
#endif

static const char usage[] =
	"usage: imaptap COMMAND [OPTIONS]\n"
	"\n"
	"An IMAP proxy that relays every byte unchanged (but for capability lists\n"
	"before login, docs/proxy.md) and shows each IMAP line as it passes,\n"
	"timestamped to the microsecond.\n"
	"\n"
	"commands:\n"
	"  proxy     relay clients to an IMAP server and show the live timeline\n"
	"            imaptap proxy --upstream HOST:PORT [--listen ADDR:PORT]\n"
	"                  [--upstream-tls implicit|starttls|none] [--upstream-ca FILE]\n"
	"                  [--insecure-upstream] [--sni NAME] [--client-tls none|implicit|starttls]\n"
	"                  [--ca DIR] [--cert FILE --key FILE] [--keylog FILE]\n"
	"                  [--handshake-timeout TIME] [--port-file FILE]\n"
	"                  [--pcap FILE [--pcap-max-size MIB]] [--events FILE|-]\n"
	"                  [--no-redact] [--redact-bodies] [--stall T] [--done-stall T]\n"
	"                  [--idle-max T] [--keepalive-gap T] [--no-rules] [--max-line BYTES]\n"
	"                  [--anomalies-only | --quiet] [--color auto|always|never]\n"
	"  analyze   print the timeline, anomalies and summaries of the sessions in a\n"
	"            capture file\n"
	"            imaptap analyze FILE [--session N] [--events FILE|-]\n"
	"                  [--fail-on RULE[,RULE...]|all] [--stall T] [--done-stall T]\n"
	"                  [--anomalies-only | --quiet]   (T: 250ms, 5s, 2m, 1h)\n"
	"  replay serve  play the server side of a recorded session to live clients\n"
	"            imaptap replay serve FILE [--session N] [--listen ADDR:PORT]\n"
	"                  [--speed X | --no-delay] [--ignore REGEX] [--timeout T]\n"
	"                  [--loop] [-- COMMAND ARGS...]\n"
	"  replay client  play the client side of a recorded session to a live server\n"
	"            imaptap replay client FILE --connect HOST:PORT [--login USER:PASS]\n"
	"                  [--session N] [--upstream-tls implicit|starttls|none]\n"
	"  compile   turn a transcript script (docs/script.md) into a pcap recording\n"
	"            imaptap compile SCRIPT -o FILE.pcap [--start EPOCH]\n"
	"  export    write a recording's sessions as a transcript script that compile\n"
	"            turns into the same streams again\n"
	"            imaptap export FILE.pcap [-o SCRIPT [--overwrite]] [--session N]\n"
	"                  [--since TIME] [--until TIME]\n"
	"  diff      compare two recordings of a scenario at the protocol level:\n"
	"            commands, statuses, codes, untagged kinds, capabilities\n"
	"            imaptap diff A.pcap B.pcap [--time-factor X] [--events FILE|-]\n"
	"  ca init DIR   create the CA (DIR/ca.crt, DIR/ca.key) that signs the\n"
	"            certificates shown to clients on a TLS client leg\n"
	"\n"
	"options:\n"
	"  -h, --help      this text; every command's options: 'imaptap proxy --help',\n"
	"                  'imaptap analyze --help', 'imaptap replay serve --help',\n"
	"                  'imaptap replay client --help', 'imaptap compile --help',\n"
	"                  'imaptap export --help', 'imaptap diff --help',\n"
	"                  'imaptap ca --help'\n"
	"  -V, --version   print the version\n"
	"\n"
	"exit codes: 0 success, 1 a check failed, 2 usage error, 3 runtime error\n";

/* One line naming the mistake and the likely command, not the whole help. */
static int unknown_command(const char *cmd)
{
	static const char *const commands[] = {"proxy",  "analyze", "replay", "compile",
						     "export", "diff",    "ca"};
	const char *near = cli_closest(cmd, commands, sizeof(commands) / sizeof(commands[0]));

	if (near != NULL)
		cli_message("unknown command '%s'; did you mean '%s'? ('imaptap --help' lists the "
			    "commands)", cmd, near);
	else
		cli_message("unknown command '%s'; the commands are proxy, analyze, replay serve, "
			    "replay client, compile, export, diff and ca init ('imaptap --help')", cmd);
	return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	/* a peer that vanishes mid-write must not kill the process */
	signal(SIGPIPE, SIG_IGN);
	if (cmd == NULL) {
		fputs(usage, stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage, stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
		printf("imaptap %s\n", IMAPTAP_VERSION);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "ca") == 0)
		return cli_ca_main(argc - 1, argv + 1);
	if (strcmp(cmd, "proxy") == 0)
		return cli_proxy_main(argc - 1, argv + 1);
	if (strcmp(cmd, "analyze") == 0)
		return cli_analyze_main(argc - 1, argv + 1);
	if (strcmp(cmd, "replay") == 0)
		return cli_replay_main(argc - 1, argv + 1);
	if (strcmp(cmd, "compile") == 0)
		return cli_compile_main(argc - 1, argv + 1);
	if (strcmp(cmd, "export") == 0)
		return cli_export_main(argc - 1, argv + 1);
	if (strcmp(cmd, "diff") == 0)
		return cli_diff_main(argc - 1, argv + 1);
	return unknown_command(cmd);
}
