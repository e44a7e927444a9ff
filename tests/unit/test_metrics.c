/* The metrics sink and its text: sessions open and closed in any order
 * (the table of open sessions), bytes by route, label values escaped,
 * bucket bounds inclusive, made-up command names bounded, outputs' stats
 * summed by kind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/metrics.h"
#include "check.h"

static struct capture_metrics *metrics;
static struct capture_sink sink;

static void start(void)
{
	const struct capture_metrics_config c = {.version = "1.2.3", .started = 1700000000500000};

	metrics = capture_metrics_new(&c, &sink);
	CHECK(metrics != NULL);
}

static void stop(void)
{
	sink.ops->destroy(sink.self);
}

static char *render(const struct capture_sinks *outputs)
{
	size_t len = 0;
	char *text = capture_metrics_render(metrics, outputs, &len);

	CHECK(text != NULL && strlen(text) == len);
	return text;
}

/* The value of the sample line starting with prefix (name and labels),
 * or -1 when there is none. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static void open_session(unsigned id, const char *route)
{
	const struct capture_session_info info = {.id = id, .route = route};

	sink.ops->open(sink.self, &info);
}

static void close_session(unsigned id)
{
	const struct capture_close_info info = {.id = id};

	sink.ops->close(sink.self, &info);
}

static void complete(const char *command, int uid, imap_time_us latency)
{
	struct imap_completion c = {.uid = uid != 0, .latency = latency, .done_at = -1,
				    .done_to_ok = -1};
	struct imap_observation obs = {.completion = &c};

	snprintf(c.command, sizeof(c.command), "%s", command);
	sink.ops->observe(sink.self, 1, &obs);
}

static void test_sessions_in_any_order(void)
{
	const uint8_t data[10] = {0};
	char *text;

	start();
	/* ids that collide in the table and are closed out of order */
	for (unsigned i = 1; i <= 1000; i++) {
		open_session(i * 64, i % 3 == 0 ? "b" : NULL);
		sink.ops->bytes(sink.self, i * 64, IMAP_C2S, 0, data, 10, 0);
		sink.ops->bytes(sink.self, i * 64, IMAP_S2C, 0, data, 3, 0);
	}
	for (unsigned i = 1; i <= 1000; i += 2)
		close_session(i * 64);
	text = render(NULL);
	CHECK(sample(text, "imaptap_sessions_open{route=\"default\"}") +
		      sample(text, "imaptap_sessions_open{route=\"b\"}") == 500);
	CHECK(sample(text, "imaptap_sessions_total{route=\"default\"}") == 667);
	CHECK(sample(text, "imaptap_sessions_total{route=\"b\"}") == 333);
	CHECK(sample(text, "imaptap_relayed_bytes_total{route=\"b\",direction=\"client_to_server\"}") ==
	      3330);
	CHECK(sample(text, "imaptap_relayed_bytes_total{route=\"default\",direction=\"server_to_client\"}") ==
	      2001);
	free(text);
	for (unsigned i = 1000; i >= 2; i -= 2) {
		/* every open one is still found: its bytes count */
		sink.ops->bytes(sink.self, i * 64, IMAP_C2S, 0, data, 1, 0);
		close_session(i * 64);
	}
	close_session(5); /* never opened */
	text = render(NULL);
	/* every close counted once, under its route, by who and how */
	CHECK(sample(text, "imaptap_sessions_closed_total{route=\"default\",by=\"client\",end=\"eof\"}") ==
	      667);
	CHECK(sample(text, "imaptap_sessions_closed_total{route=\"b\",by=\"client\",end=\"eof\"}") ==
	      333);
	CHECK(strstr(text, "imaptap_sessions_closed_total{route=\"b\",by=\"server\"") == NULL);
	CHECK(sample(text, "imaptap_sessions_open{route=\"default\"}") == 0);
	CHECK(sample(text, "imaptap_sessions_open{route=\"b\"}") == 0);
	CHECK(sample(text, "imaptap_relayed_bytes_total{route=\"b\",direction=\"client_to_server\"}") +
		      sample(text, "imaptap_relayed_bytes_total{route=\"default\",direction=\"client_to_server\"}") ==
	      10000 + 500);
	CHECK(strstr(text, "imaptap_build_info{version=\"1.2.3\"} 1\n") != NULL);
	CHECK(strstr(text, "imaptap_start_time_seconds 1700000000.500000\n") != NULL);
	free(text);
	stop();
}

static void test_labels_escaped(void)
{
	char *text;

	start();
	open_session(1, "a\"b\\c\nd\x1b\xc3\xa9");
	text = render(NULL);
	CHECK_MSG(strstr(text, "imaptap_sessions_open{route=\"a\\\"b\\\\c\\nd???\"} 1\n") != NULL,
		  "%s", text);
	free(text);
	stop();
}

