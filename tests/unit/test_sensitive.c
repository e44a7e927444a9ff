/* The finder of values to redact (imap/sensitive.h) on lines as a
 * capture may hold them: escapes, literals, long lines, terminal escape
 * sequences, broken structure. Each case runs a conversation through the
 * framer, as export does, and shows every byte of a span as '#' ('?'
 * for text replaced only where it repeats a value). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap/framer.h"
#include "imap/sensitive.h"

#define OUT_MAX (512u * 1024u)

struct run {
	struct imap_sens *sens;
	struct imap_framer *framer[2];
	enum imap_dir dir;
	uint8_t *unit[2]; /* bytes of the unit under way */
	size_t unit_len[2];
	char *out[2];     /* the marked streams */
	size_t out_len[2];
	unsigned kinds;   /* spans of these kinds are marked */
	bool bad_span;    /* a span out of order, empty or past the unit */
	size_t last_end, limit;
};

static void on_tap(void *ctx, const uint8_t *data, size_t len)
{
	struct run *r = ctx;

	CHECK(r->unit_len[r->dir] + len <= OUT_MAX);
	memcpy(r->unit[r->dir] + r->unit_len[r->dir], data, len);
	r->unit_len[r->dir] += len;
}

static void on_span(void *ctx, const struct imap_sens_span *span)
{
	struct run *r = ctx;
	uint8_t *p = r->unit[r->dir];

	if (span->len == 0 || span->off < r->last_end || span->off + span->len > r->limit)
		r->bad_span = true;
	r->last_end = span->off + span->len;
	if (!(span->kinds & r->kinds) || r->bad_span)
		return;
	memset(p + span->off, span->if_known ? '?' : '#', span->len);
}

static void on_unit(void *ctx, const struct imap_unit *u)
{
	struct run *r = ctx;
	enum imap_dir d = r->dir;

	r->last_end = 0;
	r->limit = r->unit_len[d];
	imap_sens_unit(r->sens, d, u, r->unit[d], r->unit_len[d], on_span, r);
	memcpy(r->out[d] + r->out_len[d], r->unit[d], r->unit_len[d]);
	r->out_len[d] += r->unit_len[d];
	r->out[d][r->out_len[d]] = '\0';
	r->unit_len[d] = 0;
}

struct step {
	enum imap_dir dir;
	const char *bytes; /* NULL: the capture lost bytes of dir here */
};

static void run(struct run *r, unsigned kinds, const struct step *steps, size_t n)
{
	memset(r, 0, sizeof(*r));
	r->kinds = kinds;
	r->sens = imap_sens_new();
	for (int d = 0; d < 2; d++) {
		r->framer[d] = imap_framer_new((enum imap_dir)d, 0, on_unit, r);
		imap_framer_set_tap(r->framer[d], on_tap);
		r->unit[d] = malloc(OUT_MAX);
		r->out[d] = calloc(1, OUT_MAX + 1);
	}
	for (size_t i = 0; i < n; i++) {
		r->dir = steps[i].dir;
		if (steps[i].bytes == NULL) {
			imap_sens_lost(r->sens, steps[i].dir);
			continue;
		}
		imap_framer_feed(r->framer[r->dir], (const uint8_t *)steps[i].bytes,
				 strlen(steps[i].bytes));
	}
	CHECK(!r->bad_span);
}

static void done(struct run *r)
{
	for (int d = 0; d < 2; d++) {
		imap_framer_free(&r->framer[d]);
		free(r->unit[d]);
		free(r->out[d]);
	}
	imap_sens_free(&r->sens);
}

#define EXPECT(r, d, want)                                                               \
	CHECK_MSG(strcmp((r)->out[d], want) == 0, "got\n%s\nwant\n%s", (r)->out[d], want)

