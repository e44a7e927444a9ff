/* TCP reassembly from synthetic segments: each case feeds a list of
 * segments and compares the events, rendered as text, with what the case
 * expects. Offsets must run on without holes in every direction: a GAP is
 * the only way past missing bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/reassembly.h"
#include "check.h"

#define SYN CAPTURE_TCP_SYN
#define ACK CAPTURE_TCP_ACK
#define FIN CAPTURE_TCP_FIN
#define RST CAPTURE_TCP_RST

/* Endpoints by letter. */
static const struct {
	char letter;
	uint8_t version;
	uint8_t addr[16];
	uint16_t port;
} endpoints[] = {
	{'c', 4, {10, 0, 0, 1}, 40000},   /* a client */
	{'s', 4, {10, 0, 0, 2}, 143},     /* an IMAP server */
	{'t', 4, {10, 0, 0, 2}, 993},     /* the same over TLS */
	{'x', 4, {10, 0, 0, 3}, 50000},   /* high ports on both sides */
	{'y', 4, {10, 0, 0, 4}, 40001},
	{'6', 6, {[15] = 1}, 40002},      /* ::1 */
	{'7', 6, {[15] = 1}, 143},
};

static struct capture_endpoint endpoint(char letter)
{
	struct capture_endpoint e = {0};

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		if (endpoints[i].letter == letter) {
			e.version = endpoints[i].version;
			memcpy(e.addr, endpoints[i].addr, sizeof(e.addr));
			e.port = endpoints[i].port;
			return e;
		}
	}
	abort();
}

struct seg_spec {
	imap_time_us ts;
	char from, to;
	uint32_t seq, ack;
	unsigned flags;
	const char *data;
	size_t missing; /* payload bytes cut off after data */
};

/* Not a TCP bit: the segment advertises a closed (zero) window. */
#define ZERO_WINDOW 0x1000u

/* What the events looked like, and whether their offsets ran on. */
struct render {
	char text[8192];
	size_t len;
	uint64_t next[8][2]; /* by session */
	unsigned next_session;
	int offsets_ok;
	/* for the bulk tests */
	uint64_t data_bytes[2];
	uint64_t gap_bytes[2];
	unsigned gaps;
	unsigned closes;
	unsigned char *stream[2]; /* when set, DATA is copied here at its offset */
	size_t stream_cap;
};

