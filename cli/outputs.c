/* The output files of a run, as the command line asks for them: which
 * earlier file may be replaced or added to, and the files a run that
 * does not start leaves behind (none). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture/events.h"
#include "capture/settings.h"
#include "capture/pcap_writer.h"
#include "capture/raw_pcap.h"
#include "cli/cli.h"
#include "capture/metrics.h"
#include "proxy/metrics_http.h"
#include "proxy/pcap_listen.h"
#include "imap/framer.h"
#include "proxy/proxy.h"

int cli_output_flags(const char *cmd, bool overwrite, bool append, const char *pcap,
		     const char *events)
{
	if (overwrite && append)
		return cli_usage_error(cmd, "--overwrite and --append do not go together: replace "
				       "the earlier run's files, or add to its event log");
	if (append && (events == NULL || strcmp(events, "-") == 0))
		return cli_usage_error(cmd, "--append adds to an event log: it needs --events FILE%s",
				       pcap != NULL ? " (a pcap cannot be added to: a second file "
						      "header would break it; use --overwrite or "
						      "another name)"
						    : "");
	if (overwrite && pcap == NULL && (events == NULL || strcmp(events, "-") == 0))
		return cli_usage_error(cmd, "--overwrite replaces a --pcap, --raw-pcap or --events "
				       "file: give one");
	return 0;
}

int cli_add_pcap(struct capture_sinks *sinks, const struct capture_pcap_config *config,
		 struct cli_fresh_files *made)
{
	struct capture_sink sink;
	char err[4096];
	bool refused;

	cli_fresh_note(made, config->path);
	if (capture_pcap_writer_new(config, &sink, &refused, err, sizeof(err)) != 0) {
		cli_message("--pcap: %s%s", err, refused ? "; pass --overwrite to replace it" : "");
		return -1;
	}
	capture_sinks_add(sinks, sink);
	return 0;
}

int cli_add_raw_pcap(struct capture_sinks *sinks, const char *path, bool overwrite,
		     capture_log_fn *log, struct capture_wiretap *tap, struct cli_fresh_files *made)
{
	const struct capture_raw_config config = {
		.path = path,
		.mode = overwrite ? CAPTURE_OUTFILE_OVERWRITE : CAPTURE_OUTFILE_NEW,
		.log = log,
	};
	struct capture_sink sink;
	char err[4096];
	bool refused;

	cli_fresh_note(made, path);
	if (capture_raw_pcap_new(&config, &sink, tap, &refused, err, sizeof(err)) != 0) {
		cli_message("--raw-pcap: %s%s", err, refused ? "; pass --overwrite to replace it" : "");
		return -1;
	}
	if (capture_sinks_add(sinks, sink) != 0) {
		sink.ops->destroy(sink.self);
		cli_message("--raw-pcap: too many outputs");
		return -1;
	}
	return 0;
}

struct proxy_pcap_listen *cli_add_pcap_listen(struct event_base *base, const char *spec,
					      bool remote, capture_log_fn *log,
					      struct capture_lock *lock, struct capture_sinks *sinks)
{
	struct proxy_hostport where;
	struct proxy_pcap_listen *l;
	struct capture_sink sink;
	char err[512];

	if (proxy_hostport_parse(spec, &where, err, sizeof(err)) != 0) {
		cli_message("--pcap-listen %s", err);
		return NULL;
	}
	l = proxy_pcap_listen_new(base, &where, remote, log, NULL, lock, &sink, err, sizeof(err));
	if (l == NULL) {
		cli_message("--pcap-listen: %s", err);
		return NULL;
	}
	if (capture_sinks_add(sinks, sink) != 0) {
		sink.ops->destroy(sink.self);
		cli_message("--pcap-listen: too many outputs at once");
		return NULL;
	}
	cli_message("serving the capture live on %s: tshark -i TCP@%s",
		    proxy_pcap_listen_str(l), proxy_pcap_listen_str(l));
	return l;
}

struct proxy_metrics_http *cli_add_metrics(struct event_base *base, const char *spec, bool remote,
					   struct capture_lock *lock, struct capture_sinks *sinks,
					   int *rc_r)
{
	const struct capture_metrics_config mc = {.version = IMAPTAP_VERSION, .started = cli_now()};
	enum proxy_metrics_error code;
	struct proxy_metrics_http *h;
	struct proxy_hostport where;
	struct capture_metrics *m;
	struct capture_sink sink;
	char err[512];

	*rc_r = CLI_EXIT_RUNTIME;
	if (proxy_hostport_parse(spec, &where, err, sizeof(err)) != 0) {
		*rc_r = cli_usage_error("proxy", "--metrics %s", err);
		return NULL;
	}
	m = capture_metrics_new(&mc, &sink);
	if (m == NULL || capture_sinks_add(sinks, sink) != 0) {
		if (m != NULL)
			sink.ops->destroy(sink.self);
		cli_message("--metrics: %s", m == NULL ? "out of memory" : "too many outputs at once");
		return NULL;
	}
	h = proxy_metrics_http_new(base, &where, remote, m, sinks, lock, &code, err, sizeof(err));
	if (h == NULL) {
		if (code == PROXY_METRICS_REMOTE)
			*rc_r = cli_usage_error("proxy", "--metrics %s", err);
		else
			cli_message("--metrics: %s", err);
		return NULL;
	}
	cli_message("metrics on http://%s/metrics", proxy_metrics_http_str(h));
	*rc_r = CLI_EXIT_OK;
	return h;
}

int cli_add_event_log(struct capture_sinks *sinks, const char *path, bool overwrite, bool append,
		      const char *command, capture_log_fn *log, struct cli_fresh_files *made)
{
	struct capture_events_config ec = {
		.path = path,
		.mode = overwrite ? CAPTURE_OUTFILE_OVERWRITE
			: append  ? CAPTURE_OUTFILE_APPEND
				  : CAPTURE_OUTFILE_NEW,
		.command = command,
		.version = IMAPTAP_VERSION,
		.started = cli_now(),
		.log = log,
	};
	struct capture_sink sink;
	char err[4200];
	bool refused;

	cli_fresh_note(made, path);
	if (capture_events_new(&ec, &sink, &refused, err, sizeof(err)) != 0) {
		cli_message("--events: %s%s", err,
			    refused ? "; pass --overwrite to replace it or --append to add to it" : "");
		return -1;
	}
	capture_sinks_add(sinks, sink);
	return 0;
}

void cli_fresh_note(struct cli_fresh_files *f, const char *path)
{
	struct stat st;

	if (path == NULL || strcmp(path, "-") == 0 || f->count == CLI_FRESH_MAX)
		return;
	if (lstat(path, &st) != 0 && errno == ENOENT)
		f->path[f->count++] = path;
}

void cli_fresh_remove(const struct cli_fresh_files *f)
{
	for (size_t i = 0; i < f->count; i++)
		unlink(f->path[i]);
}

imap_time_us cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (imap_time_us)ts.tv_sec * IMAP_US_PER_S + ts.tv_nsec / 1000;
}

/* What the verdicts of this run rest on, first in every output: analyze
 * judges a capture by them. */