static void test_commands(void)
{
	static const struct step steps[] = {
		{IMAP_C2S, "a1 LOGIN alice.smith secret\r\n"},
		{IMAP_C2S, "a2 LOGIN \"al\\\"ice\\\\x\" \"pw\"\r\n"},
		{IMAP_C2S, "a3 LOGIN {5}\r\n"},
		{IMAP_C2S, "alice {2}\r\n"},
		{IMAP_C2S, "pw\r\n"},
		{IMAP_C2S, "a4 SELECT INBOX\r\n"},
		{IMAP_C2S, "a5 SELECT \"INBOX/Old Stuff\"\r\n"},
		{IMAP_C2S, "a6 SELECT &AOk-t&AOk-/x.y\r\n"},
		{IMAP_C2S, "a7 UID COPY 1:* \"Archive/2026\"\r\n"},
		{IMAP_C2S, "a8 RENAME Foo \"Bar,Baz\"\r\n"},
		{IMAP_C2S, "a9 LIST (SUBSCRIBED) \"\" (\"Pro*\" Work%) RETURN (CHILDREN)\r\n"},
		{IMAP_C2S, "b1 X-SECRET alice (bob \"carol\") 42\r\n"},
		{IMAP_C2S, "b2 SEARCH CHARSET UTF-8 FROM \"alice\" SUBJECT hello HEADER X-Foo bar "
			   "UNSEEN\r\n"},
		{IMAP_C2S, "b3 SELECT \x1b[31mRed\x1b[0m\r\n"},
		{IMAP_C2S, "b4 STATUS Sent (MESSAGES UNSEEN)\r\n"},
		{IMAP_C2S, "b5 APPEND Box CATENATE (URL \"/Secret/x;UID=1\")\r\n"},
	};
	const char *want = "a1 LOGIN #####.##### secret\r\n"
			   "a2 LOGIN \"##\\\"###\\\\#\" \"pw\"\r\n"
			   "a3 LOGIN {5}\r\n"
			   "##### {2}\r\n"
			   "pw\r\n"
			   "a4 SELECT INBOX\r\n"
			   "a5 SELECT \"INBOX/### #####\"\r\n"
			   "a6 SELECT ###########/#.#\r\n"
			   "a7 UID COPY 1:* \"#######/####\"\r\n"
			   "a8 RENAME ### \"###,###\"\r\n"
			   "a9 LIST (SUBSCRIBED) \"\" (\"###*\" ####%) RETURN (CHILDREN)\r\n"
			   "b1 X-SECRET ##### (### \"#####\") ##\r\n"
			   "b2 SEARCH CHARSET UTF-8 FROM \"#####\" SUBJECT ##### HEADER X-Foo ### "
			   "UNSEEN\r\n"
			   "b3 SELECT \x1b[######\x1b[##\r\n"
			   "b4 STATUS #### (MESSAGES UNSEEN)\r\n"
			   "b5 APPEND ### CATENATE (URL \"/######/#;###=#\")\r\n";
	struct run r;

	run(&r, IMAP_SENS_ALL, steps, sizeof(steps) / sizeof(steps[0]));
	EXPECT(&r, IMAP_C2S, want);
	done(&r);
	/* only the kinds asked for */
	run(&r, IMAP_SENS_USERS, steps, 2);
	EXPECT(&r, IMAP_C2S, "a1 LOGIN #####.##### secret\r\na2 LOGIN \"##\\\"###\\\\#\" \"pw\"\r\n");
	done(&r);
	run(&r, IMAP_SENS_SUBJECTS, steps, 2);
	EXPECT(&r, IMAP_C2S, "a1 LOGIN alice.smith secret\r\na2 LOGIN \"al\\\"ice\\\\x\" \"pw\"\r\n");
	done(&r);
}

