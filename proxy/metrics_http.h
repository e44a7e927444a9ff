/* `proxy --metrics`: the run's metrics (capture/metrics.h) served over
 * HTTP on the main loop, for Prometheus to scrape: GET /metrics answers
 * the text exposition, any other path 404. */
#ifndef PROXY_METRICS_HTTP_H
#define PROXY_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "capture/metrics.h"
#include "capture/sink_lock.h"
#include "proxy/addr.h"

struct proxy_metrics_http;

/* Why proxy_metrics_http_new failed. */
enum proxy_metrics_error {
	PROXY_METRICS_LISTEN,  /* cannot listen there (the port is taken, ...) */
	PROXY_METRICS_REMOTE,  /* not a loopback address, and remote not allowed */
	PROXY_METRICS_MEMORY,
};

/* Listens on where (a loopback address unless remote) on base. Each
 * scrape renders metrics and the stats of outputs under lock (the
 * outputs' lock, proxy_outputs_lock; NULL with one loop); both must
 * outlive the server. Returns the server, or NULL with *code_r and err
 * saying why. */
struct proxy_metrics_http *proxy_metrics_http_new(struct event_base *base,
						  const struct proxy_hostport *where, bool remote,
						  const struct capture_metrics *metrics,
						  const struct capture_sinks *outputs,
						  struct capture_lock *lock,
						  enum proxy_metrics_error *code_r, char *err,
						  size_t errlen);

/* The address bound ("127.0.0.1:9464"). */
const char *proxy_metrics_http_str(const struct proxy_metrics_http *h);

/* Stops serving; before the metrics and the loop go. */
void proxy_metrics_http_free(struct proxy_metrics_http **h);

#endif
