/* imaptap proxy: flags in, proxy and timeline set up, loop run. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "capture/events.h"
#include "capture/pcap_writer.h"
#include "capture/timeline.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "imap/redact.h"
#include "proxy/fault.h"
#include "proxy/proxy.h"

static const char proxy_usage[] =
	"usage: imaptap proxy --upstream HOST:PORT [OPTIONS]\n"
	"\n"
	"Relays IMAP clients to HOST:PORT, every byte unchanged, and prints one\n"
	"timeline row per IMAP line on stderr:\n"
	"  09:17:35.123456 #1 C> a1 LOGIN alice ******\n"
	"  09:17:35.124001 #1 S< a1 OK Logged in  (LOGIN 545 us)\n"
	"C> client to server, S< server to client, P< written by the proxy itself,\n"
	"-- session events. Literals show as {N bytes}; passwords and SASL data are\n"
	"masked with '*' of the same length.\n"
	"\n"
	"options:\n"
	"  --upstream HOST:PORT     the IMAP server (required); [ADDRESS]:PORT for IPv6\n"
	"  --listen ADDR:PORT       where clients connect (default 127.0.0.1:1143);\n"
	"                           port 0 picks a free port, printed on stderr\n"
	"  --upstream-tls implicit|starttls|none\n"
	"                           TLS from the first byte, STARTTLS after the greeting\n"
	"                           (done by the proxy), or plain IMAP (default:\n"
	"                           implicit for port 993, else none)\n"
	"  --upstream-ca FILE       also trust this CA (PEM) for the upstream certificate\n"
	"  --insecure-upstream      do not verify the upstream certificate (said on every\n"
	"                           session's timeline)\n"
	"  --sni NAME               SNI sent upstream and name the certificate must carry\n"
	"                           (default: the client's SNI when it is a host name,\n"
	"                           else the upstream host)\n"
	"  --client-tls none|implicit|starttls\n"
	"                           what clients speak to the proxy (default none);\n"
	"                           starttls: the proxy answers the client's STARTTLS\n"
	"  --ca DIR                 CA that signs the certificates shown to clients\n"
	"                           (DIR/ca.crt, DIR/ca.key; created when missing)\n"
	"  --cert FILE --key FILE   show this certificate to clients instead\n"
	"  --keylog FILE            append the TLS secrets of both legs (NSS key log\n"
	"                           format, mode 0600) so Wireshark can decrypt raw captures\n"
	"  --handshake-timeout SECONDS\n"
	"                           give up on an upstream TCP connect or a TLS handshake\n"
	"                           on either leg after SECONDS (default 10)\n"
	"  --port-file FILE         write the listening port to FILE once listening\n"
	"  --allow-remote           allow a --listen address other than loopback (anyone\n"
	"                           who connects is relayed and recorded)\n"
	"  --max-sessions N         refuse clients beyond N open sessions with a BYE\n"
	"                           (default: as many as descriptors allow)\n"
	"  --user NAME              started as root: drop to NAME's privileges once\n"
	"                           listening and with every output file open\n"
	"  --pcap FILE              write every session's client leg as plain IMAP over\n"
	"                           TCP (server port 143) to FILE, mode 0600; Wireshark\n"
	"                           and 'imaptap analyze' read it\n"
	"  --pcap-max-size MIB      start FILE.1.pcap, FILE.2.pcap ... when the pcap\n"
	"                           reaches MIB MiB\n"
	"  --events FILE|-          write the JSONL event log to FILE (mode 0600) or to\n"
	"                           stdout (docs/events.md)\n"
	"  --overwrite              replace a --pcap or --events file that holds an\n"
	"                           earlier run (without it, such a file is refused)\n"
	"  --append                 add this run's records to an existing --events file\n"
	"                           (each run's records carry their own run id)\n"
	"  --no-redact              keep passwords and SASL data in every output\n"
	"  --redact-bodies          also mask the bytes of every literal (message bodies),\n"
	"                           keeping their lengths and line ends\n"
	"\n"
	"anomaly rules (docs/rules.md), shown as '!' rows and anomaly events:\n"
	CLI_RULES_HELP
	"  --no-rules               framing, timeline and outputs only, no rules\n"
	"\n"
	"faults, on purpose and only when asked for (docs/faults.md); every action\n"
	"is marked as injected in the timeline (~ rows), the event log and the pcap:\n"
	"  --fault SPEC             repeatable; SPEC is one of\n"
	"                             hold-idle-completion:D   delay:c2s|s2c:D\n"
	"                             split:c2s|s2c:byte|random[:SEED]|coalesce\n"
	"                             stop-reading:client|server:D\n"
	"                             bye:after-idle-continuation|in-literal[:c2s|s2c]\n"
	"                             answer:COMMAND:NO|BAD\n"
	"                           then ,session=N ,nth=N ,after=COMMAND; D as 500ms, 2s\n"
	"\n"
	"  --max-line BYTES         observe at most BYTES of one line (default 65536);\n"
	"                           longer lines are relayed whole and shown cut\n"
	"  --quiet                  no timeline rows, only errors and session problems\n"
	"  --color auto|always|never  colour the timeline (default auto: on a terminal)\n"
	"  -h, --help               this text\n"
	"\n"
	"SIGINT or SIGTERM stops accepting, flushes open sessions and exits 0.\n"
	"SIGHUP reopens the pcap and the event log (after log rotation moved them,\n"
	"or after a write error stopped them).\n"
	"exit codes: 0 stopped cleanly, 2 usage error, 3 cannot listen or resolve\n";

enum {
	OPT_UPSTREAM = 256,
	OPT_LISTEN,
	OPT_UPSTREAM_TLS,
	OPT_PORT_FILE,
	OPT_NO_REDACT,
	OPT_MAX_LINE,
	OPT_QUIET,
	OPT_COLOR,
	OPT_CLIENT_TLS,
	OPT_UPSTREAM_CA,
	OPT_INSECURE,
	OPT_SNI,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_KEYLOG,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_PCAP,
	OPT_PCAP_MAX_SIZE,
	OPT_EVENTS,
	OPT_REDACT_BODIES,
	OPT_RULE_THRESHOLD,
	OPT_NO_RULES,
	OPT_ALLOW_REMOTE,
	OPT_MAX_SESSIONS,
	OPT_USER,
	OPT_FAULT,
	OPT_OVERWRITE,
	OPT_APPEND,
};

static const struct option proxy_options[] = {
	{"upstream", required_argument, NULL, OPT_UPSTREAM},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"upstream-tls", required_argument, NULL, OPT_UPSTREAM_TLS},
	{"port-file", required_argument, NULL, OPT_PORT_FILE},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"max-line", required_argument, NULL, OPT_MAX_LINE},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"color", required_argument, NULL, OPT_COLOR},
	{"client-tls", required_argument, NULL, OPT_CLIENT_TLS},
	{"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
	{"insecure-upstream", no_argument, NULL, OPT_INSECURE},
	{"sni", required_argument, NULL, OPT_SNI},
	{"ca", required_argument, NULL, OPT_CA},
	{"cert", required_argument, NULL, OPT_CERT},
	{"key", required_argument, NULL, OPT_KEY},
	{"keylog", required_argument, NULL, OPT_KEYLOG},
	{"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
	{"pcap", required_argument, NULL, OPT_PCAP},
	{"pcap-max-size", required_argument, NULL, OPT_PCAP_MAX_SIZE},
	{"events", required_argument, NULL, OPT_EVENTS},
	{"redact-bodies", no_argument, NULL, OPT_REDACT_BODIES},
	{"stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"done-stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"idle-max", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"keepalive-gap", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"no-rules", no_argument, NULL, OPT_NO_RULES},
	{"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
	{"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
	{"user", required_argument, NULL, OPT_USER},
	{"fault", required_argument, NULL, OPT_FAULT},
	{"overwrite", no_argument, NULL, OPT_OVERWRITE},
	{"append", no_argument, NULL, OPT_APPEND},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

struct proxy_args {
	const char *upstream;
	const char *listen;
	const char *upstream_tls;
	const char *port_file;
	const char *color;
	const char *client_tls;
	const char *upstream_ca;
	const char *sni;
	const char *ca;
	const char *cert;
	const char *key;
	const char *keylog;
	int insecure;
	int no_redact;
	int quiet;
	size_t max_line;
	unsigned handshake_timeout;
	const char *pcap;
	uint64_t pcap_max_mib;
	const char *events;
	int redact_bodies;
	int no_rules;
	int allow_remote;
	unsigned max_sessions;
	const char *user;
	struct imap_tracker_config thresholds;
	struct proxy_fault faults[PROXY_FAULTS_MAX];
	size_t fault_count;
	bool overwrite; /* --pcap and --events may replace an earlier run's */
	bool append;    /* --events adds to an earlier run's */
};

