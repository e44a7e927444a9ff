#include "imap/mailbox.h"

#include <stdlib.h>
#include <string.h>

/* raw as a name: \" and \\ undone, INBOX in upper case
 * (RFC 9051 section 5.1: INBOX is case-insensitive) */
static size_t normalise(const uint8_t *raw, size_t len, uint8_t *out, bool *cut)
{
	size_t n = 0;

	*cut = false;
	for (size_t i = 0; i < len; i++) {
		if (raw[i] == '\\' && i + 1 < len)
			i++;
		if (n == IMAP_MAILBOX_NAME_MAX) {
			*cut = true;
			break;
		}
		out[n++] = raw[i];
	}
	if (n == 5) {
		static const char inbox[] = "INBOX";
		bool same = true;

		for (size_t i = 0; i < 5; i++)
			same = same && (out[i] & ~0x20) == (uint8_t)inbox[i];
		if (same)
			memcpy(out, inbox, 5);
	}
	return n;
}

struct imap_mailbox_facts *imap_mailboxes_get(struct imap_mailboxes *set, const uint8_t *raw,
					      size_t len)
{
	uint8_t name[IMAP_MAILBOX_NAME_MAX];
	bool cut;
	size_t n = normalise(raw, len, name, &cut);
	struct imap_mailbox_facts *f;

	for (size_t i = 0; i < set->count; i++) {
		f = set->kept[i];
		if (f->name_len == n && f->name_cut == cut && memcmp(f->name, name, n) == 0)
			return f;
	}
	if (set->count == IMAP_MAILBOXES_KEPT || (f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	set->kept[set->count++] = f;
	memcpy(f->name, name, n);
	f->name_len = n;
	f->name_cut = cut;
	return f;
}

void imap_mailboxes_clear(struct imap_mailboxes *set)
{
	for (size_t i = 0; i < set->count; i++)
		free(set->kept[i]);
	set->count = 0;
}
