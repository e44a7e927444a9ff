/* Tracker: completions pair with their commands, latencies come from the
 * times fed in, IDLE reports DONE->OK. */
#include <stdio.h>
#include <string.h>

#include "check.h"
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

int main(void)
{
	test_latency();
	test_idle_done_to_ok();
	test_pipelined_out_of_order_and_uid();
	test_auth_pending();
	test_flight_is_bounded();
	return check_finish("tracker");
}
