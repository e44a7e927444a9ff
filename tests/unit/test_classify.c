/* Line classifier: each kind of line, tags, UID commands, response codes. */
#include <string.h>

#include "check.h"
#include "imap/classify.h"

static struct imap_line_info cls(enum imap_dir dir, const char *line, int continued, int auth)
{
	struct imap_line_info info;

	imap_classify(dir, (const uint8_t *)line, strlen(line), continued, auth, &info);
	return info;
}

static void test_client_lines(void)
{
	struct imap_line_info i;

	i = cls(IMAP_C2S, "a1 LOGIN alice secret\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_COMMAND && imap_slice_eq(i.tag, "a1") && strcmp(i.name, "LOGIN") == 0);
	CHECK(!i.uid && i.args.len == 12 && memcmp(i.args.p, "alice secret", 12) == 0);
	i = cls(IMAP_C2S, "A0007 uid fetch 1:* (FLAGS)\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_COMMAND && i.uid && strcmp(i.name, "FETCH") == 0);
	i = cls(IMAP_C2S, "x idle\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_COMMAND && strcmp(i.name, "IDLE") == 0 && i.args.len == 0);
	i = cls(IMAP_C2S, "done\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_DONE);
	i = cls(IMAP_C2S, "DONE\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_DONE);
	i = cls(IMAP_C2S, "a1\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_MALFORMED);
	i = cls(IMAP_C2S, "a+1 NOOP\r\n", 0, 0);
	CHECK_MSG(i.cls == IMAP_LINE_MALFORMED, "'+' is not a tag character");
	i = cls(IMAP_C2S, "* NOOP\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_MALFORMED);
	i = cls(IMAP_C2S, "\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_MALFORMED);
	i = cls(IMAP_C2S, "NOOP\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_MALFORMED);
	i = cls(IMAP_C2S, " alice {6}\r\n", 1, 0);
	CHECK(i.cls == IMAP_LINE_CONTINUED);
	i = cls(IMAP_C2S, "a2]x NOOP\r\n", 0, 0);
	CHECK_MSG(i.cls == IMAP_LINE_COMMAND, "']' is an ASTRING-CHAR, allowed in tags");
}

static void test_auth_responses(void)
{
	struct imap_line_info i;

	i = cls(IMAP_C2S, "AGFsaWNlAHNlY3JldA==\r\n", 0, 1);
	CHECK(i.cls == IMAP_LINE_AUTH_RESPONSE);
	i = cls(IMAP_C2S, "*\r\n", 0, 1);
	CHECK(i.cls == IMAP_LINE_AUTH_RESPONSE);
	i = cls(IMAP_C2S, "\r\n", 0, 1);
	CHECK(i.cls == IMAP_LINE_AUTH_RESPONSE);
	i = cls(IMAP_C2S, "a2 NOOP\r\n", 0, 1);
	CHECK_MSG(i.cls == IMAP_LINE_COMMAND, "a line with a space is a command, even mid-exchange");
	i = cls(IMAP_C2S, "AGFsaWNlAHNlY3JldA==\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_MALFORMED);
}

static void test_server_lines(void)
{
	struct imap_line_info i;

	i = cls(IMAP_S2C, "* 23 EXISTS\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_UNTAGGED && i.has_number && i.number == 23 &&
	      strcmp(i.name, "EXISTS") == 0 && i.status == IMAP_STATUS_NONE);
	i = cls(IMAP_S2C, "* 5 EXPUNGE\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_UNTAGGED && i.number == 5 && strcmp(i.name, "EXPUNGE") == 0);
	i = cls(IMAP_S2C, "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_UNTAGGED && i.status == IMAP_STATUS_OK);
	CHECK(imap_slice_eq(i.code, "UIDVALIDITY 3857529045"));
	i = cls(IMAP_S2C, "* BYE Autologout; idle for too long\r\n", 0, 0);
	CHECK(i.status == IMAP_STATUS_BYE);
	i = cls(IMAP_S2C, "* PREAUTH ready\r\n", 0, 0);
	CHECK(i.status == IMAP_STATUS_PREAUTH);
	i = cls(IMAP_S2C, "* CAPABILITY IMAP4rev1 IDLE\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_UNTAGGED && strcmp(i.name, "CAPABILITY") == 0);
	i = cls(IMAP_S2C, "+ idling\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_CONTINUATION);
	i = cls(IMAP_S2C, "+\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_CONTINUATION);
	i = cls(IMAP_S2C, "+ \r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_CONTINUATION);
	i = cls(IMAP_S2C, "a1 OK [READ-WRITE] SELECT completed\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_TAGGED && i.status == IMAP_STATUS_OK && imap_slice_eq(i.tag, "a1"));
	CHECK(imap_slice_eq(i.code, "READ-WRITE"));
	i = cls(IMAP_S2C, "a2 no [TRYCREATE] no such mailbox\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_TAGGED && i.status == IMAP_STATUS_NO);
	i = cls(IMAP_S2C, "a3 BAD Error in IMAP command\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_TAGGED && i.status == IMAP_STATUS_BAD);
	i = cls(IMAP_S2C, "a3 BYE nonsense\r\n", 0, 0);
	CHECK_MSG(i.cls == IMAP_LINE_MALFORMED, "BYE is never tagged");
	i = cls(IMAP_S2C, "a4 HELLO\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_MALFORMED);
	i = cls(IMAP_S2C, "* 99999999999999999999999 EXISTS\r\n", 0, 0);
	CHECK(i.cls == IMAP_LINE_UNTAGGED && !i.has_number);
	i = cls(IMAP_S2C, ")\r\n", 1, 0);
	CHECK(i.cls == IMAP_LINE_CONTINUED && i.args.len == 1);
}

/* Commands and untagged keywords come with an id; names that look alike
 * do not get one, nor does a tagged status. */
static void test_keywords(void)
{
	struct imap_line_info i;

	i = cls(IMAP_C2S, "a1 uid Fetch 1:* FLAGS\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_FETCH && i.uid);
	i = cls(IMAP_C2S, "a2 idle\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_IDLE);
	i = cls(IMAP_C2S, "a3 IDLER\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_OTHER);
	i = cls(IMAP_C2S, "a4 LOGI alice x\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_OTHER);
	i = cls(IMAP_C2S, "a5 STARTTLS\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_STARTTLS);
	i = cls(IMAP_C2S, "DONE\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_OTHER);
	i = cls(IMAP_S2C, "* 3 EXPUNGE\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_EXPUNGE);
	i = cls(IMAP_S2C, "* CAPABILITY IMAP4rev1\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_CAPABILITY);
	i = cls(IMAP_S2C, "a1 OK LOGIN done\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_OTHER);
	i = cls(IMAP_S2C, "* VANISHED (EARLIER) 1:5\r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_VANISHED);
	i = cls(IMAP_S2C, "* \r\n", 0, 0);
	CHECK(i.keyword == IMAP_KW_OTHER);
}

int main(void)
{
	test_keywords();
	test_client_lines();
	test_auth_responses();
	test_server_lines();
	return check_finish("classify");
}
