/* TCP reassembly: segments in, the stream events of each connection out
 * (open, data in order, gaps, windows, close). The table of connections is
 * capture/reassembly_table.c, each direction's queue
 * capture/reassembly_queue.c. */
#include "capture/reassembly.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "capture/reassembly_int.h"
#include "imap/zero.h"

/* ---- events ---- */

static enum imap_dir side_dir(const struct conn *c, int side)
{
	return side == c->client ? IMAP_C2S : IMAP_S2C;
}

static void event_init(const struct conn *c, struct capture_stream_event *ev,
		       enum capture_stream_kind kind, imap_time_us ts)
{
	imap_zero(ev, sizeof(*ev));
	ev->kind = kind;
	ev->session = c->session;
	ev->ts = ts;
	ev->client = c->name[c->client];
	ev->server = c->name[1 - c->client];
	ev->client_ep = &c->ep[c->client];
	ev->server_ep = &c->ep[1 - c->client];
}

/* Client and server, when nothing better decides before the connection
 * must be reported: the higher port is the client's (ephemeral), else
 * whoever sent the first packet. */
static void decide_by_ports(struct conn *c)
{
	if (c->client >= 0)
		return;
	c->client = c->ep[1].port > c->ep[0].port ? 1 : 0;
}

static void report_open(struct capture_reassembly *r, struct conn *c)
{
	struct capture_stream_event ev;

	if (c->opened)
		return;
	decide_by_ports(c);
	c->opened = true;
	capture_endpoint_format(&c->ep[0], c->name[0], sizeof(c->name[0]));
	capture_endpoint_format(&c->ep[1], c->name[1], sizeof(c->name[1]));
	event_init(c, &ev, CAPTURE_STREAM_OPEN, c->first_ts);
	ev.midstream = c->midstream;
	r->cb(r->ctx, &ev);
}

/* Bytes are about to come from side: when nothing decided yet who is who,
 * the first to speak is the server (an IMAP server greets first). */
static void speaker(struct capture_reassembly *r, struct conn *c, int side)
{
	if (c->client < 0)
		c->client = 1 - side;
	report_open(r, c);
}

static void report_data(struct capture_reassembly *r, struct conn *c, int side,
			imap_time_us ts, const uint8_t *data, size_t len)
{
	struct side *s = &c->side[side];
	struct capture_stream_event ev;

	if (len == 0)
		return;
	speaker(r, c, side);
	event_init(c, &ev, CAPTURE_STREAM_DATA, ts);
	ev.dir = side_dir(c, side);
	ev.data = data;
	ev.len = len;
	ev.offset = s->next;
	s->next += len;
	s->delivered += len;
	r->cb(r->ctx, &ev);
}

static void report_gap(struct capture_reassembly *r, struct conn *c, int side,
		       imap_time_us ts, uint64_t len)
{
	struct side *s = &c->side[side];
	struct capture_stream_event ev;

	if (len == 0)
		return;
	speaker(r, c, side);
	event_init(c, &ev, CAPTURE_STREAM_GAP, ts);
	ev.dir = side_dir(c, side);
	ev.offset = s->next;
	ev.gap_len = len;
	s->next += len;
	s->missing += len;
	r->cb(r->ctx, &ev);
}

/* Delivers queued chunks that start at or before the next byte. */
static void drain(struct capture_reassembly *r, struct conn *c, int side, imap_time_us ts)
{
	struct side *s = &c->side[side];

	while (s->head != NULL && s->head->offset <= s->next) {
		struct chunk *k = s->head;
		uint64_t end = k->offset + k->len;

		if (end > s->next) {
			size_t skip = (size_t)(s->next - k->offset);

			if (k->lost)
				report_gap(r, c, side, ts, end - s->next);
			else
				report_data(r, c, side, ts, k->data + skip, k->len - skip);
		}
		side_queue_drop(s, k);
	}
}

/* Everything before target can no longer arrive: holes become gaps, queued
 * bytes in between are delivered. Stops at the first hole at or past
 * target. */
