/* imaptap replay serve: a recorded server played to live clients. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "capture/escape.h"
#include "cli/cli.h"
#include "cli/replay.h"
#include "net/socket.h"
#include "proxy/addr.h"
#include "proxy/ca.h"
#include "replay/child.h"
#include "replay/link.h"
#include "replay/runs.h"
#include "replay/serve.h"
#include "replay/tls.h"

const char cli_replay_serve_usage[] =
	"usage: imaptap replay serve FILE [OPTIONS] [-- COMMAND ARGS...]\n"
	"\n"
	"Plays the server side of a recording (a pcap: imaptap's --pcap, or a\n"
	"tcpdump/tshark capture of plaintext IMAP) to live clients: every session in\n"
	"which the client spoke, at once, one per connection. Every recorded client\n"
	"line must arrive: the client's own tags stand for the recorded ones, masked\n"
	"passwords and --ignore spans match anything. The server's lines go out at\n"
	"their recorded delays after the client line before them, and after what the\n"
	"other sessions' clients sent before them in the recording. When the client\n"
	"does something else, imaptap prints the line expected, the line received and\n"
	"the recording before it, and exits 1; a session no connection played is a\n"
	"divergence too.\n"
	"\n"
	"options:\n"
	"  --session N[,M...]       only these sessions of FILE (default: every one in\n"
	"                           which the client sent an IMAP line, so a port probe\n"
	"                           or a health check is passed over)\n"
	"  --match order|first-lines\n"
	"                           which session a connection plays: the next in the\n"
	"                           order they opened (default), or the one its first\n"
	"                           client lines agree with (the login user, the first\n"
	"                           SELECT), for clients that open connections in any\n"
	"                           order\n"
	"  --order recording|session\n"
	"                           recording (default): a server line also waits for\n"
	"                           what other sessions' clients sent before it in the\n"
	"                           recording (an EXISTS after another connection's\n"
	"                           APPEND); session: each session keeps its own order\n"
	"                           only\n"
	"  --listen ADDR:PORT       where clients connect (default 127.0.0.1:0: a free\n"
	"                           port, printed on stderr)\n"
	"  --port-file FILE         write the port to FILE once listening\n"
	"  --speed X                play X times faster (default 1)\n"
	"  --no-delay               send the server's lines as soon as they are due\n"
	"  --segment byte|random[:SEED]|coalesce\n"
	"                           cut the server's bytes into other writes: one byte\n"
	"                           each, random sizes from SEED (default 1), or a whole\n"
	"                           server turn at once; byte and random pieces leave\n"
	"                           as their own TCP segments and TLS records\n"
	"  --ignore REGEX           a volatile span (a date, a UID) that matches anything;\n"
	"                           POSIX extended regex, repeatable\n"
	"  --timeout TIME           bound on each connection's replay (default: 60s, or\n"
	"                           twice the recording's length plus 30 when longer)\n"
	"  --quiet-limit TIME       a client silent this long beyond the recorded pause\n"
	"                           while a line is due is reported (default 10)\n"
	"  --client-tls none|implicit|starttls\n"
	"                           what the client speaks (default none); starttls: the\n"
	"                           handshake follows the recorded OK to its STARTTLS\n"
	"  --ca DIR                 CA that signs the certificate shown to the client\n"
	"                           (DIR/ca.crt, DIR/ca.key; created when missing)\n"
	"  --cert FILE --key FILE   show this certificate instead\n"
	"  --name NAME              a host name or IP address the forged certificate\n"
	"                           carries (repeatable; default localhost and 127.0.0.1)\n"
	"  --loop                   serve the recording again and again until\n"
	"                           interrupted: once every session is played, the next\n"
	"                           connection starts a new round\n"
	"  -- COMMAND ARGS...       run COMMAND with IMAPTAP_PORT set and serve until it\n"
	"                           exits; the result is the worse of the two\n"
	"                           (without one: until every session is played, or no\n"
	"                           connection is open and none came for --quiet-limit\n"
	"                           beyond the recorded pause before the next session)\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 the client did what the recording did, 1 it diverged (or the\n"
	"command failed), 2 usage error, 3 the file cannot be read or no listening\n";

enum {
	OPT_LISTEN = OPT_REPLAY_OWN,
	OPT_PORT_FILE,
	OPT_IGNORE,
	OPT_QUIET_LIMIT,
	OPT_LOOP,
	OPT_CLIENT_TLS,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_NAME,
	OPT_SEGMENT,
	OPT_MATCH,
};

static const struct option serve_options[] = {
	CLI_REPLAY_PACE_OPTIONS,
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"port-file", required_argument, NULL, OPT_PORT_FILE},
	{"ignore", required_argument, NULL, OPT_IGNORE},
	{"quiet-limit", required_argument, NULL, OPT_QUIET_LIMIT},
	{"loop", no_argument, NULL, OPT_LOOP},
	{"client-tls", required_argument, NULL, OPT_CLIENT_TLS},
	{"ca", required_argument, NULL, OPT_CA},
	{"cert", required_argument, NULL, OPT_CERT},
	{"key", required_argument, NULL, OPT_KEY},
	{"name", required_argument, NULL, OPT_NAME},
	{"segment", required_argument, NULL, OPT_SEGMENT},
	{"match", required_argument, NULL, OPT_MATCH},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

#define CMD "replay serve"
#define IGNORE_MAX 32
#define NAMES_MAX 16
#define LISTEN_BACKLOG 16
#define ACCEPT_POLL_MS 100 /* how soon a signal or the command's end is seen */
#define CONNECTIONS_MAX 256 /* connections played at once */

