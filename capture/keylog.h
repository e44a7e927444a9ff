/* TLS session secrets, as NSS key log files (SSLKEYLOGFILE) hold them:
 * one "LABEL <client_random hex> <secret hex>" a line, '#' comments.
 * Curl, Python, Thunderbird and Firefox write them; a pcapng carries the
 * same text in its Decryption Secrets Blocks (capture/pcapng_secrets.h).
 * Lines of other labels are skipped; a line of a known label whose
 * fields do not read (bad hex, wrong lengths) is counted as bad and
 * skipped. */
#ifndef CAPTURE_KEYLOG_H
#define CAPTURE_KEYLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAPTURE_KEYLOG_RANDOM 32
#define CAPTURE_KEYLOG_SECRET_MAX 64

enum capture_keylog_label {
	CAPTURE_KEYLOG_MASTER,            /* CLIENT_RANDOM: TLS 1.2's 48-byte master secret */
	CAPTURE_KEYLOG_CLIENT_HANDSHAKE,  /* CLIENT_HANDSHAKE_TRAFFIC_SECRET (TLS 1.3) */
	CAPTURE_KEYLOG_SERVER_HANDSHAKE,  /* SERVER_HANDSHAKE_TRAFFIC_SECRET */
	CAPTURE_KEYLOG_CLIENT_TRAFFIC,    /* CLIENT_TRAFFIC_SECRET_0 */
	CAPTURE_KEYLOG_SERVER_TRAFFIC,    /* SERVER_TRAFFIC_SECRET_0 */
};
#define CAPTURE_KEYLOG_LABELS 5

struct capture_keylog_secret {
	uint8_t bytes[CAPTURE_KEYLOG_SECRET_MAX];
	size_t len;
};

struct capture_keylog;

/* Returns NULL only when out of memory. */
struct capture_keylog *capture_keylog_new(void);
void capture_keylog_free(struct capture_keylog **k);

/* Adds the secrets of key log text (not NUL-terminated). Returns 0, or -1
 * when out of memory. */
int capture_keylog_add_text(struct capture_keylog *k, const char *text, size_t len);

/* Adds the secrets of the key log file at path. Returns 0, or -1 with a
 * message in err naming the file, what is wrong and what to do. */
int capture_keylog_load(struct capture_keylog *k, const char *path, char *err, size_t errlen);

/* The secret of label for client_random; false when there is none. */
bool capture_keylog_find(const struct capture_keylog *k, enum capture_keylog_label label,
			 const uint8_t random[CAPTURE_KEYLOG_RANDOM],
			 struct capture_keylog_secret *out);

/* Secrets held, and lines of a known label that did not read. */
size_t capture_keylog_count(const struct capture_keylog *k);
size_t capture_keylog_bad_lines(const struct capture_keylog *k);

#endif
