/* TCP reassembly's bookkeeping: the hash table of 4-tuples (live and
 * recently closed connections), the lists in start order, and the names
 * of its events. */
#include "capture/reassembly_int.h"

#include <stdlib.h>
#include <string.h>

const char *capture_close_reason_str(enum capture_close_reason reason)
{
	switch (reason) {
	case CAPTURE_CLOSE_CLIENT_FIN:
		return "client-fin";
	case CAPTURE_CLOSE_SERVER_FIN:
		return "server-fin";
	case CAPTURE_CLOSE_CLIENT_RST:
		return "client-rst";
	case CAPTURE_CLOSE_SERVER_RST:
		return "server-rst";
	case CAPTURE_CLOSE_END_OF_CAPTURE:
		return "end-of-capture";
	case CAPTURE_CLOSE_REUSED:
		return "reused";
	}
	return "close?";
}

const char *capture_stream_kind_str(enum capture_stream_kind kind)
{
	switch (kind) {
	case CAPTURE_STREAM_OPEN:
		return "open";
	case CAPTURE_STREAM_DATA:
		return "data";
	case CAPTURE_STREAM_GAP:
		return "gap";
	case CAPTURE_STREAM_CLOSE:
		return "close";
	case CAPTURE_STREAM_WINDOW:
		return "window";
	}
	return "kind?";
}

static int endpoint_cmp(const struct capture_endpoint *a, const struct capture_endpoint *b)
{
	int d = memcmp(a->addr, b->addr, sizeof(a->addr));

	if (d != 0)
		return d;
	if (a->version != b->version)
		return a->version < b->version ? -1 : 1;
	return a->port < b->port ? -1 : a->port > b->port;
}

/* A 64-bit finaliser (MurmurHash3's fmix64): every input bit reaches
 * every output bit, in a few cycles per word. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_endpoint(uint64_t h, const struct capture_endpoint *e)
{
	uint64_t w0, w1;

	memcpy(&w0, e->addr, 8);
	memcpy(&w1, e->addr + 8, 8);
	h = mix(h ^ w0);
	h = mix(h ^ w1);
	return mix(h ^ ((uint64_t)e->port << 8 | e->version));
}

/* The same for both directions of a connection. */
static size_t tuple_hash(const struct capture_endpoint *a, const struct capture_endpoint *b,
			 size_t size)
{
	uint64_t h = 0xcbf29ce484222325ull;

	if (endpoint_cmp(a, b) > 0) {
		const struct capture_endpoint *t = a;

		a = b;
		b = t;
	}
	h = hash_endpoint(h, a);
	h = hash_endpoint(h, b);
	return (size_t)(h & (size - 1));
}

/* Whether c is seg's connection; *side_r is then the sender's index. */
static bool conn_of(const struct conn *c, const struct capture_tcp_segment *seg, int *side_r)
{
	if (capture_endpoint_equal(&c->ep[0], &seg->src) && capture_endpoint_equal(&c->ep[1], &seg->dst)) {
		*side_r = 0;
		return true;
	}
	if (capture_endpoint_equal(&c->ep[1], &seg->src) && capture_endpoint_equal(&c->ep[0], &seg->dst)) {
		*side_r = 1;
		return true;
	}
	return false;
}

struct conn *flow_table_find(struct capture_reassembly *r, const struct capture_tcp_segment *seg,
			     int *side_r)
{
	struct conn *c;

	if (r->recent != NULL && conn_of(r->recent, seg, side_r))
		return r->recent;
	c = r->table[tuple_hash(&seg->src, &seg->dst, r->table_size)];
	for (; c != NULL; c = c->hnext)
		if (conn_of(c, seg, side_r)) {
			r->recent = c;
			return c;
		}
	return NULL;
}

void flow_table_insert(struct capture_reassembly *r, struct conn *c)
{
	size_t h = tuple_hash(&c->ep[0], &c->ep[1], r->table_size);

	c->hnext = r->table[h];
	r->table[h] = c;
	r->conns++;
	r->recent = NULL; /* c may share a closed connection's addresses */
}

int flow_table_grow(struct capture_reassembly *r)
{
	size_t size = r->table_size * 2;
	struct conn **table = calloc(size, sizeof(*table));

	if (table == NULL)
		return -1;
	for (size_t i = 0; i < r->table_size; i++) {
		struct conn *c = r->table[i];

		while (c != NULL) {
			struct conn *next = c->hnext;
			size_t h = tuple_hash(&c->ep[0], &c->ep[1], size);

			c->hnext = table[h];
			table[h] = c;
			c = next;
		}
	}
	free(r->table);
	r->table = table;
	r->table_size = size;
	return 0;
}

void flow_table_remove(struct capture_reassembly *r, struct conn *c)
{
	struct conn **link = &r->table[tuple_hash(&c->ep[0], &c->ep[1], r->table_size)];

	while (*link != c)
		link = &(*link)->hnext;
	*link = c->hnext;
	r->conns--;
	if (r->recent == c)
		r->recent = NULL;
}

void conn_list_append(struct conn_list *l, struct conn *c)
{
	c->lnext = NULL;
	c->prev = l->last;
	if (l->last != NULL)
		l->last->lnext = c;
	else
		l->first = c;
	l->last = c;
	l->count++;
}

void conn_list_remove(struct conn_list *l, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->lnext = c->lnext;
	else
		l->first = c->lnext;
	if (c->lnext != NULL)
		c->lnext->prev = c->prev;
	else
		l->last = c->prev;
	c->prev = c->lnext = NULL;
	l->count--;
}
