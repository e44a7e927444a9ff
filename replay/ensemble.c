#include "replay/ensemble.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct part {
	const struct replay_recording *rec;
	size_t *gates;          /* unit indices */
	imap_time_us *gate_at;  /* live time each gate was done */
	size_t gate_count, gates_done;
	imap_time_us first, last; /* on the capture's clock */
	bool claimed, ended;
};

struct replay_ensemble {
	pthread_mutex_t lock;
	struct part *parts;
	size_t count;
	bool ordered;
	double speed;
};

static bool is_gate(const struct replay_unit *u, enum replay_gates gates)
{
	switch (gates) {
	case REPLAY_GATES_CLIENT:
		return u->dir == IMAP_C2S;
	case REPLAY_GATES_WALKED:
		return u->dir == IMAP_C2S || u->continuation || u->tag[0] != '\0';
	}
	return false;
}

static bool part_init(struct part *p, const struct replay_recording *rec, enum replay_gates gates)
{
	p->rec = rec;
	p->gates = malloc((rec->count ? rec->count : 1) * sizeof(*p->gates));
	p->gate_at = malloc((rec->count ? rec->count : 1) * sizeof(*p->gate_at));
	if (p->gates == NULL || p->gate_at == NULL)
		return false;
	for (size_t i = 0; i < rec->count; i++)
		if (is_gate(&rec->units[i], gates))
			p->gates[p->gate_count++] = i;
	p->first = rec->opened;
	p->last = rec->opened + (rec->count ? rec->units[rec->count - 1].at : 0);
	return true;
}

struct replay_ensemble *replay_ensemble_new(const struct replay_recordings *recs,
					    enum replay_gates gates, bool ordered, double speed)
{
	struct replay_ensemble *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	pthread_mutex_init(&e->lock, NULL);
	e->ordered = ordered;
	e->speed = speed;
	e->parts = calloc(recs->count ? recs->count : 1, sizeof(*e->parts));
	if (e->parts == NULL) {
		replay_ensemble_free(&e);
		return NULL;
	}
	e->count = recs->count;
	for (size_t i = 0; i < recs->count; i++)
		if (!part_init(&e->parts[i], &recs->recs[i], gates)) {
			replay_ensemble_free(&e);
			return NULL;
		}
	return e;
}

void replay_ensemble_free(struct replay_ensemble **ep)
{
	struct replay_ensemble *e = *ep;

	if (e == NULL)
		return;
	for (size_t i = 0; e->parts != NULL && i < e->count; i++) {
		free(e->parts[i].gates);
		free(e->parts[i].gate_at);
	}
	free(e->parts);
	pthread_mutex_destroy(&e->lock);
	free(e);
	*ep = NULL;
}

size_t replay_ensemble_count(const struct replay_ensemble *e)
{
	return e->count;
}

const struct replay_recording *replay_ensemble_recording(const struct replay_ensemble *e,
							 size_t idx)
{
	return e->parts[idx].rec;
}

long replay_ensemble_claim_next(struct replay_ensemble *e)
{
	long idx = -1;

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->count && idx < 0; i++)
		if (!e->parts[i].claimed) {
			e->parts[i].claimed = true;
			idx = (long)i;
		}
	pthread_mutex_unlock(&e->lock);
	return idx;
}

bool replay_ensemble_claim(struct replay_ensemble *e, size_t idx)
{
	bool got;

	pthread_mutex_lock(&e->lock);
	got = !e->parts[idx].claimed;
	e->parts[idx].claimed = true;
	pthread_mutex_unlock(&e->lock);
	return got;
}

bool replay_ensemble_claimed(struct replay_ensemble *e, size_t idx)
{
	bool claimed;

	pthread_mutex_lock(&e->lock);
	claimed = e->parts[idx].claimed;
	pthread_mutex_unlock(&e->lock);
	return claimed;
}

bool replay_ensemble_new_round(struct replay_ensemble *e)
{
	bool done = true;

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->count; i++)
		done = done && e->parts[i].claimed && e->parts[i].ended;
	for (size_t i = 0; done && i < e->count; i++) {
		e->parts[i].claimed = e->parts[i].ended = false;
		e->parts[i].gates_done = 0;
	}
	pthread_mutex_unlock(&e->lock);
	return done;
}

size_t replay_ensemble_gate_count(const struct replay_ensemble *e, size_t idx)
{
	return e->parts[idx].gate_count;
}

size_t replay_ensemble_gate(const struct replay_ensemble *e, size_t idx, size_t k)
{
	return e->parts[idx].gates[k];
}

void replay_ensemble_done(struct replay_ensemble *e, size_t idx, imap_time_us at)
{
	struct part *p = &e->parts[idx];

	pthread_mutex_lock(&e->lock);
	if (p->gates_done < p->gate_count)
		p->gate_at[p->gates_done++] = at;
	pthread_mutex_unlock(&e->lock);
}

void replay_ensemble_end(struct replay_ensemble *e, size_t idx)
{
	pthread_mutex_lock(&e->lock);
	e->parts[idx].ended = true;
	pthread_mutex_unlock(&e->lock);
}

static imap_time_us abs_at(const struct part *p, size_t unit)
{
	return p->rec->opened + p->rec->units[unit].at;
}

/* The number of gates of p recorded before t. */
static size_t gates_before(const struct part *p, imap_time_us t)
{
	size_t lo = 0, hi = p->gate_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (abs_at(p, p->gates[mid]) < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool replay_ensemble_ready(struct replay_ensemble *e, size_t idx, size_t unit,
			   imap_time_us *due_r, struct replay_wait *wait_r)
{
	const struct part *me = &e->parts[idx];
	imap_time_us t = abs_at(me, unit), due = 0;
	bool ready = true;

	*due_r = 0;
	if (!e->ordered)
		return true;
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->count && ready; i++) {
		const struct part *o = &e->parts[i];
		size_t k;
		imap_time_us at;

		/* only sessions open beside this one order it */
		if (i == idx || o->ended || o->first > t || o->last < me->first)
			continue;
		k = gates_before(o, t);
		if (k == 0)
			continue;
		if (o->gates_done < k) {
			wait_r->session = i;
			wait_r->unit = o->gates[k - 1];
			ready = false;
			break;
		}
		at = o->gate_at[k - 1];
		if (e->speed > 0)
			at += (imap_time_us)((double)(t - abs_at(o, o->gates[k - 1])) / e->speed);
		if (at > due)
			due = at;
	}
	pthread_mutex_unlock(&e->lock);
	*due_r = due;
	return ready;
}
