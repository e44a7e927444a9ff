/* Masking through the whole conversation pipeline: every LOGIN and
 * AUTHENTICATE form keeps its length and loses its secret. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "imap/conversation.h"

struct seen {
	char c2s[8192]; /* masked client bytes, concatenated */
	size_t c2s_len;
	char s2c[8192];
	size_t s2c_len;
	int masked_units;
};

static void on_obs(void *ctx, const struct imap_observation *obs)
{
	struct seen *s = ctx;
	char *buf = obs->dir == IMAP_C2S ? s->c2s : s->s2c;
	size_t *len = obs->dir == IMAP_C2S ? &s->c2s_len : &s->s2c_len;

	if (*len + obs->len < sizeof(s->c2s)) {
		memcpy(buf + *len, obs->data, obs->len);
		*len += obs->len;
		buf[*len] = '\0';
	}
	s->masked_units += obs->masked;
}

struct step {
	enum imap_dir dir;
	const char *bytes;
};

/* Runs a conversation fed in the given steps (each step also byte by byte
 * when bytewise) and returns what the observer saw. */
static void run(const struct step *steps, size_t n, unsigned flags, int bytewise, struct seen *s)
{
	struct imap_conv_config cfg = {.redact_flags = flags};
	struct imap_conv *conv;

	memset(s, 0, sizeof(*s));
	conv = imap_conv_new(&cfg, on_obs, s);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)steps[i].bytes;
		size_t len = strlen(steps[i].bytes);

		if (bytewise)
			for (size_t k = 0; k < len; k++)
				imap_conv_feed(conv, steps[i].dir, (imap_time_us)i, IMAP_ORIGIN_PEER, p + k, 1);
		else
			imap_conv_feed(conv, steps[i].dir, (imap_time_us)i, IMAP_ORIGIN_PEER, p, len);
	}
	imap_conv_free(&conv);
}

struct redact_case {
	const char *name;
	struct step steps[6];
	const char *secret;       /* must be absent from the masked client bytes */
	const char *expect_c2s;   /* masked client stream */
};

#define C IMAP_C2S
#define S IMAP_S2C

