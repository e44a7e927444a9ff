/* The pcap's fault mark text: what the writer formats reads back the
 * same; other syslog is not a mark; a damaged mark says why. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "capture/fault_mark.h"
#include "check.h"

static const struct capture_fault_mark MARK = {
	.ts = 1714572131503318,
	.action = "hold-idle-completion",
	.phase = "start",
	.dir = IMAP_S2C,
	.spec = "hold-idle-completion:3s,session=2",
	.detail = "holding the server's 'a5 OK Idle completed: done.' for 3.000 s",
};

#define HEAD "<133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - fault - injected fault " \
	     "session=2 client="

static enum capture_fault_mark_parse_result parse(const char *text,
						  struct capture_fault_mark_read *r, char *why)
{
	return capture_fault_mark_parse((const uint8_t *)text, strlen(text), r, why, 120);
}

static void test_round_trip(int version, const char *addr, const char *shown)
{
	struct capture_endpoint client = {.version = (uint8_t)version, .port = 50432};
	struct capture_fault_mark_read r;
	char text[CAPTURE_FAULT_MARK_TEXT_MAX], why[120];

	inet_pton(version == 6 ? AF_INET6 : AF_INET, addr, client.addr);
	capture_fault_mark_format(text, sizeof(text), 2, &client, &MARK);
	CHECK_MSG(strstr(text, shown) != NULL, "%s", text);
	CHECK(strncmp(text, HEAD, strlen(HEAD)) == 0);
	CHECK(parse(text, &r, why) == CAPTURE_FAULT_MARK_OK);
	CHECK(r.session == 2);
	CHECK(r.client_known);
	CHECK(memcmp(&r.client, &client, sizeof(client)) == 0);
	CHECK(strcmp(r.mark.action, MARK.action) == 0);
	CHECK(strcmp(r.mark.phase, MARK.phase) == 0);
	CHECK(r.mark.dir == IMAP_S2C);
	CHECK(strcmp(r.mark.spec, MARK.spec) == 0);
	CHECK(strcmp(r.mark.detail, MARK.detail) == 0);
}

/* A text cut anywhere before its detail is damaged, never read. */
static void test_every_cut(void)
{
	struct capture_endpoint client = {.version = 4, .addr = {127, 0, 0, 1}, .port = 40000};
	struct capture_fault_mark_read r;
	char text[CAPTURE_FAULT_MARK_TEXT_MAX], why[120];
	size_t len = capture_fault_mark_format(text, sizeof(text), 1, &client, &MARK);
	const char *detail = strstr(text, MARK.detail);
	const size_t header = (size_t)(strstr(text, "session=") - text);

	for (size_t n = 0; n < len; n++) {
		enum capture_fault_mark_parse_result got =
			capture_fault_mark_parse((const uint8_t *)text, n, &r, why, sizeof(why));

		if (n < header)
			CHECK_MSG(got == CAPTURE_FAULT_MARK_NONE, "cut at %zu", n);
		else if (text + n < detail)
			CHECK_MSG(got == CAPTURE_FAULT_MARK_DAMAGED && why[0] != '\0', "cut at %zu",
				  n);
		else
			CHECK_MSG(got == CAPTURE_FAULT_MARK_OK, "cut at %zu", n);
	}
}

static void test_other_texts(void)
{
	static const struct {
		const char *text;
		enum capture_fault_mark_parse_result want;
		const char *why;
	} cases[] = {
		{"", CAPTURE_FAULT_MARK_NONE, ""},
		{"<134>1 2024-05-01T10:00:00Z host app 42 - - hello", CAPTURE_FAULT_MARK_NONE, ""},
		{"<13>May  1 10:00:00 host imaptap: fault", CAPTURE_FAULT_MARK_NONE, ""},
		{"<133>1 - imaptap imaptap - other - hi", CAPTURE_FAULT_MARK_NONE, ""},
		/* written before client= existed */
		{"<133>1 - imaptap imaptap - fault - injected fault session=3 action=delay "
		 "phase=active dir=c2s spec=delay:c2s:1s: every byte late",
		 CAPTURE_FAULT_MARK_OK, ""},
		{"<133>1 - imaptap imaptap - fault - injected fault session=0 action=delay "
		 "phase=active dir=c2s spec=delay:c2s:1s: x",
		 CAPTURE_FAULT_MARK_DAMAGED, "session= is not a session number"},
		{"<133>1 - imaptap imaptap - fault - injected fault session=1 client=[::1]:99999 "
		 "action=delay phase=active dir=c2s spec=delay:c2s:1s: x",
		 CAPTURE_FAULT_MARK_DAMAGED, "client= is not an address and port"},
		{"<133>1 - imaptap imaptap - fault - injected fault session=1 client=::1:5 "
		 "action=delay phase=active dir=c2s spec=delay:c2s:1s: x",
		 CAPTURE_FAULT_MARK_DAMAGED, "client= is not an address and port"},
		{"<133>1 - imaptap imaptap - fault - injected fault session=1 action=delay "
		 "phase=active dir=up spec=delay:c2s:1s: x",
		 CAPTURE_FAULT_MARK_DAMAGED, "no dir=c2s or dir=s2c"},
		{"<133>1 - imaptap imaptap - fault - injected fault session=1 action=delay "
		 "phase=active dir=c2s spec=delay:c2s:1s x",
		 CAPTURE_FAULT_MARK_DAMAGED, "the text ends before the detail"},
	};
	struct capture_fault_mark_read r;
	char why[120];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_MSG(parse(cases[i].text, &r, why) == cases[i].want, "case %zu", i);
		CHECK_MSG(strcmp(why, cases[i].why) == 0, "case %zu: '%s'", i, why);
	}
	CHECK(parse(cases[4].text, &r, why) == CAPTURE_FAULT_MARK_OK);
	CHECK(r.session == 3 && !r.client_known && r.mark.dir == IMAP_C2S);
	CHECK(strcmp(r.mark.spec, "delay:c2s:1s") == 0);
	CHECK(strcmp(r.mark.detail, "every byte late") == 0);
}

