/* PCAP-over-IP: the capture served live to any number of readers that
 * connect (`tshark -i TCP@127.0.0.1:PORT`, Wireshark's TCP@ interface),
 * as PolarProxy serves it. Each reader gets the pcap file header and the
 * run's settings mark first, then every packet from the moment it
 * connected. A reader that falls PROXY_PCAP_LISTEN_BEHIND_MAX behind is
 * dropped: no reader ever slows the relay. */
#ifndef PROXY_PCAP_LISTEN_H
#define PROXY_PCAP_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "capture/pcap_writer.h"
#include "capture/sink.h"
#include "capture/sink_lock.h"
#include "proxy/addr.h"

#define PROXY_PCAP_LISTEN_BEHIND_MAX (8u * 1024u * 1024u)

struct proxy_pcap_listen;

/* Listens on where (a loopback address unless remote) on base; *sink_r
 * is the capture's sink, which owns the listener: its destroy closes
 * every reader. log gets one line per reader that comes, goes or is
 * dropped. lock: the outputs' lock when several loops write the capture
 * (proxy_outputs_lock), else NULL. Returns the listener, or NULL with err
 * saying why. */
struct proxy_pcap_listen *proxy_pcap_listen_new(struct event_base *base,
						const struct proxy_hostport *where, bool remote,
						capture_log_fn *log, void *log_ctx,
						struct capture_lock *lock,
						struct capture_sink *sink_r, char *err,
						size_t errlen);

/* The address bound ("127.0.0.1:40123"). */
const char *proxy_pcap_listen_str(const struct proxy_pcap_listen *l);

/* What has been written so far (the file header and the settings mark)
 * is what every later reader gets first. */
void proxy_pcap_listen_seal(struct proxy_pcap_listen *l);

#endif
