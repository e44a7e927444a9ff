/* The grammar (imap/parse.h) through the framer and the logical-line
 * assembler, as the conversation uses it. Real lines from several servers
 * and clients (tests/unit/data: server-lines.txt, client-lines.txt) must parse; hostile and broken
 * ones must fail in the element named, at the byte named. Every case is fed
 * whole, one byte at a time and split at every point: all must agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap/framer.h"
#include "imap/logical.h"
#include "imap/parse.h"

struct result {
	int lines;
	bool checked, ok;
	enum imap_element error;
	uint64_t error_at; /* offset in the logical line */
	enum imap_resp_kind kind;
	enum imap_cmd cmd;
	enum imap_code code;
	uint64_t code_number, number, fetch_uid, fetch_modseq, vanished_count, seq_max;
	bool fetch_uid_present;
	unsigned uses;
	imap_capset caps, enable;
};

struct feed {
	enum imap_dir dir;
	struct imap_logical *logical;
	struct result r;
};

static void on_unit(void *ctx, const struct imap_unit *unit)
{
	struct feed *f = ctx;
	struct imap_logical_line line;
	struct imap_parsed p;

	if (!imap_logical_feed(f->logical, unit, true, &line))
		return;
	f->r.lines++;
	if (!line.checkable) {
		f->r.checked = false;
		return;
	}
	if (f->dir == IMAP_S2C)
		imap_parse_response(line.data, line.len, line.lits, line.nlits, &p);
	else
		imap_parse_command(line.data, line.len, line.lits, line.nlits, &p);
	f->r.checked = p.checked;
	f->r.ok = p.ok;
	f->r.error = p.error;
	f->r.error_at = p.ok ? 0 : imap_logical_line_offset(&line, p.error_at);
	f->r.kind = p.kind;
	f->r.cmd = p.cmd;
	f->r.code = p.code;
	f->r.code_number = p.code_number;
	f->r.number = p.number;
	f->r.fetch_uid_present = p.fetch_uid_present;
	f->r.fetch_uid = p.fetch_uid;
	f->r.fetch_modseq = p.fetch_modseq;
	f->r.vanished_count = p.vanished_count;
	f->r.seq_max = p.seq.max;
	f->r.uses = p.uses;
	f->r.caps = p.caps;
	f->r.enable = p.enable;
}

/* Feeds data in pieces: step 0 whole, else step bytes at a time, or
 * split at one point when split > 0. */
static struct result run(enum imap_dir dir, const uint8_t *data, size_t len, size_t step,
			 size_t split)
{
	struct feed f = {.dir = dir};
	struct imap_framer *fr = imap_framer_new(dir, 0, on_unit, &f);

	f.logical = imap_logical_new();
	if (split > 0) {
		imap_framer_feed(fr, data, split);
		imap_framer_feed(fr, data + split, len - split);
	} else if (step == 0) {
		imap_framer_feed(fr, data, len);
	} else {
		for (size_t i = 0; i < len; i += step)
			imap_framer_feed(fr, data + i, len - i < step ? len - i : step);
	}
	imap_framer_free(&fr);
	imap_logical_free(&f.logical);
	return f.r;
}

static bool same(const struct result *a, const struct result *b)
{
	return a->lines == b->lines && a->checked == b->checked && a->ok == b->ok &&
	       (a->ok || (a->error == b->error && a->error_at == b->error_at)) &&
	       a->kind == b->kind && a->cmd == b->cmd && a->code == b->code &&
	       a->code_number == b->code_number && a->number == b->number &&
	       a->fetch_uid == b->fetch_uid && a->vanished_count == b->vanished_count &&
	       a->seq_max == b->seq_max && a->uses == b->uses && a->caps == b->caps;
}

/* Parses a case every way; returns the whole-fed result. */
static struct result all_ways(enum imap_dir dir, const uint8_t *data, size_t len,
			      const char *name)
{
	struct result whole = run(dir, data, len, 0, 0);
	struct result r = run(dir, data, len, 1, 0);

	CHECK_MSG(whole.lines == 1, "%s: %d logical lines", name, whole.lines);
	CHECK_MSG(same(&whole, &r), "%s: byte by byte differs", name);
	/* every split point of a short case, a sample of a long one */
	for (size_t at = 1; at < len; at += len > 2000 ? 97 : 1) {
		r = run(dir, data, len, 0, at);
		if (!same(&whole, &r)) {
			CHECK_MSG(0, "%s: split at %zu differs", name, at);
			break;
		}
	}
	return whole;
}

