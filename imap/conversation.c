#include "imap/conversation.h"

#include <stdlib.h>
#include <string.h>

struct imap_conv {
	struct imap_framer *framer[2];
	struct imap_redact *redact;
	struct imap_tracker *tracker;
	unsigned redact_flags;
	imap_observe_cb *cb;
	void *ctx;
	/* the client's command waiting for "+" before sending a literal */
	uint8_t sync_tag[IMAP_TAG_SHOW];
	size_t sync_tag_len;   /* 0: none */
	uint8_t line_tag[IMAP_TAG_SHOW]; /* tag of the client's logical line */
	size_t line_tag_len;
	/* context of the feed in progress */
	enum imap_dir dir;
	imap_time_us ts;
	enum imap_origin origin;
};

static void on_unit(void *ctx, const struct imap_unit *unit);

struct imap_conv *imap_conv_new(const struct imap_conv_config *config, imap_observe_cb *cb,
				void *ctx)
{
	struct imap_conv *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cb = cb;
	c->ctx = ctx;
	c->redact_flags = config->redact_flags;
	c->framer[IMAP_C2S] = imap_framer_new(IMAP_C2S, config->max_line, on_unit, c);
	c->framer[IMAP_S2C] = imap_framer_new(IMAP_S2C, config->max_line, on_unit, c);
	c->redact = imap_redact_new(config->redact_flags);
	c->tracker = imap_tracker_new();
	if (c->framer[0] == NULL || c->framer[1] == NULL || c->redact == NULL ||
	    c->tracker == NULL)
		imap_conv_free(&c);
	return c;
}

void imap_conv_free(struct imap_conv **conv)
{
	struct imap_conv *c = *conv;

	if (c == NULL)
		return;
	imap_framer_free(&c->framer[0]);
	imap_framer_free(&c->framer[1]);
	imap_redact_free(&c->redact);
	imap_tracker_free(&c->tracker);
	free(c);
	*conv = NULL;
}

/* Follows synchronising literals: a server that answers the command with
 * a tagged NO/BAD instead of "+" gets no literal bytes, so the client's
 * framer must stop waiting for them (RFC 3501 section 7.5). */
static void follow_sync_literal(struct imap_conv *c, const struct imap_unit *unit,
				const struct imap_line_info *info)
{
	if (c->dir == IMAP_C2S) {
		if (!(unit->flags & IMAP_UNIT_CONTINUED)) {
			size_t n = info->cls == IMAP_LINE_COMMAND ? info->tag.len : 0;

			c->line_tag_len = n <= sizeof(c->line_tag) ? n : 0;
			if (c->line_tag_len > 0)
				memcpy(c->line_tag, info->tag.p, c->line_tag_len);
		}
		c->sync_tag_len = 0;
		if (unit->kind == IMAP_UNIT_LITERAL_HEAD && !(unit->flags & IMAP_UNIT_LITERAL_NONSYNC) &&
		    unit->literal_len > 0 && c->line_tag_len > 0) {
			memcpy(c->sync_tag, c->line_tag, c->line_tag_len);
			c->sync_tag_len = c->line_tag_len;
		}
		return;
	}
	if (c->sync_tag_len == 0)
		return;
	if (info->cls == IMAP_LINE_CONTINUATION) {
		c->sync_tag_len = 0;
	} else if (info->cls == IMAP_LINE_TAGGED && info->tag.len == c->sync_tag_len &&
		   memcmp(info->tag.p, c->sync_tag, c->sync_tag_len) == 0) {
		imap_framer_cancel_literal(c->framer[IMAP_C2S]);
		c->sync_tag_len = 0;
	}
}

static void on_unit(void *ctx, const struct imap_unit *unit)
{
	struct imap_conv *c = ctx;
	struct imap_line_info info;
	struct imap_completion completion;
	struct imap_observation obs = {
		.dir = c->dir,
		.ts = c->ts,
		.origin = c->origin,
		.unit = unit,
		.data = unit->data,
		.len = unit->len,
	};
	uint8_t *masked = NULL;

	if (unit->kind != IMAP_UNIT_LITERAL_DATA) {
		imap_classify(c->dir, unit->data, unit->len,
			      (unit->flags & IMAP_UNIT_CONTINUED) != 0,
			      imap_tracker_auth_pending(c->tracker), &info);
		obs.info = &info;
		follow_sync_literal(c, unit, &info);
		if (imap_tracker_line(c->tracker, c->dir, c->ts, &info, &completion))
			obs.completion = &completion;
	}
	/* only client bytes carry credentials; bodies may go either way */
	if (c->redact_flags != 0 && unit->len > 0 &&
	    (c->dir == IMAP_C2S || (c->redact_flags & IMAP_REDACT_BODIES)))
		masked = malloc(unit->len);
	if (masked != NULL && imap_redact_unit(c->redact, c->dir, unit, obs.info, masked)) {
		obs.data = masked;
		obs.masked = true;
	}
	c->cb(c->ctx, &obs);
	free(masked);
}

void imap_conv_feed(struct imap_conv *c, enum imap_dir dir, imap_time_us ts,
		    enum imap_origin origin, const uint8_t *data, size_t len)
{
	c->dir = dir;
	c->ts = ts;
	c->origin = origin;
	imap_framer_feed(c->framer[dir], data, len);
}

void imap_conv_trim(struct imap_conv *c)
{
	imap_framer_trim(c->framer[0]);
	imap_framer_trim(c->framer[1]);
}

const struct imap_tracker *imap_conv_tracker(const struct imap_conv *c)
{
	return c->tracker;
}

const struct imap_framer *imap_conv_framer(const struct imap_conv *c, enum imap_dir dir)
{
	return c->framer[dir];
}
