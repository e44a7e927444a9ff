/* Growing a buffer that may hold a credential: the bytes move to a new
 * block and the old one is zeroed before it is freed, never left behind
 * by realloc. Shared by the framer and the logical-line assembler. */
#ifndef IMAP_WIPEBUF_H
#define IMAP_WIPEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Makes *buf (of *cap bytes, used of them in use) hold at least need
 * bytes: the capacity doubles from first (when none yet) and stops at
 * limit (need <= limit). False, and nothing changed, when out of
 * memory. */
bool imap_wipebuf_grow(uint8_t **buf, size_t *cap, size_t used, size_t need, size_t first,
		       size_t limit);

#endif