static const struct redact_case cases[] = {
	{"LOGIN atom", {{C, "a1 LOGIN alice S3cr3t\r\n"}}, "S3cr3t", "a1 LOGIN alice ******\r\n"},
	{"LOGIN quoted", {{C, "a1 LOGIN \"alice\" \"S3 c\\\"r3t\"\r\n"}}, "S3 c",
	 "a1 LOGIN \"alice\" \"*********\"\r\n"},
	{"LOGIN literal password",
	 {{C, "a1 LOGIN alice {6}\r\n"}, {S, "+ OK\r\n"}, {C, "S3cr3t\r\n"}, {S, "a1 OK done\r\n"}},
	 "S3cr3t", "a1 LOGIN alice {6}\r\n******\r\n"},
	{"LOGIN both literals",
	 {{C, "a1 LOGIN {5}\r\n"}, {S, "+ OK\r\n"}, {C, "alice {6}\r\n"}, {S, "+ OK\r\n"},
	  {C, "S3cr3t\r\n"}},
	 "S3cr3t", "a1 LOGIN {5}\r\nalice {6}\r\n******\r\n"},
	{"LOGIN literal+ password", {{C, "a1 LOGIN alice {6+}\r\nS3cr3t\r\n"}}, "S3cr3t",
	 "a1 LOGIN alice {6+}\r\n******\r\n"},
	{"LOGIN lower case", {{C, "a1 login alice S3cr3t\r\n"}}, "S3cr3t", "a1 login alice ******\r\n"},
	{"AUTHENTICATE PLAIN",
	 {{C, "a1 AUTHENTICATE PLAIN\r\n"}, {S, "+ \r\n"}, {C, "AGFsaWNlAFMzY3IzdA==\r\n"},
	  {S, "a1 OK done\r\n"}, {C, "a2 SELECT INBOX\r\n"}},
	 "AGFsaWNlAFMzY3IzdA==", "a1 AUTHENTICATE PLAIN\r\n********************\r\na2 SELECT INBOX\r\n"},
	{"AUTHENTICATE LOGIN two rounds",
	 {{C, "a1 AUTHENTICATE LOGIN\r\n"}, {S, "+ VXNlcm5hbWU6\r\n"}, {C, "YWxpY2U=\r\n"},
	  {S, "+ UGFzc3dvcmQ6\r\n"}, {C, "UzNjcjN0\r\n"}, {S, "a1 OK done\r\n"}},
	 "UzNjcjN0", "a1 AUTHENTICATE LOGIN\r\n********\r\n********\r\n"},
	{"SASL-IR", {{C, "a1 AUTHENTICATE PLAIN AGFsaWNlAFMzY3IzdA==\r\n"}, {S, "a1 OK done\r\n"}},
	 "AGFsaWNlAFMzY3IzdA==", "a1 AUTHENTICATE PLAIN ********************\r\n"},
	{"XOAUTH2 with error round",
	 {{C, "a1 AUTHENTICATE XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ==\r\n"},
	  {S, "+ eyJzdGF0dXMiOiI0MDAifQ==\r\n"}, {C, "\r\n"}, {S, "a1 NO failed\r\n"},
	  {C, "a2 LOGOUT\r\n"}},
	 "dXNlcj1hbGljZQ", "a1 AUTHENTICATE XOAUTH2 ****************************************\r\n\r\na2 LOGOUT\r\n"},
	{"cancelled exchange keeps the star",
	 {{C, "a1 AUTHENTICATE PLAIN\r\n"}, {S, "+ \r\n"}, {C, "*\r\n"}, {S, "a1 BAD cancelled\r\n"}},
	 NULL, "a1 AUTHENTICATE PLAIN\r\n*\r\n"},
	{"empty initial response", {{C, "a1 AUTHENTICATE PLAIN =\r\n"}}, NULL,
	 "a1 AUTHENTICATE PLAIN =\r\n"},
	{"other commands untouched", {{C, "a1 SELECT S3cr3t\r\na2 NOOP\r\n"}}, NULL,
	 "a1 SELECT S3cr3t\r\na2 NOOP\r\n"},
	{"APPEND literal untouched", {{C, "a1 APPEND INBOX {5+}\r\nhello\r\n"}}, NULL,
	 "a1 APPEND INBOX {5+}\r\nhello\r\n"},
};

static void test_cases(void)
{
	struct seen s, b;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct redact_case *c = &cases[i];
		size_t n = 0;

		while (n < 6 && c->steps[n].bytes != NULL)
			n++;
		run(c->steps, n, IMAP_REDACT_CREDENTIALS, 0, &s);
		CHECK_MSG(strcmp(s.c2s, c->expect_c2s) == 0, "%s:\n  got    %s\n  wanted %s", c->name,
			  s.c2s, c->expect_c2s);
		if (c->secret != NULL)
			CHECK_MSG(strstr(s.c2s, c->secret) == NULL, "%s: secret leaked", c->name);
		run(c->steps, n, IMAP_REDACT_CREDENTIALS, 1, &b);
		CHECK_MSG(strcmp(b.c2s, s.c2s) == 0, "%s byte by byte:\n  got    %s\n  wanted %s", c->name,
			  b.c2s, s.c2s);
		/* --no-redact keeps everything */
		run(c->steps, n, 0, 0, &s);
		CHECK_MSG(s.masked_units == 0, "%s: masked without redaction", c->name);
		if (c->secret != NULL)
			CHECK_MSG(strstr(s.c2s, c->secret) != NULL, "%s: unmasked run lost the secret", c->name);
	}
}

