/* libFuzzer target: the input is a whole capture file, read through
 * capture_pcap_read from a memfd. Any input ends in 0 or -1 with a
 * message, and every packet is counted once; every UDP datagram is read
 * as a fault mark, which either reads or says why not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/fault_mark.h"
#include "capture/pcap_reader.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_event(void *ctx, const struct capture_stream_event *ev)
{
	unsigned *opened = ctx;

	if (ev->session == 0)
		abort();
	if (ev->kind == CAPTURE_STREAM_OPEN)
		++*opened;
}

static void on_datagram(void *ctx, const struct capture_datagram *dg)
{
	struct capture_fault_mark_read mark;
	char why[120];

	(void)ctx;
	switch (capture_fault_mark_parse(dg->payload, dg->len, &mark, why, sizeof(why))) {
	case CAPTURE_FAULT_MARK_NONE:
		break;
	case CAPTURE_FAULT_MARK_OK:
		if (mark.session == 0 || strlen(mark.mark.spec) == 0)
			abort();
		break;
	case CAPTURE_FAULT_MARK_DAMAGED:
		if (why[0] == '\0')
			abort();
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_input_path(data, size);
	struct capture_read_stats st;
	unsigned opened = 0;
	char err[512] = "";

	if (capture_pcap_read(path, on_event, on_datagram, &opened, &st, err, sizeof(err)) < 0 &&
	    err[0] == '\0')
		abort();
	if (st.tcp_segments + st.skipped + st.fragments != st.packets)
		abort();
	return 0;
}
