/* The wire as the proxy's sockets carry it: each leg's bytes exactly as
 * read and written (TLS records once TLS is on, the clear text before),
 * and the TLS secrets that decrypt them. The proxy calls it, from its
 * loop's thread only; capture/raw_pcap.h writes it to a pcapng file. */
#ifndef CAPTURE_WIRETAP_H
#define CAPTURE_WIRETAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/endpoint.h"
#include "imap/types.h"

enum capture_wire_leg {
	CAPTURE_WIRE_CLIENT,   /* the client connected to the proxy */
	CAPTURE_WIRE_UPSTREAM, /* the proxy connected to the upstream */
};

struct capture_wiretap {
	/* A leg's TCP connection is up: connector connected to acceptor
	 * (the client to the listen address; the proxy's local address to
	 * the upstream). implicit_tls: TLS from the first byte. */
	void (*open)(void *ctx, unsigned session, enum capture_wire_leg leg,
		     const struct capture_endpoint *connector, const struct capture_endpoint *acceptor,
		     bool implicit_tls, imap_time_us ts);
	/* Bytes the proxy read from the leg's socket (sent false) or wrote
	 * to it (sent true). */
	void (*bytes)(void *ctx, unsigned session, enum capture_wire_leg leg, bool sent,
		      imap_time_us ts, const uint8_t *data, size_t len);
	/* The leg's socket is closed; by_peer: the peer's FIN came first. */
	void (*close)(void *ctx, unsigned session, enum capture_wire_leg leg, bool by_peer,
		      imap_time_us ts);
	/* One NSS key log line (no newline), before the bytes it decrypts
	 * are handed over. */
	void (*secret)(void *ctx, const char *line);
	void *ctx;
};

#endif
