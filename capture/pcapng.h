/* pcapng blocks, as the pcapng specification (IETF draft-ietf-opsawg-pcapng)
 * lays them out. libpcap reads pcapng but cannot write it, so imaptap
 * writes these few blocks itself: a Section Header Block, one Interface
 * Description Block (Ethernet, microsecond stamps), Enhanced Packet
 * Blocks with a direction and comments, and Decryption Secrets Blocks
 * (the TLS key log of a raw capture). Host byte order, which the
 * section's byte-order magic tells a reader. */
#ifndef CAPTURE_PCAPNG_H
#define CAPTURE_PCAPNG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "imap/types.h"

/* Comments one packet carries, at most, and the length of each. */
#define PCAPNG_COMMENTS_MAX 8
#define PCAPNG_COMMENT_MAX 1024

enum pcapng_direction {
	PCAPNG_DIR_UNKNOWN = 0,
	PCAPNG_DIR_INBOUND = 1,  /* toward the capturing host: the client's bytes */
	PCAPNG_DIR_OUTBOUND = 2, /* from it: the server's, as the proxy relayed them */
};

struct pcapng_comment {
	const char *text; /* UTF-8 (imaptap writes printable ASCII) */
	size_t len;
};

/* The section's start: the Section Header Block naming app (shb_userappl)
 * with comment (shb_comment; may be empty), then the interface (if_name
 * name, if_description description). Returns the bytes written. */
size_t pcapng_write_head(FILE *fp, const char *app, const char *comment, size_t comment_len,
			 const char *name, const char *description);

/* An Enhanced Packet Block on interface 0: head then payload make the
 * packet. Returns the bytes written. */
size_t pcapng_write_packet(FILE *fp, imap_time_us ts, const uint8_t *head, size_t head_len,
			   const uint8_t *payload, size_t len, enum pcapng_direction dir,
			   const struct pcapng_comment *comments, size_t ncomments);

/* Secrets type of a Decryption Secrets Block holding an NSS key log. */
#define PCAPNG_SECRETS_TLS_KEYLOG 0x544c534bu /* "TLSK" */

/* A Decryption Secrets Block: the packets after it that the secrets
 * decrypt are decrypted by Wireshark with no settings. Returns the bytes
 * written. */
size_t pcapng_write_secrets(FILE *fp, uint32_t type, const void *secrets, size_t len);

#endif
