/* Masking through the whole conversation pipeline: every LOGIN and
 * AUTHENTICATE form keeps its length and loses its secret. */
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

int main(void)
{
	test_cases();
	test_bodies();
	return check_finish("redact");
}
