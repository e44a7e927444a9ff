/* --route as given (NAME=HOST:PORT[,MODE], hostile ones refused), the
 * server-name match that picks a route, and the table of each open
 * session's route that the timeline and the event log keep. */
#include <stdio.h>
#include <string.h>

#include "capture/route_names.h"
#include "check.h"
#include "proxy/route.h"

static void test_spec_parse(void)
{
	struct proxy_route_spec r;
	char err[512];

	CHECK(proxy_route_spec_parse("imap.gmail.com=imap.gmail.com:993", &r, err, sizeof(err)) == 0);
	CHECK(strcmp(r.name, "imap.gmail.com") == 0 && strcmp(r.upstream.host, "imap.gmail.com") == 0);
	CHECK(r.upstream.port == 993 && r.tls == PROXY_TLS_IMPLICIT);
	CHECK(proxy_route_spec_parse("*.example.com=[::1]:143,starttls", &r, err, sizeof(err)) == 0);
	CHECK(strcmp(r.upstream.host, "::1") == 0 && r.tls == PROXY_TLS_STARTTLS);
	CHECK(proxy_route_spec_parse("a.example=10.0.0.1:993,none", &r, err, sizeof(err)) == 0);
	CHECK(r.tls == PROXY_TLS_NONE);
	CHECK(proxy_route_spec_parse("a.example=10.0.0.1:143", &r, err, sizeof(err)) == 0);
	CHECK(r.tls == PROXY_TLS_NONE);
	static const char *const bad[] = {
		"", "=", "a.example", "=host:1", "a.example=", "a.example=host",
		"a.example=host:0", "a.example=host:70000", "a.example=host:1,tls",
		"a.example=host:1,", "bad name=host:1", "a\x1b[31m=host:1", "*.=host:1",
		"a.example.=host:1", ".a.example=host:1", "*=host:1", "a,b=host:1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(proxy_route_spec_parse(bad[i], &r, err, sizeof(err)) < 0 && err[0] != '\0',
			  "accepted '%s'", bad[i]);
	/* a name over a DNS name's length */
	char longname[600];
	memset(longname, 'a', 300);
	snprintf(longname + 300, sizeof(longname) - 300, "=host:1");
	CHECK(proxy_route_spec_parse(longname, &r, err, sizeof(err)) < 0);
}

static void test_name_matches(void)
{
	CHECK(proxy_route_name_matches("imap.gmail.com", "IMAP.Gmail.COM"));
	CHECK(!proxy_route_name_matches("imap.gmail.com", "imap.gmail.com.evil"));
	CHECK(!proxy_route_name_matches("imap.gmail.com", NULL));
	CHECK(!proxy_route_name_matches("imap.gmail.com", ""));
	CHECK(proxy_route_name_matches("*.example.com", "a.example.com"));
	CHECK(proxy_route_name_matches("*.example.com", "a.b.Example.com"));
	CHECK(!proxy_route_name_matches("*.example.com", "example.com"));
	CHECK(!proxy_route_name_matches("*.example.com", ".example.com"));
	CHECK(!proxy_route_name_matches("*.example.com", "badexample.com"));
}

static void test_route_names(void)
{
	struct capture_route_names *m = capture_route_names_new();
	char name[32];

	CHECK(m != NULL);
	CHECK(capture_route_names_get(m, 1) == NULL);
	capture_route_names_open(m, 1, NULL); /* one upstream: nothing kept */
	CHECK(capture_route_names_get(m, 1) == NULL);
	/* many sessions over few names, opened and closed in waves, so the
	 * table grows and entries are moved back over removed ones */
	for (unsigned wave = 0; wave < 20; wave++) {
		for (unsigned id = wave * 1000 + 1; id <= wave * 1000 + 1000; id++) {
			snprintf(name, sizeof(name), "r%u.example", id % 7);
			capture_route_names_open(m, id, name);
		}
		for (unsigned id = wave * 1000 + 1; id <= wave * 1000 + 1000; id++) {
			const char *got = capture_route_names_get(m, id);

			snprintf(name, sizeof(name), "r%u.example", id % 7);
			CHECK_MSG(got != NULL && strcmp(got, name) == 0, "session %u: %s", id,
				  got ? got : "(none)");
			if (id % 3 != 0)
				capture_route_names_close(m, id);
		}
	}
	for (unsigned id = 1; id <= 20000; id++) {
		const char *got = capture_route_names_get(m, id);

		CHECK_MSG((got != NULL) == (id % 3 == 0), "session %u", id);
	}
	capture_route_names_close(m, 999999); /* never opened */
	capture_route_names_free(&m);
	CHECK(m == NULL);
	capture_route_names_free(&m);
}

int main(void)
{
	test_spec_parse();
	test_name_matches();
	test_route_names();
	return check_finish("route");
}
