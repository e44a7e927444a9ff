/* One recorded session, read from a capture as the framer sees it: every
 * line and literal chunk of both directions, in order, with its time. The
 * replay harness plays one side of it and expects the other. */
#ifndef REPLAY_RECORDING_H
#define REPLAY_RECORDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/classify.h"
#include "imap/framer.h"
#include "imap/types.h"

#define REPLAY_TAG_MAX 64

struct replay_unit {
	enum imap_dir dir;
	imap_time_us at;            /* since the session opened */
	enum imap_unit_kind kind;
	uint8_t *data;              /* the bytes as recorded */
	size_t len;
	uint8_t *masked;            /* client units: credentials masked (what a live
				       client's masked bytes are compared with) */
	size_t masked_len;
	char tag[REPLAY_TAG_MAX];   /* command or tagged response: its tag; else "" */
	bool continuation;          /* a server "+" */
	bool untagged;              /* a server "*" line */
	bool auth_response;         /* a client line inside AUTHENTICATE */
	char name[32];              /* command, untagged keyword, or status of a tagged line */
	enum imap_keyword keyword;  /* command or untagged keyword as an id */
	unsigned line_no;           /* 1-based position among the lines of its direction */
};

struct replay_recording {
	struct replay_unit *units;
	size_t count;
	unsigned session;
	unsigned sessions_in_file;
	imap_time_us opened;        /* when the session opened, on the capture's clock */
	char client[64];
	char server[64];
	bool closed_by_server;      /* the server closed the connection at the end */
};

/* The sessions of one recording that are played together. */
struct replay_recordings {
	struct replay_recording *recs; /* in the order they opened */
	size_t count;
	unsigned sessions_in_file;
	unsigned passed_over;          /* sessions left out: the client sent no IMAP line
					  (a port probe, a health check) */
};

/* Loads the sessions of path listed in sessions (n of them), or when n
 * is 0 every session in which the client sent an IMAP line; either way
 * in the order they opened. Returns 0, or -1 with a message in err and
 * *code_r: 2 for a listed session that is not there, 3 for a file that
 * cannot be read or nothing to replay. */
int replay_recordings_load(const char *path, const unsigned *sessions, size_t n,
			   struct replay_recordings *out, int *code_r, char *err, size_t errlen);
void replay_recordings_free(struct replay_recordings *r);
void replay_recording_free(struct replay_recording *rec);

#endif
