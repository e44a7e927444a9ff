/* imaptap replay client: a recorded client played to a live server. */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "capture/escape.h"
#include "cli/cli.h"
#include "cli/replay.h"
#include "net/socket.h"
#include "proxy/addr.h"
#include "replay/client.h"
#include "replay/tls.h"

const char cli_replay_client_usage[] =
	"usage: imaptap replay client FILE --connect HOST:PORT [OPTIONS]\n"
	"\n"
	"Plays the client side of a recorded session to a live server: each command\n"
	"when the recording sent it, waiting for continuations and completions as the\n"
	"recording did. Passes when every command completes with its recorded status.\n"
	"\n"
	"options:\n"
	"  --connect HOST:PORT      the server (required)\n"
	"  --session N              the N-th session of FILE (default: the first in which\n"
	"                           the client sent an IMAP line, so a port probe or a\n"
	"                           health check before it is passed over)\n"
	"  --login USER:PASS        credentials for the masked ones in the recording\n"
	"  --upstream-tls implicit|starttls|none\n"
	"                           TLS to the server (default: implicit for port 993);\n"
	"                           starttls follows the recorded STARTTLS\n"
	"  --upstream-ca FILE       also trust this CA; --insecure-upstream: do not verify\n"
	"  --sni NAME               name sent and verified (default: the host)\n"
	"  --speed X | --no-delay   pace (default: as recorded)\n"
	"  --strict                 untagged responses must match the recording too\n"
	"  --timeout TIME           bound on the whole replay (120, 120s, 2m)\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 every command completed as recorded, 1 one did not, 2 usage\n"
	"error, 3 the file cannot be read or the server cannot be reached\n";

enum {
	OPT_CONNECT = OPT_REPLAY_OWN,
	OPT_LOGIN,
	OPT_UPSTREAM_TLS,
	OPT_UPSTREAM_CA,
	OPT_INSECURE,
	OPT_SNI,
	OPT_STRICT,
};

