/* The terminal-safety oracle of the unit tests and fuzz targets, the same
 * predicate as tests/lib/terminal.py: output holds printable ASCII and
 * '\n', and ESC only as one of the SGR codes imaptap's timeline writes. */
#ifndef TESTS_TERMINAL_SAFE_H
#define TESTS_TERMINAL_SAFE_H

#include <stddef.h>
#include <string.h>

/* ESC "[" ... "m": reset, bold, dim, red, green, yellow, magenta, cyan, reverse */
static const char *const terminal_sgr[] = {"\033[0m",  "\033[1m",  "\033[2m",  "\033[31m",
					   "\033[32m", "\033[33m", "\033[35m", "\033[36m",
					   "\033[7m"};

/* The offset of the first byte that must not reach a terminal, or -1. */
static inline long terminal_unsafe_at(const char *text, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)text[i];
		size_t k;

		if (c == '\n' || (c >= 0x20 && c < 0x7f)) {
			i++;
			continue;
		}
		if (c != 0x1b)
			return (long)i;
		for (k = 0; k < sizeof(terminal_sgr) / sizeof(terminal_sgr[0]); k++) {
			size_t n = strlen(terminal_sgr[k]);

			if (len - i >= n && memcmp(text + i, terminal_sgr[k], n) == 0)
				break;
		}
		if (k == sizeof(terminal_sgr) / sizeof(terminal_sgr[0]))
			return (long)i;
		i += strlen(terminal_sgr[k]);
	}
	return -1;
}

#endif
