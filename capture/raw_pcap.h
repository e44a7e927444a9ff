/* The raw capture (proxy --raw-pcap): both legs of every session as the
 * proxy's sockets carried them, each its own TCP stream with its real
 * addresses, in pcapng, with the TLS key log in Decryption Secrets Blocks
 * placed before the packets they decrypt, so that Wireshark decrypts
 * both legs with no settings. The file holds every secret of every
 * session: it decrypts passwords too (docs/security.md).
 *
 * The server port is written as 993 on a leg that speaks TLS from its
 * first byte and 143 on the others (STARTTLS, plain), whatever it really
 * was, so that Wireshark dissects TLS and then IMAP by port; the real
 * port rides on the leg's first packet as a comment. Packets are written
 * behind, by a thread of their own (capture/writebehind.h). */
#ifndef CAPTURE_RAW_PCAP_H
#define CAPTURE_RAW_PCAP_H

#include <stdbool.h>
#include <stddef.h>

#include "capture/outfile.h"
#include "capture/pcap_writer.h"
#include "capture/sink.h"
#include "capture/wiretap.h"

#define CAPTURE_RAW_TLS_PORT 993

struct capture_raw_config {
	const char *path;
	enum capture_outfile_mode mode; /* NEW: a file already there is refused */
	capture_log_fn *log;            /* one message when writing fails */
	void *log_ctx;
};

/* Creates path (mode 0600). Returns 0, the sink that flushes, reopens
 * (SIGHUP) and closes the file, and the tap the proxy feeds; -1 with a
 * message in err, *refused_r set when a file already there was refused.
 * The tap is valid until the sink is destroyed. */
int capture_raw_pcap_new(const struct capture_raw_config *config, struct capture_sink *sink_r,
			 struct capture_wiretap *tap_r, bool *refused_r, char *err, size_t errlen);

#endif
