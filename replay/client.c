#include "replay/client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "capture/observed.h"
#include "replay/link.h"

#define LIVE_TAGGED_MAX 256

/* What the live server said that the walk waits for. */
struct live_tagged {
	char tag[REPLAY_TAG_MAX];
	char status[8];
	char text[200];
	imap_time_us at;
};

struct client {
	const struct replay_recording *rec;
	struct replay_ensemble *ens;     /* the sessions played at once */
	size_t idx;                      /* this one's index in ens */
	const struct replay_client_options *opt;
	struct replay_result *res;
	struct replay_link link;
	struct observed_session *observed; /* frames the live server's bytes */
	struct live_tagged tagged[LIVE_TAGGED_MAX];
	size_t tagged_count;
	unsigned continuations;          /* "+" seen, not yet used */
	imap_time_us continuation_at;
	unsigned untagged_live;          /* since the last completion */
	unsigned untagged_recorded;
	imap_time_us trigger_live;
	imap_time_us trigger_rec;
	unsigned commands;
	unsigned failures;
	bool want_starttls;              /* a STARTTLS awaits its OK */
	char starttls_tag[REPLAY_TAG_MAX];
};

static void on_live(void *ctx, const struct imap_observation *obs)
{
	struct client *c = ctx;
	const struct imap_line_info *info = obs->info;

	if (obs->dir != IMAP_S2C || info == NULL || (obs->unit->flags & IMAP_UNIT_CONTINUED))
		return;
	if (info->cls == IMAP_LINE_CONTINUATION) {
		c->continuations++;
		c->continuation_at = replay_now();
	} else if (info->cls == IMAP_LINE_UNTAGGED) {
		c->untagged_live++;
	} else if (info->cls == IMAP_LINE_TAGGED && c->tagged_count < LIVE_TAGGED_MAX) {
		struct live_tagged *t = &c->tagged[c->tagged_count++];
		size_t n = info->tag.len < sizeof(t->tag) - 1 ? info->tag.len : sizeof(t->tag) - 1;
		size_t m = obs->len;

		memcpy(t->tag, info->tag.p, n);
		t->tag[n] = '\0';
		snprintf(t->status, sizeof(t->status), "%s", imap_status_str(info->status));
		while (m > 0 && (obs->data[m - 1] == '\n' || obs->data[m - 1] == '\r'))
			m--;
		snprintf(t->text, sizeof(t->text), "%.*s", (int)(m < 190 ? m : 190), obs->data);
		t->at = replay_now();
	}
}

static void on_received(void *ctx, const uint8_t *data, size_t len)
{
	struct client *c = ctx;

	observed_feed(c->observed, IMAP_S2C, replay_now(), IMAP_ORIGIN_PEER, data, len);
}

static void send_bytes(struct client *c, const uint8_t *p, size_t n)
{
	replay_link_queue(&c->link, p, n);
	observed_feed(c->observed, IMAP_C2S, replay_now(), IMAP_ORIGIN_PEER, p, n);
}

static bool masked_span(const struct replay_unit *u)
{
	return u->len >= 3 && memmem(u->data, u->len, "***", 3) != NULL;
}

unsigned replay_client_masked_line(const struct replay_recording *rec)
{
	for (size_t i = 0; i < rec->count; i++)
		if (rec->units[i].dir == IMAP_C2S && masked_span(&rec->units[i]))
			return rec->units[i].line_no;
	return 0;
}

/* A quoted string for LOGIN, or a literal when quoting cannot carry it. */
static void put_astring(char *out, size_t size, const char *s)
{
	if (strpbrk(s, "\"\\\r\n") != NULL)
		snprintf(out, size, "{%zu+}\r\n%s", strlen(s), s);
	else
		snprintf(out, size, "\"%s\"", s);
}

/* The recorded client bytes, with masked credentials filled from --login.
 * Returns false (with a report) when they are masked and no login is given. */
static bool client_bytes(struct client *c, const struct replay_unit *u, char *buf, size_t size,
			 const uint8_t **p, size_t *n)
{
	const char *user = c->opt->user, *pass = c->opt->pass;
	char plain[600], b64[900], a[300], b[300];
	int len;

	*p = u->data;
	*n = u->len;
	if (!masked_span(u))
		return true;
	if (user == NULL) {
		c->res->code = 1;
		replay_report(c->res, "replay client: client line %u carries masked credentials: give --login "
			"USER:PASS\n", u->line_no);
		return false;
	}
	len = snprintf(plain, sizeof(plain), "%c%s%c%s", 0, user, 0, pass);
	EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)plain, len);
	if (u->keyword == IMAP_KW_LOGIN) {
		put_astring(a, sizeof(a), user);
		put_astring(b, sizeof(b), pass);
		snprintf(buf, size, "%s LOGIN %s %s\r\n", u->tag, a, b);
	} else if (u->keyword == IMAP_KW_AUTHENTICATE) {
		/* SASL-IR: the initial response is the masked part */
		snprintf(buf, size, "%s AUTHENTICATE PLAIN %s\r\n", u->tag, b64);
	} else if (u->auth_response) {
		snprintf(buf, size, "%s\r\n", b64);
	} else {
		return true; /* stars that are data */
	}
	*p = (const uint8_t *)buf;
	*n = strlen(buf);
	return true;
}

