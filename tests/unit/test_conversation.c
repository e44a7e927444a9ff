/* The conversation pipeline: both directions together, where one side's
 * answer changes how the other side's bytes are framed. */
#include <string.h>

#include "check.h"
#include "imap/conversation.h"

struct log {
	char text[4096];
	size_t len;
	int completions;
};

static void on_obs(void *ctx, const struct imap_observation *obs)
{
	struct log *l = ctx;
	const char *kind = obs->info == NULL ? "data" : imap_line_class_str(obs->info->cls);
	size_t n = strlen(kind);

	if (l->len + n + 2 < sizeof(l->text)) {
		memcpy(l->text + l->len, kind, n);
		l->len += n;
		l->text[l->len++] = obs->dir == IMAP_C2S ? '>' : '<';
		l->text[l->len++] = ' ';
		l->text[l->len] = '\0';
	}
	l->completions += obs->completion != NULL;
}

static void feed(struct imap_conv *c, enum imap_dir dir, const char *s)
{
	imap_conv_feed(c, dir, 0, IMAP_ORIGIN_PEER, (const uint8_t *)s, strlen(s));
}

static void test_refused_sync_literal(void)
{
	struct imap_conv_config cfg = {0};
	struct log l = {0};
	struct imap_conv *c = imap_conv_new(&cfg, on_obs, &l);

	feed(c, IMAP_C2S, "a1 APPEND INBOX {99999999}\r\n");
	feed(c, IMAP_S2C, "a1 NO [TOOBIG] message too large\r\n");
	feed(c, IMAP_C2S, "a2 NOOP\r\n");
	feed(c, IMAP_S2C, "a2 OK done\r\n");
	CHECK_MSG(strcmp(l.text, "command> tagged< command> tagged< ") == 0, "got %s", l.text);
	CHECK(l.completions == 2);
	CHECK(imap_framer_literal_left(imap_conv_framer(c, IMAP_C2S)) == 0);
	imap_conv_free(&c);
}

static void test_accepted_sync_literal(void)
{
	struct imap_conv_config cfg = {0};
	struct log l = {0};
	struct imap_conv *c = imap_conv_new(&cfg, on_obs, &l);

	feed(c, IMAP_C2S, "a1 APPEND INBOX {5}\r\n");
	feed(c, IMAP_S2C, "+ go ahead\r\n");
	feed(c, IMAP_C2S, "hello");
	feed(c, IMAP_S2C, "a1 NO [TOOBIG] too late to refuse\r\n");
	feed(c, IMAP_C2S, "\r\n");
	CHECK_MSG(strcmp(l.text, "command> continuation< data> tagged< continued> ") == 0, "got %s", l.text);
	imap_conv_free(&c);
}

static void test_nonsync_literal_not_cancelled(void)
{
	struct imap_conv_config cfg = {0};
	struct log l = {0};
	struct imap_conv *c = imap_conv_new(&cfg, on_obs, &l);

	/* LITERAL+ sends the bytes at once; a NO must not change the framing */
	feed(c, IMAP_C2S, "a1 APPEND INBOX {7+}\r\n");
	feed(c, IMAP_S2C, "a1 NO [TOOBIG] no\r\n");
	feed(c, IMAP_C2S, "a2 NOOP\r\n");
	CHECK_MSG(strcmp(l.text, "command> tagged< data> continued> ") == 0, "got %s", l.text);
	imap_conv_free(&c);
}

static void test_literal_after_server_pipeline_tag(void)
{
	struct imap_conv_config cfg = {0};
	struct log l = {0};
	struct imap_conv *c = imap_conv_new(&cfg, on_obs, &l);

	/* a completion of another command does not cancel the literal */
	feed(c, IMAP_C2S, "a0 NOOP\r\na1 APPEND INBOX {3}\r\n");
	feed(c, IMAP_S2C, "a0 OK done\r\n+ ok\r\n");
	feed(c, IMAP_C2S, "abc\r\n");
	CHECK_MSG(strcmp(l.text, "command> command> tagged< continuation< data> continued> ") == 0,
		  "got %s", l.text);
	imap_conv_free(&c);
}

int main(void)
{
	test_refused_sync_literal();
	test_accepted_sync_literal();
	test_nonsync_literal_not_cancelled();
	test_literal_after_server_pipeline_tag();
	return check_finish("conversation");
}
