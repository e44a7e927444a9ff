/* Small types shared by every imap/ module. */
#ifndef IMAP_TYPES_H
#define IMAP_TYPES_H

#include <stdint.h>

/* Direction of a byte stream. */
enum imap_dir {
	IMAP_C2S, /* client to server */
	IMAP_S2C, /* server to client */
};

/* Microseconds since the Unix epoch. imap/ never reads a clock: callers pass
 * the time in, from a live clock or from packet timestamps. */
typedef int64_t imap_time_us;

#define IMAP_US_PER_S ((imap_time_us)1000000) /* microseconds in a second */

static inline const char *imap_dir_str(enum imap_dir dir)
{
	return dir == IMAP_C2S ? "c2s" : dir == IMAP_S2C ? "s2c" : "dir?";
}

#endif
