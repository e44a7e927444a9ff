#include "capture/tls_keys.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

static const struct capture_tls_suite suites[] = {
	{0x1301, "TLS_AES_128_GCM_SHA256", CAPTURE_TLS_AES_128_GCM, "SHA256", 32, true},
	{0x1302, "TLS_AES_256_GCM_SHA384", CAPTURE_TLS_AES_256_GCM, "SHA384", 48, true},
	{0x1303, "TLS_CHACHA20_POLY1305_SHA256", CAPTURE_TLS_CHACHA20_POLY1305, "SHA256", 32,
	 true},
	{0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", CAPTURE_TLS_AES_128_GCM, "SHA256", 32, false},
	{0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", CAPTURE_TLS_AES_256_GCM, "SHA384", 48, false},
	{0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", CAPTURE_TLS_AES_128_GCM, "SHA256", 32,
	 false},
	{0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", CAPTURE_TLS_AES_256_GCM, "SHA384", 48,
	 false},
	{0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", CAPTURE_TLS_AES_128_GCM, "SHA256", 32,
	 false},
	{0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", CAPTURE_TLS_AES_256_GCM, "SHA384", 48,
	 false},
	{0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", CAPTURE_TLS_AES_128_GCM, "SHA256", 32,
	 false},
	{0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", CAPTURE_TLS_AES_256_GCM, "SHA384", 48,
	 false},
	{0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", CAPTURE_TLS_CHACHA20_POLY1305,
	 "SHA256", 32, false},
	{0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", CAPTURE_TLS_CHACHA20_POLY1305,
	 "SHA256", 32, false},
	{0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", CAPTURE_TLS_CHACHA20_POLY1305,
	 "SHA256", 32, false},
};

const struct capture_tls_suite *capture_tls_suite_find(uint16_t id)
{
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		if (suites[i].id == id)
			return &suites[i];
	return NULL;
}

static size_t key_len(enum capture_tls_aead aead)
{
	switch (aead) {
	case CAPTURE_TLS_AES_128_GCM:
		return 16;
	case CAPTURE_TLS_AES_256_GCM:
	case CAPTURE_TLS_CHACHA20_POLY1305:
		return 32;
	}
	return 32;
}

static const EVP_CIPHER *cipher(enum capture_tls_aead aead)
{
	switch (aead) {
	case CAPTURE_TLS_AES_128_GCM:
		return EVP_aes_128_gcm();
	case CAPTURE_TLS_AES_256_GCM:
		return EVP_aes_256_gcm();
	case CAPTURE_TLS_CHACHA20_POLY1305:
		return EVP_chacha20_poly1305();
	}
	return NULL;
}

/* TLS 1.2 GCM takes a 4-byte salt and an explicit nonce from each record
 * (RFC 5288); ChaCha20-Poly1305 (RFC 7905) and TLS 1.3 a whole IV. */
static bool explicit_nonce(const struct capture_tls_suite *suite)
{
	return !suite->tls13 && suite->aead != CAPTURE_TLS_CHACHA20_POLY1305;
}

static int derive(const char *kdf_name, OSSL_PARAM *params, uint8_t *out, size_t len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, kdf_name, NULL);
	EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	int ok = ctx != NULL && EVP_KDF_derive(ctx, out, len, params) > 0;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	if (!ok)
		ERR_clear_error(); /* the caller says what failed */
	return ok ? 0 : -1;
}

int capture_tls12_keys(const struct capture_tls_suite *suite, const uint8_t *master, size_t len,
		       const uint8_t client_random[32], const uint8_t server_random[32],
		       struct capture_tls_keys *client, struct capture_tls_keys *server)
{
	static const char label[] = "key expansion";
	uint8_t seed[sizeof(label) - 1 + 64], block[2 * (32 + 12)];
	size_t klen = key_len(suite->aead), ivlen = explicit_nonce(suite) ? 4 : 12;
	OSSL_PARAM params[4];

	/* the seed: the label, the server's random, the client's */
	memcpy(seed, label, sizeof(label) - 1);
	memcpy(seed + sizeof(label) - 1, server_random, 32);
	memcpy(seed + sizeof(label) - 1 + 32, client_random, 32);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suite->digest, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)master, len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed));
	params[3] = OSSL_PARAM_construct_end();
	/* AEAD suites have no MAC keys: client key, server key, client IV, server IV */
	if (derive("TLS1-PRF", params, block, 2 * (klen + ivlen)) != 0) {
		OPENSSL_cleanse(block, sizeof(block));
		return -1;
	}
	memset(client, 0, sizeof(*client));
	memset(server, 0, sizeof(*server));
	client->suite = server->suite = suite;
	memcpy(client->key, block, klen);
	memcpy(server->key, block + klen, klen);
	memcpy(client->iv, block + 2 * klen, ivlen);
	memcpy(server->iv, block + 2 * klen + ivlen, ivlen);
	OPENSSL_cleanse(block, sizeof(block));
	return 0;
}