static const struct option client_options[] = {
	CLI_REPLAY_PACE_OPTIONS,
	{"connect", required_argument, NULL, OPT_CONNECT},
	{"login", required_argument, NULL, OPT_LOGIN},
	{"upstream-tls", required_argument, NULL, OPT_UPSTREAM_TLS},
	{"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
	{"insecure-upstream", no_argument, NULL, OPT_INSECURE},
	{"sni", required_argument, NULL, OPT_SNI},
	{"strict", no_argument, NULL, OPT_STRICT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

#define CMD "replay client"
#define USER_MAX 256

struct client_args {
	const char *file;
	const char *connect;
	char *login;            /* in argv: its password is wiped once copied */
	const char *upstream_tls;
	const char *upstream_ca;
	const char *sni;
	bool insecure;
	bool strict;
	struct cli_replay_pace pace;
	struct proxy_hostport server;
	char user[USER_MAX];
	char pass[USER_MAX];
};

/* One option: 0, -1 after --help, or the usage error's exit code. */
static int client_option(struct client_args *a, int c, char **argv)
{
	int rc = cli_replay_pace_option(CMD, c, optarg, &a->pace);

	if (rc != 1)
		return rc;
	switch (c) {
	case OPT_CONNECT:
		a->connect = optarg;
		return 0;
	case OPT_LOGIN:
		a->login = optarg;
		return 0;
	case OPT_UPSTREAM_TLS:
		a->upstream_tls = optarg;
		return 0;
	case OPT_UPSTREAM_CA:
		a->upstream_ca = optarg;
		return 0;
	case OPT_INSECURE:
		a->insecure = true;
		return 0;
	case OPT_SNI:
		a->sni = optarg;
		return 0;
	case OPT_STRICT:
		a->strict = true;
		return 0;
	case 'h':
		fputs(cli_replay_client_usage, stdout);
		return -1;
	default:
		return cli_option_error(CMD, c, argv, client_options);
	}
}

/* The operands and what the options mean together. */
static int client_check(struct client_args *a)
{
	char err[256];
	const char *colon;

	if (a->file == NULL)
		return cli_usage_error(CMD, "which recording? imaptap replay client FILE --connect HOST:PORT");
	if (a->connect == NULL)
		return cli_usage_error(CMD, "--connect HOST:PORT is required");
	if (proxy_hostport_parse(a->connect, &a->server, err, sizeof(err)) < 0 || a->server.port == 0)
		return cli_usage_error(CMD, "--connect %s", a->server.port == 0 ? "needs a port" : err);
	if (a->login != NULL) {
		colon = strchr(a->login, ':');
		if (colon == NULL || colon == a->login || (size_t)(colon - a->login) >= sizeof(a->user))
			return cli_usage_error(CMD, "--login takes USER:PASS");
		if (strlen(colon + 1) >= sizeof(a->pass))
			return cli_usage_error(CMD, "--login: the password is longer than %d bytes",
					       USER_MAX - 1);
		memcpy(a->user, a->login, (size_t)(colon - a->login));
		a->user[colon - a->login] = '\0';
		strcpy(a->pass, colon + 1);
		/* the copy is what is used: the command line that ps shows loses it */
		explicit_bzero((char *)colon + 1, strlen(colon + 1));
	}
	if (a->upstream_tls == NULL)
		a->upstream_tls = a->server.port == 993 ? "implicit" : "none";
	if (strcmp(a->upstream_tls, "none") != 0 && strcmp(a->upstream_tls, "implicit") != 0 &&
	    strcmp(a->upstream_tls, "starttls") != 0)
		return cli_usage_error(CMD, "--upstream-tls takes implicit, starttls or none, not '%s'",
				       a->upstream_tls);
	return 0;
}

static int parse_client(int argc, char **argv, struct client_args *a)
{
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", client_options, NULL)) != -1) {
		rc = client_option(a, c, argv);
		if (rc != 0)
			return rc;
	}
	if (optind < argc)
		a->file = argv[optind++];
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
	return client_check(a);
}

/* Plays rec to the server: connects, replays, reports. Returns the
 * replay's code (0, 1, 3). */
static int play(const struct client_args *a, const struct replay_recording *rec,
		struct replay_client_options *opt)
{
	struct replay_result res;
	char err[512];
	int fd = net_connect_tcp(a->server.host, a->server.port, err, sizeof(err));

	if (fd < 0) {
		cli_message("%s", err);
		return 3;
	}
	signal(SIGPIPE, SIG_IGN);
	replay_client_fd(rec, fd, opt, &res);
	close(fd);
	cli_write_escaped(stderr, res.report, strlen(res.report), CAPTURE_ESCAPE_KEEP_NEWLINE);
	return res.code;
}

int cli_replay_client_main(int argc, char **argv)
{
	struct client_args a = {.pace = {.session = 0, .speed = 1}};
	struct replay_client_options opt = {.quiet = 10 * IMAP_US_PER_S};
	struct replay_recording rec;
	char err[512];
	int rc;

	rc = parse_client(argc, argv, &a);
	if (rc != 0) {
		explicit_bzero(a.pass, sizeof(a.pass));
		return rc < 0 ? CLI_EXIT_OK : rc; /* -1: --help */
	}
	rc = cli_replay_load(a.file, &a.pace, &rec);
	if (rc != CLI_EXIT_OK) {
		explicit_bzero(a.pass, sizeof(a.pass));
		return rc;
	}
	if (a.login == NULL && replay_client_masked_line(&rec) != 0) {
		rc = cli_usage_error(CMD, "session %u of %s logs in with credentials the recording "
				     "holds masked (client line %u): give --login USER:PASS",
				     rec.session, a.file, replay_client_masked_line(&rec));
		replay_recording_free(&rec);
		return rc;
	}
	opt.speed = a.pace.speed;
	opt.timeout = cli_replay_timeout(&a.pace, &rec);
	opt.strict = a.strict;
	opt.user = a.login != NULL ? a.user : NULL;
	opt.pass = a.login != NULL ? a.pass : NULL;
	if (strcmp(a.upstream_tls, "none") != 0) {
		opt.tls = replay_tls_client(a.upstream_ca, a.insecure, err, sizeof(err));
		if (opt.tls == NULL) {
			cli_message("%s", err);
			explicit_bzero(a.pass, sizeof(a.pass));
			replay_recording_free(&rec);
			return CLI_EXIT_RUNTIME;
		}
		opt.implicit_tls = strcmp(a.upstream_tls, "implicit") == 0;
		opt.sni = a.sni != NULL ? a.sni : a.server.host;
	}
	rc = play(&a, &rec, &opt);
	explicit_bzero(a.pass, sizeof(a.pass));
	SSL_CTX_free(opt.tls);
	replay_recording_free(&rec);
	return rc == 3 ? CLI_EXIT_RUNTIME : rc == 1 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
}
