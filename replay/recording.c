#include "replay/recording.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/offline.h"
#include "imap/redact.h"

/* A capture sink that keeps one session's units. */
struct collector {
	struct replay_recording *rec;
	imap_time_us opened;
	uint8_t *pending[2]; /* bytes of the unit in progress, by direction */
	size_t pending_len[2];
	size_t pending_cap[2];
	unsigned lines[2];
	size_t cap;
	bool failed;
};

static void co_open(void *self, const struct capture_session_info *info)
{
	struct collector *c = self;

	c->opened = info->ts;
	c->rec->opened = info->ts;
	capture_endpoint_format(&info->client, c->rec->client, sizeof(c->rec->client));
	capture_endpoint_format(&info->upstream, c->rec->server, sizeof(c->rec->server));
}

static void co_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		     const uint8_t *data, size_t len, uint64_t secret_from)
{
	struct collector *c = self;

	(void)session;
	(void)ts;
	(void)secret_from; /* the whole unit is here when its observation comes */
	if (c->pending_len[dir] + len > c->pending_cap[dir]) {
		size_t cap = c->pending_cap[dir] ? c->pending_cap[dir] : 4096;
		uint8_t *p;

		while (cap < c->pending_len[dir] + len)
			cap *= 2;
		p = realloc(c->pending[dir], cap);
		if (p == NULL) {
			c->failed = true;
			return;
		}
		c->pending[dir] = p;
		c->pending_cap[dir] = cap;
	}
	memcpy(c->pending[dir] + c->pending_len[dir], data, len);
	c->pending_len[dir] += len;
}

static void co_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct collector *c = self;
	struct replay_recording *rec = c->rec;
	struct replay_unit *u;
	enum imap_dir dir = obs->dir;

	(void)session;
	if (rec->count == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct replay_unit *n = realloc(rec->units, cap * sizeof(*n));

		if (n == NULL) {
			c->failed = true;
			return;
		}
		rec->units = n;
		c->cap = cap;
	}
	u = &rec->units[rec->count];
	memset(u, 0, sizeof(*u));
	u->dir = dir;
	u->at = obs->ts - c->opened;
	u->kind = obs->unit->kind;
	u->len = c->pending_len[dir];
	u->data = malloc(u->len ? u->len : 1);
	if (u->data == NULL) {
		c->failed = true;
		return;
	}
	memcpy(u->data, c->pending[dir], u->len);
	c->pending_len[dir] = 0;
	/* the wire bytes, as masked as every other output shows them */
	u->masked_len = u->len;
	u->masked = malloc(u->masked_len ? u->masked_len : 1);
	if (u->masked == NULL) {
		free(u->data);
		c->failed = true;
		return;
	}
	memcpy(u->masked, u->data, u->masked_len);
	imap_observation_mask_wire(obs, u->masked, u->masked_len, 0);
	if (obs->info != NULL && !(obs->unit->flags & IMAP_UNIT_CONTINUED)) {
		const struct imap_line_info *info = obs->info;

		if ((info->cls == IMAP_LINE_COMMAND || info->cls == IMAP_LINE_TAGGED) &&
		    info->tag.len < sizeof(u->tag)) {
			memcpy(u->tag, info->tag.p, info->tag.len);
			u->tag[info->tag.len] = '\0';
		}
		u->continuation = info->cls == IMAP_LINE_CONTINUATION;
		u->untagged = info->cls == IMAP_LINE_UNTAGGED;
		u->auth_response = info->cls == IMAP_LINE_AUTH_RESPONSE;
		snprintf(u->name, sizeof(u->name), "%s", info->name);
		u->keyword = info->keyword;
	}
	if (obs->info != NULL)
		u->line_no = ++c->lines[dir];
	rec->count++;
}

static void co_close(void *self, const struct capture_close_info *info)
{
	struct collector *c = self;

	/* the proxy stood on the server's side of the client's connection */
	c->rec->closed_by_server = info->by == CAPTURE_SIDE_SERVER || info->by == CAPTURE_SIDE_PROXY;
}


/* The collectors of the sessions read, in the order they opened. */
struct collection {
	struct collector *sessions;
	struct replay_recording *recs;
	unsigned *ids;
	size_t count, cap;
	bool failed;
};

static struct collector *collector_of(struct collection *all, unsigned id)
{
	/* sessions open in id order: the newest are at the end */
	for (size_t i = all->count; i-- > 0;)
		if (all->ids[i] == id)
			return &all->sessions[i];
	return NULL;
}

static bool collection_grow(struct collection *all)
{
	size_t cap = all->cap ? all->cap * 2 : 8;
	struct collector *c = realloc(all->sessions, cap * sizeof(*c));
	struct replay_recording *r;
	unsigned *ids;

	if (c == NULL)
		return false;
	all->sessions = c;
	r = realloc(all->recs, cap * sizeof(*r));
	if (r == NULL)
		return false;
	all->recs = r;
	ids = realloc(all->ids, cap * sizeof(*ids));
	if (ids == NULL)
		return false;
	all->ids = ids;
	all->cap = cap;
	return true;
}

static void all_open(void *self, const struct capture_session_info *info)
{
	struct collection *all = self;
	struct collector *c;

	if (all->count == all->cap && !collection_grow(all)) {
		all->failed = true;
		return;
	}
	all->ids[all->count] = info->id;
	memset(&all->recs[all->count], 0, sizeof(all->recs[0]));
	all->recs[all->count].session = info->id;
	c = &all->sessions[all->count];
	memset(c, 0, sizeof(*c));
	/* the recs array moves as it grows: each call points c->rec anew */
	c->rec = &all->recs[all->count];
	all->count++;
	co_open(c, info);
}

