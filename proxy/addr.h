/* Network addresses as users write them ("host:port", "[v6]:port") and as
 * the timeline shows them. */
#ifndef PROXY_ADDR_H
#define PROXY_ADDR_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define PROXY_HOST_MAX 256

struct proxy_hostport {
	char host[PROXY_HOST_MAX];
	unsigned port;
};

/* Parses "host:port" or "[v6]:port". Returns 0, or -1 with err filled. */
int proxy_hostport_parse(const char *text, struct proxy_hostport *out, char *err, size_t errlen);

/* Every address of hp (passive: to listen on). Returns 0, or -1 with err
 * filled; free *res with freeaddrinfo. */
int proxy_hostport_resolve(const struct proxy_hostport *hp, bool passive, struct addrinfo **res,
			   char *err, size_t errlen);

/* "127.0.0.1:143" or "[::1]:143". Returns out. */
char *proxy_sockaddr_str(const struct sockaddr *sa, char *out, size_t size);

/* True for 127.0.0.0/8 and ::1. */
int proxy_sockaddr_is_loopback(const struct sockaddr *sa);

#endif
