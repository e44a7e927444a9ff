/* What the kernel knows about a TCP peer. Kept apart: it needs the
 * kernel's own <linux/tcp.h>, which clashes with <netinet/tcp.h>. */
#ifndef PROXY_PEER_H
#define PROXY_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes the peer acknowledged so far, and bytes in the send queue. */
bool proxy_peer_progress(int fd, uint64_t *acked_r, size_t *unsent_r);

#endif
