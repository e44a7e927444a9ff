/* Zeroing a struct filled once per line or packet. For a struct over 64
 * bytes gcc inlines memset as rep stos, whose start-up alone costs more
 * than the rest of classifying a short line; called through a pointer it
 * cannot see into, the work goes to libc's vector memset instead. */
#ifndef IMAP_ZERO_H
#define IMAP_ZERO_H

#include <stddef.h>
#include <string.h>

static inline void imap_zero(void *p, size_t n)
{
	static void *(*volatile const set)(void *, int, size_t) = memset;

	set(p, 0, n);
}

#endif
