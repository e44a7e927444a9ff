#include "net/split_pacer.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

bool split_pacer_cuts(const struct split_pacer *p)
{
	return p->split != NULL &&
	       (p->split->mode == IMAP_SPLIT_BYTE || p->split->mode == IMAP_SPLIT_RANDOM);
}

void split_pacer_set(struct split_pacer *p, int fd, struct imap_split *split)
{
	int one = 1, lowat = 0;

	p->split = split != NULL && split->mode != IMAP_SPLIT_NONE ? split : NULL;
	p->piece_left = 0;
	if (p->split != NULL)
		/* a write leaves at once instead of waiting for the last one's ACK */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* writable only once the kernel has sent everything: the moment the
	 * next piece may go without joining the last one (0: the system's
	 * default again) */
	if (split_pacer_cuts(p))
		lowat = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}

/* Bytes written to fd that the kernel has not sent yet (0 when it cannot
 * say: not a TCP socket). */
static int kernel_unsent(int fd)
{
	int n = 0;

	if (ioctl(fd, SIOCOUTQNSD, &n) != 0)
		return 0;
	return n;
}

size_t split_pacer_next(struct split_pacer *p, int fd, size_t avail)
{
	if (!split_pacer_cuts(p))
		return avail;
	if (avail == 0 || kernel_unsent(fd) > 0)
		return 0;
	/* drawn against no limit, so the cuts sit at the same offsets
	 * whatever the queue holds at the moment */
	if (p->piece_left == 0)
		p->piece_left = imap_split_next(p->split, SIZE_MAX);
	return p->piece_left < avail ? p->piece_left : avail;
}

void split_pacer_wrote(struct split_pacer *p, size_t n)
{
	if (split_pacer_cuts(p))
		p->piece_left -= n < p->piece_left ? n : p->piece_left;
}
