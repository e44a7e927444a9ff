/* Capability list edits: the changes the proxy makes so that each TLS
 * leg is honest about what it offers (DESIGN, "The two TLS legs"). */
#ifndef IMAP_CAPABILITY_H
#define IMAP_CAPABILITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_capability_edit {
	IMAP_CAP_REMOVE_STARTTLS = 1u << 0,
	IMAP_CAP_ADD_STARTTLS = 1u << 1,
	IMAP_CAP_REMOVE_LOGINDISABLED = 1u << 2,
	IMAP_CAP_ADD_LOGINDISABLED = 1u << 3, /* the client leg's TLS is not up yet */
};

/* Room an edit may add to a line: " STARTTLS LOGINDISABLED". */
#define IMAP_CAPABILITY_EDIT_GROWTH 23u

/* Edits the capability list of one server line ("* CAPABILITY ..." or a
 * "[CAPABILITY ...]" response code), terminator included. Writes the new
 * line to out and returns its length, or returns 0 when the line has no
 * capability list, nothing changes or out is too small. */
size_t imap_capability_edit(const uint8_t *line, size_t len, unsigned edits, uint8_t *out,
			    size_t out_size);

/* The edits of edits that change line (the ones imap_capability_edit
 * makes), as enum imap_capability_edit bits; 0 when none does. */
unsigned imap_capability_changes(const uint8_t *line, size_t len, unsigned edits);

/* done (from imap_capability_changes) in words: "STARTTLS removed,
 * LOGINDISABLED added". */
void imap_capability_describe(unsigned done, char *out, size_t size);

/* Finds the capability list of a server line, as imap_capability_edit
 * does: on true, line[*start_r, *end_r) is the space-separated list
 * (possibly empty); false when the line has none. */
bool imap_capability_list(const uint8_t *line, size_t len, size_t *start_r, size_t *end_r);

/* The capability list of one server line without names[0..count) (any
 * case), written to out (at least len bytes): its length, or 0 when the
 * line has no list or names none of them (--fault hide-capability). */
size_t imap_capability_hide(const uint8_t *line, size_t len, const char *const *names,
			    size_t count, uint8_t *out, size_t out_size);

#endif
