/* Capability edits on the lines servers really send. */
#include <string.h>

#include "check.h"
#include "imap/capability.h"

static const char *edit(const char *line, unsigned edits)
{
	static char out[1024];
	size_t n = imap_capability_edit((const uint8_t *)line, strlen(line), edits,
					(uint8_t *)out, sizeof(out) - 1);

	if (n == 0)
		return NULL;
	out[n] = '\0';
	return out;
}

int main(void)
{
	const char *r;

	r = edit("* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED AUTH=PLAIN] Dovecot ready.\r\n",
		 IMAP_CAP_REMOVE_STARTTLS | IMAP_CAP_REMOVE_LOGINDISABLED);
	CHECK_MSG(r && strcmp(r, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot ready.\r\n") == 0, "%s", r);
	r = edit("* CAPABILITY IMAP4rev1 STARTTLS\r\n", IMAP_CAP_REMOVE_STARTTLS);
	CHECK_MSG(r && strcmp(r, "* CAPABILITY IMAP4rev1\r\n") == 0, "%s", r);
	r = edit("* CAPABILITY IMAP4rev1 IDLE\r\n", IMAP_CAP_ADD_STARTTLS);
	CHECK_MSG(r && strcmp(r, "* CAPABILITY IMAP4rev1 IDLE STARTTLS\r\n") == 0, "%s", r);
	r = edit("* CAPABILITY STARTTLS IMAP4rev1\r\n", IMAP_CAP_ADD_STARTTLS);
	CHECK_MSG(r == NULL, "already offered: unchanged");
	r = edit("a1 OK [CAPABILITY IMAP4rev1 starttls] done\r\n", IMAP_CAP_REMOVE_STARTTLS);
	CHECK_MSG(r && strcmp(r, "a1 OK [CAPABILITY IMAP4rev1] done\r\n") == 0, "%s", r);
	r = edit("* 1 FETCH (FLAGS (\\Seen))\r\n", IMAP_CAP_ADD_STARTTLS);
	CHECK(r == NULL);
	r = edit("* CAPABILITY IMAP4rev1 IDLE\r\n", IMAP_CAP_REMOVE_STARTTLS);
	CHECK_MSG(r == NULL, "nothing to remove: unchanged");
	r = edit("* OK [CAPABILITY IMAP4rev1 STARTTLS\r\n", IMAP_CAP_REMOVE_STARTTLS);
	CHECK_MSG(r == NULL, "an unclosed code is left alone");
	return check_finish("capability");
}
