#include "replay/runs.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct slot {
	struct replay_run run;
	struct replay_runs *owner;
	pthread_t thread;
	bool used;
	bool finished; /* under the lock */
};

struct replay_runs {
	pthread_mutex_t lock;
	pthread_cond_t finished;
	replay_run_fn *fn;
	void *ctx;
	struct slot *slots;
	size_t max;
	unsigned started;
	struct replay_run reaped; /* the last one handed out */
};

static void *run_thread(void *arg)
{
	struct slot *slot = arg;
	struct replay_runs *r = slot->owner;

	r->fn(r->ctx, slot->run.fd, slot->run.session, &slot->run.result);
	pthread_mutex_lock(&r->lock);
	slot->finished = true;
	pthread_cond_broadcast(&r->finished);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct replay_runs *replay_runs_new(replay_run_fn *fn, void *ctx, size_t max)
{
	struct replay_runs *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->slots = calloc(max, sizeof(*r->slots));
	if (r->slots == NULL) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->finished, NULL);
	r->fn = fn;
	r->ctx = ctx;
	r->max = max;
	return r;
}

unsigned replay_runs_start(struct replay_runs *r, int fd, long session)
{
	struct slot *slot = NULL;

	for (size_t i = 0; i < r->max && slot == NULL; i++)
		if (!r->slots[i].used)
			slot = &r->slots[i];
	if (slot == NULL) {
		close(fd);
		return 0;
	}
	*slot = (struct slot){.owner = r, .used = true,
			      .run = {.n = r->started + 1, .fd = fd, .session = session}};
	if (pthread_create(&slot->thread, NULL, run_thread, slot) != 0) {
		slot->used = false;
		close(fd);
		return 0;
	}
	return ++r->started;
}

size_t replay_runs_active(const struct replay_runs *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->max; i++)
		n += r->slots[i].used;
	return n;
}

static struct slot *finished_slot(struct replay_runs *r)
{
	for (size_t i = 0; i < r->max; i++)
		if (r->slots[i].used && r->slots[i].finished)
			return &r->slots[i];
	return NULL;
}

const struct replay_run *replay_runs_reap(struct replay_runs *r, bool wait)
{
	struct slot *slot;

	if (replay_runs_active(r) == 0)
		return NULL;
	pthread_mutex_lock(&r->lock);
	while ((slot = finished_slot(r)) == NULL && wait)
		pthread_cond_wait(&r->finished, &r->lock);
	pthread_mutex_unlock(&r->lock);
	if (slot == NULL)
		return NULL;
	pthread_join(slot->thread, NULL);
	shutdown(slot->run.fd, SHUT_RDWR);
	close(slot->run.fd);
	r->reaped = slot->run;
	slot->used = false;
	return &r->reaped;
}

void replay_runs_interrupt(struct replay_runs *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->max; i++)
		if (r->slots[i].used && !r->slots[i].finished)
			shutdown(r->slots[i].run.fd, SHUT_RDWR);
	pthread_mutex_unlock(&r->lock);
}

void replay_runs_free(struct replay_runs **rp)
{
	struct replay_runs *r = *rp;

	if (r == NULL)
		return;
	replay_runs_interrupt(r);
	while (replay_runs_reap(r, true) != NULL)
		;
	pthread_cond_destroy(&r->finished);
	pthread_mutex_destroy(&r->lock);
	free(r->slots);
	free(r);
	*rp = NULL;
}
