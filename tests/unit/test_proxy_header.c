/* PROXY protocol headers, v1 and v2: the addresses they name, prefixes
 * that need more bytes, and hostile ones refused whole. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "net/proxy_header.h"

static enum net_proxy_parse parse(const void *data, size_t len, struct net_proxy_header *h,
				  char *err)
{
	return net_proxy_header_parse(data, len, h, err, 160);
}

static unsigned port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
					       : ((const struct sockaddr_in *)ss)->sin_port);
}

static void addr_of(const struct sockaddr_storage *ss, char *out, size_t size)
{
	if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)size);
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)size);
}

static void test_v1(void)
{
	const char tcp4[] = "PROXY TCP4 192.0.2.7 198.51.100.1 51000 993\r\na1 LOGIN";
	const char tcp6[] = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 143\r\n";
	struct net_proxy_header h;
	char err[160], a[64];

	CHECK(parse(tcp4, strlen(tcp4), &h, err) == NET_PROXY_DONE);
	CHECK(h.version == 1 && h.proxied);
	CHECK_MSG(h.length == strlen(tcp4) - strlen("a1 LOGIN"), "length %zu", h.length);
	addr_of(&h.source, a, sizeof(a));
	CHECK_MSG(strcmp(a, "192.0.2.7") == 0 && port_of(&h.source) == 51000, "%s", a);
	addr_of(&h.destination, a, sizeof(a));
	CHECK(strcmp(a, "198.51.100.1") == 0 && port_of(&h.destination) == 993);
	CHECK(parse(tcp6, strlen(tcp6), &h, err) == NET_PROXY_DONE);
	addr_of(&h.source, a, sizeof(a));
	CHECK(h.source.ss_family == AF_INET6 && strcmp(a, "2001:db8::7") == 0);
	CHECK(port_of(&h.source) == 65535);
	CHECK(parse("PROXY UNKNOWN whatever\r\n", 24, &h, err) == NET_PROXY_DONE && !h.proxied);
	CHECK(h.length == 24);
	CHECK(parse("PROXY UNKNOWN a b c d e f g\r\n", 29, &h, err) == NET_PROXY_DONE);
	CHECK(parse("PROXY UNKNOWN\r\n", 15, &h, err) == NET_PROXY_DONE && !h.proxied);
	/* every prefix asks for more */
	for (size_t n = 0; n < strlen(tcp6); n++)
		CHECK_MSG(parse(tcp6, n, &h, err) == NET_PROXY_MORE, "prefix %zu", n);
}

static void test_v1_hostile(void)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.7 198.51.100.1 99999 993\r\n",     /* port out of range */
		"PROXY TCP4 192.0.2.7 198.51.100.1 0051000 993\r\n",   /* leading zeros */
		"PROXY TCP4 192.0.2.7 198.51.100.1 -1 993\r\n",
		"PROXY TCP4 2001:db8::7 198.51.100.1 1 993\r\n",       /* family mismatch */
		"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",             /* five fields */
		"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",         /* seven */
		"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",             /* no CR */
		"PROXY TCP4 \x1b[31m 198.51.100.1 1 2\r\n",            /* an escape */
		"a1 LOGIN alice secret\r\n",                           /* no header at all */
		"\x16\x03\x01\x02\x00\x01",                            /* a ClientHello */
	};
	char long_line[300], err[160];
	struct net_proxy_header h;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_MSG(parse(bad[i], strlen(bad[i]), &h, err) == NET_PROXY_INVALID, "case %zu", i);
		for (const char *p = err; *p != '\0'; p++)
			CHECK_MSG(*p >= 0x20 && *p < 0x7f, "an unprintable byte in the reason: %s", err);
	}
	CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 33, &h, err) == NET_PROXY_INVALID);
	memset(long_line, 'A', sizeof(long_line));
	memcpy(long_line, "PROXY TCP4 ", 11);
	CHECK(parse(long_line, sizeof(long_line), &h, err) == NET_PROXY_INVALID);
	CHECK(strstr(err, "107") != NULL);
}

