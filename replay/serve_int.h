/* What the parts of replay serve share: one connection's state. */
#ifndef REPLAY_SERVE_INT_H
#define REPLAY_SERVE_INT_H

#include "capture/observed.h"
#include "replay/ensemble.h"
#include "replay/link.h"
#include "replay/serve.h"

#define TAGS_MAX 4096 /* commands in flight at once */
#define LIVE_MAX 64 /* live client units read ahead of the recording */

/* A client unit as it arrived, masked like the recording. */
struct live_unit {
	enum imap_unit_kind kind;
	uint8_t *data;
	size_t len;
	char tag[REPLAY_TAG_MAX];
	imap_time_us at; /* arrival, live clock */
	bool starttls;   /* a STARTTLS command */
};

struct tag_pair {
	char recorded[REPLAY_TAG_MAX];
	char live[REPLAY_TAG_MAX];
};

struct serve {
	const struct replay_recording *rec;
	const struct replay_options *opt;
	struct replay_result *res;
	struct replay_link link;
	struct observed_session *observed; /* frames and masks the live client's bytes */
	struct live_unit live[LIVE_MAX];
	size_t live_head, live_count;
	bool io_error;
	struct tag_pair *tags;
	size_t tag_count;
	imap_time_us start;
	imap_time_us trigger_live;    /* when the last matched client unit arrived */
	imap_time_us trigger_rec;     /* and when it was recorded */
	char starttls_tag[REPLAY_TAG_MAX]; /* recorded tag of a STARTTLS in flight */
	size_t burst_end;             /* coalesce: units before this index are due now */
	struct replay_ensemble *ens;  /* the sessions played at once */
	size_t idx;                   /* the session played (while tentative: the leader) */
	bool tentative;               /* --match first-lines: no session claimed yet */
	bool *candidate;              /* tentative: the sessions the lines agree with */
	size_t matched;               /* tentative: client units matched so far */
	char (*first_tags)[REPLAY_TAG_MAX]; /* tentative: their live tags */
	imap_time_us *first_at;       /* and when they came */
	imap_time_us cross_since;     /* when a wait for another session began; 0 none */
};

/* Bytes as a person reads them: no CRLF, the escapes of capture/escape.h,
 * and "..." where they had to be cut. */
void replay_printable(char *out, size_t size, const uint8_t *p, size_t n);

/* The client diverged at recorded unit i: the report, and a BYE to the
 * client saying why. got: what arrived instead, or NULL. */
void replay_serve_diverged(struct serve *s, size_t i, const char *what,
			   const struct live_unit *got);

#endif
