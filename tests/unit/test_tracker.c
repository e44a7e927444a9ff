/* Tracker: completions pair with their commands, latencies come from the
 * times fed in, IDLE reports DONE->OK. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "imap/summary.h"
#include "imap/tracker.h"

static int feed(struct imap_tracker *t, enum imap_dir dir, imap_time_us ts, const char *line,
		struct imap_completion *c)
{
	struct imap_line_info info;

	imap_classify(dir, (const uint8_t *)line, strlen(line), 0, imap_tracker_auth_pending(t),
		      &info);
	return imap_tracker_line(t, dir, ts, &info, c);
}

static void test_latency(void)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;

	CHECK(!feed(t, IMAP_C2S, 1000, "a1 LOGIN alice x\r\n", &c));
	CHECK(imap_tracker_in_flight(t) == 1);
	CHECK(!feed(t, IMAP_S2C, 1500, "* CAPABILITY IMAP4rev1\r\n", &c));
	CHECK(feed(t, IMAP_S2C, 2345, "a1 OK Logged in\r\n", &c));
	CHECK(strcmp(c.tag, "a1") == 0 && strcmp(c.command, "LOGIN") == 0);
	CHECK(c.latency == 1345 && c.status == IMAP_STATUS_OK && !c.idle && c.done_to_ok == -1);
	CHECK(imap_tracker_in_flight(t) == 0);
	imap_tracker_free(&t);
	CHECK(t == NULL);
}

static void test_idle_done_to_ok(void)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;

	feed(t, IMAP_C2S, 0, "a5 IDLE\r\n", &c);
	feed(t, IMAP_S2C, 100, "+ idling\r\n", &c);
	feed(t, IMAP_S2C, 5000000, "* 2 EXISTS\r\n", &c);
	feed(t, IMAP_C2S, 20000000, "DONE\r\n", &c);
	CHECK(feed(t, IMAP_S2C, 20000400, "a5 OK Idle completed\r\n", &c));
	CHECK(c.idle && c.latency == 20000400 && c.done_at == 20000000 && c.done_to_ok == 400);
	imap_tracker_free(&t);
}

static void test_pipelined_out_of_order_and_uid(void)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;

	feed(t, IMAP_C2S, 10, "a1 UID FETCH 1:* FLAGS\r\n", &c);
	feed(t, IMAP_C2S, 20, "a2 NOOP\r\n", &c);
	CHECK(feed(t, IMAP_S2C, 50, "a2 OK done\r\n", &c));
	CHECK(strcmp(c.tag, "a2") == 0 && c.latency == 30);
	CHECK(feed(t, IMAP_S2C, 60, "a1 NO failed\r\n", &c));
	CHECK(c.uid && strcmp(c.command, "FETCH") == 0 && c.status == IMAP_STATUS_NO && c.latency == 50);
	CHECK_MSG(!feed(t, IMAP_S2C, 70, "zz OK what\r\n", &c), "an unknown tag completes nothing");
	/* a tag may be reused once completed */
	feed(t, IMAP_C2S, 80, "a1 NOOP\r\n", &c);
	CHECK(feed(t, IMAP_S2C, 90, "a1 OK\r\n", &c) && c.latency == 10);
	imap_tracker_free(&t);
}

static void test_auth_pending(void)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;

	feed(t, IMAP_C2S, 0, "a1 AUTHENTICATE PLAIN\r\n", &c);
	CHECK(imap_tracker_auth_pending(t));
	feed(t, IMAP_S2C, 1, "+ \r\n", &c);
	CHECK(!feed(t, IMAP_C2S, 2, "AGFsaWNlAHg=\r\n", &c));
	CHECK(imap_tracker_in_flight(t) == 1);
	CHECK(feed(t, IMAP_S2C, 3, "a1 OK done\r\n", &c));
	CHECK(!imap_tracker_auth_pending(t));
	imap_tracker_free(&t);
}

