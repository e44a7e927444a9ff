#include "proxy/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "proxy/accept_proxy.h"
#include "proxy/addr.h"
#include "proxy/clock.h"
#include "proxy/transparent.h"

#define SHUTDOWN_GRACE_S 3
#define ACCEPT_RETRY_S 1
#define BACKLOG 128

/* Connections turned away, said in a line at most once a second. */
struct refusals {
	uint64_t count;
	uint64_t reported; /* of those, already in a line */
	imap_time_us logged;
};

/* Counts one more; true when it is time for a line, with *more the
 * refusals since the last line that it is to mention. */
static bool refusals_take(struct refusals *r, imap_time_us now, uint64_t *more)
{
	r->count++;
	if (r->reported != 0 && now - r->logged < IMAP_US_PER_S)
		return false;
	*more = r->count - r->reported - 1;
	r->reported = r->count;
	r->logged = now;
	return true;
}

struct proxy_worker {
	struct event_base *base;
	bool own_base; /* made here, run by thread */
	pthread_t thread;
	bool running;  /* thread started and not joined */
	bool shutdown_asked; /* by the caller's thread */
	struct session_env env;
	struct session_set sessions;
	struct evconnlistener *listener;
	struct event *accept_retry;
	struct event *shutdown_deadline;
	struct proxy_header_waits *header_waits; /* --accept-proxy */
	struct refusals refused;        /* clients turned away by --max-sessions */
	struct refusals header_refused; /* connections without a valid PROXY header */
	struct proxy_transparent *transparent; /* --transparent */
	struct refusals not_redirected; /* connections that came straight to it */
	bool shutting_down; /* in the worker's thread */
};

/* One more client than --max-sessions: told why where it can read it (a
 * TLS client cannot), closed, and logged at most once a second. */
