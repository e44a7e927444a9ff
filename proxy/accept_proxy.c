#include "proxy/accept_proxy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "net/proxy_header.h"

struct wait {
	struct proxy_header_waits *owner;
	int fd;
	struct sockaddr_storage peer;
	struct event *ev;
	struct event *deadline; /* from the accept, however the bytes trickle in */
	LIST_ENTRY(wait) link;
};

struct proxy_header_waits {
	struct event_base *base;
	struct timeval timeout;
	proxy_header_ready_fn *ready;
	proxy_header_refused_fn *refused;
	void *ctx;
	LIST_HEAD(, wait) all;
};

static void wait_free(struct wait *w, bool close_fd)
{
	LIST_REMOVE(w, link);
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->deadline != NULL)
		event_free(w->deadline);
	if (close_fd)
		close(w->fd);
	free(w);
}

static void refuse(struct wait *w, const char *why)
{
	struct proxy_header_waits *waits = w->owner;
	struct sockaddr_storage peer = w->peer;

	wait_free(w, true);
	waits->refused(waits->ctx, (struct sockaddr *)&peer, why);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct wait *w = arg;
	struct proxy_header_waits *waits = w->owner;
	uint8_t buf[NET_PROXY_HEADER_MAX];
	struct net_proxy_header h;
	struct sockaddr_storage local;
	socklen_t local_len = sizeof(local);
	char err[160];
	ssize_t n;

	(void)what;
	n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		refuse(w, n == 0 ? "closed before its PROXY protocol header was whole"
				 : "a socket error before its PROXY protocol header");
		return;
	}
	switch (net_proxy_header_parse(buf, (size_t)n, &h, err, sizeof(err))) {
	case NET_PROXY_MORE:
		if ((size_t)n == sizeof(buf))
			refuse(w, "a PROXY protocol header longer than 1024 bytes");
		return;
	case NET_PROXY_INVALID:
		refuse(w, err);
		return;
	case NET_PROXY_DONE:
		break;
	}
	/* consumed to its last byte: what follows is the session's */
	if (recv(fd, buf, h.length, 0) != (ssize_t)h.length) {
		refuse(w, "the PROXY protocol header could not be consumed");
		return;
	}
	if (!h.proxied) {
		h.source = w->peer;
		if (getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
			h.destination = local;
	}
	wait_free(w, false);
	waits->ready(waits->ctx, fd, (struct sockaddr *)&h.source,
		     (struct sockaddr *)&h.destination);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	refuse(arg, "no whole PROXY protocol header within the handshake timeout");
}

struct proxy_header_waits *proxy_header_waits_new(struct event_base *base, unsigned timeout_s,
						  proxy_header_ready_fn *ready,
						  proxy_header_refused_fn *refused, void *ctx)
{
	struct proxy_header_waits *waits = calloc(1, sizeof(*waits));

	if (waits == NULL)
		return NULL;
	waits->base = base;
	waits->timeout.tv_sec = (time_t)timeout_s;
	waits->ready = ready;
	waits->refused = refused;
	waits->ctx = ctx;
	LIST_INIT(&waits->all);
	return waits;
}

int proxy_header_wait(struct proxy_header_waits *waits, int fd, const struct sockaddr *peer,
		      socklen_t peer_len)
{
	struct wait *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		close(fd);
		return -1;
	}
	w->owner = waits;
	w->fd = fd;
	if (peer_len > sizeof(w->peer))
		peer_len = sizeof(w->peer);
	memcpy(&w->peer, peer, peer_len);
	LIST_INSERT_HEAD(&waits->all, w, link);
	/* edge-triggered: a prefix left in the socket (peeked, not read) does
	 * not wake the loop again until more bytes come */
	w->ev = event_new(waits->base, fd, EV_READ | EV_PERSIST | EV_ET, on_readable, w);
	w->deadline = evtimer_new(waits->base, on_deadline, w);
	if (w->ev == NULL || w->deadline == NULL || event_add(w->ev, NULL) < 0 ||
	    evtimer_add(w->deadline, &waits->timeout) < 0) {
		wait_free(w, true);
		return -1;
	}
	return 0;
}

void proxy_header_waits_free(struct proxy_header_waits **waits)
{
	if (*waits == NULL)
		return;
	while (!LIST_EMPTY(&(*waits)->all))
		wait_free(LIST_FIRST(&(*waits)->all), true);
	free(*waits);
	*waits = NULL;
}