static void all_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		      const uint8_t *data, size_t len, uint64_t secret_from)
{
	struct collection *all = self;
	struct collector *c = collector_of(all, session);

	if (c == NULL)
		return;
	c->rec = &all->recs[c - all->sessions];
	co_bytes(c, session, dir, ts, data, len, secret_from);
}

static void all_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct collection *all = self;
	struct collector *c = collector_of(all, session);

	if (c == NULL)
		return;
	c->rec = &all->recs[c - all->sessions];
	co_observe(c, session, obs);
}

static void all_close(void *self, const struct capture_close_info *info)
{
	struct collection *all = self;
	struct collector *c = collector_of(all, info->id);

	if (c == NULL)
		return;
	c->rec = &all->recs[c - all->sessions];
	co_close(c, info);
}

static const struct capture_sink_ops collection_ops = {
	.open = all_open,
	.bytes = all_bytes,
	.observe = all_observe,
	.close = all_close,
};

/* True when the client sent an IMAP line in rec. */
static bool client_spoke(const struct replay_recording *rec)
{
	for (size_t i = 0; i < rec->count; i++)
		if (rec->units[i].dir == IMAP_C2S && rec->units[i].line_no > 0)
			return true;
	return false;
}

static void collection_free(struct collection *all)
{
	for (size_t i = 0; i < all->count; i++) {
		replay_recording_free(&all->recs[i]);
		free(all->sessions[i].pending[0]);
		free(all->sessions[i].pending[1]);
	}
	free(all->sessions);
	free(all->recs);
	free(all->ids);
}

static bool listed(const unsigned *wanted, size_t n, unsigned id)
{
	for (size_t k = 0; k < n; k++)
		if (wanted[k] == id)
			return true;
	return false;
}

/* Keeps the sessions asked for, or every one in which the client spoke,
 * in the order they opened; frees the rest. */
static int collection_pick(struct collection *all, const unsigned *wanted, size_t n,
			   struct replay_recordings *out, const char *path, char *err, size_t errlen)
{
	for (size_t k = 0; k < n; k++) {
		struct collector *c = collector_of(all, wanted[k]);

		if (c == NULL || all->recs[c - all->sessions].count == 0) {
			snprintf(err, errlen, "session %u of %s holds no IMAP line to replay", wanted[k],
				 path);
			return 3;
		}
	}
	out->recs = calloc(all->count ? all->count : 1, sizeof(*out->recs));
	if (out->recs == NULL) {
		snprintf(err, errlen, "out of memory reading %s", path);
		return 3;
	}
	for (size_t i = 0; i < all->count; i++) {
		struct replay_recording *r = &all->recs[i];

		if (n > 0 && !listed(wanted, n, all->ids[i]))
			continue;
		if (n == 0 && !client_spoke(r)) {
			out->passed_over++;
			continue;
		}
		out->recs[out->count] = *r;
		out->recs[out->count++].sessions_in_file = out->sessions_in_file;
		memset(r, 0, sizeof(*r)); /* out owns its units now */
	}
	if (out->count == 0) {
		snprintf(err, errlen, "%s has %u TCP session(s) and in none of them did the client "
			 "send an IMAP line: nothing to replay", path, out->sessions_in_file);
		return 3;
	}
	return 0;
}

int replay_recordings_load(const char *path, const unsigned *sessions, size_t n,
			   struct replay_recordings *out, int *code_r, char *err, size_t errlen)
{
	struct collection all = {0};
	struct capture_sinks sinks = {0};
	struct capture_offline_config config = {
		.sessions = sessions,
		.session_count = n,
		.no_rules = true,
		.redact_flags = IMAP_REDACT_CREDENTIALS,
	};
	struct capture_offline_result result;
	int code = 0;

	memset(out, 0, sizeof(*out));
	capture_sinks_add(&sinks, (struct capture_sink){&collection_ops, &all});
	if (capture_offline_run(path, &config, &sinks, &result, err, errlen) != 0) {
		code = 3;
	} else if (all.failed) {
		snprintf(err, errlen, "out of memory reading %s", path);
		code = 3;
	} else {
		out->sessions_in_file = result.sessions;
		for (size_t k = 0; k < n && code == 0; k++)
			if (sessions[k] > result.sessions) {
				snprintf(err, errlen, "%s has %u TCP session(s); there is no session %u",
					 path, result.sessions, sessions[k]);
				code = 2;
			}
		for (size_t i = 0; i < all.count && code == 0; i++)
			if (all.sessions[i].failed) {
				snprintf(err, errlen, "out of memory reading %s", path);
				code = 3;
			}
		if (code == 0)
			code = collection_pick(&all, sessions, n, out, path, err, errlen);
	}
	collection_free(&all);
	if (code != 0) {
		replay_recordings_free(out);
		*code_r = code;
		return -1;
	}
	return 0;
}

void replay_recordings_free(struct replay_recordings *r)
{
	for (size_t i = 0; i < r->count; i++)
		replay_recording_free(&r->recs[i]);
	free(r->recs);
	memset(r, 0, sizeof(*r));
}

void replay_recording_free(struct replay_recording *rec)
{
	for (size_t i = 0; i < rec->count; i++) {
		free(rec->units[i].data);
		free(rec->units[i].masked);
	}
	free(rec->units);
	rec->units = NULL;
	rec->count = 0;
}

