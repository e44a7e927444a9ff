/* The metrics sink: counts as the sessions go; capture/metrics_text.c
 * renders what it counted. */
#include "capture/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/metrics_int.h"

const double metrics_latency_bounds[] = CAPTURE_METRICS_LATENCY_BUCKETS;
const unsigned metrics_latency_count =
	sizeof(metrics_latency_bounds) / sizeof(metrics_latency_bounds[0]);
const double metrics_done_bounds[] = CAPTURE_METRICS_DONE_BUCKETS;
const unsigned metrics_done_count = sizeof(metrics_done_bounds) / sizeof(metrics_done_bounds[0]);

_Static_assert(sizeof(metrics_latency_bounds) / sizeof(double) < METRICS_BUCKETS_MAX,
	       "latency buckets and +Inf fit");
_Static_assert(sizeof(metrics_done_bounds) / sizeof(double) < METRICS_BUCKETS_MAX,
	       "DONE->OK buckets and +Inf fit");

/* Commands that always have a label of their own (RFC 9051 and the
 * extensions clients use); other atoms of letters take one of
 * METRICS_UNKNOWN_MAX more, so that a peer making up names cannot crowd
 * these out. */
static const char *const known_commands[] = {
	"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE",
	"SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
	"LIST", "LSUB", "XLIST", "NAMESPACE", "STATUS", "APPEND", "IDLE", "CHECK", "CLOSE",
	"UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "ID", "COMPRESS",
	"GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "GETACL", "SETACL", "DELETEACL", "LISTRIGHTS",
	"MYRIGHTS", "GETMETADATA", "SETMETADATA", "SORT", "THREAD", "NOTIFY", "UNAUTHENTICATE",
	"REPLACE", "UID FETCH", "UID STORE", "UID COPY", "UID MOVE", "UID SEARCH",
	"UID EXPUNGE", "UID SORT", "UID THREAD",
};
#define KNOWN_COUNT (sizeof(known_commands) / sizeof(known_commands[0]))
_Static_assert(KNOWN_COUNT + METRICS_UNKNOWN_MAX <= METRICS_COMMANDS_MAX, "labels fit");

/* The longest name taken as a command; a longer one was made up (or cut
 * by the classifier) and counts as OTHER. */
#define NAME_LONGEST 24

static void hist_add(struct metrics_hist *h, const double *bounds, unsigned n, imap_time_us us)
{
	double s;
	unsigned i;

	if (us < 0)
		us = 0;
	s = (double)us / IMAP_US_PER_S;
	for (i = 0; i < n && s > bounds[i]; i++)
		;
	h->bucket[i]++;
	h->count++;
	h->sum_us += (uint64_t)us;
}

/* ---- labels ---- */

static unsigned route_index(struct capture_metrics *m, const char *route)
{
	const char *name = route != NULL ? route : "default";
	unsigned i;

	for (i = 0; i < m->routes; i++)
		if (strcmp(m->route[i].name, name) == 0)
			return i;
	if (m->routes < CAPTURE_METRICS_ROUTES_MAX &&
	    (m->route[m->routes].name = strdup(name)) != NULL)
		return m->routes++;
	return CAPTURE_METRICS_ROUTES_MAX;
}

static bool plain_atom(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_LONGEST)
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] < 'A' || name[i] > 'Z')
			return false;
	return true;
}

static bool known(const char *label)
{
	for (size_t i = 0; i < KNOWN_COUNT; i++)
		if (strcmp(known_commands[i], label) == 0)
			return true;
	return false;
}

/* The histogram of a completed command's label. */
static struct metrics_hist *command_hist(struct capture_metrics *m, const struct imap_completion *c)
{
	char label[METRICS_LABEL_MAX];
	struct metrics_command *cmd;

	if (!plain_atom(c->command))
		return &m->other_command;
	snprintf(label, sizeof(label), "%s%s", c->uid ? "UID " : "", c->command);
	for (unsigned i = 0; i < m->commands; i++)
		if (strcmp(m->command[i].name, label) == 0)
			return &m->command[i].h;
	if (!known(label)) {
		if (m->unknown_commands == METRICS_UNKNOWN_MAX)
			return &m->other_command;
		m->unknown_commands++;
	}
	cmd = &m->command[m->commands++];
	memcpy(cmd->name, label, sizeof(label));
	return &cmd->h;
}