/* A NUL inside the detail: the writer's detail is a C string, so the
 * datagram is not one it wrote. */
static void test_nul_in_detail(void)
{
	static const char text[] = "<133>1 - imaptap imaptap - fault - injected fault session=1 "
				   "action=delay phase=active dir=c2s spec=delay:c2s:1s: a\0b";
	struct capture_fault_mark_read r;
	char why[120];

	CHECK(capture_fault_mark_parse((const uint8_t *)text, sizeof(text) - 1, &r, why,
				       sizeof(why)) == CAPTURE_FAULT_MARK_DAMAGED);
	CHECK(strcmp(why, "a NUL byte in the detail") == 0);
}

/* The close mark reads back as written; a fault mark is not one, nor the
 * other way round; a word that names nothing is damage. */
static void test_close_mark(void)
{
	struct capture_endpoint client = {.version = 4, .port = 50432};
	struct capture_close_info info = {.id = 3, .ts = 1714572131503318, .by = CAPTURE_SIDE_PROXY,
					  .end = CAPTURE_END_SHUTDOWN,
					  .reason = "proxy shutting down"};
	struct capture_close_mark_read r;
	struct capture_fault_mark_read f;
	char text[CAPTURE_FAULT_MARK_TEXT_MAX], why[120], bad[CAPTURE_FAULT_MARK_TEXT_MAX];
	size_t n;

	inet_pton(AF_INET, "127.0.0.1", client.addr);
	n = capture_close_mark_format(text, sizeof(text), 3, &client, &info);
	CHECK_MSG(strcmp(text, "<133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - close - session "
			       "ended session=3 client=127.0.0.1:50432 by=proxy end=shutdown: proxy "
			       "shutting down") == 0,
		  "%s", text);
	CHECK(capture_close_mark_parse((const uint8_t *)text, n, &r, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_OK);
	CHECK(r.session == 3 && r.client_known && r.client.port == 50432);
	CHECK(r.by == CAPTURE_SIDE_PROXY && r.end == CAPTURE_END_SHUTDOWN);
	CHECK(strcmp(r.reason, "proxy shutting down") == 0);
	CHECK(capture_fault_mark_parse((const uint8_t *)text, n, &f, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_NONE);
	capture_fault_mark_format(bad, sizeof(bad), 2, &client, &MARK);
	CHECK(capture_close_mark_parse((const uint8_t *)bad, strlen(bad), &r, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_NONE);
	snprintf(bad, sizeof(bad), "%.*s", (int)(strstr(text, "by=") - text), text);
	strcat(bad, "by=mallory end=shutdown: x");
	CHECK(capture_close_mark_parse((const uint8_t *)bad, strlen(bad), &r, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_DAMAGED);
	CHECK_MSG(strstr(why, "by=") != NULL, "%s", why);
	snprintf(bad, sizeof(bad), "%.*s", (int)(strstr(text, "end=") - text), text);
	strcat(bad, "end=exploded: x");
	CHECK(capture_close_mark_parse((const uint8_t *)bad, strlen(bad), &r, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_DAMAGED);
	/* every cut of it reads as damage or as no mark, never as a mark */
	for (size_t cut = 0; cut + 1 < n; cut++)
		CHECK(capture_close_mark_parse((const uint8_t *)text, cut, &r, why, sizeof(why)) !=
		      CAPTURE_FAULT_MARK_OK || cut >= strlen(text) - strlen("proxy shutting down"));
}

int main(void)
{
	test_close_mark();
	test_round_trip(4, "127.0.0.1", " client=127.0.0.1:50432 action=hold-idle-completion ");
	test_round_trip(6, "2001:db8::7", " client=[2001:db8::7]:50432 action=");
	test_every_cut();
	test_other_texts();
	test_nul_in_detail();
	return check_finish("fault_mark");
}
