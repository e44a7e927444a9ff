/* Paced writes of a re-split stream (imap/split.h), so that each piece
 * leaves as its own TCP segment. Linux joins small writes that wait in a
 * socket's send queue together (Nagle, autocorking, a full congestion
 * window); the pacer lets a piece go to the kernel only once the kernel
 * has sent all of the previous one. The caller owns the socket and does
 * the writes (plain or TLS, one record per piece); the pacer says how
 * much the next write may take, or that it must wait until the socket is
 * writable again. No waiting happens here.
 *
 * The cuts fall at the same offsets of the stream for one seed, whatever
 * the queue holds when a write is made; a write also ends where the queue
 * runs dry (the rest of that piece goes with the next bytes). */
#ifndef NET_SPLIT_PACER_H
#define NET_SPLIT_PACER_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/split.h"

struct split_pacer {
	struct imap_split *split; /* NULL: writes are not cut */
	size_t piece_left;        /* bytes of the drawn piece not written yet */
};

/* Cuts the writes on the TCP socket fd as split says from now on (NULL:
 * as large as they come). split must stay valid while set. For byte and
 * random, Nagle is turned off and fd reports writable only once the
 * kernel has sent everything written to it (TCP_NOTSENT_LOWAT); for
 * coalesce, Nagle is turned off. */
void split_pacer_set(struct split_pacer *pacer, int fd, struct imap_split *split);

/* True when writes are cut into pieces (byte, random). */
bool split_pacer_cuts(const struct split_pacer *pacer);

/* How many of the avail queued bytes the next write on fd may take: all
 * of them when writes are not cut; else what is left of the current
 * piece, at most avail; 0 while the kernel still holds unsent bytes of an
 * earlier write: ask again once fd is writable. */
size_t split_pacer_next(struct split_pacer *pacer, int fd, size_t avail);

/* n bytes were written, of at most what split_pacer_next() allowed. */
void split_pacer_wrote(struct split_pacer *pacer, size_t n);

#endif
