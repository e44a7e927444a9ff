/* Framer cases from the RFCs and from real traffic. Every case is fed
 * whole, one byte at a time, and split at every point; all must give the
 * same units at the same offsets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap/framer.h"

struct render {
	char text[65536];
	size_t len;
	uint64_t next_offset;
	int offsets_ok;
	/* the tap: every byte, in order, each before the unit it completes */
	uint8_t tapped[8192];
	size_t tapped_len;
	int tap_ok;
};

static void on_tap(void *ctx, const uint8_t *data, size_t len)
{
	struct render *r = ctx;

	if (r->tapped_len + len > sizeof(r->tapped)) {
		r->tap_ok = 0;
		return;
	}
	memcpy(r->tapped + r->tapped_len, data, len);
	r->tapped_len += len;
}

static void put(struct render *r, const char *s)
{
	size_t n = strlen(s);

	if (r->len + n < sizeof(r->text)) {
		memcpy(r->text + r->len, s, n + 1);
		r->len += n;
	}
}

/* Kind letter, flag letters, literal size, ':', escaped bytes, '|'. */
static void on_unit(void *ctx, const struct imap_unit *u)
{
	static const struct {
		uint32_t flag;
		const char *letter;
	} flags[] = {
		{IMAP_UNIT_CONTINUED, "c"},      {IMAP_UNIT_TRUNCATED, "t"},
		{IMAP_UNIT_BARE_LF, "f"},        {IMAP_UNIT_OPEN_QUOTE, "q"},
		{IMAP_UNIT_NUL, "n"},            {IMAP_UNIT_BAD_LITERAL, "b"},
		{IMAP_UNIT_LITERAL_NONSYNC, "+"}, {IMAP_UNIT_LITERAL_BINARY, "~"},
		{IMAP_UNIT_LITERAL_END, "e"},
	};
	struct render *r = ctx;
	char buf[32];

	if (r->tapped_len != u->offset + u->wire_len)
		r->tap_ok = 0;

	put(r, u->kind == IMAP_UNIT_LINE ? "L" : u->kind == IMAP_UNIT_LITERAL_HEAD ? "H" : "D");
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (u->flags & flags[i].flag)
			put(r, flags[i].letter);
	if (u->kind == IMAP_UNIT_LITERAL_HEAD) {
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)u->literal_len);
		put(r, buf);
	}
	put(r, ":");
	for (size_t i = 0; i < u->len; i++) {
		uint8_t c = u->data[i];

		if (c == '\r')
			put(r, "\\r");
		else if (c == '\n')
			put(r, "\\n");
		else if (c == 0)
			put(r, "\\0");
		else if (c < 0x20 || c >= 0x7f) {
			snprintf(buf, sizeof(buf), "\\x%02x", c);
			put(r, buf);
		} else {
			buf[0] = (char)c;
			buf[1] = '\0';
			put(r, buf);
		}
	}
	put(r, "|");
	if (u->offset != r->next_offset)
		r->offsets_ok = 0;
	r->next_offset = u->offset + u->wire_len;
}

struct framer_case {
	const char *name;
	enum imap_dir dir;
	const char *input;
	size_t len; /* 0: strlen(input) */
	const char *expect;
};

#define C IMAP_C2S
#define S IMAP_S2C