static void test_flight_is_bounded(void)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;
	char line[32];

	for (int i = 0; i < IMAP_TRACKER_MAX_FLIGHT + 10; i++) {
		snprintf(line, sizeof(line), "t%d NOOP\r\n", i);
		feed(t, IMAP_C2S, i, line, &c);
	}
	CHECK(imap_tracker_in_flight(t) == IMAP_TRACKER_MAX_FLIGHT);
	CHECK(imap_tracker_dropped(t) == 10);
	CHECK(!feed(t, IMAP_S2C, 1, "t0 OK\r\n", &c));
	CHECK(feed(t, IMAP_S2C, 1, "t10 OK\r\n", &c));
	imap_tracker_free(&t);
}

/* With the flight full and wrapped around its ring, completions from the
 * front, the back and the middle pair with the right commands, and an IDLE
 * forgotten for lack of room no longer takes a DONE. */
static void test_full_flight_pairs_after_wrapping(void)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;
	const int total = IMAP_TRACKER_MAX_FLIGHT + 100;
	const int forgotten = total - IMAP_TRACKER_MAX_FLIGHT;
	char line[32];

	feed(t, IMAP_C2S, 0, "i0 IDLE\r\n", &c);
	for (int i = 1; i < total; i++) {
		snprintf(line, sizeof(line), "t%d NOOP\r\n", i);
		feed(t, IMAP_C2S, i, line, &c);
	}
	CHECK(imap_tracker_dropped(t) == (uint64_t)forgotten);
	snprintf(line, sizeof(line), "t%d OK\r\n", forgotten);
	CHECK(feed(t, IMAP_S2C, total, line, &c) && c.started == forgotten);
	snprintf(line, sizeof(line), "t%d OK\r\n", total - 1);
	CHECK(feed(t, IMAP_S2C, total, line, &c) && c.started == total - 1);
	snprintf(line, sizeof(line), "t%d OK\r\n", forgotten + 5);
	CHECK(feed(t, IMAP_S2C, total, line, &c) && c.started == forgotten + 5);
	snprintf(line, sizeof(line), "t%d OK\r\n", total - 300);
	CHECK(feed(t, IMAP_S2C, total, line, &c) && c.started == total - 300);
	snprintf(line, sizeof(line), "t%d OK\r\n", forgotten + 1);
	CHECK(feed(t, IMAP_S2C, total, line, &c) && c.started == forgotten + 1);
	CHECK(imap_tracker_in_flight(t) == IMAP_TRACKER_MAX_FLIGHT - 5);
	CHECK_MSG(!feed(t, IMAP_S2C, total, "i0 OK\r\n", &c), "the IDLE was forgotten");
	for (int i = total - 2; i > forgotten + 1; i--) {
		if (i == forgotten + 5 || i == total - 300)
			continue;
		snprintf(line, sizeof(line), "t%d OK\r\n", i);
		CHECK(feed(t, IMAP_S2C, total + i, line, &c) && c.started == i);
	}
	CHECK(imap_tracker_in_flight(t) == 0);
	imap_tracker_free(&t);
}

/* The findings of one run, by rule, last detail kept. */
struct findings {
	int count[IMAP_RULE_COUNT];
	char tag[IMAP_RULE_COUNT][IMAP_ANOMALY_TAG_MAX];
	char detail[IMAP_RULE_COUNT][IMAP_ANOMALY_DETAIL_MAX];
};

static void on_anomaly(void *ctx, const struct imap_anomaly *a)
{
	struct findings *f = ctx;

	if (a->resolved)
		return;
	f->count[a->rule]++;
	memcpy(f->tag[a->rule], a->tag, sizeof(a->tag));
	memcpy(f->detail[a->rule], a->detail, sizeof(a->detail));
}

static struct imap_tracker *ruled(struct findings *f)
{
	struct imap_tracker *t = imap_tracker_new();
	struct imap_tracker_config cfg = {.stall = 1000000};

