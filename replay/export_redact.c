/* export --redact: each span imap/sensitive.h finds becomes a token of
 * the same length, the same for the same bytes everywhere in the file.
 * A token is drawn from HMAC-SHA256 under a key: random for each run
 * unless one is given, so no token can be found again by hashing guesses
 * without the key. Each byte of a token keeps the class of the byte it
 * replaces (a digit a digit, a capital a capital, anything else a small
 * letter): syntax around it stays as it was. */
#include "replay/export_int.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define KEY_RANDOM_LEN 32
/* Words already replaced, by the first 8 bytes of their HMAC; past this
 * many a response's text is masked whole. */
#define KNOWN_MAX (1u << 20)

struct redactor {
	unsigned kinds;
	EVP_MAC *mac;
	EVP_MAC_CTX *base; /* keyed, nothing fed yet */
	uint64_t *known;   /* open addressing; 0 is empty */
	size_t known_cap, known_count;
	bool failed;
};

struct redactor *redactor_new(unsigned kinds, const char *key)
{
	struct redactor *r = calloc(1, sizeof(*r));
	uint8_t random_key[KEY_RANDOM_LEN];
	OSSL_PARAM params[2] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end()};
	const uint8_t *k = (const uint8_t *)key;
	size_t klen = key != NULL ? strlen(key) : 0;

	if (r == NULL)
		return NULL;
	r->kinds = kinds;
	if (key == NULL) {
		if (RAND_bytes(random_key, sizeof(random_key)) != 1)
			goto fail;
		k = random_key;
		klen = sizeof(random_key);
	}
	r->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	r->base = r->mac != NULL ? EVP_MAC_CTX_new(r->mac) : NULL;
	if (r->base == NULL || EVP_MAC_init(r->base, k, klen, params) != 1)
		goto fail;
	OPENSSL_cleanse(random_key, sizeof(random_key));
	return r;
fail:
	OPENSSL_cleanse(random_key, sizeof(random_key));
	redactor_free(&r);
	return NULL;
}

void redactor_free(struct redactor **rp)
{
	struct redactor *r = *rp;

	if (r == NULL)
		return;
	EVP_MAC_CTX_free(r->base);
	EVP_MAC_free(r->mac);
	free(r->known);
	free(r);
	*rp = NULL;
}

bool redactor_failed(const struct redactor *r)
{
	return r->failed;
}

/* HMAC(key, block || word) */
static bool digest(struct redactor *r, uint32_t block, const uint8_t *word, size_t n,
		   uint8_t out[32])
{
	EVP_MAC_CTX *c = EVP_MAC_CTX_dup(r->base);
	uint8_t b[4] = {(uint8_t)(block >> 24), (uint8_t)(block >> 16), (uint8_t)(block >> 8),
			(uint8_t)block};
	size_t len = 0;
	bool ok = c != NULL && EVP_MAC_update(c, b, sizeof(b)) == 1 &&
		  EVP_MAC_update(c, word, n) == 1 && EVP_MAC_final(c, out, &len, 32) == 1 &&
		  len == 32;

	EVP_MAC_CTX_free(c);
	r->failed |= !ok;
	return ok;
}

static uint64_t word_id(struct redactor *r, const uint8_t *word, size_t n)
{
	uint8_t d[32];
	uint64_t id = 0;

	if (!digest(r, UINT32_MAX, word, n, d))
		return 1;
	for (int i = 0; i < 8; i++)
		id = id << 8 | d[i];
	return id != 0 ? id : 1;
}

static bool known(const struct redactor *r, uint64_t id)
{
	if (r->known_cap == 0)
		return false;
	for (size_t i = id & (r->known_cap - 1); r->known[i] != 0; i = (i + 1) & (r->known_cap - 1))
		if (r->known[i] == id)
			return true;
	return false;
}

