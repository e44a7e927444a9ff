#include "capture/observed.h"

#include <stdlib.h>

struct observed_session {
	unsigned id;
	const struct capture_sinks *sinks; /* NULL: none */
	struct imap_conv *conv;
	struct observed_hooks hooks;
	uint64_t bytes[2]; /* of the stream as observed, by enum imap_dir */
};

static void on_observation(void *ctx, const struct imap_observation *obs)
{
	struct observed_session *o = ctx;

	if (o->sinks != NULL)
		capture_sinks_observe(o->sinks, o->id, obs);
	if (o->hooks.observation != NULL)
		o->hooks.observation(o->hooks.ctx, obs);
}

static void on_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
		     size_t len, uint64_t secret_from)
{
	struct observed_session *o = ctx;

	o->bytes[dir] += len;
	if (o->sinks != NULL)
		capture_sinks_bytes(o->sinks, o->id, dir, ts, data, len, secret_from);
}

static void on_event(void *ctx, const struct imap_conv_event *e)
{
	struct observed_session *o = ctx;

	switch (e->kind) {
	case IMAP_CONV_NOTICE:
		observed_notice(o, e->ts, e->text);
		break;
	case IMAP_CONV_ANOMALY:
		if (o->sinks != NULL)
			capture_sinks_anomaly(o->sinks, o->id, e->anomaly);
		if (o->hooks.anomaly != NULL)
			o->hooks.anomaly(o->hooks.ctx, e->anomaly);
		break;
	case IMAP_CONV_SUMMARY:
		if (o->sinks != NULL)
			capture_sinks_summary(o->sinks, o->id, e->ts, e->summary);
		break;
	}
}

struct observed_session *observed_open(const struct capture_sinks *sinks,
				       const struct capture_session_info *info,
				       const struct imap_conv_config *config,
				       const struct observed_hooks *hooks)
{
	struct observed_session *o = calloc(1, sizeof(*o));
	struct imap_conv_config cc = *config;

	if (o == NULL)
		return NULL;
	o->id = info->id;
	o->sinks = sinks;
	if (hooks != NULL)
		o->hooks = *hooks;
	cc.on_event = on_event;
	cc.on_bytes = on_bytes;
	o->conv = imap_conv_new(&cc, on_observation, o);
	if (o->conv == NULL) {
		free(o);
		return NULL;
	}
	if (sinks != NULL)
		capture_sinks_open(sinks, info);
	return o;
}

struct imap_conv *observed_conv(const struct observed_session *o)
{
	return o->conv;
}

void observed_feed(struct observed_session *o, enum imap_dir dir, imap_time_us ts,
		   enum imap_origin origin, const uint8_t *data, size_t len)
{
	imap_conv_feed(o->conv, dir, ts, origin, data, len);
}

void observed_notice(struct observed_session *o, imap_time_us ts, const char *text)
{
	if (o->sinks != NULL)
		capture_sinks_notice(o->sinks, o->id, ts, text);
}

void observed_tls(struct observed_session *o, imap_time_us ts, const struct capture_tls_info *info)
{
	if (o->sinks != NULL)
		capture_sinks_tls(o->sinks, o->id, ts, info);
}

void observed_flow(struct observed_session *o, imap_time_us ts, enum imap_dir toward,
		   bool blocked, uint64_t pending)
{
	if (o->sinks != NULL)
		capture_sinks_flow(o->sinks, o->id, ts, toward, blocked, pending);
}

void observed_fault(struct observed_session *o, const struct capture_fault_mark *mark)
{
	if (o->sinks != NULL)
		capture_sinks_fault(o->sinks, o->id, mark);
}

void observed_flush(struct observed_session *o)
{
	if (o->sinks != NULL)
		capture_sinks_flush(o->sinks);
}

void observed_close(struct observed_session **op, const struct capture_close_info *how)
{
	struct observed_session *o = *op;
	struct capture_close_info info;

	if (o == NULL)
		return;
	/* counted here, so that every source counts the same bytes */
	info = *how;
	info.bytes[IMAP_C2S] = o->bytes[IMAP_C2S];
	info.bytes[IMAP_S2C] = o->bytes[IMAP_S2C];
	/* a capture that stops, or loses a session's end, did not close it:
	 * its unanswered commands are not the server's fault */
	imap_conv_eof(o->conv, info.ts,
		      info.end != CAPTURE_END_OPEN && info.end != CAPTURE_END_UNSEEN);
	if (o->sinks != NULL) {
		capture_sinks_close(o->sinks, &info);
		capture_sinks_flush(o->sinks);
	}
	imap_conv_free(&o->conv);
	free(o);
	*op = NULL;
}

void observed_discard(struct observed_session **op)
{
	struct observed_session *o = *op;

	if (o == NULL)
		return;
	imap_conv_free(&o->conv);
	free(o);
	*op = NULL;
}
