/* The pcap writer as a sink: a synthetic TCP session per observed session,
 * its framed units held until their observation says what to mask, then
 * written as segments; rotation by size. The packets are built in
 * capture/pcap_packets.c, the files handled in capture/pcap_files.c. */
#include "capture/pcap_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "capture/pcap_writer_int.h"
#include "capture/settings.h"

static void release(struct pcap_writer *w);

static struct pcap_session **slot(struct pcap_writer *w, unsigned id)
{
	struct pcap_session **p = &w->bucket[id % BUCKETS];

	while (*p != NULL && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

/* Continues the file set in a new file: every open session gets a fresh
 * handshake there so each file decodes on its own. */
static void rotate(struct pcap_writer *w)
{
	char err[600];

	pcap_close_file(w);
	w->file_no++;
	if (pcap_open_file(w, false, err, sizeof(err)) != 0) {
		errno = errno ? errno : EIO;
		pcap_report(w, "cannot rotate");
		return;
	}
	if (w->settings != NULL)
		pcap_write_settings_mark(w, w->last_ts);
	for (unsigned b = 0; b < BUCKETS; b++)
		for (struct pcap_session *s = w->bucket[b]; s != NULL; s = s->next)
			pcap_handshake(w, s, w->last_ts);
}

static void write_data(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
		       imap_time_us ts, const uint8_t *data, size_t len)
{
	while (len > 0) {
		size_t n = len < CAPTURE_PCAP_SEGMENT_MAX ? len : CAPTURE_PCAP_SEGMENT_MAX;

		if (w->max_bytes > 0 && w->written >= w->max_bytes && !w->failed)
			rotate(w);
		/* the comments go on the unit's last segment */
		w->attach = n == len && w->comments > 0;
		pcap_write_segment(w, s, dir, ts, TH_PSH | TH_ACK, data, n);
		data += n;
		len -= n;
	}
	/* the receiver acknowledges now and then, as a real one would */
	if (s->unacked[dir] >= ACK_EVERY)
		pcap_write_segment(w, s, !dir, ts, TH_ACK, NULL, 0);
}

/* A unit's bytes that are gone before its observation came (which cannot
 * happen, as IMAP_CONV_BYTES_WHOLE promises): the stream keeps its
 * length, the bytes are masked whole. */
static void write_blank(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			imap_time_us ts, size_t len)
{
	uint8_t piece[4096];

	memset(piece, IMAP_REDACT_FILL, sizeof(piece));
	while (len > 0) {
		size_t n = len < sizeof(piece) ? len : sizeof(piece);

		write_data(w, s, dir, ts, piece, n);
		s->unit_off[dir] += n;
		len -= n;
	}
}

/* Writes what is pending of a unit before its observation (a unit longer
 * than pending holds, a fault mark, the end of the session): masked from
 * where its start says it may hold a secret, since the observation that
 * would say exactly where has not come. */
static void flush_pending(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			  imap_time_us ts)
{
	if (s->whole_len[dir] > 0) {
		write_blank(w, s, dir, ts, s->whole_len[dir]);
		s->whole_len[dir] = 0;
	}
	if (s->pending_len[dir] == 0)
		return;
	imap_redact_fill_from(s->pending[dir], s->pending_len[dir], s->unit_off[dir],
			      s->secret_from[dir], false);
	write_data(w, s, dir, ts, s->pending[dir], s->pending_len[dir]);
	s->unit_off[dir] += s->pending_len[dir];
	s->pending_len[dir] = 0;
}

static void pw_open(void *self, const struct capture_session_info *info)
{
	struct pcap_writer *w = self;
	struct pcap_session *s;
	struct pcap_session **p;

	release(w);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return;
	s->id = info->id;
	s->secret_from[IMAP_C2S] = s->secret_from[IMAP_S2C] = IMAP_REDACT_NONE;
	s->end[IMAP_C2S] = info->client;
	s->end[IMAP_S2C] = info->upstream;
	if (info->upstream.version != info->client.version) {
		/* the upstream is of another family: show the address the
		 * client connected to instead */
		s->end[IMAP_S2C] = info->local;
	}
	if (info->client.version == 0 || s->end[IMAP_S2C].version != info->client.version) {
		free(s);
		return;
	}
	s->family = info->client.version == 6 ? AF_INET6 : AF_INET;
	s->end[IMAP_S2C].port = CAPTURE_PCAP_SERVER_PORT;
	/* fixed initial sequence numbers keep captures reproducible */
	s->next_seq[IMAP_C2S] = 0x10000000u + s->id * 0x10000u + 1;
	s->next_seq[IMAP_S2C] = 0x80000000u + s->id * 0x10000u + 1;
	p = slot(w, s->id);
	if (*p != NULL) { /* an id seen twice: keep the newer session */
		free(s);
		return;
	}
	*p = s;
	pcap_handshake(w, s, info->ts);
}

/* Out of memory for holding a unit: its bytes go out masked whole in
 * small pieces, as nothing can say they hold no secret. */
static void write_filled(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			 imap_time_us ts, const uint8_t *data, size_t len)
{
	uint8_t piece[4096];

	while (len > 0) {
		size_t n = len < sizeof(piece) ? len : sizeof(piece);

		memcpy(piece, data, n);
		imap_redact_fill_from(piece, n, 0, 0, false);
		write_data(w, s, dir, ts, piece, n);
		s->unit_off[dir] += n;
		data += n;
		len -= n;
	}
}

static bool hold(struct pcap_session *s, enum imap_dir dir, const uint8_t *data, size_t len)
{
	if (s->pending_len[dir] + len > s->pending_cap[dir]) {
		size_t cap = s->pending_cap[dir] ? s->pending_cap[dir] : 4096;
		uint8_t *p;

		while (cap < s->pending_len[dir] + len)
			cap *= 2;
		/* not realloc: the old block holds bytes not masked yet */
		p = malloc(cap);
		if (p == NULL)
			return false;
		if (s->pending[dir] != NULL) {
			memcpy(p, s->pending[dir], s->pending_len[dir]);
			explicit_bzero(s->pending[dir], s->pending_cap[dir]);
			free(s->pending[dir]);
		}
		s->pending[dir] = p;
		s->pending_cap[dir] = cap;
	}
	memcpy(s->pending[dir] + s->pending_len[dir], data, len);
	s->pending_len[dir] += len;
	return true;
}

static void pw_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		     const uint8_t *data, size_t len, uint64_t secret_from)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);

	release(w);

	if (s == NULL)
		return;
	if (secret_from == IMAP_CONV_BYTES_UNFRAMED) {
		/* no unit will complete them: what is held first, then these */
		flush_pending(w, s, dir, ts);
		write_data(w, s, dir, ts, data, len);
		return;
	}
	if (secret_from == IMAP_CONV_BYTES_WHOLE && w->format == CAPTURE_PCAP_CLASSIC &&
	    s->pending_len[dir] == 0 && s->whole_len[dir] == 0) {
		/* written from the observation, which comes next: no copy
		 * (pcapng keeps one, as it holds the unit for its comments) */
		s->whole_len[dir] = len;
		return;
	}
	s->secret_from[dir] = secret_from;
	/* a unit longer than pending holds goes out in pieces, each masked
	 * as far as the unit's start tells */
	while (len > 0) {
		size_t n;

		if (s->pending_len[dir] >= PENDING_MAX)
			flush_pending(w, s, dir, ts);
		n = PENDING_MAX - s->pending_len[dir];
		if (n > len)
			n = len;
		if (!hold(s, dir, data, n)) {
			flush_pending(w, s, dir, ts);
			write_filled(w, s, dir, ts, data, len);
			return;
		}
		data += n;
		len -= n;
	}
}

