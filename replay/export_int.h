/* What replay/export.c (sessions, order, the capture) and
 * replay/export_render.c (one session's script lines) share. Only these
 * files include it. */
#ifndef REPLAY_EXPORT_INT_H
#define REPLAY_EXPORT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/framer.h"
#include "imap/sensitive.h"
#include "imap/types.h"

/* A growing text; failed once out of memory (nothing more is added). */
struct xbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

void xbuf_put(struct xbuf *b, const void *data, size_t len);
void xbuf_printf(struct xbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xbuf_free(struct xbuf *b);

/* One session's script as it is written, and what the script's parser
 * will make of it: the time of the last event and the literals it
 * counts, so every line lands where the recording had its bytes. */
struct renderer {
	struct xbuf out;
	imap_time_us opened;   /* the session's start */
	imap_time_us prev;     /* the last event written */
	bool started;          /* an event was written (the first is placed with @) */
	bool raw_only;         /* no literal announced: every unit as raw bytes */
	uint64_t owed[2];      /* literal bytes the parser counts, by sender */
	bool begun[2];         /* a line of that literal was written */
	bool window_closed[2]; /* by the direction the closed window holds back */
};

void render_init(struct renderer *r, imap_time_us opened, bool raw_only);
/* A framed unit of dir's sender at ts: a line (with literal_len when the
 * framer saw a literal announced) or literal data. */
void render_unit(struct renderer *r, enum imap_dir dir, imap_time_us ts, const uint8_t *bytes,
		 size_t len, const struct imap_unit *unit);
/* Bytes that end no unit (a line cut by a gap or the end): raw. */
void render_raw(struct renderer *r, enum imap_dir dir, imap_time_us ts, const uint8_t *bytes,
		size_t len);
/* "close server", "reset client". */
void render_event(struct renderer *r, imap_time_us ts, const char *line);
/* The receiver of dir closes or opens its window; said only when it
 * changes, as the script's parser wants it. */
void render_window(struct renderer *r, imap_time_us ts, enum imap_dir dir, bool closed);
/* The time of the next event placed, for an implied close. */
void render_time(struct renderer *r, imap_time_us ts);
void render_comment(struct renderer *r, const char *text);
/* mark ('+' a delay, '@' an offset from the session's start) and us, in
 * as many lines as 30 days a line take. */
void render_wait(struct xbuf *b, char mark, imap_time_us us);
/* A delay "+1.5s", "+250us": exact microseconds the script's parser reads
 * back (docs/script.md); out holds at least 32 bytes. */
void render_duration(char *out, size_t size, imap_time_us us);

/* export --redact (replay/export_redact.c): spans found by
 * imap/sensitive.h replaced in place by keyed tokens of the same length. */
struct redactor;

/* kinds: enum imap_sens_kind bits to replace; key: the HMAC key's text,
 * NULL for a random one. NULL when out of memory or OpenSSL fails. */
struct redactor *redactor_new(unsigned kinds, const char *key);
void redactor_free(struct redactor **r);
/* OpenSSL or memory failed while tokens were made: the output cannot be
 * trusted to hold no value. */
bool redactor_failed(const struct redactor *r);
/* One framed unit of dir, all its bytes, changed in place. */
void redactor_unit(struct redactor *r, struct imap_sens *sens, enum imap_dir dir,
		   const struct imap_unit *unit, uint8_t *bytes, size_t len);
/* Bytes that end no unit: every run of letters and digits. */
void redactor_partial(struct redactor *r, struct imap_sens *sens, enum imap_dir dir,
		      uint8_t *bytes, size_t len);

#endif
