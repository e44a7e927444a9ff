/* libFuzzer target: the framer and the conversation behind it, fed the
 * input in pieces whose sizes the input itself chooses. Checks that the
 * units tile the stream exactly: the wire bytes while the client's
 * direction is plain, the inflated ones after a COMPRESS the input itself
 * may negotiate (both directions get the same bytes), where the wire
 * count no longer applies. */
#include <stdlib.h>
#include <string.h>

#include "imap/conversation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tile {
	uint64_t next;
	const struct imap_conv *conv;
};

static void on_obs(void *ctx, const struct imap_observation *obs)
{
	struct tile *t = ctx;

	if (obs->dir != IMAP_C2S)
		return;
	if (obs->len > obs->unit->wire_len)
		abort();
	/* once compressed, units count inflated bytes: no wire tiling */
	if (t->conv != NULL && imap_conv_compressed(t->conv))
		return;
	if (obs->unit->offset != t->next)
		abort();
	t->next = obs->unit->offset + obs->unit->wire_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_conv_config cfg = {.max_line = 256,
				       .redact_flags = IMAP_REDACT_CREDENTIALS | IMAP_REDACT_BODIES};
	struct tile t = {0};
	struct imap_conv *conv;
	size_t at = 0;

	if (size < 1)
		return 0;
	conv = imap_conv_new(&cfg, on_obs, &t);
	t.conv = conv;
	/* first byte: piece size; the rest goes to both directions */
	while (at + 1 < size) {
		size_t piece = (size_t)(data[0] % 17) + 1;

		if (piece > size - 1 - at)
			piece = size - 1 - at;
		imap_conv_feed(conv, IMAP_C2S, (imap_time_us)at, IMAP_ORIGIN_PEER, data + 1 + at, piece);
		imap_conv_feed(conv, IMAP_S2C, (imap_time_us)at, IMAP_ORIGIN_PEER, data + 1 + at, piece);
		at += piece;
	}
	if (!imap_conv_compressed(conv) &&
	    t.next + imap_framer_pending(imap_conv_framer(conv, IMAP_C2S)) != size - 1)
		abort();
	imap_conv_free(&conv);
	return 0;
}
