/* The conversation pipeline: both directions together, where one side's
 * answer changes how the other side's bytes are framed. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

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

/* Raw DEFLATE with a sync flush after every piece, as RFC 4978 senders do. */
struct deflater {
	z_stream z;
	uint8_t out[4096];
	size_t len;
};

static void deflater_init(struct deflater *d)
{
	memset(d, 0, sizeof(*d));
	CHECK(deflateInit2(&d->z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
}

static size_t deflate_piece(struct deflater *d, const char *text, uint8_t *out, size_t cap)
{
	d->z.next_in = (Bytef *)(uintptr_t)text;
	d->z.avail_in = (uInt)strlen(text);
	d->z.next_out = out;
	d->z.avail_out = (uInt)cap;
	CHECK(deflate(&d->z, Z_SYNC_FLUSH) == Z_OK);
	CHECK(d->z.avail_in == 0);
	return cap - d->z.avail_out;
}

/* Lines seen per direction, text as observed, so that the interleaving of
 * the two directions (which depends on the split) does not matter. */
struct events {
	char text[2][1024];
	size_t len[2];
	int completions;
	int on;
	int errors;
	enum imap_dir error_dir;
};

static void on_ev(void *ctx, const struct imap_conv_event *e)
{
	struct events *ev = ctx;

	if (e->kind == IMAP_CONV_NOTICE) {
		ev->on++;
	} else {
		CHECK(e->anomaly->rule == IMAP_RULE_COMPRESS_STREAM_ERROR);
		ev->errors++;
		ev->error_dir = e->dir;
	}
}

static void on_obs_text(void *ctx, const struct imap_observation *obs)
{
	struct events *ev = ctx;
	char *t = ev->text[obs->dir];
	size_t *n = &ev->len[obs->dir];

	if (*n + obs->len + 1 < sizeof(ev->text[0])) {
		memcpy(t + *n, obs->data, obs->len);
		*n += obs->len;
		t[*n] = '\0';
	}
	ev->completions += obs->completion != NULL;
}

static const char *const C2S_TEXT = "a2 NOOP\r\na3 APPEND INBOX {5+}\r\nhello\r\n";
static const char *const S2C_TEXT = "* 3 EXISTS\r\na2 OK noop done\r\na3 OK appended\r\n";

/* The server's OK and its first compressed bytes arrive in one read, split
 * at every point: the switch must land exactly after the OK's CRLF. */
static void test_compress_switch_every_split(void)
{
	static const char ok[] = "a1 OK DEFLATE active\r\n";
	struct deflater srv, cli;
	uint8_t s2c[8192], c2s[4096];
	size_t s2c_len, c2s_len, first;

	deflater_init(&srv);
	deflater_init(&cli);
	memcpy(s2c, ok, strlen(ok));
	s2c_len = strlen(ok);
	s2c_len += deflate_piece(&srv, "* 3 EXISTS\r\n", s2c + s2c_len, sizeof(s2c) - s2c_len);
	first = s2c_len; /* what the server sends before the client's next command */
	s2c_len += deflate_piece(&srv, "a2 OK noop done\r\n", s2c + s2c_len, sizeof(s2c) - s2c_len);
	s2c_len += deflate_piece(&srv, "a3 OK appended\r\n", s2c + s2c_len, sizeof(s2c) - s2c_len);
	c2s_len = deflate_piece(&cli, "a2 NOOP\r\n", c2s, sizeof(c2s));
	c2s_len += deflate_piece(&cli, "a3 APPEND INBOX {5+}\r\nhello\r\n", c2s + c2s_len,
				 sizeof(c2s) - c2s_len);
	deflateEnd(&srv.z);
	deflateEnd(&cli.z);

	for (size_t split = 1; split <= first; split++) {
		struct events ev = {0};
		struct imap_conv_config cfg = {.on_event = on_ev};
		struct imap_conv *c = imap_conv_new(&cfg, on_obs_text, &ev);
		char want_s2c[256];

		feed(c, IMAP_C2S, "a1 COMPRESS DEFLATE\r\n");
		imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, s2c, split);
		imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, s2c + split, first - split);
		imap_conv_feed(c, IMAP_C2S, 0, IMAP_ORIGIN_PEER, c2s, c2s_len);
		imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, s2c + first, s2c_len - first);
		snprintf(want_s2c, sizeof(want_s2c), "%s%s", ok, S2C_TEXT);
		CHECK_MSG(ev.on == 1 && ev.errors == 0, "split %zu: on %d errors %d", split, ev.on,
			  ev.errors);
		CHECK_MSG(ev.completions == 3, "split %zu: %d completions", split, ev.completions);
		CHECK_MSG(strcmp(ev.text[IMAP_S2C], want_s2c) == 0, "split %zu: s2c %s", split,
			  ev.text[IMAP_S2C]);
		CHECK_MSG(strncmp(ev.text[IMAP_C2S], "a1 COMPRESS DEFLATE\r\n", 21) == 0 &&
				  strcmp(ev.text[IMAP_C2S] + 21, C2S_TEXT) == 0,
			  "split %zu: c2s %s", split, ev.text[IMAP_C2S]);
		CHECK(imap_conv_compressed(c));
		imap_conv_free(&c);
	}
}

