#include "imap/conversation.h"
#include "imap/protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* What a direction carries under IMAP. */
enum layer {
	LAYER_PLAIN,
	LAYER_DEFLATE, /* raw DEFLATE after COMPRESS (RFC 4978) */
	LAYER_BROKEN,  /* did not inflate: no longer observed */
};

#define INFLATE_OUT 16384
#define HELD_MAX 4 /* findings held back while their unit is out */
#define HELD_SIZE (HELD_MAX * sizeof(struct imap_anomaly))

struct imap_conv {
	char note[2][96];          /* by direction: the proxy's word on its next line */
	struct imap_framer *framer[2];
	struct imap_redact *redact;
	struct imap_tracker *tracker;
	struct imap_protocol *protocol;
	struct imap_summary_builder *summary;
	unsigned redact_flags;
	imap_observe_cb *cb;
	imap_conv_event_cb *on_event;
	imap_conv_bytes_cb *on_bytes;
	bool rules;
	enum layer layer[2];
	z_stream *inflate[2];
	bool compress_ok; /* the server's tagged OK to COMPRESS was just seen */
	bool inflated_ok; /* offline: a COMPRESS stream may be there inflated */
	void *ctx;
	/* the client's command waiting for "+" before sending a literal */
	uint8_t sync_tag[IMAP_TAG_SHOW];
	size_t sync_tag_len;   /* 0: none */
	uint8_t line_tag[IMAP_TAG_SHOW]; /* tag of the client's logical line */
	size_t line_tag_len;
	bool sync_plus;        /* the "+" for the pending literal came */
	bool sync_early_said;  /* literal-before-continuation said for it */
	bool sync_untagged_said; /* untagged-before-continuation said for it */
	/* by direction: the line and the literal it announced, for a cut stream */
	char line_desc[2][IMAP_TAG_SHOW + IMAP_NAME_MAX + 2];
	char literal_desc[2][IMAP_TAG_SHOW + IMAP_NAME_MAX + 2];
	uint64_t literal_len[2];
	bool parse_bad[2];     /* parse-error said; quiet until a good line */
	/* the start of the unit being framed, and what it tells of secrets */
	uint8_t prefix[2][256];
	size_t prefix_len[2];
	uint64_t secret_from[2];
	/* findings about a unit wait until the unit itself is out */
	struct imap_anomaly *held; /* HELD_MAX, allocated while one waits (idle: none) */
	unsigned held_count;
	bool in_unit;
	/* context of the feed in progress */
	enum imap_dir dir;
	imap_time_us ts;
	enum imap_origin origin;
};

