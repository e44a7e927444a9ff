#include "capture/tls_hello.h"

#include <string.h>

/* RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest. */
static const uint8_t retry_random[32] = {
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

#define EXT_SUPPORTED_VERSIONS 43

bool capture_tls_client_hello(const uint8_t *body, size_t len, uint8_t random[32])
{
	/* legacy_version (2), random (32) */
	if (len < 34 || body[0] != 3)
		return false;
	memcpy(random, body + 2, 32);
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
