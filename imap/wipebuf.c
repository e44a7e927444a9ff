#include "imap/wipebuf.h"

#include <stdlib.h>
#include <string.h>

bool imap_wipebuf_grow(uint8_t **buf, size_t *cap, size_t used, size_t need, size_t first,
		       size_t limit)
{
	size_t n = *cap ? *cap : first;
	uint8_t *b;

	if (need <= *cap)
		return true;
	while (n < need)
		n *= 2;
	if (n > limit)
		n = limit;
	b = malloc(n);
	if (b == NULL)
		return false;
	if (*buf != NULL) {
		if (used > 0)
			memcpy(b, *buf, used);
		explicit_bzero(*buf, *cap);
		free(*buf);
	}
	*buf = b;
	*cap = n;
	return true;
}