static void on_unit(void *ctx, const struct imap_unit *unit);
static void on_anomaly(void *ctx, const struct imap_anomaly *a);
static void rule(struct imap_conv *c, enum imap_rule r, const uint8_t *tag, size_t tag_len,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Bytes of the unit being framed: its start tells whether, and from
 * where, it may hold a secret, for outputs that write before it ends. */
static void on_framed_bytes(void *ctx, const uint8_t *data, size_t len)
{
	struct imap_conv *c = ctx;
	enum imap_dir dir = c->dir;

	if (c->redact_flags != 0 && c->prefix_len[dir] < sizeof(c->prefix[dir])) {
		bool literal = imap_framer_literal_left(c->framer[dir]) > 0;

		/* only a client line's start says anything: literal data and
		 * server lines are decided by the session's state alone */
		if (dir == IMAP_C2S && !literal) {
			size_t n = sizeof(c->prefix[dir]) - c->prefix_len[dir];

			if (n > len)
				n = len;
			memcpy(c->prefix[dir] + c->prefix_len[dir], data, n);
			c->prefix_len[dir] += n;
		}
		c->secret_from[dir] = imap_redact_secret_from(
			c->redact, dir, literal, imap_tracker_auth_pending(c->tracker), c->prefix[dir],
			c->prefix_len[dir]);
	}
	c->on_bytes(c->ctx, dir, c->ts, data, len, c->secret_from[dir] == IMAP_REDACT_NONE &&
		    imap_framer_tap_whole(c->framer[dir]) ? IMAP_CONV_BYTES_WHOLE : c->secret_from[dir]);
}

void imap_observation_mask_wire(const struct imap_observation *obs, uint8_t *p, size_t len,
				uint64_t unit_off)
{
	if (obs->masked)
		for (uint64_t i = unit_off; i < obs->len && i - unit_off < len; i++)
			p[i - unit_off] = obs->data[i];
	if (obs->secret_rest)
		imap_redact_fill_from(p, len, unit_off, obs->len,
				      obs->unit->kind == IMAP_UNIT_LITERAL_HEAD);
}

struct imap_conv *imap_conv_new(const struct imap_conv_config *config, imap_observe_cb *cb,
				void *ctx)
{
	struct imap_conv *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cb = cb;
	c->ctx = ctx;
	c->redact_flags = config->redact_flags;
	c->secret_from[IMAP_C2S] = c->secret_from[IMAP_S2C] = IMAP_REDACT_NONE;
	c->on_event = config->on_event;
	c->on_bytes = config->on_bytes;
	c->inflated_ok = config->inflated_capture_ok;
	c->framer[IMAP_C2S] = imap_framer_new(IMAP_C2S, config->max_line, on_unit, c);
	c->framer[IMAP_S2C] = imap_framer_new(IMAP_S2C, config->max_line, on_unit, c);
	c->redact = imap_redact_new(config->redact_flags);
	c->tracker = imap_tracker_new();
	c->summary = imap_summary_new();
	if (config->rules) /* --no-rules: no grammar either, only framing */
		c->protocol = imap_protocol_new(on_anomaly, c);
	if (c->framer[0] == NULL || c->framer[1] == NULL || c->redact == NULL ||
	    c->tracker == NULL || c->summary == NULL || (config->rules && c->protocol == NULL)) {
		imap_conv_free(&c);
		return NULL;
	}
	for (int d = 0; d < 2 && c->on_bytes != NULL; d++)
		imap_framer_set_tap(c->framer[d], on_framed_bytes);
	c->rules = config->rules;
	if (config->rules)
		imap_tracker_set_rules(c->tracker, &config->thresholds, on_anomaly, c);
	return c;
}

void imap_conv_free(struct imap_conv **conv)
{
	struct imap_conv *c = *conv;

	if (c == NULL)
		return;
	imap_redact_free(&c->redact);
	imap_tracker_free(&c->tracker);
	imap_protocol_free(&c->protocol);
	imap_summary_free(&c->summary);
	free(c->held);
	for (int d = 0; d < 2; d++) {
		imap_framer_free(&c->framer[d]);
		if (c->inflate[d] != NULL)
			inflateEnd(c->inflate[d]);
		free(c->inflate[d]);
	}
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
			c->sync_plus = false;
			c->sync_early_said = false;
			c->sync_untagged_said = false;
		}
		return;
	}
	if (info->cls == IMAP_LINE_CONTINUATION)
		imap_tracker_continuation(c->tracker, c->ts, c->sync_tag_len > 0);
	if (c->sync_tag_len == 0)
		return;
	if (info->cls == IMAP_LINE_UNTAGGED && !c->sync_untagged_said) {
		c->sync_untagged_said = true;
		rule(c, IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION, c->sync_tag, c->sync_tag_len,
		     "untagged %s before the + to the synchronising literal of %.*s: legal, but a "
		     "client that waits for the + first may hang",
		     info->name, (int)c->sync_tag_len, (const char *)c->sync_tag);
	}
	if (info->cls == IMAP_LINE_CONTINUATION) {
		c->sync_plus = true;
		c->sync_tag_len = 0;
	} else if (info->cls == IMAP_LINE_TAGGED && info->tag.len == c->sync_tag_len &&
		   memcmp(info->tag.p, c->sync_tag, c->sync_tag_len) == 0) {
		/* NO or BAD refuses the literal; OK claims a command done whose
		 * literal never came */
		if (info->status == IMAP_STATUS_OK)
			rule(c, IMAP_RULE_TAGGED_OK_BEFORE_CONTINUATION, c->sync_tag, c->sync_tag_len,
			     "%.*s completed OK before the + its synchronising literal waits for: "
			     "the command cannot have been whole",
			     (int)c->sync_tag_len, (const char *)c->sync_tag);
		imap_framer_cancel_literal(c->framer[IMAP_C2S]);
		c->sync_tag_len = 0;
	}
}

