/* The settings mark: what the proxy records reads back the same; names
 * with bytes a token cannot hold are written safely; a damaged or foreign
 * text is told apart; a person's line is escaped. */
#include <stdio.h>
#include <string.h>

#include "capture/settings.h"
#include "check.h"
#include "imap/redact.h"

static struct capture_run_settings sample(void)
{
	struct capture_run_settings s = {
		.rules = true,
		.redact_flags = IMAP_REDACT_CREDENTIALS,
		.max_line = 65536,
		.thresholds = {.stall = 2500000, .done_stall = 1000000, .idle_max = 60000000,
			       .keepalive_gap = 0},
		.fault_count = 2,
	};

	snprintf(s.version, sizeof(s.version), "0.1.0");
	snprintf(s.command, sizeof(s.command), "proxy");
	snprintf(s.upstream, sizeof(s.upstream), "imap.gmail.com:993");
	snprintf(s.upstream_tls, sizeof(s.upstream_tls), "implicit");
	snprintf(s.client_tls, sizeof(s.client_tls), "none");
	snprintf(s.sni, sizeof(s.sni), "imap.gmail.com");
	snprintf(s.faults[0], sizeof(s.faults[0]), "delay:s2c:2s");
	snprintf(s.faults[1], sizeof(s.faults[1]), "hold-idle-completion:30s,session=2");
	return s;
}

static void test_round_trip(void)
{
	struct capture_run_settings s = sample(), r;
	char text[CAPTURE_SETTINGS_TEXT_MAX], why[100];
	size_t n = capture_settings_mark_format(text, sizeof(text), 1714572131503318, &s);

	CHECK(n == strlen(text));
	CHECK(strncmp(text, "<133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - settings - run "
			    "settings version=0.1.0 ", 84) == 0);
	CHECK(capture_settings_mark_parse((const uint8_t *)text, n, &r, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_OK);
	CHECK(strcmp(r.version, "0.1.0") == 0 && strcmp(r.command, "proxy") == 0);
	CHECK(strcmp(r.upstream, "imap.gmail.com:993") == 0);
	CHECK(strcmp(r.upstream_tls, "implicit") == 0 && strcmp(r.client_tls, "none") == 0);
	CHECK(strcmp(r.sni, "imap.gmail.com") == 0);
	CHECK(r.rules && r.redact_flags == IMAP_REDACT_CREDENTIALS && r.max_line == 65536);
	CHECK(r.thresholds.stall == 2500000 && r.thresholds.done_stall == 1000000);
	CHECK(r.thresholds.idle_max == 60000000 && r.thresholds.keepalive_gap == 0);
	CHECK(r.fault_count == 2 && strcmp(r.faults[1], "hold-idle-completion:30s,session=2") == 0);
}

/* A name with a space, an ESC and a byte >= 0x80 stays one token. */
static void test_hostile_names(void)
{
	struct capture_run_settings s = sample(), r;
	char text[CAPTURE_SETTINGS_TEXT_MAX], line[4096], why[100];
	size_t n;

	snprintf(s.upstream, sizeof(s.upstream), "evil host\x1b[2J\xc3\xa9:143");
	s.sni[0] = '\0';
	n = capture_settings_mark_format(text, sizeof(text), 0, &s);
	CHECK(strstr(text, " upstream=evil?host?[2J??:143 ") != NULL);
	CHECK(strstr(text, " sni=- ") != NULL);
	CHECK(capture_settings_mark_parse((const uint8_t *)text, n, &r, why, sizeof(why)) ==
	      CAPTURE_FAULT_MARK_OK);
	CHECK(r.sni[0] == '\0');
	capture_settings_describe(&r, line, sizeof(line));
	CHECK(strchr(line, '\x1b') == NULL);
	CHECK(strstr(line, "upstream evil?host?[2J??:143 (implicit TLS)") != NULL);
	CHECK(strstr(line, "done-stall 1.000 s") != NULL && strstr(line, "keepalive-gap off"));
}

static void test_other_and_damaged(void)
{
	static const struct {
		const char *text;
		enum capture_fault_mark_parse_result want;
	} cases[] = {
		{"<133>1 - imaptap imaptap - fault - injected fault session=1", CAPTURE_FAULT_MARK_NONE},
		{"<134>1 - host app - settings - run settings version=1", CAPTURE_FAULT_MARK_NONE},
		{"<133>1 - imaptap imaptap - settings - run settings", CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1 done-stall-us=x",
		 CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1 done-stall-us=-5",
		 CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1 idle-max-us="
		 "99999999999999999999999", CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1  rules=on",
		 CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1 =on",
		 CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1 rules=maybe",
		 CAPTURE_FAULT_MARK_DAMAGED},
		{"<133>1 - imaptap imaptap - settings - run settings version=1 future-key=7",
		 CAPTURE_FAULT_MARK_OK},
	};
	struct capture_run_settings r;
	char why[100];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum capture_fault_mark_parse_result got = capture_settings_mark_parse(
			(const uint8_t *)cases[i].text, strlen(cases[i].text), &r, why, sizeof(why));

		CHECK_MSG(got == cases[i].want, "case %zu: %d (%s)", i, (int)got, why);
		CHECK_MSG(got != CAPTURE_FAULT_MARK_DAMAGED || why[0] != '\0', "case %zu", i);
	}
}

/* Every prefix of a real mark reads as OK or damaged, never past its end. */
static void test_every_cut(void)
{
	struct capture_run_settings s = sample(), r;
	char text[CAPTURE_SETTINGS_TEXT_MAX], why[100];
	size_t n = capture_settings_mark_format(text, sizeof(text), 0, &s);

	for (size_t cut = 0; cut < n; cut++) {
		char copy[CAPTURE_SETTINGS_TEXT_MAX];

		memcpy(copy, text, cut); /* no NUL after it: the parser reads len bytes only */
		memset(copy + cut, 'Z', sizeof(copy) - cut);
		(void)capture_settings_mark_parse((const uint8_t *)copy, cut, &r, why, sizeof(why));
	}
	CHECK(n > 300);
}

int main(void)
{
	test_round_trip();
	test_hostile_names();
	test_other_and_damaged();
	test_every_cut();
	return check_finish("settings");
}
