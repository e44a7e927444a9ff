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

/* What an edit did, in words; the same edits imap_capability_edit makes. */
static void test_changes_described(void)
{
	static const struct {
		const char *line;
		unsigned edits;
		const char *words;
	} cases[] = {
		{"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n",
		 IMAP_CAP_REMOVE_STARTTLS | IMAP_CAP_REMOVE_LOGINDISABLED,
		 "STARTTLS removed, LOGINDISABLED removed"},
		{"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n",
		 IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED,
		 "STARTTLS added, LOGINDISABLED added"},
		{"* CAPABILITY IMAP4rev1 STARTTLS\r\n", IMAP_CAP_ADD_STARTTLS, ""},
		{"* CAPABILITY IMAP4rev1\r\n", IMAP_CAP_REMOVE_STARTTLS, ""},
		{"* 3 EXISTS\r\n", IMAP_CAP_ADD_STARTTLS, ""},
	};
	char words[96];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned done = imap_capability_changes((const uint8_t *)cases[i].line,
							strlen(cases[i].line), cases[i].edits);

		imap_capability_describe(done, words, sizeof(words));
		CHECK_MSG(strcmp(words, cases[i].words) == 0, "case %zu: '%s'", i, words);
		/* described as changed exactly when the edit changes the line */
		CHECK_MSG((done != 0) == (edit(cases[i].line, cases[i].edits) != NULL), "case %zu", i);
	}
}

/* hide-capability's edit: the names gone, any case, the rest unchanged. */
static void test_hide(void)
{
	static const char *const names[] = {"MOVE", "qresync", "AUTH=PLAIN"};
	static const struct {
		const char *line, *want; /* want NULL: unchanged */
	} cases[] = {
		{"* CAPABILITY IMAP4rev1 MOVE IDLE QRESYNC\r\n", "* CAPABILITY IMAP4rev1 IDLE\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 move AUTH=PLAIN SASL-IR] Dovecot ready.\r\n",
		 "* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready.\r\n"},
		{"a1 OK [CAPABILITY IMAP4rev1 MOVES MOVE] Logged in\r\n",
		 "a1 OK [CAPABILITY IMAP4rev1 MOVES] Logged in\r\n"},
		{"* CAPABILITY IMAP4rev1 IDLE\r\n", NULL},
		{"* 3 EXISTS\r\n", NULL},
		{"* OK [CAPABILITY MOVE\r\n", NULL}, /* no closing bracket: no list */
	};
	char out[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = imap_capability_hide((const uint8_t *)cases[i].line, strlen(cases[i].line),
						names, 3, (uint8_t *)out, sizeof(out) - 1);

		if (cases[i].want == NULL) {
			CHECK_MSG(n == 0, "case %zu changed", i);
			continue;
		}
		out[n] = '\0';
		CHECK_MSG(n > 0 && strcmp(out, cases[i].want) == 0, "case %zu: '%s'", i, out);
	}
}

int main(void)
{
	const char *r;

	test_changes_described();
	test_hide();

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
	/* the client leg waits for STARTTLS: LOGINDISABLED until its TLS is up */
	r = edit("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n",
		 IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED);
	CHECK_MSG(r && strcmp(r, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN STARTTLS LOGINDISABLED] ready\r\n") == 0,
		  "%s", r);
	r = edit("* CAPABILITY IMAP4rev1 LoginDisabled STARTTLS\r\n",
		 IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED);
	CHECK_MSG(r == NULL, "both already offered: unchanged");
	r = edit("* CAPABILITY IMAP4rev1 STARTTLS\r\n", IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED);
	CHECK_MSG(r && strcmp(r, "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n") == 0, "%s", r);
	{
		static const char line[] = "* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n";
		size_t start = 0, end = 0;

		CHECK(imap_capability_list((const uint8_t *)line, strlen(line), &start, &end));
		CHECK_MSG(end - start == 14 && memcmp(line + start, "IMAP4rev1 IDLE", 14) == 0,
			  "%zu..%zu", start, end);
		CHECK(imap_capability_list((const uint8_t *)"* CAPABILITY A B\r\n", 18, &start, &end));
		CHECK_MSG(start == 13 && end == 16, "%zu..%zu", start, end);
		CHECK(!imap_capability_list((const uint8_t *)"* OK hi\r\n", 9, &start, &end));
	}
	{
		/* out holds the line plus what the edits add, no more */
		static const char line[] = "* CAPABILITY IMAP4rev1\r\n";
		uint8_t out[sizeof(line) - 1 + IMAP_CAPABILITY_EDIT_GROWTH];
		size_t n = imap_capability_edit((const uint8_t *)line, strlen(line),
						IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED,
						out, sizeof(out));

		CHECK_MSG(n == strlen(line) + IMAP_CAPABILITY_EDIT_GROWTH, "%zu", n);
	}
	return check_finish("capability");
}
