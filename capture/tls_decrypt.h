/* One TLS connection of a capture, decrypted with the secrets of a key
 * log: each direction's bytes (as reassembled, in order) go in, the
 * application data comes out. A record layer reader per direction
 * (records split across segments or packed together, lengths checked),
 * the hellos read in the clear for the client random, the version and
 * the cipher suite, then TLS 1.2 (AES-GCM, ChaCha20-Poly1305 after
 * ChangeCipherSpec) or TLS 1.3 (the encrypted handshake under the
 * handshake secrets, or skipped without them; application secrets after
 * each side's Finished; KeyUpdate).
 *
 * Whatever goes wrong stops the decryption for good, with a reason:
 * missing secrets, a suite or version it does not decrypt, a record that
 * does not authenticate, bytes missing from the capture, bytes that are
 * no TLS. Only authenticated plaintext ever comes out. */
#ifndef CAPTURE_TLS_DECRYPT_H
#define CAPTURE_TLS_DECRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/keylog.h"
#include "imap/types.h"

enum capture_tls_state {
	CAPTURE_TLS_HELLO,       /* the hellos are not both read yet */
	CAPTURE_TLS_DECRYPTING,  /* the secrets are there: application data comes out */
	CAPTURE_TLS_NO_SECRETS,  /* the key log holds none for this session */
	CAPTURE_TLS_UNSUPPORTED, /* a version or cipher suite not decrypted here */
	CAPTURE_TLS_FAILED,      /* undecryptable from here on: see why */
};

/* Authenticated application data of dir; valid during the call only. */
typedef void capture_tls_plain_cb(void *ctx, enum imap_dir dir, const uint8_t *data, size_t len);

struct capture_tls_decrypt;

/* keys (NULL: none) must outlive the decryptor. NULL when out of memory. */
struct capture_tls_decrypt *capture_tls_decrypt_new(const struct capture_keylog *keys,
						    capture_tls_plain_cb *cb, void *ctx);
void capture_tls_decrypt_free(struct capture_tls_decrypt **d);

/* The next bytes of dir's stream. Returns the state after them. */
enum capture_tls_state capture_tls_decrypt_feed(struct capture_tls_decrypt *d, enum imap_dir dir,
						const uint8_t *data, size_t len);

/* gap bytes of dir are not in the capture: the stream cannot be followed. */
void capture_tls_decrypt_gap(struct capture_tls_decrypt *d, enum imap_dir dir, uint64_t gap);

/* Bytes of dir's record still incomplete: at the end, what the capture
 * cut off (or the connection did). */
size_t capture_tls_decrypt_pending(const struct capture_tls_decrypt *d, enum imap_dir dir);

enum capture_tls_state capture_tls_decrypt_state(const struct capture_tls_decrypt *d);
/* Why the decryption stopped (states after DECRYPTING); "" before. */
const char *capture_tls_decrypt_why(const struct capture_tls_decrypt *d);
/* The ClientHello's random in hex ("" before it was read). */
const char *capture_tls_decrypt_random(const struct capture_tls_decrypt *d);
/* The server name the ClientHello asked for (letters, digits, '.', '-',
 * '_'; others as '?'); "" for none. */
const char *capture_tls_decrypt_sni(const struct capture_tls_decrypt *d);
/* "TLSv1.2", "TLSv1.3" and the suite's name once the ServerHello was read;
 * "" before. */
const char *capture_tls_decrypt_version(const struct capture_tls_decrypt *d);
const char *capture_tls_decrypt_cipher(const struct capture_tls_decrypt *d);

/* "hello", "decrypting", "no-secrets", "unsupported", "failed";
 * "tls-state?" for unknown values. */
const char *capture_tls_state_str(enum capture_tls_state state);

#endif