static void test_bodies(void)
{
	const struct step steps[] = {
		{C, "a1 APPEND INBOX {12+}\r\nHi\r\nthere!\r\n\r\n"},
		{S, "* 1 FETCH (BODY[] {4}\r\nab\r\n)\r\n"},
	};
	struct seen s;

	run(steps, 2, IMAP_REDACT_CREDENTIALS | IMAP_REDACT_BODIES, 0, &s);
	CHECK_MSG(strcmp(s.c2s, "a1 APPEND INBOX {12+}\r\n**\r\n******\r\n\r\n") == 0, "got %s", s.c2s);
	CHECK_MSG(strcmp(s.s2c, "* 1 FETCH (BODY[] {4}\r\n**\r\n)\r\n") == 0, "got %s", s.s2c);
}

/* An output that holds each unit's wire bytes and lays the masking over
 * them, as the pcap writer does; flush_every > 0 writes what it holds
 * every that many bytes, before the unit's observation, as the writer
 * does with a unit longer than it holds, at a fault mark or at the end. */
struct wire {
	uint8_t out[1u << 20];
	size_t out_len;
	uint8_t pending[1u << 20];
	size_t pending_len;
	uint64_t unit_off, secret_from;
	size_t flush_every;
	int secret_rest_units;
};

static void wire_put(struct wire *w, const uint8_t *p, size_t n)
{
	if (w->out_len + n <= sizeof(w->out)) {
		memcpy(w->out + w->out_len, p, n);
		w->out_len += n;
	}
}

static void wire_flush_early(struct wire *w)
{
	imap_redact_fill_from(w->pending, w->pending_len, w->unit_off, w->secret_from, false);
	wire_put(w, w->pending, w->pending_len);
	w->unit_off += w->pending_len;
	w->pending_len = 0;
}

static void wire_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
		       size_t len, uint64_t secret_from)
{
	struct wire *w = ctx;

	(void)ts;
	if (dir != IMAP_C2S)
		return;
	w->secret_from = secret_from;
	for (size_t i = 0; i < len; i++) {
		if (w->pending_len < sizeof(w->pending))
			w->pending[w->pending_len++] = data[i];
		if (w->flush_every > 0 && w->pending_len >= w->flush_every)
			wire_flush_early(w);
	}
}

static void wire_obs(void *ctx, const struct imap_observation *obs)
{
	struct wire *w = ctx;

	if (obs->dir != IMAP_C2S)
		return;
	w->secret_rest_units += obs->secret_rest;
	imap_observation_mask_wire(obs, w->pending, w->pending_len, w->unit_off);
	wire_put(w, w->pending, w->pending_len);
	w->pending_len = 0;
	w->unit_off = 0;
}

static struct wire wire;

/* Feeds client bytes (the server answering "+" to each synchronising
 * literal as it goes) with an observation limit of max_line; returns the
 * masked client stream in wire.out. */
static void run_wire(const uint8_t *c2s, size_t len, size_t max_line, unsigned flags,
		     size_t flush_every, size_t piece)
{
	struct imap_conv_config cfg = {.redact_flags = flags, .max_line = max_line,
				       .on_bytes = wire_bytes};
	struct imap_conv *conv;

	memset(&wire, 0, sizeof(wire));
	wire.flush_every = flush_every;
	conv = imap_conv_new(&cfg, wire_obs, &wire);
	for (size_t i = 0; i < len; i += piece) {
		size_t n = len - i < piece ? len - i : piece;

		imap_conv_feed(conv, IMAP_C2S, 1, IMAP_ORIGIN_PEER, c2s + i, n);
		if (c2s[i + n - 1] == '\n' && n >= 3 && c2s[i + n - 3] == '}')
			imap_conv_feed(conv, IMAP_S2C, 1, IMAP_ORIGIN_PEER, (const uint8_t *)"+ go\r\n", 6);
	}
	imap_conv_free(&conv);
}

/* Does any 8 bytes of secret show in hay? A long secret is looked for
 * at 256 places spread over it (every place would take quadratic time),
 * its last 8 bytes among them. */