	memset(f, 0, sizeof(*f));
	imap_tracker_set_rules(t, &cfg, on_anomaly, f);
	return t;
}

/* pending-at-eof names the unanswered commands, a few of them, and the
 * literal the connection was cut inside of. */
static void test_pending_at_eof_names_tags_and_literal(void)
{
	struct findings f;
	struct imap_tracker *t = ruled(&f);
	struct imap_completion c;
	struct imap_literal_cut cut = {.dir = IMAP_C2S, .line = "b3 APPEND", .len = 100,
				       .missing = 60, .tag = {(const uint8_t *)"b3", 2}};
	char line[32];

	for (int i = 1; i <= 6; i++) {
		snprintf(line, sizeof(line), i == 3 ? "b%d APPEND INBOX {100}\r\n" : "b%d NOOP\r\n", i);
		feed(t, IMAP_C2S, i, line, &c);
	}
	imap_tracker_eof(t, 10, &cut);
	CHECK(f.count[IMAP_RULE_PENDING_AT_EOF] == 1);
	CHECK_MSG(strcmp(f.tag[IMAP_RULE_PENDING_AT_EOF], "b3") == 0, "tag %s",
		  f.tag[IMAP_RULE_PENDING_AT_EOF]);
	CHECK_MSG(strcmp(f.detail[IMAP_RULE_PENDING_AT_EOF],
			 "the connection ended inside the client's {100} literal of b3 APPEND: 60 of "
			 "its 100 byte(s) never came; 6 command(s) unanswered: b1 NOOP, b2 NOOP, "
			 "b3 APPEND, b4 NOOP and 2 more") == 0,
		  "detail %s", f.detail[IMAP_RULE_PENDING_AT_EOF]);
	imap_tracker_free(&t);

	t = ruled(&f);
	feed(t, IMAP_C2S, 1, "a1 NOOP\r\n", &c);
	imap_tracker_eof(t, 10, NULL);
	CHECK_MSG(strcmp(f.detail[IMAP_RULE_PENDING_AT_EOF],
			 "the connection ended with 1 command(s) unanswered: a1 NOOP") == 0,
		  "detail %s", f.detail[IMAP_RULE_PENDING_AT_EOF]);
	imap_tracker_free(&t);

	/* after BYE the server told why it goes */
	t = ruled(&f);
	feed(t, IMAP_C2S, 1, "a1 NOOP\r\n", &c);
	feed(t, IMAP_S2C, 2, "* BYE shutting down\r\n", &c);
	imap_tracker_eof(t, 10, NULL);
	CHECK(f.count[IMAP_RULE_PENDING_AT_EOF] == 0);
	imap_tracker_free(&t);

	/* a tag as long as allowed stays bounded */
	t = ruled(&f);
	for (int i = 0; i < 8; i++) {
		char tag_line[200];

		snprintf(tag_line, sizeof(tag_line), "%0120d NOOP\r\n", i);
		feed(t, IMAP_C2S, i, tag_line, &c);
	}
	imap_tracker_eof(t, 10, &cut);
	CHECK(f.count[IMAP_RULE_PENDING_AT_EOF] == 1);
	CHECK(strstr(f.detail[IMAP_RULE_PENDING_AT_EOF], "never came; 8 command(s) unanswered") !=
	      NULL);
	imap_tracker_free(&t);
}

/* command-stall says which side is silent and where the server stopped.
 * The tick comes late (2 s); the rule is stamped with the instant its
 * threshold (1 s of quiet) passed, as a timer on time would have. */
