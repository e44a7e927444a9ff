/* --accept-proxy: a connection from a load balancer starts with a PROXY
 * protocol header (v1 or v2) naming the real client. It is read before
 * the session exists: peeked until whole, then consumed to its last byte,
 * so that what follows (a TLS ClientHello, IMAP) stays in the socket for
 * the session. A connection without a valid header within the timeout is
 * closed, and said why. */
#ifndef PROXY_ACCEPT_PROXY_H
#define PROXY_ACCEPT_PROXY_H

#include <sys/socket.h>

#include <event2/event.h>

/* The header arrived: client and local are the addresses it names (or the
 * socket's own for a LOCAL/UNKNOWN header); fd is the caller's now. */
typedef void proxy_header_ready_fn(void *ctx, int fd, const struct sockaddr *client,
				   const struct sockaddr *local);
/* No valid header: fd is closed; peer is the socket's peer, why says what
 * was wrong, printable. */
typedef void proxy_header_refused_fn(void *ctx, const struct sockaddr *peer, const char *why);

struct proxy_header_waits;

struct proxy_header_waits *proxy_header_waits_new(struct event_base *base, unsigned timeout_s,
						  proxy_header_ready_fn *ready,
						  proxy_header_refused_fn *refused, void *ctx);
/* Takes over fd. Returns 0, or -1 (out of memory: fd is closed). */
int proxy_header_wait(struct proxy_header_waits *waits, int fd, const struct sockaddr *peer,
		      socklen_t peer_len);
/* Closes the connections still waiting. */
void proxy_header_waits_free(struct proxy_header_waits **waits);

#endif
