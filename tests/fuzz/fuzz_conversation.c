/* libFuzzer target: a whole conversation (framers, classifier, tracker,
 * COMPRESS inflate, masking, every rule) driven by a little program.
 *
 * Byte 0 configures: bits 0-1 masking, bit 2 inflated_capture_ok, the
 * rest the line limit. Then each operation is a header byte h, op = h & 7:
 *   0, 1  bytes c2s / s2c: [len] then len bytes; h & 0x10: [reps] more,
 *         the payload fed reps + 1 times (floods of commands)
 *   2, 3  the same bytes deflated here first (raw DEFLATE, sync flush,
 *         one stream per direction), to get past COMPRESS
 *   4     tick: [step] time advances step * 50 ms
 *   5     blocked toward dir (h & 8): [pending / 4 KiB]; h & 0x10: drains
 *   6     gap in dir (h & 8); h & 0x10: trim instead
 *   7     h & 0x10: end of the observation (closed when h & 8), last op;
 *         else bytes written by the proxy itself, like op 0/1
 * Every operation also moves the clock by (h >> 5) ms.
 * Checks: no crash, leak or UB; in-flight commands stay within
 * IMAP_TRACKER_MAX_FLIGHT; every observation and finding is well formed. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "imap/conversation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct imap_conv *conv;
	z_stream deflate[2];
	bool deflate_ready[2];
	uint64_t observed[2];
	imap_time_us now;
};

static void check_string(const char *s, size_t max)
{
	if (memchr(s, '\0', max) == NULL)
		abort();
}

static void check_slice(struct imap_slice s, const uint8_t *p, size_t len)
{
	if (s.len > 0 && (s.p < p || s.p > p + len || s.len > (size_t)(p + len - s.p)))
		abort();
}

static void on_obs(void *ctx, const struct imap_observation *obs)
{
	struct run *r = ctx;
	const struct imap_unit *u = obs->unit;

	if (obs->len != u->len || u->len > u->wire_len || obs->data == NULL)
		abort();
	if (u->kind == IMAP_UNIT_LITERAL_DATA) {
		if (obs->info != NULL || u->literal_offset + u->len > u->literal_len)
			abort();
	} else {
		if (obs->info == NULL)
			abort();
		check_slice(obs->info->tag, u->data, u->len);
		check_slice(obs->info->code, u->data, u->len);
		check_slice(obs->info->args, u->data, u->len);
	}
	if (obs->completion != NULL) {
		check_string(obs->completion->tag, sizeof(obs->completion->tag));
		check_string(obs->completion->command, sizeof(obs->completion->command));
	}
	r->observed[obs->dir] += u->wire_len;
}

static void on_event(void *ctx, const struct imap_conv_event *e)
{
	(void)ctx;
	switch (e->kind) {
	case IMAP_CONV_NOTICE:
		if (e->text == NULL)
			abort();
		break;
	case IMAP_CONV_ANOMALY:
		if ((unsigned)e->anomaly->rule >= IMAP_RULE_COUNT)
			abort();
		check_string(e->anomaly->tag, sizeof(e->anomaly->tag));
		check_string(e->anomaly->detail, sizeof(e->anomaly->detail));
		break;
	case IMAP_CONV_SUMMARY:
		if (e->summary == NULL)
			abort();
		break;
	}
}

static void on_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
		     size_t len, uint64_t secret_from)
{
	(void)secret_from;
	(void)ctx;
	(void)dir;
	(void)ts;
	if (len > 0 && data == NULL)
		abort();
}

/* Deflates payload as the peer of dir would after COMPRESS, and feeds it. */
static void feed_deflated(struct run *r, enum imap_dir dir, const uint8_t *p, size_t len)
{
	z_stream *z = &r->deflate[dir];
	uint8_t out[1024];

	if (!r->deflate_ready[dir]) {
		if (deflateInit2(z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			abort();
		r->deflate_ready[dir] = true;
	}
	z->next_in = (Bytef *)(uintptr_t)p;
	z->avail_in = (uInt)len;
	do {
		z->next_out = out;
		z->avail_out = sizeof(out);
		if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
			abort();
		imap_conv_feed(r->conv, dir, r->now, IMAP_ORIGIN_PEER, out,
			       sizeof(out) - z->avail_out);
	} while (z->avail_out == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_conv_config cfg = {
		.on_event = on_event,
		.on_bytes = on_bytes,
		.rules = true,
		.thresholds = {.stall = 1000000, .done_stall = 500000, .idle_max = 5000000,
			       .keepalive_gap = 2000000},
	};
	struct run r;
	size_t at = 1;
	bool ended = false;

	if (size < 1)
		return 0;
	memset(&r, 0, sizeof(r));
	cfg.redact_flags = data[0] & (IMAP_REDACT_CREDENTIALS | IMAP_REDACT_BODIES);
	cfg.inflated_capture_ok = (data[0] & 4) != 0;
	cfg.max_line = 16 + (size_t)(data[0] >> 3) * 16;
	r.conv = imap_conv_new(&cfg, on_obs, &r);
	if (r.conv == NULL)
		return 0;
	while (at < size && !ended) {
		uint8_t h = data[at++], op = h & 7;
		enum imap_dir dir = (h & 8) ? IMAP_S2C : IMAP_C2S;
		size_t len, reps = 1;

		r.now += (imap_time_us)(h >> 5) * 1000;
		if (op == 7 && (h & 0x10)) {
			imap_conv_eof(r.conv, r.now, (h & 8) != 0);
			ended = true;
			break;
		}
		switch (op) {
		case 0:
		case 1:
		case 2:
		case 3:
		case 7:
			if (op < 4)
				dir = (op & 1) ? IMAP_S2C : IMAP_C2S;
			if (at >= size)
				break;
			len = data[at++];
			if (op < 2 && (h & 0x10) && at < size)
				reps += data[at++];
			if (len > size - at)
				len = size - at;
			for (size_t i = 0; i < reps; i++) {
				if (op == 2 || op == 3)
					feed_deflated(&r, dir, data + at, len);
				else
					imap_conv_feed(r.conv, dir, r.now,
						       op == 7 ? IMAP_ORIGIN_PROXY : IMAP_ORIGIN_PEER,
						       data + at, len);
			}
			at += len;
			break;
		case 4:
			if (at < size)
				r.now += (imap_time_us)data[at++] * 50000;
			imap_conv_tick(r.conv, r.now);
			break;
		case 5:
			len = at < size ? data[at++] : 0;
			if (h & 0x10)
				imap_conv_blocked(r.conv, dir, -1, 0, r.now);
			else
				imap_conv_blocked(r.conv, dir, r.now > 3000000 ? r.now - 3000000 : 0,
						  (uint64_t)len * 4096, r.now);
			break;
		case 6:
			if (h & 0x10)
				imap_conv_trim(r.conv);
			else
				imap_conv_gap(r.conv, dir);
			break;
		}
		if (imap_tracker_in_flight(imap_conv_tracker(r.conv)) > IMAP_TRACKER_MAX_FLIGHT)
			abort();
	}
	if (!ended)
		imap_conv_eof(r.conv, r.now, true);
	imap_conv_free(&r.conv);
	for (int d = 0; d < 2; d++)
		if (r.deflate_ready[d])
			deflateEnd(&r.deflate[d]);
	return 0;
}
