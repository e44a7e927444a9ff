/* libFuzzer target: the input is a whole capture file, read through
 * capture_pcap_read from a memfd. Any input ends in 0 or -1 with a
 * message, and every packet is counted once. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture/pcap_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_event(void *ctx, const struct capture_stream_event *ev)
{
	unsigned *opened = ctx;

	if (ev->session == 0)
		abort();
	if (ev->kind == CAPTURE_STREAM_OPEN)
		++*opened;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct capture_read_stats st;
	unsigned opened = 0;
	char err[512] = "";

	if (fd < 0) {
		fd = memfd_create("capture", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (capture_pcap_read(path, on_event, &opened, &st, err, sizeof(err)) < 0 &&
	    err[0] == '\0')
		abort();
	if (st.tcp_segments + st.skipped + st.fragments != st.packets)
		abort();
	return 0;
}
