#include "proxy/transparent.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "capture/endpoint.h"
#include "proxy/addr.h"

/* linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, whose
 * other definitions clash with the C library's */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

struct look {
	struct proxy_transparent *owner;
	int fd;
	struct sockaddr_storage peer;
	struct proxy_route *route;
	struct event *ev; /* readable, or PROXY_SNIFF_MS without a byte */
	LIST_ENTRY(look) link;
};

struct proxy_transparent {
	struct event_base *base;
	bool starttls_upstream;
	proxy_transparent_ready_fn *ready;
	proxy_transparent_refused_fn *refused;
	void *ctx;
	LIST_HEAD(, look) all;
};

/* Where fd was going before the REDIRECT, as an address and as *to; -1
 * when it was not redirected (no NAT entry, or the destination is this
 * socket itself). */
static int original_destination(int fd, struct sockaddr_storage *dst, socklen_t *len,
				struct capture_endpoint *to)
{
	struct sockaddr_storage local;
	socklen_t local_len = sizeof(local);
	struct capture_endpoint self;
	bool six;
	int rc;

	if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0)
		return -1;
	capture_endpoint_from_sockaddr((struct sockaddr *)&local, &self);
	/* an IPv4 client of a dual-stack listener ([::]:PORT) arrives as
	 * ::ffff:a.b.c.d: its NAT entry, and so its original destination, is
	 * IPv4 */
	six = self.version == 6 &&
	      !IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)(void *)&local)->sin6_addr);
	if (self.version == 6 && !six) {
		self.version = 4;
		memmove(self.addr, self.addr + 12, 4);
		memset(self.addr + 4, 0, 12);
	}
	*len = six ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (six)
		rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, dst, len);
	else
		rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, dst, len);
	if (rc != 0)
		return -1;
	capture_endpoint_from_sockaddr((struct sockaddr *)dst, to);
	return capture_endpoint_equal(to, &self) ? -1 : 0;
}

static void look_free(struct look *l, bool close_fd)
{
	LIST_REMOVE(l, link);
	if (l->ev != NULL)
		event_free(l->ev);
	if (close_fd)
		close(l->fd);
	proxy_route_free(&l->route);
	free(l);
}

/* The session starts with the legs decided. */
static void start(struct look *l, bool tls)
{
	struct proxy_transparent *t = l->owner;
	struct proxy_route *route = l->route;
	struct sockaddr_storage peer = l->peer;
	int fd = l->fd;

	route->tls = tls ? PROXY_TLS_IMPLICIT
			 : t->starttls_upstream ? PROXY_TLS_STARTTLS : PROXY_TLS_NONE;
	l->route = NULL;
	look_free(l, false);
	t->ready(t->ctx, fd, (struct sockaddr *)&peer, route,
		 tls ? PROXY_TLS_IMPLICIT : PROXY_TLS_STARTTLS);
}

static void on_first_bytes(evutil_socket_t fd, short what, void *arg)
{
	struct look *l = arg;
	uint8_t b;
	ssize_t n = 0;

	if (what & EV_READ) {
		n = recv(fd, &b, 1, MSG_PEEK);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			event_add(l->ev, NULL);
			return;
		}
	}
	/* a TLS record starts with its content type, 22 for a handshake;
	 * silence, an EOF or anything else is a client that waits for the
	 * greeting or speaks in clear, which its session shows */
	start(l, n == 1 && b == 22);
}

struct proxy_transparent *proxy_transparent_new(struct event_base *base, bool starttls_upstream,
						proxy_transparent_ready_fn *ready,
						proxy_transparent_refused_fn *refused, void *ctx)
{
	struct proxy_transparent *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->base = base;
	t->starttls_upstream = starttls_upstream;
	t->ready = ready;
	t->refused = refused;
	t->ctx = ctx;
	LIST_INIT(&t->all);
	return t;
}

static void refuse(struct proxy_transparent *t, int fd, const struct sockaddr *peer,
		   const char *bye, const char *why)
{
	/* a fresh socket has room for one line; a TLS client cannot read it,
	 * and one already gone needs no telling */
	(void)send(fd, bye, strlen(bye), MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
	t->refused(t->ctx, peer, why);
}

void proxy_transparent_accept(struct proxy_transparent *t, int fd, const struct sockaddr *peer,
			      socklen_t peer_len)
{
	struct timeval sniff = {0, PROXY_SNIFF_MS * 1000};
	struct sockaddr_storage dst;
	socklen_t dst_len = sizeof(dst);
	struct capture_endpoint to;
	struct look *l;

	if (original_destination(fd, &dst, &dst_len, &to) != 0) {
		refuse(t, fd, peer,
		       "* BYE [UNAVAILABLE] imaptap --transparent: this connection was not "
		       "redirected to imaptap, so it has nowhere to go\r\n",
		       "it came straight to the listener, not through a REDIRECT rule "
		       "(docs/transparent.md)");
		return;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL || (l->route = proxy_route_of_addr((struct sockaddr *)&dst, dst_len,
							 PROXY_TLS_NONE)) == NULL) {
		free(l);
		refuse(t, fd, peer, "* BYE [UNAVAILABLE] imaptap: out of memory\r\n", "out of memory");
		return;
	}
	l->owner = t;
	l->fd = fd;
	if (peer_len > sizeof(l->peer))
		peer_len = sizeof(l->peer);
	memcpy(&l->peer, peer, peer_len);
	LIST_INSERT_HEAD(&t->all, l, link);
	if (to.port == 993 || to.port == 143) {
		start(l, to.port == 993);
		return;
	}
	l->ev = event_new(t->base, fd, EV_READ, on_first_bytes, l);
	if (l->ev == NULL || event_add(l->ev, &sniff) < 0) {
		look_free(l, true);
		t->refused(t->ctx, peer, "out of memory");
	}
}

void proxy_transparent_free(struct proxy_transparent **t)
{
	if (*t == NULL)
		return;
	while (!LIST_EMPTY(&(*t)->all))
		look_free(LIST_FIRST(&(*t)->all), true);
	free(*t);
	*t = NULL;
}
