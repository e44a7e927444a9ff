/* The --fault grammar: every action with its arguments and qualifiers,
 * the canonical form back, and every bad spec refused with its reason. */
#include <string.h>

#include "check.h"
#include "proxy/fault_persona.h"
#include "proxy/fault_spec.h"

static struct proxy_fault parse_ok(const char *spec)
{
	struct proxy_fault f;
	char err[300] = "";

	memset(&f, 0xa5, sizeof(f));
	CHECK_MSG(proxy_fault_parse(spec, strlen(spec), &f, err, sizeof(err)) == 0, "%s: %s", spec,
		  err);
	return f;
}

/* Parses spec and expects its canonical form back. */
static struct proxy_fault round_trip(const char *spec, const char *canonical)
{
	struct proxy_fault f = parse_ok(spec);
	char back[160];

	proxy_fault_spec_str(&f, back, sizeof(back));
	CHECK_MSG(strcmp(back, canonical) == 0, "%s gave %s, want %s", spec, back, canonical);
	return f;
}

static void test_actions(void)
{
	struct proxy_fault f;

	f = round_trip("hold-idle-completion:30s", "hold-idle-completion:30s");
	CHECK(f.action == PROXY_FAULT_HOLD_IDLE_COMPLETION && f.duration == 30000000);
	CHECK(f.session == 0 && f.nth == 0 && proxy_fault_needs_imap(&f));
	f = round_trip("delay:s2c:2s", "delay:s2c:2s");
	CHECK(f.action == PROXY_FAULT_DELAY && f.dir == IMAP_S2C && f.duration == 2000000);
	CHECK(!proxy_fault_needs_imap(&f));
	f = round_trip("delay:c2s:250ms", "delay:c2s:250ms");
	CHECK(f.dir == IMAP_C2S && f.duration == 250000);
	f = round_trip("delay:c2s:1.5m", "delay:c2s:90s");
	CHECK(f.duration == 90000000);
	f = round_trip("delay:c2s:0.0015", "delay:c2s:0.001500s");
	f = round_trip("split:c2s:byte", "split:c2s:byte");
	CHECK(f.action == PROXY_FAULT_SPLIT && f.split.mode == IMAP_SPLIT_BYTE);
	f = round_trip("split:s2c:random", "split:s2c:random:1");
	CHECK(f.split.mode == IMAP_SPLIT_RANDOM && f.split.seed == 1);
	f = round_trip("split:s2c:random:42", "split:s2c:random:42");
	CHECK(f.split.seed == 42);
	f = round_trip("split:s2c:coalesce", "split:s2c:coalesce");
	CHECK(f.split.mode == IMAP_SPLIT_COALESCE);
	f = round_trip("stop-reading:client:10s", "stop-reading:client:10s");
	CHECK(f.action == PROXY_FAULT_STOP_READING && f.read_client && !proxy_fault_needs_imap(&f));
	f = round_trip("stop-reading:server:1s,after=fetch,nth=2",
		       "stop-reading:server:1s,after=FETCH,nth=2");
	CHECK(!f.read_client && strcmp(f.after, "FETCH") == 0 && f.nth == 2);
	CHECK(proxy_fault_needs_imap(&f));
	f = round_trip("bye:after-idle-continuation", "bye:after-idle-continuation");
	CHECK(f.action == PROXY_FAULT_BYE && f.point == PROXY_FAULT_AFTER_IDLE_CONTINUATION);
	f = round_trip("bye:in-literal", "bye:in-literal");
	CHECK(f.point == PROXY_FAULT_IN_LITERAL && !f.dir_set);
	f = round_trip("bye:in-literal:c2s,session=3", "bye:in-literal:c2s,session=3");
	CHECK(f.dir_set && f.dir == IMAP_C2S && f.session == 3);
	f = round_trip("answer:select:no", "answer:SELECT:NO");
	CHECK(f.action == PROXY_FAULT_ANSWER && !f.bad && strcmp(f.command, "SELECT") == 0);
	f = round_trip("answer:UID-THING:BAD,nth=1,session=2", "answer:UID-THING:BAD,nth=1,session=2");
	CHECK(f.bad && f.nth == 1 && f.session == 2);
	f = round_trip("respond-code:throttled:fetch,nth=2", "respond-code:THROTTLED:FETCH,nth=2");
	CHECK(f.action == PROXY_FAULT_ANSWER && !f.bad && strcmp(f.code, "THROTTLED") == 0 &&
	      strcmp(f.command, "FETCH") == 0 && f.nth == 2);
	f = round_trip("bye-after-idle:29m,nth=2", "bye-after-idle:1740s,nth=2");
	CHECK(f.action == PROXY_FAULT_BYE && f.point == PROXY_FAULT_IDLE_FOR &&
	      f.duration == 1740 * IMAP_US_PER_S && proxy_fault_needs_imap(&f));
	f = round_trip("hide-capability:move,qresync,AUTH=PLAIN,session=2",
		       "hide-capability:MOVE,QRESYNC,AUTH=PLAIN,session=2");
	CHECK(f.action == PROXY_FAULT_HIDE_CAPABILITY && f.hide_count == 3 && f.session == 2 &&
	      strcmp(f.hide[2], "AUTH=PLAIN") == 0 && proxy_fault_needs_imap(&f));
	f = round_trip("max-connections:15", "max-connections:15");
	CHECK(f.action == PROXY_FAULT_MAX_CONNECTIONS && f.limit == 15);
	CHECK(!proxy_fault_needs_imap(&f));
	f = round_trip("end-idle-early", "end-idle-early");
	CHECK(f.action == PROXY_FAULT_END_IDLE_EARLY && f.duration == 0 && proxy_fault_needs_imap(&f));
	f = round_trip("end-idle-early:1.5s,nth=2,session=1", "end-idle-early:1500ms,nth=2,session=1");
	CHECK(f.duration == 1500000 && f.nth == 2 && f.session == 1);
}

