#include "capture/sink_lock.h"

#include <pthread.h>
#include <stdlib.h>

struct capture_lock {
	pthread_mutex_t mutex;
};

/* What this thread holds: one run has one lock, so one slot will do. */
static _Thread_local const struct capture_lock *held_lock;
static _Thread_local unsigned held_depth;

struct capture_lock *capture_lock_new(void)
{
	struct capture_lock *l = calloc(1, sizeof(*l));

	if (l != NULL && pthread_mutex_init(&l->mutex, NULL) != 0) {
		free(l);
		l = NULL;
	}
	return l;
}

void capture_lock_free(struct capture_lock **lock)
{
	if (*lock == NULL)
		return;
	pthread_mutex_destroy(&(*lock)->mutex);
	free(*lock);
	*lock = NULL;
}

void capture_lock_acquire(struct capture_lock *l)
{
	if (l == NULL)
		return;
	if (held_lock == l) {
		held_depth++;
		return;
	}
	pthread_mutex_lock(&l->mutex);
	held_lock = l;
	held_depth = 1;
}

void capture_lock_release(struct capture_lock *l)
{
	if (l == NULL || held_lock != l)
		return;
	if (--held_depth > 0)
		return;
	held_lock = NULL;
	pthread_mutex_unlock(&l->mutex);
}

bool capture_lock_held(const struct capture_lock *l)
{
	return l == NULL || held_lock == l;
}

struct locked {
	struct capture_lock *lock;
	const struct capture_sinks *inner;
};

#define LOCKED(self, call)                          \
	do {                                        \
		struct locked *l_ = (self);         \
		capture_lock_acquire(l_->lock);     \
		call;                               \
		capture_lock_release(l_->lock);     \
	} while (0)

static void locked_settings(void *self, imap_time_us ts, const struct capture_run_settings *st)
{
	LOCKED(self, capture_sinks_settings(l_->inner, ts, st));
}

static void locked_open(void *self, const struct capture_session_info *info)
{
	LOCKED(self, capture_sinks_open(l_->inner, info));
}

static void locked_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
			 const uint8_t *data, size_t len, uint64_t secret_from)
{
	LOCKED(self, capture_sinks_bytes(l_->inner, session, dir, ts, data, len, secret_from));
}

static void locked_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	LOCKED(self, capture_sinks_observe(l_->inner, session, obs));
}

static void locked_tls(void *self, unsigned session, imap_time_us ts,
		       const struct capture_tls_info *info)
{
	LOCKED(self, capture_sinks_tls(l_->inner, session, ts, info));
}

static void locked_notice(void *self, unsigned session, imap_time_us ts, const char *text)
{
	LOCKED(self, capture_sinks_notice(l_->inner, session, ts, text));
}

static void locked_anomaly(void *self, unsigned session, const struct imap_anomaly *anomaly)
{
	LOCKED(self, capture_sinks_anomaly(l_->inner, session, anomaly));
}

static void locked_flow(void *self, unsigned session, imap_time_us ts, enum imap_dir dir,
			bool blocked, uint64_t pending)
{
	LOCKED(self, capture_sinks_flow(l_->inner, session, ts, dir, blocked, pending));
}

static void locked_fault(void *self, unsigned session, const struct capture_fault_mark *mark)
{
	LOCKED(self, capture_sinks_fault(l_->inner, session, mark));
}

static void locked_summary(void *self, unsigned session, imap_time_us ts,
			   const struct imap_summary *summary)
{
	LOCKED(self, capture_sinks_summary(l_->inner, session, ts, summary));
}

static void locked_close(void *self, const struct capture_close_info *info)
{
	LOCKED(self, capture_sinks_close(l_->inner, info));
}

static void locked_whole(void *self, imap_time_us ts, const struct capture_whole *whole)
{
	LOCKED(self, capture_sinks_whole(l_->inner, ts, whole));
}

static void locked_flush(void *self)
{
	LOCKED(self, capture_sinks_flush(l_->inner));
}

static void locked_reopen(void *self)
{
	LOCKED(self, capture_sinks_reopen(l_->inner));
}

static void locked_destroy(void *self)
{
	free(self);
}

static const struct capture_sink_ops locked_ops = {
	.settings = locked_settings,
	.open = locked_open,
	.bytes = locked_bytes,
	.observe = locked_observe,
	.tls = locked_tls,
	.notice = locked_notice,
	.anomaly = locked_anomaly,
	.flow = locked_flow,
	.fault = locked_fault,
	.summary = locked_summary,
	.close = locked_close,
	.whole = locked_whole,
	.flush = locked_flush,
	.reopen = locked_reopen,
	.destroy = locked_destroy,
};

struct capture_sink capture_sink_locked(struct capture_lock *lock,
					const struct capture_sinks *inner)
{
	struct locked *l = calloc(1, sizeof(*l));
	struct capture_sink sink = {0};

	if (l == NULL)
		return sink;
	l->lock = lock;
	l->inner = inner;
	sink.ops = &locked_ops;
	sink.self = l;
	return sink;
}