static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, uint16_t len)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	if (body != NULL)
		memcpy(out + 16, body, len);
	return 16u + len;
}

static void test_v2(void)
{
	uint8_t buf[2048], body[64] = {192, 0, 2, 7, 198, 51, 100, 1, 0xC7, 0x38, 0x03, 0xE1};
	struct net_proxy_header h;
	char err[160], a[64];
	size_t n;

	/* IPv4 with a TLV after the addresses (skipped) */
	body[12] = 0x04, body[13] = 0x00, body[14] = 0x01, body[15] = 'x';
	n = v2(buf, 0x21, 0x11, body, 16);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_DONE && h.proxied && h.length == 32);
	addr_of(&h.source, a, sizeof(a));
	CHECK(strcmp(a, "192.0.2.7") == 0 && port_of(&h.source) == 51000);
	CHECK(port_of(&h.destination) == 993);
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(parse(buf, i, &h, err) == NET_PROXY_MORE, "prefix %zu", i);
	/* IPv6 */
	memset(body, 0, sizeof(body));
	body[0] = 0x20, body[1] = 0x01, body[15] = 7, body[31] = 1, body[32] = 0x01, body[35] = 143;
	n = v2(buf, 0x21, 0x21, body, 36);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_DONE && h.source.ss_family == AF_INET6);
	CHECK(port_of(&h.source) == 256 && port_of(&h.destination) == 143);
	/* LOCAL: a health check, the socket's addresses stand */
	n = v2(buf, 0x20, 0x00, NULL, 0);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_DONE && !h.proxied && h.length == 16);
	/* hostile */
	n = v2(buf, 0x31, 0x11, body, 12);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_INVALID); /* version 3 */
	n = v2(buf, 0x22, 0x11, body, 12);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_INVALID); /* command 2 */
	n = v2(buf, 0x21, 0x11, body, 8);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_INVALID); /* too short for IPv4 */
	n = v2(buf, 0x21, 0x21, body, 20);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_INVALID); /* too short for IPv6 */
	n = v2(buf, 0x21, 0x31, body, 12);
	CHECK(parse(buf, n, &h, err) == NET_PROXY_INVALID); /* AF_UNIX */
	v2(buf, 0x21, 0x11, NULL, 0xFFFF);
	CHECK(parse(buf, 16, &h, err) == NET_PROXY_INVALID && strstr(err, "1024") != NULL);
}

/* What --send-proxy writes reads back as the same addresses. */
static void test_build_round_trip(void)
{
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(51000)};
	struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(993)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
	uint8_t buf[NET_PROXY_HEADER_MAX];
	struct net_proxy_header h;
	char err[160], a[64];
	size_t n;

	inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
	inet_pton(AF_INET, "198.51.100.1", &d4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr);
	for (int version = 1; version <= 2; version++) {
		n = net_proxy_header_build(version, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf,
					   sizeof(buf));
		CHECK(n > 0 && parse(buf, n, &h, err) == NET_PROXY_DONE && h.length == n);
		CHECK(h.version == version && h.proxied);
		addr_of(&h.source, a, sizeof(a));
		CHECK(strcmp(a, "192.0.2.7") == 0 && port_of(&h.source) == 51000);
		CHECK(port_of(&h.destination) == 993);
		/* two families: no addresses to name */
		n = net_proxy_header_build(version, (struct sockaddr *)&s6, (struct sockaddr *)&d4, buf,
					   sizeof(buf));
		CHECK(n > 0 && parse(buf, n, &h, err) == NET_PROXY_DONE && !h.proxied);
	}
}

int main(void)
{
	test_build_round_trip();
	test_v1();
	test_v1_hostile();
	test_v2();
	return check_finish("proxy_header");
}
