#include "capture/route_names.h"

#include <stdlib.h>
#include <string.h>

#include "capture/session_table.h"

#define NAMES_MAX 255

struct capture_route_names {
	char *names[NAMES_MAX]; /* each kept once; sessions hold an index */
	unsigned name_count;
	struct capture_session_table sessions;
};

struct capture_route_names *capture_route_names_new(void)
{
	return calloc(1, sizeof(struct capture_route_names));
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

	if (m == NULL || name == NULL || (n = name_index(m, name)) < 0)
		return;
	(void)capture_session_table_put(&m->sessions, id, (unsigned)n);
}

const char *capture_route_names_get(const struct capture_route_names *m, unsigned id)
{
	unsigned n;

	if (m == NULL || !capture_session_table_get(&m->sessions, id, &n))
		return NULL;
	return m->names[n];
}

void capture_route_names_close(struct capture_route_names *m, unsigned id)
{
	if (m != NULL)
		capture_session_table_remove(&m->sessions, id);
}

void capture_route_names_free(struct capture_route_names **m)
{
	if (*m == NULL)
		return;
	for (unsigned i = 0; i < (*m)->name_count; i++)
		free((*m)->names[i]);
	capture_session_table_free(&(*m)->sessions);
	free(*m);
	*m = NULL;
}
