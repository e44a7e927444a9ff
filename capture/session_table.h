/* Open sessions by number, each with a small value of its holder's (the
 * route a sink counts it under): for sinks that are told only a
 * session's number after its open. Linear probing, entries moved back on
 * removal, so a table of many short sessions keeps no tombstones. Pure. */
#ifndef CAPTURE_SESSION_TABLE_H
#define CAPTURE_SESSION_TABLE_H

#include <stdbool.h>
#include <stddef.h>

struct capture_session_table {
	struct capture_session_slot *slot;
	size_t cap;  /* a power of two, or 0 */
	size_t used;
};

/* Session id (not 0) is open with value. Returns 0, or -1 when out of
 * memory (it is then not kept). */
int capture_session_table_put(struct capture_session_table *t, unsigned id, unsigned value);
/* Session id's value into *value; false when it is not open. */
bool capture_session_table_get(const struct capture_session_table *t, unsigned id,
			       unsigned *value);
/* Session id closed (nothing when it is not open). */
void capture_session_table_remove(struct capture_session_table *t, unsigned id);
void capture_session_table_free(struct capture_session_table *t);

#endif
