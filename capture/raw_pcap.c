/* The raw capture: the pcap writer's packets and files (capture/pcap_
 * packets.c, capture/pcap_files.c) fed by the proxy's wire tap instead of
 * the observed conversation. One synthetic TCP stream per leg, keyed by
 * session and leg; the key log lines wait in the writer until the next
 * packet, which a Decryption Secrets Block precedes. */
#include "capture/raw_pcap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/pcap_writer_int.h"
#include "capture/settings.h"

static unsigned leg_key(unsigned session, enum capture_wire_leg leg)
{
	return session * 2u + (leg == CAPTURE_WIRE_UPSTREAM ? 1u : 0u);
}

static struct pcap_session **raw_slot(struct pcap_writer *w, unsigned key)
{
	struct pcap_session **p = &w->bucket[key % BUCKETS];

	while (*p != NULL && (*p)->id != key)
		p = &(*p)->next;
	return p;
}

static const char *leg_word(enum capture_wire_leg leg)
{
	switch (leg) {
	case CAPTURE_WIRE_CLIENT:
		return "client";
	case CAPTURE_WIRE_UPSTREAM:
		return "upstream";
	}
	return "?";
}

static void raw_open(void *ctx, unsigned session, enum capture_wire_leg leg,
		     const struct capture_endpoint *connector, const struct capture_endpoint *acceptor,
		     bool implicit_tls, imap_time_us ts)
{
	struct pcap_writer *w = ctx;
	unsigned key = leg_key(session, leg);
	struct pcap_session **p = raw_slot(w, key);
	struct pcap_session *s;
	char from[CAPTURE_ENDPOINT_STR_MAX], to[CAPTURE_ENDPOINT_STR_MAX];

	if (*p != NULL || connector->version == 0 || connector->version != acceptor->version)
		return;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return;
	s->id = key;
	s->family = connector->version == 6 ? AF_INET6 : AF_INET;
	s->end[IMAP_C2S] = *connector;
	s->end[IMAP_S2C] = *acceptor;
	/* Wireshark finds TLS, and IMAP inside it, by the server's port */
	s->end[IMAP_S2C].port = implicit_tls ? CAPTURE_RAW_TLS_PORT : CAPTURE_PCAP_SERVER_PORT;
	s->c2s_outbound = leg == CAPTURE_WIRE_UPSTREAM;
	s->next_seq[IMAP_C2S] = 0x10000000u + key * 0x10000u + 1;
	s->next_seq[IMAP_S2C] = 0x80000000u + key * 0x10000u + 1;
	*p = s;
	capture_endpoint_format(connector, from, sizeof(from));
	capture_endpoint_format(acceptor, to, sizeof(to));
	pcap_comment(w, "imaptap session %u %s leg: %s to %s (server port written as %u)", session,
		     leg_word(leg), from, to, s->end[IMAP_S2C].port);
	w->attach = true;
	pcap_handshake(w, s, ts);
	w->comments = 0;
	w->attach = false;
}

static void raw_bytes(void *ctx, unsigned session, enum capture_wire_leg leg, bool sent,
		      imap_time_us ts, const uint8_t *data, size_t len)
{
	struct pcap_writer *w = ctx;
	struct pcap_session *s = *raw_slot(w, leg_key(session, leg));
	enum imap_dir dir;

	if (s == NULL)
		return;
	/* the proxy accepted the client leg and connected the upstream one */
	dir = (leg == CAPTURE_WIRE_UPSTREAM) == sent ? IMAP_C2S : IMAP_S2C;
	while (len > 0) {
		size_t n = len < CAPTURE_PCAP_SEGMENT_MAX ? len : CAPTURE_PCAP_SEGMENT_MAX;

		pcap_write_segment(w, s, dir, ts, TH_PSH | TH_ACK, data, n);
		data += n;
		len -= n;
	}
	if (s->unacked[dir] >= ACK_EVERY)
		pcap_write_segment(w, s, !dir, ts, TH_ACK, NULL, 0);
}