/* Every persona's faults parse, and are written as they read back. */
static void test_personas(void)
{
	CHECK(proxy_persona_count == 3);
	CHECK(proxy_persona_find("gmail") == &proxy_personas[0]);
	CHECK(proxy_persona_find("GMAIL") == NULL && proxy_persona_find("") == NULL);
	for (size_t i = 0; i < proxy_persona_count; i++) {
		const struct proxy_persona *p = &proxy_personas[i];

		CHECK_MSG(strstr(proxy_persona_names, p->name) != NULL, "%s not named", p->name);
		CHECK_MSG(p->specs[0] != NULL, "%s has no fault", p->name);
		for (size_t k = 0; p->specs[k] != NULL; k++)
			round_trip(p->specs[k], p->specs[k]);
	}
}

static void test_explain(void)
{
	struct proxy_fault f = parse_ok("answer:CREATE:NO,nth=2");
	char text[300];

	proxy_fault_explain(&f, text, sizeof(text));
	CHECK_MSG(strstr(text, "answers CREATE with NO") != NULL && strstr(text, "2nd time") != NULL,
		  "%s", text);
	f = parse_ok("hold-idle-completion:3s,session=1");
	proxy_fault_explain(&f, text, sizeof(text));
	CHECK_MSG(strstr(text, "for 3s after DONE") != NULL && strstr(text, "in session 1"), "%s",
		  text);
	f = parse_ok("end-idle-early");
	proxy_fault_explain(&f, text, sizeof(text));
	CHECK_MSG(strstr(text, "right before the server's +") != NULL, "%s", text);
	f = parse_ok("end-idle-early:2s");
	proxy_fault_explain(&f, text, sizeof(text));
	CHECK_MSG(strstr(text, "2s after the server's +") != NULL, "%s", text);
}