struct serve_args {
	const char *file;
	const char *listen;
	const char *port_file;
	struct cli_replay_pace pace;
	imap_time_us quiet;
	bool loop;
	regex_t ignore[IGNORE_MAX];
	size_t ignore_count;
	char **command; /* after "--", or NULL */
	const char *client_tls;
	const char *ca;
	const char *cert;
	const char *key;
	const char *names[NAMES_MAX];
	size_t name_count;
	struct imap_split segment;
	bool match_first_lines;
};

/* What one run holds, released by serve_end. */
struct serve_run {
	struct replay_recordings recs;
	struct replay_ensemble *ens;
	struct replay_runs *runs;
	struct replay_options opt;
	struct proxy_ca *ca;
	int lfd;
	unsigned port;
	struct replay_child child;
	unsigned accepted;
	imap_time_us last_end;  /* when the last connection ended; 0 none yet */
	int worst;              /* 0, 1 or 3, as replay_result's code */
};

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static int add_ignore(struct serve_args *a, const char *pattern)
{
	int rc;
	char msg[200];

	if (a->ignore_count == IGNORE_MAX)
		return cli_usage_error(CMD, "at most %d --ignore patterns", IGNORE_MAX);
	rc = regcomp(&a->ignore[a->ignore_count], pattern, REG_EXTENDED);
	if (rc != 0) {
		regerror(rc, &a->ignore[a->ignore_count], msg, sizeof(msg));
		return cli_usage_error(CMD, "--ignore '%s': %s", pattern, msg);
	}
	a->ignore_count++;
	return 0;
}

static int add_name(struct serve_args *a, const char *name)
{
	const char *why = NULL;
	char shown[4 * 96 + 1];

	if (a->name_count == NAMES_MAX)
		return cli_usage_error(CMD, "at most %d --name", NAMES_MAX);
	if (proxy_ca_name_check(name, &why) == PROXY_CA_NAME_BAD) {
		capture_escape(shown, sizeof(shown), (const uint8_t *)name, strnlen(name, 96), 0, NULL);
		return cli_usage_error(CMD, "--name '%s' is not a host name or IP address: %s", shown,
				       why);
	}
	a->names[a->name_count++] = name;
	return 0;
}

