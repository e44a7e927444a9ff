/* Human forms of times and durations, shared by every output. */
#ifndef CAPTURE_TIMEFMT_H
#define CAPTURE_TIMEFMT_H

#include <stddef.h>

#include "imap/types.h"

/* "812 us", "1.204 ms", "3.004 s". Returns out. */
char *capture_format_duration(char *out, size_t size, imap_time_us us);
/* Local wall-clock time "HH:MM:SS.uuuuuu". Returns out. */
char *capture_format_clock(char *out, size_t size, imap_time_us ts);
/* The same in UTC. Returns out. */
char *capture_format_clock_utc(char *out, size_t size, imap_time_us ts);
/* "2026-11-23T09:17:35.123456Z". Returns out. */
char *capture_format_rfc3339(char *out, size_t size, imap_time_us ts);
/* "512 B", "4.5 KiB", "1.0 MiB". Returns out. */
char *capture_format_bytes(char *out, size_t size, uint64_t bytes);

#endif
