/* What a session learned of each mailbox from the wire: UIDVALIDITY,
 * UIDNEXT, HIGHESTMODSEQ (or NOMODSEQ) and the EXISTS count last seen,
 * by name, for the protocol rules and for the session's summary. Bounded:
 * IMAP_MAILBOXES_KEPT names; the facts of any further name are not kept. */
#ifndef IMAP_MAILBOX_H
#define IMAP_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_MAILBOX_NAME_MAX 128
#define IMAP_MAILBOXES_KEPT 32

struct imap_mailbox_facts {
	uint8_t name[IMAP_MAILBOX_NAME_MAX]; /* as the peer wrote it, quotes and escapes
						 undone; "INBOX" in any case is INBOX */
	size_t name_len;
	bool name_cut;                       /* longer than IMAP_MAILBOX_NAME_MAX */
	bool uidvalidity_known, uidnext_known, modseq_known, exists_known;
	bool nomodseq;
	uint64_t uidvalidity, uidnext, highestmodseq, exists;
	uint64_t selects;                    /* SELECT/EXAMINE answered OK */
};

/* Each mailbox's facts are allocated when it is first named, so a session
 * that touches one mailbox holds one, and a pointer to them stays valid
 * until imap_mailboxes_clear. */
struct imap_mailboxes {
	struct imap_mailbox_facts *kept[IMAP_MAILBOXES_KEPT];
	size_t count;
};

/* The facts of the mailbox named by raw (an astring's content: a quoted
 * string's inside with its escapes, an atom, a literal's content), added
 * when new; NULL when the table is full (or out of memory). */
struct imap_mailbox_facts *imap_mailboxes_get(struct imap_mailboxes *set, const uint8_t *raw,
					      size_t len);

/* Frees every mailbox's facts. */
void imap_mailboxes_clear(struct imap_mailboxes *set);

#endif
