#include "capture/timefmt.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

char *capture_format_duration(char *out, size_t size, imap_time_us us)
{
	if (us < 0)
		us = 0;
	if (us < 1000)
		snprintf(out, size, "%lld us", (long long)us);
	else if (us < IMAP_US_PER_S)
		snprintf(out, size, "%.3f ms", (double)us / 1e3);
	else
		snprintf(out, size, "%.3f s", (double)us / 1e6);
	return out;
}

static void split(imap_time_us ts, time_t *sec, long *usec)
{
	*sec = (time_t)(ts / IMAP_US_PER_S);
	*usec = (long)(ts % IMAP_US_PER_S);
	if (*usec < 0) {
		*usec += IMAP_US_PER_S;
		(*sec)--;
	}
}

static char *format_clock(char *out, size_t size, imap_time_us ts, bool utc)
{
	time_t sec;
	long usec;
	struct tm tm;

	split(ts, &sec, &usec);
	if (utc)
		gmtime_r(&sec, &tm);
	else
		localtime_r(&sec, &tm);
	snprintf(out, size, "%02d:%02d:%02d.%06ld", tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
	return out;
}

char *capture_format_clock(char *out, size_t size, imap_time_us ts)
{
	return format_clock(out, size, ts, false);
}

char *capture_format_clock_utc(char *out, size_t size, imap_time_us ts)
{
	return format_clock(out, size, ts, true);
}

char *capture_format_rfc3339(char *out, size_t size, imap_time_us ts)
{
	time_t sec;
	long usec;
	struct tm tm;

	split(ts, &sec, &usec);
	gmtime_r(&sec, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
	return out;
}

char *capture_format_bytes(char *out, size_t size, uint64_t bytes)
{
	if (bytes < 1024)
		snprintf(out, size, "%llu B", (unsigned long long)bytes);
	else if (bytes < 1024 * 1024)
		snprintf(out, size, "%.1f KiB", (double)bytes / 1024);
	else if (bytes < 1024ull * 1024 * 1024)
		snprintf(out, size, "%.1f MiB", (double)bytes / (1024 * 1024));
	else
		snprintf(out, size, "%.2f GiB", (double)bytes / (1024.0 * 1024 * 1024));
	return out;
}
