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
	char client[64];
	char server[64];
	bool closed_by_server;      /* the server closed the connection at the end */
};

/* The first session of path in which the client sent an IMAP line (a port
 * probe or a health check that connected and left is passed over), into
 * *session_r, and how many sessions the file holds. Returns 0, or -1 with
 * a message in err (*code_r as replay_recording_load's) when the file
 * cannot be read or no session has a client line. */
int replay_recording_first_spoken(const char *path, unsigned *session_r, unsigned *sessions_r,
				  int *code_r, char *err, size_t errlen);

/* Loads session (1-based) of path. Returns 0, or -1 with a message in err
 * (and *code_r: 2 for a session that is not there, 3 for a file that
 * cannot be read). */
int replay_recording_load(const char *path, unsigned session, struct replay_recording *rec,
			  int *code_r, char *err, size_t errlen);
void replay_recording_free(struct replay_recording *rec);

#endif