static bool shows(const uint8_t *hay, size_t hay_len, const char *secret)
{
	size_t n = strlen(secret), step = n / 256 > 0 ? n / 256 : 1;

	if (n >= 8 && memmem(hay, hay_len, secret + n - 8, 8) != NULL)
		return true;
	for (size_t i = 0; i + 8 <= n; i += step)
		if (memmem(hay, hay_len, secret + i, 8) != NULL)
			return true;
	return false;
}

static char secret_buf[320 * 1024];

/* A secret of n letters and digits. */
static const char *make_secret(size_t n)
{
	static const char set[] = "QwErTy7UiOp3AsDfG9hJkL5zXcVbNm1";

	for (size_t i = 0; i < n; i++)
		secret_buf[i] = set[(i * 7 + i / 31) % (sizeof(set) - 1)];
	secret_buf[n] = '\0';
	return secret_buf;
}

static uint8_t session_buf[700 * 1024];

#define PASSWORD16 "Pw0rd-9sEcReT-42"

/* form with each "%s" replaced by secret and each "%zu" by its length. */
static size_t expand(const char *form, const char *secret)
{
	size_t n = 0, slen = strlen(secret);

	for (const char *p = form; *p != '\0'; p++) {
		if (strncmp(p, "%s", 2) == 0) {
			memcpy(session_buf + n, secret, slen);
			n += slen;
			p++;
		} else if (strncmp(p, "%p", 2) == 0) {
			memcpy(session_buf + n, PASSWORD16, 16);
			n += 16;
			p++;
		} else if (strncmp(p, "%zu", 3) == 0) {
			n += (size_t)sprintf((char *)session_buf + n, "%zu", slen);
			p += 2;
		} else {
			session_buf[n++] = (uint8_t)*p;
		}
	}
	return n;
}

/* Every credential form, with the secret at lengths around the
 * observation limit and far past it, masked in the wire bytes whatever
 * the output writes before a unit ends; --no-redact keeps it. */
static void test_cut_lines(void)
{
	/* %s: a run of the length under test; %p: a password of its own */
	static const char *const forms[] = {
		"a1 LOGIN alice %s\r\n",
		"a1 LOGIN \"alice\" \"%s\"\r\n",
		"a1 LOGIN alice {%zu}\r\n%s\r\n",
		"a1 LOGIN alice {%zu+}\r\n%s\r\n",
		"a1 LOGIN %s {16}\r\n%p\r\n",      /* the user name is the long one */
		"a1 LOGIN {%zu+}\r\n%s {16+}\r\n%p\r\n",
		"a1 LOGIN %s %p\r\n",
		"a1 AUTHENTICATE XOAUTH2 %s\r\n",
		"a1 AUTHENTICATE PLAIN\r\n%s\r\n",
		"a1 AUTHENTICATE GSSAPI\r\n%s\r\n%s\r\n",
		"a1 authenticate oauthbearer %s\r\n",
		"a1 UID FETCH 1 BODY[] a2 LOGIN alice %s\r\n", /* not a LOGIN: stays */
		"%s LOGIN alice %p\r\n",               /* a tag as long as that */
		"a1 AUTHENTICATE %s %p\r\n",           /* a mechanism name as long */
	};
	const size_t max_line = 64;
	const size_t lens[] = {8, max_line - 20, max_line - 1, max_line, max_line + 1, 300 * 1024};
	const size_t flushes[] = {0, 1, 7, 64, 4096};

	for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			const char *secret = make_secret(lens[l]);
			const char *form = forms[f];
			const char *hidden = strstr(form, "%p") != NULL ? PASSWORD16 : secret;
			bool clear_ok = strstr(form, "UID FETCH") != NULL;
			size_t n = expand(form, secret);

			/* the stream that --no-redact writes holds the secret */
			run_wire(session_buf, n, max_line, 0, 0, 65536);
			CHECK_MSG(wire.out_len == n && memcmp(wire.out, session_buf, n) == 0,
				  "form %zu len %zu: --no-redact changed the stream", f, lens[l]);
			for (size_t k = 0; k < sizeof(flushes) / sizeof(flushes[0]); k++) {
				run_wire(session_buf, n, max_line, IMAP_REDACT_CREDENTIALS,
					 flushes[k], k % 2 ? 1 : 65536);
				CHECK_MSG(wire.out_len == n, "form %zu len %zu: length %zu, not %zu", f,
					  lens[l], wire.out_len, n);
				if (clear_ok && flushes[k] == 0)
					CHECK_MSG(memcmp(wire.out, session_buf, n) == 0,
						  "form %zu len %zu: a line without credentials masked", f,
						  lens[l]);
				else if (!clear_ok)
					CHECK_MSG(!shows(wire.out, wire.out_len, hidden),
						  "form %zu len %zu flush %zu: the secret shows: %.*s", f, lens[l],
						  flushes[k], (int)(wire.out_len < 200 ? wire.out_len : 200),
						  (const char *)wire.out);
				/* the stream still ends in its lines' CRLF */
				CHECK_MSG(wire.out_len >= 2 && memcmp(wire.out + wire.out_len - 2, "\r\n", 2) == 0,
					  "form %zu len %zu flush %zu: CRLF lost: %.*s", f, lens[l], flushes[k], (int)(wire.out_len < 200 ? wire.out_len : 200),
						  (const char *)wire.out);
			}
		}
	}
	/* the tag and command of a cut LOGIN stay readable */
	run_wire((const uint8_t *)"a1 LOGIN alice QwErTy7UiOp3AsDfG9hJkL5zXcVbNm1QwErTy7UiOp3AsDfG9hJkL5z\r\n",
		 72, 64, IMAP_REDACT_CREDENTIALS, 0, 65536);
	CHECK_MSG(wire.out_len == 72 && memcmp(wire.out, "a1 LOGIN ****", 13) == 0, "cut LOGIN: %.*s",
		  (int)wire.out_len, (const char *)wire.out);
	CHECK(wire.secret_rest_units == 1);
}