struct run {
	struct event_base *base;
	struct proxy *proxy;
	int signals;
};

static void log_message(void *ctx, const char *message)
{
	(void)ctx;
	cli_message("%s", message);
}

/* libevent's own warnings, which it would print raw, through the gate */
static void libevent_message(int severity, const char *message)
{
	if (severity != EVENT_LOG_DEBUG)
		cli_message("libevent: %s", message);
}

/* Log rotation moved the outputs away, or a full disk stopped them. */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	const struct capture_sinks *sinks = arg;

	(void)sig;
	(void)what;
	capture_sinks_reopen(sinks);
	cli_message("SIGHUP: the pcap and the event log reopened");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct run *run = arg;

	(void)what;
	if (run->signals++ == 0)
		cli_message("%s: stopping; %u session(s) open", sig == SIGINT ? "SIGINT" : "SIGTERM",
			    proxy_session_count(run->proxy));
	else
		cli_message("second signal: exiting now");
	proxy_shutdown(run->proxy);
}

static int parse_args(int argc, char **argv, struct proxy_args *a)
{
	unsigned long long v;
	int c, index = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", proxy_options, &index)) != -1) {
		switch (c) {
		case OPT_RULE_THRESHOLD: {
			char flag[32];
			int rc;

			snprintf(flag, sizeof(flag), "--%s", proxy_options[index].name);
			rc = cli_rules_option("proxy", flag, optarg, &a->thresholds);
			if (rc != 0)
				return rc;
			break;
		}
		case OPT_NO_RULES:
			a->no_rules = 1;
			break;
		case OPT_ALLOW_REMOTE:
			a->allow_remote = 1;
			break;
		case OPT_MAX_SESSIONS:
			if (cli_number(optarg, 1, 1000000, &v) != 0)
				return cli_usage_error("proxy",
						       "--max-sessions takes a number from 1 to 1000000, not '%s'",
						       optarg);
			a->max_sessions = (unsigned)v;
			break;
		case OPT_USER:
			a->user = optarg;
			break;
		case OPT_OVERWRITE:
			a->overwrite = true;
			break;
		case OPT_APPEND:
			a->append = true;
			break;
		case OPT_FAULT: {
			char why[300];

			if (a->fault_count == PROXY_FAULTS_MAX)
				return cli_usage_error("proxy", "at most %d --fault options", PROXY_FAULTS_MAX);
			if (proxy_fault_parse(optarg, strlen(optarg), &a->faults[a->fault_count], why,
					      sizeof(why)) != 0)
				return cli_usage_error("proxy", "--fault '%.200s': %s; SPEC is %s", optarg,
						       why, proxy_fault_grammar);
			a->fault_count++;
			break;
		}
		case OPT_UPSTREAM:
			a->upstream = optarg;
			break;
		case OPT_LISTEN:
			a->listen = optarg;
			break;
		case OPT_UPSTREAM_TLS:
			a->upstream_tls = optarg;
			break;
		case OPT_PORT_FILE:
			a->port_file = optarg;
			break;
		case OPT_NO_REDACT:
			a->no_redact = 1;
			break;
		case OPT_MAX_LINE:
			if (cli_number(optarg, 64, 64ull * 1024 * 1024, &v) != 0)
				return cli_usage_error("proxy",
						       "--max-line takes a number of bytes from 64 to 67108864, not '%s'",
						       optarg);
			a->max_line = (size_t)v;
			break;
		case OPT_HANDSHAKE_TIMEOUT:
			if (cli_number(optarg, 1, 3600, &v) != 0)
				return cli_usage_error("proxy",
						       "--handshake-timeout takes seconds from 1 to 3600, not '%s'",
						       optarg);
			a->handshake_timeout = (unsigned)v;
			break;
		case OPT_PCAP:
			a->pcap = optarg;
			break;
		case OPT_PCAP_MAX_SIZE:
			if (cli_number(optarg, 1, 1024ull * 1024, &v) != 0)
				return cli_usage_error("proxy",
						       "--pcap-max-size takes MiB from 1 to 1048576, not '%s'",
						       optarg);
			a->pcap_max_mib = v;
			break;
		case OPT_EVENTS:
			a->events = optarg;
			break;
		case OPT_REDACT_BODIES:
			a->redact_bodies = 1;
			break;
		case OPT_CLIENT_TLS:
			a->client_tls = optarg;
			break;
		case OPT_UPSTREAM_CA:
			a->upstream_ca = optarg;
			break;
		case OPT_INSECURE:
			a->insecure = 1;
			break;
		case OPT_SNI:
			a->sni = optarg;
			break;
		case OPT_CA:
			a->ca = optarg;
			break;
		case OPT_CERT:
			a->cert = optarg;
			break;
		case OPT_KEY:
			a->key = optarg;
			break;
		case OPT_KEYLOG:
			a->keylog = optarg;
			break;
		case OPT_QUIET:
			a->quiet = 1;
			break;
		case OPT_COLOR:
			a->color = optarg;
			break;
		case 'h':
			fputs(proxy_usage, stdout);
			return -1;
		case ':':
		default:
			return cli_option_error("proxy", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("proxy", "unexpected argument '%s'", argv[optind]);
	if (a->upstream == NULL)
		return cli_usage_error("proxy", "--upstream HOST:PORT is required");
	return cli_output_flags("proxy", a->overwrite, a->append, a->pcap, a->events);
}

/* "implicit", "starttls" or "none". */
static int tls_mode(const char *flag, const char *word, enum proxy_tls_mode *out)
{
	if (word == NULL)
		return 0;
	if (strcmp(word, "none") == 0) {
		*out = PROXY_TLS_NONE;
		return 0;
	}
	if (strcmp(word, "implicit") == 0) {
		*out = PROXY_TLS_IMPLICIT;
		return 0;
	}
	if (strcmp(word, "starttls") == 0) {
		*out = PROXY_TLS_STARTTLS;
		return 0;
	}
	cli_usage_error("proxy", "%s takes implicit, starttls or none, not '%s'", flag, word);
	return -1;
}

/* The pcap and the event log, when asked for; *made_r lists the files
 * this run created, to be removed if it does not start. */
static int add_outputs(const struct proxy_args *a, struct capture_sinks *sinks,
		       struct cli_fresh_files *made)
{
	struct capture_sink sink;
	char err[4096];
	bool refused;

	if (a->pcap != NULL) {
		struct capture_pcap_config pc = {
			.path = a->pcap,
			.mode = a->overwrite ? CAPTURE_OUTFILE_OVERWRITE : CAPTURE_OUTFILE_NEW,
			.max_bytes = a->pcap_max_mib * 1024 * 1024,
			.log = log_message,
		};

		cli_fresh_note(made, a->pcap);
		if (capture_pcap_writer_new(&pc, &sink, &refused, err, sizeof(err)) != 0) {
			cli_message("--pcap: %s%s", err,
				    refused ? "; pass --overwrite to replace it" : "");
			return -1;
		}
		capture_sinks_add(sinks, sink);
	}
	if (a->events != NULL) {
		struct capture_events_config ec = {
			.path = a->events,
			.mode = cli_events_mode(a->overwrite, a->append),
			.command = "proxy",
			.version = IMAPTAP_VERSION,
			.started = cli_now(),
			.log = log_message,
		};

		cli_fresh_note(made, a->events);
		if (capture_events_new(&ec, &sink, &refused, err, sizeof(err)) != 0) {
			cli_message("--events: %s%s", err,
				    refused ? "; pass --overwrite to replace it or --append to add "
					      "to it" : "");
			return -1;
		}
		capture_sinks_add(sinks, sink);
	}
	return 0;
}

int cli_proxy_main(int argc, char **argv)
{
	struct proxy_args a = {.listen = "127.0.0.1:1143", .color = "auto"};
	struct proxy_config config = {0};
	struct capture_sinks sinks = {0};
	struct run run = {0};
	struct cli_fresh_files made = {0};
	bool serving = false;
	struct event *sigint = NULL, *sigterm = NULL, *sighup = NULL;
	enum proxy_error code;
	char err[512];
	int color, rc;

	rc = parse_args(argc, argv, &a);
	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	/* Relaying allocates and frees buffers all the time; glibc would hand
	 * the top of the heap back to the kernel after each burst and fault it
	 * in again on the next (a third of the CPU of a TLS relay). Keep up to
	 * 64 MiB of freed memory instead. */
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TOP_PAD, 1024 * 1024);
	/* Setting the trim threshold turns off glibc's sliding mmap threshold:
	 * every read buffer of 128 KiB or more was then a fresh mapping, a
	 * page fault per 4 KiB relayed. Such buffers come from the heap too. */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	if (proxy_hostport_parse(a.upstream, &config.upstream, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--upstream %s", err);
	if (config.upstream.port == 0)
		return cli_usage_error("proxy", "--upstream needs a port from 1 to 65535");
	if (proxy_hostport_parse(a.listen, &config.listen, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--listen %s", err);
	if (tls_mode("--upstream-tls", a.upstream_tls, &config.upstream_tls) < 0 ||
	    tls_mode("--client-tls", a.client_tls, &config.client_tls) < 0)
		return CLI_EXIT_USAGE;
	if (a.upstream_tls == NULL && config.upstream.port == 993)
		config.upstream_tls = PROXY_TLS_IMPLICIT;
	if ((a.cert == NULL) != (a.key == NULL))
		return cli_usage_error("proxy", "--cert and --key go together");
	if (config.client_tls != PROXY_TLS_NONE && a.cert == NULL && a.ca == NULL)
		return cli_usage_error("proxy",
				       "--client-tls %s needs --ca DIR (created when missing; clients must trust DIR/ca.crt) "
				       "or --cert FILE --key FILE",
				       a.client_tls);
	if (config.client_tls == PROXY_TLS_NONE && (a.cert != NULL || a.ca != NULL))
		return cli_usage_error("proxy", "--ca, --cert and --key are for a TLS client leg: add --client-tls implicit");
	if (config.upstream_tls == PROXY_TLS_NONE && (a.upstream_ca || a.insecure || a.sni))
		return cli_usage_error("proxy",
				       "--upstream-ca, --insecure-upstream and --sni are for a TLS upstream: add --upstream-tls implicit");
	config.sni = a.sni;
	config.upstream_ca = a.upstream_ca;
	config.insecure_upstream = a.insecure;
	config.ca_dir = a.ca;
	config.cert_file = a.cert;
	config.key_file = a.key;
	config.keylog_file = a.keylog;
	color = cli_color_choice(a.color, stderr);
	if (color < 0)
		return cli_usage_error("proxy", "--color takes auto, always or never, not '%s'", a.color);
	config.max_line = a.max_line;
	config.connect_timeout_s = a.handshake_timeout;
	config.no_rules = a.no_rules;
	config.thresholds = a.thresholds;
	config.faults = a.faults;
	config.fault_count = a.fault_count;
	config.redact_flags = (a.no_redact ? 0 : IMAP_REDACT_CREDENTIALS) |
			      (a.redact_bodies ? IMAP_REDACT_BODIES : 0);
	config.log = log_message;
	config.max_sessions = a.max_sessions;
	if (a.pcap_max_mib > 0 && a.pcap == NULL)
		return cli_usage_error("proxy", "--pcap-max-size goes with --pcap FILE");

	if (!a.quiet) {
		struct capture_timeline_config tc = {.out = stderr, .color = color != 0};
		struct capture_sink timeline = capture_timeline_new(&tc);

		if (timeline.ops == NULL) {
			cli_message("out of memory");
			return CLI_EXIT_RUNTIME;
		}
		capture_sinks_add(&sinks, timeline);
		/* rows are written in batches and flushed after each read */
		setvbuf(stderr, NULL, _IOFBF, 64 * 1024);
	}
	if (add_outputs(&a, &sinks, &made) != 0) {
		capture_sinks_destroy(&sinks);
		cli_fresh_remove(&made);
		return CLI_EXIT_RUNTIME;
	}
	cli_raise_descriptor_limit(a.max_sessions);
	event_set_log_callback(libevent_message);
	run.base = event_base_new();
	if (run.base == NULL) {
		cli_message("cannot start the event loop: %s", strerror(errno));
		capture_sinks_destroy(&sinks);
		cli_fresh_remove(&made);
		return CLI_EXIT_RUNTIME;
	}
	run.proxy = proxy_new(run.base, &config, &sinks, &code, err, sizeof(err));
	if (run.proxy == NULL) {
		if (code == PROXY_ERR_TLS)
			cli_message("TLS: %s", err);
		else if (code == PROXY_ERR_RESOLVE && strstr(err, config.upstream.host) != NULL)
			cli_message("upstream: %s (check the name, or give an IP address)", err);
		else
			cli_message("%s", err);
		capture_sinks_destroy(&sinks);
		cli_fresh_remove(&made);
		event_base_free(run.base);
		return CLI_EXIT_RUNTIME;
	}
	/* before anything says the proxy listens: a signal from then on
	 * stops it cleanly */
	sigint = evsignal_new(run.base, SIGINT, on_signal, &run);
	sigterm = evsignal_new(run.base, SIGTERM, on_signal, &run);
	sighup = evsignal_new(run.base, SIGHUP, on_sighup, &sinks);
	if (sigint == NULL || sigterm == NULL || sighup == NULL || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0 || evsignal_add(sighup, NULL) < 0) {
		cli_message("cannot install signal handlers");
		rc = CLI_EXIT_RUNTIME;
		goto out;
	}
	if (a.port_file != NULL && cli_write_port_file(a.port_file, proxy_listen_port(run.proxy)) < 0) {
		cli_message("cannot write the port file %s: %s", a.port_file, strerror(errno));
		rc = CLI_EXIT_RUNTIME;
		goto out;
	}
	if (!proxy_listen_is_loopback(run.proxy) && !a.allow_remote) {
		rc = cli_usage_error("proxy",
				     "--listen %s is reachable from other hosts: anyone who connects "
				     "would be relayed to the upstream and recorded; add --allow-remote "
				     "if that is what you want, or listen on 127.0.0.1",
				     proxy_listen_str(run.proxy));
		goto out;
	}
	if (!proxy_listen_is_loopback(run.proxy))
		cli_message("warning: listening on %s, reachable from other hosts: anyone who connects "
			    "is relayed to the upstream and recorded",
			    proxy_listen_str(run.proxy));
	if (a.user != NULL) {
		const char *files[] = {a.pcap, a.events, a.keylog};

		if (cli_drop_privileges(a.user, files, sizeof(files) / sizeof(files[0])) != 0) {
			rc = CLI_EXIT_RUNTIME;
			goto out;
		}
	}
	cli_message("listening on %s (%s), upstream %s:%u (%s%s)", proxy_listen_str(run.proxy),
		    config.client_tls == PROXY_TLS_IMPLICIT   ? "TLS"
		    : config.client_tls == PROXY_TLS_STARTTLS ? "STARTTLS"
							      : "plain",
		    config.upstream.host,
		    config.upstream.port,
		    config.upstream_tls == PROXY_TLS_IMPLICIT   ? "TLS"
		    : config.upstream_tls == PROXY_TLS_STARTTLS ? "STARTTLS"
								: "plain",
		    config.insecure_upstream ? ", certificate NOT verified" : "");

	for (size_t i = 0; i < a.fault_count; i++) {
		char spec[128], how[300];

		proxy_fault_spec_str(&a.faults[i], spec, sizeof(spec));
		proxy_fault_explain(&a.faults[i], how, sizeof(how));
		cli_message("FAULT ACTIVE: --fault %s %s", spec, how);
	}

	serving = true;
	event_base_dispatch(run.base);
	rc = CLI_EXIT_OK;
out:
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sighup != NULL)
		event_free(sighup);
	proxy_free(&run.proxy);
	capture_sinks_destroy(&sinks);
	if (!serving)
		cli_fresh_remove(&made); /* a start that failed leaves nothing */
	event_base_free(run.base);
	fflush(stderr);
	return rc;
}
