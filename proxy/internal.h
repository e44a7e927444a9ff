/* What proxy.c and session.c share; not part of the public API. */
#ifndef PROXY_INTERNAL_H
#define PROXY_INTERNAL_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "proxy/ca.h"
#include "proxy/proxy.h"
#include "proxy/tls.h"

struct proxy_session;

struct proxy {
	struct event_base *base;
	struct proxy_config config;
	const struct capture_sinks *sinks;
	SSL_CTX *upstream_ctx; /* NULL when the upstream leg is plain */
	SSL_CTX *client_ctx;   /* NULL when the client leg is plain */
	struct proxy_ca *ca;   /* NULL unless certificates are forged */
	int keylog_fd;         /* -1 without --keylog */
	struct evconnlistener *listener;
	struct event *accept_retry;
	struct event *shutdown_deadline;
	struct sockaddr_storage upstream_addr[8];
	socklen_t upstream_addr_len[8];
	unsigned upstream_addr_count;
	char listen_str[CAPTURE_ADDR_MAX];
	unsigned listen_port;
	int listen_loopback;
	char upstream_str[CAPTURE_ADDR_MAX];
	unsigned next_id;
	unsigned session_count;
	uint64_t refused;          /* clients turned away by max_sessions */
	uint64_t refused_reported; /* of those, already in a log line */
	imap_time_us refused_logged;
	int shutting_down;
	TAILQ_HEAD(, proxy_session) sessions;
};

void proxy_log(const struct proxy *proxy, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Takes over fd; returns -1 when the session could not be set up (fd is
 * then closed). */
int proxy_session_start(struct proxy *proxy, int fd, const struct sockaddr *client,
			socklen_t client_len);
/* Begins closing every session on behalf of the proxy. */
void proxy_session_stop_all(struct proxy *proxy, const char *reason);
/* For an errno of running out of descriptors or memory: pauses accepting
 * for a while (once) and returns true; false for any other errno. */
bool proxy_out_of_resources(struct proxy *proxy, int err);
/* Called by session.c when a session is gone. */
void proxy_session_gone(struct proxy *proxy);


imap_time_us proxy_now(void);

#endif
