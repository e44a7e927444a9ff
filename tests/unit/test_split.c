/* Write boundaries: each mode's cuts, the same cuts for the same seed,
 * other cuts for another, and every bad spec refused with its reason. */
#include <string.h>

#include "check.h"
#include "imap/split.h"

static struct imap_split parse_ok(const char *spec)
{
	struct imap_split s;
	char err[256] = "";

	CHECK_MSG(imap_split_parse(spec, strlen(spec), &s, err, sizeof(err)) == 0, "%s: %s", spec,
		  err);
	return s;
}

static void test_modes(void)
{
	struct imap_split s = parse_ok("byte");
	char text[32];

	CHECK(imap_split_next(&s, 100) == 1);
	CHECK(imap_split_next(&s, 0) == 0);
	s = parse_ok("coalesce");
	CHECK(imap_split_next(&s, 100) == 100);
	s = parse_ok("random:42");
	imap_split_describe(&s, text, sizeof(text));
	CHECK(strcmp(text, "random:42") == 0);
	s = parse_ok("random");
	imap_split_describe(&s, text, sizeof(text));
	CHECK(strcmp(text, "random:1") == 0);
}

/* Cuts a 100,000-byte stream; returns how many writes it took and
 * records the first sizes. */
static size_t cut(const char *spec, size_t first[8])
{
	struct imap_split s = parse_ok(spec);
	size_t left = 100000, writes = 0, one_byte = 0, over_16 = 0;

	while (left > 0) {
		size_t n = imap_split_next(&s, left);

		CHECK(n >= 1 && n <= left);
		if (writes < 8)
			first[writes] = n;
		one_byte += n == 1;
		over_16 += n > 16;
		left -= n;
		writes++;
	}
	/* short cuts dominate, long ones happen */
	CHECK_MSG(one_byte > 0 && over_16 > 0, "%s: %zu one-byte, %zu long writes", spec, one_byte,
		  over_16);
	return writes;
}

static void test_random_is_repeatable(void)
{
	size_t a[8], b[8], c[8];
	size_t na = cut("random:7", a), nb = cut("random:7", b), nc = cut("random:8", c);

	CHECK(na == nb && memcmp(a, b, sizeof(a)) == 0);
	CHECK(na != nc || memcmp(a, c, sizeof(a)) != 0);
}

static void test_bad_specs(void)
{
	static const char *const bad[] = {"", "bytes", "random:", "random:x", "random:-1",
					  "random:99999999999999999999999", "coalesce:3"};
	struct imap_split s;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_MSG(imap_split_parse(bad[i], strlen(bad[i]), &s, err, sizeof(err)) == -1,
			  "'%s' accepted", bad[i]);
		CHECK_MSG(strstr(err, "byte, random, random:SEED or coalesce") != NULL, "%s: %s",
			  bad[i], err);
	}
}

int main(void)
{
	test_modes();
	test_random_is_repeatable();
	test_bad_specs();
	return check_finish("split");
}
