/* imaptap proxy: flags in, proxy and timeline set up, loop run. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "capture/events.h"
#include "capture/pcap_writer.h"
#include "capture/settings.h"
#include "capture/timeline.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/config_file.h"
#include "cli/config_reload.h"
#include "imap/framer.h"
#include "imap/redact.h"
#include "cli/proxy_faults.h"
#include "cli/proxy_run.h"
#include "cli/proxy_usage.h"
#include "proxy/pcap_listen.h"
#include "proxy/proxy.h"

enum {
	OPT_UPSTREAM = 256,
	OPT_LISTEN,
	OPT_UPSTREAM_TLS,
	OPT_PORT_FILE,
	OPT_NO_REDACT,
	OPT_MAX_LINE,
	OPT_QUIET,
	OPT_ANOMALIES_ONLY,
	OPT_WIDTH,
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
	OPT_PCAP_FORMAT,
	OPT_PCAP_LISTEN,
	OPT_EVENTS,
	OPT_REDACT_BODIES,
	OPT_RULE_THRESHOLD,
	OPT_NO_RULES,
	OPT_ALLOW_REMOTE,
	OPT_ACCEPT_PROXY,
	OPT_SEND_PROXY,
	OPT_CONFIG,
	OPT_MAX_SESSIONS,
	OPT_WORKERS,
	OPT_USER,
	OPT_FAULT,
	OPT_PERSONA,
	OPT_OVERWRITE,
	OPT_APPEND,
	OPT_RAW_PCAP,
	OPT_ROUTE,
	OPT_TRANSPARENT,
	OPT_METRICS,
};

static const struct option proxy_options[] = {
	{"upstream", required_argument, NULL, OPT_UPSTREAM},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"upstream-tls", required_argument, NULL, OPT_UPSTREAM_TLS},
	{"port-file", required_argument, NULL, OPT_PORT_FILE},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"max-line", required_argument, NULL, OPT_MAX_LINE},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"anomalies-only", no_argument, NULL, OPT_ANOMALIES_ONLY},
	{"width", required_argument, NULL, OPT_WIDTH},
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
	{"pcap-format", required_argument, NULL, OPT_PCAP_FORMAT},
	{"pcap-listen", required_argument, NULL, OPT_PCAP_LISTEN},
	{"events", required_argument, NULL, OPT_EVENTS},
	{"redact-bodies", no_argument, NULL, OPT_REDACT_BODIES},
	{"stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"done-stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"idle-max", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"keepalive-gap", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"no-rules", no_argument, NULL, OPT_NO_RULES},
	{"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
	{"accept-proxy", no_argument, NULL, OPT_ACCEPT_PROXY},
	{"send-proxy", required_argument, NULL, OPT_SEND_PROXY},
	{"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"user", required_argument, NULL, OPT_USER},
	{"fault", required_argument, NULL, OPT_FAULT},
	{"persona", required_argument, NULL, OPT_PERSONA},
	{"overwrite", no_argument, NULL, OPT_OVERWRITE},
	{"append", no_argument, NULL, OPT_APPEND},
	{"raw-pcap", required_argument, NULL, OPT_RAW_PCAP},
	{"metrics", required_argument, NULL, OPT_METRICS},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"route", required_argument, NULL, OPT_ROUTE},
	{"transparent", no_argument, NULL, OPT_TRANSPARENT},
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
	const char *raw_pcap;
	bool insecure;
	bool no_redact;
	bool quiet;
	bool anomalies_only;
	size_t width;
	bool width_given;
	size_t max_line;
	unsigned handshake_timeout;
	const char *pcap;
	const char *pcap_listen;
	const char *metrics;
	uint64_t pcap_max_mib;
	enum capture_pcap_format pcap_format;
	const char *events;
	bool redact_bodies;
	bool no_rules;
	bool allow_remote;
	bool accept_proxy;
	int send_proxy;
	unsigned max_sessions;
	unsigned workers;
	const char *user;
	struct imap_tracker_config thresholds;
	unsigned thresholds_pinned; /* bit i: the command line gave cli_rules_names[i] */
	const struct cli_config_args *from; /* the file's options and the command line's */
	struct cli_faults faults;
	bool overwrite; /* --pcap and --events may replace an earlier run's */
	bool append;    /* --events adds to an earlier run's */
	bool transparent;
	struct proxy_route_spec routes[PROXY_ROUTES_MAX];
	size_t route_count;
};