static const struct framer_case cases[] = {
	{"simple command", C, "a1 NOOP\r\n", 0, "L:a1 NOOP\\r\\n|"},
	{"two commands in one read", C, "a1 NOOP\r\na2 CHECK\r\n", 0,
	 "L:a1 NOOP\\r\\n|L:a2 CHECK\\r\\n|"},
	{"empty line", C, "\r\n", 0, "L:\\r\\n|"},
	{"LOGIN with two literals", C, "a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n", 0,
	 "H5:a1 LOGIN {5}\\r\\n|De:alice|Hc6: {6}\\r\\n|De:secret|Lc:\\r\\n|"},
	{"LITERAL+ APPEND", C, "a APPEND INBOX {3+}\r\nabc\r\n", 0,
	 "H+3:a APPEND INBOX {3+}\\r\\n|De:abc|Lc:\\r\\n|"},
	{"binary literal with NUL", C, "a APPEND INBOX ~{3}\r\na\0c\r\n", 26,
	 "H~3:a APPEND INBOX ~{3}\\r\\n|D~e:a\\0c|Lc:\\r\\n|"},
	{"binary non-synchronising", C, "a APPEND X ~{3+}\r\nabc\r\n", 0,
	 "H+~3:a APPEND X ~{3+}\\r\\n|D~e:abc|Lc:\\r\\n|"},
	{"literal in FETCH response", S, "* 1 FETCH (BODY[] {5}\r\nhello)\r\n", 0,
	 "H5:* 1 FETCH (BODY[] {5}\\r\\n|De:hello|Lc:)\\r\\n|"},
	{"two literals in FETCH response", S,
	 "* 1 FETCH (BODY[HEADER] {2}\r\nab BODY[TEXT] {3}\r\ncde)\r\n", 0,
	 "H2:* 1 FETCH (BODY[HEADER] {2}\\r\\n|De:ab|Hc3: BODY[TEXT] {3}\\r\\n|De:cde|Lc:)\\r\\n|"},
	{"empty literal", S, "* 1 FETCH (BODY[] {0}\r\n)\r\n", 0,
	 "H0:* 1 FETCH (BODY[] {0}\\r\\n|Lc:)\\r\\n|"},
	{"literal holding CRLF and a tag", S, "* 1 FETCH (BODY[] {13}\r\nx\r\na1 OK ha\r\n)\r\n", 0,
	 "H13:* 1 FETCH (BODY[] {13}\\r\\n|De:x\\r\\na1 OK ha\\r\\n|Lc:)\\r\\n|"},
	{"literal then next command", C, "a X {1}\r\nz\r\nb NOOP\r\n", 0,
	 "H1:a X {1}\\r\\n|De:z|Lc:\\r\\n|L:b NOOP\\r\\n|"},
	{"LIST with literal mailbox", S, "* LIST (\\HasNoChildren) \"/\" {5}\r\nINBOX\r\n", 0,
	 "H5:* LIST (\\HasNoChildren) \"/\" {5}\\r\\n|De:INBOX|Lc:\\r\\n|"},
	{"literal announced, data not yet sent", C, "a X {4}\r\nab", 0, "H4:a X {4}\\r\\n|"},
	{"largest literal count", C, "a X {9223372036854775807}\r\n", 0,
	 "H9223372036854775807:a X {9223372036854775807}\\r\\n|"},
	{"braces inside quotes", C, "a1 SELECT \"{5}\"\r\n", 0, "L:a1 SELECT \"{5}\"\\r\\n|"},
	{"escaped quote then literal", C, "a1 LOGIN \"al\\\"ice\" {5}\r\n", 0,
	 "H5:a1 LOGIN \"al\\\"ice\" {5}\\r\\n|"},
	{"escaped backslash ends quote", C, "a X \"a\\\\\" {2}\r\nxy\r\n", 0,
	 "H2:a X \"a\\\\\" {2}\\r\\n|De:xy|Lc:\\r\\n|"},
	{"quoted braces in FETCH", S, "* 1 FETCH (FLAGS (\\Seen) BODY[] \"{5}\")\r\n", 0,
	 "L:* 1 FETCH (FLAGS (\\Seen) BODY[] \"{5}\")\\r\\n|"},
	{"unterminated quote hides marker", C, "a1 LOGIN alice \"pa{5}\r\n", 0,
	 "Lq:a1 LOGIN alice \"pa{5}\\r\\n|"},
	{"unterminated quote", C, "a1 SELECT \"INBOX\r\n", 0, "Lq:a1 SELECT \"INBOX\\r\\n|"},
	{"untagged OK text is no literal", S, "* OK hi {5}\r\n", 0, "L:* OK hi {5}\\r\\n|"},
	{"tagged OK text is no literal", S, "a1 OK done {5}\r\n", 0, "L:a1 OK done {5}\\r\\n|"},
	{"tagged NO text is no literal", S, "a1 NO [TOOBIG] {5}\r\n", 0,
	 "L:a1 NO [TOOBIG] {5}\\r\\n|"},
	{"continuation text is no literal", S, "+ {5}\r\n", 0, "L:+ {5}\\r\\n|"},
	{"bare continuation", S, "+\r\n", 0, "L:+\\r\\n|"},
	{"BYE text is no literal", S, "* BYE {3}\r\n", 0, "L:* BYE {3}\\r\\n|"},
	{"PREAUTH text is no literal", S, "* PREAUTH {3}\r\n", 0, "L:* PREAUTH {3}\\r\\n|"},
	{"lower-case ok is text", S, "* ok {3}\r\n", 0, "L:* ok {3}\\r\\n|"},
	{"quote in free text is no quote", S, "* NO [ALERT] \"unterminated\r\n", 0,
	 "L:* NO [ALERT] \"unterminated\\r\\n|"},
	{"quotes in response code", S, "* OK [BADCHARSET (\"UTF-8\")] {5}\r\n", 0,
	 "L:* OK [BADCHARSET (\"UTF-8\")] {5}\\r\\n|"},
	{"long keyword then literal", S, "* VERYLONGKEYWORD {2}\r\nab\r\n", 0,
	 "H2:* VERYLONGKEYWORD {2}\\r\\n|De:ab|Lc:\\r\\n|"},
	{"EXISTS", S, "* 5 EXISTS\r\n", 0, "L:* 5 EXISTS\\r\\n|"},
	{"capability", S, "* CAPABILITY IMAP4rev1 LITERAL+ IDLE\r\n", 0,
	 "L:* CAPABILITY IMAP4rev1 LITERAL+ IDLE\\r\\n|"},
	{"lone LF", C, "a1 NOOP\n", 0, "Lf:a1 NOOP\\n|"},
	{"literal after lone LF", C, "a X {2}\nab\r\n", 0, "Hf2:a X {2}\\n|De:ab|Lc:\\r\\n|"},
	{"CR in the middle", C, "a1 NO\rOP\r\n", 0, "L:a1 NO\\rOP\\r\\n|"},
	{"two CRs after marker", C, "a X {5}\r\r\n", 0, "L:a X {5}\\r\\r\\n|"},
	{"NUL outside literal", C, "a1 NO\0OP\r\n", 10, "Ln:a1 NO\\0OP\\r\\n|"},
	{"literal count overflows", C, "a X {99999999999999999999}\r\n", 0,
	 "Lb:a X {99999999999999999999}\\r\\n|"},
	{"count one above number64", C, "a X {9223372036854775808}\r\n", 0,
	 "Lb:a X {9223372036854775808}\\r\\n|"},
	{"non-digit count", C, "a X {abc}\r\n", 0, "Lb:a X {abc}\\r\\n|"},
	{"empty count", C, "a X {}\r\n", 0, "Lb:a X {}\\r\\n|"},
	{"plus before digits", C, "a X {+5}\r\n", 0, "Lb:a X {+5}\\r\\n|"},
	{"marker not at line end", C, "a X {5} foo\r\n", 0, "L:a X {5} foo\\r\\n|"},
	{"marker never closed", C, "a X {5+\r\n", 0, "L:a X {5+\\r\\n|"},
	{"tilde apart from brace", C, "a X ~ {2}\r\nab\r\n", 0,
	 "H2:a X ~ {2}\\r\\n|De:ab|Lc:\\r\\n|"},
	{"DONE", C, "DONE\r\n", 0, "L:DONE\\r\\n|"},
	{"garbage bytes", C, "\xff\xfe\x01\r\n", 0, "L:\\xff\\xfe\\x01\\r\\n|"},
	{"line without end is held", C, "a1 NOO", 0, ""},
	{"literal inside literal text untouched", C, "a X {5}\r\n{1}\r\n\r\n", 0,
	 "H5:a X {5}\\r\\n|De:{1}\\r\\n|Lc:\\r\\n|"},
	{"APPEND then IDLE pipelined", C, "a APPEND X {1+}\r\nx\r\nb IDLE\r\nDONE\r\n", 0,
	 "H+1:a APPEND X {1+}\\r\\n|De:x|Lc:\\r\\n|L:b IDLE\\r\\n|L:DONE\\r\\n|"},
};