static void test_buckets_and_commands(void)
{
	char *text;
	char name[64];

	start();
	complete("LOGIN", 0, 1000);   /* 0.001 s: in le="0.001" */
	complete("LOGIN", 0, 1001);
	complete("FETCH", 1, 20 * 1000000);
	complete("X\x1b[31m", 0, 5);
	complete("FOO1", 0, 5);
	complete("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0, 5); /* too long for a name */
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "XNEW%c", 'A' + i);
		complete(name, 0, 5);
	}
	complete("SELECT", 0, 5); /* a known name after the made-up ones */
	text = render(NULL);
	CHECK(sample(text, "imaptap_command_duration_seconds_bucket{command=\"LOGIN\",le=\"0.001\"}") == 1);
	CHECK(sample(text, "imaptap_command_duration_seconds_bucket{command=\"LOGIN\",le=\"0.005\"}") == 2);
	CHECK(sample(text, "imaptap_command_duration_seconds_bucket{command=\"LOGIN\",le=\"+Inf\"}") == 2);
	CHECK(sample(text, "imaptap_command_duration_seconds_sum{command=\"LOGIN\"}") == 0.002001);
	CHECK(sample(text, "imaptap_command_duration_seconds_bucket{command=\"UID FETCH\",le=\"10\"}") == 0);
	CHECK(sample(text, "imaptap_command_duration_seconds_bucket{command=\"UID FETCH\",le=\"30\"}") == 1);
	CHECK(sample(text, "imaptap_command_duration_seconds_count{command=\"XNEWH\"}") == 1);
	CHECK(sample(text, "imaptap_command_duration_seconds_count{command=\"XNEWI\"}") == -1);
	CHECK(sample(text, "imaptap_command_duration_seconds_count{command=\"SELECT\"}") == 1);
	CHECK(sample(text, "imaptap_command_duration_seconds_count{command=\"OTHER\"}") == 5);
	CHECK(strstr(text, "\x1b") == NULL);
	CHECK(sample(text, "imaptap_idle_done_to_ok_seconds_count") == 0);
	CHECK(sample(text, "imaptap_anomalies_total{rule=\"done-stall\"}") == 0);
	free(text);
	stop();
}

static void test_idle_and_findings(void)
{
	struct imap_completion c = {.idle = true, .latency = 40000000, .done_at = 1,
				    .done_to_ok = 900 * 1000000ll};
	struct imap_observation obs = {.completion = &c};
	struct imap_anomaly a = {.rule = IMAP_RULE_DONE_STALL};
	const struct capture_fault_mark mark = {.action = "delay", .phase = "active"};
	char *text;

	start();
	snprintf(c.command, sizeof(c.command), "IDLE");
	sink.ops->observe(sink.self, 1, &obs);
	sink.ops->anomaly(sink.self, 1, &a);
	a.resolved = true; /* the same finding again */
	sink.ops->anomaly(sink.self, 1, &a);
	sink.ops->fault(sink.self, 1, &mark);
	sink.ops->fault(sink.self, 2, &mark);
	text = render(NULL);
	CHECK(sample(text, "imaptap_idle_done_to_ok_seconds_bucket{le=\"600\"}") == 0);
	CHECK(sample(text, "imaptap_idle_done_to_ok_seconds_bucket{le=\"1800\"}") == 1);
	CHECK(sample(text, "imaptap_idle_done_to_ok_seconds_count") == 1);
	CHECK(sample(text, "imaptap_anomalies_total{rule=\"done-stall\"}") == 1);
	CHECK(sample(text, "imaptap_faults_injected_total{action=\"delay\",phase=\"active\"}") == 2);
	free(text);
	stop();
}

static void fake_stats(void *self, struct capture_output_stats *s)
{
	const unsigned *n = self;

	s->output = *n == 3 ? "events" : "pcap";
	s->bytes = *n;
	s->write_errors = 1;
}

static void test_outputs(void)
{
	static const struct capture_sink_ops fake = {.stats = fake_stats};
	static const struct capture_sink_ops none = {0};
	unsigned one = 1, two = 2, three = 3;
	struct capture_sinks outputs = {0};
	char *text;

	start();
	capture_sinks_add(&outputs, (struct capture_sink){&fake, &one});
	capture_sinks_add(&outputs, (struct capture_sink){&none, NULL});
	capture_sinks_add(&outputs, (struct capture_sink){&fake, &two});
	capture_sinks_add(&outputs, (struct capture_sink){&fake, &three});
	text = render(&outputs);
	CHECK(sample(text, "imaptap_capture_written_bytes_total{output=\"pcap\"}") == 3);
	CHECK(sample(text, "imaptap_capture_write_errors_total{output=\"pcap\"}") == 2);
	CHECK(sample(text, "imaptap_capture_written_bytes_total{output=\"events\"}") == 3);
	CHECK(sample(text, "imaptap_capture_readers_dropped_total{output=\"pcap\"}") == -1);
	free(text);
	stop();
}

int main(void)
{
	test_sessions_in_any_order();
	test_labels_escaped();
	test_buckets_and_commands();
	test_idle_and_findings();
	test_outputs();
	return check_finish("metrics");
}
