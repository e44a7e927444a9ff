/* The settings a capture was made with: imaptap's version, the upstream
 * and the TLS modes of both legs, the rules and their thresholds,
 * masking, and the --fault specs. The proxy records them at the start of
 * its pcap (a syslog datagram, like the fault marks) and in its event log;
 * analyze reads them back and judges with the same thresholds unless its
 * own flags say otherwise, so a maintainer running it with no flags gets
 * the verdicts the reporter saw:
 *
 *   <133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - settings - run
 *   settings version=0.1.0 command=proxy upstream=imap.gmail.com:993
 *   upstream-tls=implicit client-tls=none sni=- rules=on redact=credentials
 *   max-line=65536 command-stall-us=10000000 done-stall-us=5000000
 *   idle-max-us=1740000000 keepalive-gap-us=0 fault=delay:s2c:2s
 *
 * (one line; fault= repeats, one per spec; keys a reader does not know are
 * skipped). */
#ifndef CAPTURE_SETTINGS_H
#define CAPTURE_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/fault_mark.h"
#include "imap/tracker.h"

#define CAPTURE_SETTINGS_TEXT_MAX 2048
#define CAPTURE_SETTINGS_FAULTS_MAX 8

struct capture_run_settings {
	char version[32];
	char command[16];      /* "proxy" */
	char upstream[300];    /* as given: "imap.gmail.com:993" */
	char upstream_tls[16]; /* "none", "implicit", "starttls" */
	char client_tls[16];
	char sni[256];         /* the name sent and verified upstream; "" none */
	bool rules;
	unsigned redact_flags; /* enum imap_redact_flag bits */
	uint64_t max_line;
	struct imap_tracker_config thresholds; /* in effect (defaults filled in; keepalive 0: off) */
	char faults[CAPTURE_SETTINGS_FAULTS_MAX][CAPTURE_FAULT_MARK_SPEC_MAX];
	unsigned fault_count;
};

/* For a person, one line: "imaptap 0.1.0 proxy; upstream ... ; rules:
 * command-stall 10.000 s, ...; faults: ...". Any byte read from a capture
 * is made printable. */
void capture_settings_describe(const struct capture_run_settings *s, char *out, size_t size);

/* The datagram's text (its time in it) into out, NUL-terminated, cut at
 * size - 1; returns its length. Characters a token cannot hold (spaces,
 * controls) are written as '?'. */
size_t capture_settings_mark_format(char *out, size_t size, imap_time_us ts,
				    const struct capture_run_settings *s);

/* Reads a datagram's payload back; any bytes are safe. NONE when it is no
 * settings mark. */
enum capture_fault_mark_parse_result
capture_settings_mark_parse(const uint8_t *text, size_t len, struct capture_run_settings *read_r,
			    char *why_r, size_t why_size);

#endif
