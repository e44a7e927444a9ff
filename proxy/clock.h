/* The proxy's one clock: every time the proxy stamps, compares or hands to
 * imap/ (which reads no clock itself) comes from here. Wall-clock time,
 * because timestamps are shown and written into pcap records. */
#ifndef PROXY_CLOCK_H
#define PROXY_CLOCK_H

#include "imap/types.h"

imap_time_us proxy_now(void);

#endif
