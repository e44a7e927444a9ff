/* A file written by a thread of its own, so that the relay never waits for
 * the disk: writes to its stream are copied into a bounded queue of blocks
 * and a writer thread puts them into the file in order. A full queue makes
 * the writer of the stream wait (memory stays bounded, nothing is lost).
 *
 * Batches: a commit marks the end of a batch. The writer thread knows the
 * end of the last batch that reached the file whole ("good"); when a write
 * fails it cuts the file back there, drops the rest of the queue, and every
 * later write and commit fails with that error. */
#ifndef CAPTURE_WRITEBEHIND_H
#define CAPTURE_WRITEBEHIND_H

#include <stdio.h>
#include <sys/types.h>

struct capture_writebehind;

/* Takes over fd (open for writing, positioned at its end, which is taken
 * as good) and starts the writer thread. Returns the stream to write to,
 * unbuffered by stdio (the queue is the buffer), and the queue in *wb_r;
 * NULL with errno set (fd is then closed). fclose() of the stream commits,
 * waits for the queue to reach the file, stops the thread and closes fd;
 * it returns EOF when any of that failed. */
FILE *capture_writebehind_open(int fd, struct capture_writebehind **wb_r);

/* Ends a batch: what was written so far is handed to the writer thread.
 * Does not wait. Returns 0, or -1 with errno when a write of the writer
 * thread failed (the file is cut back to good). */
int capture_writebehind_commit(struct capture_writebehind *wb);

/* Waits until every committed byte reached the file (or failed). Returns 0
 * or -1 with errno as commit does. */
int capture_writebehind_drain(struct capture_writebehind *wb);

/* Drops what is queued and not yet written, then cuts the file back to
 * good. A later commit succeeds again. */
void capture_writebehind_discard(struct capture_writebehind *wb);

/* End of the last batch known to be in the file whole. */
off_t capture_writebehind_good(struct capture_writebehind *wb);

#endif
