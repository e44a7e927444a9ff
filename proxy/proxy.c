#include "proxy/proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/listener.h>

#include "capture/outfile.h"
#include "proxy/clock.h"
#include "proxy/session.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

struct proxy {
	struct event_base *base;
	struct proxy_config config;
	struct session_env env; /* what sessions see of the proxy; each worker copies it */
	struct session_shared shared;
	struct capture_sinks locked_sinks; /* the sinks behind the outputs' lock (workers > 1) */
	int keylog_fd;         /* -1 without --keylog */
	struct proxy_worker *worker[PROXY_WORKERS_MAX];
	unsigned workers;
	char listen_str[CAPTURE_ADDR_MAX];
	unsigned listen_port;
	int listen_loopback;
	int shutdowns; /* proxy_shutdown calls */
};

void proxy_config_log(const struct proxy_config *config, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (config->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config->log(config->log_ctx, msg);
}

/* Whether a port is taken, asked without SO_REUSEPORT: the loops of this
 * run bind with it, and so would another imaptap, which must not quietly
 * share the port with this one. Returns 0 or the errno of the bind. */
static int port_taken(const struct sockaddr *addr, socklen_t len)
{
	int one = 1, rc = 0;
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, addr, len) != 0)
		rc = errno;
	close(fd);
	return rc;
}

static int listen_first(struct proxy *p, const struct sockaddr *addr, socklen_t len)
{
	bool shared = p->workers > 1;
	unsigned port = ntohs(addr->sa_family == AF_INET6
				      ? ((const struct sockaddr_in6 *)addr)->sin6_port
				      : ((const struct sockaddr_in *)addr)->sin_port);
	int rc;

	if (shared && port != 0 && (rc = port_taken(addr, len)) != 0)
		return rc;
	return proxy_worker_listen(p->worker[0], addr, len, shared);
}

static int start_listening(struct proxy *p, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = EADDRNOTAVAIL;

	if (proxy_hostport_resolve(&p->config.listen, true, &res, err, errlen) < 0)
		return PROXY_ERR_RESOLVE;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		rc = listen_first(p, ai->ai_addr, (socklen_t)ai->ai_addrlen);
		if (rc == 0)
			break;
	}
	freeaddrinfo(res);
	/* the other loops on the address and port the first one got */
	if (rc == 0 && proxy_worker_bound(p->worker[0], &ss, &len) != 0)
		rc = errno;
	for (unsigned i = 1; rc == 0 && i < p->workers; i++)
		rc = proxy_worker_listen(p->worker[i], (struct sockaddr *)&ss, len, true);
	if (rc != 0) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s%s", p->config.listen.host,
			 p->config.listen.port, strerror(rc),
			 rc == EADDRINUSE
				 ? " (another program uses this port: pick another with --listen, or port 0 for any free one)"
			 : rc == EACCES ? " (ports below 1024 need privileges: pick a higher port)"
					: "");
		return PROXY_ERR_LISTEN;
	}
	proxy_sockaddr_str((struct sockaddr *)&ss, p->listen_str, sizeof(p->listen_str));
	p->listen_loopback = proxy_sockaddr_is_loopback((struct sockaddr *)&ss);
	p->listen_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						      : ((struct sockaddr_in *)&ss)->sin_port);
	return PROXY_OK;
}

/* One NSS key log line per secret, appended whole (Wireshark reads the
 * file to decrypt a raw capture of either leg), and handed to the wire
 * tap before the bytes it decrypts. */
static void write_keylog(const SSL *ssl, const char *line)
{
	struct proxy *p = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const struct capture_wiretap *tap = p != NULL ? p->config.wiretap : NULL;
	char buf[1024];
	int n;

	if (tap != NULL) {
		capture_lock_acquire(p->shared.lock);
		tap->secret(tap->ctx, line);
		capture_lock_release(p->shared.lock);
	}
	if (p == NULL || p->keylog_fd < 0)
		return;
	n = snprintf(buf, sizeof(buf), "%s\n", line);
	if (n > 0 && (size_t)n < sizeof(buf) && write(p->keylog_fd, buf, (size_t)n) != n)
		proxy_config_log(&p->config, "cannot write the key log: %s", strerror(errno));
}

