/* replay serve: the server side of a recorded session played to a live
 * client on a connected socket. Each recorded client line must arrive
 * (the live client's tags stand for the recorded ones, masked spans match
 * any, --ignore patterns are wildcards); the server units that followed it
 * go out at their recorded delays after it, scaled, in writes cut as
 * --segment says: one byte or random sizes each (replay/link.h), or, for
 * coalesce, every server unit up to the next client unit in one write,
 * when the first of them is due. */
#ifndef REPLAY_SERVE_H
#define REPLAY_SERVE_H

#include <openssl/ssl.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "imap/split.h"
#include "replay/ensemble.h"
#include "replay/recording.h"

struct replay_options {
	double speed;                 /* 1 for the recorded pace; 0: no delays */
	imap_time_us timeout;         /* the whole replay */
	imap_time_us quiet;           /* a client silent this long while a line is due */
	const regex_t *ignore;        /* volatile spans, matched on both sides */
	size_t ignore_count;
	FILE *log;                    /* where the progress rows go, or NULL */
	SSL_CTX *tls;                 /* for a TLS client leg, else NULL */
	bool implicit_tls;            /* TLS from the first byte; else after a STARTTLS */
	struct imap_split segment;    /* how server bytes are cut into writes; each
					 connection starts from its seed afresh */
};

#define REPLAY_REPORT_MAX 4096

struct replay_result {
	int code;                     /* 0 the client did what the recording did, 1 it
					 diverged (or timed out), 3 an I/O error */
	size_t client_lines;          /* client lines matched */
	unsigned session;             /* the recorded session played; 0 none */
	char report[REPLAY_REPORT_MAX];
};

/* Appends to result->report, cut at its size. */
void replay_report(struct replay_result *result, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Plays session (an index into ens) to the client on fd (connected, any
 * mode; made non-blocking), or with session -1 the first session not yet
 * claimed that the client's first lines agree with (--match
 * first-lines). Runs beside the other sessions of ens, each in its own
 * thread. Does not close fd. */
void replay_serve_fd(struct replay_ensemble *ens, long session, int fd,
		     const struct replay_options *options, struct replay_result *result);

#endif
