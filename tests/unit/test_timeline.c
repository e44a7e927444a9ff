/* Timeline rows: format, literal summaries, completions, masking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/timeline.h"
#include "check.h"
#include "tests/lib/terminal_safe.h"

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
	struct capture_session_info info = {.id = 7, .ts = 0, .upstream_tls = "plain"};
	struct capture_close_info close = {.id = 7, .ts = 2500000, .opened = 0, .by = CAPTURE_SIDE_CLIENT,
					   .reason = "EOF", .bytes = {100, 2048}};
	const char *body = "0123456789";
	char *text;
	imap_time_us t0 = 1700000000000000LL;

	CHECK(capture_endpoint_parse("127.0.0.1:5000", &info.client));
	CHECK(capture_endpoint_parse("127.0.0.1:143", &info.upstream));
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

/* Hostile bytes in every string a row shows, with and without colour:
 * the rows hold no control byte but '\n' and no ESC but the timeline's
 * own colour codes (tests/lib/terminal_safe.h). */
static const char HOSTILE[] = "\x1b[31m\x1b]0;title\x07\x1b]8;;http://x\x1b\\\x1b]52;c;Zm9v\x07"
			      "\x9b" "31m\xc2\x9b\x07\x08\r\xff\xe2\x80\xa8\xe2\x80\xae";

/* src cut to what dst holds */
static void fill(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src) < size - 1 ? strlen(src) : size - 1;

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void hostile_rows(bool color)
{
	FILE *out = tmpfile();
	struct capture_timeline_config tc = {.out = out, .color = color};
	struct imap_conv_config cc = {.redact_flags = IMAP_REDACT_CREDENTIALS};
	struct imap_conv *conv;
	struct capture_session_info info = {.id = 7, .ts = 0, .upstream_tls = HOSTILE};
	struct capture_close_info close = {.id = 7, .ts = 2500000, .by = CAPTURE_SIDE_CLIENT, .reason = HOSTILE};
	struct capture_tls_info tls = {.leg = "client", .version = HOSTILE, .cipher = HOSTILE,
				       .sni = HOSTILE, .peer = HOSTILE};
	struct capture_tls_info up = {.leg = "upstream", .version = "TLSv1.3", .cipher = HOSTILE,
				      .sni = HOSTILE, .peer = HOSTILE};
	struct capture_fault_mark mark = {.ts = 1, .action = HOSTILE, .phase = HOSTILE,
					  .dir = IMAP_S2C, .spec = HOSTILE, .detail = HOSTILE};
	struct imap_anomaly a = {.rule = (enum imap_rule)(IMAP_RULE_COUNT - 1), .severity = IMAP_SEVERITY_INFO};
	struct imap_command_stats st[2] = {{.count = 1}, {.count = 3}};
	struct imap_summary sum = {.commands = st, .command_count = 2, .idles = 1,
				   .anomaly_total = 1};
	char line[512], shown[256], *text;
	long bad;
	int n;

	/* endpoints are numbers: nothing of a peer's choosing in them */
	fill(a.tag, sizeof(a.tag), HOSTILE);
	snprintf(a.detail, sizeof(a.detail), "untagged %s before the continuation", HOSTILE);
	fill(st[0].name, sizeof(st[0].name), HOSTILE);
	fill(st[1].name, sizeof(st[1].name), HOSTILE + 8);
	sum.anomalies[0] = 1;
	capture_sinks_add(&sinks, capture_timeline_new(&tc));
	conv = imap_conv_new(&cc, on_obs, NULL);
	capture_sinks_open(&sinks, &info);
	n = snprintf(line, sizeof(line), "%s X%s\r\n", HOSTILE, HOSTILE);
	imap_conv_feed(conv, IMAP_C2S, 1, IMAP_ORIGIN_PEER, (const uint8_t *)line, (size_t)n);
	n = snprintf(line, sizeof(line), "%s BAD [%s] no\r\n", HOSTILE, HOSTILE);
	imap_conv_feed(conv, IMAP_S2C, 2, IMAP_ORIGIN_PEER, (const uint8_t *)line, (size_t)n);
	imap_conv_feed(conv, IMAP_S2C, 3, IMAP_ORIGIN_PEER, (const uint8_t *)"a\0b\x1b\r\n", 6);
	capture_sinks_notice(&sinks, 7, 4, HOSTILE);
	capture_sinks_tls(&sinks, 7, 5, &tls);
	capture_sinks_tls(&sinks, 7, 5, &up);
	capture_sinks_anomaly(&sinks, 7, &a);
	capture_sinks_fault(&sinks, 7, &mark);
	capture_sinks_summary(&sinks, 7, 6, &sum);
	capture_sinks_close(&sinks, &close);
	capture_sinks_destroy(&sinks);
	imap_conv_free(&conv);
	text = read_all(out);
	bad = terminal_unsafe_at(text, strlen(text));
	/* the failure message itself goes through the gate */
	capture_escape(shown, sizeof(shown), text + (bad > 0 ? bad : 0),
		       strnlen(text + (bad > 0 ? bad : 0), 60), 0, NULL);
	CHECK_MSG(bad < 0, "colour %d: unsafe byte at %ld: %s", color, bad, shown);
	CHECK_MSG(strstr(text, "\\x1b[31m") != NULL, "the escaped form is not shown");
	CHECK_MSG(color == (strchr(text, '\033') != NULL), "colour codes only with colour");
	free(text);
	fclose(out);
}

/* A row longer than the row buffer (a summary of many hostile command
 * names, an anomaly detail of escapes) is cut between whole escapes, and
 * still resets its colour and ends its line. */
static void long_rows(void)
{
	static struct imap_command_stats st[200];
	FILE *out = tmpfile();
	struct capture_timeline_config tc = {.out = out, .color = true};
	struct imap_summary sum = {.commands = st, .command_count = 200, .anomaly_total = 0};
	struct imap_anomaly a = {.rule = (enum imap_rule)0, .severity = IMAP_SEVERITY_WARNING};
	char *text;

	for (size_t i = 0; i < 200; i++) {
		st[i].count = 1;
		memset(st[i].name, 0x9b, sizeof(st[i].name) - 1);
	}
	memset(a.detail, 0x1b, sizeof(a.detail) - 1);
	capture_sinks_add(&sinks, capture_timeline_new(&tc));
	capture_sinks_summary(&sinks, 7, 0, &sum);
	capture_sinks_anomaly(&sinks, 7, &a);
	capture_sinks_destroy(&sinks);
	text = read_all(out);
	CHECK(terminal_unsafe_at(text, strlen(text)) < 0);
	CHECK_MSG(strlen(text) > 8192 && strlen(text) < 2 * 8192 + 256, "%zu", strlen(text));
	CHECK(text[strlen(text) - 1] == '\n');
	CHECK_MSG(strstr(text, "\\\n") == NULL && strstr(text, "\\x\n") == NULL &&
		  strstr(text, "\\x9\n") == NULL, "an escape is never cut");
	free(text);
	fclose(out);
}

int main(void)
{
	test_rows();
	hostile_rows(false);
	hostile_rows(true);
	long_rows();
	return check_finish("timeline");
}