/* One option: 0, -1 after --help, or the usage error's exit code. */
static int serve_option(struct serve_args *a, int c, char **argv)
{
	char msg[200];
	int rc = cli_replay_pace_option(CMD, c, optarg, &a->pace);

	if (rc != 1)
		return rc;
	switch (c) {
	case OPT_LISTEN:
		a->listen = optarg;
		return 0;
	case OPT_PORT_FILE:
		a->port_file = optarg;
		return 0;
	case OPT_IGNORE:
		return add_ignore(a, optarg);
	case OPT_QUIET_LIMIT:
		if (cli_duration(optarg, 0.1, 24 * 3600.0, &a->quiet) != 0)
			return cli_usage_error(CMD, "--quiet-limit takes a duration from 100ms to 24h "
					       "(5, 5s, 500ms), not '%s'", optarg);
		return 0;
	case OPT_LOOP:
		a->loop = true;
		return 0;
	case OPT_CLIENT_TLS:
		a->client_tls = optarg;
		return 0;
	case OPT_CA:
		a->ca = optarg;
		return 0;
	case OPT_CERT:
		a->cert = optarg;
		return 0;
	case OPT_KEY:
		a->key = optarg;
		return 0;
	case OPT_NAME:
		return add_name(a, optarg);
	case OPT_SEGMENT:
		if (imap_split_parse(optarg, strlen(optarg), &a->segment, msg, sizeof(msg)) != 0)
			return cli_usage_error(CMD, "--segment: %s", msg);
		return 0;
	case OPT_MATCH:
		if (strcmp(optarg, "order") != 0 && strcmp(optarg, "first-lines") != 0)
			return cli_usage_error(CMD, "--match takes order or first-lines, not '%s'",
					       optarg);
		a->match_first_lines = strcmp(optarg, "first-lines") == 0;
		return 0;
	case 'h':
		fputs(cli_replay_serve_usage, stdout);
		return -1;
	default:
		return cli_option_error(CMD, c, argv, serve_options);
	}
}

/* What follows the options: FILE (options may follow it too) and
 * "-- COMMAND ARGS". Returns 1 to read more options, 0, or the usage
 * error's exit code. */
static int serve_operands(struct serve_args *a, int argc, char **argv)
{
	bool after_dashes = optind > 1 && strcmp(argv[optind - 1], "--") == 0;

	if (optind < argc && strcmp(argv[optind], "--") != 0 && a->file == NULL && !after_dashes) {
		a->file = argv[optind++];
		return 1;
	}
	if (optind < argc && after_dashes && argv[optind][0] != '\0' && a->command == NULL) {
		a->command = argv + optind; /* getopt consumed the "--" */
	} else if (optind < argc && strcmp(argv[optind], "--") == 0) {
		optind++;
		if (optind >= argc)
			return cli_usage_error(CMD, "'--' must be followed by a command");
		a->command = argv + optind;
	} else if (optind < argc) {
		return cli_usage_error(CMD, "unexpected argument '%s' (a command goes after '--')",
				       argv[optind]);
	} else if (after_dashes) {
		return cli_usage_error(CMD, "'--' must be followed by a command");
	}
	return 0;
}

static int serve_check(const struct serve_args *a)
{
	bool tls = a->client_tls != NULL && strcmp(a->client_tls, "none") != 0;

	if (a->file == NULL)
		return cli_usage_error(CMD, "which recording? imaptap replay serve FILE.pcap");
	if (a->loop && a->command != NULL)
		return cli_usage_error(CMD, "--loop and a command do not go together");
	if (tls && strcmp(a->client_tls, "implicit") != 0 && strcmp(a->client_tls, "starttls") != 0)
		return cli_usage_error(CMD, "--client-tls takes implicit, starttls or none, not '%s'",
				       a->client_tls);
	if ((a->cert == NULL) != (a->key == NULL))
		return cli_usage_error(CMD, "--cert and --key go together");
	if (tls && a->ca == NULL && a->cert == NULL)
		return cli_usage_error(CMD, "--client-tls %s needs --ca DIR or --cert FILE --key FILE",
				       a->client_tls);
	return 0;
}

static int parse_serve(int argc, char **argv, struct serve_args *a)
{
	int c, rc;

	optind = 1;
	opterr = 0;
	do {
		/* "+": stop at the first operand, so "-- COMMAND --its-flags" stays whole */
		while ((c = getopt_long(argc, argv, "+:h", serve_options, NULL)) != -1) {
			rc = serve_option(a, c, argv);
			if (rc != 0)
				return rc;
		}
		rc = serve_operands(a, argc, argv);
	} while (rc == 1);
	return rc != 0 ? rc : serve_check(a);
}

