/* SSE2 where the compiler has it (every x86-64), eight bytes a word
 * elsewhere; IMAP_LINE_SCAN_PORTABLE builds the second form anywhere, so
 * its tests run here too. */
#include "imap/line_scan.h"

#include <stdbool.h>
#include <string.h>
#if defined(__SSE2__) && !defined(IMAP_LINE_SCAN_PORTABLE)
#include <emmintrin.h>
#endif

const uint8_t imap_line_signal[256] = {
	['\n'] = IMAP_SCAN_TEXT | IMAP_SCAN_BODY | IMAP_SCAN_QUOTE,
	['\0'] = IMAP_SCAN_TEXT | IMAP_SCAN_BODY | IMAP_SCAN_QUOTE,
	['\r'] = IMAP_SCAN_TEXT | IMAP_SCAN_BODY | IMAP_SCAN_QUOTE,
	['"'] = IMAP_SCAN_BODY | IMAP_SCAN_QUOTE,
	['\\'] = IMAP_SCAN_QUOTE,
	['{'] = IMAP_SCAN_BODY,
	['~'] = IMAP_SCAN_BODY,
};

#if defined(__SSE2__) && !defined(IMAP_LINE_SCAN_PORTABLE)
/* Which of the sixteen bytes at p matter in the state of mask, as bits. */
static unsigned block_signals(const uint8_t *p, uint8_t mask)
{
	const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
	/* the other two bytes of the state: '{' '~' outside quotes, '\\' in */
	const __m128i x1 = _mm_set1_epi8(mask == IMAP_SCAN_QUOTE ? '\\' : '{');
	const __m128i x2 = _mm_set1_epi8(mask == IMAP_SCAN_QUOTE ? '\\' : '~');
	__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')),
						_mm_cmpeq_epi8(v, _mm_set1_epi8('\r'))),
				   _mm_cmpeq_epi8(v, _mm_setzero_si128()));

	if (mask != IMAP_SCAN_TEXT)
		hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
						     _mm_or_si128(_mm_cmpeq_epi8(v, x1),
								  _mm_cmpeq_epi8(v, x2))));
	return (unsigned)_mm_movemask_epi8(hit);
}

/* Sixteen bytes at a time: the index of the first byte that matters in
 * the state of mask, or n when none does; a rest shorter than a block
 * is read as the last sixteen bytes (some of them seen already), so only
 * a run shorter than a block is left to imap_line_scan's byte loop. */
static size_t scan_blocks(const uint8_t *p, size_t n, uint8_t mask)
{
	size_t k = 0;
	unsigned bits;

	for (; n - k >= 16; k += 16) {
		bits = block_signals(p + k, mask);
		if (bits != 0)
			return k + (size_t)__builtin_ctz(bits);
	}
	if (k == n || n < 16)
		return k;
	bits = block_signals(p + n - 16, mask) >> (k - (n - 16));
	return bits != 0 ? k + (size_t)__builtin_ctz(bits) : n;
}
#else
#define BYTES_01 0x0101010101010101ull
#define BYTES_80 0x8080808080808080ull

/* True when one of the 8 bytes in v is b. */
static bool word_has(uint64_t v, uint8_t b)
{
	uint64_t x = v ^ (BYTES_01 * b);

	return ((x - BYTES_01) & ~x & BYTES_80) != 0;
}

/* True when one of the 8 bytes in v matters in the state of mask. */
static bool word_signals(uint64_t v, uint8_t mask)
{
	if (word_has(v, '\n') || word_has(v, '\0') || word_has(v, '\r'))
		return true;
	if (mask == IMAP_SCAN_TEXT)
		return false;
	if (word_has(v, '"'))
		return true;
	if (mask == IMAP_SCAN_QUOTE)
		return word_has(v, '\\');
	return word_has(v, '{') || word_has(v, '~');
}

/* Eight bytes at a time up to the word that holds a byte that matters;
 * imap_line_scan's byte loop goes on from there. */
static size_t scan_blocks(const uint8_t *p, size_t n, uint8_t mask)
{
	size_t k = 0;

	for (uint64_t v; n - k >= 8; k += 8) {
		memcpy(&v, p + k, sizeof(v));
		if (word_signals(v, mask))
			break;
	}
	return k;
}
#endif

size_t imap_line_scan(const uint8_t *p, size_t n, uint8_t mask)
{
	size_t k = scan_blocks(p, n, mask);

	while (k < n && !(imap_line_signal[p[k]] & mask))
		k++;
	return k;
}
