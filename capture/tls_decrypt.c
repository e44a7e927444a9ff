#include "capture/tls_decrypt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "capture/tls_hello.h"
#include "capture/tls_keys.h"

enum {
	REC_CCS = 20,
	REC_ALERT = 21,
	REC_HANDSHAKE = 22,
	REC_DATA = 23,
};

#define HEADER 5
/* A hello larger than this is damage: real ones are a few KiB. */
#define HELLO_MAX (32u * 1024u)
/* TLS 1.3 without handshake secrets: encrypted handshake records passed
 * over before the first that opens with the application secret. */
#define TRIAL_MAX 64

struct tls_dir {
	uint8_t rec[HEADER + CAPTURE_TLS_RECORD_MAX]; /* the record being assembled */
	size_t rec_len;
	uint8_t hs[4 + HELLO_MAX]; /* a handshake message being assembled */
	size_t hs_len;
	size_t hs_skip;            /* bytes of a message not needed, still to come */
	bool protected;            /* its records are encrypted from here */
	bool app;                  /* TLS 1.3: under the application secret */
	bool trial;                /* TLS 1.3: no handshake secret, records tried */
	unsigned trials;
	bool finished, key_update; /* TLS 1.3: seen in this record; acted on after it */
	uint64_t records;          /* protected records read */
	struct capture_tls_keys keys;
};

struct capture_tls_decrypt {
	const struct capture_keylog *keylog;
	capture_tls_plain_cb *cb;
	void *ctx;
	enum capture_tls_state state;
	char why[400];
	char random_hex[65];
	char sni[CAPTURE_TLS_SNI_MAX];
	uint8_t client_random[32];
	bool have_random;
	const struct capture_tls_suite *suite;
	const char *version;
	struct capture_keylog_secret app[2]; /* TLS 1.3 traffic secrets, by enum imap_dir */
	struct tls_dir dir[2];
	uint8_t plain[CAPTURE_TLS_RECORD_MAX];
};

static const char *side(enum imap_dir dir)
{
	return dir == IMAP_C2S ? "client" : "server";
}

