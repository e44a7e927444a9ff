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

static const struct capture_sink_ops collector_ops = {
	.open = co_open,
	.bytes = co_bytes,
	.observe = co_observe,
	.close = co_close,
};

int replay_recording_load(const char *path, unsigned session, struct replay_recording *rec,
			  int *code_r, char *err, size_t errlen)
{
	struct collector c = {.rec = rec};
	struct capture_sinks sinks = {0};
	struct capture_offline_config config = {
		.session = session,
		.no_rules = true,
		.redact_flags = IMAP_REDACT_CREDENTIALS,
	};
	struct capture_offline_result result;

	memset(rec, 0, sizeof(*rec));
	rec->session = session;
	capture_sinks_add(&sinks, (struct capture_sink){&collector_ops, &c});
	if (capture_offline_run(path, &config, &sinks, &result, err, errlen) != 0) {
		*code_r = 3;
		replay_recording_free(rec);
		free(c.pending[0]);
		free(c.pending[1]);
		return -1;
	}
	free(c.pending[0]);
	free(c.pending[1]);
	rec->sessions_in_file = result.sessions;
	if (c.failed) {
		snprintf(err, errlen, "out of memory reading %s", path);
		*code_r = 3;
		replay_recording_free(rec);
		return -1;
	}
	if (session > result.sessions || result.shown == 0) {
		snprintf(err, errlen, "%s has %u TCP session(s); there is no session %u", path,
			 result.sessions, session);
		*code_r = 2;
		replay_recording_free(rec);
		return -1;
	}
	if (rec->count == 0) {
		snprintf(err, errlen, "session %u of %s holds no IMAP line to replay", session, path);
		*code_r = 3;
		replay_recording_free(rec);
		return -1;
	}
	return 0;
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

/* A sink that notes the first session with a client line. */
struct first_spoken {
	unsigned session; /* 0: none yet */
};

static void fs_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct first_spoken *f = self;

	if (f->session == 0 && obs->dir == IMAP_C2S && obs->info != NULL &&
	    obs->info->cls != IMAP_LINE_MALFORMED)
		f->session = session;
}

static const struct capture_sink_ops first_spoken_ops = {
	.observe = fs_observe,
};

int replay_recording_first_spoken(const char *path, unsigned *session_r, unsigned *sessions_r,
				  int *code_r, char *err, size_t errlen)
{
	struct first_spoken f = {0};
	struct capture_sinks sinks = {0};
	struct capture_offline_config config = {.no_rules = true};
	struct capture_offline_result result;

	capture_sinks_add(&sinks, (struct capture_sink){&first_spoken_ops, &f});
	if (capture_offline_run(path, &config, &sinks, &result, err, errlen) != 0) {
		*code_r = 3;
		return -1;
	}
	*sessions_r = result.sessions;
	if (f.session == 0) {
		snprintf(err, errlen, "%s has %u TCP session(s) and in none of them did the client "
			 "send an IMAP line: nothing to replay", path, result.sessions);
		*code_r = 3;
		return -1;
	}
	*session_r = f.session;
	return 0;
}
