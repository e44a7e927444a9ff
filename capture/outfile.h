/* Output files that stay readable when the disk fills and cannot be
 * turned against their owner: opened without following a symbolic link,
 * created mode 0600 and set to 0600 when they exist (they hold mail),
 * never emptied unless asked; written through stdio, and when a write
 * fails cut back to the end of the last batch that reached the file
 * whole, so a reader never meets half a record. */
#ifndef CAPTURE_OUTFILE_H
#define CAPTURE_OUTFILE_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct capture_writebehind;

struct capture_outfile {
	FILE *fp;
	int fd;
	off_t good; /* bytes known to be in the file whole */
	struct capture_writebehind *behind; /* NULL: written by stdio on the caller's thread */
};

/* What to do with a file already at the path. */
enum capture_outfile_mode {
	CAPTURE_OUTFILE_NEW,       /* a regular file that holds anything is refused (EEXIST) */
	CAPTURE_OUTFILE_OVERWRITE, /* emptied */
	CAPTURE_OUTFILE_APPEND,    /* written on at its end */
};

/* buffer_size for a file written by a thread of its own (capture/writebehind.h):
 * the caller never waits for the disk, a commit only hands the batch over. */
#define CAPTURE_OUTFILE_BEHIND ((size_t)-1)

/* Opens path for writing as mode says, with a stdio buffer of
 * buffer_size bytes (0: stdio's), or written behind with
 * CAPTURE_OUTFILE_BEHIND. A FIFO or a device (a pipe to Wireshark) is
 * written as it is. Returns 0, or -1 with errno set: ELOOP for a symbolic
 * link, EEXIST for a file refused by CAPTURE_OUTFILE_NEW. */
int capture_outfile_open(struct capture_outfile *out, const char *path,
			 enum capture_outfile_mode mode, size_t buffer_size);

/* Where a stream's bytes go (fopencookie's write): returns len, or -1. */
typedef ssize_t capture_stream_fn(void *ctx, const char *buf, size_t len);

/* An output that is no file: what is written goes to fn once a commit (or
 * a full buffer) flushes it, on the caller's thread. Returns 0, or -1
 * with errno set. */
int capture_outfile_open_stream(struct capture_outfile *out, capture_stream_fn *fn, void *ctx);

/* The open descriptor's own file: the same open(2) flags and checks, for
 * outputs written without stdio (the key log). Returns the descriptor or
 * -1 with errno set as capture_outfile_open. */
int capture_outfile_open_fd(const char *path, enum capture_outfile_mode mode);

/* Why opening path (what: "the pcap") failed with errnum, in words that
 * say what to do; for EEXIST the file's size, the caller adds the flag
 * that allows it. */
void capture_outfile_error(char *err, size_t errlen, const char *what, const char *path,
			   int errnum);

/* Ends a batch: flushes (written behind: hands the batch over, and fails
 * when an earlier write of the thread did). On failure the unwritten rest
 * is dropped, the file is cut back to the last good end, errno is kept,
 * and -1 returned. */
int capture_outfile_commit(struct capture_outfile *out);

/* Commits, then waits until the file holds every committed byte (write-
 * behind files; the same as commit otherwise). Returns 0 or -1 as commit. */
int capture_outfile_sync(struct capture_outfile *out);

/* Drops what is buffered and cuts the file back to the last good end: for
 * a write error found elsewhere (fwrite). Keeps errno. */
void capture_outfile_rollback(struct capture_outfile *out);

/* True when path no longer names the open file (moved away by log
 * rotation, or removed). */
bool capture_outfile_moved(const struct capture_outfile *out, const char *path);

/* Closes; buffered bytes are committed first, or rolled back if that
 * fails. Returns 0, or -1 when they could not be written. */
int capture_outfile_close(struct capture_outfile *out);

#endif
