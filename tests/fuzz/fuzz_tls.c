/* libFuzzer target: the TLS decryption of analyze --keylog. The first
 * byte picks what the rest is:
 *   0: key log text;
 *   1: a pcapng whose Decryption Secrets Blocks are read, from memory and
 *      from a file, which must agree;
 *   2: a key log's length (2 bytes, big-endian), the key log, then a TLS
 *      connection as chunks: a byte (bit 0: 0 client, 1 server; the rest:
 *      the chunk's length less 1) and the chunk's bytes.
 * Any input ends with a state; plaintext comes out only while decrypting,
 * and a stop always says why. */
#include <stdlib.h>
#include <string.h>

#include "capture/keylog.h"
#include "capture/pcapng_secrets.h"
#include "capture/tls_decrypt.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	struct capture_tls_decrypt *d;
	size_t plain;
	unsigned sum;
};

static void on_plain(void *ctx, enum imap_dir dir, const uint8_t *p, size_t len)
{
	struct seen *s = ctx;

	if (capture_tls_decrypt_state(s->d) != CAPTURE_TLS_DECRYPTING || len == 0 ||
	    (dir != IMAP_C2S && dir != IMAP_S2C))
		abort();
	s->plain += len;
	for (size_t i = 0; i < len; i++) /* every byte is there to read */
		s->sum += p[i];
}

static void connection(const uint8_t *data, size_t size)
{
	struct capture_keylog *k = capture_keylog_new();
	struct seen s = {0};
	size_t klen;

	if (k == NULL || size < 2)
		goto out;
	klen = (size_t)data[0] << 8 | data[1];
	if (klen > size - 2)
		klen = size - 2;
	if (capture_keylog_add_text(k, (const char *)data + 2, klen) != 0)
		goto out;
	data += 2 + klen;
	size -= 2 + klen;
	s.d = capture_tls_decrypt_new(k, on_plain, &s);
	if (s.d == NULL)
		goto out;
	while (size > 0) {
		enum imap_dir dir = (data[0] & 1) ? IMAP_S2C : IMAP_C2S;
		size_t n = (size_t)(data[0] >> 1) + 1;

		if (n > size - 1)
			n = size - 1;
		capture_tls_decrypt_feed(s.d, dir, data + 1, n);
		data += 1 + n;
		size -= 1 + n;
	}
	if (capture_tls_decrypt_state(s.d) > CAPTURE_TLS_DECRYPTING &&
	    capture_tls_decrypt_why(s.d)[0] == '\0')
		abort();
	/* a hostile server name reaches the rows only as plain characters */
	if (strspn(capture_tls_decrypt_sni(s.d), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		   "0123456789.-_?") != strlen(capture_tls_decrypt_sni(s.d)))
		abort();
	capture_tls_decrypt_gap(s.d, IMAP_C2S, 1);
	if (capture_tls_decrypt_state(s.d) <= CAPTURE_TLS_DECRYPTING)
		abort();
	capture_tls_decrypt_free(&s.d);
out:
	capture_keylog_free(&k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct capture_keylog *a, *b;
	int from_mem, from_file;

	if (size == 0)
		return 0;
	switch (data[0]) {
	case 0:
		a = capture_keylog_new();
		if (a != NULL && capture_keylog_add_text(a, (const char *)data + 1, size - 1) == 0 &&
		    capture_keylog_count(a) + capture_keylog_bad_lines(a) > size)
			abort();
		capture_keylog_free(&a);
		break;
	case 1:
		a = capture_keylog_new();
		b = capture_keylog_new();
		if (a != NULL && b != NULL) {
			from_mem = capture_pcapng_secrets_mem(data + 1, size - 1, a);
			from_file = capture_pcapng_secrets(fuzz_input_path(data + 1, size - 1), b);
			if (from_mem != from_file ||
			    capture_keylog_count(a) != capture_keylog_count(b))
				abort();
		}
		capture_keylog_free(&a);
		capture_keylog_free(&b);
		break;
	default:
		connection(data + 1, size - 1);
		break;
	}
	return 0;
}