/* A refused COMPRESS changes nothing; garbage after an accepted one is
 * reported once, for its direction, and the other direction goes on. */
static void test_compress_refused_and_broken(void)
{
	struct events ev = {0};
	struct imap_conv_config cfg = {.on_event = on_ev};
	struct imap_conv *c = imap_conv_new(&cfg, on_obs_text, &ev);
	struct deflater cli;
	uint8_t c2s[256];
	size_t c2s_len;

	feed(c, IMAP_C2S, "a1 COMPRESS DEFLATE\r\n");
	feed(c, IMAP_S2C, "a1 NO [COMPRESSIONACTIVE] not now\r\n* OK still plain\r\n");
	CHECK(!imap_conv_compressed(c));
	CHECK(ev.on == 0);
	feed(c, IMAP_C2S, "a2 COMPRESS DEFLATE\r\n");
	feed(c, IMAP_S2C, "a2 OK go\r\n");
	CHECK(imap_conv_compressed(c) && ev.on == 1);
	/* a stored block with a bad length check: not DEFLATE */
	imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, (const uint8_t *)"\x00\x05\x00\x00\x00zzzzz",
		       10);
	imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, (const uint8_t *)"more", 4);
	CHECK_MSG(ev.errors == 1 && ev.error_dir == IMAP_S2C, "errors %d", ev.errors);
	deflater_init(&cli);
	c2s_len = deflate_piece(&cli, "a3 NOOP\r\n", c2s, sizeof(c2s));
	deflateEnd(&cli.z);
	imap_conv_feed(c, IMAP_C2S, 0, IMAP_ORIGIN_PEER, c2s, c2s_len);
	CHECK_MSG(strstr(ev.text[IMAP_C2S], "a2 COMPRESS DEFLATE\r\na3 NOOP\r\n") != NULL, "c2s %s",
		  ev.text[IMAP_C2S]);
	CHECK(strstr(ev.text[IMAP_S2C], "zzzzz") == NULL);
	CHECK(ev.errors == 1);
	imap_conv_free(&c);
}

/* Findings of the rules, by rule, and the bytes handed to on_bytes. */
struct ruled {
	int count[IMAP_RULE_COUNT];
	char tag[IMAP_RULE_COUNT][IMAP_ANOMALY_TAG_MAX];
	char detail[IMAP_RULE_COUNT][IMAP_ANOMALY_DETAIL_MAX];
	uint8_t bytes[2][512];
	size_t bytes_len[2];
	bool summarised;
	uint32_t summary[IMAP_RULE_COUNT]; /* the summary's count by rule */
	enum imap_dir last_dir;            /* of the last finding */
};

