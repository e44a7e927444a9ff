/* The bytes of a line that can change the framer's state, found sixteen
 * at a time: a run of other bytes is skipped at once, so a long line (or
 * one that never ends) costs a scan, not the state machine per byte. */
#ifndef IMAP_LINE_SCAN_H
#define IMAP_LINE_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* The states a byte may matter in. */
enum {
	IMAP_SCAN_TEXT = 1,  /* free text: only the line end */
	IMAP_SCAN_BODY = 2,  /* arguments outside quotes, no literal marker begun */
	IMAP_SCAN_QUOTE = 4, /* inside a quoted string, no escape pending */
};

/* By byte: the states it matters in. */
extern const uint8_t imap_line_signal[256];

/* The index of the first byte of p[0..n) that matters in the state of
 * mask; n when none does. */
size_t imap_line_scan(const uint8_t *p, size_t n, uint8_t mask);

#endif
