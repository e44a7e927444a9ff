/* The relay proxy: listens, connects every client to the upstream server,
 * relays bytes unchanged with backpressure, and shows each session's
 * traffic to the capture sinks as it passes. One libevent loop, or with
 * workers > 1 that many on one port (the first on the caller's base, the
 * others on threads of their own), numbering sessions as one and writing
 * to the sinks under one lock (capture/sink_lock.h). */
#ifndef PROXY_PROXY_H
#define PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "capture/sink.h"
#include "capture/sink_lock.h"
#include "capture/wiretap.h"
#include "imap/tracker.h"
#include "proxy/addr.h"
#include "proxy/fault_spec.h"
#include "proxy/route.h"

/* Event loops at most (--workers). */
#define PROXY_WORKERS_MAX 64

/* Bytes queued toward one peer before the other peer stops being read. */
#define PROXY_HIGH_WATER (512u * 1024u)

struct proxy_config {
	struct proxy_hostport listen;
	struct proxy_hostport upstream; /* the default route (--upstream) */
	const struct proxy_route_spec *routes; /* --route: chosen by the client's SNI */
	size_t route_count;
	bool transparent;        /* each client's upstream is where it had connected before
				    a REDIRECT (SO_ORIGINAL_DST); the legs' TLS by its port or
				    its first bytes */
	size_t max_line;       /* observation limit per line, 0 for the default */
	unsigned redact_flags; /* enum imap_redact_flag bits */
	unsigned connect_timeout_s; /* upstream TCP connect and each TLS handshake, 0 for 10 s */
	unsigned linger_s;     /* flushing to a peer after the other left, 0 for 30 s */
	enum proxy_tls_mode upstream_tls;
	enum proxy_tls_mode client_tls;
	const char *sni;         /* upstream SNI and name to verify; NULL: the host */
	const char *upstream_ca; /* extra trust anchor (PEM), or NULL */
	int insecure_upstream;   /* do not verify the upstream certificate */
	const char *ca_dir;      /* CA that signs forged certificates */
	const char *cert_file;   /* fixed certificate for the client leg, or NULL */
	const char *key_file;
	const char *keylog_file; /* NSS key log of both legs, or NULL */
	const struct capture_wiretap *wiretap; /* both legs' bytes and secrets, or NULL */
	bool no_rules;           /* framing only: no anomaly rules */
	unsigned max_sessions;   /* clients beyond this many are refused; 0 no limit */
	bool accept_proxy;       /* clients come through a balancer: a PROXY header (v1/v2)
				    names each one first */
	int send_proxy;          /* 1 or 2: a PROXY header of that version to the upstream
				    names each client first; 0 none */
	unsigned workers;        /* event loops; 0 or 1: one, the caller's. More: the caller
				    made libevent thread-safe (evthread_use_pthreads) first */
	struct imap_tracker_config thresholds; /* at the start (zeros: the defaults);
						  proxy_set_thresholds changes them */
	const struct proxy_fault *faults; /* --fault; none unless asked for */
	size_t fault_count;
	/* process-level messages (not tied to one session) */
	void (*log)(void *ctx, const char *message);
	void *log_ctx;
};

enum proxy_error {
	PROXY_OK = 0,
	PROXY_ERR_RESOLVE, /* the upstream or listen host does not resolve */
	PROXY_ERR_LISTEN,  /* cannot bind or listen */
	PROXY_ERR_MEMORY,
	PROXY_ERR_TLS,     /* a certificate, key or CA that cannot be used */
};

struct proxy;

/* Resolves the upstream and starts listening. Returns NULL with err filled
 * and *code_r set on failure. The sinks must outlive the proxy. */
struct proxy *proxy_new(struct event_base *base, const struct proxy_config *config,
			const struct capture_sinks *sinks, enum proxy_error *code_r, char *err,
			size_t errlen);

/* Starts the other loops' threads (workers > 1): right before the caller
 * runs its base, once whatever must come first in the outputs (the run's
 * settings) is written; until then their clients wait in the listen
 * queue. Returns 0, or -1 with err. */
int proxy_start_workers(struct proxy *proxy, char *err, size_t errlen);

/* The address actually bound ("127.0.0.1:40123"), and its port. */
const char *proxy_listen_str(const struct proxy *proxy);
unsigned proxy_listen_port(const struct proxy *proxy);
/* True when bound to a loopback address only. */
int proxy_listen_is_loopback(const struct proxy *proxy);
/* A process-level message through config->log (nothing without one). */
void proxy_config_log(const struct proxy_config *config, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The upstream's one name: --sni, else the --upstream host. It goes out
 * as SNI (unless it is an address) and its certificate must carry it. */
const char *proxy_upstream_name(const struct proxy_config *config);

/* Stops accepting and closes every session after flushing what it can;
 * each loop exits when its last one is gone (or after a grace period). A
 * second call exits the loops at once. From the caller's loop's thread;
 * proxy_free then waits for the other loops. */
void proxy_shutdown(struct proxy *proxy);

/* Sessions open now, across the loops. */
unsigned proxy_session_count(const struct proxy *proxy);
/* Event loops running. */
unsigned proxy_workers(const struct proxy *proxy);
/* The lock of the outputs (NULL with one loop): whoever else writes to
 * the sinks while the proxy runs (a SIGHUP's reopen, the PCAP-over-IP
 * listener) takes it. */
struct capture_lock *proxy_outputs_lock(const struct proxy *proxy);

/* The rules' thresholds of the sessions that start from now on (zeros:
 * the defaults); open ones keep those they started with. From the
 * caller's loop's thread; holding the outputs' lock around this and the
 * settings record that names the new values puts that record between
 * the sessions judged by the old ones and those judged by the new. */
void proxy_set_thresholds(struct proxy *proxy, const struct imap_tracker_config *thresholds);

void proxy_free(struct proxy **proxy);

#endif
