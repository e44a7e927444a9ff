#include "replay/serve.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/observed.h"
#include "imap/redact.h"
#include "replay/serve_int.h"

static void on_live(void *ctx, const struct imap_observation *obs)
{
	struct serve *s = ctx;
	struct live_unit *l;

	if (obs->dir != IMAP_C2S)
		return;
	if (s->live_count == LIVE_MAX) {
		s->io_error = true; /* a client far ahead: it diverged long ago */
		return;
	}
	l = &s->live[(s->live_head + s->live_count) % LIVE_MAX];
	memset(l, 0, sizeof(*l));
	l->kind = obs->unit->kind;
	l->data = malloc(obs->len ? obs->len : 1);
	if (l->data == NULL) {
		s->io_error = true;
		return;
	}
	memcpy(l->data, obs->data, obs->len);
	l->len = obs->len;
	l->at = replay_now();
	if (obs->info != NULL && obs->info->cls == IMAP_LINE_COMMAND &&
	    !(obs->unit->flags & IMAP_UNIT_CONTINUED) && obs->info->tag.len < sizeof(l->tag)) {
		memcpy(l->tag, obs->info->tag.p, obs->info->tag.len);
		l->tag[obs->info->tag.len] = '\0';
		l->starttls = obs->info->keyword == IMAP_KW_STARTTLS;
	}
	s->live_count++;
}

/* Replaces every match of the --ignore patterns with one \x01. */
static char *normalised(const struct serve *s, const uint8_t *p, size_t n)
{
	char *text = malloc(n + 1), *out;

	if (text == NULL)
		return NULL;
	memcpy(text, p, n);
	text[n] = '\0';
	for (size_t i = 0; i < s->opt->ignore_count; i++) {
		regmatch_t m;
		size_t at = 0;

		out = malloc(strlen(text) + 1);
		if (out == NULL)
			break;
		out[0] = '\0';
		while (regexec(&s->opt->ignore[i], text + at, 1, &m, at ? REG_NOTBOL : 0) == 0 &&
		       m.rm_eo > 0) {
			strncat(out, text + at, (size_t)m.rm_so);
			strcat(out, "\x01");
			at += (size_t)m.rm_eo;
		}
		strcat(out, text + at);
		free(text);
		text = out;
	}
	return text;
}