static void unit_written(struct pcap_session *s, enum imap_dir dir)
{
	s->pending_len[dir] = 0;
	s->unit_off[dir] = 0;
	s->secret_from[dir] = IMAP_REDACT_NONE;
	/* idle sessions hold no buffers */
	if (s->pending_cap[dir] > 65536) {
		free(s->pending[dir]);
		s->pending[dir] = NULL;
		s->pending_cap[dir] = 0;
	}
}

/* Writes the unit held back for its comments (pcapng), if any. */
static void release(struct pcap_writer *w)
{
	struct pcap_session *s = w->deferred.s;
	enum imap_dir dir = w->deferred.dir;

	if (s == NULL)
		return;
	w->deferred.s = NULL;
	if (s->pending_len[dir] == 0 && w->comments > 0) {
		/* the unit went out in pieces already: an ACK carries them */
		w->attach = true;
		pcap_write_segment(w, s, dir, w->deferred.ts, TH_ACK, NULL, 0);
	}
	write_data(w, s, dir, w->deferred.ts, s->pending[dir], s->pending_len[dir]);
	w->comments = 0;
	w->attach = false;
	unit_written(s, dir);
}

static void comment_completion(struct pcap_writer *w, const struct imap_completion *c)
{
	pcap_comment(w, "imaptap latency %.3f ms: %s %s%s %s", (double)c->latency / 1000.0, c->tag,
		     c->uid ? "UID " : "", c->command, imap_status_str(c->status));
	if (c->idle && c->done_to_ok >= 0)
		pcap_comment(w, "imaptap done-to-ok %.3f s: %s IDLE", (double)c->done_to_ok / 1e6,
			     c->tag);
}

