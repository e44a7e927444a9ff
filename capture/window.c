#include "capture/window.h"

#include <stdlib.h>

struct window {
	struct capture_sink inner;
	imap_time_us since, until;
};

static bool inside(const struct window *w, imap_time_us ts)
{
	return (w->since < 0 || ts >= w->since) && (w->until < 0 || ts <= w->until);
}

/* Calls the inner sink's op when it has one. */
#define PASS(w, op, ...)                                                   \
	do {                                                               \
		if ((w)->inner.ops->op != NULL)                            \
			(w)->inner.ops->op((w)->inner.self, __VA_ARGS__); \
	} while (0)

static void w_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	struct window *w = self;

	PASS(w, settings, ts, s);
}

static void w_open(void *self, const struct capture_session_info *info)
{
	struct window *w = self;

	if (inside(w, info->ts))
		PASS(w, open, info);
}

static void w_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		    const uint8_t *data, size_t len, uint64_t secret_from)
{
	struct window *w = self;

	if (inside(w, ts))
		PASS(w, bytes, session, dir, ts, data, len, secret_from);
}

static void w_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct window *w = self;

	if (inside(w, obs->ts))
		PASS(w, observe, session, obs);
}

static void w_tls(void *self, unsigned session, imap_time_us ts, const struct capture_tls_info *info)
{
	struct window *w = self;

	if (inside(w, ts))
		PASS(w, tls, session, ts, info);
}

static void w_notice(void *self, unsigned session, imap_time_us ts, const char *text)
{
	struct window *w = self;

	if (inside(w, ts))
		PASS(w, notice, session, ts, text);
}

static void w_anomaly(void *self, unsigned session, const struct imap_anomaly *anomaly)
{
	struct window *w = self;

	if (inside(w, anomaly->ts))
		PASS(w, anomaly, session, anomaly);
}

static void w_flow(void *self, unsigned session, imap_time_us ts, enum imap_dir dir, bool blocked,
		   uint64_t pending)
{
	struct window *w = self;

	if (inside(w, ts))
		PASS(w, flow, session, ts, dir, blocked, pending);
}

static void w_fault(void *self, unsigned session, const struct capture_fault_mark *mark)
{
	struct window *w = self;

	if (inside(w, mark->ts))
		PASS(w, fault, session, mark);
}

static void w_summary(void *self, unsigned session, imap_time_us ts,
		      const struct imap_summary *summary)
{
	struct window *w = self;

	if (inside(w, ts))
		PASS(w, summary, session, ts, summary);
}

static void w_close(void *self, const struct capture_close_info *info)
{
	struct window *w = self;

	if (inside(w, info->ts))
		PASS(w, close, info);
}

/* the totals of the whole capture, whatever the window */
static void w_whole(void *self, imap_time_us ts, const struct capture_whole *whole)
{
	struct window *w = self;

	PASS(w, whole, ts, whole);
}

static void w_flush(void *self)
{
	struct window *w = self;

	if (w->inner.ops->flush != NULL)
		w->inner.ops->flush(w->inner.self);
}

static void w_reopen(void *self)
{
	struct window *w = self;

	if (w->inner.ops->reopen != NULL)
		w->inner.ops->reopen(w->inner.self);
}

static void w_destroy(void *self)
{
	struct window *w = self;

	if (w->inner.ops->destroy != NULL)
		w->inner.ops->destroy(w->inner.self);
	free(w);
}

static const struct capture_sink_ops window_ops = {
	.settings = w_settings,
	.open = w_open,
	.bytes = w_bytes,
	.observe = w_observe,
	.tls = w_tls,
	.notice = w_notice,
	.anomaly = w_anomaly,
	.flow = w_flow,
	.fault = w_fault,
	.summary = w_summary,
	.close = w_close,
	.whole = w_whole,
	.flush = w_flush,
	.reopen = w_reopen,
	.destroy = w_destroy,
};

int capture_window_wrap(struct capture_sink inner, imap_time_us since, imap_time_us until,
			struct capture_sink *sink_r)
{
	struct window *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return -1;
	w->inner = inner;
	w->since = since;
	w->until = until;
	sink_r->ops = &window_ops;
	sink_r->self = w;
	return 0;
}