static imap_time_us due(const struct client *c, const struct replay_unit *u)
{
	if (c->opt->speed <= 0)
		return c->trigger_live;
	return c->trigger_live + (imap_time_us)((double)(u->at - c->trigger_rec) / c->opt->speed);
}

static struct live_tagged *take_tagged(struct client *c, const char *tag)
{
	for (size_t i = 0; i < c->tagged_count; i++)
		if (strcmp(c->tagged[i].tag, tag) == 0)
			return &c->tagged[i];
	return NULL;
}

static void forget_tagged(struct client *c, struct live_tagged *t)
{
	size_t i = (size_t)(t - c->tagged);

	memmove(&c->tagged[i], &c->tagged[i + 1], (c->tagged_count - i - 1) * sizeof(*t));
	c->tagged_count--;
}

/* Waits for the live counterpart of a recorded server unit. Returns false
 * when the walk cannot go on. */
static bool await(struct client *c, size_t i, imap_time_us deadline)
{
	const struct replay_unit *u = &c->rec->units[i];
	imap_time_us allowed = c->opt->quiet, start = replay_now();

	if (c->opt->speed > 0)
		allowed += (imap_time_us)((double)(u->at - c->trigger_rec) / c->opt->speed);
	for (;;) {
		imap_time_us now = replay_now();

		if (u->continuation && c->continuations > 0) {
			c->continuations--;
			c->trigger_live = c->continuation_at;
			c->trigger_rec = u->at;
			replay_ensemble_done(c->ens, c->idx, c->trigger_live);
			return true;
		}
		if (!u->continuation) {
			struct live_tagged *t = take_tagged(c, u->tag);

			if (t != NULL) {
				c->commands++;
				if (strcmp(t->status, u->name) != 0) {
					c->failures++;
					replay_report(c->res, "replay client: %s completed %s, recorded %s: %s\n", u->tag,
					     t->status, u->name, t->text);
				}
				if (c->opt->strict && c->untagged_live != c->untagged_recorded) {
					c->failures++;
					replay_report(c->res, "replay client: before %s the server sent %u untagged "
						"response(s), the recording %u\n",
					     u->tag, c->untagged_live, c->untagged_recorded);
				}
				c->untagged_live = c->untagged_recorded = 0;
				c->trigger_live = t->at;
				c->trigger_rec = u->at;
				forget_tagged(c, t);
				replay_ensemble_done(c->ens, c->idx, c->trigger_live);
				return true;
			}
		}
		if (c->link.eof) {
			c->res->code = 1;
			replay_report(c->res, "replay client: the server closed the connection while %s was awaited "
				"(server line %u of the recording)\n",
			     u->continuation ? "a +" : u->tag, u->line_no);
			return false;
		}
		if (now - start > allowed || now > deadline) {
			c->res->code = 1;
			replay_report(c->res, "replay client: no %s from the server within %" PRId64 ".%03d s "
				"(server line %u of the recording)\n",
			     u->continuation ? "+" : "tagged completion", (now - start) / IMAP_US_PER_S,
			     (int)((now - start) % IMAP_US_PER_S / 1000), u->line_no);
			return false;
		}
		replay_link_pump(&c->link, REPLAY_LINK_SHORT_POLL_US);
	}
}

/* How often a wait for another session looks again. */
#define CROSS_POLL_US (IMAP_US_PER_S / 200)

/* Waits until client unit i is due: its recorded delay after the last
 * thing of its own session, and after what the other sessions did
 * before it in the recording. False when another session keeps it
 * waiting past --quiet-limit (reported). */
static bool await_turn(struct client *c, size_t i, imap_time_us deadline)
{
	const struct replay_unit *u = &c->rec->units[i];
	imap_time_us since = replay_now(), cross = 0, now;
	struct replay_wait w;

	while (!replay_ensemble_ready(c->ens, c->idx, i, &cross, &w)) {
		now = replay_now();
		if (c->link.eof)
			return true; /* the next await says the server went */
		if (now - since > c->opt->quiet || now > deadline) {
			const struct replay_recording *o = replay_ensemble_recording(c->ens, w.session);

			c->res->code = 1;
			replay_report(c->res, "replay client: client line %u was recorded after "
				      "session %u's %s line %u, which did not come within %" PRId64
				      ".%03d s\n", u->line_no, o->session,
				      o->units[w.unit].dir == IMAP_C2S ? "client" : "server",
				      o->units[w.unit].line_no, (now - since) / IMAP_US_PER_S,
				      (int)((now - since) % IMAP_US_PER_S / 1000));
			return false;
		}
		replay_link_pump(&c->link, CROSS_POLL_US);
	}
	while ((now = replay_now()) < due(c, u) && !c->link.eof)
		replay_link_pump(&c->link, due(c, u) - now);
	while ((now = replay_now()) < cross && !c->link.eof)
		replay_link_pump(&c->link, cross - now);
	return true;
}