static const struct {
	const char *spec;
	const char *message;
} bad[] = {
	{"", "empty fault"},
	{"nonsense", "unknown fault 'nonsense'"},
	{"hold-idle-completion", "hold-idle-completion needs a duration"},
	{"hold-idle-completion:", "hold-idle-completion needs a duration"},
	{"hold-idle-completion:0s", "hold-idle-completion needs a duration"},
	{"hold-idle-completion:25h", "hold-idle-completion needs a duration up to 24h"},
	{"hold-idle-completion:5x", "not '5x'"},
	{"hold-idle-completion:-1s", "not '-1s'"},
	{"delay:s2c", "delay needs a duration"},
	{"delay:up:2s", "delay needs a direction, c2s or s2c"},
	{"delay:s2c:2s,nth=2", "nth= is for faults that happen at a point"},
	{"split:s2c", "split:s2c: needs byte, random, random:SEED or coalesce"},
	{"split:s2c:bytes", "unknown way to split 'bytes'"},
	{"split:s2c:random:x", "bad seed"},
	{"split:both:byte", "split needs a direction"},
	{"stop-reading:proxy:1s", "stop-reading needs a side, client or server"},
	{"stop-reading:client", "stop-reading needs a duration"},
	{"stop-reading:client:1s,nth=2", "put after=COMMAND first"},
	{"stop-reading:client:1s,after=", "after= takes a command name"},
	{"bye", "bye needs a point"},
	{"bye:later", "bye needs a point, after-idle-continuation or in-literal"},
	{"bye:after-idle-continuation:c2s", "bye needs a point"},
	{"bye:in-literal:both", "bye:in-literal takes c2s or s2c"},
	{"answer", "answer needs a command name"},
	{"answer:SE(LECT:NO", "answer needs a command name"},
	{"answer:SELECT", "answer:SELECT needs NO or BAD"},
	{"answer:SELECT:OK", "answer:SELECT needs NO or BAD, not 'OK'"},
	{"answer:SELECT:NO,after=FETCH", "after= is for stop-reading only"},
	{"answer:SELECT:NO,session=0", "session= takes a session number from 1"},
	{"answer:SELECT:NO,session=x", "session= takes a session number"},
	{"answer:SELECT:NO,nth=", "nth= takes a count from 1"},
	{"answer:SELECT:NO,color=red", "unknown qualifier 'color'"},
	{"answer:SELECT:NO,", "unknown qualifier ''"},
	{"delay:s2c:2s\n", "byte 13 of the fault is a space, a control character"},
	{"answer:SELECT :NO", "byte 14 of the fault"},
	{"answer:S\xc3\xa9:NO", "not ASCII"},
	{"respond-code", "respond-code needs a response code"},
	{"respond-code:THROT TLED:FETCH", "byte 19 of the fault"},
	{"respond-code:THROTTLED", "respond-code:THROTTLED needs the command it answers"},
	{"respond-code:[X]:FETCH", "respond-code needs a response code"},
	{"bye-after-idle", "bye-after-idle needs how long an IDLE lasts"},
	{"bye-after-idle:forever", "bye-after-idle needs how long"},
	{"hide-capability", "hide-capability needs a capability name"},
	{"hide-capability:MO(VE", "hide-capability needs a capability name"},
	{"hide-capability:A,B,C,D,E,F,G,H,I", "at most 8 capability names"},
	{"max-connections", "max-connections needs how many sessions"},
	{"max-connections:0", "max-connections needs how many sessions may be open at once, from 1"},
	{"max-connections:many", "not 'many'"},
	{"max-connections:100001", "max-connections needs"},
	{"end-idle-early:", "end-idle-early takes how long after the server's +"},
	{"end-idle-early:0s", "end-idle-early takes how long"},
	{"end-idle-early:soon", "not 'soon'"},
	{"end-idle-early,after=IDLE", "after= is for stop-reading only"},
	{"max-connections:2,session=1", "session=, nth= and after= do not apply"},
};

static void test_bad_specs(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proxy_fault f;
		char err[300] = "";
		int rc = proxy_fault_parse(bad[i].spec, strlen(bad[i].spec), &f, err, sizeof(err));

		CHECK_MSG(rc == -1, "'%s' was accepted", bad[i].spec);
		CHECK_MSG(strstr(err, bad[i].message) != NULL, "'%s': message '%s', want '%s'",
			  bad[i].spec, err, bad[i].message);
		CHECK_MSG(strchr(err, '\n') == NULL, "'%s': message on more than one line", bad[i].spec);
	}
}

/* Only len bytes count: what follows in memory is not the spec. */
static void test_length_bounds_the_spec(void)
{
	struct proxy_fault f;
	char err[300];

	CHECK(proxy_fault_parse("delay:s2c:2sXYZ", 12, &f, err, sizeof(err)) == 0);
	CHECK(f.duration == 2000000);
	CHECK(proxy_fault_parse("delay:s2c:2s\0,nth=1", 19, &f, err, sizeof(err)) == -1);
}

int main(void)
{
	test_actions();
	test_explain();
	test_personas();
	test_bad_specs();
	test_length_bounds_the_spec();
	return check_finish("fault_spec");
}
