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

/* info: the unit's classification (NULL for literal data). When the unit
 * holds a secret, writes unit->len masked bytes to out and returns true;
 * otherwise returns false and leaves out alone. */
bool imap_redact_unit(struct imap_redact *redact, enum imap_dir dir, const struct imap_unit *unit,
		      const struct imap_line_info *info, uint8_t *out);

#endif