/* The certificate shown to TLS clients: given, or forged by the CA. */
static SSL_CTX *shown_certificate(const struct serve_args *a, struct proxy_ca **ca_r)
{
	static const char *const defaults[] = {"localhost", "127.0.0.1"};
	SSL_CTX *ctx;
	X509 *leaf;
	char err[600];

	if (a->cert != NULL) {
		ctx = replay_tls_server_files(a->cert, a->key, err, sizeof(err));
		if (ctx == NULL)
			cli_message("%s", err);
		return ctx;
	}
	*ca_r = proxy_ca_load(a->ca, err, sizeof(err));
	if (*ca_r == NULL) {
		cli_message("--ca %s: %s", a->ca, err);
		return NULL;
	}
	/* every --name was checked already: nothing is left out */
	leaf = proxy_ca_forge(*ca_r, a->name_count ? a->names : defaults,
			      a->name_count ? a->name_count : 2, NULL, 0, err, sizeof(err));
	ctx = leaf != NULL ? replay_tls_server_leaf(leaf, proxy_ca_leaf_key(*ca_r), err, sizeof(err))
			   : NULL;
	X509_free(leaf); /* the context holds its own reference */
	if (ctx == NULL)
		cli_message("cannot forge a certificate with %s: %s", a->ca, err);
	return ctx;
}

static int listen_on(const char *spec, struct serve_run *run, char *bound, size_t size)
{
	struct proxy_hostport hp;
	struct sockaddr_storage ss;
	char err[256];

	if (proxy_hostport_parse(spec, &hp, err, sizeof(err)) < 0) {
		cli_usage_error(CMD, "--listen %s", err);
		return CLI_EXIT_USAGE;
	}
	run->lfd = net_listen_tcp(hp.host, hp.port, LISTEN_BACKLOG, &ss, &run->port, err,
				  sizeof(err));
	if (run->lfd < 0) {
		if (run->lfd == NET_LISTEN_UNRESOLVED)
			cli_message("cannot resolve --listen %s: %s", spec, err);
		else
			cli_message("cannot listen on %s: %s (pick another with --listen, or port 0 for "
				    "any free one)",
				    spec, err);
		return CLI_EXIT_RUNTIME;
	}
	proxy_sockaddr_str((struct sockaddr *)&ss, bound, size);
	return CLI_EXIT_OK;
}

/* One connection, in its own thread. */
static void serve_connection(void *ctx, int fd, long session, struct replay_result *res)
{
	const struct serve_run *run = ctx;

	replay_serve_fd(run->ens, session, fd, &run->opt, res);
}

/* A connection's report, once it has ended. */
static void connection_ended(struct serve_run *run, const struct replay_run *done)
{
	if (run->recs.count > 1 && done->result.session > 0)
		fprintf(stderr, "imaptap: connection %u (session %u): ", done->n,
			done->result.session);
	else
		fprintf(stderr, "imaptap: connection %u: ", done->n);
	cli_write_escaped(stderr, done->result.report, strlen(done->result.report),
			  CAPTURE_ESCAPE_KEEP_NEWLINE);
	fflush(stderr);
	if (done->result.code > run->worst)
		run->worst = done->result.code;
	run->last_end = replay_now();
}

static void reap(struct serve_run *run, bool wait)
{
	const struct replay_run *done;

	while ((done = replay_runs_reap(run->runs, wait)) != NULL)
		connection_ended(run, done);
}

/* A connection past the sessions of the recording, or past what can run
 * at once, is told so and closed. */
static void refuse(struct serve_run *run, int fd, const char *why)
{
	char line[200];
	int n = snprintf(line, sizeof(line), "* BYE [imaptap] replay: %s\r\n", why);

	if (n > 0 && (size_t)n < sizeof(line) && send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0)
		(void)0; /* the client went already: the report says it all */
	close(fd);
	cli_message("connection %u: %s", run->accepted, why);
	run->worst = run->worst > 1 ? run->worst : 1;
}

/* The session a new connection plays: by connection order the next one
 * (a new round once all are played, with --loop); with --match
 * first-lines the connection picks (-1). */
