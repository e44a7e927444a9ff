#include "proxy/clock.h"

#include <time.h>

imap_time_us proxy_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (imap_time_us)ts.tv_sec * IMAP_US_PER_S + ts.tv_nsec / 1000;
}
