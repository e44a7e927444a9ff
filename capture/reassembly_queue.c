/* One direction of a TCP connection being reassembled: bytes that came
 * before the hole in front of them wait here, sorted, without overlaps
 * (the first copy seen stays), bounded. */
#include "capture/reassembly_int.h"

#include <stdlib.h>
#include <string.h>

void side_queue_drop(struct side *s, struct chunk *k)
{
	s->head = k->next;
	if (s->head == NULL)
		s->tail = NULL;
	if (!k->lost)
		s->queued -= k->len;
	s->chunks--;
	free(k);
}

static struct chunk *chunk_new(uint64_t offset, const uint8_t *data, size_t len, bool lost)
{
	struct chunk *k = malloc(sizeof(*k) + (lost ? 0 : len));

	if (k == NULL)
		return NULL;
	k->next = NULL;
	k->offset = offset;
	k->len = len;
	k->lost = lost;
	if (!lost)
		memcpy(k->data, data, len);
	return k;
}

static void chunk_link(struct side *s, struct chunk **link, struct chunk *k)
{
	k->next = *link;
	*link = k;
	if (k->next == NULL)
		s->tail = k;
	if (!k->lost)
		s->queued += k->len;
	s->chunks++;
}

/* Queues the parts of [offset, offset + len) that no queued chunk holds
 * yet: where bytes overlap, the first seen stay. data is NULL for a lost
 * range. Returns 0, or -1 when out of memory. */
int side_queue_add(struct side *s, uint64_t offset, const uint8_t *data, size_t len)
{
	uint64_t end = offset + len, at = offset;
	struct chunk **link = &s->head;
	struct chunk *k;

	if (s->tail != NULL && s->tail->offset + s->tail->len <= offset)
		link = &s->tail->next; /* the usual case: after everything queued */
	for (; at < end; link = &(*link)->next) {
		struct chunk *cur = *link;
		uint64_t piece_end = end;

		if (cur != NULL && cur->offset + cur->len <= at)
			continue;
		if (cur != NULL && cur->offset < piece_end)
			piece_end = cur->offset;
		if (piece_end > at) {
			k = chunk_new(at, data != NULL ? data + (at - offset) : NULL,
				      (size_t)(piece_end - at), data == NULL);
			if (k == NULL)
				return -1;
			chunk_link(s, link, k);
			link = &k->next;
			cur = *link;
		}
		if (cur == NULL)
			break;
		if (cur->offset + cur->len > at)
			at = cur->offset + cur->len;
	}
	return 0;
}

bool side_queue_over_bound(const struct side *s)
{
	return s->queued > CAPTURE_REASSEMBLY_QUEUE_MAX ||
	       s->chunks > CAPTURE_REASSEMBLY_QUEUE_SEGMENTS;
}

void conn_free_queues(struct conn *c)
{
	for (int i = 0; i < 2; i++)
		while (c->side[i].head != NULL)
			side_queue_drop(&c->side[i], c->side[i].head);
}