static uint64_t *fault_counter(struct capture_metrics *m, const char *action, const char *phase)
{
	struct metrics_fault *f;

	for (unsigned i = 0; i < m->faults; i++)
		if (strcmp(m->fault[i].action, action) == 0 && strcmp(m->fault[i].phase, phase) == 0)
			return &m->fault[i].count;
	if (m->faults == METRICS_FAULTS_MAX)
		return &m->fault[METRICS_FAULTS_MAX].count;
	f = &m->fault[m->faults];
	f->action = strdup(action);
	f->phase = strdup(phase);
	if (f->action == NULL || f->phase == NULL) {
		free(f->action);
		free(f->phase);
		*f = (struct metrics_fault){0};
		return &m->fault[METRICS_FAULTS_MAX].count;
	}
	m->faults++;
	return &f->count;
}

/* ---- the sink ---- */

static void mx_open(void *self, const struct capture_session_info *info)
{
	struct capture_metrics *m = self;
	unsigned r = route_index(m, info->route);

	m->route[r].open++;
	m->route[r].total++;
	/* out of memory: the session counts, its bytes and its close do not */
	if (capture_session_table_put(&m->sessions, info->id, r) != 0)
		m->route[r].open--;
}

static void mx_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		     const uint8_t *data, size_t len, uint64_t secret_from)
{
	struct capture_metrics *m = self;
	unsigned r;

	(void)ts;
	(void)data;
	(void)secret_from;
	if (capture_session_table_get(&m->sessions, session, &r) && (unsigned)dir < 2)
		m->route[r].bytes[dir] += len;
}

static void mx_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct capture_metrics *m = self;
	const struct imap_completion *c = obs->completion;

	(void)session;
	if (c == NULL)
		return;
	hist_add(command_hist(m, c), metrics_latency_bounds, metrics_latency_count, c->latency);
	if (c->idle && c->done_at >= 0 && c->done_to_ok >= 0)
		hist_add(&m->done_to_ok, metrics_done_bounds, metrics_done_count, c->done_to_ok);
}

static void mx_anomaly(void *self, unsigned session, const struct imap_anomaly *a)
{
	struct capture_metrics *m = self;

	(void)session;
	/* a resolution is a later word on a finding already counted */
	if (!a->resolved && !a->never_resolved && (unsigned)a->rule < IMAP_RULE_COUNT)
		m->anomalies[a->rule]++;
}

static void mx_fault(void *self, unsigned session, const struct capture_fault_mark *mark)
{
	struct capture_metrics *m = self;

	(void)session;
	if (mark->action != NULL && mark->phase != NULL)
		(*fault_counter(m, mark->action, mark->phase))++;
}

static void mx_close(void *self, const struct capture_close_info *info)
{
	struct capture_metrics *m = self;
	unsigned r;

	if (!capture_session_table_get(&m->sessions, info->id, &r))
		return;
	m->route[r].open--;
	if ((unsigned)info->by <= CAPTURE_SIDE_CAPTURE && (unsigned)info->end <= CAPTURE_END_UNSEEN)
		m->route[r].closed[info->by][info->end]++;
	capture_session_table_remove(&m->sessions, info->id);
}

static void mx_destroy(void *self)
{
	struct capture_metrics *m = self;

	for (unsigned i = 0; i < m->routes; i++)
		free(m->route[i].name);
	for (unsigned i = 0; i < m->faults; i++) {
		free(m->fault[i].action);
		free(m->fault[i].phase);
	}
	capture_session_table_free(&m->sessions);
	free(m->version);
	free(m);
}

static const struct capture_sink_ops metrics_ops = {
	.open = mx_open,
	.bytes = mx_bytes,
	.observe = mx_observe,
	.anomaly = mx_anomaly,
	.fault = mx_fault,
	.close = mx_close,
	.destroy = mx_destroy,
};

struct capture_metrics *capture_metrics_new(const struct capture_metrics_config *config,
					    struct capture_sink *sink_r)
{
	struct capture_metrics *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->version = strdup(config->version != NULL ? config->version : "");
	if (m->version == NULL) {
		free(m);
		return NULL;
	}
	m->started = config->started;
	*sink_r = (struct capture_sink){&metrics_ops, m};
	return m;
}
