/* A TCP endpoint as numbers: IP version, address and port. The one form
 * every layer uses, from the socket (proxy) or the packet (analyze) to the
 * pcap writer; only the timeline and the event log turn it into text. */
#ifndef CAPTURE_ENDPOINT_H
#define CAPTURE_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sockaddr;

#define CAPTURE_ENDPOINT_STR_MAX 64 /* "[v6 address]:port" */

struct capture_endpoint {
	uint8_t version;  /* 4 or 6 */
	uint8_t addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	uint16_t port;
};

/* "127.0.0.1:143" or "[::1]:143"; "?" for an endpoint not known
 * (version 0). */
void capture_endpoint_format(const struct capture_endpoint *e, char *out, size_t size);
/* The address alone, "127.0.0.1" or "::1"; "?" when not known. */
void capture_endpoint_format_host(const struct capture_endpoint *e, char *out, size_t size);
/* Reads that form back (numbers only, no names): true when it is one. */
bool capture_endpoint_parse(const char *text, struct capture_endpoint *e);
/* An AF_INET or AF_INET6 socket address; another family: version 0. */
void capture_endpoint_from_sockaddr(const struct sockaddr *sa, struct capture_endpoint *e);

/* The same host (version and address), whatever the port. Inline, as
 * two words and no call to memcmp: every packet of a capture asks. */
static inline bool capture_endpoint_same_host(const struct capture_endpoint *a,
					      const struct capture_endpoint *b)
{
	uint64_t a0, a1, b0, b1;

	memcpy(&a0, a->addr, 8);
	memcpy(&a1, a->addr + 8, 8);
	memcpy(&b0, b->addr, 8);
	memcpy(&b1, b->addr + 8, 8);
	return a->version == b->version && a0 == b0 && a1 == b1;
}

/* The same host and port. */
static inline bool capture_endpoint_equal(const struct capture_endpoint *a,
					  const struct capture_endpoint *b)
{
	return a->port == b->port && capture_endpoint_same_host(a, b);
}

#endif
