/* libFuzzer target: the grammar through the framer and the logical-line
 * assembler, and through the protocol checker. The first byte picks the
 * direction and a split point; the rest is the stream. Checks that the
 * whole stream and the same stream split give the same verdicts, that
 * every slice the parser gives lies inside its line, and that the checker
 * survives whatever comes (ASan and UBSan watch the rest). */
#include <stdlib.h>
#include <string.h>

#include "imap/classify.h"
#include "imap/framer.h"
#include "imap/logical.h"
#include "imap/parse.h"
#include "imap/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	enum imap_dir dir;
	struct imap_logical *logical;
	struct imap_protocol *protocol;
	uint64_t digest; /* of every verdict, in order */
};

static void check_slice(struct imap_slice s, const struct imap_logical_line *line)
{
	if (s.len == 0)
		return;
	if (s.p < line->data || s.p > line->data + line->len ||
	    s.len > (size_t)(line->data + line->len - s.p))
		abort();
}

static void on_unit(void *ctx, const struct imap_unit *unit)
{
	struct run *r = ctx;
	struct imap_logical_line line;
	struct imap_line_info info;
	struct imap_parsed p;

	if (unit->kind != IMAP_UNIT_LITERAL_DATA) {
		imap_classify(r->dir, unit->data, unit->len, (unit->flags & IMAP_UNIT_CONTINUED) != 0,
			      false, &info);
		imap_protocol_unit(r->protocol, r->dir, 0, unit, &info, IMAP_PROTOCOL_QUOTABLE);
	} else {
		imap_protocol_unit(r->protocol, r->dir, 0, unit, NULL, 0);
	}
	if (!imap_logical_feed(r->logical, unit, true, &line))
		return;
	if (r->dir == IMAP_S2C)
		imap_parse_response(line.data, line.len, line.lits, line.nlits, &p);
	else
		imap_parse_command(line.data, line.len, line.lits, line.nlits, &p);
	check_slice(p.text, &line);
	check_slice(p.mailbox, &line);
	check_slice(p.code_name, &line);
	if (!p.ok && p.error_at > line.len)
		abort();
	r->digest = r->digest * 31 + (uint64_t)p.checked * 7 + (uint64_t)p.ok * 3 +
		    (p.ok ? 0 : (uint64_t)p.error * 11 + p.error_at) + p.kind + p.number;
}

static void on_anomaly(void *ctx, const struct imap_anomaly *a)
{
	(void)ctx;
	if (memchr(a->detail, '\0', sizeof(a->detail)) == NULL)
		abort();
}

static uint64_t run(enum imap_dir dir, const uint8_t *data, size_t size, size_t split)
{
	struct run r = {.dir = dir};
	struct imap_framer *f = imap_framer_new(dir, 512, on_unit, &r);

	r.logical = imap_logical_new();
	r.protocol = imap_protocol_new(on_anomaly, NULL);
	if (f == NULL || r.logical == NULL || r.protocol == NULL)
		abort();
	imap_framer_feed(f, data, split);
	imap_framer_feed(f, data + split, size - split);
	imap_framer_free(&f);
	imap_logical_free(&r.logical);
	imap_protocol_free(&r.protocol);
	return r.digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum imap_dir dir;
	uint8_t *copy;
	size_t len, split;

	if (size < 1)
		return 0;
	dir = (data[0] & 1) ? IMAP_S2C : IMAP_C2S;
	len = size - 1;
	copy = malloc(len ? len : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data + 1, len);
	split = len ? (data[0] >> 1) % (len + 1) : 0;
	if (run(dir, copy, len, 0) != run(dir, copy, len, split))
		abort();
	free(copy);
	return 0;
}