static void test_envelope(void)
{
	static const struct step steps[] = {
		{IMAP_S2C, "* 1 FETCH (UID 7 ENVELOPE (\"Mon, 1 Dec 2026 10:00:00 +0000\" "
			   "\"=?utf-8?Q?Caf=C3=A9_plan?= and \\\"more\\\", too\" "
			   "((\"Smith, Alice\" NIL \"alice\" \"example.com\")) NIL NIL "
			   "((NIL NIL \"team\" NIL)(\"Bob\" NIL \"bob\" \"b.example\")(NIL NIL NIL NIL)) "
			   "NIL NIL \"<a@b>\" {8}\r\n"},
		{IMAP_S2C, "<x@y.zz>) FLAGS (\\Seen))\r\n"},
		/* a string where an address list belongs, and an eleventh field */
		{IMAP_S2C, "* 2 FETCH (ENVELOPE (NIL \"s\" \"x@y\" NIL NIL NIL NIL NIL NIL NIL "
			   "\"extra\" (\"deep\")))\r\n"},
	};
	const char *want = "* 1 FETCH (UID 7 ENVELOPE (\"Mon, 1 Dec 2026 10:00:00 +0000\" "
			   "\"=?utf-8?Q?#########_####?= ### \\\"####\\\", ###\" "
			   "((\"#####, #####\" NIL \"#####\" \"#######.###\")) NIL NIL "
			   "((NIL NIL \"####\" NIL)(\"###\" NIL \"###\" \"#.#######\")(NIL NIL NIL NIL)) "
			   "NIL NIL \"<#@#>\" {8}\r\n"
			   "<#@#.##>) FLAGS (\\Seen))\r\n"
			   "* 2 FETCH (ENVELOPE (NIL \"#\" \"#@#\" NIL NIL NIL NIL NIL NIL NIL "
			   "\"#####\" (\"####\")))\r\n";
	struct run r;

	run(&r, IMAP_SENS_ALL, steps, sizeof(steps) / sizeof(steps[0]));
	EXPECT(&r, IMAP_S2C, want);
	done(&r);
	/* subjects alone: the addresses stay */
	run(&r, IMAP_SENS_SUBJECTS, steps, 1);
	CHECK(strstr(r.out[IMAP_S2C], "\"alice\" \"example.com\"") != NULL);
	CHECK(strstr(r.out[IMAP_S2C], "Caf") == NULL);
	done(&r);
}

static void test_message(void)
{
	static const char msg[] =
		"From: Alice <alice@example.com>\r\n"
		"To: bob@example.org,\r\n"
		"\tcarol@example.net\r\n"
		"Subject: =?UTF-8?B?U2VjcmV0?= plan\r\n"
		"Date: Mon, 1 Dec 2026 10:00:00 +0000\r\n"
		"Content-Type: multipart/mixed; boundary=\"=_b1\"\r\n"
		"\r\n"
		"preamble\r\n"
		"--=_b1\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"Hello caf=C3=A9 =\r\n"
		"--=_b1\r\n"
		"Content-Disposition: attachment; filename=\"plan.pdf\"\r\n"
		"\r\n"
		"QUJD\r\n"
		"--=_b1--\r\n";
	static const char masked[] =
		"From: ##### <#####@#######.###>\r\n"
		"To: ###@#######.###,\r\n"
		"\t#####@#######.###\r\n"
		"Subject: =?UTF-8?B?########?= ####\r\n"
		"Date: Mon, 1 Dec 2026 10:00:00 +0000\r\n"
		"Content-Type: multipart/mixed; boundary=\"=_b1\"\r\n"
		"\r\n"
		"########\r\n"
		"--=_b1\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"##### ######### =\r\n"
		"--=_b1\r\n"
		"Content-Disposition: attachment; filename=\"####.###\"\r\n"
		"\r\n"
		"####\r\n"
		"--=_b1--\r\n";
	char head[64], line[128 + sizeof(msg)], want[128 + sizeof(masked)];
	struct step steps[2] = {{IMAP_S2C, head}, {IMAP_S2C, line}};
	struct run r;

	snprintf(head, sizeof(head), "* 3 FETCH (BODY[] {%zu}\r\n", strlen(msg));
	snprintf(line, sizeof(line), "%s)\r\n", msg);
	snprintf(want, sizeof(want), "%s%s)\r\n", head, masked);
	run(&r, IMAP_SENS_ALL, steps, 2);
	EXPECT(&r, IMAP_S2C, want);
	done(&r);
}

