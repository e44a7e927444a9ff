/* One lock for a run's outputs when several event loops share them
 * (`proxy --workers`): whoever writes to the timeline, the pcap or the
 * event log holds it, and a loop reads the clock for what it writes while
 * holding it, so every file stays in time order.
 *
 * The lock is recursive per thread: a loop that took it for a whole
 * callback may call code that takes it again. A NULL lock is no lock (one
 * loop): every call below is then a no-op. */
#ifndef CAPTURE_SINK_LOCK_H
#define CAPTURE_SINK_LOCK_H

#include <stdbool.h>

#include "capture/sink.h"

struct capture_lock;

struct capture_lock *capture_lock_new(void);
void capture_lock_free(struct capture_lock **lock);

void capture_lock_acquire(struct capture_lock *lock);
void capture_lock_release(struct capture_lock *lock);
/* This thread holds it (always true of a NULL lock). */
bool capture_lock_held(const struct capture_lock *lock);

/* A sink that forwards every call to inner under lock. inner is read at
 * each call (sinks added to it later are reached too) and must outlive
 * the sink; destroying the sink leaves inner alone. */
struct capture_sink capture_sink_locked(struct capture_lock *lock,
					const struct capture_sinks *inner);

#endif