static void on_ruled_event(void *ctx, const struct imap_conv_event *e)
{
	struct ruled *r = ctx;

	if (e->kind == IMAP_CONV_SUMMARY) {
		r->summarised = true;
		memcpy(r->summary, e->summary->anomalies, sizeof(r->summary));
	}
	if (e->kind != IMAP_CONV_ANOMALY || e->anomaly->resolved)
		return;
	r->last_dir = e->dir;
	r->count[e->anomaly->rule]++;
	memcpy(r->tag[e->anomaly->rule], e->anomaly->tag, sizeof(e->anomaly->tag));
	memcpy(r->detail[e->anomaly->rule], e->anomaly->detail, sizeof(e->anomaly->detail));
}

static void on_ruled_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
			   size_t len, uint64_t secret_from)
{
	(void)secret_from;
	struct ruled *r = ctx;

	(void)ts;
	if (r->bytes_len[dir] + len <= sizeof(r->bytes[dir])) {
		memcpy(r->bytes[dir] + r->bytes_len[dir], data, len);
		r->bytes_len[dir] += len;
	}
}

static void on_nothing(void *ctx, const struct imap_observation *obs)
{
	(void)ctx;
	(void)obs;
}

static struct imap_conv *ruled_conv(struct ruled *r)
{
	struct imap_conv_config cfg = {.rules = true, .on_event = on_ruled_event,
				       .on_bytes = on_ruled_bytes,
				       .thresholds = {.stall = 1000000}};

	memset(r, 0, sizeof(*r));
	return imap_conv_new(&cfg, on_nothing, r);
}

static void feed_at(struct imap_conv *c, enum imap_dir dir, imap_time_us ts, const char *s)
{
	imap_conv_feed(c, dir, ts, IMAP_ORIGIN_PEER, (const uint8_t *)s, strlen(s));
}

/* A connection cut inside a literal: which side, which command, how many
 * of the n bytes never came. */
static void test_eof_inside_a_literal(void)
{
	static const struct {
		const char *c2s, *s2c, *c2s_after, *s2c_after; /* before and after the + */
		const char *tag, *want;
	} cases[] = {
		{"a1 APPEND INBOX (\\Seen) {100}\r\n", "+ go ahead\r\n",
		 "0123456789012345678901234567890123456789", "", "a1",
		 "the connection ended inside the client's {100} literal of a1 APPEND: 60 of its 100 "
		 "byte(s) never came; 1 command(s) unanswered: a1 APPEND"},
		{"a1 NOOP\r\na2 UID FETCH 7 BODY.PEEK[]\r\n",
		 "a1 OK done\r\n* 3 FETCH (UID 7 BODY[] {1000}\r\n", "", "0123456789", "a2",
		 "the connection ended inside the server's {1000} literal of * FETCH: 990 of its 1000 "
		 "byte(s) never came; 1 command(s) unanswered: a2 UID FETCH"},
	};
	struct ruled r;
	struct imap_conv *c;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = ruled_conv(&r);
		feed_at(c, IMAP_C2S, 0, cases[i].c2s);
		feed_at(c, IMAP_S2C, 1, cases[i].s2c);
		feed_at(c, IMAP_C2S, 2, cases[i].c2s_after);
		feed_at(c, IMAP_S2C, 2, cases[i].s2c_after);
		imap_conv_eof(c, 3, true);
		CHECK_MSG(r.count[IMAP_RULE_PENDING_AT_EOF] == 1, "case %zu", i);
		CHECK_MSG(strcmp(r.tag[IMAP_RULE_PENDING_AT_EOF], cases[i].tag) == 0, "case %zu: tag %s",
			  i, r.tag[IMAP_RULE_PENDING_AT_EOF]);
		CHECK_MSG(strcmp(r.detail[IMAP_RULE_PENDING_AT_EOF], cases[i].want) == 0,
			  "case %zu: detail %s", i, r.detail[IMAP_RULE_PENDING_AT_EOF]);
		imap_conv_free(&c);
	}

	/* a capture that merely ends says nothing */
	c = ruled_conv(&r);
	feed_at(c, IMAP_C2S, 0, "a1 APPEND INBOX {100}\r\n");
	imap_conv_eof(c, 3, false);
	CHECK(r.count[IMAP_RULE_PENDING_AT_EOF] == 0);
	imap_conv_free(&c);
}