static void skip_to(struct capture_reassembly *r, struct conn *c, int side, uint64_t target,
		    imap_time_us ts)
{
	struct side *s = &c->side[side];

	drain(r, c, side, ts);
	while (s->next < target) {
		uint64_t to = target;

		if (s->head != NULL && s->head->offset < to)
			to = s->head->offset;
		report_gap(r, c, side, ts, to - s->next);
		drain(r, c, side, ts);
	}
}

/* ---- bytes and acknowledgements ---- */

/* Bytes [offset, offset + len) arrived at ts, followed by missing bytes
 * the capture cut off. */
static int accept_bytes(struct capture_reassembly *r, struct conn *c, int side, int64_t offset,
			const uint8_t *data, size_t len, size_t missing, imap_time_us ts)
{
	struct side *s = &c->side[side];
	int64_t next = (int64_t)s->next;

	if (offset < next) { /* already delivered: the first copy stands */
		int64_t skip = next - offset;

		if ((uint64_t)skip >= len + missing)
			return 0;
		if ((uint64_t)skip >= len) {
			missing -= (size_t)(skip - (int64_t)len);
			len = 0;
		} else {
			data += skip;
			len -= (size_t)skip;
		}
		offset = next;
	}
	if (s->fin) { /* nothing counts past the end of the stream */
		uint64_t end = s->fin_offset;

		if ((uint64_t)offset >= end)
			return 0;
		if ((uint64_t)offset + len > end) {
			len = (size_t)(end - (uint64_t)offset);
			missing = 0;
		} else if ((uint64_t)offset + len + missing > end) {
			missing = (size_t)(end - (uint64_t)offset - len);
		}
	}
	if (len > 0) {
		if (offset == next && s->head == NULL)
			report_data(r, c, side, ts, data, len); /* in order: no copy */
		else if (side_queue_add(s, (uint64_t)offset, data, len) < 0)
			return -1;
	}
	if (missing > 0 && side_queue_add(s, (uint64_t)offset + len, NULL, missing) < 0)
		return -1;
	drain(r, c, side, ts);
	while (side_queue_over_bound(s))
		skip_to(r, c, side, s->head->offset, ts);
	return 0;
}

/* The peer acknowledged everything before ack: bytes of side still missing
 * below it went by without being captured; they will not come again. */
static void acknowledged(struct capture_reassembly *r, struct conn *c, int side, uint32_t ack,
			 imap_time_us ts)
{
	struct side *s = &c->side[side];
	int64_t end;

	if (!s->anchored) {
		/* nothing seen from side yet: its stream starts where the
		 * peer says it is */
		s->anchored = true;
		s->base = ack;
		return;
	}
	end = side_seq_offset(s, ack);
	if (s->fin && end > (int64_t)s->fin_offset)
		end = (int64_t)s->fin_offset; /* the FIN's own sequence number */
	if (end <= (int64_t)s->next || end - (int64_t)s->next > ACK_PLAUSIBLE)
		return;
	skip_to(r, c, side, (uint64_t)end, ts);
}

/* ---- connections ---- */

static void forget(struct capture_reassembly *r, struct conn *c)
{
	flow_table_remove(r, c);
	conn_free_queues(c);
	free(c);
}

/* Reports what can no longer come, the CLOSE, and keeps the 4-tuple as a
 * closed record for late packets. */
static void close_conn(struct capture_reassembly *r, struct conn *c,
		       enum capture_close_reason reason, imap_time_us ts)
{
	struct capture_stream_event ev;

	for (int i = 0; i < 2; i++) {
		struct side *s = &c->side[i];
		uint64_t end = s->next;

		if (s->tail != NULL)
			end = s->tail->offset + s->tail->len;
		if (s->fin && s->fin_offset > end)
			end = s->fin_offset;
		skip_to(r, c, i, end, ts);
	}
	report_open(r, c);
	event_init(c, &ev, CAPTURE_STREAM_CLOSE, ts);
	ev.reason = reason;
	ev.bytes[side_dir(c, c->client)] = c->side[c->client].delivered;
	ev.bytes[side_dir(c, 1 - c->client)] = c->side[1 - c->client].delivered;
	ev.missing[side_dir(c, c->client)] = c->side[c->client].missing;
	ev.missing[side_dir(c, 1 - c->client)] = c->side[1 - c->client].missing;
	r->cb(r->ctx, &ev);