/* The one way out for every finding, whoever made it: counted in the
 * summary, then handed to the caller. */
static void emit_anomaly(struct imap_conv *c, enum imap_dir dir, const struct imap_anomaly *a)
{
	struct imap_conv_event e = {.kind = IMAP_CONV_ANOMALY, .dir = dir, .ts = a->ts, .anomaly = a};

	imap_summary_anomaly(c->summary, a);
	if (c->on_event != NULL)
		c->on_event(c->ctx, &e);
}

static void on_anomaly(void *ctx, const struct imap_anomaly *a)
{
	struct imap_conv *c = ctx;

	if (!c->in_unit)
		emit_anomaly(c, c->dir, a);
	else if (c->held_count < HELD_MAX && (c->held != NULL || (c->held = malloc(HELD_SIZE)) != NULL))
		c->held[c->held_count++] = *a;
}

/* A finding of the conversation's own (framing, literals), about the
 * command tagged tag (tag_len 0: none). */
static void rule(struct imap_conv *c, enum imap_rule r, const uint8_t *tag, size_t tag_len,
		 const char *fmt, ...)
{
	struct imap_anomaly a;
	va_list ap;

	if (!c->rules)
		return;
	va_start(ap, fmt);
	imap_anomaly_vmake(&a, r, c->ts, tag, tag_len, fmt, ap);
	va_end(ap);
	on_anomaly(c, &a);
}

/* The framer could not follow the stream: said once, then quiet until a
 * line parses again (one report per resynchronisation). */
static void check_parse(struct imap_conv *c, const struct imap_unit *unit,
			const struct imap_line_info *info)
{
	const char *what = NULL;

	if (unit->flags & IMAP_UNIT_BAD_LITERAL)
		what = "a literal count that is no number";
	else if (unit->flags & IMAP_UNIT_NUL)
		what = "a NUL byte outside a literal";
	else if (unit->flags & IMAP_UNIT_OPEN_QUOTE)
		what = "a quoted string that does not end";
	else if (info->cls == IMAP_LINE_MALFORMED)
		what = c->dir == IMAP_C2S ? "no tag and command" : "no *, + or tag";
	if (what == NULL) {
		c->parse_bad[c->dir] = false;
		return;
	}
	if (c->parse_bad[c->dir])
		return;
	c->parse_bad[c->dir] = true;
	rule(c, IMAP_RULE_PARSE_ERROR, NULL, 0,
	     "%s line at byte %llu: %s; the relay is unaffected, what is shown until the next "
	     "good line may be wrong",
	     c->dir == IMAP_C2S ? "client" : "server", (unsigned long long)unit->offset, what);
}

/* Names the logical line ("a1 APPEND", "* FETCH") and the literal it
 * announces, for a report of a stream cut inside that literal. */
