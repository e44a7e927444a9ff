/* What the files of the fault engine share: proxy/fault.c (queues,
 * pieces, releasing, timers, the API) and proxy/fault_view.c (the IMAP
 * view: which lines trigger which fault). Only these files include it. */
#ifndef PROXY_FAULT_INT_H
#define PROXY_FAULT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "imap/classify.h"
#include "imap/framer.h"
#include "imap/split.h"
#include "proxy/fault.h"

/* split:DIR:coalesce gathers what arrives within this window into one write */
#define COALESCE_WINDOW_US 20000
#define TAG_MAX 64
#define TEXT_MAX 200

/* What happens right after a piece is released. */
enum piece_after {
	AFTER_NONE,
	AFTER_ANSWER, /* write text (a tagged NO/BAD) to the client */
	AFTER_BYE,    /* write text (* BYE) to the client, then close */
	AFTER_REPLACE, /* write replace (the line as edited) to the client */
	AFTER_END_IDLE, /* end-idle-early: IDLE's OK to the client, DONE to the server */
};

/* A run of queued bytes, up to stream offset end, released together. */
struct piece {
	uint64_t end;
	imap_time_us not_before;
	enum imap_origin origin;
	bool drop;          /* observed, never passed on */
	bool unseen;        /* with drop: not observed either, the client never had it */
	bool mark_release;  /* a hold ends with this piece: say so first */
	enum piece_after after;
	const struct fault_state *fault; /* the fault behind after/mark_release */
	imap_time_us held_since;
	char text[TEXT_MAX];
	char *replace;      /* AFTER_REPLACE: the line the client gets instead, owned */
	size_t replace_len;
};

/* One fault in this session. */
struct fault_state {
	const struct proxy_fault *f;
	char spec[128];
	unsigned seen;       /* occurrences of its trigger so far */
	bool done;           /* a one-time fault that acted */
	bool off;            /* stopped: COMPRESS took the IMAP view away */
	struct event *timer; /* stop-reading: when to read again */
	imap_time_us since;
	struct proxy_faults *owner;
};

struct fault_dir {
	struct proxy_faults *owner;
	enum imap_dir dir;
	struct evbuffer *queue;
	uint64_t in_off;    /* stream offset after the last byte taken */
	uint64_t out_off;   /* stream offset of the queue's first byte */
	uint64_t covered;   /* bytes up to here have a piece */
	struct piece *pieces;
	size_t head, count, cap;
	struct imap_framer *framer; /* NULL: no IMAP view (not needed, or lost) */
	imap_time_us delay;
	imap_time_us hold_until;
	bool coalesce;
	imap_time_us window_end;
	struct imap_split split;
	bool split_on;
	bool view_lost;     /* COMPRESS: the framer stops after this unit */
	bool cancel_literal; /* a refused synchronising literal: no bytes follow */
	uint64_t cut_at;    /* bye in-literal: where to cut; 0 none */
	const struct fault_state *cut_fault;
	bool cut_done;      /* nothing after the cut is ever released */
	bool eof;           /* the sender closed */
	bool eof_said;
	struct event *timer;
	/* set for the framer's callbacks during a take */
	imap_time_us now;
	enum imap_origin origin;
};

struct proxy_faults {
	struct event_base *base;
	const struct proxy_fault_host *host;
	void *ctx;
	unsigned session;
	struct fault_state st[PROXY_FAULTS_MAX];
	size_t count;
	struct fault_dir d[2];
	bool imap_view;
	/* the IMAP state the faults need */
	char idle_tag[TAG_MAX];
	size_t idle_tag_len;
	bool idle_done;
	bool idle_plus;
	/* end-idle-early: the server's own completion of the IDLE it ended */
	char drop_tag[TAG_MAX];
	size_t drop_tag_len;
	const struct fault_state *drop_fault;
	char auth_tag[TAG_MAX];
	size_t auth_tag_len;
	char compress_tag[TAG_MAX];
	size_t compress_tag_len;
	/* a command being answered by the fault, over its literals */
	bool swallowing;
	const struct fault_state *swallow_fault;
	char swallow_answer[TEXT_MAX];
	bool closing;
	char close_why[TEXT_MAX];
	struct event *later; /* close and EOF, from a fresh loop turn */
	bool stopped[2];     /* reading stopped: [0] the server, [1] the client */
};

/* proxy/fault.c */
/* Tells the host a fault acted (a row, a record, a pcap mark). */
void fault_mark_act(struct proxy_faults *fs, const struct fault_state *st, imap_time_us ts,
		    const char *phase, enum imap_dir dir, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
const char *fault_secs(char *buf, size_t size, imap_time_us us);
struct piece *fault_new_piece(struct fault_dir *d, uint64_t end, imap_time_us not_before);
imap_time_us fault_due(struct fault_dir *d, imap_time_us now);
void fault_cover(struct fault_dir *d, uint64_t end);
void fault_stop_reading(struct fault_state *st, imap_time_us now);
/* bye-after-idle, end-idle-early:D: the server's "+" to IDLE came at now;
 * the fault's timer runs for its duration. */
void fault_idle_started(struct fault_state *st, imap_time_us now);
/* A client's DONE, or the proxy's: no IDLE timer of a fault runs on. */
void fault_idle_over(struct proxy_faults *fs);

/* proxy/fault_view.c */
/* The framer's callback: one unit of d's stream, as the faults see it. */
void fault_on_unit(void *ctx, const struct imap_unit *u);

#endif
