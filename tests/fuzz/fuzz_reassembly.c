/* libFuzzer target: TCP reassembly fed segments decoded from the input,
 * 8 bytes each, on two 4-tuples, with sequence numbers that jump, repeat
 * and wrap. Checks that every session opens first and closes last, once,
 * and that DATA and GAP offsets tile each direction. */
#include <stdlib.h>
#include <string.h>

#include "capture/reassembly.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSIONS_MAX 4096

struct check {
	uint64_t next[SESSIONS_MAX][2];
	uint8_t state[SESSIONS_MAX]; /* 0 unseen, 1 open, 2 closed */
};

static void on_event(void *ctx, const struct capture_stream_event *ev)
{
	struct check *c = ctx;
	unsigned s = ev->session;
	uint64_t *next;

	if (s == 0 || s >= SESSIONS_MAX)
		abort();
	next = &c->next[s][ev->dir == IMAP_C2S ? 0 : 1];
	switch (ev->kind) {
	case CAPTURE_STREAM_OPEN:
		if (c->state[s] != 0)
			abort();
		c->state[s] = 1;
		break;
	case CAPTURE_STREAM_DATA:
		if (c->state[s] != 1 || ev->offset != *next || ev->len == 0)
			abort();
		*next += ev->len;
		break;
	case CAPTURE_STREAM_GAP:
		if (c->state[s] != 1 || ev->offset != *next || ev->gap_len == 0)
			abort();
		*next += ev->gap_len;
		break;
	case CAPTURE_STREAM_CLOSE:
		if (c->state[s] != 1 || ev->bytes[0] + ev->missing[0] != c->next[s][0] ||
		    ev->bytes[1] + ev->missing[1] != c->next[s][1])
			abort();
		c->state[s] = 2;
		break;
	case CAPTURE_STREAM_WINDOW:
		if (c->state[s] != 1) /* only between OPEN and CLOSE */
			abort();
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct check check;
	static uint8_t payload[256];
	struct capture_reassembly *r;
	uint32_t seq[2][2] = {{0xffff0000u, 0x7fff0000u}, {1000, 5000}};
	imap_time_us ts = 1;

	memset(&check, 0, sizeof(check));
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	r = capture_reassembly_new(on_event, &check);
	if (r == NULL)
		return 0;
	/* per segment: [0] flags, side (0x40), tuple (0x80), big step (0x20);
	 * [1,2] seq step; [3,4] ack step; [5] length; [6] cut off; [7] time */
	for (size_t at = 0; at + 8 <= size; at += 8) {
		const uint8_t *p = data + at;
		int side = (p[0] >> 6) & 1, tuple = p[0] >> 7;
		int32_t step = (int16_t)(p[1] << 8 | p[2]) * ((p[0] & 0x20) ? 65536 : 1);
		struct capture_tcp_segment seg = {0};

		seq[tuple][side] += (uint32_t)step;
		seg.ts = ts += p[7];
		seg.src.version = seg.dst.version = 4;
		seg.src.addr[0] = (uint8_t)(1 + side);
		seg.dst.addr[0] = (uint8_t)(2 - side);
		seg.src.port = side ? 143 : (uint16_t)(40000 + tuple);
		seg.dst.port = side ? (uint16_t)(40000 + tuple) : 143;
		seg.seq = seq[tuple][side];
		seg.ack = seq[tuple][!side] + (uint32_t)(int16_t)(p[3] << 8 | p[4]);
		seg.flags = p[0] & (CAPTURE_TCP_FIN | CAPTURE_TCP_SYN | CAPTURE_TCP_RST |
				    CAPTURE_TCP_ACK);
		seg.payload = payload;
		seg.len = p[5];
		seg.missing = p[6] & 0x0f;
		capture_reassembly_segment(r, &seg);
	}
	capture_reassembly_finish(r);
	capture_reassembly_free(&r);
	for (unsigned s = 1; s < SESSIONS_MAX; s++)
		if (check.state[s] == 1)
			abort();
	return 0;
}