static void raw_close(void *ctx, unsigned session, enum capture_wire_leg leg, bool by_peer,
		      imap_time_us ts)
{
	struct pcap_writer *w = ctx;
	struct pcap_session **p = raw_slot(w, leg_key(session, leg));
	struct pcap_session *s = *p;
	enum imap_dir closer;

	if (s == NULL)
		return;
	closer = (leg == CAPTURE_WIRE_UPSTREAM) != by_peer ? IMAP_C2S : IMAP_S2C;
	pcap_write_segment(w, s, closer, ts, TH_FIN | TH_ACK, NULL, 0);
	pcap_write_segment(w, s, !closer, ts, TH_FIN | TH_ACK, NULL, 0);
	pcap_write_segment(w, s, closer, ts, TH_ACK, NULL, 0);
	*p = s->next;
	free(s);
}

static void raw_secret(void *ctx, const char *line)
{
	struct pcap_writer *w = ctx;
	size_t n = strlen(line);

	/* stopped by a write error: no packet will carry them until SIGHUP,
	 * and the sessions they belong to are not in the file */
	if (w->file.fp == NULL)
		return;
	if (w->secrets_len + n + 1 > w->secrets_cap) {
		size_t cap = w->secrets_cap ? w->secrets_cap : 1024;
		char *p;

		while (cap < w->secrets_len + n + 1)
			cap *= 2;
		/* not realloc: the old block is wiped before it is freed */
		p = malloc(cap);
		if (p == NULL) {
			if (w->log != NULL)
				w->log(w->log_ctx, "out of memory for a TLS secret: the raw pcap "
					   "cannot decrypt that session");
			return;
		}
		if (w->secrets != NULL) {
			memcpy(p, w->secrets, w->secrets_len);
			explicit_bzero(w->secrets, w->secrets_cap);
			free(w->secrets);
		}
		w->secrets = p;
		w->secrets_cap = cap;
	}
	memcpy(w->secrets + w->secrets_len, line, n);
	w->secrets[w->secrets_len + n] = '\n';
	w->secrets_len += n + 1;
}

/* The settings name the run in the section's comment; no mark packet:
 * the raw file holds only what crossed the sockets. */
static void raw_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	struct pcap_writer *w = self;
	char text[CAPTURE_SETTINGS_TEXT_MAX];
	size_t n = capture_settings_mark_format(text, sizeof(text), ts, s);
	char *copy = n > 0 ? malloc(n) : NULL;

	if (copy == NULL)
		return;
	memcpy(copy, text, n);
	free(w->settings);
	w->settings = copy;
	w->settings_len = n;
}

static void raw_destroy(void *self)
{
	struct pcap_writer *w = self;

	pcap_sessions_free(w);
	pcap_close_file(w);
	if (w->secrets != NULL)
		explicit_bzero(w->secrets, w->secrets_cap);
	free(w->secrets);
	free(w->settings);
	free(w->path);
	free(w);
}

static const struct capture_sink_ops raw_ops = {
	.settings = raw_settings,
	.flush = pcap_files_flush,
	.reopen = pcap_files_reopen,
	.stats = pcap_files_stats,
	.destroy = raw_destroy,
};

int capture_raw_pcap_new(const struct capture_raw_config *config, struct capture_sink *sink_r,
			 struct capture_wiretap *tap_r, bool *refused_r, char *err, size_t errlen)
{
	struct pcap_writer *w = calloc(1, sizeof(*w));

	if (refused_r != NULL)
		*refused_r = false;
	if (w == NULL || (w->path = strdup(config->path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(w);
		return -1;
	}
	w->raw = true;
	w->format = CAPTURE_PCAP_NG;
	w->mode = config->mode;
	w->log = config->log;
	w->log_ctx = config->log_ctx;
	if (pcap_open_file(w, false, err, errlen) != 0) {
		if (refused_r != NULL)
			*refused_r = errno == EEXIST;
		raw_destroy(w);
		return -1;
	}
	sink_r->ops = &raw_ops;
	sink_r->self = w;
	*tap_r = (struct capture_wiretap){
		.open = raw_open,
		.bytes = raw_bytes,
		.close = raw_close,
		.secret = raw_secret,
		.ctx = w,
	};
	return 0;
}
