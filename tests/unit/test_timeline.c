/* Timeline rows: format, literal summaries, completions, masking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/timeline.h"
#include "check.h"

static struct capture_sinks sinks;

static void on_obs(void *ctx, const struct imap_observation *obs)
{
	(void)ctx;
	capture_sinks_observe(&sinks, 7, obs);
}

static char *read_all(FILE *f)
{
	long n;
	char *s;

	fflush(f);
	n = ftell(f);
	s = calloc(1, (size_t)n + 1);
	rewind(f);
	if (fread(s, 1, (size_t)n, f) != (size_t)n)
		s[0] = '\0';
	return s;
}

static void test_rows(void)
{
	FILE *out = tmpfile();
	struct capture_timeline_config tc = {.out = out, .color = false};
	struct imap_conv_config cc = {.redact_flags = IMAP_REDACT_CREDENTIALS};
	struct imap_conv *conv;
	struct capture_session_info info = {.id = 7, .ts = 0, .client = "127.0.0.1:5000",
					     .upstream = "127.0.0.1:143", .upstream_tls = "plain"};
	struct capture_close_info close = {.id = 7, .ts = 2500000, .opened = 0, .by = "client",
					   .reason = "EOF", .bytes = {100, 2048}};
	const char *body = "0123456789";
	char *text;
	imap_time_us t0 = 1700000000000000LL;

	capture_sinks_add(&sinks, capture_timeline_new(&tc));
	conv = imap_conv_new(&cc, on_obs, NULL);
	capture_sinks_open(&sinks, &info);
	imap_conv_feed(conv, IMAP_C2S, t0, IMAP_ORIGIN_PEER, (const uint8_t *)"a1 LOGIN bob pw12\r\n", 19);
	imap_conv_feed(conv, IMAP_S2C, t0 + 812, IMAP_ORIGIN_PEER, (const uint8_t *)"a1 OK hi\r\n", 10);
	imap_conv_feed(conv, IMAP_C2S, t0 + 1000, IMAP_ORIGIN_PEER, (const uint8_t *)"a2 FETCH 1 BODY[]\r\n", 19);
	imap_conv_feed(conv, IMAP_S2C, t0 + 2000, IMAP_ORIGIN_PEER, (const uint8_t *)"* 1 FETCH (BODY[] {10}\r\n", 24);
	imap_conv_feed(conv, IMAP_S2C, t0 + 2000, IMAP_ORIGIN_PEER, (const uint8_t *)body, 10);
	imap_conv_feed(conv, IMAP_S2C, t0 + 2000, IMAP_ORIGIN_PEER, (const uint8_t *)")\r\na2 OK done\r\n", 15);
	imap_conv_feed(conv, IMAP_C2S, t0 + 3000, IMAP_ORIGIN_PEER, (const uint8_t *)"a3 IDLE\r\n", 9);
	imap_conv_feed(conv, IMAP_S2C, t0 + 3100, IMAP_ORIGIN_PEER, (const uint8_t *)"+ idling\r\n", 10);
	imap_conv_feed(conv, IMAP_C2S, t0 + 3003000, IMAP_ORIGIN_PEER, (const uint8_t *)"DONE\r\n", 6);
	imap_conv_feed(conv, IMAP_S2C, t0 + 3003402, IMAP_ORIGIN_PEER, (const uint8_t *)"a3 OK Idle done\r\n", 17);
	imap_conv_feed(conv, IMAP_S2C, t0 + 3003500, IMAP_ORIGIN_PROXY, (const uint8_t *)"* BYE going\r\n", 13);
	imap_conv_feed(conv, IMAP_C2S, t0 + 3003600, IMAP_ORIGIN_PEER, (const uint8_t *)"a4 NO\x01OP\r\n", 10);
	capture_sinks_notice(&sinks, 7, t0, "upstream refused");
	capture_sinks_close(&sinks, &close);
	capture_sinks_destroy(&sinks);
	imap_conv_free(&conv);
	text = read_all(out);
	CHECK_MSG(strstr(text, " #7 -- open 127.0.0.1:5000 -> 127.0.0.1:143 (plain)\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 C> a1 LOGIN bob ****\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 S< a1 OK hi  (LOGIN 812 us)\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 S< * 1 FETCH (BODY[] {10}\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 S<    {10 bytes})\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, "0123456789") == NULL, "literal bytes are summarised");
	CHECK_MSG(strstr(text, " #7 S< a2 OK done  (FETCH 1.000 ms)\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 S< a3 OK Idle done  (IDLE 3.000 s, DONE->OK 402 us)\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 P< * BYE going\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 C> a4 NO\\x01OP\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 -- upstream refused\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, " #7 -- close by client (EOF) after 2.500 s; c2s 100 B, s2c 2.0 KiB\n") != NULL,
		  "%s", text);
	CHECK(strstr(text, "pw12") == NULL);
	CHECK(strchr(text, '\033') == NULL);
	/* every row starts with HH:MM:SS.uuuuuu */
	for (char *row = text; *row; row = strchr(row, '\n') + 1) {
		CHECK_MSG(row[2] == ':' && row[5] == ':' && row[8] == '.' && row[15] == ' ', "row: %.40s", row);
		if (strchr(row, '\n') == NULL)
			break;
	}
	free(text);
	fclose(out);
}

static void test_printable(void)
{
	char out[64];

	capture_printable(out, sizeof(out), (const uint8_t *)"a\r\n\0\xff", 5);
	CHECK(strcmp(out, "a\\x0d\\x0a\\x00\\xff") == 0);
	capture_printable(out, 6, (const uint8_t *)"abcdefgh", 8);
	CHECK(strcmp(out, "abcde") == 0);
	capture_printable(out, 6, (const uint8_t *)"ab\x01", 3);
	CHECK_MSG(strcmp(out, "ab") == 0, "an escape that does not fit is left out whole");
}

int main(void)
{
	test_rows();
	test_printable();
	return check_finish("timeline");
}