static void run_feed(const struct framer_case *c, size_t len, const size_t *splits, size_t nsplits,
		     struct render *r)
{
	struct imap_framer *f = imap_framer_new(c->dir, 0, on_unit, r);
	size_t at = 0;

	imap_framer_set_tap(f, on_tap);
	r->tapped_len = 0;
	r->tap_ok = 1;
	r->len = 0;
	r->text[0] = '\0';
	r->next_offset = 0;
	r->offsets_ok = 1;
	for (size_t i = 0; i <= nsplits; i++) {
		size_t end = i < nsplits ? splits[i] : len;

		imap_framer_feed(f, (const uint8_t *)c->input + at, end - at);
		at = end;
	}
	CHECK_MSG(imap_framer_offset(f) == len, "%s: offset %llu, fed %zu", c->name,
		  (unsigned long long)imap_framer_offset(f), len);
	CHECK_MSG(r->tap_ok && r->tapped_len == len &&
			  memcmp(r->tapped, c->input, len) == 0,
		  "%s: tap gave %zu bytes (ok %d), fed %zu", c->name, r->tapped_len, r->tap_ok, len);
	imap_framer_free(&f);
	CHECK(f == NULL);
}

static void test_table(void)
{
	static struct render whole, part;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct framer_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->input);
		size_t *bytes = malloc((len ? len : 1) * sizeof(*bytes));

		run_feed(c, len, NULL, 0, &whole);
		CHECK_MSG(strcmp(whole.text, c->expect) == 0, "%s:\n  got    %s\n  wanted %s", c->name,
			  whole.text, c->expect);
		CHECK_MSG(whole.offsets_ok, "%s: unit offsets not contiguous", c->name);
		/* every two-piece split */
		for (size_t at = 1; at < len; at++) {
			run_feed(c, len, &at, 1, &part);
			CHECK_MSG(strcmp(part.text, whole.text) == 0, "%s split at %zu:\n  got    %s\n  wanted %s",
				  c->name, at, part.text, whole.text);
		}
		/* one byte at a time */
		for (size_t k = 0; k + 1 < len; k++)
			bytes[k] = k + 1;
		run_feed(c, len, bytes, len ? len - 1 : 0, &part);
		CHECK_MSG(strcmp(part.text, whole.text) == 0, "%s byte by byte:\n  got    %s\n  wanted %s",
			  c->name, part.text, whole.text);
		CHECK_MSG(part.offsets_ok, "%s byte by byte: offsets not contiguous", c->name);
		free(bytes);
	}
	CHECK_MSG(sizeof(cases) / sizeof(cases[0]) >= 40, "only %zu cases",
		  sizeof(cases) / sizeof(cases[0]));
}