	conn_free_queues(c);
	c->closed = true;
	c->last_ts = ts;
	conn_list_remove(&r->live, c);
	conn_list_append(&r->closed, c);
}

static enum capture_close_reason fin_reason(const struct conn *c, int side)
{
	return side == c->client ? CAPTURE_CLOSE_CLIENT_FIN : CAPTURE_CLOSE_SERVER_FIN;
}

/* Closed records past their linger time, or too many, are forgotten. */
static void expire_closed(struct capture_reassembly *r, imap_time_us now)
{
	struct conn *c;

	while ((c = r->closed.first) != NULL &&
	       (r->closed.count > CLOSED_MAX || now - c->last_ts > CAPTURE_REASSEMBLY_LINGER_US)) {
		conn_list_remove(&r->closed, c);
		forget(r, c);
	}
}

static struct conn *conn_new(struct capture_reassembly *r, const struct capture_tcp_segment *seg)
{
	bool imap_src = seg->src.port == 143 || seg->src.port == 993;
	bool imap_dst = seg->dst.port == 143 || seg->dst.port == 993;
	struct conn *c;

	if (r->conns >= r->table_size && flow_table_grow(r) < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->ep[0] = seg->src;
	c->ep[1] = seg->dst;
	c->client = -1;
	c->first_fin = -1;
	c->first_ts = c->last_ts = seg->ts;
	c->session = ++r->sessions;
	c->midstream = !(seg->flags & CAPTURE_TCP_SYN);
	flow_table_insert(r, c);
	conn_list_append(&r->live, c);

	/* Who is the client, when the first packet says: a SYN, a SYN-ACK,
	 * or the IMAP ports. Otherwise the first to speak is the server. */
	if (seg->flags & CAPTURE_TCP_SYN)
		c->client = (seg->flags & CAPTURE_TCP_ACK) ? 1 : 0;
	else if (imap_src != imap_dst)
		c->client = imap_src ? 1 : 0;
	if (c->client >= 0)
		report_open(r, c);
	return c;
}

/* A SYN without ACK on a tuple already in use: is it a new connection? */
static bool syn_starts_new(const struct conn *c, int side, uint32_t seq)
{
	const struct side *s = &c->side[side];
	int64_t late;

	if (c->closed || c->first_fin >= 0)
		return true;
	if (!s->anchored || (s->syn && s->base == seq + 1))
		return false;
	late = (int64_t)s->next - side_seq_offset(s, seq + 1);
	return late < 0 || late > LATE_SYN_WINDOW;
}

static void take_syn(struct conn *c, int side, const struct capture_tcp_segment *seg)
{
	struct side *s = &c->side[side];

	/* A SYN decides the roles unless they were reported already. */
	if (!c->opened)
		c->client = (seg->flags & CAPTURE_TCP_ACK) ? 1 - side : side;
	if (s->syn)
		return;
	/* Adopt the initial sequence number while nothing of this side was
	 * delivered (its SYN came late in the capture). */
	if (!s->anchored || (s->next == 0 && s->head == NULL)) {
		s->anchored = true;
		s->base = seg->seq + 1;
		s->syn = true;
	}
}

static void check_closed(struct capture_reassembly *r, struct conn *c, imap_time_us ts)
{
	for (int i = 0; i < 2; i++)
		if (!c->side[i].fin || c->side[i].next < c->side[i].fin_offset)
			return;
	close_conn(r, c, fin_reason(c, c->first_fin), ts);
}

/* A side that closes its window stops taking the other side's data: a
 * peer not reading. Reported on each change once the connection is. */
static void window(struct capture_reassembly *r, struct conn *c, int side,
		   const struct capture_tcp_segment *seg)
{
	struct capture_stream_event ev;
	bool zero = seg->window == 0;

	if (zero == c->side[side].zero_window)
		return;
	c->side[side].zero_window = zero;
	if (!c->opened)
		return;
	event_init(c, &ev, CAPTURE_STREAM_WINDOW, seg->ts);
	ev.dir = side_dir(c, 1 - side);
	ev.blocked = zero;
	r->cb(r->ctx, &ev);
}

static int segment(struct capture_reassembly *r, struct conn *c, int side,
		   const struct capture_tcp_segment *seg)
{
	struct side *s = &c->side[side];
	uint32_t data_seq = seg->seq;
	int64_t offset;

	c->last_ts = seg->ts;
	if (seg->flags & CAPTURE_TCP_RST) {
		report_open(r, c); /* settles who is who */
		close_conn(r, c,
			   side == c->client ? CAPTURE_CLOSE_CLIENT_RST : CAPTURE_CLOSE_SERVER_RST,
			   seg->ts);
		return 0;
	}
	if (seg->flags & CAPTURE_TCP_SYN) {
		take_syn(c, side, seg);
		data_seq++;
		if (c->client >= 0)
			report_open(r, c);
	}
	if (!s->anchored) {
		s->anchored = true;
		s->base = data_seq;
	}
	if (seg->flags & CAPTURE_TCP_ACK) {
		acknowledged(r, c, 1 - side, seg->ack, seg->ts);
		window(r, c, side, seg);
	}

	/* bytes from before the first one known are trimmed by accept_bytes */
	offset = side_seq_offset(s, data_seq);
	if (accept_bytes(r, c, side, offset, seg->payload, seg->len, seg->missing, seg->ts) < 0)
		return -1;
	if ((seg->flags & CAPTURE_TCP_FIN) && !s->fin) {
		int64_t fin = offset + (int64_t)seg->len + (int64_t)seg->missing;

		s->fin = true;
		s->fin_offset = fin > (int64_t)s->next ? (uint64_t)fin : s->next;
		if (c->first_fin < 0)
			c->first_fin = side;
	}
	check_closed(r, c, seg->ts);
	return 0;
}

/* ---- public ---- */

struct capture_reassembly *capture_reassembly_new(capture_stream_cb *cb, void *ctx)
{
	struct capture_reassembly *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->table = calloc(TABLE_MIN, sizeof(*r->table));
	if (r->table == NULL) {
		free(r);
		return NULL;
	}
	r->table_size = TABLE_MIN;
	r->cb = cb;
	r->ctx = ctx;
	return r;
}

int capture_reassembly_segment(struct capture_reassembly *r, const struct capture_tcp_segment *seg)
{
	struct conn *c;
	int side = 0;

	expire_closed(r, seg->ts);
	c = flow_table_find(r, seg, &side);
	if (c != NULL && (seg->flags & (CAPTURE_TCP_SYN | CAPTURE_TCP_ACK | CAPTURE_TCP_RST)) ==
				 CAPTURE_TCP_SYN &&
	    syn_starts_new(c, side, seg->seq)) {
		if (!c->closed)
			close_conn(r, c,
				   c->first_fin >= 0 ? fin_reason(c, c->first_fin)
						     : CAPTURE_CLOSE_REUSED,
				   seg->ts);
		conn_list_remove(&r->closed, c);
		forget(r, c);
		c = NULL;
	}
	if (c != NULL && c->closed)
		return 0; /* a late packet of a connection that is over */
	if (c == NULL) {
		if (seg->flags & CAPTURE_TCP_RST)
			return 0; /* a reset of nothing we know: nothing to report */
		c = conn_new(r, seg);
		if (c == NULL)
			return -1;
		side = 0;
	}
	return segment(r, c, side, seg);
}

void capture_reassembly_finish(struct capture_reassembly *r)
{
	struct conn *c;

	while ((c = r->live.first) != NULL)
		close_conn(r, c,
			   c->first_fin >= 0 ? fin_reason(c, c->first_fin)
					     : CAPTURE_CLOSE_END_OF_CAPTURE,
			   c->last_ts);
}

void capture_reassembly_free(struct capture_reassembly **rp)
{
	struct capture_reassembly *r = *rp;
	struct conn *c;

	if (r == NULL)
		return;
	while ((c = r->live.first) != NULL) {
		conn_list_remove(&r->live, c);
		forget(r, c);
	}
	while ((c = r->closed.first) != NULL) {
		conn_list_remove(&r->closed, c);
		forget(r, c);
	}
	free(r->table);
	free(r);
	*rp = NULL;
}
