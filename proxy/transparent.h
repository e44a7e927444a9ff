/* --transparent: a connection that an iptables/nftables REDIRECT brought
 * here is relayed to where it was going (SO_ORIGINAL_DST). Which legs
 * speak TLS is read from it before its session starts: port 993 is TLS
 * from the first byte; on any other port a client that opens with a TLS
 * record speaks TLS, and one that waits for the greeting (IMAP's way)
 * gets STARTTLS, offered and answered by imaptap. */
#ifndef PROXY_TRANSPARENT_H
#define PROXY_TRANSPARENT_H

#include <sys/socket.h>

#include <event2/event.h>

#include "proxy/route.h"

/* How long a client on another port than 993 and 143 may stay silent
 * before it is taken for one that waits for the greeting. */
#define PROXY_SNIFF_MS 1000

/* fd's session may start: route is its original destination (the
 * caller's now), client_tls the client leg's. */
typedef void proxy_transparent_ready_fn(void *ctx, int fd, const struct sockaddr *client,
					struct proxy_route *route,
					enum proxy_tls_mode client_tls);
/* fd was not redirected (it came straight to the listener) or cannot be
 * served: told with a BYE when that can be read, and closed; why says
 * which, printable. */
typedef void proxy_transparent_refused_fn(void *ctx, const struct sockaddr *peer,
					  const char *why);

struct proxy_transparent;

/* starttls_upstream: the upstream leg of a session that is not TLS from
 * the first byte does STARTTLS (else it stays plain). */
struct proxy_transparent *proxy_transparent_new(struct event_base *base, bool starttls_upstream,
						proxy_transparent_ready_fn *ready,
						proxy_transparent_refused_fn *refused, void *ctx);
/* Takes over fd. */
void proxy_transparent_accept(struct proxy_transparent *t, int fd, const struct sockaddr *peer,
			      socklen_t peer_len);
/* Closes the connections still being looked at. */
void proxy_transparent_free(struct proxy_transparent **t);

#endif
