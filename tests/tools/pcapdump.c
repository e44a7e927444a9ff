/* capture_dump FILE: reads a capture with capture_pcap_read and prints
 * every stream event as one JSON object per line, then the read counters:
 *
 *   {"kind":"open","session":1,"ts":..,"client":"127.0.0.1:40000","server":..,"midstream":false}
 *   {"kind":"data","session":1,"dir":"c2s","ts":..,"offset":0,"len":3,"hex":"616263"}
 *   {"kind":"gap","session":1,"dir":"s2c","ts":..,"offset":3,"gap_len":100}
 *   {"kind":"close","session":1,"ts":..,"reason":"client-fin","bytes_c2s":..,...}
 *   {"kind":"stats","packets":..,"tcp_segments":..,...}
 *
 * Exit 0, 2 on a usage error, 3 when the file cannot be read (the message
 * on stderr). A test tool until `imaptap analyze` exists. */
#include <stdio.h>
#include <string.h>

#include "capture/pcap_reader.h"

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void print_common(const struct capture_stream_event *ev)
{
	printf("{\"kind\":\"%s\",\"session\":%u,\"ts\":%lld", capture_stream_kind_str(ev->kind),
	       ev->session, (long long)ev->ts);
}

static void on_event(void *ctx, const struct capture_stream_event *ev)
{
	static const char hex[] = "0123456789abcdef";

	(void)ctx;
	print_common(ev);
	switch (ev->kind) {
	case CAPTURE_STREAM_OPEN:
		printf(",\"client\":");
		print_json_string(ev->client);
		printf(",\"server\":");
		print_json_string(ev->server);
		printf(",\"midstream\":%s", ev->midstream ? "true" : "false");
		break;
	case CAPTURE_STREAM_DATA:
		printf(",\"dir\":\"%s\",\"offset\":%llu,\"len\":%zu,\"hex\":\"", imap_dir_str(ev->dir),
		       (unsigned long long)ev->offset, ev->len);
		for (size_t i = 0; i < ev->len; i++) {
			putchar(hex[ev->data[i] >> 4]);
			putchar(hex[ev->data[i] & 15]);
		}
		putchar('"');
		break;
	case CAPTURE_STREAM_GAP:
		printf(",\"dir\":\"%s\",\"offset\":%llu,\"gap_len\":%llu", imap_dir_str(ev->dir),
		       (unsigned long long)ev->offset, (unsigned long long)ev->gap_len);
		break;
	case CAPTURE_STREAM_CLOSE:
		printf(",\"reason\":\"%s\",\"bytes_c2s\":%llu,\"bytes_s2c\":%llu,"
		       "\"missing_c2s\":%llu,\"missing_s2c\":%llu",
		       capture_close_reason_str(ev->reason),
		       (unsigned long long)ev->bytes[IMAP_C2S], (unsigned long long)ev->bytes[IMAP_S2C],
		       (unsigned long long)ev->missing[IMAP_C2S],
		       (unsigned long long)ev->missing[IMAP_S2C]);
		break;
	case CAPTURE_STREAM_WINDOW:
		printf(",\"dir\":\"%s\",\"blocked\":%s", imap_dir_str(ev->dir),
		       ev->blocked ? "true" : "false");
		break;
	}
	printf("}\n");
}

int main(int argc, char **argv)
{
	struct capture_read_stats st;
	char err[1024];

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: capture_dump FILE.pcap\n");
		return 2;
	}
	if (capture_pcap_read(argv[1], on_event, NULL, NULL, &st, err, sizeof(err)) < 0) {
		fflush(stdout);
		fprintf(stderr, "capture_dump: %s\n", err);
		return 3;
	}
	printf("{\"kind\":\"stats\",\"packets\":%llu,\"tcp_segments\":%llu,\"skipped\":%llu,"
	       "\"fragments\":%llu,\"truncated\":%llu,\"cut_records\":%llu}\n",
	       (unsigned long long)st.packets, (unsigned long long)st.tcp_segments,
	       (unsigned long long)st.skipped, (unsigned long long)st.fragments,
	       (unsigned long long)st.truncated, (unsigned long long)st.cut_records);
	return fflush(stdout) == 0 ? 0 : 3;
}
