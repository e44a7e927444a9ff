#include "capture/endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void capture_endpoint_format_host(const struct capture_endpoint *e, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (e->version != 4 && e->version != 6)
		snprintf(out, size, "?");
	else
		snprintf(out, size, "%s",
			 inet_ntop(e->version == 6 ? AF_INET6 : AF_INET, e->addr, ip, sizeof(ip)));
}

void capture_endpoint_format(const struct capture_endpoint *e, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (e->version != 4 && e->version != 6) {
		snprintf(out, size, "?");
		return;
	}
	capture_endpoint_format_host(e, ip, sizeof(ip));
	snprintf(out, size, e->version == 6 ? "[%s]:%u" : "%s:%u", ip, e->port);
}

bool capture_endpoint_parse(const char *text, struct capture_endpoint *e)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon, *start = text;
	unsigned long port;
	size_t n;
	char *end;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return false;
		start = text + 1;
		n = (size_t)(close - start);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return false;
		n = (size_t)(colon - text);
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, start, n);
	host[n] = '\0';
	memset(e, 0, sizeof(*e));
	if (text[0] != '[' && inet_pton(AF_INET, host, e->addr) == 1)
		e->version = 4;
	else if (text[0] == '[' && inet_pton(AF_INET6, host, e->addr) == 1)
		e->version = 6;
	else
		return false;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || port > 65535)
		return false;
	e->port = (uint16_t)port;
	return true;
}

void capture_endpoint_from_sockaddr(const struct sockaddr *sa, struct capture_endpoint *e)
{
	memset(e, 0, sizeof(*e));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		e->version = 4;
		memcpy(e->addr, &in->sin_addr, 4);
		e->port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		e->version = 6;
		memcpy(e->addr, &in6->sin6_addr, 16);
		e->port = ntohs(in6->sin6_port);
	}
}
