#include "capture/escape.h"

bool capture_escape_keeps(uint8_t c, unsigned flags)
{
	if (c == '\n')
		return (flags & CAPTURE_ESCAPE_KEEP_NEWLINE) != 0;
	return c >= 0x20 && c < 0x7f;
}

size_t capture_escape(char *out, size_t out_size, const void *data, size_t len, unsigned flags,
		      size_t *used_r)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = data;
	size_t o = 0, i = 0;

	if (out_size == 0) {
		if (used_r != NULL)
			*used_r = 0;
		return 0;
	}
	for (; i < len; i++) {
		uint8_t c = p[i];

		if (capture_escape_keeps(c, flags)) {
			if (o + 1 >= out_size)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= out_size)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	if (used_r != NULL)
		*used_r = i;
	return o;
}

size_t capture_escaped_len(const void *data, size_t len, unsigned flags)
{
	const uint8_t *p = data;
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += capture_escape_keeps(p[i], flags) ? 1 : 4;
	return n;
}