static void stop(struct capture_tls_decrypt *d, enum capture_tls_state state, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void stop(struct capture_tls_decrypt *d, enum capture_tls_state state, const char *fmt, ...)
{
	va_list ap;

	if (d->state > CAPTURE_TLS_DECRYPTING)
		return;
	d->state = state;
	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
}

struct capture_tls_decrypt *capture_tls_decrypt_new(const struct capture_keylog *keys,
						    capture_tls_plain_cb *cb, void *ctx)
{
	struct capture_tls_decrypt *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->keylog = keys;
	d->cb = cb;
	d->ctx = ctx;
	d->version = "";
	return d;
}

void capture_tls_decrypt_free(struct capture_tls_decrypt **dp)
{
	if (*dp == NULL)
		return;
	/* the keys and the plaintext: not left in freed memory */
	OPENSSL_cleanse(*dp, sizeof(**dp));
	free(*dp);
	*dp = NULL;
}

static void tls12_keys(struct capture_tls_decrypt *d, const struct capture_tls_server_hello *sh)
{
	struct capture_keylog_secret master;

	if (!capture_keylog_find(d->keylog, CAPTURE_KEYLOG_MASTER, d->client_random, &master)) {
		stop(d, CAPTURE_TLS_NO_SECRETS, "%s", capture_keylog_count(d->keylog) == 0
			? "no secrets at hand (no --keylog, and the capture holds none)"
			: "the key log holds no CLIENT_RANDOM line for it");
		return;
	}
	if (capture_tls12_keys(d->suite, master.bytes, master.len, d->client_random, sh->random,
			       &d->dir[IMAP_C2S].keys, &d->dir[IMAP_S2C].keys) != 0) {
		stop(d, CAPTURE_TLS_FAILED, "OpenSSL could not derive its keys");
		return;
	}
	d->state = CAPTURE_TLS_DECRYPTING;
}

/* One direction under its handshake secret, or tried with the
 * application secret when the key log has no handshake secret. */
static void tls13_dir(struct capture_tls_decrypt *d, enum imap_dir dir,
		      enum capture_keylog_label hs_label)
{
	struct tls_dir *t = &d->dir[dir];
	struct capture_keylog_secret hs;

	t->protected = true;
	if (capture_keylog_find(d->keylog, hs_label, d->client_random, &hs)) {
		if (capture_tls13_keys(d->suite, &hs, &t->keys) != 0)
			stop(d, CAPTURE_TLS_FAILED, "its %s handshake secret does not fit %s",
			     side(dir), d->suite->name);
		return;
	}
	t->trial = true;
	if (capture_tls13_keys(d->suite, &d->app[dir], &t->keys) != 0)
		stop(d, CAPTURE_TLS_FAILED, "its %s traffic secret does not fit %s", side(dir),
		     d->suite->name);
}

static void tls13_keys(struct capture_tls_decrypt *d)
{
	bool c = capture_keylog_find(d->keylog, CAPTURE_KEYLOG_CLIENT_TRAFFIC, d->client_random,
				     &d->app[IMAP_C2S]);
	bool s = capture_keylog_find(d->keylog, CAPTURE_KEYLOG_SERVER_TRAFFIC, d->client_random,
				     &d->app[IMAP_S2C]);

	if (capture_keylog_count(d->keylog) == 0) {
		stop(d, CAPTURE_TLS_NO_SECRETS,
		     "no secrets at hand (no --keylog, and the capture holds none)");
		return;
	}
	if (!c || !s) {
		stop(d, CAPTURE_TLS_NO_SECRETS, "the key log holds no %s line for it",
		     !c ? "CLIENT_TRAFFIC_SECRET_0" : "SERVER_TRAFFIC_SECRET_0");
		return;
	}
	d->state = CAPTURE_TLS_DECRYPTING;
	tls13_dir(d, IMAP_C2S, CAPTURE_KEYLOG_CLIENT_HANDSHAKE);
	tls13_dir(d, IMAP_S2C, CAPTURE_KEYLOG_SERVER_HANDSHAKE);
}

static void server_hello(struct capture_tls_decrypt *d, const uint8_t *body, size_t len)
{
	struct capture_tls_server_hello sh;

	if (!capture_tls_server_hello(body, len, &sh)) {
		stop(d, CAPTURE_TLS_FAILED, "its ServerHello does not parse");
		return;
	}
	if (sh.retry)
		return; /* a HelloRetryRequest: the real ServerHello follows */
	if (!d->have_random) {
		stop(d, CAPTURE_TLS_FAILED, "its ClientHello is not in the capture");
		return;
	}
	d->suite = capture_tls_suite_find(sh.suite);
	if (sh.version != 0x0303 && sh.version != 0x0304) {
		stop(d, CAPTURE_TLS_UNSUPPORTED, "it uses TLS version 0x%04x; analyze decrypts TLS "
		     "1.2 and 1.3", sh.version);
		return;
	}
	d->version = sh.version == 0x0304 ? "TLSv1.3" : "TLSv1.2";
	if (d->suite == NULL || d->suite->tls13 != (sh.version == 0x0304)) {
		d->suite = NULL;
		stop(d, CAPTURE_TLS_UNSUPPORTED, "it uses cipher suite 0x%04x; analyze decrypts "
		     "AES-GCM and ChaCha20-Poly1305", sh.suite);
		return;
	}
	if (d->suite->tls13)
		tls13_keys(d);
	else
		tls12_keys(d, &sh);
}

/* One whole hello, header included. */
static void hello(struct capture_tls_decrypt *d, enum imap_dir dir, const uint8_t *msg, size_t len)
{
	if (dir == IMAP_C2S && msg[0] == CAPTURE_TLS_CLIENT_HELLO && !d->have_random) {
		if (!capture_tls_client_hello(msg + 4, len - 4, d->client_random, d->sni)) {
			stop(d, CAPTURE_TLS_FAILED, "its ClientHello does not parse");
			return;
		}
		d->have_random = true;
		for (int i = 0; i < 32; i++)
			snprintf(d->random_hex + 2 * i, 3, "%02x", d->client_random[i]);
	} else if (dir == IMAP_S2C && msg[0] == CAPTURE_TLS_SERVER_HELLO &&
		   d->state == CAPTURE_TLS_HELLO) {
		server_hello(d, msg + 4, len - 4);
	}
}

/* Handshake bytes of dir, in the clear or decrypted: the hellos are
 * read, Finished and KeyUpdate noted, the rest passed over unread. */
static void handshake(struct capture_tls_decrypt *d, enum imap_dir dir, const uint8_t *p,
		      size_t len)
{
	struct tls_dir *t = &d->dir[dir];

	while (len > 0 && d->state <= CAPTURE_TLS_DECRYPTING) {
		size_t take, need;

		if (t->hs_skip > 0) {
			take = t->hs_skip < len ? t->hs_skip : len;
			t->hs_skip -= take;
			p += take;
			len -= take;
			continue;
		}
		need = 4;
		if (t->hs_len >= 4)
			need += (size_t)t->hs[1] << 16 | (size_t)t->hs[2] << 8 | t->hs[3];
		if (t->hs_len == 4 && t->hs[0] != CAPTURE_TLS_CLIENT_HELLO &&
		    t->hs[0] != CAPTURE_TLS_SERVER_HELLO) {
			/* not a hello: only its type matters */
			t->finished |= t->hs[0] == CAPTURE_TLS_FINISHED;
			t->key_update |= t->hs[0] == CAPTURE_TLS_KEY_UPDATE;
			t->hs_skip = need - 4;
			t->hs_len = 0;
			continue;
		}
		if (need > sizeof(t->hs)) {
			stop(d, CAPTURE_TLS_FAILED, "the %s sent a hello of %zu bytes: no TLS hello is "
			     "that large", side(dir), need - 4);
			return;
		}
		take = need - t->hs_len < len ? need - t->hs_len : len;
		memcpy(t->hs + t->hs_len, p, take);
		t->hs_len += take;
		p += take;
		len -= take;
		if (t->hs_len < 4)
			continue;
		need = 4 + ((size_t)t->hs[1] << 16 | (size_t)t->hs[2] << 8 | t->hs[3]);
		if (t->hs_len == need) {
			hello(d, dir, t->hs, t->hs_len);
			t->hs_len = 0;
		}
	}
}

/* TLS 1.3: what a record's Finished or KeyUpdate changes for the next. */
static void after_record(struct capture_tls_decrypt *d, enum imap_dir dir)
{
	struct tls_dir *t = &d->dir[dir];

	if (t->finished && !t->app) {
		t->app = true;
		t->trial = false;
		if (capture_tls13_keys(d->suite, &d->app[dir], &t->keys) != 0)
			stop(d, CAPTURE_TLS_FAILED, "its %s traffic secret does not fit %s", side(dir),
			     d->suite->name);
	} else if (t->key_update && t->app && capture_tls13_update(&t->keys) != 0) {
		stop(d, CAPTURE_TLS_FAILED, "OpenSSL could not follow the %s's KeyUpdate",
		     side(dir));
	}
	t->finished = t->key_update = false;
}

/* TLS 1.3's inner plaintext: content, its type, zero padding. Returns
 * the type (0: none) and sets *len to the content's length. */
static uint8_t inner_type(const uint8_t *p, size_t *len)
{
	while (*len > 0 && p[*len - 1] == 0)
		--*len;
	if (*len == 0)
		return 0;
	return p[--*len];
}

static void protected_record(struct capture_tls_decrypt *d, enum imap_dir dir)
{
	struct tls_dir *t = &d->dir[dir];
	const uint8_t *hdr = t->rec;
	size_t len = t->rec_len - HEADER;
	long n = capture_tls_open(&t->keys, hdr, t->rec + HEADER, len, d->plain);
	size_t plain;
	uint8_t type = hdr[0];

	t->records++;
	if (n < 0 && t->trial && ++t->trials <= TRIAL_MAX)
		return; /* an encrypted handshake record, under a secret not in the key log */
	if (n < 0) {
		stop(d, CAPTURE_TLS_FAILED, "record %llu of the %s's encrypted stream does not "
		     "authenticate (a damaged capture, or another session's secrets)",
		     (unsigned long long)t->records, side(dir));
		return;
	}
	plain = (size_t)n;
	if (d->suite->tls13) {
		if (t->trial) {
			t->trial = false;
			t->app = true;
		}
		type = inner_type(d->plain, &plain);
	}
	switch (type) {
	case REC_DATA:
		if (d->suite->tls13 && !t->app)
			stop(d, CAPTURE_TLS_FAILED, "the %s sent application data before its Finished",
			     side(dir));
		else if (plain > 0)
			d->cb(d->ctx, dir, d->plain, plain);
		break;
	case REC_HANDSHAKE:
		handshake(d, dir, d->plain, plain);
		break;
	case REC_ALERT:
		break; /* close_notify, or the peer's complaint: the TCP end tells the rest */
	default:
		stop(d, CAPTURE_TLS_FAILED, "the %s sent an encrypted record of type %u", side(dir),
		     type);
		return;
	}
	if (d->suite->tls13)
		after_record(d, dir);
}

static void record(struct capture_tls_decrypt *d, enum imap_dir dir)
{
	struct tls_dir *t = &d->dir[dir];
	uint8_t type = t->rec[0];
	bool tls13 = d->suite != NULL && d->suite->tls13;

	/* TLS 1.3's ChangeCipherSpec is for middleboxes only (one may come
	 * before the ServerHello: around a HelloRetryRequest); TLS 1.2's
	 * turns on encryption for what its sender writes next */
	if (type == REC_CCS) {
		if (d->state == CAPTURE_TLS_DECRYPTING && !tls13 && !t->protected)
			t->protected = true;
		else if (d->state == CAPTURE_TLS_DECRYPTING && !tls13)
			stop(d, CAPTURE_TLS_FAILED, "the %s changed cipher spec a second time (a "
			     "renegotiation)", side(dir));
		return;
	}
	if (t->protected && (type != REC_ALERT || !tls13)) {
		protected_record(d, dir);
		return;
	}
	switch (type) {
	case REC_HANDSHAKE:
		handshake(d, dir, t->rec + HEADER, t->rec_len - HEADER);
		break;
	case REC_ALERT:
		break;
	default:
		stop(d, CAPTURE_TLS_FAILED, "the %s sent application data before the handshake",
		     side(dir));
		break;
	}
}

/* A record header that cannot start a TLS record ends the reading. */
static bool header_ok(struct capture_tls_decrypt *d, enum imap_dir dir, const uint8_t *h)
{
	size_t len = (size_t)h[3] << 8 | h[4];

	if (h[0] < REC_CCS || h[0] > REC_DATA || h[1] != 3) {
		stop(d, CAPTURE_TLS_FAILED, "the %s's stream holds bytes that are no TLS record "
		     "(%02x %02x %02x)", side(dir), h[0], h[1], h[2]);
		return false;
	}
	if (len > CAPTURE_TLS_RECORD_MAX) {
		stop(d, CAPTURE_TLS_FAILED, "the %s sent a TLS record of %zu bytes, more than TLS "
		     "allows (%u)", side(dir), len, CAPTURE_TLS_RECORD_MAX);
		return false;
	}
	return true;
}

enum capture_tls_state capture_tls_decrypt_feed(struct capture_tls_decrypt *d, enum imap_dir dir,
						const uint8_t *data, size_t len)
{
	struct tls_dir *t = &d->dir[dir];

	while (len > 0 && d->state <= CAPTURE_TLS_DECRYPTING) {
		size_t need = HEADER, take;

		if (t->rec_len >= HEADER)
			need += (size_t)t->rec[3] << 8 | t->rec[4];
		take = need - t->rec_len < len ? need - t->rec_len : len;
		memcpy(t->rec + t->rec_len, data, take);
		t->rec_len += take;
		data += take;
		len -= take;
		if (t->rec_len == HEADER && !header_ok(d, dir, t->rec))
			break;
		if (t->rec_len < HEADER)
			continue;
		need = HEADER + ((size_t)t->rec[3] << 8 | t->rec[4]);
		if (t->rec_len == need) {
			record(d, dir);
			t->rec_len = 0;
		}
	}
	return d->state;
}

void capture_tls_decrypt_gap(struct capture_tls_decrypt *d, enum imap_dir dir, uint64_t gap)
{
	stop(d, CAPTURE_TLS_FAILED, "%llu byte(s) of the %s's stream are missing from the "
	     "capture: TLS cannot be followed past them", (unsigned long long)gap, side(dir));
}

size_t capture_tls_decrypt_pending(const struct capture_tls_decrypt *d, enum imap_dir dir)
{
	return d->dir[dir].rec_len;
}

enum capture_tls_state capture_tls_decrypt_state(const struct capture_tls_decrypt *d)
{
	return d->state;
}

const char *capture_tls_decrypt_why(const struct capture_tls_decrypt *d)
{
	return d->why;
}

const char *capture_tls_decrypt_random(const struct capture_tls_decrypt *d)
{
	return d->random_hex;
}

const char *capture_tls_decrypt_sni(const struct capture_tls_decrypt *d)
{
	return d->sni;
}

const char *capture_tls_decrypt_version(const struct capture_tls_decrypt *d)
{
	return d->version;
}

const char *capture_tls_decrypt_cipher(const struct capture_tls_decrypt *d)
{
	return d->suite != NULL ? d->suite->name : "";
}

const char *capture_tls_state_str(enum capture_tls_state state)
{
	switch (state) {
	case CAPTURE_TLS_HELLO:
		return "hello";
	case CAPTURE_TLS_DECRYPTING:
		return "decrypting";
	case CAPTURE_TLS_NO_SECRETS:
		return "no-secrets";
	case CAPTURE_TLS_UNSUPPORTED:
		return "unsupported";
	case CAPTURE_TLS_FAILED:
		return "failed";
	}
	return "tls-state?";
}
