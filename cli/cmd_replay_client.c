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
#include "replay/link.h"
#include "replay/runs.h"
#include "replay/tls.h"

const char cli_replay_client_usage[] =
	"usage: imaptap replay client FILE --connect HOST:PORT [OPTIONS]\n"
	"\n"
	"Plays the client side of a recording to a live server: every session in\n"
	"which the client spoke, each on its own connection, opened in the recorded\n"
	"order and overlap. Each command goes out when the recording sent it (and\n"
	"after what the other sessions did before it in the recording), waiting for\n"
	"continuations and completions as the recording did. Passes when every\n"
	"command completes with its recorded status.\n"
	"\n"
	"options:\n"
	"  --connect HOST:PORT      the server (required)\n"
	"  --session N[,M...]       only these sessions of FILE (default: every one in\n"
	"                           which the client sent an IMAP line, so a port probe\n"
	"                           or a health check is passed over)\n"
	"  --order recording|session\n"
	"                           recording (default): a command also waits for what\n"
	"                           the other sessions did before it in the recording;\n"
	"                           session: each session keeps its own order only\n"
	"  --login USER:PASS        credentials for the masked ones in the recording\n"
	"  --upstream-tls implicit|starttls|none\n"
	"                           TLS to the server (default: implicit for port 993);\n"
	"                           starttls follows the recorded STARTTLS\n"
	"  --upstream-ca FILE       also trust this CA; --insecure-upstream: do not verify\n"
	"  --sni NAME               name sent and verified (default: the host)\n"
	"  --speed X | --no-delay   pace (default: as recorded)\n"
	"  --strict                 untagged responses must match the recording too\n"
	"  --timeout TIME           bound on each session's replay (120, 120s, 2m)\n"
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

/* What one run holds. */
struct client_run {
	struct replay_recordings recs;
	struct replay_ensemble *ens;
	struct replay_runs *runs;
	struct replay_client_options opt;
	int worst;
};

static void client_connection(void *ctx, int fd, long session, struct replay_result *res)
{
	struct client_run *run = ctx;

	replay_client_fd(run->ens, (size_t)session, fd, &run->opt, res);
}

static void reap(struct client_run *run, bool wait)
{
	const struct replay_run *done;

	while ((done = replay_runs_reap(run->runs, wait)) != NULL) {
		if (run->recs.count > 1)
			fprintf(stderr, "imaptap: session %u: ", done->result.session);
		cli_write_escaped(stderr, done->result.report, strlen(done->result.report),
				  CAPTURE_ESCAPE_KEEP_NEWLINE);
		if (done->result.code > run->worst)
			run->worst = done->result.code;
	}
}

/* Opens the recorded connections in their recorded order, each when its
 * recorded start is due (scaled), and plays them beside each other.
 * Sets run->worst: 0, 1 or 3. */
static void play(const struct client_args *a, struct client_run *run)
{
	imap_time_us start = replay_now(), first = run->recs.recs[0].opened;
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < run->recs.count; i++) {
		imap_time_us offset = run->recs.recs[i].opened - first, due = start;
		int fd;

		if (run->opt.speed > 0)
			due += (imap_time_us)((double)offset / run->opt.speed);
		while (replay_now() < due) {
			imap_time_us left = due - replay_now();

			reap(run, false);
			usleep((useconds_t)(left < 50000 ? left : 50000));
		}
		fd = net_connect_tcp(a->server.host, a->server.port, err, sizeof(err));
		if (fd < 0 || replay_runs_start(run->runs, fd, (long)i) == 0) {
			if (fd < 0)
				cli_message("session %u: %s", run->recs.recs[i].session, err);
			else
				cli_message("session %u: cannot run beside the others",
					    run->recs.recs[i].session);
			replay_ensemble_end(run->ens, i); /* nothing waits for it */
			run->worst = 3;
		}
	}
	reap(run, true);
}

/* Every session whose credentials the recording holds masked needs
 * --login. Returns 0 or the usage error's exit code. */
static int check_login(const struct client_args *a, const struct replay_recordings *recs)
{
	for (size_t i = 0; i < recs->count && a->login == NULL; i++)
		if (replay_client_masked_line(&recs->recs[i]) != 0)
			return cli_usage_error(CMD, "session %u of %s logs in with credentials the "
					       "recording holds masked (client line %u): give "
					       "--login USER:PASS", recs->recs[i].session, a->file,
					       replay_client_masked_line(&recs->recs[i]));
	return 0;
}

/* The run's options, TLS and threads. Returns an exit code. */
static int client_start(const struct client_args *a, struct client_run *run)
{
	char err[512];
	int rc = cli_replay_load(a->file, &a->pace, &run->recs);

	if (rc != CLI_EXIT_OK)
		return rc;
	rc = check_login(a, &run->recs);
	if (rc != 0)
		return rc;
	run->opt.speed = a->pace.speed;
	run->opt.timeout = cli_replay_timeout(&a->pace, &run->recs);
	run->opt.strict = a->strict;
	run->opt.user = a->login != NULL ? a->user : NULL;
	run->opt.pass = a->login != NULL ? a->pass : NULL;
	if (strcmp(a->upstream_tls, "none") != 0) {
		run->opt.tls = replay_tls_client(a->upstream_ca, a->insecure, err, sizeof(err));
		if (run->opt.tls == NULL) {
			cli_message("%s", err);
			return CLI_EXIT_RUNTIME;
		}
		run->opt.implicit_tls = strcmp(a->upstream_tls, "implicit") == 0;
		run->opt.sni = a->sni != NULL ? a->sni : a->server.host;
	}
	run->ens = replay_ensemble_new(&run->recs, REPLAY_GATES_WALKED, !a->pace.order_by_session,
				       a->pace.speed);
	run->runs = replay_runs_new(client_connection, run, run->recs.count);
	if (run->ens == NULL || run->runs == NULL) {
		cli_message("out of memory");
		return CLI_EXIT_RUNTIME;
	}
	if (run->recs.count > 1)
		cli_message("replaying %zu sessions of %s at once, in their recorded order and "
			    "overlap", run->recs.count, a->file);
	return CLI_EXIT_OK;
}

int cli_replay_client_main(int argc, char **argv)
{
	struct client_args a = {.pace = {.speed = 1}};
	struct client_run run = {.opt = {.quiet = 10 * IMAP_US_PER_S}};
	int rc;

	rc = parse_client(argc, argv, &a);
	if (rc == 0)
		rc = client_start(&a, &run);
	if (rc == 0) {
		play(&a, &run);
		rc = run.worst == 3 ? CLI_EXIT_RUNTIME : run.worst == 1 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
	} else if (rc < 0) {
		rc = CLI_EXIT_OK; /* --help */
	}
	explicit_bzero(a.pass, sizeof(a.pass));
	replay_runs_free(&run.runs);
	replay_ensemble_free(&run.ens);
	SSL_CTX_free(run.opt.tls);
	replay_recordings_free(&run.recs);
	return rc;
}
