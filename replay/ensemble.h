/* The sessions of one recording played at once, each by its own thread:
 * which session each live connection plays, and the order between
 * sessions that the recording shows.
 *
 * A session's gates are the units its side checks as they happen: for
 * replay serve, the client's units (each must arrive); for replay
 * client, the client's units (sent) and the server's tagged completions
 * and continuations (awaited). A unit recorded after a gate of another
 * session that was open at the time waits until that gate is done live,
 * and then keeps its recorded distance from it: the EXISTS an IDLE
 * connection got after another connection's APPEND is sent after the
 * live APPEND, never before it. */
#ifndef REPLAY_ENSEMBLE_H
#define REPLAY_ENSEMBLE_H

#include <stdbool.h>
#include <stddef.h>

#include "replay/recording.h"

struct replay_ensemble;

enum replay_gates {
	REPLAY_GATES_CLIENT,  /* replay serve */
	REPLAY_GATES_WALKED,  /* replay client */
};

/* recs stays the caller's and must outlive the ensemble. ordered: keep
 * the order between sessions (else each session only its own). speed 0:
 * no delays. NULL when out of memory. */
struct replay_ensemble *replay_ensemble_new(const struct replay_recordings *recs,
					    enum replay_gates gates, bool ordered, double speed);
void replay_ensemble_free(struct replay_ensemble **e);

size_t replay_ensemble_count(const struct replay_ensemble *e);
const struct replay_recording *replay_ensemble_recording(const struct replay_ensemble *e,
							 size_t idx);

/* Claims the first session no connection plays yet: its index, or -1
 * when every one is taken. */
long replay_ensemble_claim_next(struct replay_ensemble *e);
/* Claims session idx; false when a connection has it already. */
bool replay_ensemble_claim(struct replay_ensemble *e, size_t idx);
bool replay_ensemble_claimed(struct replay_ensemble *e, size_t idx);
/* When every session is claimed and has ended, makes them all free and
 * fresh again (a new round, for --loop) and returns true. */
bool replay_ensemble_new_round(struct replay_ensemble *e);

/* Gate k of session idx, by unit index, and how many it has. */
size_t replay_ensemble_gate_count(const struct replay_ensemble *e, size_t idx);
size_t replay_ensemble_gate(const struct replay_ensemble *e, size_t idx, size_t k);

/* The next gate of session idx was done live at the time at. */
void replay_ensemble_done(struct replay_ensemble *e, size_t idx, imap_time_us at);
/* Session idx does no more (it ended or diverged): nothing waits on it. */
void replay_ensemble_end(struct replay_ensemble *e, size_t idx);

struct replay_wait {
	size_t session; /* index */
	size_t unit;    /* the gate's unit in that session */
};

/* Whether unit of session idx may go as far as the other sessions go:
 * true with *due_r the live time it may go at (0: any time), or false
 * with *wait_r the gate it waits for. */
bool replay_ensemble_ready(struct replay_ensemble *e, size_t idx, size_t unit,
			   imap_time_us *due_r, struct replay_wait *wait_r);

#endif