static void refuse(struct proxy_worker *w, evutil_socket_t fd, const struct sockaddr *sa,
		   unsigned open)
{
	const struct proxy_config *c = w->env.config;
	char bye[200], who[CAPTURE_ADDR_MAX];
	uint64_t more;
	int n;

	if (c->client_tls != PROXY_TLS_IMPLICIT && !c->transparent) {
		n = snprintf(bye, sizeof(bye),
			     "* BYE [UNAVAILABLE] imaptap: %u sessions open, the most --max-sessions "
			     "allows; try again later\r\n",
			     open);
		/* a fresh socket has room for one line; never wait for it, and
		 * a client already gone needs no telling */
		(void)send(fd, bye, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	close(fd);
	if (!refusals_take(&w->refused, proxy_now(), &more))
		return;
	proxy_sockaddr_str(sa, who, sizeof(who));
	if (more > 0)
		proxy_config_log(c, "refused %s and %" PRIu64 " more client(s): %u sessions open, "
				 "--max-sessions %u", who, more, open, c->max_sessions);
	else
		proxy_config_log(c, "refused %s: %u sessions open, --max-sessions %u", who, open,
				 c->max_sessions);
}

/* A client to serve: counted in before it starts, so that loops
 * accepting at once cannot pass --max-sessions together. */
static void start_session(struct proxy_worker *w, int fd, const struct sockaddr *client,
			  const struct sockaddr *local, struct proxy_route *own,
			  enum proxy_tls_mode client_tls)
{
	unsigned max = w->env.config->max_sessions;
	unsigned open = atomic_fetch_add(&w->sessions.shared->open, 1);

	if (max > 0 && open >= max) {
		atomic_fetch_sub(&w->sessions.shared->open, 1);
		proxy_route_free(&own);
		refuse(w, fd, client, open);
		return;
	}
	if (proxy_session_start(&w->env, &w->sessions, fd, client, local, own, client_tls) < 0)
		atomic_fetch_sub(&w->sessions.shared->open, 1);
}

static void on_header_ready(void *ctx, int fd, const struct sockaddr *client,
			    const struct sockaddr *local)
{
	struct proxy_worker *w = ctx;

	if (w->shutting_down)
		close(fd);
	else
		start_session(w, fd, client, local, NULL, PROXY_TLS_NONE);
}

static void on_transparent_ready(void *ctx, int fd, const struct sockaddr *client,
				 struct proxy_route *route, enum proxy_tls_mode client_tls)
{
	struct proxy_worker *w = ctx;

	if (w->shutting_down) {
		close(fd);
		proxy_route_free(&route);
	} else {
		start_session(w, fd, client, NULL, route, client_tls);
	}
}

/* Said at most once a second, like every refusal before a session. */
static void say_refused(struct proxy_worker *w, struct refusals *r, const char *what,
			const struct sockaddr *peer, const char *why)
{
	char who[CAPTURE_ADDR_MAX];
	uint64_t more;

	if (!refusals_take(r, proxy_now(), &more))
		return;
	proxy_sockaddr_str(peer, who, sizeof(who));
	if (more > 0)
		proxy_config_log(w->env.config, "%s: closed %s: %s (and %" PRIu64
				 " more such connection(s))", what, who, why, more);
	else
		proxy_config_log(w->env.config, "%s: closed %s: %s", what, who, why);
}

static void on_transparent_refused(void *ctx, const struct sockaddr *peer, const char *why)
{
	struct proxy_worker *w = ctx;

	say_refused(w, &w->not_redirected, "--transparent", peer, why);
}

/* A connection without a valid PROXY header: one line a second at most,
 * counting the others. */
static void on_header_refused(void *ctx, const struct sockaddr *peer, const char *why)
{
	struct proxy_worker *w = ctx;

	say_refused(w, &w->header_refused, "--accept-proxy", peer, why);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct proxy_worker *w = arg;

	(void)l;
	if (w->shutting_down) {
		close(fd);
		return;
	}
	if (w->header_waits != NULL)
		(void)proxy_header_wait(w->header_waits, fd, sa, (socklen_t)salen);
	else if (w->transparent != NULL)
		proxy_transparent_accept(w->transparent, fd, sa, (socklen_t)salen);
	else
		start_session(w, fd, sa, NULL, NULL, PROXY_TLS_NONE);
}

static void session_gone(void *owner)
{
	struct proxy_worker *w = owner;

	if (w->shutting_down && w->sessions.count == 0)
		event_base_loopexit(w->base, NULL);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_worker *w = arg;

	(void)fd;
	(void)what;
	if (!w->shutting_down && w->listener != NULL)
		evconnlistener_enable(w->listener);
}

static bool out_of_resources(void *owner, int err)
{
	struct proxy_worker *w = owner;
	struct timeval again = {ACCEPT_RETRY_S, 0};

	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return false;
	if (w->listener == NULL || evtimer_pending(w->accept_retry, NULL))
		return true;
	/* stop accepting for a while instead of spinning on a listener that
	 * stays readable, or taking clients that cannot be served */
	proxy_config_log(w->env.config, "out of %s (%s): pausing accepts for %d s (%u sessions open); raise the "
		   "descriptor limit or lower --max-sessions",
		   err == EMFILE || err == ENFILE ? "descriptors" : "memory", strerror(err),
		   ACCEPT_RETRY_S, atomic_load(&w->sessions.shared->open));
	evconnlistener_disable(w->listener);
	evtimer_add(w->accept_retry, &again);
	return true;
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct proxy_worker *w = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	if (!out_of_resources(w, err))
		proxy_config_log(w->env.config, "accept failed: %s", strerror(err));
}

struct proxy_worker *proxy_worker_new(struct event_base *base, const struct session_env *env,
				      struct session_shared *shared)
{
	struct proxy_worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->own_base = base == NULL;
	w->base = base != NULL ? base : event_base_new();
	if (w->base == NULL) {
		free(w);
		return NULL;
	}
	w->env = *env;
	w->env.base = w->base;
	w->env.out_of_resources = out_of_resources;
	w->env.gone = session_gone;
	w->env.owner = w;
	session_set_init(&w->sessions, shared);
	w->accept_retry = evtimer_new(w->base, on_accept_retry, w);
	if (env->config->accept_proxy)
		w->header_waits = proxy_header_waits_new(w->base, env->config->connect_timeout_s,
							 on_header_ready, on_header_refused, w);
	if (env->config->transparent)
		w->transparent = proxy_transparent_new(w->base,
						       env->config->upstream_tls != PROXY_TLS_NONE,
						       on_transparent_ready, on_transparent_refused, w);
	if (w->accept_retry == NULL || (env->config->accept_proxy && w->header_waits == NULL) ||
	    (env->config->transparent && w->transparent == NULL))
		proxy_worker_free(&w);
	return w;
}

int proxy_worker_listen(struct proxy_worker *w, const struct sockaddr *addr, socklen_t len,
			bool reuse_port)
{
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;

	if (reuse_port)
		flags |= LEV_OPT_REUSEABLE_PORT;
	w->listener = evconnlistener_new_bind(w->base, on_accept, w, flags, BACKLOG, addr, (int)len);
	if (w->listener == NULL)
		return errno != 0 ? errno : EADDRNOTAVAIL;
	evconnlistener_set_error_cb(w->listener, on_accept_error);
	return 0;
}

int proxy_worker_bound(const struct proxy_worker *w, struct sockaddr_storage *ss, socklen_t *len)
{
	*len = sizeof(*ss);
	if (w->listener == NULL)
		return -1;
	return getsockname(evconnlistener_get_fd(w->listener), (struct sockaddr *)ss, len);
}

static void *worker_main(void *arg)
{
	struct proxy_worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

int proxy_worker_start(struct proxy_worker *w, unsigned number)
{
	sigset_t all, old;
	char name[16];
	int rc;

	if (!w->own_base || w->running)
		return 0;
	/* signals are the first loop's (the caller's thread) to handle */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	w->running = rc == 0;
	/* as top -H and /proc/PID/task/TID/comm show it */
	snprintf(name, sizeof(name), "imaptap-loop%u", number);
	if (rc == 0)
		(void)pthread_setname_np(w->thread, name);
	return rc;
}

static void on_shutdown_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_worker *w = arg;

	(void)fd;
	(void)what;
	proxy_config_log(w->env.config, "%u session(s) still flushing after %d s; exiting anyway", w->sessions.count,
		   SHUTDOWN_GRACE_S);
	event_base_loopexit(w->base, NULL);
}

/* In the worker's own thread. */
static void shut_down(struct proxy_worker *w)
{
	struct timeval grace = {SHUTDOWN_GRACE_S, 0};

	w->shutting_down = true;
	if (w->listener != NULL) {
		evconnlistener_free(w->listener);
		w->listener = NULL;
	}
	if (w->sessions.count == 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	w->shutdown_deadline = evtimer_new(w->base, on_shutdown_deadline, w);
	if (w->shutdown_deadline != NULL)
		evtimer_add(w->shutdown_deadline, &grace);
	proxy_session_stop_all(&w->sessions, "proxy shutting down");
}

static void on_shutdown_asked(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	shut_down(arg);
}

void proxy_worker_shutdown(struct proxy_worker *w, bool now)
{
	if (now) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	if (w->shutdown_asked)
		return;
	w->shutdown_asked = true;
	if (!w->own_base)
		shut_down(w);
	else if (event_base_once(w->base, -1, EV_TIMEOUT, on_shutdown_asked, w, NULL) < 0)
		event_base_loopexit(w->base, NULL);
}

void proxy_worker_free(struct proxy_worker **worker)
{
	struct proxy_worker *w = *worker;

	if (w == NULL)
		return;
	if (w->running) {
		/* a shutdown under way ends by itself within its grace period */
		if (!w->shutdown_asked)
			event_base_loopexit(w->base, NULL);
		pthread_join(w->thread, NULL);
		w->running = false;
	}
	if (w->listener != NULL)
		evconnlistener_free(w->listener);
	proxy_header_waits_free(&w->header_waits);
	proxy_transparent_free(&w->transparent);
	proxy_session_stop_all(&w->sessions, NULL);
	if (w->accept_retry != NULL)
		event_free(w->accept_retry);
	if (w->shutdown_deadline != NULL)
		event_free(w->shutdown_deadline);
	if (w->own_base)
		event_base_free(w->base);
	free(w);
	*worker = NULL;
}