static void remember_line(struct imap_conv *c, const struct imap_unit *unit,
			  const struct imap_line_info *info)
{
	char *desc = c->line_desc[c->dir];
	size_t size = sizeof(c->line_desc[c->dir]);

	/* only a literal's announcement needs the words (one starts its line) */
	if (unit->kind != IMAP_UNIT_LITERAL_HEAD)
		return;
	if (!(unit->flags & IMAP_UNIT_CONTINUED)) {
		if (info->cls == IMAP_LINE_COMMAND || info->cls == IMAP_LINE_TAGGED)
			snprintf(desc, size, "%.*s %s%s",
				 (int)(info->tag.len < IMAP_TAG_SHOW - 1 ? info->tag.len : IMAP_TAG_SHOW - 1),
				 (const char *)info->tag.p, info->uid ? "UID " : "", info->name);
		else if (info->cls == IMAP_LINE_UNTAGGED)
			snprintf(desc, size, "* %s", info->name);
		else
			snprintf(desc, size, "a %s line", imap_line_class_str(info->cls));
	}
	memcpy(c->literal_desc[c->dir], desc, size);
	c->literal_len[c->dir] = unit->literal_len;
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

	c->in_unit = true;
	if (unit->kind == IMAP_UNIT_LITERAL_DATA) {
		imap_tracker_activity(c->tracker, c->dir, c->ts);
		if (c->dir == IMAP_C2S && c->sync_tag_len > 0 && !c->sync_early_said) {
			c->sync_early_said = true;
			rule(c, IMAP_RULE_LITERAL_BEFORE_CONTINUATION, c->sync_tag, c->sync_tag_len,
			     "%.*s: literal bytes sent before the server's + (a synchronising {%llu}); "
			     "a server may take them as commands",
			     (int)c->sync_tag_len, (const char *)c->sync_tag,
			     (unsigned long long)unit->literal_len);
		}
	} else {
		imap_classify(c->dir, unit->data, unit->len,
			      (unit->flags & IMAP_UNIT_CONTINUED) != 0,
			      imap_tracker_auth_pending(c->tracker), &info);
		obs.info = &info;
		remember_line(c, unit, &info);
		check_parse(c, unit, &info);
		follow_sync_literal(c, unit, &info);
		if (imap_tracker_line(c->tracker, c->dir, c->ts, &info, &completion)) {
			obs.completion = &completion;
			imap_summary_completion(c->summary, &completion,
						c->origin == IMAP_ORIGIN_PROXY);
			/* the rest of this read is compressed already */
			if (c->dir == IMAP_S2C && completion.status == IMAP_STATUS_OK &&
			    completion.keyword == IMAP_KW_COMPRESS &&
			    c->layer[IMAP_S2C] == LAYER_PLAIN) {
				c->compress_ok = true;
				imap_framer_stop(c->framer[IMAP_S2C]);
			}
		}
	}
	/* only client bytes carry credentials; bodies may go either way */
	if (c->redact_flags != 0 && unit->len > 0 &&
	    (c->dir == IMAP_C2S || (c->redact_flags & IMAP_REDACT_BODIES)))
		masked = malloc(unit->len);
	if (masked != NULL) {
		enum imap_redact_result r = imap_redact_unit(c->redact, c->dir, unit, obs.info, masked);

		if (r != IMAP_REDACT_CLEAR) {
			obs.data = masked;
			obs.masked = true;
			obs.secret_rest = r == IMAP_REDACT_MASKED_REST;
		}
	} else if (c->redact_flags != 0 && unit->len > 0 && c->dir == IMAP_C2S) {
		/* cannot tell what to mask: show nothing of it */
		obs.len = 0;
		obs.secret_rest = true;
	}
	imap_protocol_unit(c->protocol, c->dir, c->ts, unit, obs.info,
			   (obs.masked || obs.secret_rest || obs.len != unit->len ? 0u : IMAP_PROTOCOL_QUOTABLE) |
			   (c->origin == IMAP_ORIGIN_PROXY ? IMAP_PROTOCOL_BY_PROXY : 0u));
	/* the next unit's start decides for its bytes */
	c->prefix_len[c->dir] = 0;
	c->secret_from[c->dir] = IMAP_REDACT_NONE;
	if (unit->kind != IMAP_UNIT_LITERAL_DATA && c->note[c->dir][0] != '\0')
		obs.note = c->note[c->dir];
	c->cb(c->ctx, &obs);
	if (obs.note != NULL)
		c->note[c->dir][0] = '\0';
	if (obs.masked && c->dir == IMAP_C2S) {
		/* the credential's clear bytes are not kept past their report */
		imap_framer_wipe(c->framer[c->dir]);
		imap_protocol_wipe(c->protocol, c->dir);
		explicit_bzero(c->prefix[c->dir], sizeof(c->prefix[c->dir]));
	}
	free(masked);
	c->in_unit = false;
	for (unsigned i = 0; i < c->held_count; i++)
		emit_anomaly(c, c->dir, &c->held[i]);
	c->held_count = 0;
	free(c->held); /* an idle session holds none */
	c->held = NULL;
}