static void remember(struct redactor *r, uint64_t id)
{
	size_t i;

	if (r->known_count >= KNOWN_MAX || known(r, id))
		return;
	if (2 * (r->known_count + 1) > r->known_cap) {
		size_t old_cap = r->known_cap, cap = old_cap ? old_cap * 2 : 1024;
		uint64_t *grown = calloc(cap, sizeof(*grown)), *old = r->known;

		if (grown == NULL) {
			r->known_count = KNOWN_MAX; /* from here on, text is masked whole */
			return;
		}
		r->known = grown;
		r->known_cap = cap;
		r->known_count = 0;
		for (size_t k = 0; k < old_cap; k++)
			if (old[k] != 0)
				remember(r, old[k]);
		free(old);
	}
	for (i = id & (r->known_cap - 1); r->known[i] != 0; i = (i + 1) & (r->known_cap - 1))
		;
	r->known[i] = id;
	r->known_count++;
}

static bool reserved(const uint8_t *p, size_t n)
{
	static const char *const words[] = {"NIL", "INBOX"};

	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		size_t i = 0;

		if (strlen(words[w]) != n)
			continue;
		while (i < n && (p[i] & ~0x20) == (uint8_t)words[w][i])
			i++;
		if (i == n)
			return true;
	}
	return false;
}

/* The token for word, written over it. A token that would read as NIL
 * or INBOX (words with a meaning of their own) is drawn again. */
static void tokenize(struct redactor *r, uint8_t *word, size_t n)
{
	uint8_t d[32], *tok = malloc(n);

	if (tok == NULL) { /* the export fails, and the value is gone all the same */
		r->failed = true;
		for (size_t i = 0; i < n; i++)
			word[i] = word[i] >= '0' && word[i] <= '9'   ? '0'
				  : word[i] >= 'A' && word[i] <= 'Z' ? 'X'
								     : 'x';
		return;
	}
	for (uint32_t round = 0;; round++) {
		for (size_t i = 0; i < n; i++) {
			uint8_t c = word[i], x;

			if (i % 32 == 0 && !digest(r, round << 24 | (uint32_t)(i / 32), word, n, d))
				memset(d, 0, sizeof(d));
			x = d[i % 32];
			if (c >= '0' && c <= '9')
				tok[i] = (uint8_t)('0' + x % 10);
			else if (c >= 'A' && c <= 'Z')
				tok[i] = (uint8_t)('A' + x % 26);
			else
				tok[i] = (uint8_t)('a' + x % 26);
		}
		if (!reserved(tok, n) || round == 255)
			break;
	}
	memcpy(word, tok, n);
	free(tok);
}

struct apply {
	struct redactor *r;
	uint8_t *bytes;
};

static void on_span(void *ctx, const struct imap_sens_span *span)
{
	struct apply *a = ctx;
	struct redactor *r = a->r;
	uint8_t *word = a->bytes + span->off;
	uint64_t id;

	if (!(span->kinds & r->kinds))
		return;
	if (span->if_known) {
		if (r->known_count < KNOWN_MAX && !known(r, word_id(r, word, span->len)))
			return;
	} else if (span->kinds & (IMAP_SENS_USERS | IMAP_SENS_MAILBOXES | IMAP_SENS_ADDRESSES)) {
		id = word_id(r, word, span->len);
		remember(r, id);
	}
	tokenize(r, word, span->len);
}

void redactor_unit(struct redactor *r, struct imap_sens *sens, enum imap_dir dir,
		   const struct imap_unit *unit, uint8_t *bytes, size_t len)
{
	struct apply a = {.r = r, .bytes = bytes};

	imap_sens_unit(sens, dir, unit, bytes, len, on_span, &a);
}

void redactor_partial(struct redactor *r, struct imap_sens *sens, enum imap_dir dir,
		      uint8_t *bytes, size_t len)
{
	struct apply a = {.r = r, .bytes = bytes};

	imap_sens_partial(sens, dir, bytes, len, on_span, &a);
}