/* The header block and body fetched apart, a part by number, APPEND. */
static void test_sections(void)
{
	static const struct step steps[] = {
		{IMAP_S2C, "* 4 FETCH (BODY[HEADER.FIELDS (\"Subject\" FROM)] {28}\r\n"},
		{IMAP_S2C, "Subject: hi\r\nFrom: a@b.c\r\n\r\n BODY[1.MIME] {15}\r\n"},
		{IMAP_S2C, "X-Tag: secret\r\n BODY[1] {6}\r\n"},
		{IMAP_S2C, "a b c\n BODY[]<40> {8}\r\n"},
		{IMAP_S2C, "Re: x\r\ny)\r\n"},
		{IMAP_C2S, "c1 APPEND Drafts (\\Seen) \"01-Dec-2026 10:00:00 +0000\" {19+}\r\n"},
		{IMAP_C2S, "Subject: x\r\n\r\nbody\r\n\r\n"},
	};
	const char *s2c = "* 4 FETCH (BODY[HEADER.FIELDS (\"Subject\" FROM)] {28}\r\n"
			  "Subject: ##\r\nFrom: #@#.#\r\n\r\n BODY[1.MIME] {15}\r\n"
			  "X-Tag: ######\r\n BODY[1] {6}\r\n"
			  "# # #\n BODY[]<40> {8}\r\n"
			  "##: #\r\n#)\r\n";
	const char *c2s = "c1 APPEND ###### (\\Seen) \"01-Dec-2026 10:00:00 +0000\" {19+}\r\n"
			  "Subject: #\r\n\r\n####\r\n\r\n";
	struct run r;

	run(&r, IMAP_SENS_ALL, steps, sizeof(steps) / sizeof(steps[0]));
	EXPECT(&r, IMAP_S2C, s2c);
	EXPECT(&r, IMAP_C2S, c2s);
	done(&r);
}

static void test_responses(void)
{
	static const struct step steps[] = {
		{IMAP_C2S, "a1 SELECT Work/Plans\r\n"},
		{IMAP_S2C, "* LIST (\\HasNoChildren) \"/\" \"Work/Plans\"\r\n"},
		{IMAP_S2C, "* LIST (\\Noselect) \".\" INBOX.Sent\r\n"},
		{IMAP_S2C, "* STATUS {4}\r\n"},
		{IMAP_S2C, "Mine (MESSAGES 2)\r\n"},
		{IMAP_S2C, "a1 NO [TRYCREATE] No mailbox Work/Plans here\r\n"},
		{IMAP_S2C, "* 3 EXISTS\r\n"},
		{IMAP_S2C, "* WEIRD alice \"x\"\r\n"},
		{IMAP_S2C, "* OK [UIDVALIDITY 12] Ready\r\n"},
		{IMAP_S2C, "* QUOTA \"user.alice\" (STORAGE 10 512)\r\n"},
	};
	const char *s2c = "* LIST (\\HasNoChildren) \"/\" \"####/#####\"\r\n"
			  "* LIST (\\Noselect) \".\" INBOX.####\r\n"
			  "* STATUS {4}\r\n"
			  "#### (MESSAGES 2)\r\n"
			  "a1 NO [TRYCREATE] ?? ??????? ????" "/????? ????\r\n"
			  "* 3 EXISTS\r\n"
			  "* WEIRD ##### \"#\"\r\n"
			  "* OK [UIDVALIDITY 12] ?????\r\n"
			  "* QUOTA \"####.#####\" (STORAGE 10 512)\r\n";
	struct run r;

	run(&r, IMAP_SENS_ALL, steps, sizeof(steps) / sizeof(steps[0]));
	EXPECT(&r, IMAP_S2C, s2c);
	EXPECT(&r, IMAP_C2S, "a1 SELECT ####/#####\r\n");
	done(&r);
}

