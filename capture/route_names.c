#include "capture/route_names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAMES_MAX 255

/* Open addressing on the session number, deleted slots marked. */
struct slot {
	unsigned id; /* 0: empty */
	uint8_t name; /* index into names */
	uint8_t deleted;
};

struct capture_route_names {
	char *names[NAMES_MAX];
	unsigned name_count;
	struct slot *slots;
	size_t cap;  /* a power of two */
	size_t used; /* live and deleted */
};

struct capture_route_names *capture_route_names_new(void)
{
	return calloc(1, sizeof(struct capture_route_names));
}

static struct slot *find(const struct capture_route_names *m, unsigned id)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = (id * 2654435761u) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct slot *s = &m->slots[i];

		if (s->id == 0 && !s->deleted)
			return NULL;
		if (s->id == id)
			return s;
	}
}

static int grow(struct capture_route_names *m)
{
	size_t cap = m->cap == 0 ? 64 : m->cap * 2, live = 0;
	struct slot *old = m->slots, *slots = calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < m->cap; i++)
		if (old[i].id != 0)
			live++;
	/* only live entries move: a table of mostly deleted slots is not grown */
	if (m->cap > 0 && live * 4 < m->cap) {
		cap = m->cap;
		free(slots);
		if ((slots = calloc(cap, sizeof(*slots))) == NULL)
			return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (old[i].id == 0)
			continue;
		for (j = (old[i].id * 2654435761u) & (cap - 1); slots[j].id != 0; j = (j + 1) & (cap - 1))
			;
		slots[j] = old[i];
	}
	free(old);
	m->slots = slots;
	m->cap = cap;
	m->used = live;
	return 0;
}

static int name_index(struct capture_route_names *m, const char *name)
{
	for (unsigned i = 0; i < m->name_count; i++)
		if (strcmp(m->names[i], name) == 0)
			return (int)i;
	if (m->name_count == NAMES_MAX || (m->names[m->name_count] = strdup(name)) == NULL)
		return -1;
	return (int)m->name_count++;
}

void capture_route_names_open(struct capture_route_names *m, unsigned id, const char *name)
{
	int n;
	size_t i;

	if (m == NULL || name == NULL || id == 0 || (n = name_index(m, name)) < 0)
		return;
	if ((m->used + 1) * 2 > m->cap && grow(m) < 0)
		return;
	for (i = (id * 2654435761u) & (m->cap - 1); m->slots[i].id != 0; i = (i + 1) & (m->cap - 1))
		if (m->slots[i].id == id)
			break;
	if (m->slots[i].id == 0 && !m->slots[i].deleted)
		m->used++;
	m->slots[i] = (struct slot){.id = id, .name = (uint8_t)n};
}

const char *capture_route_names_get(const struct capture_route_names *m, unsigned id)
{
	const struct slot *s = m != NULL ? find(m, id) : NULL;

	return s != NULL ? m->names[s->name] : NULL;
}

void capture_route_names_close(struct capture_route_names *m, unsigned id)
{
	struct slot *s = m != NULL ? find(m, id) : NULL;

	if (s != NULL) {
		s->id = 0;
		s->deleted = 1;
	}
}

void capture_route_names_free(struct capture_route_names **m)
{
	if (*m == NULL)
		return;
	for (unsigned i = 0; i < (*m)->name_count; i++)
		free((*m)->names[i]);
	free((*m)->slots);
	free(*m);
	*m = NULL;
}