static void log_message(void *ctx, const char *message)
{
	(void)ctx;
	cli_message("%s", message);
}

/* Options that only keep their word, and where it goes. */
static const struct {
	int option;
	size_t field;
} word_options[] = {
	{OPT_UPSTREAM, offsetof(struct proxy_args, upstream)},
	{OPT_LISTEN, offsetof(struct proxy_args, listen)},
	{OPT_UPSTREAM_TLS, offsetof(struct proxy_args, upstream_tls)},
	{OPT_PORT_FILE, offsetof(struct proxy_args, port_file)},
	{OPT_COLOR, offsetof(struct proxy_args, color)},
	{OPT_CLIENT_TLS, offsetof(struct proxy_args, client_tls)},
	{OPT_UPSTREAM_CA, offsetof(struct proxy_args, upstream_ca)},
	{OPT_SNI, offsetof(struct proxy_args, sni)},
	{OPT_CA, offsetof(struct proxy_args, ca)},
	{OPT_CERT, offsetof(struct proxy_args, cert)},
	{OPT_KEY, offsetof(struct proxy_args, key)},
	{OPT_KEYLOG, offsetof(struct proxy_args, keylog)},
	{OPT_RAW_PCAP, offsetof(struct proxy_args, raw_pcap)},
	{OPT_PCAP, offsetof(struct proxy_args, pcap)},
	{OPT_PCAP_LISTEN, offsetof(struct proxy_args, pcap_listen)},
	{OPT_METRICS, offsetof(struct proxy_args, metrics)},
	{OPT_EVENTS, offsetof(struct proxy_args, events)},
	{OPT_USER, offsetof(struct proxy_args, user)},
};

/* Options that are on when given. */
static const struct {
	int option;
	size_t field;
} switch_options[] = {
	{OPT_INSECURE, offsetof(struct proxy_args, insecure)},
	{OPT_NO_REDACT, offsetof(struct proxy_args, no_redact)},
	{OPT_QUIET, offsetof(struct proxy_args, quiet)},
	{OPT_ANOMALIES_ONLY, offsetof(struct proxy_args, anomalies_only)},
	{OPT_REDACT_BODIES, offsetof(struct proxy_args, redact_bodies)},
	{OPT_NO_RULES, offsetof(struct proxy_args, no_rules)},
	{OPT_ALLOW_REMOTE, offsetof(struct proxy_args, allow_remote)},
	{OPT_ACCEPT_PROXY, offsetof(struct proxy_args, accept_proxy)},
	{OPT_OVERWRITE, offsetof(struct proxy_args, overwrite)},
	{OPT_APPEND, offsetof(struct proxy_args, append)},
	{OPT_TRANSPARENT, offsetof(struct proxy_args, transparent)},
};

/* A word or a switch: true when c was one (and is kept). */
static bool plain_option(struct proxy_args *a, int c)
{
	for (size_t i = 0; i < sizeof(word_options) / sizeof(word_options[0]); i++)
		if (word_options[i].option == c) {
			*(const char **)((char *)a + word_options[i].field) = optarg;
			return true;
		}
	for (size_t i = 0; i < sizeof(switch_options) / sizeof(switch_options[0]); i++)
		if (switch_options[i].option == c) {
			*(bool *)((char *)a + switch_options[i].field) = true;
			return true;
		}
	return false;
}