/* \r \n \\ \xHH escapes of the data files */
static size_t decode(const char *in, uint8_t *out)
{
	size_t n = 0;

	for (const char *p = in; *p != '\0'; p++) {
		if (*p != '\\' || p[1] == '\0') {
			out[n++] = (uint8_t)*p;
			continue;
		}
		p++;
		if (*p == 'r')
			out[n++] = '\r';
		else if (*p == 'n')
			out[n++] = '\n';
		else if (*p == 'x' && p[1] && p[2]) {
			char hex[3] = {p[1], p[2], 0};

			out[n++] = (uint8_t)strtoul(hex, NULL, 16);
			p += 2;
		} else
			out[n++] = (uint8_t)*p;
	}
	out[n++] = '\r';
	out[n++] = '\n';
	return n;
}

static int real_lines(const char *path, enum imap_dir dir)
{
	FILE *f = fopen(path, "r");
	static char text[300000];
	static uint8_t bytes[300000];
	int count = 0, lineno = 0;

	CHECK_MSG(f != NULL, "cannot open %s", path);
	if (f == NULL)
		return 0;
	while (fgets(text, sizeof(text), f) != NULL) {
		size_t n = strlen(text);
		char name[64];
		struct result r;

		lineno++;
		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			text[--n] = '\0';
		if (n == 0 || text[0] == '#')
			continue;
		/* DONE ends IDLE: the conversation never reads it as a command */
		if (dir == IMAP_C2S && strcmp(text, "DONE") == 0)
			continue;
		snprintf(name, sizeof(name), "%s:%d", strrchr(path, '/') + 1, lineno);
		n = decode(text, bytes);
		r = all_ways(dir, bytes, n, name);
		CHECK_MSG(r.checked && r.ok, "%s: %s at byte %llu: %.60s", name,
			  imap_element_str(r.error), (unsigned long long)r.error_at, text);
		count++;
	}
	fclose(f);
	return count;
}

struct bad {
	enum imap_dir dir;
	const char *line;
	enum imap_element element;
	uint64_t at;
};

static const struct bad bad_cases[] = {
	{IMAP_S2C, "* 0 FETCH (FLAGS ())", IMAP_EL_MESSAGE_DATA, 4},
	{IMAP_S2C, "* 1 FETCH (UID 0)", IMAP_EL_MSG_ATT, 15},
	{IMAP_S2C, "* 1 FETCH (FLAGS (\\\\Seen)", IMAP_EL_MSG_ATT, 24},
	{IMAP_S2C, "* OK [UIDVALIDITY abc] x", IMAP_EL_RESP_TEXT_CODE, 18},
	{IMAP_S2C, "* 1 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25\")", IMAP_EL_DATE_TIME, 45},
	{IMAP_S2C, "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 100))",
	 IMAP_EL_BODY, 63},
	{IMAP_S2C, "* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL))",
	 IMAP_EL_ENVELOPE, 56},
	{IMAP_S2C, "* 1 FETCH (ENVELOPE (NIL \"s\" ((NIL NIL \"a\") NIL) NIL NIL NIL NIL NIL "
		   "NIL NIL))",
	 IMAP_EL_ADDRESS, 42},
	{IMAP_S2C, "* LIST (\\\\Noselect) \"//\" foo", IMAP_EL_MAILBOX_LIST, 23},
	{IMAP_S2C, "* STATUS INBOX (MESSAGES x)", IMAP_EL_STATUS_ATT, 25},
	{IMAP_S2C, "* SEARCH 1 0", IMAP_EL_SEARCH, 11},
	{IMAP_S2C, "* VANISHED (EARLIER 1:5", IMAP_EL_VANISHED, 19},
	{IMAP_S2C, "a1 MAYBE done", IMAP_EL_RESPONSE, 3},
	{IMAP_S2C, "* CAPABILITY", IMAP_EL_CAPABILITY, 12},
	{IMAP_S2C, "* 3 EXISTS extra", IMAP_EL_CRLF, 10},
	{IMAP_S2C, "+OK", IMAP_EL_RESPONSE, 1},
	{IMAP_S2C, "* OK [ALERT text", IMAP_EL_RESP_TEXT_CODE, 16},
	{IMAP_S2C, "* 2 FETCH (BODY[1] {4}\r\nabc FLAGS ())", IMAP_EL_MSG_ATT, 28},
	{IMAP_S2C, "* 2 FETCH (MODSEQ 5)", IMAP_EL_MSG_ATT, 18},
	{IMAP_S2C, "* FLAGS (\\\\Seen \\x1b[31m)", IMAP_EL_ATOM, 15},
	{IMAP_S2C, "* ID (\"name\")", IMAP_EL_ID, 12},
	{IMAP_S2C, "* NAMESPACE ((\"\" \"/\")) NIL", IMAP_EL_NAMESPACE, 26},
	{IMAP_S2C, "* ESEARCH (TAG \"a\") MIN 0", IMAP_EL_ESEARCH, 24},
	{IMAP_S2C, "*  OK two spaces", IMAP_EL_ATOM, 2},
	/* Cyrus 3.6.1's STATUS MAILBOXID: bytes that are no objectid */
	{IMAP_S2C, "* STATUS INBOX (MESSAGES 0 MAILBOXID (\\x7f\\xd8-\\xcd\\xf7U))",
	 IMAP_EL_STATUS_ATT, 38},
	{IMAP_C2S, "a1 FETCH 1:x FLAGS", IMAP_EL_SEQUENCE_SET, 11},
	{IMAP_C2S, "a1 FETCH 0 FLAGS", IMAP_EL_SEQUENCE_SET, 9},
	{IMAP_C2S, "a1 SELECT", IMAP_EL_COMMAND, 9},
	{IMAP_C2S, "a1 STORE 1 +FLAGS", IMAP_EL_STORE_ATT, 17},
	{IMAP_C2S, "a1 LOGIN alice", IMAP_EL_COMMAND, 14},
	{IMAP_C2S, "a1 STATUS INBOX ()", IMAP_EL_ATOM, 17},
	{IMAP_C2S, "a1 SELECT INBOX (QRESYNC (0 5))", IMAP_EL_SELECT_PARAM, 26},
	{IMAP_C2S, "a1 FETCH 1 (FLAGS", IMAP_EL_FETCH_ATT, 17},
	{IMAP_C2S, "a1 ENABLE", IMAP_EL_CAPABILITY, 9},
	{IMAP_C2S, "a1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE x)", IMAP_EL_FETCH_ATT, 39},
	{IMAP_C2S, "+tag NOOP", IMAP_EL_TAG, 0},
	{IMAP_C2S, "a1 COPY 1:3", IMAP_EL_COMMAND, 11},
	{IMAP_C2S, "a1 SEARCH (OR SEEN", IMAP_EL_LIST, 18},
};

