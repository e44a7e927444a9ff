/* The one gate between bytes imaptap did not write and a person's
 * terminal or report. Every byte outside printable ASCII (0x20..0x7e) is
 * shown as \xNN (two lower-case hex digits): control bytes, DEL, and every
 * byte >= 0x80, so no ESC, C1 control (also as UTF-8, C2 80..C2 9F), bidi
 * override, line or paragraph separator or invalid UTF-8 passes raw, and
 * the form depends on no locale. Valid UTF-8 is escaped too: the exact
 * bytes are in the pcap and the event log.
 *
 * A backslash stays a backslash, so escaping is idempotent: text that went
 * through the gate comes out of it unchanged, and a producer that escaped
 * its own text (the replay reports) is not escaped twice. The price is
 * that a peer's literal "\x1b" (four characters) reads like an escaped
 * ESC; the pcap tells them apart.
 *
 * Pure: no I/O. */
#ifndef CAPTURE_ESCAPE_H
#define CAPTURE_ESCAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keep '\n' as is: for multi-line reports whose lines imaptap made; the
 * peer bytes in them cannot hold a line feed (a line ends at one). */
#define CAPTURE_ESCAPE_KEEP_NEWLINE 1u

/* Whether byte c is shown as itself. */
bool capture_escape_keeps(uint8_t c, unsigned flags);

/* Writes the escaped form of data[0..len) into out, NUL-terminated. An
 * escape is never cut: when out is full the rest of the input is left,
 * and *used_r (when not NULL) says how many input bytes were written.
 * Returns the characters written, excluding the NUL. */
size_t capture_escape(char *out, size_t out_size, const void *data, size_t len, unsigned flags,
		      size_t *used_r);

/* The characters capture_escape writes for data[0..len), NUL excluded. */
size_t capture_escaped_len(const void *data, size_t len, unsigned flags);

#endif
