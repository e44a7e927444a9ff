/* The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
 * 2) that a load balancer sends ahead of a connection's first byte to say
 * who the client is. Parsing only: the bytes come from the socket's
 * caller. Everything in a header is untrusted: a malformed one is refused
 * whole, with the reason. */
#ifndef NET_PROXY_HEADER_H
#define NET_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* No header is longer: v1's limit is 107 bytes; v2's addresses take at
 * most 216, and TLVs (which are skipped) are allowed up to this. */
#define NET_PROXY_HEADER_MAX 1024

struct net_proxy_header {
	int version; /* 1 or 2 */
	/* false: a LOCAL (v2) or UNKNOWN (v1) header, a health check or the
	 * balancer's own connection: the socket's addresses stand */
	bool proxied;
	struct sockaddr_storage source;      /* the client */
	struct sockaddr_storage destination; /* where the client connected */
	size_t length;                       /* bytes of the header, to consume */
};

enum net_proxy_parse {
	NET_PROXY_MORE = 0,     /* a prefix of a header: read more */
	NET_PROXY_DONE = 1,     /* *header filled */
	NET_PROXY_INVALID = -1, /* not a header, or a malformed one: err says why */
};

/* Parses the first len bytes read from a connection. */
enum net_proxy_parse net_proxy_header_parse(const uint8_t *data, size_t len,
					    struct net_proxy_header *header, char *err,
					    size_t errlen);

/* Writes the header naming source (the client) and destination (where it
 * connected) in version 1 or 2 into out (NET_PROXY_HEADER_MAX will do).
 * Addresses of two families, or neither IPv4 nor IPv6: v1 "UNKNOWN", v2
 * LOCAL. Returns its length. */
size_t net_proxy_header_build(int version, const struct sockaddr *source,
			      const struct sockaddr *destination, uint8_t *out, size_t size);

#endif