static void put(struct render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void put(struct render *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len = r->len + (size_t)n < sizeof(r->text) ? r->len + (size_t)n : sizeof(r->text) - 1;
}

static void on_event(void *ctx, const struct capture_stream_event *ev)
{
	struct render *r = ctx;
	int d = ev->dir == IMAP_C2S ? 0 : 1;
	uint64_t *next = r->next[ev->session % 8];

	if (r->len > 0)
		put(r, " | ");
	switch (ev->kind) {
	case CAPTURE_STREAM_WINDOW:
		put(r, "W%u %c %s t%lld", ev->session, d == 0 ? 'c' : 's',
		    ev->blocked ? "closed" : "open", (long long)ev->ts);
		break;
	case CAPTURE_STREAM_OPEN:
		put(r, "O%u %s>%s%s t%lld", ev->session, ev->client, ev->server,
		    ev->midstream ? " mid" : "", (long long)ev->ts);
		if (ev->session != r->next_session + 1)
			r->offsets_ok = 0;
		r->next_session = ev->session;
		break;
	case CAPTURE_STREAM_DATA:
		put(r, "D%u %c @%llu ", ev->session, d == 0 ? 'c' : 's',
		    (unsigned long long)ev->offset);
		for (size_t i = 0; i < ev->len && i < 64; i++) {
			uint8_t ch = ev->data[i];

			if (ch == '\r')
				put(r, "\\r");
			else if (ch == '\n')
				put(r, "\\n");
			else if (ch < 0x20 || ch >= 0x7f)
				put(r, "\\x%02x", ch);
			else
				put(r, "%c", ch);
		}
		if (ev->len > 64)
			put(r, "...(%zu)", ev->len);
		put(r, " t%lld", (long long)ev->ts);
		if (ev->offset != next[d])
			r->offsets_ok = 0;
		if (r->stream[d] != NULL && ev->offset + ev->len <= r->stream_cap)
			memcpy(r->stream[d] + ev->offset, ev->data, ev->len);
		next[d] = ev->offset + ev->len;
		r->data_bytes[d] += ev->len;
		break;
	case CAPTURE_STREAM_GAP:
		put(r, "G%u %c @%llu +%llu t%lld", ev->session, d == 0 ? 'c' : 's',
		    (unsigned long long)ev->offset, (unsigned long long)ev->gap_len,
		    (long long)ev->ts);
		if (ev->offset != next[d] || ev->gap_len == 0)
			r->offsets_ok = 0;
		next[d] = ev->offset + ev->gap_len;
		r->gap_bytes[d] += ev->gap_len;
		r->gaps++;
		break;
	case CAPTURE_STREAM_CLOSE:
		put(r, "C%u %s %llu/%llu", ev->session, capture_close_reason_str(ev->reason),
		    (unsigned long long)ev->bytes[IMAP_C2S], (unsigned long long)ev->bytes[IMAP_S2C]);
		if (ev->missing[IMAP_C2S] || ev->missing[IMAP_S2C])
			put(r, " -%llu/%llu", (unsigned long long)ev->missing[IMAP_C2S],
			    (unsigned long long)ev->missing[IMAP_S2C]);
		put(r, " t%lld", (long long)ev->ts);
		r->closes++;
		break;
	}
}

static void feed(struct capture_reassembly *ra, const struct seg_spec *sp)
{
	struct capture_tcp_segment seg = {
		.ts = sp->ts,
		.src = endpoint(sp->from),
		.dst = endpoint(sp->to),
		.seq = sp->seq,
		.ack = sp->ack,
		.flags = sp->flags & ~ZERO_WINDOW,
		.payload = (const uint8_t *)(sp->data ? sp->data : ""),
		.len = sp->data ? strlen(sp->data) : 0,
		.missing = sp->missing,
		/* a zero window is the one a receiver closes */
		.window = (sp->flags & ZERO_WINDOW) ? 0 : 65535,
	};

	CHECK(capture_reassembly_segment(ra, &seg) == 0);
}

#define SEGS_MAX 24

struct reasm_case {
	const char *name;
	struct seg_spec segs[SEGS_MAX]; /* up to the first with ts 0 */
	const char *expect;             /* after capture_reassembly_finish */
};

/* A handshake: client 'c' ISN 1000, server 's' ISN 5000. */
#define HS                                                                   \
	{1, 'c', 's', 1000, 0, SYN, NULL, 0}, {2, 's', 'c', 5000, 1001, SYN | ACK, NULL, 0}, \
		{3, 'c', 's', 1001, 5001, ACK, NULL, 0}
#define OPEN1 "O1 10.0.0.1:40000>10.0.0.2:143 t1"

static const struct reasm_case cases[] = {
	{"a client that closes its window and opens it again",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "* 1 EXPUNGE\r\n", 0},
	  {5, 'c', 's', 1001, 5014, ACK | ZERO_WINDOW, NULL, 0},
	  {6, 'c', 's', 1001, 5014, ACK | ZERO_WINDOW, NULL, 0},
	  {9, 'c', 's', 1001, 5014, ACK, NULL, 0},
	  {10, 'c', 's', 1001, 5014, FIN | ACK, NULL, 0},
	  {11, 's', 'c', 5014, 1002, FIN | ACK, NULL, 0}},
	 OPEN1 " | D1 s @0 * 1 EXPUNGE\\r\\n t4 | W1 s closed t5 | W1 s open t9"
	       " | C1 client-fin 0/13 t11"},
	{"in order, closed by the client",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "* OK hi\r\n", 0},
	  {5, 'c', 's', 1001, 5010, ACK, "a LOGOUT\r\n", 0},
	  {6, 's', 'c', 5010, 1011, ACK, "* BYE\r\n", 0},
	  {7, 'c', 's', 1011, 5017, FIN | ACK, NULL, 0},
	  {8, 's', 'c', 5017, 1012, FIN | ACK, NULL, 0},
	  {9, 'c', 's', 1012, 5018, ACK, NULL, 0}},
	 OPEN1 " | D1 s @0 * OK hi\\r\\n t4 | D1 c @0 a LOGOUT\\r\\n t5 | D1 s @9 * BYE\\r\\n t6"
	       " | C1 client-fin 10/16 t8"},
	{"server closes first",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "* BYE\r\n", 0},
	  {5, 's', 'c', 5008, 1001, FIN | ACK, NULL, 0},
	  {6, 'c', 's', 1001, 5009, FIN | ACK, NULL, 0}},
	 OPEN1 " | D1 s @0 * BYE\\r\\n t4 | C1 server-fin 0/7 t6"},
	{"data on the FIN segment",
	 {HS,
	  {4, 'c', 's', 1001, 5001, FIN | ACK, "x\r\n", 0},
	  {5, 's', 'c', 5001, 1005, FIN | ACK, "y\r\n", 0}},
	 OPEN1 " | D1 c @0 x\\r\\n t4 | D1 s @0 y\\r\\n t5 | C1 client-fin 3/3 t5"},
	{"retransmission dropped",
	 {HS,
	  {4, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {5, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {6, 'c', 's', 1004, 5001, ACK, "def", 0},
	  {7, 'c', 's', 1001, 5001, ACK, "abc", 0}},
	 OPEN1 " | D1 c @0 abc t4 | D1 c @3 def t6 | C1 end-of-capture 6/0 t7"},
	{"overlap reaching past delivered bytes",
	 {HS,
	  {4, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {5, 'c', 's', 1002, 5001, ACK, "bcdef", 0}},
	 OPEN1 " | D1 c @0 abc t4 | D1 c @3 def t5 | C1 end-of-capture 6/0 t5"},
	{"conflicting overlap with delivered bytes: first seen stay",
	 {HS,
	  {4, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {5, 'c', 's', 1001, 5001, ACK, "XYZdef", 0}},
	 OPEN1 " | D1 c @0 abc t4 | D1 c @3 def t5 | C1 end-of-capture 6/0 t5"},
	{"conflicting overlap with queued bytes: first seen stay",
	 {HS,
	  {4, 'c', 's', 1004, 5001, ACK, "XY", 0},
	  {5, 'c', 's', 1008, 5001, ACK, "Q", 0},
	  {6, 'c', 's', 1001, 5001, ACK, "abcdefgh", 0}},
	 OPEN1 " | D1 c @0 abc t6 | D1 c @3 XY t6 | D1 c @5 fg t6 | D1 c @7 Q t6"
	       " | C1 end-of-capture 8/0 t6"},
	{"out of order, hole filled later",
	 {HS,
	  {4, 's', 'c', 5004, 1001, ACK, "def", 0},
	  {5, 's', 'c', 5007, 1001, ACK, "ghi", 0},
	  {6, 's', 'c', 5001, 1001, ACK, "abc", 0}},
	 OPEN1 " | D1 s @0 abc t6 | D1 s @3 def t6 | D1 s @6 ghi t6 | C1 end-of-capture 0/9 t6"},
	{"out of order, same segment queued twice",
	 {HS,
	  {4, 's', 'c', 5004, 1001, ACK, "def", 0},
	  {5, 's', 'c', 5004, 1001, ACK, "def", 0},
	  {6, 's', 'c', 5001, 1001, ACK, "abc", 0}},
	 OPEN1 " | D1 s @0 abc t6 | D1 s @3 def t6 | C1 end-of-capture 0/6 t6"},
	{"out of order, filler overlaps the queue",
	 {HS,
	  {4, 's', 'c', 5004, 1001, ACK, "def", 0},
	  {5, 's', 'c', 5001, 1001, ACK, "abcdefg", 0}},
	 OPEN1 " | D1 s @0 abc t5 | D1 s @3 def t5 | D1 s @6 g t5 | C1 end-of-capture 0/7 t5"},
	{"sequence numbers wrap past 2^32",
	 {{1, 'c', 's', 0xfffffff8u, 0, SYN, NULL, 0},
	  {2, 's', 'c', 0xfffffffeu, 0xfffffff9u, SYN | ACK, NULL, 0},
	  {3, 'c', 's', 0xfffffff9u, 0xffffffffu, ACK, "0123456", 0},
	  {4, 'c', 's', 0x00000005u, 0xffffffffu, ACK, "CDEF", 0},
	  {5, 'c', 's', 0x00000000u, 0xffffffffu, ACK, "789AB", 0},
	  {6, 's', 'c', 0xffffffffu, 0x00000009u, ACK, "wrap", 0},
	  {7, 's', 'c', 0x00000003u, 0x00000009u, FIN | ACK, NULL, 0},
	  {8, 'c', 's', 0x00000009u, 0x00000004u, FIN | ACK, NULL, 0}},
	 OPEN1 " | D1 c @0 0123456 t3 | D1 c @7 789AB t5 | D1 c @12 CDEF t5"
	       " | D1 s @0 wrap t6 | C1 server-fin 16/4 t8"},
	{"no SYN: the capture starts mid-stream",
	 {{10, 's', 'c', 77777, 3333, ACK, "* 3 EXISTS\r\n", 0},
	  {11, 'c', 's', 3333, 77789, ACK, "a NOOP\r\n", 0},
	  {12, 's', 'c', 77789, 3341, ACK, "a OK\r\n", 0}},
	 "O1 10.0.0.1:40000>10.0.0.2:143 mid t10 | D1 s @0 * 3 EXISTS\\r\\n t10"
	 " | D1 c @0 a NOOP\\r\\n t11 | D1 s @12 a OK\\r\\n t12 | C1 end-of-capture 8/18 t12"},
	{"client by SYN, whatever the ports",
	 {{1, 'x', 'y', 1, 0, SYN, NULL, 0},
	  {2, 'y', 'x', 9, 2, SYN | ACK, NULL, 0},
	  {3, 'x', 'y', 2, 10, ACK, "hello", 0}},
	 "O1 10.0.0.3:50000>10.0.0.4:40001 t1 | D1 c @0 hello t3 | C1 end-of-capture 5/0 t3"},
	{"client by SYN-ACK when the SYN is missing",
	 {{2, 'y', 'x', 9, 2, SYN | ACK, NULL, 0},
	  {3, 'x', 'y', 2, 10, ACK, "hello", 0}},
	 "O1 10.0.0.3:50000>10.0.0.4:40001 t2 | D1 c @0 hello t3 | C1 end-of-capture 5/0 t3"},
	{"server by port 143",
	 {{1, 'c', 's', 500, 900, ACK, "a NOOP\r\n", 0}},
	 "O1 10.0.0.1:40000>10.0.0.2:143 mid t1 | D1 c @0 a NOOP\\r\\n t1"
	 " | C1 end-of-capture 8/0 t1"},
	{"server by port 993, first packet from the server",
	 {{1, 't', 'c', 500, 900, ACK, "x", 0}},
	 "O1 10.0.0.1:40000>10.0.0.2:993 mid t1 | D1 s @0 x t1 | C1 end-of-capture 0/1 t1"},
	{"server by first speaker",
	 {{1, 'x', 'y', 100, 200, ACK, NULL, 0},
	  {2, 'y', 'x', 200, 100, ACK, "* OK\r\n", 0},
	  {3, 'x', 'y', 100, 206, ACK, "a NOOP\r\n", 0}},
	 "O1 10.0.0.3:50000>10.0.0.4:40001 mid t1 | D1 s @0 * OK\\r\\n t2"
	 " | D1 c @0 a NOOP\\r\\n t3 | C1 end-of-capture 8/6 t3"},
	{"server by first speaker, in the first packet",
	 {{1, 'x', 'y', 100, 200, ACK, "* OK\r\n", 0}},
	 "O1 10.0.0.4:40001>10.0.0.3:50000 mid t1 | D1 s @0 * OK\\r\\n t1"
	 " | C1 end-of-capture 0/6 t1"},
	{"nobody spoke: the higher port is the client",
	 {{1, 'y', 'x', 100, 200, ACK, NULL, 0}},
	 "O1 10.0.0.3:50000>10.0.0.4:40001 mid t1 | C1 end-of-capture 0/0 t1"},
	{"IPv6 addresses",
	 {{1, '6', '7', 1, 0, SYN, NULL, 0}, {2, '7', '6', 1, 2, SYN | ACK, "", 0}},
	 "O1 [::1]:40002>[::1]:143 t1 | C1 end-of-capture 0/0 t2"},
	{"gap at the end of the capture",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "abc", 0},
	  {5, 's', 'c', 5007, 1001, ACK, "ghi", 0}},
	 OPEN1 " | D1 s @0 abc t4 | G1 s @3 +3 t5 | D1 s @6 ghi t5 | C1 end-of-capture 0/6 -0/3 t5"},
	{"gap revealed by the peer's ACK",
	 {HS,
	  {4, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {5, 'c', 's', 1007, 5001, ACK, "ghi", 0},
	  {6, 's', 'c', 5001, 1004, ACK, NULL, 0},
	  {7, 's', 'c', 5001, 1010, ACK, NULL, 0},
	  {8, 'c', 's', 1010, 5001, ACK, "jkl", 0}},
	 OPEN1 " | D1 c @0 abc t4 | G1 c @3 +3 t7 | D1 c @6 ghi t7 | D1 c @9 jkl t8"
	       " | C1 end-of-capture 9/0 -3/0 t8"},
	{"last bytes missing, revealed by the ACK",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "abc", 0},
	  {5, 'c', 's', 1001, 5010, ACK, NULL, 0}},
	 OPEN1 " | D1 s @0 abc t4 | G1 s @3 +6 t5 | C1 end-of-capture 0/3 -0/6 t5"},
	{"gap before the FIN",
	 {HS,
	  {4, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {5, 'c', 's', 1007, 5001, FIN | ACK, NULL, 0},
	  {6, 's', 'c', 5001, 1001, FIN | ACK, NULL, 0}},
	 OPEN1 " | D1 c @0 abc t4 | G1 c @3 +3 t6 | C1 client-fin 3/0 -3/0 t6"},
	{"truncated packet: cut-off bytes are a gap at once",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "abc", 5},
	  {5, 's', 'c', 5009, 1001, ACK, "xyz", 0}},
	 OPEN1 " | D1 s @0 abc t4 | G1 s @3 +5 t4 | D1 s @8 xyz t5 | C1 end-of-capture 0/6 -0/5 t5"},
	{"truncated packet out of order",
	 {HS,
	  {4, 's', 'c', 5004, 1001, ACK, "de", 1},
	  {5, 's', 'c', 5001, 1001, ACK, "abc", 0},
	  {6, 's', 'c', 5007, 1001, ACK, "g", 0}},
	 OPEN1 " | D1 s @0 abc t5 | D1 s @3 de t5 | G1 s @5 +1 t5 | D1 s @6 g t6"
	       " | C1 end-of-capture 0/6 -0/1 t6"},
	{"reset by the server, queued data reported",
	 {HS,
	  {4, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {5, 'c', 's', 1007, 5001, ACK, "ghi", 0},
	  {6, 's', 'c', 5001, 0, RST, NULL, 0},
	  {7, 'c', 's', 1010, 5001, ACK, "late", 0}},
	 OPEN1 " | D1 c @0 abc t4 | G1 c @3 +3 t6 | D1 c @6 ghi t6 | C1 server-rst 6/0 -3/0 t6"},
	{"reset by the client",
	 {HS, {4, 'c', 's', 1001, 5001, RST | ACK, NULL, 0}},
	 OPEN1 " | C1 client-rst 0/0 t4"},
	{"a stray reset opens nothing",
	 {{1, 'c', 's', 1, 0, RST, NULL, 0}},
	 ""},
	{"new SYN on the same 4-tuple after the close: a new session",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "one", 0},
	  {5, 'c', 's', 1001, 5004, FIN | ACK, NULL, 0},
	  {6, 's', 'c', 5004, 1002, FIN | ACK, NULL, 0},
	  {7, 'c', 's', 1002, 5005, ACK, NULL, 0},
	  {8, 'c', 's', 1002, 5005, FIN | ACK, NULL, 0},
	  {20, 'c', 's', 7000, 0, SYN, NULL, 0},
	  {21, 's', 'c', 9000, 7001, SYN | ACK, NULL, 0},
	  {22, 's', 'c', 9001, 7001, ACK, "two", 0}},
	 OPEN1 " | D1 s @0 one t4 | C1 client-fin 0/3 t6"
	       " | O2 10.0.0.1:40000>10.0.0.2:143 t20 | D2 s @0 two t22 | C2 end-of-capture 0/3 t22"},
	{"new SYN after a reset: a new session",
	 {HS,
	  {4, 'c', 's', 1001, 5001, RST | ACK, NULL, 0},
	  {5, 'c', 's', 3000, 0, SYN, NULL, 0}},
	 OPEN1 " | C1 client-rst 0/0 t4 | O2 10.0.0.1:40000>10.0.0.2:143 t5"
	       " | C2 end-of-capture 0/0 t5"},
	{"new SYN on a tuple whose end was not captured",
	 {HS,
	  {4, 's', 'c', 5001, 1001, ACK, "one", 0},
	  {5, 'c', 's', 0x80000000u, 0, SYN, NULL, 0}},
	 OPEN1 " | D1 s @0 one t4 | C1 reused 0/3 t5 | O2 10.0.0.1:40000>10.0.0.2:143 t5"
	       " | C2 end-of-capture 0/0 t5"},
	{"retransmitted SYN is no new session",
	 {{1, 'c', 's', 1000, 0, SYN, NULL, 0},
	  {2, 'c', 's', 1000, 0, SYN, NULL, 0},
	  {3, 's', 'c', 5000, 1001, SYN | ACK, NULL, 0}},
	 OPEN1 " | C1 end-of-capture 0/0 t3"},
	{"late SYN in a reordered capture",
	 {{2, 's', 'c', 5000, 1001, SYN | ACK, NULL, 0},
	  {3, 'c', 's', 1001, 5001, ACK, "abc", 0},
	  {1, 'c', 's', 1000, 0, SYN, NULL, 0},
	  {4, 'c', 's', 1004, 5001, ACK, "def", 0}},
	 "O1 10.0.0.1:40000>10.0.0.2:143 t2 | D1 c @0 abc t3 | D1 c @3 def t4"
	 " | C1 end-of-capture 6/0 t4"},
	{"bytes before the first one known are dropped",
	 {{1, 's', 'c', 100, 50, ACK, "def", 0},
	  {2, 's', 'c', 97, 50, ACK, "abcdefg", 0}},
	 "O1 10.0.0.1:40000>10.0.0.2:143 mid t1 | D1 s @0 def t1 | D1 s @3 g t2"
	 " | C1 end-of-capture 0/4 t2"},
	{"data past the FIN is ignored",
	 {HS,
	  {4, 'c', 's', 1001, 5001, FIN | ACK, "ab", 0},
	  {5, 'c', 's', 1003, 5001, ACK, "zz", 0}},
	 OPEN1 " | D1 c @0 ab t4 | C1 client-fin 2/0 t5"},
	{"late ACK after the close is absorbed",
	 {HS,
	  {4, 'c', 's', 1001, 5001, FIN | ACK, NULL, 0},
	  {5, 's', 'c', 5001, 1002, FIN | ACK, NULL, 0},
	  {6, 'c', 's', 1002, 5002, ACK, NULL, 0},
	  {7, 'c', 's', 1002, 5002, ACK, NULL, 0}},
	 OPEN1 " | C1 client-fin 0/0 t5"},
	{"two connections interleaved",
	 {{1, 'c', 's', 10, 0, SYN, NULL, 0},
	  {2, 'y', 's', 20, 0, SYN, NULL, 0},
	  {3, 's', 'y', 30, 21, SYN | ACK, NULL, 0},
	  {4, 's', 'c', 40, 11, SYN | ACK, NULL, 0},
	  {5, 's', 'y', 31, 21, ACK, "to y", 0},
	  {6, 's', 'c', 41, 11, ACK, "to c", 0}},
	 "O1 10.0.0.1:40000>10.0.0.2:143 t1 | O2 10.0.0.4:40001>10.0.0.2:143 t2"
	 " | D2 s @0 to y t5 | D1 s @0 to c t6 | C1 end-of-capture 0/4 t6"
	 " | C2 end-of-capture 0/4 t5"},
};