/* Facts the rules read, taken out right. */
static void facts(void)
{
	struct result r;
	const char *line;
	uint8_t buf[512];
	size_t n;

#define RUN(dir, text) (line = (text), n = decode(line, buf), all_ways(dir, buf, n, line))
	r = RUN(IMAP_S2C, "* OK [UIDVALIDITY 42] UIDs valid");
	CHECK(r.ok && r.kind == IMAP_RESP_STATUS && r.code == IMAP_CODE_UIDVALIDITY &&
	      r.code_number == 42);
	r = RUN(IMAP_S2C, "* OK [HIGHESTMODSEQ 0] x");
	CHECK(r.ok && r.code == IMAP_CODE_HIGHESTMODSEQ && r.code_number == 0);
	r = RUN(IMAP_S2C, "* 12 FETCH (UID 99 MODSEQ (7) FLAGS (\\Seen))");
	CHECK(r.ok && r.kind == IMAP_RESP_FETCH && r.number == 12 && r.fetch_uid_present &&
	      r.fetch_uid == 99 && r.fetch_modseq == 7);
	r = RUN(IMAP_S2C, "* 3 FETCH (FLAGS ())");
	CHECK(r.ok && !r.fetch_uid_present);
	r = RUN(IMAP_S2C, "* 4800 UIDFETCH (FLAGS (\\\\Seen) MODSEQ (9))");
	CHECK(r.ok && r.kind == IMAP_RESP_UIDFETCH && r.fetch_uid == 4800);
	r = RUN(IMAP_S2C, "a1 NO [UIDREQUIRED] Message numbers are not allowed once UIDONLY is enabled");
	CHECK(r.ok && r.kind == IMAP_RESP_TAGGED && r.code == IMAP_CODE_OTHER);
	r = RUN(IMAP_S2C, "* OK [NOTIFICATIONOVERFLOW] ...A lot of events...");
	CHECK(r.ok && r.kind == IMAP_RESP_STATUS);
	r = RUN(IMAP_S2C, "* VANISHED 1:3,7");
	CHECK(r.ok && r.kind == IMAP_RESP_VANISHED && r.vanished_count == 4);
	r = RUN(IMAP_S2C, "* 5 EXISTS");
	CHECK(r.ok && r.kind == IMAP_RESP_EXISTS && r.number == 5);
	r = RUN(IMAP_S2C, "* CAPABILITY IMAP4rev1 LITERAL+ idle MOVE AUTH=PLAIN");
	CHECK(r.ok && IMAP_CAPSET_HAS(r.caps, IMAP_CAP_LITERAL_PLUS) &&
	      IMAP_CAPSET_HAS(r.caps, IMAP_CAP_IDLE) && IMAP_CAPSET_HAS(r.caps, IMAP_CAP_MOVE) &&
	      !IMAP_CAPSET_HAS(r.caps, IMAP_CAP_QRESYNC));
	r = RUN(IMAP_S2C, "* ENABLED QRESYNC");
	CHECK(r.ok && r.kind == IMAP_RESP_ENABLED && IMAP_CAPSET_HAS(r.caps, IMAP_CAP_QRESYNC));
	r = RUN(IMAP_C2S, "a1 UID FETCH 1:5 (FLAGS) (CHANGEDSINCE 5 VANISHED)");
	CHECK(r.ok && r.cmd == IMAP_CMD_FETCH && r.seq_max == 5 &&
	      r.uses == (IMAP_USE_CHANGEDSINCE | IMAP_USE_VANISHED));
	r = RUN(IMAP_C2S, "a2 SEARCH RETURN (MIN COUNT) UNSEEN");
	CHECK(r.ok && r.cmd == IMAP_CMD_SEARCH && (r.uses & IMAP_USE_SEARCH_RETURN));
	r = RUN(IMAP_C2S, "a3 FETCH $ (FLAGS)");
	CHECK(r.ok && (r.uses & IMAP_USE_SEARCHRES));
	r = RUN(IMAP_C2S, "a4 SELECT \"Gr\\xc3\\xbc\\xc3\\x9fe\"");
	CHECK(r.ok && r.cmd == IMAP_CMD_SELECT && (r.uses & IMAP_USE_UTF8));
	r = RUN(IMAP_C2S, "a5 ENABLE QRESYNC CONDSTORE");
	CHECK(r.ok && r.cmd == IMAP_CMD_ENABLE && IMAP_CAPSET_HAS(r.enable, IMAP_CAP_QRESYNC) &&
	      IMAP_CAPSET_HAS(r.enable, IMAP_CAP_CONDSTORE));
	r = RUN(IMAP_C2S, "a6 APPEND INBOX (\\Seen) ~{5}\r\nab\\x00\\x01z");
	CHECK(r.ok && r.cmd == IMAP_CMD_APPEND && (r.uses & IMAP_USE_BINARY));
	r = RUN(IMAP_C2S, "a7 STORE 4 (UNCHANGEDSINCE 9) +FLAGS.SILENT (\\Deleted)");
	CHECK(r.ok && r.cmd == IMAP_CMD_STORE && r.seq_max == 4 &&
	      (r.uses & IMAP_USE_UNCHANGEDSINCE));
	r = RUN(IMAP_C2S, "a8 SELECT {5}\r\nINBOX (CONDSTORE)");
	CHECK(r.ok && r.cmd == IMAP_CMD_SELECT && (r.uses & IMAP_USE_CONDSTORE_PARAM));
#undef RUN
}

