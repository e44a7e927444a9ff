/* Transcript scripts: the events a good script makes (bytes, times,
 * sessions, expectations) and every error with its line and column. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "replay/script.h"

static struct replay_script *parse_ok(const char *text)
{
	struct replay_script *s = NULL;
	char err[512] = "";

	if (replay_script_parse("t.imap", text, strlen(text), &s, err, sizeof(err)) != 0)
		check_fail(__FILE__, __LINE__, "unexpected error: %s\n%s", err, text);
	return s;
}

static bool data_is(const struct replay_script_event *e, enum imap_dir dir, const char *bytes)
{
	return e->kind == REPLAY_SCRIPT_DATA && e->dir == dir && e->len == strlen(bytes) &&
	       memcmp(e->data, bytes, e->len) == 0;
}

static void test_lines_and_times(void)
{
	struct replay_script *s = parse_ok("# a comment\n"
					   "@expect done-stall, command-stall\n"
					   "\n"
					   "S: * OK ready\n"
					   "C: a1 NOOP\n"
					   "+30s\n"
					   "S: a1 OK \\Seen stays\n"
					   "+250ms\n"
					   "+1.5s\n"
					   "C: \n"
					   "@40s\n"
					   "C:\n"
					   "close server\n");

	if (s == NULL)
		return;
	CHECK(s->expect_given);
	CHECK(s->expect[IMAP_RULE_DONE_STALL] && s->expect[IMAP_RULE_COMMAND_STALL]);
	CHECK(!s->expect[IMAP_RULE_PARSE_ERROR]);
	CHECK(s->sessions == 1);
	CHECK(s->count == 7);
	CHECK(s->events[0].kind == REPLAY_SCRIPT_OPEN && s->events[0].at == 0);
	CHECK(strcmp(s->events[0].client, "127.0.0.1:50001") == 0);
	CHECK(strcmp(s->events[0].server, "127.0.0.1:143") == 0);
	CHECK(data_is(&s->events[1], IMAP_S2C, "* OK ready\r\n") && s->events[1].at == 1000);
	CHECK(s->events[1].line == 4);
	CHECK(data_is(&s->events[2], IMAP_C2S, "a1 NOOP\r\n") && s->events[2].at == 2000);
	/* backslashes of C: and S: lines are text */
	CHECK(data_is(&s->events[3], IMAP_S2C, "a1 OK \\Seen stays\r\n"));
	CHECK(s->events[3].at == 30002000);
	/* delays add up */
	CHECK(data_is(&s->events[4], IMAP_C2S, "\r\n") && s->events[4].at == 31752000);
	CHECK(data_is(&s->events[5], IMAP_C2S, "\r\n") && s->events[5].at == 40000000);
	CHECK(s->events[6].kind == REPLAY_SCRIPT_CLOSE && s->events[6].dir == IMAP_S2C);
	CHECK(!s->events[6].reset && s->events[6].at == 40001000);
	replay_script_free(&s);
	CHECK(s == NULL);
}

static void test_raw_and_crlf_file(void)
{
	struct replay_script *s = parse_ok("@expect none\r\n"
					   "S: * OK\r\n"
					   "C= a1 NO\r\n"
					   "C= OP\\r\\na2 \\x00\\\\\\t\\n\r\n");

	if (s == NULL)
		return;
	CHECK(s->expect_given);
	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++)
		CHECK(!s->expect[i]);
	CHECK(s->count == 5);
	CHECK(data_is(&s->events[1], IMAP_S2C, "* OK\r\n"));
	CHECK(data_is(&s->events[2], IMAP_C2S, "a1 NO"));
	CHECK(s->events[3].len == 11 && memcmp(s->events[3].data, "OP\r\na2 \0\\\t\n", 11) == 0);
	/* the implied close: the client's FIN a step after the last line */
	CHECK(s->events[4].kind == REPLAY_SCRIPT_CLOSE && s->events[4].dir == IMAP_C2S);
	CHECK(s->events[4].line == 0 && s->events[4].at == s->events[3].at + 1000);
	replay_script_free(&s);
}

