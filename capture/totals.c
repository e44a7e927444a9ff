#include "capture/totals.h"

#include <stdlib.h>
#include <string.h>

#include "imap/summary.h"

struct capture_totals {
	struct imap_summary_builder *all; /* every session's completions and findings */
	struct capture_whole whole;
};

static void t_open(void *self, const struct capture_session_info *info)
{
	struct capture_totals *t = self;

	(void)info;
	t->whole.sessions++;
}

static void t_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct capture_totals *t = self;

	(void)session;
	if (obs->completion != NULL)
		imap_summary_completion(t->all, obs->completion, obs->origin == IMAP_ORIGIN_PROXY);
}

static void t_anomaly(void *self, unsigned session, const struct imap_anomaly *anomaly)
{
	struct capture_totals *t = self;

	(void)session;
	imap_summary_anomaly(t->all, anomaly);
}

static void t_close(void *self, const struct capture_close_info *info)
{
	struct capture_totals *t = self;

	if ((unsigned)info->by <= CAPTURE_SIDE_CAPTURE && (unsigned)info->end <= CAPTURE_END_UNSEEN)
		t->whole.ended[info->by][info->end]++;
}

static void t_destroy(void *self)
{
	struct capture_totals *t = self;

	imap_summary_free(&t->all);
	free(t);
}

static const struct capture_sink_ops totals_ops = {
	.open = t_open,
	.observe = t_observe,
	.anomaly = t_anomaly,
	.close = t_close,
	.destroy = t_destroy,
};

struct capture_totals *capture_totals_new(struct capture_sink *sink_r)
{
	struct capture_totals *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->all = imap_summary_new()) == NULL) {
		free(t);
		return NULL;
	}
	sink_r->ops = &totals_ops;
	sink_r->self = t;
	return t;
}

const struct capture_whole *capture_totals_get(struct capture_totals *t)
{
	t->whole.summary = imap_summary_get(t->all);
	return &t->whole;
}
