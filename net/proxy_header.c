#include "net/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define V1_MAX 107 /* "PROXY TCP6 " and two full IPv6 addresses and ports, CRLF */

static const uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static enum net_proxy_parse invalid(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	return NET_PROXY_INVALID;
}

/* A decimal port, 0-65535, no sign, no leading zero but "0". */
static bool parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (*s == '\0' || strlen(s) > 5 || (s[0] == '0' && s[1] != '\0'))
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

static bool v1_address(int family, const char *addr, const char *port,
		       struct sockaddr_storage *out)
{
	uint16_t p;

	memset(out, 0, sizeof(*out));
	if (!parse_port(port, &p))
		return false;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)out;

		in->sin_family = AF_INET;
		in->sin_port = htons(p);
		return inet_pton(AF_INET, addr, &in->sin_addr) == 1;
	}
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(p);
		return inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1;
	}
}

static enum net_proxy_parse parse_v1(const uint8_t *data, size_t len,
				     struct net_proxy_header *h, char *err, size_t errlen)
{
	char line[V1_MAX + 1], *field[6], *save = NULL;
	const uint8_t *end = memchr(data, '\n', len < V1_MAX ? len : V1_MAX);
	size_t n, count = 0;
	int family;

	if (end == NULL)
		return len >= V1_MAX ? invalid(err, errlen, "a version 1 header longer than 107 "
						     "bytes")
				     : NET_PROXY_MORE;
	n = (size_t)(end - data) + 1;
	if (n < 2 || data[n - 2] != '\r')
		return invalid(err, errlen, "a version 1 header that does not end in CRLF");
	memcpy(line, data, n - 2);
	line[n - 2] = '\0';
	if (strlen(line) != n - 2)
		return invalid(err, errlen, "a NUL byte in a version 1 header");
	memset(h, 0, sizeof(*h));
	h->version = 1;
	h->length = n;
	if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' '))
		return NET_PROXY_DONE; /* the rest is to be ignored */
	for (char *tok = strtok_r(line, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if (count == 6)
			return invalid(err, errlen, "more than six fields in a version 1 header");
		field[count++] = tok;
	}
	if (count != 6)
		return invalid(err, errlen, "a version 1 header without its six fields");
	if (strcmp(field[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(field[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return invalid(err, errlen, "a version 1 protocol other than TCP4, TCP6 or UNKNOWN");
	if (!v1_address(family, field[2], field[4], &h->source) ||
	    !v1_address(family, field[3], field[5], &h->destination))
		return invalid(err, errlen, "a version 1 address or port that does not parse");
	h->proxied = true;
	return NET_PROXY_DONE;
}

static enum net_proxy_parse parse_v2(const uint8_t *data, size_t len,
				     struct net_proxy_header *h, char *err, size_t errlen)
{
	size_t body, total;
	uint8_t command, family;

	if (len < 16)
		return NET_PROXY_MORE;
	if ((data[12] >> 4) != 2)
		return invalid(err, errlen, "a version 2 signature with another version number");
	command = data[12] & 0x0F;
	family = data[13];
	body = ((size_t)data[14] << 8) | data[15];
	total = 16 + body;
	if (total > NET_PROXY_HEADER_MAX)
		return invalid(err, errlen, "a version 2 header longer than 1024 bytes");
	if (len < total)
		return NET_PROXY_MORE;
	memset(h, 0, sizeof(*h));
	h->version = 2;
	h->length = total;
	if (command == 0x0)
		return NET_PROXY_DONE; /* LOCAL */
	if (command != 0x1)
		return invalid(err, errlen, "a version 2 command other than LOCAL or PROXY");
	if (family == 0x11) { /* TCP over IPv4 */
		struct sockaddr_in *s = (struct sockaddr_in *)&h->source;
		struct sockaddr_in *d = (struct sockaddr_in *)&h->destination;

		if (body < 12)
			return invalid(err, errlen, "a version 2 IPv4 header too short for its addresses");
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, data + 16, 4);
		memcpy(&d->sin_addr, data + 20, 4);
		memcpy(&s->sin_port, data + 24, 2);
		memcpy(&d->sin_port, data + 26, 2);
	} else if (family == 0x21) { /* TCP over IPv6 */
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->source;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->destination;

		if (body < 36)
			return invalid(err, errlen, "a version 2 IPv6 header too short for its addresses");
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, data + 16, 16);
		memcpy(&d->sin6_addr, data + 32, 16);
		memcpy(&s->sin6_port, data + 48, 2);
		memcpy(&d->sin6_port, data + 50, 2);
	} else if (family == 0x00) {
		return NET_PROXY_DONE; /* UNSPEC: as LOCAL */
	} else {
		return invalid(err, errlen, "a version 2 address family other than TCP over "
				       "IPv4 or IPv6");
	}
	h->proxied = true;
	return NET_PROXY_DONE;
}

enum net_proxy_parse net_proxy_header_parse(const uint8_t *data, size_t len,
					    struct net_proxy_header *header, char *err,
					    size_t errlen)
{
	size_t n = len < sizeof(v2_signature) ? len : sizeof(v2_signature);

	if (memcmp(data, v2_signature, n) == 0)
		return len < sizeof(v2_signature) ? NET_PROXY_MORE
						  : parse_v2(data, len, header, err, errlen);
	n = len < 6 ? len : 6;
	if (memcmp(data, "PROXY ", n) == 0)
		return len < 6 ? NET_PROXY_MORE : parse_v1(data, len, header, err, errlen);
	return invalid(err, errlen, "no PROXY protocol header (the connection did not come "
			       "through a balancer that sends one)");
}

static size_t build_v1(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
		       size_t size)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	unsigned sp, dp;
	int n;

	if (src->sa_family != dst->sa_family ||
	    (src->sa_family != AF_INET && src->sa_family != AF_INET6)) {
		n = snprintf((char *)out, size, "PROXY UNKNOWN\r\n");
	} else if (src->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)src, *d4 = (const void *)dst;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		inet_ntop(AF_INET, &d4->sin_addr, b, sizeof(b));
		sp = ntohs(s4->sin_port), dp = ntohs(d4->sin_port);
		n = snprintf((char *)out, size, "PROXY TCP4 %s %s %u %u\r\n", a, b, sp, dp);
	} else {
		const struct sockaddr_in6 *s6 = (const void *)src, *d6 = (const void *)dst;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		inet_ntop(AF_INET6, &d6->sin6_addr, b, sizeof(b));
		sp = ntohs(s6->sin6_port), dp = ntohs(d6->sin6_port);
		n = snprintf((char *)out, size, "PROXY TCP6 %s %s %u %u\r\n", a, b, sp, dp);
	}
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static size_t build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
		       size_t size)
{
	size_t body = 0;

	if (size < 16 + 36)
		return 0;
	memcpy(out, v2_signature, sizeof(v2_signature));
	out[12] = 0x21; /* version 2, PROXY */
	out[13] = 0x00;
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)src, *d4 = (const void *)dst;

		out[13] = 0x11;
		memcpy(out + 16, &s4->sin_addr, 4);
		memcpy(out + 20, &d4->sin_addr, 4);
		memcpy(out + 24, &s4->sin_port, 2);
		memcpy(out + 26, &d4->sin_port, 2);
		body = 12;
	} else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)src, *d6 = (const void *)dst;

		out[13] = 0x21;
		memcpy(out + 16, &s6->sin6_addr, 16);
		memcpy(out + 32, &d6->sin6_addr, 16);
		memcpy(out + 48, &s6->sin6_port, 2);
		memcpy(out + 50, &d6->sin6_port, 2);
		body = 36;
	} else {
		out[12] = 0x20; /* LOCAL */
	}
	out[14] = 0;
	out[15] = (uint8_t)body;
	return 16 + body;
}

size_t net_proxy_header_build(int version, const struct sockaddr *source,
			      const struct sockaddr *destination, uint8_t *out, size_t size)
{
	return version == 1 ? build_v1(source, destination, out, size)
			    : build_v2(source, destination, out, size);
}
