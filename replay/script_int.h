/* What the files of the script parser share: replay/script.c (the
 * parser: sessions, directives, time) and replay/script_data.c (the
 * lines that carry bytes: escapes, literals). Only these files include
 * it. */
#ifndef REPLAY_SCRIPT_INT_H
#define REPLAY_SCRIPT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "replay/script.h"

#define STEP_US 1000                            /* between lines without a delay */
#define DELAY_MAX_US (30ll * 24 * 3600 * IMAP_US_PER_S) /* one delay or offset: 30 days */
#define DEFAULT_CLIENT_PORT 50000
#define DEFAULT_SERVER "127.0.0.1:143"

struct parser {
	const char *name;
	char *err;
	size_t errlen;
	struct replay_script *script;
	size_t cap;
	unsigned line;             /* the line being read, from 1 */

	imap_time_us now;          /* time of the last event */
	bool delayed;              /* a delay line set `next` */
	imap_time_us next;         /* time of the next event when delayed */

	unsigned session;          /* the current session, 0 before the first */
	bool opened;               /* its OPEN was emitted */
	bool closed;               /* its CLOSE was emitted */
	unsigned closed_line;
	imap_time_us started;      /* its OPEN time */
	char client[REPLAY_SCRIPT_ADDR_MAX];
	char server[REPLAY_SCRIPT_ADDR_MAX];
	bool window_closed[2];     /* by direction: its receiver does not read */
	unsigned window_line[2];
	uint64_t owed[2];          /* literal bytes still due, by sender */
	bool literal_begun[2];     /* a line of the owed literal came: the next comes at
				      the same instant unless a delay says otherwise */
	uint64_t announced[2];
	unsigned announced_line[2];
};

/* replay/script.c */
/* Returns -1 after writing "name:line:column: message" into err. */
int script_fail(struct parser *p, unsigned column, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
const char *script_who(enum imap_dir dir);
struct replay_script_event *script_add_event(struct parser *p, enum replay_script_kind kind,
					     imap_time_us at);
imap_time_us script_next_time(struct parser *p);
int script_open_session(struct parser *p);
/* An event of the session body may come: opens the session, refuses
 * anything after its close. */
int script_body(struct parser *p, const char *what);
int script_check_owed(struct parser *p, enum imap_dir dir, unsigned column);
unsigned script_column_of(const char *line, const char *at);

/* replay/script_data.c */
/* "C: text", "S= raw\r\n", "C~ literal text" */
int script_data_line(struct parser *p, const char *line, size_t len);

#endif
