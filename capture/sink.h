/* Where observations go: the timeline, and any later output (pcap, event
 * log). The proxy and the offline analyser drive the same sinks. */
#ifndef CAPTURE_SINK_H
#define CAPTURE_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "capture/endpoint.h"
#include "imap/conversation.h"

#define CAPTURE_ADDR_MAX CAPTURE_ENDPOINT_STR_MAX /* "[v6 address]:port" */

/* Endpoints as numbers; version 0: not known. */
struct capture_session_info {
	unsigned id;
	imap_time_us ts;
	struct capture_endpoint client;   /* the client's address and port */
	struct capture_endpoint upstream; /* the server's address and port */
	struct capture_endpoint local;    /* where the client connected (the proxy) */
	const char *upstream_tls;         /* "plain" */
	const char *route;                /* the route chosen (--route NAME, "default" for
					     --upstream); NULL: the run has one upstream */
};

/* A TLS handshake that completed on one leg. */
struct capture_tls_info {
	const char *leg;     /* "client" or "upstream" */
	const char *version; /* "TLSv1.3" */
	const char *cipher;  /* "TLS_AES_256_GCM_SHA384" */
	const char *sni;     /* client: the name it asked for; upstream: the name sent; "" none */
	const char *name;    /* upstream: the name the certificate is checked for (--sni, else
				the --upstream host; also what goes out as SNI unless an
				address) */
	bool verified;       /* upstream: the certificate was verified */
	const char *peer;    /* upstream: "subject ..., issuer ..."; client: "" */
};

/* Who ended a session. */
enum capture_side {
	CAPTURE_SIDE_CLIENT,
	CAPTURE_SIDE_SERVER,
	CAPTURE_SIDE_PROXY,   /* imaptap itself (a timeout, an error, its shutdown) */
	CAPTURE_SIDE_CAPTURE, /* offline: the capture ends before the session does */
};

/* How it ended: what the pcap writer draws (FINs or a reset) and what a
 * reader of the pcap reports, as facts, not words. */
enum capture_end {
	CAPTURE_END_EOF,         /* the side closed its stream */
	CAPTURE_END_HALF_CLOSED, /* one side closed, the other did not follow within --linger */
	CAPTURE_END_SHUTDOWN,    /* the proxy stopped (SIGINT, SIGTERM) with the session open */
	CAPTURE_END_RESET,       /* the side reset the connection */
	CAPTURE_END_ERROR,       /* a failure the reason names: TLS, a connection, a timeout */
	CAPTURE_END_OPEN,        /* offline: still open at the end of the capture */
	CAPTURE_END_UNSEEN,      /* offline: its end is not in the capture */
};

struct capture_close_info {
	unsigned id;
	imap_time_us ts;
	imap_time_us opened;
	enum capture_side by;
	enum capture_end end;
	const char *reason; /* for a person: "EOF", "reset", an error text */
	uint64_t bytes[2];  /* relayed, indexed by enum imap_dir */
};

/* The whole capture in numbers (analyze, at its end). */
struct capture_whole {
	unsigned sessions;
	unsigned ended[CAPTURE_SIDE_CAPTURE + 1][CAPTURE_END_UNSEEN + 1]; /* by who, how */
	const struct imap_summary *summary; /* commands across sessions, anomalies by rule */
};

/* "client", "server", "proxy", "capture" */
const char *capture_side_str(enum capture_side side);
/* "eof", "half-closed", "shutdown", "reset", "error", "open", "unseen" */
const char *capture_end_str(enum capture_end end);
/* Ends drawn in a pcap with FINs, not a reset. */
bool capture_end_is_clean(enum capture_end end);

/* A fault asked for with --fault acted: it began holding, released,
 * wrote bytes of its own, closed, or stopped. */
struct capture_fault_mark {
	imap_time_us ts;
	const char *action; /* "hold-idle-completion", "delay", "split", ... */
	const char *phase;  /* "active", "start", "release", "inject", "close", "off" */
	enum imap_dir dir;  /* the direction it acts on */
	const char *spec;   /* the fault as given, canonical ("delay:s2c:2s") */
	const char *detail; /* what it did, in words */
};

/* What an output wrote so far, for monitoring (`proxy --metrics`). */
struct capture_output_stats {
	const char *output;      /* "pcap", "raw-pcap", "events", "pcap-listen" */
	uint64_t bytes;          /* committed to its file or stream (a write-behind
				    file: handed to its thread) */
	uint64_t write_errors;   /* writes that failed, each stopping it until SIGHUP */
	uint64_t dropped;        /* records (packets, event lines) left out while stopped */
	uint64_t readers_dropped; /* pcap-listen: readers dropped for falling behind */
};