static void test_literals(void)
{
	struct replay_script *s = parse_ok("C: a1 APPEND INBOX {11}\n"
					   "S: + go\n"
					   "C~ hello world\n"
					   "C:  {7+}\n"
					   "C~ ab\n"
					   "C~ c\n"
					   "C:\n"
					   "S: * 1 FETCH (BODY[] {0}\n"
					   "S: )\n"
					   "C: a2 X {3}\n"
					   "C= a\\r\\n\n"
					   "C:\n");

	if (s == NULL)
		return;
	CHECK(s->count == 14);
	CHECK(data_is(&s->events[1], IMAP_C2S, "a1 APPEND INBOX {11}\r\n"));
	CHECK(data_is(&s->events[2], IMAP_S2C, "+ go\r\n"));
	/* the last literal line gives its CRLF only when the count says so */
	CHECK(data_is(&s->events[3], IMAP_C2S, "hello world"));
	CHECK(data_is(&s->events[4], IMAP_C2S, " {7+}\r\n"));
	CHECK(data_is(&s->events[5], IMAP_C2S, "ab\r\n"));
	CHECK(data_is(&s->events[6], IMAP_C2S, "c\r\n"));
	CHECK(data_is(&s->events[7], IMAP_C2S, "\r\n"));
	CHECK(data_is(&s->events[9], IMAP_S2C, ")\r\n"));
	/* raw bytes count toward a literal */
	CHECK(data_is(&s->events[11], IMAP_C2S, "a\r\n"));
	replay_script_free(&s);
}

/* A literal's lines after its first come at once; a delay still counts. */
static void test_literal_lines_at_once(void)
{
	struct replay_script *s = parse_ok("S: * 1 FETCH (BODY[] {13}\n"
					   "S~ one\n"
					   "S~ two\n"
					   "+5s\n"
					   "S= x\\r\\n\n"
					   "S: )\n"
					   "C: a1 X {2}\n"
					   "C~ ab\n"
					   "C: tail\n");

	if (s == NULL)
		return;
	CHECK(s->count == 10);
	CHECK(s->events[1].at == 1000);            /* the head, 1 ms after the start */
	CHECK(s->events[2].at == 2000);            /* the literal's first line */
	CHECK(s->events[3].at == 2000);            /* the next: at once */
	CHECK(s->events[4].at == 5002000);         /* after a delay */
	CHECK(s->events[5].at == 5003000);         /* the line after the literal: a step */
	CHECK(s->events[7].at == 5005000 && s->events[8].at == 5006000);
	replay_script_free(&s);
}

static void test_sessions_windows_addresses(void)
{
	struct replay_script *s = parse_ok("@expect client-not-reading\n"
					   "=== session one\n"
					   "@client [::2]:40000\n"
					   "@server [::1]:993\n"
					   "S: * OK\n"
					   "window client closed\n"
					   "C: a1 NOOP\n"
					   "+15s\n"
					   "window client open\n"
					   "S: a1 OK\n"
					   "reset client\n"
					   "+5s\n"
					   "=== session two\n"
					   "S: * OK\n");

	if (s == NULL)
		return;
	CHECK(s->sessions == 2);
	CHECK(s->count == 10);
	CHECK(strcmp(s->events[0].client, "[::2]:40000") == 0);
	CHECK(strcmp(s->events[0].server, "[::1]:993") == 0);
	CHECK(s->events[2].kind == REPLAY_SCRIPT_WINDOW && s->events[2].dir == IMAP_S2C);
	CHECK(s->events[2].blocked);
	CHECK(s->events[4].kind == REPLAY_SCRIPT_WINDOW && !s->events[4].blocked);
	CHECK(s->events[4].at == s->events[3].at + 15000000);
	CHECK(s->events[6].kind == REPLAY_SCRIPT_CLOSE && s->events[6].reset);
	CHECK(s->events[6].dir == IMAP_C2S && s->events[6].session == 1);
	/* a delay after a close starts the next session later */
	CHECK(s->events[7].kind == REPLAY_SCRIPT_OPEN && s->events[7].session == 2);
	CHECK(s->events[7].at == s->events[6].at + 5000000);
	CHECK(strcmp(s->events[7].client, "127.0.0.1:50002") == 0);
	CHECK(s->events[9].kind == REPLAY_SCRIPT_CLOSE && s->events[9].session == 2);
	replay_script_free(&s);
}

struct error_case {
	const char *text;
	const char *message; /* the start of the error */
};