static void start_connection(const struct serve_args *a, struct serve_run *run, int fd)
{
	long session = -1;
	char why[120];

	run->accepted++;
	if (a->loop)
		replay_ensemble_new_round(run->ens);
	if (!a->match_first_lines) {
		session = replay_ensemble_claim_next(run->ens);
		if (session < 0) {
			snprintf(why, sizeof(why), "the recording holds %zu session(s), and they are "
				 "played already", run->recs.count);
			refuse(run, fd, why);
			return;
		}
	}
	if (replay_runs_start(run->runs, fd, session) == 0)
		cli_message("connection %u: cannot run beside %zu others", run->accepted,
			    replay_runs_active(run->runs));
}

/* How long to wait for the next connection once none is open: the
 * recorded pause before the next session opened (scaled), and then
 * --quiet-limit. */
static imap_time_us next_connection_allowed(const struct serve_run *run)
{
	imap_time_us ended = 0, gap = 0;
	size_t next = run->recs.count;

	for (size_t i = 0; i < run->recs.count; i++) {
		const struct replay_recording *r = &run->recs.recs[i];

		if (!replay_ensemble_claimed(run->ens, i)) {
			next = next < i ? next : i;
			continue;
		}
		if (r->count > 0 && r->opened + r->units[r->count - 1].at > ended)
			ended = r->opened + r->units[r->count - 1].at;
	}
	if (next < run->recs.count && run->opt.speed > 0 && run->recs.recs[next].opened > ended)
		gap = (imap_time_us)((double)(run->recs.recs[next].opened - ended) / run->opt.speed);
	return run->opt.quiet + gap;
}

/* True when a replay without a command or --loop is over: every session
 * played, or none running and no new connection for as long as the
 * recording paused before its next session, and --quiet-limit. */
static bool all_played(const struct serve_run *run)
{
	bool claimed = true;

	if (run->accepted == 0 || replay_runs_active(run->runs) > 0)
		return false;
	for (size_t i = 0; i < run->recs.count && claimed; i++)
		claimed = replay_ensemble_claimed(run->ens, i);
	return claimed || replay_now() - run->last_end > next_connection_allowed(run);
}

/* The sessions no connection played are divergences. */
static void never_opened(struct serve_run *run)
{
	char what[300];

	for (size_t i = 0; i < run->recs.count; i++) {
		if (replay_ensemble_claimed(run->ens, i))
			continue;
		cli_replay_describe(&run->recs.recs[i], what, sizeof(what));
		cli_message("%s was never played: the client made fewer connections than the "
			    "recording (or none of them began as this session did)", what);
		run->worst = run->worst > 1 ? run->worst : 1;
	}
}

/* A CI log says what is replayed, how the bytes are cut, and where. */
static void say_replaying(const struct serve_args *a, const struct serve_run *run,
			  const char *bound)
{
	char mode[32], how[48] = "";
	const struct replay_recording *rec = &run->recs.recs[0];
	imap_time_us length = rec->count > 0 ? rec->units[rec->count - 1].at : 0;
	size_t units = 0;

	if (a->segment.mode != IMAP_SPLIT_NONE) {
		imap_split_describe(&a->segment, mode, sizeof(mode));
		snprintf(how, sizeof(how), ", --segment %s", mode);
	}
	if (run->recs.count == 1) {
		cli_message("replaying session %u of %s (%zu units, %.3f s%s) on %s", rec->session,
			    a->file, rec->count, (double)length / 1e6, how, bound);
		return;
	}
	for (size_t i = 0; i < run->recs.count; i++)
		units += run->recs.recs[i].count;
	cli_message("replaying %zu sessions of %s at once (%zu units%s; connections matched by %s, "
		    "%s) on %s", run->recs.count, a->file, units, how,
		    a->match_first_lines ? "their first lines" : "the order they open in",
		    a->pace.order_by_session ? "each session in its own order" :
		    "in the order the recording shows between sessions", bound);
}

/* Everything up to the first accept: the recording, TLS, the listener,
 * the port file, the command. Returns an exit code. */