static void test_command_stall_says_where_the_server_stopped(void)
{
	static const struct {
		struct imap_server_partial partial;
		const char *untagged; /* a whole response first, or NULL */
		const char *want;
	} cases[] = {
		{{0, 0, 0}, NULL, "a1 FETCH sent 1.000 s ago, no tagged completion: the server never "
				  "started answering (nothing from it since)"},
		{{0, 0, 0}, "* 1 FETCH (FLAGS ())\r\n",
		 "a1 FETCH sent 1.500 s ago, no tagged completion: the server sent 1 untagged "
		 "response(s), then nothing for 1.000 s"},
		{{17, 0, 0}, NULL, "a1 FETCH sent 1.500 s ago, no tagged completion: the server "
				   "stopped mid-response, 17 byte(s) into a line that has no CRLF yet, "
				   "and has sent nothing for 1.000 s"},
		{{0, 4096, 1000}, NULL, "a1 FETCH sent 1.500 s ago, no tagged completion: the server "
					"stopped mid-response, inside a {4096} literal with 1000 of "
					"its bytes still to come, and has sent nothing for 1.000 s"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct findings f;
		struct imap_tracker *t = ruled(&f);
		struct imap_completion c;

		feed(t, IMAP_C2S, 0, "a1 FETCH 1:* BODY[]\r\n", &c);
		if (cases[i].untagged != NULL)
			feed(t, IMAP_S2C, 500000, cases[i].untagged, &c);
		else if (cases[i].partial.line_bytes > 0 || cases[i].partial.literal_len > 0)
			imap_tracker_activity(t, IMAP_S2C, 500000);
		imap_tracker_server_partial(t, &cases[i].partial);
		imap_tracker_tick(t, 900000);
		CHECK(f.count[IMAP_RULE_COMMAND_STALL] == 0);
		imap_tracker_tick(t, 2000000);
		CHECK_MSG(f.count[IMAP_RULE_COMMAND_STALL] == 1, "case %zu: %d", i,
			  f.count[IMAP_RULE_COMMAND_STALL]);
		CHECK_MSG(strcmp(f.detail[IMAP_RULE_COMMAND_STALL], cases[i].want) == 0,
			  "case %zu: %s", i, f.detail[IMAP_RULE_COMMAND_STALL]);
		imap_tracker_free(&t);
	}
}

/* A client that sends DONE after the server ended IDLE gets "DONE BAD":
 * stray-done says it, and that answer is no unknown tag. */
static void test_stray_done_answered_by_done_bad(void)
{
	struct findings f;
	struct imap_tracker *t = ruled(&f);
	struct imap_completion c;

	feed(t, IMAP_C2S, 0, "a1 IDLE\r\n", &c);
	feed(t, IMAP_S2C, 1, "+ idling\r\n", &c);
	CHECK(feed(t, IMAP_S2C, 2, "a1 OK IDLE terminated\r\n", &c));
	CHECK(f.count[IMAP_RULE_COMPLETION_BEFORE_DONE] == 1);
	feed(t, IMAP_C2S, 3, "DONE\r\n", &c);
	CHECK(f.count[IMAP_RULE_STRAY_DONE] == 1);
	CHECK(!feed(t, IMAP_S2C, 4, "DONE BAD Error in IMAP command received by server.\r\n", &c));
	CHECK(f.count[IMAP_RULE_UNKNOWN_TAG] == 0);
	/* only one such answer is expected */
	CHECK(!feed(t, IMAP_S2C, 5, "DONE BAD again\r\n", &c));
	CHECK(f.count[IMAP_RULE_UNKNOWN_TAG] == 1);
	imap_tracker_free(&t);
}

/* The next deadline is exactly when a tick fires the rule: a session timer
 * armed for it misses nothing and wakes for nothing. */
static void test_next_deadline_is_when_rules_fire(void)
{
	struct findings f;
	struct imap_tracker *t = imap_tracker_new();
	struct imap_completion c;

	CHECK(imap_tracker_next_deadline(t) == -1); /* rules off */
	imap_tracker_free(&t);

	t = ruled(&f); /* stall 1 s, done-stall 5 s */
	CHECK(imap_tracker_next_deadline(t) == -1);
	feed(t, IMAP_C2S, 100, "a1 NOOP\r\n", &c);
	CHECK(imap_tracker_next_deadline(t) == 1000100);
	imap_tracker_tick(t, 1000099);
	CHECK(f.count[IMAP_RULE_COMMAND_STALL] == 0);
	imap_tracker_tick(t, 1000100);
	CHECK(f.count[IMAP_RULE_COMMAND_STALL] == 1);
	CHECK(imap_tracker_next_deadline(t) == -1); /* said once */
	feed(t, IMAP_S2C, 1200000, "a1 OK done\r\n", &c);

	feed(t, IMAP_C2S, 2000000, "a2 IDLE\r\n", &c);
	feed(t, IMAP_S2C, 2000001, "+ idling\r\n", &c);
	CHECK(imap_tracker_next_deadline(t) == 2000000 + IMAP_TRACKER_DEFAULT_IDLE_MAX);
	feed(t, IMAP_C2S, 3000000, "DONE\r\n", &c);
	CHECK(imap_tracker_next_deadline(t) == 3000000 + IMAP_TRACKER_DEFAULT_DONE_STALL);
	imap_tracker_tick(t, 3000000 + IMAP_TRACKER_DEFAULT_DONE_STALL - 1);
	CHECK(f.count[IMAP_RULE_DONE_STALL] == 0);
	imap_tracker_tick(t, 3000000 + IMAP_TRACKER_DEFAULT_DONE_STALL);
	CHECK(f.count[IMAP_RULE_DONE_STALL] == 1);
	feed(t, IMAP_S2C, 9000000, "a2 OK IDLE done\r\n", &c);
	CHECK(imap_tracker_next_deadline(t) == -1);

	/* a peer that stopped reading */
	imap_tracker_blocked(t, IMAP_S2C, 9500000, 4096, 9600000);
	CHECK(imap_tracker_next_deadline(t) == 10500000);
	imap_tracker_tick(t, 10500000);
	CHECK(f.count[IMAP_RULE_CLIENT_NOT_READING] == 1);
	CHECK(imap_tracker_next_deadline(t) == -1);
	imap_tracker_blocked(t, IMAP_C2S, 11000000, 0, 11000000);
	CHECK(imap_tracker_next_deadline(t) == 12000000);
	imap_tracker_tick(t, 11999999);
	CHECK(f.count[IMAP_RULE_SERVER_NOT_READING] == 0);
	imap_tracker_tick(t, 12000000);
	CHECK(f.count[IMAP_RULE_SERVER_NOT_READING] == 1);
	CHECK(imap_tracker_next_deadline(t) == -1);
	imap_tracker_free(&t);

	/* a server that never greets */
	t = ruled(&f);
	imap_tracker_connected(t, 500);
	CHECK(imap_tracker_next_deadline(t) == 1000500);
	imap_tracker_tick(t, 1000499);
	CHECK(f.count[IMAP_RULE_GREETING_STALL] == 0);
	imap_tracker_tick(t, 1000500);
	CHECK(f.count[IMAP_RULE_GREETING_STALL] == 1);
	CHECK(imap_tracker_next_deadline(t) == -1);
	imap_tracker_free(&t);

	/* keepalive-gap during IDLE, once per silence */
	{
		struct imap_tracker_config cfg = {.stall = 1000000, .keepalive_gap = 3000000};

		t = imap_tracker_new();
		memset(&f, 0, sizeof(f));
		imap_tracker_set_rules(t, &cfg, on_anomaly, &f);
	}
	feed(t, IMAP_C2S, 100, "a1 IDLE\r\n", &c);
	imap_tracker_continuation(t, 200, false);
	CHECK(imap_tracker_next_deadline(t) == 3000200);
	imap_tracker_tick(t, 3000199);
	CHECK(f.count[IMAP_RULE_KEEPALIVE_GAP] == 0);
	imap_tracker_tick(t, 3000200);
	CHECK(f.count[IMAP_RULE_KEEPALIVE_GAP] == 1);
	CHECK(imap_tracker_next_deadline(t) == 100 + IMAP_TRACKER_DEFAULT_IDLE_MAX);
	imap_tracker_tick(t, 100 + IMAP_TRACKER_DEFAULT_IDLE_MAX);
	CHECK(f.count[IMAP_RULE_IDLE_TOO_LONG] == 1 && f.count[IMAP_RULE_KEEPALIVE_GAP] == 1);
	CHECK(imap_tracker_next_deadline(t) == -1);
	imap_tracker_free(&t);
}

/* One constructor for every finding: the table's severity, no threshold
 * or wait until the caller sets them, the tag cut to fit. */
static void test_anomaly_make(void)
{
	struct imap_anomaly a;
	uint8_t tag[100];

	memset(tag, 't', sizeof(tag));
	imap_anomaly_make(&a, IMAP_RULE_OUT_OF_ORDER_COMPLETION, 42, tag, sizeof(tag), "n=%d", 7);
	CHECK(a.rule == IMAP_RULE_OUT_OF_ORDER_COMPLETION && a.ts == 42);
	CHECK(a.severity == IMAP_SEVERITY_INFO && a.threshold == -1 && a.waited == -1 && !a.resolved);
	CHECK(strlen(a.tag) == IMAP_ANOMALY_TAG_MAX - 1 && strcmp(a.detail, "n=7") == 0);
	imap_anomaly_make(&a, IMAP_RULE_DONE_STALL, 1, NULL, 0, "x");
	CHECK(a.tag[0] == '\0' && a.severity == IMAP_SEVERITY_WARNING);
	CHECK(imap_rule_blame(IMAP_RULE_DONE_STALL) == IMAP_BLAME_SERVER);
	CHECK(imap_rule_blame(IMAP_RULE_STRAY_DONE) == IMAP_BLAME_CLIENT);
	CHECK(strcmp(imap_blame_str(imap_rule_blame(IMAP_RULE_PARSE_ERROR)), "either") == 0);
}

/* A peer that invents thousands of command names: the summary keeps
 * IMAP_SUMMARY_NAMES entries, the last counting every name past them. */
static void test_summary_names_bounded(void)
{
	struct imap_summary_builder *b = imap_summary_new();
	const struct imap_summary *sum;
	struct imap_completion c = {.status = IMAP_STATUS_NO, .latency = 1000};
	uint64_t total = 0;

	for (unsigned i = 0; i < 5000; i++) {
		snprintf(c.command, sizeof(c.command), "X%u", i);
		imap_summary_completion(b, &c, false);
	}
	imap_summary_completion(b, &c, true); /* an injected one of a known name */
	sum = imap_summary_get(b);
	CHECK(sum->command_count == IMAP_SUMMARY_NAMES);
	CHECK(strcmp(sum->commands[0].name, "X0") == 0 && sum->commands[0].count == 1);
	CHECK(strcmp(sum->commands[IMAP_SUMMARY_NAMES - 1].name, IMAP_SUMMARY_OTHER) == 0);
	for (size_t i = 0; i < sum->command_count; i++) {
		total += sum->commands[i].count;
		CHECK(sum->commands[i].no == sum->commands[i].count);
	}
	CHECK(total == 5000);
	CHECK(sum->commands[IMAP_SUMMARY_NAMES - 1].injected == 1);
	imap_summary_free(&b);
}

int main(void)
{
	test_summary_names_bounded();
	test_next_deadline_is_when_rules_fire();
	test_anomaly_make();
	test_pending_at_eof_names_tags_and_literal();
	test_command_stall_says_where_the_server_stopped();
	test_stray_done_answered_by_done_bad();
	test_latency();
	test_idle_done_to_ok();
	test_pipelined_out_of_order_and_uid();
	test_auth_pending();
	test_flight_is_bounded();
	test_full_flight_pairs_after_wrapping();
	return check_finish("tracker");
}