/* SASL, a lost stretch, nesting past the limit, a line past any limit. */
static void test_hostile(void)
{
	static const struct step steps[] = {
		{IMAP_C2S, "a1 AUTHENTICATE PLAIN\r\n"},
		{IMAP_S2C, "+ \r\n"},
		{IMAP_C2S, "AGFsaWNlAHNlY3JldA==\r\n"},
		{IMAP_S2C, "a1 OK done\r\n"},
		{IMAP_C2S, "a2 AUTHENTICATE PLAIN AGFsaWNl\r\n"},
		{IMAP_S2C, "a2 OK\r\n"},
		{IMAP_C2S, "a3 NOOP\r\n"},
		{IMAP_S2C, "* 1 FETCH (X (((((((((((((((((((a \"b\"))))))))))))))))))))\r\n"},
		{IMAP_S2C, "* 1 FETCH (BODYSTRUCTURE "
			   "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\" \"NAME\" \"cv.txt\") NIL "
			   "\"about me\" \"7BIT\" 12 1))\r\n"},
		{IMAP_S2C, NULL},
		{IMAP_S2C, "* 2 EXISTS {3}\r\n"},
		{IMAP_S2C, "abc\r\n"},
		{IMAP_C2S, "a4 COMPRESS DEFLATE\r\n"},
		{IMAP_C2S, "x\x01stored block: secret\r\n"},
	};
	const char *c2s = "a1 AUTHENTICATE PLAIN\r\n"
			  "##################==\r\n"
			  "a2 AUTHENTICATE PLAIN ########\r\n"
			  "a3 NOOP\r\n"
			  "a4 COMPRESS DEFLATE\r\n"
			  "#\x01###### #####: ######\r\n";
	const char *s2c = "+ \r\n"
			  "a1 OK ????\r\n"
			  "a2 OK\r\n"
			  "* 1 FETCH (X (((((((((((((((((((# \"#\"))))))))))))))))))))\r\n"
			  "* 1 FETCH (BODYSTRUCTURE "
			  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\" \"NAME\" \"##.###\") NIL "
			  "\"##### ##\" \"7BIT\" 12 1))\r\n"
			  "* # ###### {3}\r\n"
			  "###\r\n";
	static const struct step deflate[] = {
		{IMAP_C2S, "a1 COMPRESS DEFLATE\r\n"},
		{IMAP_S2C, "a1 OK\r\n"},
		{IMAP_C2S, "x\x01stored block: secret\r\n"},
		{IMAP_S2C, "y\x02stored block: secret\r\n"},
		{IMAP_C2S, "a2 SELECT Inbox\r\n"},
	};
	static const struct step inflated[] = {
		{IMAP_C2S, "a1 COMPRESS DEFLATE\r\n"},
		{IMAP_S2C, "a1 OK\r\n"},
		{IMAP_C2S, "a2 SELECT Zebra\r\n"},
		{IMAP_S2C, "* LIST () \"/\" Zebra\r\n"},
	};
	struct run r;
	char *line = malloc(300000);
	struct step long_line[1] = {{IMAP_S2C, line}};

	run(&r, IMAP_SENS_ALL, steps, sizeof(steps) / sizeof(steps[0]));
	EXPECT(&r, IMAP_C2S, c2s);
	EXPECT(&r, IMAP_S2C, s2c);
	done(&r);

	/* after COMPRESS, deflate cannot be read: all masked; an inflated
	 * stream (imaptap's own pcap) is read on */
	run(&r, IMAP_SENS_ALL, deflate, sizeof(deflate) / sizeof(deflate[0]));
	EXPECT(&r, IMAP_C2S, "a1 COMPRESS DEFLATE\r\n#\x01###### #####: ######\r\n"
			     "## ###### #####\r\n");
	EXPECT(&r, IMAP_S2C, "a1 OK\r\n#\x02###### #####: ######\r\n");
	done(&r);
	run(&r, IMAP_SENS_ALL, inflated, sizeof(inflated) / sizeof(inflated[0]));
	EXPECT(&r, IMAP_C2S, "a1 COMPRESS DEFLATE\r\na2 SELECT #####\r\n");
	EXPECT(&r, IMAP_S2C, "a1 OK\r\n* LIST () \"/\" #####\r\n");
	done(&r);

	/* a LIST line longer than the framer keeps: the whole name is masked */
	strcpy(line, "* LIST () \"/\" \"");
	memset(line + 15, 'a', 299000);
	strcpy(line + 15 + 299000, "\"\r\n");
	run(&r, IMAP_SENS_MAILBOXES, long_line, 1);
	CHECK(r.out_len[IMAP_S2C] == strlen(line));
	CHECK(strchr(r.out[IMAP_S2C], 'a') == NULL);
	done(&r);
	free(line);
}