void cli_record_proxy_settings(const struct proxy_config *config, const struct proxy_fault *faults,
			       size_t fault_count, const struct capture_sinks *sinks)
{
	struct capture_run_settings s = {
		.rules = !config->no_rules,
		.redact_flags = config->redact_flags,
		.max_line = config->max_line ? config->max_line : IMAP_FRAMER_DEFAULT_MAX_LINE,
		.thresholds = imap_tracker_config_resolved(&config->thresholds),
	};

	snprintf(s.version, sizeof(s.version), "%s", IMAPTAP_VERSION);
	snprintf(s.command, sizeof(s.command), "proxy");
	if (config->transparent)
		snprintf(s.upstream, sizeof(s.upstream), "transparent");
	else
		snprintf(s.upstream, sizeof(s.upstream), "%s:%u", config->upstream.host,
			 config->upstream.port);
	snprintf(s.upstream_tls, sizeof(s.upstream_tls), "%s", cli_tls_mode_word(config->upstream_tls));
	snprintf(s.client_tls, sizeof(s.client_tls), "%s", cli_tls_mode_word(config->client_tls));
	if (config->upstream_tls != PROXY_TLS_NONE && !config->transparent)
		snprintf(s.sni, sizeof(s.sni), "%s", proxy_upstream_name(config));
	for (size_t i = 0; i < fault_count && i < CAPTURE_SETTINGS_FAULTS_MAX; i++)
		proxy_fault_spec_str(&faults[i], s.faults[s.fault_count++], sizeof(s.faults[0]));
	capture_sinks_settings(sinks, cli_now(), &s);
	capture_sinks_flush(sinks);
}