static int open_keylog(struct proxy *p, char *err, size_t errlen)
{
	/* a key log is appended to by convention (SSLKEYLOGFILE), never
	 * through a link, and made 0600: it decrypts everything */
	if (p->config.keylog_file != NULL) {
		p->keylog_fd = capture_outfile_open_fd(p->config.keylog_file, CAPTURE_OUTFILE_APPEND);
		if (p->keylog_fd < 0) {
			capture_outfile_error(err, errlen, "the key log", p->config.keylog_file,
					      errno);
			return -1;
		}
		if (p->env.upstream_ctx == NULL && p->env.client_ctx == NULL)
			proxy_config_log(&p->config, "--keylog: neither leg uses TLS, so %s stays empty",
				  p->config.keylog_file);
	}
	for (int i = 0; i < 2; i++) {
		SSL_CTX *ctx = i ? p->env.client_ctx : p->env.upstream_ctx;

		if (ctx != NULL) {
			SSL_CTX_set_app_data(ctx, p);
			SSL_CTX_set_keylog_callback(ctx, write_keylog);
		}
	}
	return 0;
}

/* --upstream, then each --route, resolved once. */
static int make_routes(struct proxy *p, char *err, size_t errlen)
{
	const struct proxy_config *c = &p->config;

	p->env.routes[0] = proxy_route_resolve("default", &c->upstream, c->upstream_tls,
					       proxy_upstream_name(c), err, errlen);
	if (p->env.routes[0] == NULL)
		return -1;
	p->env.route_count = 1;
	for (size_t i = 0; i < c->route_count && i < PROXY_ROUTES_MAX; i++) {
		const struct proxy_route_spec *r = &c->routes[i];
		char why[400];

		p->env.routes[i + 1] = proxy_route_resolve(r->name, &r->upstream, r->tls, NULL, why,
							   sizeof(why));
		if (p->env.routes[i + 1] == NULL) {
			snprintf(err, errlen, "--route %s: %s", r->name, why);
			return -1;
		}
		p->env.route_count++;
	}
	return 0;
}

/* Whether any session may speak TLS to its upstream. */
static bool upstream_tls_used(const struct proxy *p)
{
	if (p->config.transparent)
		return true;
	for (unsigned i = 0; i < p->env.route_count; i++)
		if (p->env.routes[i]->tls != PROXY_TLS_NONE)
			return true;
	return false;
}

/* The loops: the first on the caller's base, the others with a base
 * and a thread of their own, sharing the outputs behind one lock. */