/* A message attached to a message: its header block is read as one, so
 * --redact subjects finds its Subject too. */
static void test_attached_message(void)
{
	static const char msg[] = "Subject: outer\r\n"
				  "Content-Type: multipart/mixed; boundary=zz\r\n"
				  "\r\n"
				  "--zz\r\n"
				  "Content-Type: message/rfc822\r\n"
				  "\r\n"
				  "From: inner@example.com\r\n"
				  "Subject: inner\r\n"
				  "\r\n"
				  "inner text\r\n"
				  "--zz--\r\n";
	static const char masked[] = "Subject: #####\r\n"
				     "Content-Type: multipart/mixed; boundary=zz\r\n"
				     "\r\n"
				     "--zz\r\n"
				     "Content-Type: message/rfc822\r\n"
				     "\r\n"
				     "From: inner@example.com\r\n"
				     "Subject: #####\r\n"
				     "\r\n"
				     "inner text\r\n"
				     "--zz--\r\n";
	char head[64], line[128 + sizeof(msg)], want[128 + sizeof(masked)];
	struct step steps[2] = {{IMAP_C2S, head}, {IMAP_C2S, line}};
	struct run r;

	snprintf(head, sizeof(head), "a APPEND Drafts {%zu}\r\n", strlen(msg));
	snprintf(line, sizeof(line), "%s\r\n", msg);
	snprintf(want, sizeof(want), "%s%s\r\n", head, masked);
	run(&r, IMAP_SENS_SUBJECTS, steps, 2);
	EXPECT(&r, IMAP_C2S, want);
	done(&r);
}

/* A boundary line cut by the end of a 64 KiB chunk is still kept, and
 * the part's header block after it. */
static void test_boundary_across_chunks(void)
{
	static const char head[] = "Content-Type: multipart/mixed; boundary=\"=_b1\"\r\n\r\n";
	static const char tail[] = "--=_b1\r\nContent-Type: text/plain\r\n\r\nsecret\r\n--=_b1--\r\n";
	size_t at = IMAP_FRAMER_CHUNK - 3, len = at + sizeof(tail) - 1;
	char *msg = malloc(len + 1), *line = malloc(len + 64), ann[64];
	struct step steps[2] = {{IMAP_S2C, ann}, {IMAP_S2C, line}};
	struct run r;

	memcpy(msg, head, sizeof(head) - 1);
	for (size_t i = sizeof(head) - 1; i < at; i++)
		msg[i] = (i + 2) % 64 == 0 || i + 2 == at ? '\r' : (i + 1) % 64 == 0 || i + 1 == at ? '\n' : 'w';
	memcpy(msg + at, tail, sizeof(tail));
	snprintf(ann, sizeof(ann), "* 1 FETCH (BODY[] {%zu}\r\n", len);
	snprintf(line, len + 64, "%s)\r\n", msg);
	run(&r, IMAP_SENS_BODIES, steps, 2);
	CHECK(strstr(r.out[IMAP_S2C], "--=_b1\r\nContent-Type: text/plain\r\n\r\n######\r\n"
					"--=_b1--\r\n)\r\n") != NULL);
	CHECK(strstr(r.out[IMAP_S2C], "www") == NULL);
	done(&r);
	free(msg);
	free(line);
}

int main(void)
{
	unsigned kinds;
	size_t bad;

	test_commands();
	test_envelope();
	test_message();
	test_sections();
	test_responses();
	test_hostile();
	test_attached_message();
	test_boundary_across_chunks();
	CHECK(imap_sens_kinds_parse("users,bodies", &kinds, &bad) == 0 &&
	      kinds == (IMAP_SENS_USERS | IMAP_SENS_BODIES));
	CHECK(imap_sens_kinds_parse("all", &kinds, &bad) == 0 && kinds == IMAP_SENS_ALL);
	CHECK(imap_sens_kinds_parse("users,nope", &kinds, &bad) == -1 && bad == 6);
	CHECK(imap_sens_kinds_parse("", &kinds, &bad) == -1);
	return check_finish("sensitive");
}
