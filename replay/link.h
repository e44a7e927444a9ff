/* One live connection of the replay harness: a socket, TLS when asked,
 * an output queue, and a poll round that writes what is queued and hands
 * what arrives to a callback. Both replay sides use it. The queue can be
 * cut into writes of other sizes (imap/split.h), so that a peer sees the
 * same bytes in other TCP segments and TLS records. */
#ifndef REPLAY_LINK_H
#define REPLAY_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "imap/split.h"
#include "imap/types.h"
#include "net/split_pacer.h"

typedef void replay_received_cb(void *ctx, const uint8_t *data, size_t len);

struct replay_link {
	int fd;
	SSL *ssl;                /* once TLS is on */
	uint8_t *out;            /* not yet written */
	size_t out_len, out_cap;
	bool eof;                /* the peer closed, or the connection broke */
	bool nomem;
	struct imap_split split;  /* how the queue is cut into writes */
	struct split_pacer pacer; /* when each piece of split may go */
	size_t writes;           /* successful writes so far */
	replay_received_cb *received;
	void *ctx;
};

/* Monotonic microseconds. */
imap_time_us replay_now(void);

/* fd is made non-blocking; the link does not own it. */
void replay_link_init(struct replay_link *link, int fd, replay_received_cb *received, void *ctx);
void replay_link_free(struct replay_link *link);
/* From now on, cut the queue as split says (net/split_pacer.h): byte and
 * random write one piece per poll round, each once the kernel has sent
 * all of the previous one, so each piece leaves as its own TCP segment
 * (and, over TLS, its own record). coalesce (Nagle off) and none write
 * all that is queued at once. */
void replay_link_set_split(struct replay_link *link, const struct imap_split *split);
void replay_link_queue(struct replay_link *link, const uint8_t *data, size_t len);
/* Writes, reads, waits at most wait_us (capped at one second). */
void replay_link_pump(struct replay_link *link, imap_time_us wait_us);

/* How long a loop that waits for something of its own (a line, the
 * peer's close) lets one pump wait before it looks again. */
#define REPLAY_LINK_POLL_US (IMAP_US_PER_S / 10)
#define REPLAY_LINK_SHORT_POLL_US (IMAP_US_PER_S / 20)
/* Flushes the queue, then runs the TLS handshake (as the server, or the
 * client with sni) within limit_us. Returns false when it fails. */
bool replay_link_start_tls(struct replay_link *link, SSL_CTX *ctx, bool server, const char *sni,
			   imap_time_us limit_us);

#endif