/* Every op may be NULL: a sink implements what it uses. */
struct capture_run_settings; /* capture/settings.h */

struct capture_sink_ops {
	/* what the run judges by (before any session; analyze: as read from
	 * the capture) */
	void (*settings)(void *self, imap_time_us ts, const struct capture_run_settings *settings);
	void (*open)(void *self, const struct capture_session_info *info);
	/* the stream as the client saw it (after inflating, before masking),
	 * handed over before the observation of the unit it completes;
	 * secret_from as imap_conv_bytes_cb's */
	void (*bytes)(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		      const uint8_t *data, size_t len, uint64_t secret_from);
	void (*observe)(void *self, unsigned session, const struct imap_observation *obs);
	void (*tls)(void *self, unsigned session, imap_time_us ts, const struct capture_tls_info *info);
	/* a session event in words ("upstream refused the connection") */
	void (*notice)(void *self, unsigned session, imap_time_us ts, const char *text);
	/* a rule fired */
	void (*anomaly)(void *self, unsigned session, const struct imap_anomaly *anomaly);
	/* the receiver of dir stopped taking bytes (blocked, pending queued
	 * toward it) or takes them again */
	void (*flow)(void *self, unsigned session, imap_time_us ts, enum imap_dir dir, bool blocked,
		     uint64_t pending);
	/* an injected fault acted (never called without --fault) */
	void (*fault)(void *self, unsigned session, const struct capture_fault_mark *mark);
	/* the session in numbers, right before it closes */
	void (*summary)(void *self, unsigned session, imap_time_us ts,
			const struct imap_summary *summary);
	void (*close)(void *self, const struct capture_close_info *info);
	/* analyze: the whole capture, once it is read */
	void (*whole)(void *self, imap_time_us ts, const struct capture_whole *whole);
	void (*flush)(void *self);
	/* SIGHUP: a file moved away (log rotation) is started anew at its
	 * path, and an output stopped by an error is tried again */
	void (*reopen)(void *self);
	/* an output: what it wrote so far (*stats is zeroed by the caller) */
	void (*stats)(void *self, struct capture_output_stats *stats);
	void (*destroy)(void *self);
};

struct capture_sink {
	const struct capture_sink_ops *ops;
	void *self;
};

#define CAPTURE_SINKS_MAX 7 /* timeline, pcap, pcap listener, raw pcap, event log, metrics */

/* Bytes of an observed line without its CRLF (a cut line keeps all it has). */
size_t capture_line_content(const struct imap_observation *obs);

/* Fan-out to every sink in order. */
struct capture_sinks {
	struct capture_sink sink[CAPTURE_SINKS_MAX];
	unsigned count;
};

/* Returns 0, or -1 when the list is full. */
int capture_sinks_add(struct capture_sinks *sinks, struct capture_sink sink);
void capture_sinks_settings(const struct capture_sinks *sinks, imap_time_us ts,
			    const struct capture_run_settings *settings);
void capture_sinks_open(const struct capture_sinks *sinks, const struct capture_session_info *info);
void capture_sinks_bytes(const struct capture_sinks *sinks, unsigned session, enum imap_dir dir,
			 imap_time_us ts, const uint8_t *data, size_t len, uint64_t secret_from);
void capture_sinks_tls(const struct capture_sinks *sinks, unsigned session, imap_time_us ts,
		       const struct capture_tls_info *info);
void capture_sinks_observe(const struct capture_sinks *sinks, unsigned session,
			   const struct imap_observation *obs);
void capture_sinks_notice(const struct capture_sinks *sinks, unsigned session, imap_time_us ts,
			  const char *text);
void capture_sinks_anomaly(const struct capture_sinks *sinks, unsigned session,
			   const struct imap_anomaly *anomaly);
void capture_sinks_flow(const struct capture_sinks *sinks, unsigned session, imap_time_us ts,
			enum imap_dir dir, bool blocked, uint64_t pending);
void capture_sinks_fault(const struct capture_sinks *sinks, unsigned session,
			 const struct capture_fault_mark *mark);
void capture_sinks_summary(const struct capture_sinks *sinks, unsigned session, imap_time_us ts,
			   const struct imap_summary *summary);
void capture_sinks_close(const struct capture_sinks *sinks, const struct capture_close_info *info);
void capture_sinks_whole(const struct capture_sinks *sinks, imap_time_us ts,
			 const struct capture_whole *whole);
void capture_sinks_flush(const struct capture_sinks *sinks);
void capture_sinks_reopen(const struct capture_sinks *sinks);
void capture_sinks_destroy(struct capture_sinks *sinks);

#endif
