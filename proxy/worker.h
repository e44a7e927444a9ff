/* One event loop of a proxy run: its listener, the sessions it accepted,
 * its pause when out of descriptors, its part of a shutdown. The first
 * loop runs on the caller's base and thread; with --workers the others
 * each have a base and a thread of their own, and listen on the same port
 * (SO_REUSEPORT: the kernel spreads the clients). Internal to proxy/. */
#ifndef PROXY_WORKER_H
#define PROXY_WORKER_H

#include <stdbool.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "proxy/session.h"

struct proxy_worker;

/* base NULL: a base of its own, run by proxy_worker_start's thread (the
 * caller has made libevent thread-safe). env is copied, with its base and
 * owner set to the worker's. */
struct proxy_worker *proxy_worker_new(struct event_base *base, const struct session_env *env,
				      struct session_shared *shared);

/* Listens on addr; reuse_port: beside other sockets on the same port.
 * Returns 0, or an errno. */
int proxy_worker_listen(struct proxy_worker *w, const struct sockaddr *addr, socklen_t len,
			bool reuse_port);
/* The listening socket's address (after proxy_worker_listen). */
int proxy_worker_bound(const struct proxy_worker *w, struct sockaddr_storage *ss, socklen_t *len);

/* Starts the thread of a worker with a base of its own, named
 * "imaptap-loopNUMBER". Returns 0 or an errno. */
int proxy_worker_start(struct proxy_worker *w, unsigned number);

/* From any thread: stops accepting, closes every session after flushing
 * what it can; the worker's loop ends when the last one is gone or after
 * a grace period. now: end its loop at once instead. */
void proxy_worker_shutdown(struct proxy_worker *w, bool now);

/* Ends the worker's loop (and joins its thread), frees its sessions, its
 * listener and itself. */
void proxy_worker_free(struct proxy_worker **w);

#endif