/* A client's DONE: the line that ends an IDLE. */
static bool ends_idle(const struct replay_unit *u)
{
	return u->dir == IMAP_C2S && u->tag[0] == '\0' && u->len >= 4 &&
	       strncasecmp((const char *)u->data, "DONE", 4) == 0 &&
	       (u->len == 4 || u->data[4] == '\r' || u->data[4] == '\n');
}

/* The recorded DONE came after the untagged responses the IDLE got (the
 * client was waiting for them): so does this one, or after
 * --quiet-limit when they do not come (--strict then says so). */
static void await_idle_news(struct client *c)
{
	imap_time_us until = replay_now() + c->opt->quiet;

	while (c->untagged_live < c->untagged_recorded && !c->link.eof && replay_now() < until)
		replay_link_pump(&c->link, REPLAY_LINK_SHORT_POLL_US);
}

static void walk(struct client *c)
{
	const struct replay_recording *rec = c->rec;
	imap_time_us deadline = replay_now() + c->opt->timeout;
	char buf[2048];

	for (size_t i = 0; i < rec->count; i++) {
		const struct replay_unit *u = &rec->units[i];

		if (c->link.nomem) {
			c->res->code = 3;
			replay_report(c->res, "replay client: out of memory\n");
			return;
		}
		if (u->dir == IMAP_S2C) {
			if (u->untagged) {
				c->untagged_recorded++;
				continue;
			}
			if (u->tag[0] == '\0' && !u->continuation)
				continue; /* the greeting and other untagged forms */
			if (!await(c, i, deadline))
				return;
			if (c->want_starttls && strcmp(u->tag, c->starttls_tag) == 0) {
				c->want_starttls = false;
				if (c->opt->tls != NULL &&
				    !replay_link_start_tls(&c->link, c->opt->tls, false, c->opt->sni,
							   c->opt->quiet)) {
					c->res->code = 1;
					replay_report(c->res, "replay client: the TLS handshake after STARTTLS failed\n");
					return;
				}
			}
			continue;
		}
		if (!await_turn(c, i, deadline))
			return;
		if (ends_idle(u))
			await_idle_news(c);
		{
			const uint8_t *p;
			size_t n;

			if (!client_bytes(c, u, buf, sizeof(buf), &p, &n))
				return;
			if (u->keyword == IMAP_KW_STARTTLS && u->tag[0] != '\0') {
				c->want_starttls = true;
				snprintf(c->starttls_tag, sizeof(c->starttls_tag), "%s", u->tag);
			}
			send_bytes(c, p, n);
			replay_ensemble_done(c->ens, c->idx, replay_now());
		}
	}
	while (c->link.out_len > 0 && !c->link.eof && replay_now() < deadline)
		replay_link_pump(&c->link, REPLAY_LINK_POLL_US);
}

void replay_client_fd(struct replay_ensemble *ens, size_t session, int fd,
		      const struct replay_client_options *opt, struct replay_result *res)
{
	const struct replay_recording *rec = replay_ensemble_recording(ens, session);
	struct imap_conv_config cc = {0};
	struct client c = {.rec = rec, .ens = ens, .idx = session, .opt = opt, .res = res};
	struct capture_session_info info = {.id = rec->session, .upstream_tls = "replay"};
	struct observed_hooks hooks = {.observation = on_live, .ctx = &c};

	memset(res, 0, sizeof(*res));
	replay_link_init(&c.link, fd, on_received, &c);
	c.observed = observed_open(NULL, &info, &cc, &hooks);
	c.trigger_live = replay_now();
	if (c.observed == NULL) {
		res->code = 3;
		replay_report(c.res, "replay client: out of memory\n");
	} else if (opt->tls != NULL && opt->implicit_tls &&
		   !replay_link_start_tls(&c.link, opt->tls, false, opt->sni, opt->quiet)) {
		res->code = 1;
		replay_report(c.res, "replay client: the TLS handshake with the server failed (certificate not "
			 "trusted? see --upstream-ca)\n");
	} else {
		c.trigger_live = replay_now();
		walk(&c);
		if (res->code == 0 && c.failures > 0)
			res->code = 1;
		res->client_lines = c.commands;
		if (res->code == 0)
			replay_report(c.res, "replay client: %u command(s) completed as recorded\n", c.commands);
		else if (c.failures > 0)
			replay_report(c.res, "replay client: %u of %u command(s) differ from the recording\n",
			     c.failures, c.commands);
	}
	res->session = rec->session;
	replay_ensemble_end(ens, session);
	replay_link_free(&c.link);
	observed_discard(&c.observed);
}
