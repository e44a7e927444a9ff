#include "capture/tls_hello.h"

#include <string.h>

/* RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest. */
static const uint8_t retry_random[32] = {
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

#define EXT_SUPPORTED_VERSIONS 43

#define EXT_SERVER_NAME 0

/* A length-prefixed field of n bytes (1 or 2) at *at: its length, with
 * *at moved past the prefix; false when it overruns len. */
static bool vector(const uint8_t *p, size_t len, size_t *at, size_t n, size_t *out)
{
	if (len - *at < n)
		return false;
	*out = n == 1 ? p[*at] : (size_t)(p[*at] << 8 | p[*at + 1]);
	*at += n;
	return *out <= len - *at;
}

/* server_name's first host_name entry (RFC 6066 3). */
static void server_name(const uint8_t *p, size_t len, char *sni)
{
	size_t at = 0, list, name;

	if (!vector(p, len, &at, 2, &list) || list < 3 || p[at] != 0)
		return;
	at++;
	if (!vector(p, len, &at, 2, &name) || name >= CAPTURE_TLS_SNI_MAX)
		return;
	for (size_t i = 0; i < name; i++) {
		uint8_t c = p[at + i];
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';

		sni[i] = plain ? (char)c : '?';
	}
	sni[name] = '\0';
}

bool capture_tls_client_hello(const uint8_t *body, size_t len, uint8_t random[32],
			      char sni[CAPTURE_TLS_SNI_MAX])
{
	static const size_t skip[] = {1, 2, 1}; /* their length prefixes */
	size_t at = 34, n;

	sni[0] = '\0';
	/* legacy_version (2), random (32) */
	if (len < 34 || body[0] != 3)
		return false;
	memcpy(random, body + 2, 32);
	/* session id, cipher suites, compression methods, then extensions;
	 * a hello cut short still names its session */
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
		if (!vector(body, len, &at, skip[i], &n))
			return true;
		at += n;
	}
	if (!vector(body, len, &at, 2, &n))
		return true;
	for (size_t end = at + n; end - at >= 4;) {
		size_t type = (size_t)(body[at] << 8 | body[at + 1]), ext;

		at += 2;
		if (!vector(body, end, &at, 2, &ext))
			break;
		if (type == EXT_SERVER_NAME)
			server_name(body + at, ext, sni);
		at += ext;
	}
	return true;
}

/* The extensions of a ServerHello: the selected version, if any. */
static bool extensions(const uint8_t *p, size_t len, uint16_t *version)
{
	while (len >= 4) {
		uint16_t type = (uint16_t)(p[0] << 8 | p[1]);
		size_t n = (size_t)(p[2] << 8 | p[3]);

		if (n > len - 4)
			return false;
		if (type == EXT_SUPPORTED_VERSIONS && n == 2)
			*version = (uint16_t)(p[4] << 8 | p[5]);
		p += 4 + n;
		len -= 4 + n;
	}
	return len == 0;
}

bool capture_tls_server_hello(const uint8_t *body, size_t len, struct capture_tls_server_hello *out)
{
	size_t at, session_id, ext_len;

	/* legacy_version (2), random (32), session id (1 + n), suite (2), compression (1) */
	if (len < 35 || body[0] != 3)
		return false;
	memset(out, 0, sizeof(*out));
	out->version = (uint16_t)(body[0] << 8 | body[1]);
	memcpy(out->random, body + 2, 32);
	out->retry = memcmp(out->random, retry_random, 32) == 0;
	session_id = body[34];
	at = 35 + session_id;
	if (session_id > 32 || len < at + 3)
		return false;
	out->suite = (uint16_t)(body[at] << 8 | body[at + 1]);
	at += 3;
	if (len == at)
		return true; /* no extensions */
	if (len < at + 2)
		return false;
	ext_len = (size_t)(body[at] << 8 | body[at + 1]);
	if (ext_len != len - at - 2)
		return false;
	return extensions(body + at + 2, ext_len, &out->version);
}
