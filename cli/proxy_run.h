/* The life of one `imaptap proxy` run once its options are checked: the
 * event loop (made thread-safe first when there are several), the proxy,
 * the signals, serving, and stopping. */
#ifndef CLI_PROXY_RUN_H
#define CLI_PROXY_RUN_H

#include <event2/event.h>

#include "capture/sink.h"
#include "proxy/proxy.h"

struct proxy_pcap_listen;
struct cli_config_reload;
struct proxy_metrics_http;

struct cli_proxy_run {
	struct event_base *base;
	struct proxy *proxy;
	struct proxy_pcap_listen *pcap_listen; /* owned by its sink */
	struct proxy_metrics_http *metrics;    /* stopped before the sinks go */
	struct capture_sinks *sinks;
	const struct proxy_config *config; /* the run's, as it started */
	struct cli_config_reload *reload;  /* --config's file for SIGHUP, or NULL; freed by stop */
	int signals;
	struct event *sigint, *sigterm, *sighup;
};

/* The loop, the listening proxy and the signal handlers (from the first
 * signal on the proxy stops cleanly; SIGHUP reopens the outputs and, with
 * run->reload, applies the file's thresholds to new sessions): 0, or -1
 * after saying why. */
int cli_proxy_start(struct cli_proxy_run *run, const struct proxy_config *config,
		    struct capture_sinks *sinks);

/* Serves until stopped (the other loops start now): 0, or -1 after
 * saying why. */
int cli_proxy_serve(struct cli_proxy_run *run);

/* Frees what start made, the sinks included. */
void cli_proxy_stop(struct cli_proxy_run *run);

/* The default of --workers: the cores this process may run on. */
unsigned cli_proxy_default_workers(void);

#endif
