/* The escaping gate: what passes as is, what becomes \xNN, idempotence,
 * and cutting only between whole escapes. */
#include <stdio.h>
#include <string.h>

#include "capture/escape.h"
#include "check.h"

static const char *esc(const char *data, size_t len, unsigned flags)
{
	static char out[512];

	capture_escape(out, sizeof(out), data, len, flags, NULL);
	return out;
}

/* No control byte, no DEL, no byte >= 0x80 in s. */
static int safe(const char *s, unsigned flags)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n' && (flags & CAPTURE_ESCAPE_KEEP_NEWLINE))
			continue;
		if (c < 0x20 || c >= 0x7f)
			return 0;
	}
	return 1;
}

static void test_hostile_bytes(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
		{"a\r\n\0\xff", 5, "a\\x0d\\x0a\\x00\\xff"},
		{"\x1b[31mred", 8, "\\x1b[31mred"},                          /* CSI */
		{"\x1b]0;title\x07", 10, "\\x1b]0;title\\x07"},             /* OSC 0, BEL */
		{"\x1b]8;;http://x\x1b\\", 15, "\\x1b]8;;http://x\\x1b\\"}, /* OSC 8, ST */
		{"\x1b]52;c;Zm9v\x07", 12, "\\x1b]52;c;Zm9v\\x07"},         /* OSC 52 */
		{"\x9b" "31m", 4, "\\x9b31m"},                               /* C1 CSI */
		{"\xc2\x9b" "31m", 5, "\\xc2\\x9b31m"},                      /* U+009B */
		{"\xe2\x80\xa8", 3, "\\xe2\\x80\\xa8"},                      /* U+2028 */
		{"\xe2\x80\xae", 3, "\\xe2\\x80\\xae"},                      /* U+202E */
		{"\xe2\x81\xa6", 3, "\\xe2\\x81\\xa6"},                      /* U+2066 */
		{"\xc3\xa9", 2, "\\xc3\\xa9"},                               /* valid UTF-8 too */
		{"\xc3(", 2, "\\xc3("},                                      /* invalid UTF-8 */
		{"a\bb\x7f", 4, "a\\x08b\\x7f"},                             /* BS, DEL */
		{"~ \\x1b", 6, "~ \\x1b"},                                   /* text kept */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = esc(cases[i].in, cases[i].len, 0);

		CHECK_MSG(strcmp(got, cases[i].want) == 0, "case %zu: %s", i, got);
		CHECK_MSG(capture_escaped_len(cases[i].in, cases[i].len, 0) == strlen(cases[i].want),
			  "case %zu: length", i);
	}
}

static void test_every_byte(void)
{
	char all[256], out[1100], again[1100];

	for (int i = 0; i < 256; i++)
		all[i] = (char)i;
	CHECK(capture_escape(out, sizeof(out), all, 256, 0, NULL) == 95 + 161 * 4);
	CHECK(safe(out, 0));
	/* idempotent: escaped text goes through unchanged */
	capture_escape(again, sizeof(again), out, strlen(out), 0, NULL);
	CHECK(strcmp(out, again) == 0);
	capture_escape(out, sizeof(out), all, 256, CAPTURE_ESCAPE_KEEP_NEWLINE, NULL);
	CHECK(safe(out, CAPTURE_ESCAPE_KEEP_NEWLINE));
	CHECK(strchr(out, '\n') != NULL);
	CHECK(strstr(out, "\\x0d") != NULL);
	CHECK(strstr(out, "\\x0a") == NULL);
}

static void test_cutting(void)
{
	char out[8];
	size_t used;

	CHECK(capture_escape(out, 6, "abcdefgh", 8, 0, &used) == 5);
	CHECK(strcmp(out, "abcde") == 0 && used == 5);
	capture_escape(out, 6, "ab\x01", 3, 0, &used);
	CHECK_MSG(strcmp(out, "ab") == 0 && used == 2, "an escape that does not fit is left out whole");
	CHECK(capture_escape(out, 5, "\x01", 1, 0, &used) == 4 && used == 1);
	CHECK(capture_escape(out, 0, "a", 1, 0, &used) == 0 && used == 0);
	CHECK(capture_escape(out, 1, "a", 1, 0, &used) == 0 && used == 0 && out[0] == '\0');
}

int main(void)
{
	test_hostile_bytes();
	test_every_byte();
	test_cutting();
	return check_finish("escape");
}