static void notice(struct imap_conv *c, enum imap_dir dir, const char *text)
{
	struct imap_conv_event e = {.kind = IMAP_CONV_NOTICE, .dir = dir, .ts = c->ts, .text = text};

	if (c->on_event != NULL)
		c->on_event(c->ctx, &e);
}

static void stream_error(struct imap_conv *c, enum imap_dir dir, const char *text)
{
	struct imap_anomaly a;

	imap_anomaly_make(&a, IMAP_RULE_COMPRESS_STREAM_ERROR, c->ts, NULL, 0, "%s", text);
	c->layer[dir] = LAYER_BROKEN;
	emit_anomaly(c, dir, &a);
}

void imap_conv_anomaly(struct imap_conv *c, enum imap_dir dir, const struct imap_anomaly *a)
{
	emit_anomaly(c, dir, a);
}

static void inflate_failed(struct imap_conv *c, enum imap_dir dir, const char *why)
{
	char text[300];

	snprintf(text, sizeof(text),
		 "the %s stream after COMPRESS DEFLATE does not inflate at byte %llu (%s); "
		 "its lines are no longer shown, the relay goes on",
		 dir == IMAP_C2S ? "client's" : "server's",
		 (unsigned long long)c->inflate[dir]->total_in, why);
	stream_error(c, dir, text);
}

/* Both directions switch: the server's after the OK's CRLF, the client's
 * with its next byte, since a client sends nothing after COMPRESS until it
 * has the answer (RFC 4978 section 3). */
static void start_compress(struct imap_conv *c)
{
	for (int d = 0; d < 2; d++) {
		z_stream *z = calloc(1, sizeof(*z));

		if (z == NULL || inflateInit2(z, -MAX_WBITS) != Z_OK) {
			free(z);
			stream_error(c, (enum imap_dir)d,
				     "out of memory for inflating COMPRESS DEFLATE; lines are no longer shown");
			continue;
		}
		c->inflate[d] = z;
		c->layer[d] = LAYER_DEFLATE;
		imap_framer_reset(c->framer[d]);
	}
	notice(c, IMAP_S2C, "COMPRESS DEFLATE in effect both ways: relayed as is, shown inflated");
}

/* Offline, a COMPRESS stream may be in the capture inflated already
 * (imaptap's own pcap holds the inflated copy). Its first bytes then are
 * an IMAP line: a tag, "*" or "+", printable text and CRLF, which raw
 * DEFLATE practically never is. Live, plain text there is a server's bug
 * and is reported as such. */
static bool looks_inflated(const uint8_t *p, size_t n)
{
	if (n < 3 || !(p[0] == '*' || p[0] == '+' || imap_is_tag_char(p[0])))
		return false;
	for (size_t i = 1; i < n && i < 1024; i++) {
		if (p[i] == '\r')
			return i + 1 < n && p[i + 1] == '\n';
		if (p[i] < 0x20 || p[i] >= 0x7f)
			return false;
	}
	return false;
}

