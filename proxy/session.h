/* Relayed sessions as the proxy that accepts them sees them. A session
 * gets what it needs from a narrow environment (settings, TLS contexts,
 * the upstream's addresses, where to record) and keeps itself in a set the
 * proxy owns; it knows nothing else of the proxy. */
#ifndef PROXY_SESSION_H
#define PROXY_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "capture/sink.h"
#include "capture/sink_lock.h"
#include "proxy/ca.h"
#include "proxy/proxy.h"


struct proxy_session;

struct session_env {
	struct event_base *base;
	const struct proxy_config *config;
	const struct capture_sinks *sinks;
	SSL_CTX *upstream_ctx; /* NULL when no upstream leg uses TLS */
	SSL_CTX *client_ctx;   /* NULL when the client leg is plain */
	struct proxy_ca *ca;   /* NULL unless certificates are forged */
	/* routes[0] is --upstream, then each --route in order; none with
	 * --transparent (each session finds its own) */
	struct proxy_route *routes[PROXY_ROUTES_MAX + 1];
	unsigned route_count;
	/* Out of descriptors or memory (errno err): the proxy pauses
	 * accepting and returns true; false for any other errno. */
	bool (*out_of_resources)(void *owner, int err);
	/* A session is gone (set->count is already one less). */
	void (*gone)(void *owner);
	void *owner;
};

/* What the sessions of every event loop of one run share. */
struct session_shared {
	atomic_uint next_id; /* the last session number given */
	atomic_uint open;    /* sessions open across the loops (the accepting loop counts one in) */
	struct capture_lock *lock; /* the outputs' lock; NULL with one loop */
	/* The rules' thresholds a session takes as the outputs first hear of
	 * it (session_open_observed), under lock: a SIGHUP may change them
	 * (proxy_set_thresholds), and the settings record it writes then
	 * falls between the sessions that took the old ones and those that
	 * take the new, in every output. */
	struct imap_tracker_config thresholds;
};

/* The sessions open under one environment (one event loop). */
struct session_set {
	TAILQ_HEAD(, proxy_session) all;
	unsigned count;
	struct session_shared *shared;
};

void session_set_init(struct session_set *set, struct session_shared *shared);

/* Takes over fd; client and local are the client's address and where it
 * connected (local NULL: the socket's own; both from a PROXY header with
 * --accept-proxy). With --transparent, own is the connection's original
 * destination and client_tls what its first bytes said, both the
 * session's (own NULL: the routes, and the client leg of the config).
 * Returns -1 when the session could not be set up (fd is
 * then closed). The caller has counted it in set->shared->open already;
 * a session that is set up counts itself out when it is gone, one that
 * could not be is the caller's to count out. */
int proxy_session_start(const struct session_env *env, struct session_set *set, int fd,
			const struct sockaddr *client, const struct sockaddr *local,
			struct proxy_route *own, enum proxy_tls_mode client_tls);

/* Begins closing every session as the proxy shuts down: each flushes what
 * it holds, then closes (reason NULL: freed at once, as the proxy is
 * freed). */
void proxy_session_stop_all(struct session_set *set, const char *reason);

#endif