static void pw_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);
	enum imap_dir dir = obs->dir;

	release(w);
	if (s == NULL)
		return;
	if (s->whole_len[dir] > 0) {
		size_t n = s->whole_len[dir];

		s->whole_len[dir] = 0;
		if (!obs->secret_rest && obs->len == n)
			write_data(w, s, dir, obs->ts, obs->data, n);
		else /* masked beyond what it shows */
			write_blank(w, s, dir, obs->ts, n);
		unit_written(s, dir);
		return;
	}
	/* pending holds the unit's wire bytes, or its rest when some went
	 * out already: lay the observation's masking over them */
	if (s->pending_len[dir] > 0)
		imap_observation_mask_wire(obs, s->pending[dir], s->pending_len[dir],
					   s->unit_off[dir]);
	if (w->format == CAPTURE_PCAP_NG) {
		if (obs->completion != NULL)
			comment_completion(w, obs->completion);
		w->deferred = (struct pcap_deferred){.s = s, .dir = dir, .ts = obs->ts};
		return;
	}
	write_data(w, s, dir, obs->ts, s->pending[dir], s->pending_len[dir]);
	unit_written(s, dir);
}

/* A finding: on the packet of the unit that set it off, or (a rule that
 * fired as time passed) on a mark of its own at its time. pcapng only. */
static void pw_anomaly(void *self, unsigned session, const struct imap_anomaly *a)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);
	char text[CAPTURE_FAULT_MARK_TEXT_MAX];
	size_t n;

	if (w->format != CAPTURE_PCAP_NG || s == NULL)
		return;
	if (w->deferred.s != s)
		release(w);
	pcap_comment(w, "imaptap %s %s: %s%s%s%s%s%s", a->resolved ? "resolved" : "anomaly",
		     imap_rule_id(a->rule), a->severity == IMAP_SEVERITY_INFO ? "[info] " : "",
		     a->never_resolved ? "[never resolved] " : "", a->tag[0] ? "[" : "", a->tag,
		     a->tag[0] ? "] " : "", a->detail);
	if (w->deferred.s == s)
		return;
	n = capture_anomaly_mark_format(text, sizeof(text), session, &s->end[IMAP_C2S], a);
	w->attach = true;
	pcap_write_mark(w, s, a->ts, (const uint8_t *)text, n);
	w->attach = false;
	w->comments = 0;
}

/* Backpressure as the proxy saw it: the receiver of dir advertises a zero
 * window while it does not read, and opens it again when it does. */
static void pw_flow(void *self, unsigned session, imap_time_us ts, enum imap_dir dir, bool blocked,
		    uint64_t pending)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);

	release(w);

	(void)pending;
	if (s == NULL || s->zero_window[!dir] == blocked)
		return;
	s->zero_window[!dir] = blocked;
	pcap_write_segment(w, s, !dir, ts, TH_ACK, NULL, 0);
}

/* Bytes the fault released are already in the stream; what is pending
 * goes first, so the mark sits where the action happened. */
static void pw_fault(void *self, unsigned session, const struct capture_fault_mark *m)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);
	char text[CAPTURE_FAULT_MARK_TEXT_MAX];
	size_t n;

	release(w);
	if (s == NULL)
		return;
	flush_pending(w, s, IMAP_C2S, m->ts);
	flush_pending(w, s, IMAP_S2C, m->ts);
	/* the client as the TCP headers show it, so a reader finds the session */
	n = capture_fault_mark_format(text, sizeof(text), session, &s->end[IMAP_C2S], m);
	pcap_comment(w, "imaptap fault %s: %s %s %s: %s", m->spec, m->action, imap_dir_str(m->dir),
		     m->phase, m->detail);
	w->attach = true;
	if (n > 0)
		pcap_write_mark(w, s, m->ts, (const uint8_t *)text, n);
	w->attach = false;
	w->comments = 0;
}

static void pw_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	struct pcap_writer *w = self;
	char text[CAPTURE_SETTINGS_TEXT_MAX];
	size_t n = capture_settings_mark_format(text, sizeof(text), ts, s);
	char *copy = n > 0 ? malloc(n) : NULL;

	release(w);
	if (copy == NULL)
		return;
	memcpy(copy, text, n);
	free(w->settings);
	w->settings = copy;
	w->settings_len = n;
	pcap_write_settings_mark(w, ts);
}

