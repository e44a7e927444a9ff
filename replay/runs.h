/* Replays running beside each other, one thread and one connection each:
 * replay serve's accepted clients, replay client's connections to the
 * server. The caller starts them and reaps the finished ones, in the
 * order they finish, from its own loop. */
#ifndef REPLAY_RUNS_H
#define REPLAY_RUNS_H

#include <stdbool.h>
#include <stddef.h>

#include "replay/serve.h"

/* Plays one connection: fd, the session (an ensemble index, or -1 for
 * one the run picks itself), into result. */
typedef void replay_run_fn(void *ctx, int fd, long session, struct replay_result *result);

struct replay_run {
	unsigned n;            /* 1-based, in the order started */
	int fd;                /* closed once the run is reaped */
	long session;          /* as started */
	struct replay_result result;
};

struct replay_runs;

/* At most max runs at once. NULL when out of memory. */
struct replay_runs *replay_runs_new(replay_run_fn *fn, void *ctx, size_t max);
/* Starts a run on fd (which the runs own from now on). Returns its
 * number, or 0 when it cannot (too many at once, no thread): fd is
 * closed then. */
unsigned replay_runs_start(struct replay_runs *r, int fd, long session);
/* How many runs have not been reaped. */
size_t replay_runs_active(const struct replay_runs *r);
/* Joins one finished run, or with wait the next to finish; NULL when none
 * is (left). The run stays valid until the next call. */
const struct replay_run *replay_runs_reap(struct replay_runs *r, bool wait);
/* Cuts every run's connection, so that each ends soon. */
void replay_runs_interrupt(struct replay_runs *r);
/* Joins what is left (without reports) and frees. */
void replay_runs_free(struct replay_runs **r);

#endif
