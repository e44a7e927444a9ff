/* The two handshake messages analyze reads in the clear: the
 * ClientHello (its random names the session in a key log) and the
 * ServerHello (its random, the cipher suite, and the version, which for
 * TLS 1.3 is in the supported_versions extension). Bodies without the
 * 4-byte handshake header; any bytes are safe. */
#ifndef CAPTURE_TLS_HELLO_H
#define CAPTURE_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAPTURE_TLS_CLIENT_HELLO 1
#define CAPTURE_TLS_SERVER_HELLO 2
#define CAPTURE_TLS_FINISHED 20
#define CAPTURE_TLS_KEY_UPDATE 24

struct capture_tls_server_hello {
	uint8_t random[32];
	uint16_t version; /* 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	uint16_t suite;
	bool retry;       /* a HelloRetryRequest: another ClientHello follows */
};

#define CAPTURE_TLS_SNI_MAX 256

/* false when body is no ClientHello. sni gets the server name the client
 * asked for, "" for none; bytes other than letters, digits, '.', '-' and
 * '_' become '?'. */
bool capture_tls_client_hello(const uint8_t *body, size_t len, uint8_t random[32],
			      char sni[CAPTURE_TLS_SNI_MAX]);
bool capture_tls_server_hello(const uint8_t *body, size_t len,
			      struct capture_tls_server_hello *out);

#endif
