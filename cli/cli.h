/* Shared by the subcommands: exit codes and messages. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "capture/events.h"
#include "capture/outfile.h"
#include "imap/tracker.h"
#include "proxy/proxy.h"

/* Exit codes (docs/exit-codes.md). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_CHECK = 1,   /* a check failed */
	CLI_EXIT_USAGE = 2,   /* bad command line */
	CLI_EXIT_RUNTIME = 3, /* I/O, TLS, network */
};

/* Every message and report a subcommand writes passes the escaping gate
 * (capture/escape.h): the values it quotes (flags, file contents, peer
 * lines, certificate names) cannot reach the terminal raw. */

/* text[0..len) escaped to f; flags CAPTURE_ESCAPE_KEEP_NEWLINE keeps the
 * lines of a multi-line report. */
void cli_write_escaped(FILE *f, const char *text, size_t len, unsigned flags);

/* "imaptap: message" on stderr, escaped and flushed. */
void cli_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "imaptap CMD: message" and a hint to --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The end of every getopt_long loop: getopt's ':' (an option without its
 * value) or '?' (an unknown option) as a usage error of cmd. */
int cli_option_error(const char *cmd, int c, char **argv, const struct option *options);
/* The name among names[0..count) a mistyped word most likely meant (one
 * or two edits away, or the start of it), or NULL. */
const char *cli_closest(const char *word, const char *const *names, size_t count);

/* Resolves --color auto|always|never for a stream; -1 for a bad word. */
int cli_color_choice(const char *word, FILE *stream);

/* A whole number in [lo, hi]: 0, or -1. */
int cli_number(const char *text, unsigned long long lo, unsigned long long hi,
	       unsigned long long *out);
/* A decimal number in [lo, hi] as millionths (seconds since 1970, a speed
 * factor): 0, or -1. */
int cli_seconds(const char *text, double lo, double hi, imap_time_us *out);
/* A duration: a decimal number with a unit (us, ms, s, m or min, h; none:
 * seconds), in [lo, hi] seconds, as microseconds: 0, or -1. */
int cli_duration(const char *text, double lo, double hi, imap_time_us *out);
/* A moment: ISO 8601 "2026-12-05T16:20:00[.fff][Z|+HH:MM]" (no zone: local
 * time) or seconds since 1970, as microseconds: 0, or -1. */
int cli_timestamp(const char *text, imap_time_us *out);
/* --stall, --done-stall, --idle-max or --keepalive-gap SECONDS into config:
 * 0, or the usage error's exit code. */
int cli_rules_option(const char *cmd, const char *flag, const char *value,
		     struct imap_tracker_config *config);
/* The durations those options take, and their names in that order (the
 * fields of struct imap_tracker_config). */
#define CLI_RULES_RANGE "a duration from 1ms to 7 days (5, 5s, 250ms, 2m, 1h; a bare number is seconds)"
#define CLI_RULES_MIN_S 0.001
#define CLI_RULES_MAX_S (7 * 24 * 3600.0)
#define CLI_RULES_COUNT 4
extern const char *const cli_rules_names[CLI_RULES_COUNT];
/* The index of a name without dashes ("done-stall"), or -1. */
int cli_rules_index(const char *name);
/* The field of config the option of that index sets. */
imap_time_us *cli_rules_field(struct imap_tracker_config *config, int index);

/* --overwrite and --append against --pcap and --events: 0, or the usage
 * error's exit code. */
int cli_output_flags(const char *cmd, bool overwrite, bool append, const char *pcap,
		     const char *events);
struct proxy_config;
struct proxy_fault;
/* The word --upstream-tls and --client-tls take for mode: "none",
 * "implicit", "starttls"; the settings record it the same way. */
const char *cli_tls_mode_word(enum proxy_tls_mode mode);
/* The mode word of flag (NULL: *out stays): 0, or -1 after the usage
 * error. */
int cli_tls_mode(const char *flag, const char *word, enum proxy_tls_mode *out);
/* Records the settings a proxy run judges by (capture/settings.h) in its
 * outputs, before any session. */
void cli_record_proxy_settings(const struct proxy_config *config, const struct proxy_fault *faults,
			       size_t fault_count, const struct capture_sinks *sinks);