static void run_segs(const struct seg_spec *segs, size_t n, struct render *r)
{
	struct capture_reassembly *ra = capture_reassembly_new(on_event, r);

	CHECK(ra != NULL);
	for (size_t i = 0; i < n && segs[i].ts != 0; i++)
		feed(ra, &segs[i]);
	capture_reassembly_finish(ra);
	capture_reassembly_free(&ra);
	CHECK(ra == NULL);
}

static void test_table(void)
{
	static struct render r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct reasm_case *c = &cases[i];

		memset(&r, 0, sizeof(r));
		r.offsets_ok = 1;
		run_segs(c->segs, SEGS_MAX, &r);
		CHECK_MSG(strcmp(r.text, c->expect) == 0, "%s:\n  got  %s\n  want %s", c->name,
			  r.text, c->expect);
		CHECK_MSG(r.offsets_ok, "%s: offsets do not run on: %s", c->name, r.text);
	}
}

/* Out-of-order data beyond the bound turns the hole into a gap. */
static void test_queue_bound(void)
{
	static struct render r;
	const size_t seg_len = 60000;
	uint8_t *buf = malloc(seg_len);
	struct capture_reassembly *ra;
	struct capture_tcp_segment seg = {0};
	size_t n = CAPTURE_REASSEMBLY_QUEUE_MAX / seg_len + 1; /* just past the bound */

	memset(&r, 0, sizeof(r));
	r.offsets_ok = 1;
	memset(buf, 'q', seg_len);
	ra = capture_reassembly_new(on_event, &r);
	seg.src = endpoint('s');
	seg.dst = endpoint('c');
	seg.window = 65535;
	seg.flags = ACK;
	seg.ack = 1;
	seg.seq = 1000;
	seg.ts = 1;
	seg.payload = (const uint8_t *)"abc";
	seg.len = 3;
	capture_reassembly_segment(ra, &seg);
	/* a 100-byte hole, then data that never fills it */
	seg.payload = buf;
	seg.len = seg_len;
	for (size_t i = 0; i < n; i++) {
		seg.seq = 1000 + 3 + 100 + (uint32_t)(i * seg_len);
		seg.ts = 2 + (imap_time_us)i;
		CHECK(capture_reassembly_segment(ra, &seg) == 0);
		if (i + 1 < n)
			CHECK_MSG(r.gaps == 0, "gap after %zu segments, bound not reached", i + 1);
	}
	CHECK_MSG(r.gaps == 1, "%u gaps once past the bound", r.gaps);
	CHECK(r.gap_bytes[1] == 100);
	CHECK(r.data_bytes[1] == 3 + n * seg_len);
	capture_reassembly_finish(ra);
	capture_reassembly_free(&ra);
	CHECK(r.offsets_ok);

	/* the same with many tiny segments: bounded by their count */
	memset(&r, 0, sizeof(r));
	r.offsets_ok = 1;
	ra = capture_reassembly_new(on_event, &r);
	seg.seq = 2000; /* anchors the stream: byte 0 is at 2000 */
	seg.len = 0;
	capture_reassembly_segment(ra, &seg);
	seg.payload = (const uint8_t *)"z";
	seg.len = 1;
	for (uint32_t i = 0; i <= CAPTURE_REASSEMBLY_QUEUE_SEGMENTS; i++) {
		seg.seq = 2000 + 1 + i * 2; /* every other byte missing */
		seg.ts = 1 + i;
		capture_reassembly_segment(ra, &seg);
		if (i < CAPTURE_REASSEMBLY_QUEUE_SEGMENTS)
			CHECK_MSG(r.gaps == 0, "gap after %u segments", i);
	}
	/* the first byte is a gap; the first queued byte is delivered */
	CHECK_MSG(r.gaps == 1 && r.data_bytes[1] == 1, "%u gaps, %llu bytes", r.gaps,
		  (unsigned long long)r.data_bytes[1]);
	capture_reassembly_finish(ra);
	CHECK(r.gap_bytes[1] + r.data_bytes[1] == 2ull * (CAPTURE_REASSEMBLY_QUEUE_SEGMENTS + 1));
	capture_reassembly_free(&ra);
	CHECK(r.offsets_ok);
	free(buf);
}

