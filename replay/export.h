/* A recording turned back into a transcript script (docs/script.md):
 * `imaptap export`. Each session's streams are cut into IMAP lines and
 * literal data as the proxy cuts them (imap/framer.h), and each unit is
 * written as the script line that gives the same bytes at the same time,
 * so `imaptap compile` makes the same streams again: lines of printable
 * ASCII as `C:`/`S:` text, a literal's lines as `C~`/`S~`, anything else
 * as `C=`/`S=` with escapes (no peer byte reaches the file unescaped),
 * exact delays in microseconds, closes, resets and closed windows.
 *
 * What a script cannot hold is said in a comment where it was and counted:
 * bytes the capture lost (a gap), sessions that overlapped (a script's
 * sessions run one after the other). Masked spans stay masked: the
 * capture's bytes are written as they are, unless redact asks for user
 * names, addresses, subjects, bodies or mailbox names to be replaced
 * (replay/export_redact.c). */
#ifndef REPLAY_EXPORT_H
#define REPLAY_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "imap/types.h"

struct replay_export_options {
	unsigned session;   /* 0: every session */
	const char *source; /* the capture's name, for the header */
	/* only what is stamped in [since, until] (0 or less: open on that
	 * side, so options zeroed mean the whole capture): a
	 * session cut by since starts there, its lines before left out and a
	 * literal already under way given as raw bytes; one cut by until
	 * ends there; a session with nothing in the window is left out */
	imap_time_us since, until;
	/* enum imap_sens_kind bits (imap/sensitive.h): the values replaced by
	 * tokens of the same length, the same token for the same bytes across
	 * the file; 0: none */
	unsigned redact;
	/* the HMAC key tokens are drawn with, as text: the same key gives the
	 * same tokens; NULL: a random key for this run */
	const char *redact_key;
};

struct replay_export_result {
	unsigned sessions;       /* in the capture */
	unsigned written;        /* sessions written */
	uint64_t gap_bytes;      /* bytes the capture lost, not in the script */
	unsigned gap_sessions;   /* sessions with such gaps */
	unsigned overlapped;     /* sessions that began before the one before them ended */
	imap_time_us first_open; /* the first written session's start (-1: none) */
};

/* Reads the capture at path and writes the script to out. Returns 0, or
 * -1 with a one-line message in err (the capture cannot be read, the
 * session asked for is not in it, out of memory, out cannot be written). */
int replay_export(const char *path, const struct replay_export_options *options, FILE *out,
		  struct replay_export_result *result, char *err, size_t errlen);

#endif