/* HKDF-Expand-Label (RFC 8446 7.1) with an empty context. */
static int expand_label(const struct capture_tls_suite *suite,
			const struct capture_keylog_secret *secret, const char *label, uint8_t *out,
			size_t len)
{
	uint8_t info[2 + 1 + 255 + 1];
	size_t n = strlen(label), at = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[5];

	if (6 + n > 255)
		return -1;
	info[at++] = (uint8_t)(len >> 8);
	info[at++] = (uint8_t)len;
	info[at++] = (uint8_t)(6 + n);
	memcpy(info + at, "tls13 ", 6);
	memcpy(info + at + 6, label, n);
	at += 6 + n;
	info[at++] = 0;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suite->digest, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret->bytes,
						      secret->len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, at);
	params[4] = OSSL_PARAM_construct_end();
	return derive("HKDF", params, out, len);
}

int capture_tls13_keys(const struct capture_tls_suite *suite,
		       const struct capture_keylog_secret *secret, struct capture_tls_keys *keys)
{
	memset(keys, 0, sizeof(*keys));
	keys->suite = suite;
	keys->secret = *secret;
	if (secret->len != suite->hash_len)
		return -1;
	if (expand_label(suite, secret, "key", keys->key, key_len(suite->aead)) != 0 ||
	    expand_label(suite, secret, "iv", keys->iv, 12) != 0)
		return -1;
	return 0;
}

int capture_tls13_update(struct capture_tls_keys *keys)
{
	struct capture_keylog_secret next = {.len = keys->secret.len};
	int rc = expand_label(keys->suite, &keys->secret, "traffic upd", next.bytes, next.len);

	if (rc == 0)
		rc = capture_tls13_keys(keys->suite, &next, keys);
	OPENSSL_cleanse(&next, sizeof(next));
	return rc;
}

static void put_seq(uint8_t *p, uint64_t seq)
{
	for (int i = 7; i >= 0; i--, seq >>= 8)
		p[i] = (uint8_t)seq;
}

long capture_tls_open(struct capture_tls_keys *keys, const uint8_t header[5],
		      const uint8_t *payload, size_t len, uint8_t *out)
{
	const struct capture_tls_suite *suite = keys->suite;
	size_t skip = explicit_nonce(suite) ? 8 : 0, plain, aad_len;
	uint8_t nonce[12], aad[13], seq[8];
	EVP_CIPHER_CTX *ctx;
	int n1 = 0, n2 = 0, ok;

	if (len < skip + CAPTURE_TLS_TAG || len > CAPTURE_TLS_RECORD_MAX)
		return -1;
	plain = len - skip - CAPTURE_TLS_TAG;
	put_seq(seq, keys->seq);
	if (skip != 0) {
		memcpy(nonce, keys->iv, 4);
		memcpy(nonce + 4, payload, 8);
	} else {
		memcpy(nonce, keys->iv, 12);
		for (int i = 0; i < 8; i++)
			nonce[4 + i] ^= seq[i];
	}
	if (suite->tls13) {
		memcpy(aad, header, 5); /* the record header as sent */
		aad_len = 5;
	} else {
		memcpy(aad, seq, 8);
		aad[8] = header[0];
		aad[9] = header[1];
		aad[10] = header[2];
		aad[11] = (uint8_t)(plain >> 8);
		aad[12] = (uint8_t)plain;
		aad_len = 13;
	}
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL && EVP_DecryptInit_ex(ctx, cipher(suite->aead), NULL, NULL, NULL) > 0 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) > 0 &&
	     EVP_DecryptInit_ex(ctx, NULL, NULL, keys->key, nonce) > 0 &&
	     EVP_DecryptUpdate(ctx, NULL, &n1, aad, (int)aad_len) > 0 &&
	     EVP_DecryptUpdate(ctx, out, &n1, payload + skip, (int)plain) > 0 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, CAPTURE_TLS_TAG,
				 (void *)(payload + skip + plain)) > 0 &&
	     EVP_DecryptFinal_ex(ctx, out + n1, &n2) > 0;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok) {
		ERR_clear_error();
		memset(out, 0, plain); /* what failed to authenticate is nobody's to read */
		return -1;
	}
	keys->seq++;
	return (long)plain;
}