/* Units of the big-input tests, summarised without their data. */
struct tally {
	size_t units;
	size_t lines;
	size_t data_units;
	uint64_t data_bytes;
	size_t max_len;
	uint64_t last_wire;
	uint32_t last_flags;
	uint64_t last_offset;
	uint64_t next_offset;
	int offsets_ok;
	int chunk_ok;
	uint8_t first_byte;
};

static void on_tally(void *ctx, const struct imap_unit *u)
{
	struct tally *t = ctx;

	t->units++;
	if (u->kind == IMAP_UNIT_LITERAL_DATA) {
		t->data_units++;
		t->data_bytes += u->wire_len;
		if (u->len != u->wire_len || u->len > IMAP_FRAMER_CHUNK ||
		    u->literal_offset % IMAP_FRAMER_CHUNK != 0)
			t->chunk_ok = 0;
	} else {
		t->lines++;
	}
	if (u->len > t->max_len)
		t->max_len = u->len;
	if (u->offset != t->next_offset)
		t->offsets_ok = 0;
	t->next_offset = u->offset + u->wire_len;
	t->last_wire = u->wire_len;
	t->last_flags = u->flags;
	t->last_offset = u->offset;
	t->first_byte = u->len ? u->data[0] : 0;
}

static void tally_reset(struct tally *t)
{
	memset(t, 0, sizeof(*t));
	t->offsets_ok = 1;
	t->chunk_ok = 1;
}

