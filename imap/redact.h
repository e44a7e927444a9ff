/* Credential masking: which bytes of a unit are secret.
 *
 * Fed every unit of one session in order, both directions, it recognises
 * LOGIN passwords (atom, quoted or literal, synchronising or not), SASL
 * responses and SASL-IR initial responses, and optionally every literal's
 * contents. Secrets are replaced by the same number of '*' so lengths and
 * stream offsets stay as they were. */
#ifndef IMAP_REDACT_H
#define IMAP_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/classify.h"
#include "imap/framer.h"

#define IMAP_REDACT_FILL '*'

enum imap_redact_flag {
	IMAP_REDACT_CREDENTIALS = 1u << 0, /* passwords and SASL payloads */
	IMAP_REDACT_BODIES = 1u << 1,      /* every literal's bytes except CR and LF */
};

struct imap_redact;

struct imap_redact *imap_redact_new(unsigned flags);
void imap_redact_free(struct imap_redact **redact);

/* What imap_redact_unit found. */
enum imap_redact_result {
	IMAP_REDACT_CLEAR,       /* nothing secret: out is left alone */
	IMAP_REDACT_MASKED,      /* out holds unit->len bytes, the secrets masked */
	IMAP_REDACT_MASKED_REST, /* the same, and the unit's wire bytes past
				    unit->len (a line cut at the observation
				    limit) are secret too: mask them all */
};

/* info: the unit's classification (NULL for literal data). Writes
 * unit->len masked bytes to out unless the result is IMAP_REDACT_CLEAR.
 * A line whose secret cannot be told apart in what was observed (cut,
 * or with its command name cut) is masked from the first byte that may
 * hold one, and its rest with it: masking fails closed. */
enum imap_redact_result imap_redact_unit(struct imap_redact *redact, enum imap_dir dir,
					 const struct imap_unit *unit,
					 const struct imap_line_info *info, uint8_t *out);

/* No byte of the unit is secret. */
#define IMAP_REDACT_NONE UINT64_MAX

/* While a unit is still arriving (an output that must write some of it
 * before the unit ends: a line longer than it holds, a capture that ends
 * mid-line): the offset inside the unit from which its bytes may be
 * secret, judged from its first len bytes (prefix) and the session so
 * far, or IMAP_REDACT_NONE. literal: the bytes are literal data.
 * auth_pending: an AUTHENTICATE exchange is under way. A prefix too short
 * to tell counts as secret from 0. */
uint64_t imap_redact_secret_from(const struct imap_redact *redact, enum imap_dir dir, bool literal,
				 bool auth_pending, const uint8_t *prefix, size_t len);

/* Masks p[0..len), bytes at offset unit_off of their unit, from unit
 * offset secret_from on. CR and LF are kept so the stream keeps its
 * lines, and with literal_head the announcement ({n}, {n+}, ~{n}) that
 * ends the line, so readers still find the literal. */
void imap_redact_fill_from(uint8_t *p, size_t len, uint64_t unit_off, uint64_t secret_from,
			   bool literal_head);

#endif