/* A connection cut inside a line no row showed (a client that never sends
 * CRLF) says so once, with where the line started and its size, however
 * far past the observation limit it went; a capture that merely ends, or
 * a line that ended, says nothing. */
static void test_eof_inside_a_line(void)
{
	static const char fill[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
	struct ruled r;
	struct imap_conv *c = ruled_conv(&r);

	feed_at(c, IMAP_C2S, 0, "a1 NOOP\r\na2 SEARCH TEXT ");
	for (int i = 0; i < 2000; i++) /* 126,000 bytes: past the 64 KiB limit */
		feed_at(c, IMAP_C2S, 1, fill);
	imap_conv_eof(c, 3, true);
	CHECK(r.count[IMAP_RULE_PARSE_ERROR] == 1);
	CHECK_MSG(strcmp(r.detail[IMAP_RULE_PARSE_ERROR],
			 "client line at byte 9 cut by the end of the connection: 126015 byte(s) "
			 "with no CRLF, relayed as they came and never shown") == 0,
		  "detail %s", r.detail[IMAP_RULE_PARSE_ERROR]);
	imap_conv_free(&c);

	c = ruled_conv(&r);
	feed_at(c, IMAP_C2S, 0, "a1 NOOP\r\na2 SEARCH TEXT ");
	imap_conv_eof(c, 3, false);
	feed_at(c, IMAP_S2C, 0, "* OK hi\r\n");
	imap_conv_eof(c, 3, true);
	CHECK_MSG(r.count[IMAP_RULE_PARSE_ERROR] == 1, "one for the client's line only");
	imap_conv_free(&c);

	c = ruled_conv(&r);
	feed_at(c, IMAP_C2S, 0, "a1 NOOP\r\n");
	imap_conv_eof(c, 3, true);
	CHECK(r.count[IMAP_RULE_PARSE_ERROR] == 0);
	imap_conv_free(&c);
}

/* The conversation tells the tracker what the server's framer holds, so
 * that a stall says where the server stopped: table of what the server
 * sent 0.1 s after the command, and what the stall must say at 1.2 s
 * (and not yet at 0.95 s). */
static void test_stall_says_where_the_server_stopped(void)
{
	static const struct {
		const char *command, *server, *want;
	} cases[] = {
		{"a1 FETCH 1 BODY[]\r\n", "* 1 FETCH (BODY[] {300}\r\nabc",
		 "inside a {300} literal with 297 of its bytes still to come"},
		{"a1 NOOP\r\n", "* 1 EXISTS\r\na1 O", "stopped mid-response, 4 byte(s) into a line"},
		{"a1 NOOP\r\n", "", "the server never started answering"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ruled r;
		struct imap_conv *c = ruled_conv(&r);

		feed_at(c, IMAP_C2S, 0, cases[i].command);
		feed_at(c, IMAP_S2C, 100000, cases[i].server);
		imap_conv_tick(c, 950000);
		CHECK_MSG(r.count[IMAP_RULE_COMMAND_STALL] == 0, "case %zu: too early", i);
		imap_conv_tick(c, 1200000);
		CHECK_MSG(strstr(r.detail[IMAP_RULE_COMMAND_STALL], cases[i].want) != NULL,
			  "case %zu: detail %s", i, r.detail[IMAP_RULE_COMMAND_STALL]);
		imap_conv_free(&c);
	}
}

/* Untagged data before the + to a synchronising literal: info, said once,
 * about the command waiting. */
static void test_untagged_before_literal_continuation(void)
{
	struct ruled r;
	struct imap_conv *c = ruled_conv(&r);

	feed_at(c, IMAP_C2S, 0, "a1 APPEND INBOX {5}\r\n");
	feed_at(c, IMAP_S2C, 1, "* 4 EXISTS\r\n* 1 RECENT\r\n+ go\r\n");
	feed_at(c, IMAP_C2S, 2, "hello\r\n");
	feed_at(c, IMAP_S2C, 3, "a1 OK appended\r\n");
	CHECK(r.count[IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION] == 1);
	CHECK(strcmp(r.tag[IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION], "a1") == 0);
	CHECK(strstr(r.detail[IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION], "untagged EXISTS") != NULL);
	imap_conv_free(&c);
}

/* A zlib header where raw DEFLATE belongs: reported, and the bytes go to
 * the capture as received so that a reader of it can tell the same. */
static void test_zlib_stream_goes_to_capture_raw(void)
{
	static const uint8_t zlib_noop[] = {0x78, 0x9c, 0x4b, 0x34, 0x56, 0xf0, 0xf3, 0xf7,
					    0x0f, 0xe0, 0xe5, 0x02, 0x00};
	struct ruled r;
	struct imap_conv *c = ruled_conv(&r);

	feed_at(c, IMAP_C2S, 0, "a1 COMPRESS DEFLATE\r\n");
	feed_at(c, IMAP_S2C, 1, "a1 OK DEFLATE active\r\n");
	imap_conv_feed(c, IMAP_C2S, 2, IMAP_ORIGIN_PEER, zlib_noop, sizeof(zlib_noop));
	imap_conv_feed(c, IMAP_C2S, 3, IMAP_ORIGIN_PEER, (const uint8_t *)"more", 4);
	CHECK(r.count[IMAP_RULE_COMPRESS_STREAM_ERROR] == 1);
	CHECK_MSG(strstr(r.detail[IMAP_RULE_COMPRESS_STREAM_ERROR], "the client's stream") != NULL,
		  "detail %s", r.detail[IMAP_RULE_COMPRESS_STREAM_ERROR]);
	CHECK(r.bytes_len[IMAP_C2S] == strlen("a1 COMPRESS DEFLATE\r\n") + sizeof(zlib_noop) + 4);
	CHECK(memcmp(r.bytes[IMAP_C2S] + strlen("a1 COMPRESS DEFLATE\r\n"), zlib_noop,
		     sizeof(zlib_noop)) == 0);
	CHECK(r.last_dir == IMAP_C2S);
	imap_conv_eof(c, 4, true);
	CHECK_MSG(r.summarised && r.summary[IMAP_RULE_COMPRESS_STREAM_ERROR] == 1,
		  "the session's summary counts the stream error");
	imap_conv_free(&c);
}

/* Findings made outside the conversation (STARTTLS trailing data, a
 * capture gap) go out the same way and are counted in the summary. */
static void test_outside_findings_counted(void)
{
	struct ruled r;
	struct imap_conv *c = ruled_conv(&r);
	struct imap_anomaly a;

	feed_at(c, IMAP_S2C, 0, "* OK ready\r\n");
	imap_anomaly_make(&a, IMAP_RULE_STARTTLS_TRAILING_DATA, 1, NULL, 0, "3 byte(s)");
	imap_conv_anomaly(c, IMAP_S2C, &a);
	imap_anomaly_make(&a, IMAP_RULE_CAPTURE_GAP, 2, NULL, 0, "gap");
	imap_conv_anomaly(c, IMAP_C2S, &a);
	CHECK(r.count[IMAP_RULE_STARTTLS_TRAILING_DATA] == 1 && r.count[IMAP_RULE_CAPTURE_GAP] == 1);
	CHECK(r.last_dir == IMAP_C2S);
	imap_conv_eof(c, 3, true);
	CHECK(r.summarised && r.summary[IMAP_RULE_STARTTLS_TRAILING_DATA] == 1 &&
	      r.summary[IMAP_RULE_CAPTURE_GAP] == 1);
	imap_conv_free(&c);
}

/* The bytes callback's word on literal data: a chunk that came in one
 * piece is marked whole, and the next call is its observation, carrying
 * those very bytes; a chunk cut across feeds is not, nor is a literal a
 * credential may be in. */
struct whole_seen {
	unsigned whole, carried, broken;
	const uint8_t *data; /* of the last whole bytes, until observed */
	size_t len;
};

static void on_whole_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
			   size_t len, uint64_t secret_from)
{
	struct whole_seen *w = ctx;

	(void)dir;
	(void)ts;
	if (w->data != NULL)
		w->broken++; /* something came between whole bytes and their observation */
	if (secret_from == IMAP_CONV_BYTES_WHOLE) {
		w->whole++;
		w->data = data;
		w->len = len;
	}
}

static void on_whole_obs(void *ctx, const struct imap_observation *obs)
{
	struct whole_seen *w = ctx;

	if (w->data == NULL)
		return;
	if (obs->unit->kind == IMAP_UNIT_LITERAL_DATA && !obs->secret_rest && obs->len == w->len &&
	    memcmp(obs->data, w->data, w->len) == 0)
		w->carried++;
	else
		w->broken++;
	w->data = NULL;
}

static void test_whole_literal_bytes(void)
{
	static uint8_t body[100000];
	const char *head = "* 1 FETCH (BODY[] {100000}\r\n";
	struct imap_conv_config cfg = {.on_bytes = on_whole_bytes};
	struct whole_seen w = {0};
	struct imap_conv *c;

	memset(body, 'b', sizeof(body));
	/* in one feed: two chunks (64 KiB and the rest), both whole */
	c = imap_conv_new(&cfg, on_whole_obs, &w);
	feed_at(c, IMAP_S2C, 0, head);
	imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, body, sizeof(body));
	feed_at(c, IMAP_S2C, 0, ")\r\n");
	CHECK_MSG(w.whole == 2 && w.carried == 2 && w.broken == 0, "whole %u carried %u broken %u",
		  w.whole, w.carried, w.broken);
	imap_conv_free(&c);

	/* the first chunk cut in two feeds: only the second chunk is whole */
	memset(&w, 0, sizeof(w));
	c = imap_conv_new(&cfg, on_whole_obs, &w);
	feed_at(c, IMAP_S2C, 0, head);
	imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, body, 1000);
	imap_conv_feed(c, IMAP_S2C, 0, IMAP_ORIGIN_PEER, body + 1000, sizeof(body) - 1000);
	CHECK_MSG(w.whole == 1 && w.carried == 1 && w.broken == 0, "cut: whole %u carried %u broken %u",
		  w.whole, w.carried, w.broken);
	imap_conv_free(&c);

	/* a password sent as a literal is never whole, masked or not */
	memset(&w, 0, sizeof(w));
	cfg.redact_flags = IMAP_REDACT_CREDENTIALS;
	c = imap_conv_new(&cfg, on_whole_obs, &w);
	feed_at(c, IMAP_C2S, 0, "a1 LOGIN alice {6+}\r\nsecret\r\n");
	CHECK_MSG(w.whole == 0, "a credential literal marked whole %u time(s)", w.whole);
	imap_conv_free(&c);
}

int main(void)
{
	test_eof_inside_a_literal();
	test_eof_inside_a_line();
	test_stall_says_where_the_server_stopped();
	test_untagged_before_literal_continuation();
	test_zlib_stream_goes_to_capture_raw();
	test_outside_findings_counted();
	test_refused_sync_literal();
	test_accepted_sync_literal();
	test_nonsync_literal_not_cancelled();
	test_literal_after_server_pipeline_tag();
	test_compress_switch_every_split();
	test_compress_refused_and_broken();
	test_whole_literal_bytes();
	return check_finish("conversation");
}