/* Nesting past the bound is not a syntax error of the peer: unchecked. */
static void deep(void)
{
	static uint8_t buf[4096];
	size_t n = 0;
	struct result r;

	n += (size_t)sprintf((char *)buf, "* 1 FETCH (X-DEEP ");
	for (int i = 0; i < 200; i++)
		buf[n++] = '(';
	for (int i = 0; i < 200; i++)
		buf[n++] = ')';
	buf[n++] = ')';
	buf[n++] = '\r';
	buf[n++] = '\n';
	r = run(IMAP_S2C, buf, n, 0, 0);
	CHECK(r.lines == 1 && !r.checked);
}

int main(int argc, char **argv)
{
	char path[1024];
	int servers, clients;

	if (argc < 2) {
		fprintf(stderr, "usage: test_parse DATA-DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/server-lines.txt", argv[1]);
	servers = real_lines(path, IMAP_S2C);
	snprintf(path, sizeof(path), "%s/client-lines.txt", argv[1]);
	clients = real_lines(path, IMAP_C2S);
	printf("real lines: %d server, %d client\n", servers, clients);
	CHECK_MSG(servers >= 150, "only %d real server lines", servers);
	CHECK_MSG(clients >= 50, "only %d real client lines", clients);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad *b = &bad_cases[i];
		uint8_t buf[512];
		size_t n = decode(b->line, buf);
		struct result r = all_ways(b->dir, buf, n, b->line);

		CHECK_MSG(r.checked && !r.ok && r.error == b->element && r.error_at == b->at,
			  "%s: got %s at %llu (ok %d), want %s at %llu", b->line,
			  r.ok ? "-" : imap_element_str(r.error), (unsigned long long)r.error_at, r.ok,
			  imap_element_str(b->element), (unsigned long long)b->at);
	}
	facts();
	deep();
	return check_finish("parse");
}