static int serve_start(const struct serve_args *a, struct serve_run *run)
{
	char bound[64], err[256];
	int rc;

	rc = cli_replay_load(a->file, &a->pace, &run->recs);
	if (rc != CLI_EXIT_OK)
		return rc;
	run->ens = replay_ensemble_new(&run->recs, REPLAY_GATES_CLIENT, !a->pace.order_by_session,
				       a->pace.speed);
	run->runs = replay_runs_new(serve_connection, run, CONNECTIONS_MAX);
	if (run->ens == NULL || run->runs == NULL) {
		cli_message("out of memory");
		return CLI_EXIT_RUNTIME;
	}
	run->opt = (struct replay_options){
		.speed = a->pace.speed,
		.timeout = cli_replay_timeout(&a->pace, &run->recs),
		.quiet = a->quiet,
		.ignore = a->ignore,
		.ignore_count = a->ignore_count,
		.segment = a->segment,
	};
	if (a->client_tls != NULL && strcmp(a->client_tls, "none") != 0) {
		run->opt.tls = shown_certificate(a, &run->ca);
		run->opt.implicit_tls = strcmp(a->client_tls, "implicit") == 0;
		if (run->opt.tls == NULL)
			return CLI_EXIT_RUNTIME;
	}
	rc = listen_on(a->listen, run, bound, sizeof(bound));
	if (rc != CLI_EXIT_OK)
		return rc;
	if (a->port_file != NULL && cli_write_port_file(a->port_file, run->port) != 0) {
		cli_message("cannot write the port file %s: %s", a->port_file, strerror(errno));
		return CLI_EXIT_RUNTIME;
	}
	say_replaying(a, run, bound);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	if (a->command != NULL &&
	    replay_child_start(&run->child, a->command, run->port, run->lfd, err, sizeof(err)) != 0) {
		cli_message("%s", err);
		return CLI_EXIT_RUNTIME;
	}
	return CLI_EXIT_OK;
}

/* The command ended: its verdict joins the replay's. */
static void command_ended(struct serve_run *run, int exit_code)
{
	cli_message("%s exited with %d", run->child.name, exit_code);
	if (exit_code != 0 && run->worst < 1)
		run->worst = 1;
	if (run->accepted == 0) {
		cli_message("%s never connected to IMAPTAP_PORT: nothing was replayed",
			    run->child.name);
		run->worst = 1;
	}
}

/* Accepts and serves until done: every session of the recording, every
 * connection (--loop), or as long as the command runs. Then waits for
 * the connections still running. */
static void serve_loop(const struct serve_args *a, struct serve_run *run)
{
	int fd, exit_code;
	bool command_done = false;

	while (!stopping) {
		struct pollfd p = {.fd = run->lfd, .events = POLLIN};

		reap(run, false);
		if (replay_child_ended(&run->child, &exit_code)) {
			command_ended(run, exit_code);
			command_done = true;
			break;
		}
		if (!a->loop && a->command == NULL && all_played(run))
			break;
		if (poll(&p, 1, ACCEPT_POLL_MS) <= 0)
			continue;
		fd = accept4(run->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			start_connection(a, run, fd);
	}
	if (stopping)
		replay_runs_interrupt(run->runs);
	reap(run, true);
	if (!a->loop && !stopping && (command_done ? run->accepted > 0 : true))
		never_opened(run);
}

static void serve_end(struct serve_args *a, struct serve_run *run)
{
	replay_child_stop(&run->child); /* interrupted: the command goes too */
	replay_runs_free(&run->runs);
	if (run->lfd >= 0)
		close(run->lfd);
	replay_ensemble_free(&run->ens);
	replay_recordings_free(&run->recs);
	for (size_t i = 0; i < a->ignore_count; i++)
		regfree(&a->ignore[i]);
	SSL_CTX_free(run->opt.tls);
	proxy_ca_free(&run->ca);
}

int cli_replay_serve_main(int argc, char **argv)
{
	struct serve_args a = {.listen = "127.0.0.1:0", .pace = {.speed = 1},
			       .quiet = 10 * IMAP_US_PER_S};
	struct serve_run run = {.lfd = -1, .child = {.pid = -1}};
	int rc, worst;

	rc = parse_serve(argc, argv, &a);
	if (rc == 0)
		rc = serve_start(&a, &run);
	if (rc != 0) {
		serve_end(&a, &run);
		return rc < 0 ? CLI_EXIT_OK : rc; /* -1: --help */
	}
	serve_loop(&a, &run);
	worst = run.worst;
	serve_end(&a, &run);
	return worst == 3 ? CLI_EXIT_RUNTIME : worst == 1 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
}