/* A masked password is a masked password, quoted or not: "****" -> *. */
static void unquote_masks(char *t)
{
	char *w = t;

	for (char *r = t; *r != '\0';) {
		if (r[0] == '"' && r[1] == '*') {
			char *e = r + 1;

			while (*e == '*')
				e++;
			if (*e == '"') {
				*w++ = '*';
				r = e + 1;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = '\0';
}

/* Equal, where a run of '*' (a masked span) matches any other run. */
static bool masked_equal(const char *a, const char *b)
{
	while (*a != '\0' && *b != '\0') {
		if (*a == '*' && *b == '*') {
			while (*a == '*')
				a++;
			while (*b == '*')
				b++;
			continue;
		}
		if (*a != *b)
			return false;
		a++;
		b++;
	}
	return *a == *b;
}

static bool unit_matches(struct serve *s, const struct replay_unit *u, const struct live_unit *l)
{
	size_t rskip = strlen(u->tag), lskip = strlen(l->tag);
	char *a, *b;
	bool eq;

	if (u->kind != l->kind)
		return false;
	/* the live client's tag stands for the recorded one */
	if ((rskip > 0) != (lskip > 0))
		return false;
	if (u->kind == IMAP_UNIT_LITERAL_DATA) {
		/* bodies masked in the recording match any of the same length */
		bool all_fill = true;

		for (size_t i = 0; i < u->masked_len && all_fill; i++)
			all_fill = u->masked[i] == '*' || u->masked[i] == '\r' || u->masked[i] == '\n';
		if (all_fill && u->masked_len == l->len)
			return true;
	}
	a = normalised(s, u->masked + rskip, u->masked_len - rskip);
	b = normalised(s, l->data + lskip, l->len - lskip);
	if (a != NULL && b != NULL) {
		unquote_masks(a);
		unquote_masks(b);
	}
	eq = a != NULL && b != NULL && masked_equal(a, b);
	free(a);
	free(b);
	return eq;
}

static struct tag_pair *live_tag_for(struct serve *s, const char *recorded)
{
	for (size_t i = s->tag_count; i-- > 0;)
		if (strcmp(s->tags[i].recorded, recorded) == 0)
			return &s->tags[i];
	return NULL;
}

static void map_tag(struct serve *s, const char *recorded, const char *live)
{
	if (recorded[0] == '\0' || s->tag_count == TAGS_MAX)
		return;
	snprintf(s->tags[s->tag_count].recorded, REPLAY_TAG_MAX, "%s", recorded);
	snprintf(s->tags[s->tag_count].live, REPLAY_TAG_MAX, "%s", live);
	s->tag_count++;
}

static void queue_out(struct serve *s, const uint8_t *p, size_t n)
{
	replay_link_queue(&s->link, p, n);
	/* the live conversation follows what the client is told, so its
	 * literals and AUTHENTICATE are framed right */
	observed_feed(s->observed, IMAP_S2C, replay_now(), IMAP_ORIGIN_PEER, p, n);
}

static void send_unit(struct serve *s, const struct replay_unit *u)
{
	struct tag_pair *pair = u->tag[0] != '\0' ? live_tag_for(s, u->tag) : NULL;

	if (pair != NULL) {
		size_t skip = strlen(u->tag);

		queue_out(s, (const uint8_t *)pair->live, strlen(pair->live));
		queue_out(s, u->data + skip, u->len - skip);
		/* a completion ends its command: only tags in flight are kept */
		*pair = s->tags[--s->tag_count];
	} else {
		queue_out(s, u->data, u->len);
	}
}

static void drop_live(struct serve *s)
{
	free(s->live[s->live_head].data);
	s->live_head = (s->live_head + 1) % LIVE_MAX;
	s->live_count--;
}

/* The due time of a server unit: its recorded delay after the last client
 * unit that came before it, scaled. */
static imap_time_us due(const struct serve *s, const struct replay_unit *u)
{
	if (s->opt->speed <= 0)
		return s->trigger_live;
	return s->trigger_live + (imap_time_us)((double)(u->at - s->trigger_rec) / s->opt->speed);
}

/* STARTTLS answered: the rest goes through TLS once what is queued is out. */
static bool start_tls(struct serve *s, size_t i)
{
	if (replay_link_start_tls(&s->link, s->opt->tls, true, NULL, s->opt->quiet))
		return true;
	replay_serve_diverged(s, i, "the TLS handshake after STARTTLS failed (does the client trust the CA?)",
		 NULL);
	return false;
}

/* The index of the first client unit at or after i (count if none). */
static size_t next_client_unit(const struct replay_recording *rec, size_t i)
{
	while (i < rec->count && rec->units[i].dir != IMAP_C2S)
		i++;
	return i;
}

/* How often a wait for another session looks again. */
#define CROSS_POLL_US (IMAP_US_PER_S / 200)
/* --match first-lines: a connection is matched by this many client
 * lines at most (a SELECT or EXAMINE ends the matching sooner). */
#define FIRST_LINES_MAX 32
/* no unclaimed session agrees with the connection's lines any more */
#define ALL_CLAIMED \
	"every session of the recording these lines agree with is played by another connection"

/* Another session's client has not sent what came before server unit i
 * in the recording, for longer than --quiet-limit. */
static void cross_stalled(struct serve *s, size_t i, const struct replay_wait *w, imap_time_us waited)
{
	const struct replay_recording *other = replay_ensemble_recording(s->ens, w->session);
	const struct replay_unit *g = &other->units[w->unit];
	char text[200], what[400];

	replay_printable(text, sizeof(text), g->masked, g->masked_len);
	if (g->kind == IMAP_UNIT_LITERAL_DATA)
		snprintf(text, sizeof(text), "{%zu literal bytes}", g->len);
	snprintf(what, sizeof(what), "this server line was recorded after session %u's client "
		 "line %u (%s), which has not come in %" PRId64 ".%03d s (did the client open that "
		 "connection? --order session lets sessions run apart)",
		 other->session, g->line_no, text, waited / IMAP_US_PER_S,
		 (int)(waited % IMAP_US_PER_S / 1000));
	replay_serve_diverged(s, i, what, NULL);
}

/* When server unit i may go, by its own session and the others: false
 * when it waits for another session (*at_r unset). */
static bool server_due(struct serve *s, size_t i, imap_time_us now, imap_time_us *at_r, bool *failed_r)
{
	struct replay_wait w;
	imap_time_us cross = 0;

	*at_r = due(s, &s->rec->units[i]);
	/* a client gone waits for nothing: its next line reports it; a
	 * session not yet told apart keeps its own order only */
	if (s->link.eof || s->tentative || replay_ensemble_ready(s->ens, s->idx, i, &cross, &w)) {
		s->cross_since = 0;
		if (cross > *at_r)
			*at_r = cross;
		return true;
	}
	if (s->cross_since == 0)
		s->cross_since = now;
	if (now - s->cross_since > s->opt->quiet) {
		cross_stalled(s, i, &w, now - s->cross_since);
		*failed_r = true;
	}
	return false;
}

/* Takes the sessions' tags in flight as the new leader's recording holds
 * them, up to its unit i: the live tags stand for its recorded ones. */
static void follow_leader(struct serve *s, size_t leader, size_t i)
{
	size_t k = 0;

	s->idx = leader;
	s->rec = replay_ensemble_recording(s->ens, leader);
	s->tag_count = 0;
	s->burst_end = 0;
	for (size_t j = 0; j < i; j++) {
		const struct replay_unit *u = &s->rec->units[j];
		struct tag_pair *pair;

		if (u->dir == IMAP_C2S) {
			if (u->tag[0] != '\0' && k < s->matched)
				map_tag(s, u->tag, s->first_tags[k]);
			k++;
		} else if (u->tag[0] != '\0' && (pair = live_tag_for(s, u->tag)) != NULL) {
			*pair = s->tags[--s->tag_count];
		}
	}
}

/* The sessions the client's lines so far agree with, given live unit l:
 * false when none does. Else *i is the matched unit in the leader, the
 * first of them. */
static bool narrow(struct serve *s, size_t *i, const struct live_unit *l)
{
	size_t k = s->matched, n = replay_ensemble_count(s->ens), leader = n;

	for (size_t c = 0; c < n; c++) {
		const struct replay_recording *r = replay_ensemble_recording(s->ens, c);

		if (!s->candidate[c])
			continue;
		s->candidate[c] = !replay_ensemble_claimed(s->ens, c) &&
				  k < replay_ensemble_gate_count(s->ens, c) &&
				  unit_matches(s, &r->units[replay_ensemble_gate(s->ens, c, k)], l);
		if (s->candidate[c] && leader == n)
			leader = c;
	}
	if (leader == n)
		return false;
	if (leader != s->idx)
		follow_leader(s, leader, replay_ensemble_gate(s->ens, leader, k));
	*i = replay_ensemble_gate(s->ens, leader, k);
	return true;
}

/* Ends the matching: the first session still agreeing is claimed, and
 * what its client did so far counts as done. False when another
 * connection took every one. */
static bool claim(struct serve *s, size_t *i)
{
	size_t n = replay_ensemble_count(s->ens);

	for (size_t c = 0; c < n; c++) {
		if (!s->candidate[c] || !replay_ensemble_claim(s->ens, c))
			continue;
		if (c != s->idx) {
			/* the new leader goes on past its last matched unit */
			*i = s->matched > 0 ? replay_ensemble_gate(s->ens, c, s->matched - 1) + 1 : 0;
			follow_leader(s, c, *i);
		}
		s->tentative = false;
		for (size_t k = 0; k < s->matched; k++)
			replay_ensemble_done(s->ens, c, s->first_at[k]);
		return true;
	}
	return false;
}

/* Whether the client's lines so far are enough to tell its session. */
static bool told_apart(const struct serve *s, const struct replay_unit *u)
{
	size_t left = 0;

	for (size_t c = 0; c < replay_ensemble_count(s->ens); c++)
		left += s->candidate[c];
	return left <= 1 || s->matched >= FIRST_LINES_MAX || strcmp(u->name, "SELECT") == 0 ||
	       strcmp(u->name, "EXAMINE") == 0;
}

/* The live unit at the head matches recorded unit *i (which, while the
 * session is not yet told, may move to another session's). False when it
 * does not, with the report made. */
static bool take_client_unit(struct serve *s, size_t *i)
{
	struct live_unit *l = &s->live[s->live_head];
	const struct replay_unit *u;

	/* while the session is not told yet, the unit may move to another
	 * session's recording */
	if (s->tentative ? !narrow(s, i, l) : !unit_matches(s, &s->rec->units[*i], l)) {
		replay_serve_diverged(s, *i, "the client sent something else", l);
		return false;
	}
	u = &s->rec->units[*i];
	if (u->tag[0] != '\0')
		map_tag(s, u->tag, l->tag);
	if (l->starttls)
		snprintf(s->starttls_tag, sizeof(s->starttls_tag), "%s", u->tag);
	s->trigger_live = l->at;
	s->trigger_rec = u->at;
	if (u->kind != IMAP_UNIT_LITERAL_DATA)
		s->res->client_lines++;
	if (s->tentative) {
		snprintf(s->first_tags[s->matched], REPLAY_TAG_MAX, "%s", l->tag);
		s->first_at[s->matched++] = l->at;
	} else {
		replay_ensemble_done(s->ens, s->idx, l->at);
	}
	drop_live(s);
	(*i)++;
	if (s->tentative && told_apart(s, u) && !claim(s, i)) {
		replay_serve_diverged(s, *i - 1, ALL_CLAIMED, NULL);
		return false;
	}
	return true;
}

/* No client unit has come while recorded unit i is due: false when the
 * wait is over, with the report made. */
static bool await_client(struct serve *s, size_t i, imap_time_us now)
{
	const struct replay_unit *u = &s->rec->units[i];
	imap_time_us waited = now - (s->trigger_live > s->start ? s->trigger_live : s->start);
	/* the recorded pause before this line, and then some */
	imap_time_us allowed = s->opt->quiet;
	char what[200];

	if (s->link.eof) {
		replay_serve_diverged(s, i, "the client closed the connection instead", NULL);
		return false;
	}
	if (s->opt->speed > 0)
		allowed += (imap_time_us)((double)(u->at - s->trigger_rec) / s->opt->speed);
	if (waited > allowed && s->link.out_len == 0) {
		snprintf(what, sizeof(what),
			 "the client sent nothing for %" PRId64 ".%03d s while this line "
			 "was due (is it waiting for something it did not ask for?)",
			 waited / IMAP_US_PER_S, (int)(waited % IMAP_US_PER_S / 1000));
		replay_serve_diverged(s, i, what, NULL);
		return false;
	}
	replay_link_pump(&s->link, REPLAY_LINK_SHORT_POLL_US);
	return true;
}

/* Server unit i, when it is due. Returns -1 when the replay is over,
 * 1 when the unit went, 0 when it waits. */
static int serve_unit(struct serve *s, size_t i, imap_time_us now)
{
	const struct replay_unit *u = &s->rec->units[i];
	bool in_burst = i < s->burst_end, failed = false;
	imap_time_us at;

	if (!in_burst && !server_due(s, i, now, &at, &failed)) {
		if (failed)
			return -1;
		replay_link_pump(&s->link, CROSS_POLL_US);
		return 0;
	}
	/* a client gone is not kept waiting for the recording's pauses */
	if (!in_burst && now < at && !s->link.eof) {
		replay_link_pump(&s->link, at - now);
		return 0;
	}
	/* coalesce: the rest of the server's turn goes with this unit, in
	 * the same write */
	if (!in_burst && s->opt->segment.mode == IMAP_SPLIT_COALESCE)
		s->burst_end = next_client_unit(s->rec, i);
	send_unit(s, u);
	if (s->starttls_tag[0] != '\0' && strcmp(u->tag, s->starttls_tag) == 0) {
		s->starttls_tag[0] = '\0';
		if (s->opt->tls != NULL && !start_tls(s, i))
			return -1;
	}
	return 1;
}

/* The recording is played out: what is queued reaches the client, and a
 * client that closed first in the recording is given the time to. */
static void finish(struct serve *s, imap_time_us deadline)
{
	while (s->link.out_len > 0 && !s->link.eof && replay_now() < deadline)
		replay_link_pump(&s->link, REPLAY_LINK_POLL_US);
	if (!s->rec->closed_by_server && s->live_count == 0) {
		imap_time_us until = replay_now() + s->opt->quiet;

		while (!s->link.eof && replay_now() < until && s->live_count == 0)
			replay_link_pump(&s->link, REPLAY_LINK_POLL_US);
	}
	if (s->live_count > 0) {
		char have[300];

		replay_printable(have, sizeof(have), s->live[s->live_head].data, s->live[s->live_head].len);
		s->res->code = 1;
		replay_report(s->res, "replay: the client sent more than the recording holds: %s\n",
			      have);
	}
}

static void run(struct serve *s)
{
	imap_time_us deadline = s->start + s->opt->timeout;
	size_t i = 0;

	for (;;) {
		size_t leader = s->idx;

		if (i >= s->rec->count) {
			/* played out before its lines told it apart: the first
			 * session still agreeing, which may go on further */
			if (!s->tentative)
				break;
			if (!claim(s, &i)) {
				replay_serve_diverged(s, s->rec->count - 1, ALL_CLAIMED, NULL);
				return;
			}
			if (s->idx == leader)
				break;
			continue;
		}
		imap_time_us now = replay_now();
		int sent;

		if (s->io_error || s->link.nomem) {
			s->res->code = 3;
			replay_report(s->res, "replay: out of memory, or the client ran more than %d lines ahead\n",
			       LIVE_MAX);
			return;
		}
		if (now > deadline) {
			replay_serve_diverged(s, i, "the replay ran past --timeout", NULL);
			return;
		}
		if (s->rec->units[i].dir == IMAP_S2C) {
			sent = serve_unit(s, i, now);
			if (sent < 0)
				return;
			i += (size_t)sent;
		} else if (s->live_count == 0) {
			if (!await_client(s, i, now))
				return;
		} else if (!take_client_unit(s, &i)) {
			return;
		}
	}
	finish(s, deadline);
}

static void on_received(void *ctx, const uint8_t *data, size_t len)
{
	struct serve *s = ctx;

	observed_feed(s->observed, IMAP_C2S, replay_now(), IMAP_ORIGIN_PEER, data, len);
}

/* --match first-lines: every session no connection has claimed yet is in
 * the running, the first of them leading. */
static bool start_tentative(struct serve *s)
{
	size_t n = replay_ensemble_count(s->ens);

	s->candidate = calloc(n, sizeof(*s->candidate));
	s->first_tags = calloc(FIRST_LINES_MAX, sizeof(*s->first_tags));
	s->first_at = calloc(FIRST_LINES_MAX, sizeof(*s->first_at));
	if (s->candidate == NULL || s->first_tags == NULL || s->first_at == NULL)
		return false;
	s->tentative = true;
	s->idx = n;
	for (size_t c = n; c-- > 0;)
		if (!replay_ensemble_claimed(s->ens, c)) {
			s->candidate[c] = true;
			s->idx = c;
		}
	if (s->idx == n) {
		s->res->code = 1;
		replay_report(s->res, "replay: the client opened more connections than the recording "
			      "holds sessions (%zu)\n", n);
		return false;
	}
	s->rec = replay_ensemble_recording(s->ens, s->idx);
	return true;
}

/* The TLS handshake a client on implicit TLS starts with, then the
 * recording. */
static void play(struct serve *s)
{
	const struct replay_options *opt = s->opt;

	s->start = replay_now();
	s->trigger_live = s->start;
	s->trigger_rec = 0;
	if (opt->tls != NULL && opt->implicit_tls &&
	    !replay_link_start_tls(&s->link, opt->tls, true, NULL, opt->quiet)) {
		s->res->code = 1;
		replay_report(s->res, "replay: the client's TLS handshake failed (does it trust the CA? is "
			   "it speaking TLS?)\n");
		return;
	}
	/* the handshake's time is not the recording's */
	s->start = s->trigger_live = replay_now();
	run(s);
	if (s->res->code == 0 && opt->segment.mode == IMAP_SPLIT_NONE) {
		replay_report(s->res, "replay: the client did what the recording did (%zu client lines)\n",
		       s->res->client_lines);
	} else if (s->res->code == 0) {
		char how[48];

		imap_split_describe(&opt->segment, how, sizeof(how));
		replay_report(s->res, "replay: the client did what the recording did (%zu client "
			      "lines; server bytes in %zu writes, --segment %s)\n",
			      s->res->client_lines, s->link.writes, how);
	}
}

void replay_serve_fd(struct replay_ensemble *ens, long session, int fd,
		     const struct replay_options *opt, struct replay_result *res)
{
	struct imap_conv_config cc = {.redact_flags = IMAP_REDACT_CREDENTIALS};
	struct serve s = {.opt = opt, .res = res, .ens = ens};
	struct capture_session_info info = {.upstream_tls = "replay"};
	struct observed_hooks hooks = {.observation = on_live, .ctx = &s};
	bool ready;

	memset(res, 0, sizeof(*res));
	replay_link_init(&s.link, fd, on_received, &s);
	replay_link_set_split(&s.link, &opt->segment);
	if (session >= 0) {
		s.idx = (size_t)session;
		s.rec = replay_ensemble_recording(ens, s.idx);
		ready = true;
	} else {
		ready = start_tentative(&s);
	}
	info.id = s.rec != NULL ? s.rec->session : 0;
	s.observed = observed_open(NULL, &info, &cc, &hooks);
	s.tags = calloc(TAGS_MAX, sizeof(*s.tags));
	if (s.observed == NULL || s.tags == NULL || (!ready && res->code == 0)) {
		res->code = 3;
		replay_report(s.res, "replay: out of memory\n");
	} else if (ready) {
		play(&s);
	}
	if (s.rec != NULL && !s.tentative) {
		res->session = s.rec->session;
		replay_ensemble_end(ens, s.idx);
	}
	while (s.live_count > 0)
		drop_live(&s);
	replay_link_free(&s.link);
	observed_discard(&s.observed);
	free(s.tags);
	free(s.candidate);
	free(s.first_tags);
	free(s.first_at);
}