static void inflate_feed(struct imap_conv *c, enum imap_dir dir, const uint8_t *data, size_t len)
{
	z_stream *z = c->inflate[dir];
	uint8_t out[INFLATE_OUT];
	const uint8_t *const all = data;
	const size_t all_len = len;
	const uLong out_before = z->total_out;
	/* avail_in is an uInt: whatever is over 1 GiB goes in a later round */
	size_t piece = len < (1u << 30) ? len : (1u << 30);

	if (c->inflated_ok && z->total_in == 0 && looks_inflated(data, len)) {
		c->layer[dir] = LAYER_PLAIN;
		notice(c, dir, "this capture holds the COMPRESS stream inflated already (an "
			       "imaptap pcap): read as it is");
		imap_framer_feed(c->framer[dir], data, len);
		return;
	}

	z->next_in = (Bytef *)(uintptr_t)data;
	z->avail_in = (uInt)piece;
	while (c->layer[dir] == LAYER_DEFLATE) {
		int r;
		size_t got;

		z->next_out = out;
		z->avail_out = sizeof(out);
		r = inflate(z, Z_SYNC_FLUSH);
		got = sizeof(out) - z->avail_out;
		if (got > 0)
			imap_framer_feed(c->framer[dir], out, got);
		if (r == Z_STREAM_END) {
			/* a final block: RFC 4978 has no way back to plain */
			if (z->avail_in > 0)
				inflate_failed(c, dir, "bytes after the final deflate block");
			else
				inflateReset(z);
			break;
		}
		if (r == Z_DATA_ERROR || r == Z_NEED_DICT || r == Z_MEM_ERROR ||
		    r == Z_STREAM_ERROR) {
			inflate_failed(c, dir, z->msg != NULL ? z->msg : zError(r));
			/* the capture holds the direction from here as received,
			 * so that a reader of it can tell the same (capture.md):
			 * this read whole when none of it inflated */
			if (c->on_bytes != NULL && z->total_out == out_before)
				c->on_bytes(c->ctx, dir, c->ts, all, all_len, IMAP_CONV_BYTES_UNFRAMED);
			else if (c->on_bytes != NULL)
				c->on_bytes(c->ctx, dir, c->ts, z->next_in,
					    all_len - (size_t)(z->next_in - all),
					    IMAP_CONV_BYTES_UNFRAMED);
			break;
		}
		if (z->avail_in == 0 && z->avail_out > 0) {
			if (piece == len)
				break;
			data += piece;
			len -= piece;
			piece = len < (1u << 30) ? len : (1u << 30);
			z->next_in = (Bytef *)(uintptr_t)data;
			z->avail_in = (uInt)piece;
		}
	}
}

void imap_conv_feed(struct imap_conv *c, enum imap_dir dir, imap_time_us ts,
		    enum imap_origin origin, const uint8_t *data, size_t len)
{
	size_t used;

	/* what fell due before these bytes fires before them, as it would
	 * had the timer come first */
	imap_conv_tick(c, ts);
	c->dir = dir;
	c->ts = ts;
	c->origin = origin;
	/* any byte is progress, also one of a line that has not ended */
	if (len > 0)
		imap_tracker_activity(c->tracker, dir, ts);
	if (c->layer[dir] == LAYER_DEFLATE) {
		inflate_feed(c, dir, data, len);
		return;
	}
	if (c->layer[dir] == LAYER_BROKEN && c->on_bytes != NULL)
		c->on_bytes(c->ctx, dir, ts, data, len, IMAP_CONV_BYTES_UNFRAMED);
	if (c->layer[dir] != LAYER_PLAIN)
		return;
	used = imap_framer_feed(c->framer[dir], data, len);
	if (c->compress_ok) {
		c->compress_ok = false;
		start_compress(c);
		if (used < len && c->layer[dir] == LAYER_DEFLATE)
			inflate_feed(c, dir, data + used, len - used);
	}
}

/* Tells the tracker what the server's framer holds unfinished. */
static void update_server_partial(struct imap_conv *c)
{
	const struct imap_framer *f = c->framer[IMAP_S2C];
	struct imap_server_partial p = {0};

	if (c->layer[IMAP_S2C] != LAYER_BROKEN) {
		p.literal_left = imap_framer_literal_left(f);
		if (p.literal_left > 0)
			p.literal_len = c->literal_len[IMAP_S2C];
		else
			p.line_bytes = imap_framer_pending(f);
	}
	imap_tracker_server_partial(c->tracker, &p);
}

void imap_conv_tick(struct imap_conv *c, imap_time_us now)
{
	c->ts = now;
	if (imap_tracker_due(c->tracker, now)) /* what the server left unfinished words it */
		update_server_partial(c);
	imap_tracker_tick(c->tracker, now);
}

void imap_conv_connected(struct imap_conv *c, imap_time_us ts)
{
	imap_tracker_connected(c->tracker, ts);
}

