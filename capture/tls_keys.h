/* The TLS key schedule and record protection of the cipher suites
 * analyze decrypts: AES-GCM and ChaCha20-Poly1305, TLS 1.2 (keys from the
 * master secret through the PRF) and TLS 1.3 (keys from a traffic secret
 * through HKDF-Expand-Label). All cryptography is OpenSSL's (EVP_KDF,
 * EVP_CIPHER); this only says which bytes go where (RFC 5246, 5288,
 * 7905, 8446). */
#ifndef CAPTURE_TLS_KEYS_H
#define CAPTURE_TLS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/keylog.h"

enum capture_tls_aead {
	CAPTURE_TLS_AES_128_GCM,
	CAPTURE_TLS_AES_256_GCM,
	CAPTURE_TLS_CHACHA20_POLY1305,
};

struct capture_tls_suite {
	uint16_t id;
	const char *name;   /* IANA's */
	enum capture_tls_aead aead;
	const char *digest; /* the PRF's or HKDF's: "SHA256", "SHA384" */
	size_t hash_len;
	bool tls13;
};

#define CAPTURE_TLS_TAG 16
#define CAPTURE_TLS_RECORD_MAX (16384u + 256u) /* a protected record's payload */

/* One direction's record protection. */
struct capture_tls_keys {
	const struct capture_tls_suite *suite;
	uint8_t key[32];
	uint8_t iv[12]; /* TLS 1.2 GCM: the 4-byte salt; else the 12-byte IV */
	uint64_t seq;   /* records opened so far under these keys */
	struct capture_keylog_secret secret; /* TLS 1.3: the traffic secret (KeyUpdate) */
};

/* The suite of id, or NULL when analyze does not decrypt it. */
const struct capture_tls_suite *capture_tls_suite_find(uint16_t id);

/* TLS 1.2: both directions' keys from the master secret. Returns 0, or
 * -1 when OpenSSL fails. */
int capture_tls12_keys(const struct capture_tls_suite *suite, const uint8_t *master, size_t len,
		       const uint8_t client_random[32], const uint8_t server_random[32],
		       struct capture_tls_keys *client, struct capture_tls_keys *server);

/* TLS 1.3: one direction's keys from its traffic secret (sequence 0). */
int capture_tls13_keys(const struct capture_tls_suite *suite,
		       const struct capture_keylog_secret *secret, struct capture_tls_keys *keys);

/* TLS 1.3 KeyUpdate: the next traffic secret and its keys. */
int capture_tls13_update(struct capture_tls_keys *keys);

/* Opens one protected record (header: its 5 bytes as on the wire;
 * payload: what follows them). The plaintext goes to out (room for len
 * bytes); TLS 1.3's inner content type is not removed here. Returns the
 * plaintext's length, or -1 when the record does not authenticate or is
 * too short: then out holds nothing to use. The sequence number moves
 * on only on success. */
long capture_tls_open(struct capture_tls_keys *keys, const uint8_t header[5],
		      const uint8_t *payload, size_t len, uint8_t *out);

#endif