struct cli_fresh_files;
/* Adds the pcap writer of config (--pcap) to sinks: 0, or -1 after
 * saying why (naming --overwrite when an earlier capture is refused). */
struct capture_pcap_config;
int cli_add_pcap(struct capture_sinks *sinks, const struct capture_pcap_config *config,
		 struct cli_fresh_files *made);

/* Adds the raw capture at path (--raw-pcap, with --overwrite) to sinks
 * and fills tap, which the proxy feeds: 0, or -1 after saying why. */
struct capture_wiretap;
int cli_add_raw_pcap(struct capture_sinks *sinks, const char *path, bool overwrite,
		     capture_log_fn *log, struct capture_wiretap *tap, struct cli_fresh_files *made);

/* --pcap-listen ADDR:PORT: the live capture's listener on base, its sink
 * added to sinks; lock: the outputs' lock of a proxy with several loops
 * (proxy_outputs_lock), or NULL. Returns it, or NULL after saying why. */
struct event_base;
struct proxy_pcap_listen;
struct capture_lock;
struct proxy_pcap_listen *cli_add_pcap_listen(struct event_base *base, const char *spec,
					      bool remote, capture_log_fn *log,
					      struct capture_lock *lock, struct capture_sinks *sinks);

/* --metrics ADDR:PORT: the metrics sink added to sinks and its HTTP server
 * on base; lock as for cli_add_pcap_listen. Returns the server, or NULL
 * after saying why with the exit code in *rc_r. */
struct proxy_metrics_http;
struct proxy_metrics_http *cli_add_metrics(struct event_base *base, const char *spec, bool remote,
					   struct capture_lock *lock, struct capture_sinks *sinks,
					   int *rc_r);

/* Adds the event log at path (--events, with --overwrite or --append) to
 * sinks, its run-start record naming command: 0, or -1 after saying why
 * (naming the flags when an earlier log is refused). */
int cli_add_event_log(struct capture_sinks *sinks, const char *path, bool overwrite, bool append,
		      const char *command, capture_log_fn *log, struct cli_fresh_files *made);

/* Output files this run created: removed when the run does not start, so
 * a failed start leaves nothing behind (and no file a next run refuses). */
#define CLI_FRESH_MAX 4
struct cli_fresh_files {
	const char *path[CLI_FRESH_MAX];
	size_t count;
};
/* Notes path when nothing is there yet (before it is opened). */
void cli_fresh_note(struct cli_fresh_files *fresh, const char *path);
void cli_fresh_remove(const struct cli_fresh_files *fresh);

/* The wall clock, for what a run records of its own start. */
imap_time_us cli_now(void);

/* Writes "PORT\n" to path atomically: 0, or -1 with errno. */
int cli_write_port_file(const char *path, unsigned port);

/* Raises the descriptor limit to the hard limit, warns when it is too
 * low for want_sessions (0: any number); returns the sessions it allows. */
unsigned cli_raise_descriptor_limit(unsigned want_sessions);

/* Keeps freed memory for the relay's next burst (cli/process.c says why). */
void cli_tune_malloc(void);

/* Started as root: hands files (NULL or "-" entries skipped) to user and
 * becomes user for good. Returns 0, or -1 after saying why. */
int cli_drop_privileges(const char *user, const char *const *files, size_t nfiles);

/* --ca names the CA's directory: given one of its files, or any file,
 * says (as a usage error of cmd) which directory is meant; true then. */
bool cli_ca_is_a_file(const char *cmd, const char *path);

/* The help lines of those options. */
#define CLI_RULES_HELP                                                                     \
	"  --stall TIME             command-stall, greeting-stall and client/server-not-\n" \
	"                           reading after TIME (default 10s); TIME is a number\n"   \
	"                           with a unit (250ms, 5s, 2m, 1h) or bare seconds\n"      \
	"  --done-stall TIME        done-stall: DONE with no tagged completion after TIME\n" \
	"                           (default 5s)\n"                                         \
	"  --idle-max TIME          idle-too-long: one IDLE longer than TIME (default\n"    \
	"                           29m)\n"                                                 \
	"  --keepalive-gap TIME     keepalive-gap: no byte from the server for TIME during\n" \
	"                           IDLE (off by default)\n"

#endif
