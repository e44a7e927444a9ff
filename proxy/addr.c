#include "proxy/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/endpoint.h"

int proxy_hostport_parse(const char *text, struct proxy_hostport *out, char *err, size_t errlen)
{
	const char *colon, *host = text;
	size_t host_len;
	char *end;
	unsigned long port;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "'%s' is not [ADDRESS]:PORT", text);
			return -1;
		}
		host = text + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "'%s' has no port: write HOST:PORT", text);
			return -1;
		}
		if (strchr(text, ':') != colon) {
			snprintf(err, errlen, "'%s': write an IPv6 address as [ADDRESS]:PORT", text);
			return -1;
		}
		host_len = (size_t)(colon - text);
	}
	if (host_len == 0 || host_len >= sizeof(out->host)) {
		snprintf(err, errlen, "'%s' has %s host", text, host_len ? "too long a" : "no");
		return -1;
	}
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port > 65535 || colon[1] == '-' ||
	    colon[1] == '+') {
		snprintf(err, errlen, "'%s' has a bad port: use a number from 0 to 65535", text);
		return -1;
	}
	memcpy(out->host, host, host_len);
	out->host[host_len] = '\0';
	out->port = (unsigned)port;
	return 0;
}

char *proxy_sockaddr_str(const struct sockaddr *sa, char *out, size_t size)
{
	struct capture_endpoint e;

	capture_endpoint_from_sockaddr(sa, &e);
	if (e.version == 0)
		snprintf(out, size, "(family %d)", sa->sa_family);
	else
		capture_endpoint_format(&e, out, size);
	return out;
}

int proxy_sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return 0;
}

int proxy_hostport_resolve(const struct proxy_hostport *hp, bool passive, struct addrinfo **res,
			   char *err, size_t errlen)
{
	struct addrinfo hints = {0};
	char port[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG | (passive ? AI_PASSIVE : 0);
	snprintf(port, sizeof(port), "%u", hp->port);
	rc = getaddrinfo(hp->host, port, &hints, res);
	if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME || rc == EAI_FAIL) {
		/* AI_ADDRCONFIG hides loopback-only families on hosts without
		 * other interfaces; ask again without it */
		hints.ai_flags &= ~AI_ADDRCONFIG;
		rc = getaddrinfo(hp->host, port, &hints, res);
	}
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve '%s': %s", hp->host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	return 0;
}