static int make_workers(struct proxy *p, const struct capture_sinks *sinks, char *err,
			size_t errlen)
{
	p->env.sinks = sinks;
	if (p->workers > 1) {
		struct capture_sink locked;

		p->shared.lock = capture_lock_new();
		locked = capture_sink_locked(p->shared.lock, sinks);
		if (p->shared.lock == NULL || locked.ops == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		capture_sinks_add(&p->locked_sinks, locked);
		p->env.sinks = &p->locked_sinks;
	}
	for (unsigned i = 0; i < p->workers; i++) {
		p->worker[i] = proxy_worker_new(i == 0 ? p->base : NULL, &p->env, &p->shared);
		if (p->worker[i] == NULL) {
			snprintf(err, errlen, "cannot start event loop %u of %u: %s", i + 1, p->workers,
				 strerror(errno != 0 ? errno : ENOMEM));
			return -1;
		}
	}
	return 0;
}

int proxy_start_workers(struct proxy *p, char *err, size_t errlen)
{
	for (unsigned i = 1; i < p->workers; i++) {
		int rc = proxy_worker_start(p->worker[i], i + 1);

		if (rc != 0) {
			snprintf(err, errlen, "cannot start the thread of event loop %u: %s", i + 1,
				 strerror(rc));
			return -1;
		}
	}
	return 0;
}

struct proxy *proxy_new(struct event_base *base, const struct proxy_config *config,
			const struct capture_sinks *sinks, enum proxy_error *code_r, char *err,
			size_t errlen)
{
	struct proxy *p = calloc(1, sizeof(*p));
	int rc;

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		*code_r = PROXY_ERR_MEMORY;
		return NULL;
	}
	p->base = base;
	p->config = *config;
	if (p->config.connect_timeout_s == 0)
		p->config.connect_timeout_s = 10;
	if (p->config.linger_s == 0)
		p->config.linger_s = 30;
	p->workers = config->workers == 0 ? 1 : config->workers;
	if (p->workers > PROXY_WORKERS_MAX)
		p->workers = PROXY_WORKERS_MAX;
	p->env.base = base;
	p->env.config = &p->config;
	atomic_init(&p->shared.next_id, 0);
	atomic_init(&p->shared.open, 0);
	p->shared.thresholds = config->thresholds;
	p->keylog_fd = -1;
	if (!config->transparent && make_routes(p, err, errlen) < 0) {
		*code_r = PROXY_ERR_RESOLVE;
		proxy_free(&p);
		return NULL;
	}
	if (upstream_tls_used(p)) {
		p->env.upstream_ctx = proxy_tls_upstream_ctx(config->upstream_ca,
							 config->insecure_upstream, err, errlen);
		if (p->env.upstream_ctx == NULL) {
			*code_r = PROXY_ERR_TLS;
			proxy_free(&p);
			return NULL;
		}
	}
	if (config->client_tls != PROXY_TLS_NONE || config->transparent) {
		if (config->cert_file == NULL) {
			p->env.ca = proxy_ca_load(config->ca_dir, err, errlen);
			if (p->env.ca == NULL) {
				*code_r = PROXY_ERR_TLS;
				proxy_free(&p);
				return NULL;
			}
			if (proxy_ca_created(p->env.ca))
				proxy_config_log(&p->config, "--ca %s held no CA: created one; clients must trust %s "
					  "(docs/tls.md)", config->ca_dir, proxy_ca_cert_path(p->env.ca));
		}
		p->env.client_ctx = proxy_tls_client_ctx(config->cert_file, config->key_file, err, errlen);
		if (p->env.client_ctx == NULL) {
			*code_r = PROXY_ERR_TLS;
			proxy_free(&p);
			return NULL;
		}
	}
	if ((config->keylog_file != NULL || config->wiretap != NULL) &&
	    open_keylog(p, err, errlen) < 0) {
		*code_r = PROXY_ERR_TLS;
		proxy_free(&p);
		return NULL;
	}
	if (make_workers(p, sinks, err, errlen) < 0) {
		*code_r = PROXY_ERR_MEMORY;
		proxy_free(&p);
		return NULL;
	}
	rc = start_listening(p, err, errlen);
	if (rc != PROXY_OK) {
		*code_r = (enum proxy_error)rc;
		proxy_free(&p);
		return NULL;
	}
	*code_r = PROXY_OK;
	return p;
}

const char *proxy_listen_str(const struct proxy *p)
{
	return p->listen_str;
}

unsigned proxy_listen_port(const struct proxy *p)
{
	return p->listen_port;
}

const char *proxy_upstream_name(const struct proxy_config *config)
{
	return config->sni != NULL ? config->sni : config->upstream.host;
}

int proxy_listen_is_loopback(const struct proxy *p)
{
	return p->listen_loopback;
}

unsigned proxy_session_count(const struct proxy *p)
{
	return atomic_load(&p->shared.open);
}

unsigned proxy_workers(const struct proxy *p)
{
	return p->workers;
}

struct capture_lock *proxy_outputs_lock(const struct proxy *p)
{
	return p->shared.lock;
}

void proxy_set_thresholds(struct proxy *p, const struct imap_tracker_config *thresholds)
{
	capture_lock_acquire(p->shared.lock);
	p->shared.thresholds = *thresholds;
	capture_lock_release(p->shared.lock);
}

void proxy_shutdown(struct proxy *p)
{
	bool now = p->shutdowns++ > 0;

	for (unsigned i = 0; i < p->workers; i++)
		if (p->worker[i] != NULL)
			proxy_worker_shutdown(p->worker[i], now);
}

void proxy_free(struct proxy **proxy)
{
	struct proxy *p = *proxy;

	if (p == NULL)
		return;
	/* the other loops first: the first one's base is the caller's */
	for (unsigned i = p->workers; i-- > 0;)
		proxy_worker_free(&p->worker[i]);
	if (p->keylog_fd >= 0)
		close(p->keylog_fd);
	for (unsigned i = 0; i < p->env.route_count; i++)
		proxy_route_free(&p->env.routes[i]);
	SSL_CTX_free(p->env.upstream_ctx);
	SSL_CTX_free(p->env.client_ctx);
	proxy_ca_free(&p->env.ca);
	capture_sinks_destroy(&p->locked_sinks);
	capture_lock_free(&p->shared.lock);
	free(p);
	*proxy = NULL;
}
