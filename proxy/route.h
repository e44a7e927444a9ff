/* Where sessions are relayed: the --upstream (the default route), each
 * --route NAME=HOST:PORT[,MODE] chosen by the name a client asks for in
 * its TLS ClientHello, or with --transparent the address a client had
 * connected to before a REDIRECT brought it here. */
#ifndef PROXY_ROUTE_H
#define PROXY_ROUTE_H

#include <stdbool.h>
#include <sys/socket.h>

#include "capture/sink.h"
#include "proxy/addr.h"

#define PROXY_ROUTE_ADDR_MAX 8 /* addresses of one upstream tried in turn */
#define PROXY_ROUTES_MAX 64
#define PROXY_ROUTE_NAME_MAX 253 /* a DNS name */

enum proxy_tls_mode {
	PROXY_TLS_NONE,
	PROXY_TLS_IMPLICIT, /* TLS from the first byte (port 993) */
	PROXY_TLS_STARTTLS, /* plain greeting, then STARTTLS */
};

/* --route as given: the server name clients ask for ("*.example.com"
 * matches one label or more in front of example.com), where it goes,
 * and how. */
struct proxy_route_spec {
	char name[PROXY_ROUTE_NAME_MAX + 1];
	struct proxy_hostport upstream;
	enum proxy_tls_mode tls;
};

struct proxy_route_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

struct proxy_route {
	const char *name;       /* shown in every row; "default" for --upstream */
	const char *check_name; /* the name the upstream certificate must carry
				   (and the SNI sent, unless an address) */
	enum proxy_tls_mode tls;
	char str[CAPTURE_ADDR_MAX]; /* the first address, for messages */
	unsigned addr_count;
	struct proxy_route_addr addr[]; /* resolved, tried in turn */
};

/* Parses NAME=HOST:PORT[,implicit|starttls|none] (the mode by default:
 * implicit for port 993, else none). Returns 0, or -1 with err. */
int proxy_route_spec_parse(const char *text, struct proxy_route_spec *out, char *err,
			   size_t errlen);

/* Resolves host:port into a route named name that checks check_name.
 * Returns NULL with err filled. */
struct proxy_route *proxy_route_resolve(const char *name, const struct proxy_hostport *hp,
					enum proxy_tls_mode tls, const char *check_name,
					char *err, size_t errlen);
/* One address (--transparent's original destination), checked as the
 * address itself. NULL when out of memory. */
struct proxy_route *proxy_route_of_addr(const struct sockaddr *sa, socklen_t len,
					enum proxy_tls_mode tls);
void proxy_route_free(struct proxy_route **route);

/* Whether a server name (as a ClientHello gives it) is what a route's
 * name asks for: equal ignoring case, or under a "*." name. */
bool proxy_route_name_matches(const char *pattern, const char *sni);

#endif