imap_time_us imap_conv_next_deadline(const struct imap_conv *c)
{
	return imap_tracker_next_deadline(c->tracker);
}

void imap_conv_blocked(struct imap_conv *c, enum imap_dir dir, imap_time_us since,
		       uint64_t pending, imap_time_us now)
{
	c->ts = now;
	imap_tracker_blocked(c->tracker, dir, since, pending, now);
}

void imap_conv_eof(struct imap_conv *c, imap_time_us ts, bool closed)
{
	update_server_partial(c);
	imap_conv_tick(c, ts);
	if (closed) {
		struct imap_literal_cut cut = {0};
		bool cut_short = false;

		/* the client's literal first: its command is the one cut short */
		static const enum imap_dir order[2] = {IMAP_C2S, IMAP_S2C};

		for (int i = 0; i < 2 && !cut_short; i++) {
			enum imap_dir d = order[i];
			uint64_t left = c->layer[d] == LAYER_BROKEN
						? 0 : imap_framer_literal_left(c->framer[d]);

			if (left == 0)
				continue;
			cut_short = true;
			cut.dir = d;
			cut.line = c->literal_desc[d];
			cut.len = c->literal_len[d];
			cut.missing = left;
			if (d == IMAP_C2S) {
				cut.tag.p = c->line_tag;
				cut.tag.len = c->line_tag_len;
			}
		}
		/* a line the connection ended inside of was never shown: say so,
		 * however long it grew (a client that never sends CRLF) */
		for (int d = 0; d < 2; d++) {
			const struct imap_framer *f = c->framer[d];
			uint64_t held = imap_framer_pending(f);

			if (c->layer[d] == LAYER_BROKEN || imap_framer_literal_left(f) > 0 ||
			    held == 0)
				continue;
			c->dir = (enum imap_dir)d;
			rule(c, IMAP_RULE_PARSE_ERROR, NULL, 0,
			     "%s line at byte %llu cut by the end of the connection: %llu byte(s) "
			     "with no CRLF, relayed as they came and never shown",
			     d == IMAP_C2S ? "client" : "server",
			     (unsigned long long)(imap_framer_offset(f) - held),
			     (unsigned long long)held);
		}
		imap_tracker_eof(c->tracker, ts, cut_short ? &cut : NULL);
	}
	imap_tracker_close_findings(c->tracker, ts, closed);
	if (c->on_event != NULL) {
		struct imap_summary sum = *imap_summary_get(c->summary);
		struct imap_conv_event e = {.kind = IMAP_CONV_SUMMARY, .ts = ts, .summary = &sum};

		imap_protocol_summary(c->protocol, &sum);
		c->on_event(c->ctx, &e);
	}
}

void imap_conv_note(struct imap_conv *c, enum imap_dir dir, const char *note)
{
	snprintf(c->note[dir], sizeof(c->note[dir]), "%s", note);
}

void imap_conv_gap(struct imap_conv *c, enum imap_dir dir)
{
	imap_framer_reset(c->framer[dir]);
	imap_protocol_gap(c->protocol, dir);
	c->prefix_len[dir] = 0;
	if (dir == IMAP_C2S)
		c->sync_tag_len = 0;
	if (c->layer[dir] == LAYER_DEFLATE)
		stream_error(c, dir, "bytes missing from a compressed stream: it cannot be inflated "
				     "past them");
}

bool imap_conv_compressed(const struct imap_conv *c)
{
	return c->layer[IMAP_S2C] != LAYER_PLAIN || c->layer[IMAP_C2S] != LAYER_PLAIN;
}

void imap_conv_trim(struct imap_conv *c)
{
	imap_framer_trim(c->framer[0]);
	imap_framer_trim(c->framer[1]);
	imap_protocol_trim(c->protocol);
}

const struct imap_tracker *imap_conv_tracker(const struct imap_conv *c)
{
	return c->tracker;
}

const struct imap_framer *imap_conv_framer(const struct imap_conv *c, enum imap_dir dir)
{
	return c->framer[dir];
}