/* What an output that must write before a unit ends learns from its start. */
static void test_secret_from(void)
{
	struct imap_redact *r = imap_redact_new(IMAP_REDACT_CREDENTIALS);
	static const struct {
		const char *prefix;
		uint64_t from;
	} prefixes[] = {
		{"a1 LOGIN alice", 9},
		{"a1 login alice pw", 9},
		{"a1 LOG", 0},                      /* cannot tell yet */
		{"a1", 0},
		{"a1 AUTHENTICATE PLAIN AGFs", 22},
		{"a1 AUTHENTICATE XOAU", 16},
		{"a1 SELECT INBOX", IMAP_REDACT_NONE},
		{"a1 LOGOUT\r\n", IMAP_REDACT_NONE},
		{"DONE\r\n", IMAP_REDACT_NONE},
		{"* OK\r\n", IMAP_REDACT_NONE},
	};

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		uint64_t got = imap_redact_secret_from(r, IMAP_C2S, false, false,
						       (const uint8_t *)prefixes[i].prefix,
						       strlen(prefixes[i].prefix));

		CHECK_MSG(got == prefixes[i].from, "%s: %llu, not %llu", prefixes[i].prefix,
			  (unsigned long long)got, (unsigned long long)prefixes[i].from);
	}
	/* inside an exchange every line is secret; the server's never */
	CHECK(imap_redact_secret_from(r, IMAP_C2S, false, true, (const uint8_t *)"a2 NOOP", 7) == 0);
	CHECK(imap_redact_secret_from(r, IMAP_S2C, false, false, (const uint8_t *)"a1 LOGIN x", 10) ==
	      IMAP_REDACT_NONE);
	imap_redact_free(&r);
	r = imap_redact_new(0);
	CHECK(imap_redact_secret_from(r, IMAP_C2S, false, false, (const uint8_t *)"a1 LOGIN x", 10) ==
	      IMAP_REDACT_NONE);
	imap_redact_free(&r);
}

int main(void)
{
	test_cases();
	test_bodies();
	test_secret_from();
	test_cut_lines();
	return check_finish("redact");
}