static const struct error_case errors[] = {
	{"S: * OK\n@expct done-stall\n", "t.imap:2:1: unknown directive '@expct'"},
	{"@expect done-stal\n", "t.imap:1:9: unknown rule 'done-stal'"},
	{"@expect\n", "t.imap:1:1: @expect needs rule ids, or 'none'"},
	{"@expect none done-stall\n", "t.imap:1:1: @expect: 'none' with rules"},
	{"S: * OK\n@expect done-stall\n", "t.imap:2:1: @expect belongs in the script's header"},
	{"C: a2 APPEND INBOX {11}\nC~ hello\nC:\n",
	 "t.imap:3:1: literal announced {11} on line 1 but 7 byte(s) follow"},
	{"C: a2 APPEND INBOX {11}\nC~ hello\nC~ world\n",
	 "t.imap:3:1: literal announced {11} on line 1 has 4 byte(s) left, but this line gives 7 "
	 "with its CRLF (5 without)"},
	{"C: a2 APPEND INBOX {11}\nC= hello\\r\\n\nC:\n",
	 "t.imap:3:1: literal announced {11} on line 1 but 7 byte(s) follow"},
	{"\nS: + go\nC: a2 APPEND INBOX {11}\nC= hello\n",
	 "t.imap:4:1: literal announced {11} on line 3 but 5 byte(s) follow"},
	{"C: a2 APPEND INBOX {11}\nclose client\n",
	 "t.imap:2:1: literal announced {11} on line 1 but 0 byte(s) follow"},
	{"C: a1 X {99999999999}\n", "t.imap:1:9: literal {99999999999} is larger"},
	{"S: * OK\nC~ data\n", "t.imap:2:1: 'C~' is literal data, but no literal is due"},
	{"S:* OK\n", "t.imap:1:3: expected a space after 'S:'"},
	{"S= \\q\n", "t.imap:1:4: unknown escape '\\q'"},
	{"S= ab\\x4\n", "t.imap:1:6: '\\x' takes two hex digits"},
	{"S= ab\\\n", "t.imap:1:6: a lone '\\' ends the line"},
	{"S=\n", "t.imap:1:3: 'S=' with nothing after it"},
	{"S: * OK\n+30\n", "t.imap:2:2: bad delay '+30'"},
	{"S: * OK\n+1.5h\n", "t.imap:2:2: bad delay '+1.5h'"},
	{"S: * OK\n+31d\n", "t.imap:2:2: bad delay"},
	{"S: * OK\n+10s\nC: a\n@5s\n", "t.imap:4:1: time @5s is before the previous event"},
	{"S: * OK\n@x\n", "t.imap:2:1: unknown directive '@x'"},
	{"S: * OK\nclose client\nC: a1 NOOP\n", "t.imap:3:1: a line after the session closed on line 2"},
	{"S: * OK\nclose nobody\n", "t.imap:2:1: expected 'close client' or 'close server'"},
	{"S: * OK\nwindow client shut\n", "t.imap:2:1: expected 'window client|server closed|open'"},
	{"S: * OK\nwindow client open\n", "t.imap:2:15: the client's window is open already"},
	{"S: * OK\nwindow client closed\nS: * 1 EXPUNGE\n",
	 "t.imap:3:1: the server sends while the client's window is closed (line 2)"},
	{"S: * OK\n@client 127.0.0.1:99999\n", "t.imap:2:1: @client belongs in the session's header"},
	{"@client 127.0.0.1:99999\n", "t.imap:1:9: '127.0.0.1:99999' is no ADDRESS:PORT"},
	{"@server localhost:143\n", "t.imap:1:9: 'localhost:143' is no ADDRESS:PORT"},
	{"@server\n", "t.imap:1:1: @server takes one ADDRESS:PORT"},
	{"@server [::1]:143\nS: * OK\n",
	 "t.imap:2:1: the session's client 127.0.0.1:50001 and server [::1]:143 are of different"},
	{"S: * OK\nX: hello\n", "t.imap:2:1: expected 'C:', 'S:'"},
	{"S: * OK\n  C: indented\n", "t.imap:2:1: a line starts in the first column"},
	{"# nothing\n\n", "t.imap:2:1: the script has no session"},
	{"", "t.imap:1:1: the script has no session"},
};

static void test_errors(void)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		struct replay_script *s = (struct replay_script *)1;
		char err[512] = "";
		int rc = replay_script_parse("t.imap", errors[i].text, strlen(errors[i].text), &s, err,
					     sizeof(err));

		CHECK_MSG(rc == -1 && s == NULL, "case %zu: accepted\n%s", i, errors[i].text);
		CHECK_MSG(strncmp(err, errors[i].message, strlen(errors[i].message)) == 0,
			  "case %zu: got '%s', want '%s...'", i, err, errors[i].message);
	}
}

int main(void)
{
	test_lines_and_times();
	test_raw_and_crlf_file();
	test_literals();
	test_literal_lines_at_once();
	test_sessions_windows_addresses();
	test_errors();
	return check_finish("script");
}
