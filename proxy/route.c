#include "proxy/route.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A name a route may carry: a DNS name, or "*." and one. Names end up in
 * rows, labels and file names, so nothing else is let in. */
static bool route_name_ok(const char *name)
{
	const char *p = name;

	if (strncmp(p, "*.", 2) == 0)
		p += 2;
	if (*p == '\0' || *p == '.' || strlen(name) > PROXY_ROUTE_NAME_MAX)
		return false;
	for (; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '.' || *p == '_'))
			return false;
	return name[strlen(name) - 1] != '.';
}

int proxy_route_spec_parse(const char *text, struct proxy_route_spec *out, char *err,
			   size_t errlen)
{
	const char *eq = strchr(text, '='), *comma;
	char where[PROXY_HOST_MAX + 16], shown[120];
	size_t len;

	/* errors are escaped where they are shown */
	memset(out, 0, sizeof(*out));
	snprintf(shown, sizeof(shown), "%s", text);
	if (eq == NULL || eq == text || (size_t)(eq - text) > PROXY_ROUTE_NAME_MAX) {
		snprintf(err, errlen, "takes NAME=HOST:PORT[,implicit|starttls|none], not '%s'",
			 shown);
		return -1;
	}
	memcpy(out->name, text, (size_t)(eq - text));
	if (!route_name_ok(out->name)) {
		snprintf(err, errlen, "'%s': NAME is the server name clients ask for (letters, "
			 "digits, '-', '.', or '*.' in front)", shown);
		return -1;
	}
	comma = strchr(eq + 1, ',');
	len = comma != NULL ? (size_t)(comma - eq - 1) : strlen(eq + 1);
	if (len >= sizeof(where)) {
		snprintf(err, errlen, "'%s': the host is too long", shown);
		return -1;
	}
	memcpy(where, eq + 1, len);
	where[len] = '\0';
	if (proxy_hostport_parse(where, &out->upstream, err, errlen) < 0)
		return -1;
	if (out->upstream.port == 0) {
		snprintf(err, errlen, "'%s' needs a port from 1 to 65535", shown);
		return -1;
	}
	out->tls = out->upstream.port == 993 ? PROXY_TLS_IMPLICIT : PROXY_TLS_NONE;
	if (comma == NULL)
		return 0;
	if (strcmp(comma + 1, "implicit") == 0)
		out->tls = PROXY_TLS_IMPLICIT;
	else if (strcmp(comma + 1, "starttls") == 0)
		out->tls = PROXY_TLS_STARTTLS;
	else if (strcmp(comma + 1, "none") == 0)
		out->tls = PROXY_TLS_NONE;
	else {
		snprintf(err, errlen, "'%s': the mode after ',' is implicit, starttls or none", shown);
		return -1;
	}
	return 0;
}

static struct proxy_route *route_alloc(unsigned addrs, const char *name, const char *check_name)
{
	size_t nlen = name != NULL ? strlen(name) + 1 : 0;
	size_t clen = check_name != NULL ? strlen(check_name) + 1 : 0;
	struct proxy_route *r = calloc(1, sizeof(*r) + addrs * sizeof(r->addr[0]) + nlen + clen);
	char *text;

	if (r == NULL)
		return NULL;
	/* the names live right behind the addresses: one allocation */
	text = (char *)&r->addr[addrs];
	if (name != NULL) {
		memcpy(text, name, nlen);
		r->name = text;
		text += nlen;
	}
	if (check_name != NULL) {
		memcpy(text, check_name, clen);
		r->check_name = text;
	}
	return r;
}

struct proxy_route *proxy_route_resolve(const char *name, const struct proxy_hostport *hp,
					enum proxy_tls_mode tls, const char *check_name,
					char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	struct proxy_route *r;
	unsigned n = 0;

	if (proxy_hostport_resolve(hp, false, &res, err, errlen) < 0)
		return NULL;
	for (ai = res; ai != NULL && n < PROXY_ROUTE_ADDR_MAX; ai = ai->ai_next)
		n++;
	r = route_alloc(n, name, check_name != NULL ? check_name : hp->host);
	if (r == NULL) {
		freeaddrinfo(res);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (ai = res; ai != NULL && r->addr_count < n; ai = ai->ai_next) {
		memcpy(&r->addr[r->addr_count].sa, ai->ai_addr, ai->ai_addrlen);
		r->addr[r->addr_count++].len = (socklen_t)ai->ai_addrlen;
	}
	freeaddrinfo(res);
	r->tls = tls;
	proxy_sockaddr_str((struct sockaddr *)&r->addr[0].sa, r->str, sizeof(r->str));
	return r;
}

struct proxy_route *proxy_route_of_addr(const struct sockaddr *sa, socklen_t len,
					enum proxy_tls_mode tls)
{
	char str[CAPTURE_ADDR_MAX], host[CAPTURE_ADDR_MAX];
	struct capture_endpoint e;
	struct proxy_route *r;

	capture_endpoint_from_sockaddr(sa, &e);
	capture_endpoint_format(&e, str, sizeof(str));
	/* the certificate is checked for the address, without port or brackets */
	capture_endpoint_format_host(&e, host, sizeof(host));
	r = route_alloc(1, NULL, host);
	if (r == NULL || len > sizeof(r->addr[0].sa)) {
		free(r);
		return NULL;
	}
	memcpy(&r->addr[0].sa, sa, len);
	r->addr[0].len = len;
	r->addr_count = 1;
	r->tls = tls;
	memcpy(r->str, str, sizeof(str));
	return r;
}

void proxy_route_free(struct proxy_route **route)
{
	free(*route);
	*route = NULL;
}

bool proxy_route_name_matches(const char *pattern, const char *sni)
{
	size_t plen, slen;

	if (sni == NULL || sni[0] == '\0')
		return false;
	if (strncmp(pattern, "*.", 2) != 0)
		return strcasecmp(pattern, sni) == 0;
	/* "*.example.com": a name ending in ".example.com", with something in front */
	plen = strlen(pattern + 1);
	slen = strlen(sni);
	return slen > plen && strcasecmp(sni + slen - plen, pattern + 1) == 0;
}
