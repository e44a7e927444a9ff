/* Transcript scripts (docs/script.md): a readable IMAP conversation, with
 * timing, that `imaptap compile` turns into a recording.
 *
 * The parser is pure: it takes the text, never reads a file or a clock,
 * and produces the events in order, each with its time offset from the
 * start of the script, or one precise error ("name:12:5: ..."). */
#ifndef REPLAY_SCRIPT_H
#define REPLAY_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/anomaly.h"
#include "imap/types.h"

#define REPLAY_SCRIPT_ADDR_MAX 64 /* "[v6 address]:port" */
#define REPLAY_SCRIPT_LITERAL_MAX (1ull << 30) /* a literal a script can spell out */

enum replay_script_kind {
	REPLAY_SCRIPT_OPEN,   /* a session starts (the TCP handshake) */
	REPLAY_SCRIPT_DATA,   /* bytes from dir's sender */
	REPLAY_SCRIPT_WINDOW, /* the receiver of dir closes (blocked) or opens its window */
	REPLAY_SCRIPT_CLOSE,  /* dir's sender closes (FIN) or resets (RST) the connection */
};

struct replay_script_event {
	enum replay_script_kind kind;
	unsigned session;  /* from 1 */
	imap_time_us at;   /* microseconds from the start of the script */
	unsigned line;     /* where the script says so; 0 for an implied close */
	enum imap_dir dir; /* DATA, CLOSE: the sender; WINDOW: toward the receiver */
	bool blocked;      /* WINDOW: closed */
	bool reset;        /* CLOSE: RST rather than FIN */
	uint8_t *data;     /* DATA: owned by the script */
	size_t len;
	char client[REPLAY_SCRIPT_ADDR_MAX]; /* OPEN: "127.0.0.1:50001" */
	char server[REPLAY_SCRIPT_ADDR_MAX]; /* OPEN: "127.0.0.1:143" */
};

struct replay_script {
	struct replay_script_event *events;
	size_t count;
	unsigned sessions;
	bool expect_given;             /* the header has an @expect line */
	bool expect[IMAP_RULE_COUNT];  /* the rules it names */
};

/* Parses text[0..len). name prefixes error messages (a file name).
 * Returns 0 and the script, or -1 with "name:LINE:COLUMN: what is wrong"
 * in err (no script). */
int replay_script_parse(const char *name, const char *text, size_t len,
			struct replay_script **script_r, char *err, size_t errlen);

void replay_script_free(struct replay_script **script);

const char *replay_script_kind_str(enum replay_script_kind kind);

/* The literal a text line (a `C:` line's text, t[0..len)) announces at its
 * end: {N}, {N+} (and so ~{N}), with something before the brace. Returns
 * the index of its first digit with *n (more than REPLAY_SCRIPT_LITERAL_MAX
 * when larger), or 0 when the line announces none. */
size_t replay_script_announced(const char *t, size_t len, uint64_t *n);

#endif