/* A random stream cut into random segments, delivered out of order, with
 * duplicates and overlaps, across the 2^32 wrap: the bytes come out whole. */
static void test_shuffled_stream(void)
{
	static struct render r;
	enum { STREAM = 300000, SEGS = 1200 };
	static uint8_t stream[STREAM];
	static unsigned char out[STREAM];
	static struct {
		size_t off, len;
	} segs[SEGS * 2];
	size_t nsegs = 0;
	unsigned seed = 12345;
	uint32_t isn = 0xffff0000u;

	for (size_t i = 0; i < STREAM; i++) {
		seed = seed * 1103515245u + 12345u;
		stream[i] = (uint8_t)(seed >> 16);
	}
	for (size_t off = 0; off < STREAM;) {
		size_t len;

		seed = seed * 1103515245u + 12345u;
		len = 1 + (seed >> 16) % 1500;
		if (len > STREAM - off)
			len = STREAM - off;
		segs[nsegs].off = off;
		segs[nsegs].len = len;
		nsegs++;
		off += len;
	}
	/* duplicates and overlapping copies */
	for (size_t i = 0, n = nsegs; i < n; i += 7) {
		size_t extra = segs[i].len / 2;

		segs[nsegs] = segs[i];
		if (segs[nsegs].off + segs[nsegs].len + extra <= STREAM)
			segs[nsegs].len += extra;
		nsegs++;
	}
	/* any order: the whole stream fits in the queue */
	for (size_t i = nsegs - 1; i > 0; i--) {
		size_t j, off, len;

		seed = seed * 1103515245u + 12345u;
		j = (seed >> 8) % (i + 1);
		off = segs[i].off;
		len = segs[i].len;
		segs[i] = segs[j];
		segs[j].off = off;
		segs[j].len = len;
	}

	memset(&r, 0, sizeof(r));
	r.offsets_ok = 1;
	r.stream[1] = out;
	r.stream_cap = STREAM;
	struct capture_reassembly *ra = capture_reassembly_new(on_event, &r);
	struct capture_tcp_segment seg = {0};

	seg.window = 65535;
	seg.src = endpoint('c');
	seg.dst = endpoint('s');
	seg.seq = 900;
	seg.flags = SYN;
	seg.ts = 1;
	capture_reassembly_segment(ra, &seg);
	seg.src = endpoint('s');
	seg.dst = endpoint('c');
	seg.seq = isn - 1;
	seg.ack = 901;
	seg.flags = SYN | ACK;
	capture_reassembly_segment(ra, &seg);
	seg.flags = ACK;
	for (size_t i = 0; i < nsegs; i++) {
		seg.ts = 2 + (imap_time_us)i;
		seg.seq = isn + (uint32_t)segs[i].off;
		seg.payload = stream + segs[i].off;
		seg.len = segs[i].len;
		CHECK(capture_reassembly_segment(ra, &seg) == 0);
	}
	capture_reassembly_finish(ra);
	capture_reassembly_free(&ra);
	CHECK_MSG(r.gaps == 0, "%u gaps: %.300s", r.gaps, r.text);
	CHECK(r.data_bytes[1] == STREAM);
	CHECK(memcmp(out, stream, STREAM) == 0);
	CHECK(r.offsets_ok);
	CHECK(r.closes == 1);
}

static void test_strs(void)
{
	CHECK(strcmp(capture_close_reason_str(CAPTURE_CLOSE_CLIENT_FIN), "client-fin") == 0);
	CHECK(strcmp(capture_close_reason_str((enum capture_close_reason)99), "close?") == 0);
	CHECK(strcmp(capture_stream_kind_str(CAPTURE_STREAM_GAP), "gap") == 0);
	CHECK(strcmp(capture_stream_kind_str((enum capture_stream_kind)99), "kind?") == 0);
}

int main(void)
{
	test_table();
	test_queue_bound();
	test_shuffled_stream();
	test_strs();
	return check_finish("reassembly");
}
