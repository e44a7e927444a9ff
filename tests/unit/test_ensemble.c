/* The sessions of a recording played at once: which waits for which, at
 * what time, and who plays what. */
#include <string.h>

#include "check.h"
#include "replay/ensemble.h"

/* Session A (opened at 1000 µs): greeting, IDLE, +, EXISTS at +5000.
 * Session B (opened at 2000 µs, so B's units are at 2000 + at): greeting,
 * APPEND at +3000 (abs 5000), OK at +3500 (abs 5500), LOGOUT at +9000
 * (abs 11000). A's EXISTS (abs 6000) comes after B's APPEND and its OK. */
static struct replay_unit a_units[] = {
	{.dir = IMAP_S2C, .at = 0},
	{.dir = IMAP_C2S, .at = 100, .tag = "a1"},
	{.dir = IMAP_S2C, .at = 200, .continuation = true},
	{.dir = IMAP_S2C, .at = 5000, .untagged = true},
	{.dir = IMAP_C2S, .at = 12000},
};
static struct replay_unit b_units[] = {
	{.dir = IMAP_S2C, .at = 0},
	{.dir = IMAP_C2S, .at = 3000, .tag = "b1"},
	{.dir = IMAP_S2C, .at = 3500, .tag = "b1"},
	{.dir = IMAP_C2S, .at = 9000, .tag = "b2"},
};

/* Sessions A and B, and an ensemble of them. */
struct fixture {
	struct replay_recording recs[2];
	struct replay_recordings all;
};

static struct replay_ensemble *ensemble(struct fixture *f, enum replay_gates gates, bool ordered,
					double speed)
{
	memset(f, 0, sizeof(*f));
	f->recs[0] = (struct replay_recording){.units = a_units, .count = 5, .session = 1,
					       .opened = 1000};
	f->recs[1] = (struct replay_recording){.units = b_units, .count = 4, .session = 2,
					       .opened = 2000};
	f->all = (struct replay_recordings){.recs = f->recs, .count = 2};
	return replay_ensemble_new(&f->all, gates, ordered, speed);
}

static void test_serve_waits_for_the_other_client(void)
{
	struct fixture f;
	struct replay_ensemble *e;
	struct replay_wait w = {0};
	imap_time_us due = -1;

	e = ensemble(&f, REPLAY_GATES_CLIENT, true, 1.0);
	CHECK(e != NULL);
	CHECK(replay_ensemble_gate_count(e, 0) == 2 && replay_ensemble_gate(e, 0, 1) == 4);
	CHECK(replay_ensemble_gate_count(e, 1) == 2 && replay_ensemble_gate(e, 1, 0) == 1);
	/* A's greeting and + come before anything of B's client */
	CHECK(replay_ensemble_ready(e, 0, 0, &due, &w) && due == 0);
	CHECK(replay_ensemble_ready(e, 0, 2, &due, &w) && due == 0);
	/* A's EXISTS waits for B's APPEND */
	CHECK(!replay_ensemble_ready(e, 0, 3, &due, &w));
	CHECK(w.session == 1 && w.unit == 1);
	/* B's greeting (abs 2000) comes after A's IDLE (abs 1100): waits */
	CHECK(!replay_ensemble_ready(e, 1, 0, &due, &w) && w.session == 0 && w.unit == 1);
	replay_ensemble_done(e, 0, 50000); /* A's IDLE came live at 50000 */
	CHECK(replay_ensemble_ready(e, 1, 0, &due, &w));
	CHECK_MSG(due == 50000 + 900, "B's greeting keeps its 900 µs after A's IDLE: %lld",
		  (long long)due);
	replay_ensemble_done(e, 1, 70000); /* B's APPEND live */
	CHECK(replay_ensemble_ready(e, 0, 3, &due, &w));
	CHECK_MSG(due == 70000 + 1000, "the EXISTS 1000 µs after the APPEND: %lld", (long long)due);
	replay_ensemble_free(&e);
	CHECK(e == NULL);
}

static void test_no_delay_unordered_and_ended(void)
{
	struct fixture f;
	struct replay_ensemble *e;
	struct replay_wait w;
	imap_time_us due;

	e = ensemble(&f, REPLAY_GATES_CLIENT, true, 0);
	replay_ensemble_done(e, 1, 70000);
	replay_ensemble_done(e, 0, 60000);
	CHECK(replay_ensemble_ready(e, 0, 3, &due, &w) && due == 70000);
	replay_ensemble_free(&e);
	/* --order session: nothing waits for another session */
	e = ensemble(&f, REPLAY_GATES_CLIENT, false, 1.0);
	CHECK(replay_ensemble_ready(e, 0, 3, &due, &w) && due == 0);
	replay_ensemble_free(&e);
	/* a session that ended (or diverged) holds nobody up */
	e = ensemble(&f, REPLAY_GATES_CLIENT, true, 1.0);
	replay_ensemble_end(e, 1);
	CHECK(replay_ensemble_ready(e, 0, 3, &due, &w));
	replay_ensemble_free(&e);
}

static void test_client_gates_include_completions(void)
{
	struct fixture f;
	struct replay_ensemble *e;
	struct replay_wait w;
	imap_time_us due;

	e = ensemble(&f, REPLAY_GATES_WALKED, true, 1.0);
	/* B: the APPEND, its tagged OK and the LOGOUT; A: IDLE, +, DONE */
	CHECK(replay_ensemble_gate_count(e, 1) == 3);
	CHECK(replay_ensemble_gate_count(e, 0) == 3);
	/* A's DONE (abs 13000) waits for B's LOGOUT (abs 11000), after its OK */
	replay_ensemble_done(e, 1, 10);
	replay_ensemble_done(e, 1, 20);
	CHECK(!replay_ensemble_ready(e, 0, 4, &due, &w) && w.session == 1 && w.unit == 3);
	replay_ensemble_done(e, 1, 30);
	CHECK(replay_ensemble_ready(e, 0, 4, &due, &w) && due == 30 + 2000);
	replay_ensemble_free(&e);
}

static void test_claims_and_rounds(void)
{
	struct fixture f;
	struct replay_ensemble *e;

	e = ensemble(&f, REPLAY_GATES_CLIENT, true, 1.0);
	CHECK(!replay_ensemble_claimed(e, 1));
	CHECK(replay_ensemble_claim(e, 1));
	CHECK(!replay_ensemble_claim(e, 1));
	CHECK(replay_ensemble_claim_next(e) == 0);
	CHECK(replay_ensemble_claim_next(e) == -1);
	CHECK(!replay_ensemble_new_round(e)); /* claimed, not ended */
	replay_ensemble_end(e, 0);
	replay_ensemble_end(e, 1);
	CHECK(replay_ensemble_new_round(e));
	CHECK(replay_ensemble_claim_next(e) == 0);
	replay_ensemble_free(&e);
}

int main(void)
{
	test_serve_waits_for_the_other_client();
	test_no_delay_unordered_and_ended();
	test_client_gates_include_completions();
	test_claims_and_rounds();
	return check_finish("ensemble");
}