/* --route NAME=HOST:PORT[,MODE], once per name. */
static int add_route(struct proxy_args *a, const char *text)
{
	struct proxy_route_spec *r = &a->routes[a->route_count];
	char err[512];

	if (a->route_count == PROXY_ROUTES_MAX)
		return cli_usage_error("proxy", "--route: at most %d routes", PROXY_ROUTES_MAX);
	if (proxy_route_spec_parse(text, r, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--route %s", err);
	for (size_t i = 0; i < a->route_count; i++)
		if (strcasecmp(a->routes[i].name, r->name) == 0)
			return cli_usage_error("proxy", "--route %s is given twice", r->name);
	if (strcmp(r->name, "default") == 0)
		return cli_usage_error("proxy", "--route default: that is --upstream's route");
	a->route_count++;
	return 0;
}

/* An option with a value to check: 0, -1 after --help, or the usage
 * error's exit code. */
static int checked_option(struct proxy_args *a, int c, int index, char **argv)
{
	unsigned long long v;
	imap_time_us us;
	char flag[32];

	switch (c) {
	case OPT_RULE_THRESHOLD:
		snprintf(flag, sizeof(flag), "--%s", proxy_options[index].name);
		/* the command line's stands at a SIGHUP too */
		if (!cli_config_from_file(a->from, optarg))
			a->thresholds_pinned |= 1u << cli_rules_index(proxy_options[index].name);
		return cli_rules_option("proxy", flag, optarg, &a->thresholds);
	case OPT_MAX_SESSIONS:
		if (cli_number(optarg, 1, 1000000, &v) != 0)
			return cli_usage_error("proxy", "--max-sessions takes a number from 1 to "
					       "1000000, not '%s'", optarg);
		a->max_sessions = (unsigned)v;
		return 0;
	case OPT_SEND_PROXY:
		if (strcmp(optarg, "v1") != 0 && strcmp(optarg, "v2") != 0)
			return cli_usage_error("proxy", "--send-proxy takes v1 or v2, not '%s'", optarg);
		a->send_proxy = optarg[1] - '0';
		return 0;
	case OPT_WORKERS:
		if (cli_number(optarg, 1, PROXY_WORKERS_MAX, &v) != 0)
			return cli_usage_error("proxy", "--workers takes a number from 1 to %d, not '%s'",
					       PROXY_WORKERS_MAX, optarg);
		a->workers = (unsigned)v;
		return 0;
	case OPT_ROUTE:
		return add_route(a, optarg);
	case OPT_FAULT:
		return cli_faults_add(&a->faults, optarg);
	case OPT_PERSONA:
		return cli_faults_add_persona(&a->faults, optarg);
	case OPT_MAX_LINE:
		if (cli_number(optarg, 64, 64ull * 1024 * 1024, &v) != 0)
			return cli_usage_error("proxy", "--max-line takes a number of bytes from 64 to "
					       "67108864, not '%s'", optarg);
		a->max_line = (size_t)v;
		return 0;
	case OPT_WIDTH:
		if (cli_number(optarg, 0, 1ull << 26, &v) != 0)
			return cli_usage_error("proxy", "--width takes a number of bytes (0: whole "
					       "lines), not '%s'", optarg);
		a->width = (size_t)v;
		a->width_given = true;
		return 0;
	case OPT_HANDSHAKE_TIMEOUT:
		if (cli_duration(optarg, 1, 3600, &us) != 0)
			return cli_usage_error("proxy", "--handshake-timeout takes a duration from 1s to "
					       "1h (10, 10s, 2m), not '%s'", optarg);
		a->handshake_timeout = (unsigned)((us + IMAP_US_PER_S - 1) / IMAP_US_PER_S);
		return 0;
	case OPT_PCAP_FORMAT:
		if (strcmp(optarg, "pcap") != 0 && strcmp(optarg, "pcapng") != 0)
			return cli_usage_error("proxy", "--pcap-format takes pcap or pcapng, not '%s'",
					       optarg);
		a->pcap_format = optarg[4] == 'n' ? CAPTURE_PCAP_NG : CAPTURE_PCAP_CLASSIC;
		return 0;
	case OPT_PCAP_MAX_SIZE:
		if (cli_number(optarg, 1, 1024ull * 1024, &v) != 0)
			return cli_usage_error("proxy", "--pcap-max-size takes MiB from 1 to 1048576, "
					       "not '%s'", optarg);
		a->pcap_max_mib = v;
		return 0;
	case 'h':
		fputs(cli_proxy_usage, stdout);
		return -1;
	default:
		return cli_option_error("proxy", c, argv, proxy_options);
	}
}

static int parse_args(int argc, char **argv, struct proxy_args *a)
{
	int c, rc, index = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", proxy_options, &index)) != -1) {
		if (plain_option(a, c))
			continue;
		rc = checked_option(a, c, index, argv);
		if (rc != 0)
			return rc;
	}
	if (optind < argc)
		return cli_usage_error("proxy", "unexpected argument '%s'", argv[optind]);
	if (a->upstream == NULL && !a->transparent)
		return cli_usage_error("proxy", "--upstream HOST:PORT is required (or --transparent "
				       "behind a REDIRECT rule: docs/transparent.md)");
	if (a->raw_pcap != NULL && strcmp(a->raw_pcap, "-") == 0)
		return cli_usage_error("proxy", "--raw-pcap takes a file (it holds every TLS "
				       "secret), not standard output");
	return cli_output_flags("proxy", a->overwrite, a->append,
				a->pcap != NULL ? a->pcap : a->raw_pcap, a->events);
}

/* The pcap and the event log, when asked for; *made_r lists the files
 * this run created, to be removed if it does not start. */
static int add_outputs(const struct proxy_args *a, struct capture_sinks *sinks,
		       struct capture_wiretap *tap, struct cli_fresh_files *made)
{
	const struct capture_pcap_config pc = {
		.path = a->pcap,
		.mode = a->overwrite ? CAPTURE_OUTFILE_OVERWRITE : CAPTURE_OUTFILE_NEW,
		.max_bytes = a->pcap_max_mib * 1024 * 1024,
		.format = a->pcap_format,
		.log = log_message,
	};

	if (a->pcap != NULL && cli_add_pcap(sinks, &pc, made) != 0)
		return -1;
	if (a->raw_pcap != NULL &&
	    cli_add_raw_pcap(sinks, a->raw_pcap, a->overwrite, log_message, tap, made) != 0)
		return -1;
	if (a->events != NULL &&
	    cli_add_event_log(sinks, a->events, a->overwrite, a->append, "proxy", log_message,
			      made) != 0)
		return -1;
	return 0;
}

/* --transparent: each session's upstream and legs are its own. */
static int configure_transparent(const struct proxy_args *a, struct proxy_config *config)
{
	if (a->upstream != NULL || a->route_count > 0 || a->client_tls != NULL || a->sni != NULL ||
	    a->accept_proxy)
		return cli_usage_error("proxy", "--transparent takes each client's upstream from where "
				       "it was going and its TLS from its port or first bytes: no "
				       "--upstream, --route, --client-tls, --sni or --accept-proxy with it");
	if (a->ca == NULL && a->cert == NULL)
		return cli_usage_error("proxy", "--transparent needs --ca DIR: each client is shown a "
				       "certificate made for the server name it asked for (created when "
				       "missing; clients must trust DIR/ca.crt)");
	if (cli_tls_mode("--upstream-tls", a->upstream_tls, &config->upstream_tls) < 0)
		return CLI_EXIT_USAGE;
	if (a->upstream_tls == NULL)
		config->upstream_tls = PROXY_TLS_STARTTLS;
	if (config->upstream_tls == PROXY_TLS_IMPLICIT)
		return cli_usage_error("proxy", "--upstream-tls with --transparent is starttls (the "
				       "default) or none, for clients that do not start with TLS; "
				       "those that do get TLS to the upstream too");
	config->transparent = true;
	return 0;
}

/* --upstream, its legs, and the --route beside it. */
static int configure_upstream(const struct proxy_args *a, struct proxy_config *config)
{
	bool tls_upstream;
	char err[512];

	if (proxy_hostport_parse(a->upstream, &config->upstream, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--upstream %s", err);
	if (config->upstream.port == 0)
		return cli_usage_error("proxy", "--upstream needs a port from 1 to 65535");
	if (cli_tls_mode("--upstream-tls", a->upstream_tls, &config->upstream_tls) < 0 ||
	    cli_tls_mode("--client-tls", a->client_tls, &config->client_tls) < 0)
		return CLI_EXIT_USAGE;
	if (a->upstream_tls == NULL && config->upstream.port == 993)
		config->upstream_tls = PROXY_TLS_IMPLICIT;
	if (a->route_count > 0 && config->client_tls != PROXY_TLS_IMPLICIT)
		return cli_usage_error("proxy", "--route chooses by the server name in the client's TLS "
				       "ClientHello: add --client-tls implicit and --ca DIR");
	if (config->client_tls != PROXY_TLS_NONE && a->cert == NULL && a->ca == NULL)
		return cli_usage_error("proxy",
				       "--client-tls %s needs --ca DIR (created when missing; clients must trust DIR/ca.crt) "
				       "or --cert FILE --key FILE",
				       a->client_tls);
	if (config->client_tls == PROXY_TLS_NONE && (a->cert != NULL || a->ca != NULL))
		return cli_usage_error("proxy", "--ca, --cert and --key are for a TLS client leg: add --client-tls implicit");
	tls_upstream = config->upstream_tls != PROXY_TLS_NONE;
	for (size_t i = 0; i < a->route_count; i++)
		tls_upstream |= a->routes[i].tls != PROXY_TLS_NONE;
	if (!tls_upstream && (a->upstream_ca || a->insecure))
		return cli_usage_error("proxy",
				       "--upstream-ca and --insecure-upstream are for a TLS upstream: add --upstream-tls implicit");
	if (config->upstream_tls == PROXY_TLS_NONE && a->sni)
		return cli_usage_error("proxy", "--sni is for a TLS upstream: add --upstream-tls implicit");
	config->routes = a->routes;
	config->route_count = a->route_count;
	return 0;
}

/* The proxy's configuration from the options: 0, or the usage error's
 * exit code. */
static int configure(const struct proxy_args *a, struct proxy_config *config)
{
	struct proxy_hostport where;
	char err[512];
	int rc;

	if ((a->cert == NULL) != (a->key == NULL))
		return cli_usage_error("proxy", "--cert and --key go together");
	if (a->ca != NULL && cli_ca_is_a_file("proxy", a->ca))
		return CLI_EXIT_USAGE;
	rc = a->transparent ? configure_transparent(a, config) : configure_upstream(a, config);
	if (rc != 0)
		return rc;
	if (proxy_hostport_parse(a->listen, &config->listen, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--listen %s", err);
	if (a->pcap_listen != NULL &&
	    proxy_hostport_parse(a->pcap_listen, &where, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--pcap-listen %s", err);
	if (a->metrics != NULL && proxy_hostport_parse(a->metrics, &where, err, sizeof(err)) < 0)
		return cli_usage_error("proxy", "--metrics %s", err);
	if (a->quiet && a->anomalies_only)
		return cli_usage_error("proxy", "--quiet shows no rows, --anomalies-only some: "
				       "choose one");
	if (a->pcap != NULL && strcmp(a->pcap, "-") == 0 &&
	    ((a->events != NULL && strcmp(a->events, "-") == 0) || a->pcap_max_mib > 0))
		return cli_usage_error("proxy", "--pcap - takes standard output for itself: no "
				       "--events - or --pcap-max-size with it");
	if ((a->pcap_max_mib > 0 || a->pcap_format != CAPTURE_PCAP_BY_NAME) && a->pcap == NULL)
		return cli_usage_error("proxy", "--%s goes with --pcap FILE",
				       a->pcap_max_mib > 0 ? "pcap-max-size" : "pcap-format");
	config->sni = a->sni;
	config->upstream_ca = a->upstream_ca;
	config->insecure_upstream = a->insecure;
	config->ca_dir = a->ca;
	config->cert_file = a->cert;
	config->key_file = a->key;
	config->keylog_file = a->keylog;
	config->max_line = a->max_line;
	config->connect_timeout_s = a->handshake_timeout;
	config->no_rules = a->no_rules;
	config->thresholds = a->thresholds;
	config->faults = a->faults.faults;
	config->fault_count = a->faults.count;
	config->redact_flags = (a->no_redact ? 0 : IMAP_REDACT_CREDENTIALS) |
			       (a->redact_bodies ? IMAP_REDACT_BODIES : 0);
	config->log = log_message;
	config->max_sessions = a->max_sessions;
	config->accept_proxy = a->accept_proxy;
	config->send_proxy = a->send_proxy;
	config->workers = a->workers != 0 ? a->workers : cli_proxy_default_workers();
	return 0;
}

/* The timeline on stderr, unless --quiet: 0, or -1 after saying why. */
static int add_timeline(const struct proxy_args *a, int color, struct capture_sinks *sinks)
{
	struct capture_timeline_config tc = {
		.out = stderr,
		.color = color != 0,
		.anomalies_only = a->anomalies_only,
		.max_text = a->width,
		.whole_lines = a->width_given && a->width == 0,
	};
	struct capture_sink timeline;

	if (a->quiet)
		return 0;
	timeline = capture_timeline_new(&tc);
	if (timeline.ops == NULL) {
		cli_message("out of memory");
		return -1;
	}
	capture_sinks_add(sinks, timeline);
	/* rows are written in batches and flushed after each read */
	setvbuf(stderr, NULL, _IOFBF, 64 * 1024);
	return 0;
}

static const char *leg_word(enum proxy_tls_mode mode)
{
	return mode == PROXY_TLS_IMPLICIT ? "TLS" : mode == PROXY_TLS_STARTTLS ? "STARTTLS" : "plain";
}

/* Everything between listening and serving: the port file, the check on
 * a remote listener, dropping root. Returns an exit code. */
static int before_serving(const struct proxy_args *a, struct cli_proxy_run *run)
{
	if (a->port_file != NULL && cli_write_port_file(a->port_file, proxy_listen_port(run->proxy)) < 0) {
		cli_message("cannot write the port file %s: %s", a->port_file, strerror(errno));
		return CLI_EXIT_RUNTIME;
	}
	if (!proxy_listen_is_loopback(run->proxy) && !a->allow_remote)
		return cli_usage_error("proxy",
				       "--listen %s is reachable from other hosts: anyone who connects "
				       "would be relayed to the upstream and recorded; add --allow-remote "
				       "if that is what you want, or listen on 127.0.0.1",
				       proxy_listen_str(run->proxy));
	if (!proxy_listen_is_loopback(run->proxy))
		cli_message("warning: listening on %s, reachable from other hosts: anyone who connects "
			    "is relayed to the upstream and recorded",
			    proxy_listen_str(run->proxy));
	if (a->user != NULL) {
		const char *files[] = {a->pcap, a->events, a->keylog, a->raw_pcap};

		if (cli_drop_privileges(a->user, files, sizeof(files) / sizeof(files[0])) != 0)
			return CLI_EXIT_RUNTIME;
	}
	return CLI_EXIT_OK;
}

static void say_serving(const struct proxy_args *a, const struct proxy_config *config,
			const struct cli_proxy_run *run)
{
	if (config->transparent) {
		cli_message("listening on %s (transparent: each client goes where it was going before "
			    "the REDIRECT; TLS when it starts with TLS or goes to port 993, else "
			    "STARTTLS%s)", proxy_listen_str(run->proxy),
			    config->upstream_tls == PROXY_TLS_NONE ? ", upstream plain" : "");
		cli_faults_say(&a->faults);
		return;
	}
	for (size_t i = 0; i < config->route_count; i++)
		cli_message("route %s: clients asking for that name go to %s:%u (%s)",
			    config->routes[i].name, config->routes[i].upstream.host,
			    config->routes[i].upstream.port, leg_word(config->routes[i].tls));
	cli_message("listening on %s (%s), upstream %s:%u (%s%s)", proxy_listen_str(run->proxy),
		    leg_word(config->client_tls), config->upstream.host, config->upstream.port,
		    leg_word(config->upstream_tls),
		    config->insecure_upstream ? ", certificate NOT verified" : "");
	cli_faults_say(&a->faults);
}

/* With --config, what a SIGHUP needs to read the file again: 0, or -1
 * after saying why. */
static int prepare_reload(struct cli_config_args *args, const struct proxy_args *a,
			  struct cli_proxy_run *run)
{
	if (args->path == NULL)
		return 0;
	run->reload = cli_config_reload_new("proxy", args->path, proxy_options, &args->file,
					    a->thresholds_pinned, &a->thresholds);
	if (run->reload == NULL)
		cli_message("out of memory");
	return run->reload != NULL ? 0 : -1;
}

static int proxy_main(struct cli_config_args *args)
{
	struct proxy_args a = {.listen = "127.0.0.1:1143", .color = "auto", .from = args};
	struct proxy_config config = {0};
	struct capture_sinks sinks = {0};
	struct cli_proxy_run run = {.sinks = &sinks, .config = &config};
	struct cli_fresh_files made = {0};
	struct capture_wiretap tap = {0};
	int color, rc;

	rc = parse_args(args->argc, args->argv, &a);
	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	cli_tune_malloc();
	rc = configure(&a, &config);
	if (rc != 0)
		return rc;
	color = cli_color_choice(a.color, stderr);
	if (color < 0)
		return cli_usage_error("proxy", "--color takes auto, always or never, not '%s'", a.color);
	rc = CLI_EXIT_RUNTIME;
	if (prepare_reload(args, &a, &run) != 0 || add_timeline(&a, color, &sinks) != 0 ||
	    add_outputs(&a, &sinks, &tap, &made) != 0)
		goto out;
	if (a.raw_pcap != NULL)
		config.wiretap = &tap;
	cli_raise_descriptor_limit(a.max_sessions);
	if (cli_proxy_start(&run, &config, &sinks) != 0 ||
	    (a.pcap_listen != NULL &&
	     (run.pcap_listen = cli_add_pcap_listen(run.base, a.pcap_listen, a.allow_remote,
						    log_message, proxy_outputs_lock(run.proxy),
						    &sinks)) == NULL))
		goto out;
	if (a.metrics != NULL &&
	    (run.metrics = cli_add_metrics(run.base, a.metrics, a.allow_remote,
					   proxy_outputs_lock(run.proxy), &sinks, &rc)) == NULL)
		goto out;
	rc = before_serving(&a, &run);
	if (rc != CLI_EXIT_OK)
		goto out;
	cli_record_proxy_settings(&config, a.faults.faults, a.faults.count, &sinks);
	if (run.pcap_listen != NULL)
		proxy_pcap_listen_seal(run.pcap_listen);
	say_serving(&a, &config, &run);
	if (cli_proxy_serve(&run) != 0)
		goto out;
	made.count = 0; /* it ran: what it wrote stays */
out:
	cli_proxy_stop(&run);
	cli_fresh_remove(&made); /* a start that failed leaves nothing */
	return rc;
}

int cli_proxy_main(int argc, char **argv)
{
	struct cli_config_args args;
	int rc = cli_config_expand("proxy", argc, argv, proxy_options, &args);

	if (rc == 0)
		rc = proxy_main(&args);
	cli_config_args_free(&args);
	return rc;
}
