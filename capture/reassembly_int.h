/* What the files of TCP reassembly share: capture/reassembly.c (segments
 * in, stream events out, connections opened and closed),
 * capture/reassembly_table.c (the table of 4-tuples and the lists of live
 * and closed connections) and capture/reassembly_queue.c (one
 * direction's queue of bytes waiting for a hole).
 * Only these files include it. */
#ifndef CAPTURE_REASSEMBLY_INT_H
#define CAPTURE_REASSEMBLY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "capture/reassembly.h"

#define TABLE_MIN 256u
/* An acknowledgement further than this past the next byte is not believed
 * (a stray or garbled packet), so it cannot invent a huge gap. */
#define ACK_PLAUSIBLE (1ll << 30)
/* A SYN this close behind a direction's next byte is a late copy of the
 * connection's own SYN (a reordered capture), not a new connection. */
#define LATE_SYN_WINDOW (16ll << 20)
/* Closed 4-tuples remembered at most, oldest forgotten first. */
#define CLOSED_MAX 65536u

/* Out-of-order bytes waiting for the hole before them, or a range known
 * to be missing (cut off by a truncated packet) when lost is set. */
struct chunk {
	struct chunk *next;
	uint64_t offset;
	size_t len;
	bool lost;
	uint8_t data[];
};

/* One direction, named by its sender. */
struct side {
	bool anchored;       /* base is known */
	bool syn;            /* base came from this side's SYN */
	bool fin;
	uint32_t base;       /* sequence number of stream offset 0 */
	uint64_t next;       /* offset of the next byte to deliver */
	uint64_t fin_offset; /* the FIN's offset: the stream's length */
	struct chunk *head;  /* queue sorted by offset, no overlaps */
	struct chunk *tail;
	size_t queued;       /* bytes of data in the queue */
	unsigned chunks;
	uint64_t delivered;
	uint64_t missing;
	bool zero_window;    /* this side advertises a closed window */
};

struct conn {
	struct conn *hnext;             /* hash chain */
	struct conn *prev, *lnext;      /* live list in start order, or closed FIFO */
	struct capture_endpoint ep[2];  /* ep[0] sent the first packet seen */
	struct side side[2];
	char name[2][CAPTURE_ENDPOINT_STR_MAX];
	unsigned session;
	int client;     /* index of the client's side, -1 while undecided */
	int first_fin;  /* side that sent the first FIN, -1 */
	bool opened;    /* OPEN reported */
	bool midstream; /* the first packet had no SYN */
	bool closed;
	imap_time_us first_ts, last_ts;
};

struct conn_list {
	struct conn *first, *last;
	size_t count;
};

struct capture_reassembly {
	capture_stream_cb *cb;
	void *ctx;
	struct conn **table;
	size_t table_size; /* a power of two */
	size_t conns;      /* in the table, live and closed */
	/* the connection flow_table_find() found last: a capture is mostly
	 * runs of one connection's packets */
	struct conn *recent;
	struct conn_list live;
	struct conn_list closed;
	unsigned sessions;
};

/* capture/reassembly_table.c */
/* The connection of seg's 4-tuple and, in *side_r, the index of its
 * sender; NULL when there is none. */
struct conn *flow_table_find(struct capture_reassembly *r,
			     const struct capture_tcp_segment *seg, int *side_r);
void flow_table_insert(struct capture_reassembly *r, struct conn *c);
/* Returns 0, or -1 when out of memory. */
int flow_table_grow(struct capture_reassembly *r);
void flow_table_remove(struct capture_reassembly *r, struct conn *c);
void conn_list_append(struct conn_list *l, struct conn *c);
void conn_list_remove(struct conn_list *l, struct conn *c);

/* capture/reassembly_queue.c */
void side_queue_drop(struct side *s, struct chunk *k);
/* Queues the parts of [offset, offset + len) that no queued chunk holds
 * yet (data NULL: a lost range). Returns 0, or -1 when out of memory. */
int side_queue_add(struct side *s, uint64_t offset, const uint8_t *data, size_t len);
bool side_queue_over_bound(const struct side *s);
void conn_free_queues(struct conn *c);

/* The stream offset of seq: the value with seq's low 32 bits (relative to
 * base) closest to the next expected byte, so wraparound is invisible.
 * Negative before the start of the stream. */
static inline int64_t side_seq_offset(const struct side *s, uint32_t seq)
{
	uint32_t d = (seq - s->base) - (uint32_t)s->next;
	int64_t delta = d <= INT32_MAX ? (int64_t)d : (int64_t)d - (1ll << 32);

	return (int64_t)s->next + delta;
}

#endif
