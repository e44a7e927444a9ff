/* The TLS key logs a pcapng carries in its own Decryption Secrets Blocks
 * (editcap --inject-secrets, Wireshark's "export with secrets"), which
 * libpcap does not hand out: a walk over the file's blocks, bounded and
 * safe on any bytes, that adds each block's key log text to a key log.
 * A classic pcap, or a file that is no pcapng, holds none. */
#ifndef CAPTURE_PCAPNG_SECRETS_H
#define CAPTURE_PCAPNG_SECRETS_H

#include <stddef.h>

#include "capture/keylog.h"
#include "capture/pcapng.h"

#define CAPTURE_PCAPNG_DSB 0x0000000Au
/* the secrets type of a Decryption Secrets Block: PCAPNG_SECRETS_TLS_KEYLOG */

/* Adds the TLS secrets of the file at path to k. Returns the number of
 * Decryption Secrets Blocks read, or -1 when out of memory. A damaged
 * block ends the walk quietly: the capture reader says what is wrong. */
int capture_pcapng_secrets(const char *path, struct capture_keylog *k);

/* The same over a file's bytes in memory (for the fuzz target). */
int capture_pcapng_secrets_mem(const unsigned char *data, size_t len, struct capture_keylog *k);

#endif
