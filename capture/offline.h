/* Offline observation: the sessions of a capture file go through the same
 * conversation (framer, masking, tracker) and the same sinks as live
 * traffic, so `imaptap analyze` shows what the proxy would have shown.
 * The fault marks of a pcap written by `imaptap proxy --fault` reach the
 * sinks as the live marks did; other UDP is ignored. The settings the
 * proxy recorded (capture/settings.h) stand in for every threshold and
 * the line limit the config leaves at 0, for the sessions after them. */
#ifndef CAPTURE_OFFLINE_H
#define CAPTURE_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

#include "capture/pcap_reader.h"
#include "capture/sink.h"
#include "imap/anomaly.h"
#include "imap/tracker.h"

struct capture_offline_config {
	unsigned session;      /* only this session; 0 for all (or the list below) */
	const unsigned *sessions; /* only these sessions, when session_count > 0 */
	size_t session_count;
	size_t max_line;       /* 0: the capture's, else the default */
	unsigned redact_flags; /* enum imap_redact_flag bits */
	bool no_rules;         /* framing only */
	struct imap_tracker_config thresholds; /* zeros: the capture's, else the defaults */
	const char *keylog;    /* --keylog: an NSS key log file, or NULL */
};

struct capture_offline_result {
	unsigned sessions;      /* sessions in the file */
	unsigned shown;         /* sessions passed to the sinks */
	uint64_t gaps;          /* bytes missing from the capture */
	uint64_t imap_lines;    /* lines that parse as IMAP, in the sessions shown */
	uint64_t data_bytes;    /* bytes of the sessions shown */
	uint32_t fired[IMAP_RULE_COUNT]; /* findings by rule (resolutions not counted) */
	uint64_t fault_marks;   /* imaptap's fault marks passed to the sinks */
	uint64_t damaged_marks; /* fault marks that do not read: left out */
	char damaged_mark[200]; /* the first of them: when, and what is wrong */
	bool settings_read;     /* the capture recorded the settings it was made with */
	unsigned tls_sessions;  /* sessions whose stream is TLS */
	unsigned tls_decrypted; /* of them: decrypted with the key log's secrets */
	unsigned tls_no_secrets; /* of them: the key log holds no secrets for them */
	unsigned tls_failed;    /* of them: undecryptable (from some point on) */
	size_t keylog_secrets;  /* secrets read: --keylog's and the pcapng's own */
	size_t keylog_bad_lines; /* key log lines of a known label that did not read */
	int embedded_secrets;   /* the pcapng's Decryption Secrets Blocks read */
	imap_time_us last_ts;   /* the time of the capture's last event */
	struct capture_read_stats stats;
};

/* TLS sessions are decrypted with the secrets of config's keylog and of
 * the capture's own Decryption Secrets Blocks (capture/tls_decrypt.h);
 * each one that is not says why on the timeline.
 * Returns 0, or -1 with a message in err (the file or the key log cannot
 * be read). */
int capture_offline_run(const char *path, const struct capture_offline_config *config,
			const struct capture_sinks *sinks, struct capture_offline_result *result,
			char *err, size_t errlen);

#endif