static void write_close_mark(struct pcap_writer *w, struct pcap_session *s,
			     const struct capture_close_info *info)
{
	char text[CAPTURE_FAULT_MARK_TEXT_MAX];
	size_t n = capture_close_mark_format(text, sizeof(text), info->id, &s->end[IMAP_C2S], info);

	if (n > 0)
		pcap_write_mark(w, s, info->ts, (const uint8_t *)text, n);
}

static void pw_close(void *self, const struct capture_close_info *info)
{
	struct pcap_writer *w = self;
	struct pcap_session **p;
	struct pcap_session *s;
	enum imap_dir closer;

	release(w);
	p = slot(w, info->id);
	s = *p;
	if (s == NULL)
		return;
	flush_pending(w, s, IMAP_C2S, info->ts);
	flush_pending(w, s, IMAP_S2C, info->ts);
	/* the proxy stands for the server on the client leg */
	closer = info->by == CAPTURE_SIDE_CLIENT ? IMAP_C2S : IMAP_S2C;
	/* TCP cannot tell a shutdown from a server's close: a mark says it */
	if (info->end == CAPTURE_END_SHUTDOWN)
		write_close_mark(w, s, info);
	if (capture_end_is_clean(info->end)) {
		pcap_write_segment(w, s, closer, info->ts, TH_FIN | TH_ACK, NULL, 0);
		pcap_write_segment(w, s, !closer, info->ts, TH_FIN | TH_ACK, NULL, 0);
		pcap_write_segment(w, s, closer, info->ts, TH_ACK, NULL, 0);
	} else {
		pcap_write_segment(w, s, closer, info->ts, TH_RST | TH_ACK, NULL, 0);
	}
	*p = s->next;
	free(s->pending[0]);
	free(s->pending[1]);
	free(s);
}

static void pw_flush(void *self)
{
	release(self);
	pcap_files_flush(self);
}

static void pw_reopen(void *self)
{
	release(self);
	pcap_files_reopen(self);
}

static void pw_destroy(void *self)
{
	struct pcap_writer *w = self;

	if (w->file.fp != NULL)
		release(w);
	pcap_sessions_free(w);
	pcap_close_file(w);
	free(w->settings);
	if (w->dead != NULL)
		pcap_close(w->dead);
	free(w->path);
	free(w);
}

static const struct capture_sink_ops pcap_writer_ops = {
	.settings = pw_settings,
	.open = pw_open,
	.bytes = pw_bytes,
	.observe = pw_observe,
	.flow = pw_flow,
	.fault = pw_fault,
	.close = pw_close,
	.anomaly = pw_anomaly,
	.flush = pw_flush,
	.reopen = pw_reopen,
	.stats = pcap_files_stats,
	.destroy = pw_destroy,
};

enum capture_pcap_format capture_pcap_format_of(const char *path, enum capture_pcap_format asked)
{
	size_t n = strlen(path);

	if (asked != CAPTURE_PCAP_BY_NAME)
		return asked;
	return n >= 7 && strcasecmp(path + n - 7, ".pcapng") == 0 ? CAPTURE_PCAP_NG
								     : CAPTURE_PCAP_CLASSIC;
}

int capture_pcap_writer_new(const struct capture_pcap_config *config,
			    struct capture_sink *sink_r, bool *refused_r, char *err, size_t errlen)
{
	struct pcap_writer *w = calloc(1, sizeof(*w));

	if (refused_r != NULL)
		*refused_r = false;
	if (w == NULL || (w->path = strdup(config->path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(w);
		return -1;
	}
	w->format = capture_pcap_format_of(config->path, config->format);
	w->stream = config->stream;
	w->stream_ctx = config->stream_ctx;
	w->mode = config->mode;
	w->max_bytes = config->max_bytes;
	w->log = config->log;
	w->log_ctx = config->log_ctx;
	w->dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144,
						      PCAP_TSTAMP_PRECISION_MICRO);
	if (w->dead == NULL) {
		snprintf(err, errlen, "libpcap cannot write Ethernet captures");
		pw_destroy(w);
		return -1;
	}
	if (w->stream != NULL)
		w->max_bytes = 0; /* a stream does not rotate */
	if ((w->max_bytes > 0 && w->mode == CAPTURE_OUTFILE_NEW && pcap_check_rotated(w, err, errlen) != 0) ||
	    pcap_open_file(w, false, err, errlen) != 0) {
		if (refused_r != NULL)
			*refused_r = errno == EEXIST;
		pw_destroy(w);
		return -1;
	}
	sink_r->ops = &pcap_writer_ops;
	sink_r->self = w;
	return 0;
}