static void test_long_line_truncated_and_resync(void)
{
	const size_t limit = 1024, long_len = 100000;
	struct tally t;
	struct imap_framer *f;
	uint8_t *line = malloc(long_len);

	for (size_t step = 1; step <= 4096; step *= 8) {
		tally_reset(&t);
		f = imap_framer_new(IMAP_C2S, limit, on_tally, &t);
		memset(line, 'x', long_len);
		memcpy(line + long_len - 5, "{5}\r\n", 5); /* a marker at the end still counts */
		for (size_t at = 0; at < long_len; at += step)
			imap_framer_feed(f, line + at, at + step <= long_len ? step : long_len - at);
		imap_framer_feed(f, (const uint8_t *)"hello\r\nb NOOP\r\n", 15);
		CHECK_MSG(t.units == 4, "step %zu: %zu units", step, t.units);
		CHECK(t.max_len <= limit);
		CHECK(t.offsets_ok);
		CHECK_MSG(t.last_wire == 8 && t.first_byte == 'b', "resynchronised on the next line");
		imap_framer_free(&f);
	}
	/* a plain over-long line reports truncation and its full length */
	tally_reset(&t);
	f = imap_framer_new(IMAP_C2S, limit, on_tally, &t);
	memset(line, 'y', long_len);
	line[long_len - 2] = '\r';
	line[long_len - 1] = '\n';
	imap_framer_feed(f, line, long_len);
	CHECK(t.units == 1 && (t.last_flags & IMAP_UNIT_TRUNCATED) && t.last_wire == long_len);
	CHECK(t.max_len == limit);
	imap_framer_free(&f);
	free(line);
}

static void test_literal_chunks(void)
{
	const size_t size = 3 * IMAP_FRAMER_CHUNK + 8192;
	char head[64];
	uint8_t *data = malloc(size);
	struct tally whole, bytewise;
	struct imap_framer *f;
	int n = snprintf(head, sizeof(head), "* 1 FETCH (BODY[] {%zu}\r\n", size);

	memset(data, 'z', size);
	for (int pass = 0; pass < 2; pass++) {
		struct tally *t = pass ? &bytewise : &whole;

		tally_reset(t);
		f = imap_framer_new(IMAP_S2C, 0, on_tally, t);
		imap_framer_feed(f, (const uint8_t *)head, (size_t)n);
		if (pass == 0) {
			imap_framer_feed(f, data, size);
		} else {
			for (size_t i = 0; i < size; i++)
				imap_framer_feed(f, data + i, 1);
		}
		imap_framer_feed(f, (const uint8_t *)")\r\n", 3);
		CHECK(t->data_units == 4);
		CHECK(t->data_bytes == size);
		CHECK(t->chunk_ok);
		CHECK(t->offsets_ok);
		CHECK(t->lines == 2);
		imap_framer_free(&f);
	}
	CHECK(whole.units == bytewise.units && whole.next_offset == bytewise.next_offset);
	free(data);
}

static void test_huge_literal_is_counted_not_buffered(void)
{
	const char *head = "a APPEND INBOX {9223372036854775807}\r\n";
	const size_t block = 1 << 20;
	uint8_t *data = malloc(block);
	struct tally t;
	struct imap_framer *f;

	tally_reset(&t);
	f = imap_framer_new(IMAP_C2S, 0, on_tally, &t);
	memset(data, 'q', block);
	imap_framer_feed(f, (const uint8_t *)head, strlen(head));
	for (int i = 0; i < 64; i++) {
		imap_framer_feed(f, data, block - 1); /* misaligned with chunks */
		CHECK(imap_framer_pending(f) < IMAP_FRAMER_CHUNK);
	}
	CHECK(t.data_bytes + imap_framer_pending(f) == 64ull * (block - 1));
	CHECK(imap_framer_literal_left(f) == (uint64_t)INT64_MAX - 64ull * (block - 1));
	CHECK(t.chunk_ok);
	imap_framer_free(&f);
	free(data);
}

static void test_reset_restarts_line_state(void)
{
	struct render r = {0};
	struct imap_framer *f = imap_framer_new(IMAP_C2S, 0, on_unit, &r);

	r.offsets_ok = 1;
	imap_framer_feed(f, (const uint8_t *)"a X {100}\r\npartial", 18);
	imap_framer_reset(f);
	r.next_offset = 18;
	imap_framer_feed(f, (const uint8_t *)"b NOOP\r\n", 8);
	CHECK_MSG(strcmp(r.text, "H100:a X {100}\\r\\n|L:b NOOP\\r\\n|") == 0, "got %s", r.text);
	CHECK(r.offsets_ok);
	imap_framer_free(&f);
}

int main(void)
{
	test_table();
	test_long_line_truncated_and_resync();
	test_literal_chunks();
	test_huge_literal_is_counted_not_buffered();
	test_reset_restarts_line_state();
	return check_finish("framer");
}
