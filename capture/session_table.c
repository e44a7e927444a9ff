#include "capture/session_table.h"

#include <stdlib.h>

struct capture_session_slot {
	unsigned id; /* 0: free */
	unsigned value;
};

static size_t slot_hash(unsigned id, size_t cap)
{
	return (size_t)(id * 2654435761u) & (cap - 1);
}

static struct capture_session_slot *slot_find(const struct capture_session_table *t, unsigned id)
{
	if (t->cap == 0 || id == 0)
		return NULL;
	for (size_t i = slot_hash(id, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (t->slot[i].id == 0)
			return NULL;
		if (t->slot[i].id == id)
			return &t->slot[i];
	}
}

static void slot_put(struct capture_session_slot *slot, size_t cap, unsigned id, unsigned value)
{
	size_t i = slot_hash(id, cap);

	while (slot[i].id != 0)
		i = (i + 1) & (cap - 1);
	slot[i] = (struct capture_session_slot){.id = id, .value = value};
}

int capture_session_table_put(struct capture_session_table *t, unsigned id, unsigned value)
{
	if (id == 0)
		return -1;
	if ((t->used + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct capture_session_slot *n = calloc(cap, sizeof(*n));

		if (n == NULL)
			return -1;
		for (size_t i = 0; i < t->cap; i++)
			if (t->slot[i].id != 0)
				slot_put(n, cap, t->slot[i].id, t->slot[i].value);
		free(t->slot);
		t->slot = n;
		t->cap = cap;
	}
	slot_put(t->slot, t->cap, id, value);
	t->used++;
	return 0;
}

bool capture_session_table_get(const struct capture_session_table *t, unsigned id,
			       unsigned *value)
{
	const struct capture_session_slot *s = slot_find(t, id);

	if (s == NULL)
		return false;
	*value = s->value;
	return true;
}

/* Linear probing's removal: the entries after the hole that would no
 * longer be found move back into it. */
void capture_session_table_remove(struct capture_session_table *t, unsigned id)
{
	struct capture_session_slot *s = slot_find(t, id);
	size_t mask, hole;

	if (s == NULL)
		return;
	mask = t->cap - 1;
	hole = (size_t)(s - t->slot);
	for (size_t j = (hole + 1) & mask; t->slot[j].id != 0; j = (j + 1) & mask) {
		size_t home = slot_hash(t->slot[j].id, t->cap);

		/* j stays when its home lies cyclically in (hole, j] */
		if (hole <= j ? (hole < home && home <= j) : (hole < home || home <= j))
			continue;
		t->slot[hole] = t->slot[j];
		hole = j;
	}
	t->slot[hole].id = 0;
	t->used--;
}

void capture_session_table_free(struct capture_session_table *t)
{
	free(t->slot);
	*t = (struct capture_session_table){0};
}
