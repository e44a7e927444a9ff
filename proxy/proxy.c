#include "proxy/proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/listener.h>

#include "capture/outfile.h"
#include "proxy/clock.h"
#include "proxy/session.h"
#include "proxy/tls.h"

#define SHUTDOWN_GRACE_S 3
#define ACCEPT_RETRY_S 1

struct proxy {
	struct event_base *base;
	struct proxy_config config;
	struct session_env env; /* what sessions see of the proxy */
	struct session_set sessions;
	int keylog_fd;         /* -1 without --keylog */
	struct evconnlistener *listener;
	struct event *accept_retry;
	struct event *shutdown_deadline;
	char listen_str[CAPTURE_ADDR_MAX];
	unsigned listen_port;
	int listen_loopback;
	uint64_t refused;          /* clients turned away by max_sessions */
	uint64_t refused_reported; /* of those, already in a log line */
	imap_time_us refused_logged;
	int shutting_down;
};

static void proxy_log(const struct proxy *proxy, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void proxy_log(const struct proxy *p, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (p->config.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->config.log(p->config.log_ctx, msg);
}

static int resolve(const struct proxy_hostport *hp, int passive, struct addrinfo **res,
		   char *err, size_t errlen)
{
	struct addrinfo hints = {0};
	char port[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG | (passive ? AI_PASSIVE : 0);
	snprintf(port, sizeof(port), "%u", hp->port);
	rc = getaddrinfo(hp->host, port, &hints, res);
	if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME || rc == EAI_FAIL) {
		/* AI_ADDRCONFIG hides loopback-only families on hosts without
		 * other interfaces; ask again without it */
		hints.ai_flags &= ~AI_ADDRCONFIG;
		rc = getaddrinfo(hp->host, port, &hints, res);
	}
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve '%s': %s", hp->host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	return 0;
}

/* One more client than --max-sessions: told why where it can read it (a
 * TLS client cannot), closed, and logged at most once a second. */
static void refuse(struct proxy *p, evutil_socket_t fd, const struct sockaddr *sa)
{
	char bye[200], who[CAPTURE_ADDR_MAX];
	imap_time_us now = proxy_now();
	int n;

	if (p->config.client_tls != PROXY_TLS_IMPLICIT) {
		n = snprintf(bye, sizeof(bye),
			     "* BYE [UNAVAILABLE] imaptap: %u sessions open, the most --max-sessions "
			     "allows; try again later\r\n",
			     p->sessions.count);
		/* a fresh socket has room for one line; never wait for it, and
		 * a client already gone needs no telling */
		(void)send(fd, bye, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	close(fd);
	p->refused++;
	if (p->refused_reported != 0 && now - p->refused_logged < IMAP_US_PER_S)
		return;
	proxy_sockaddr_str(sa, who, sizeof(who));
	if (p->refused - p->refused_reported > 1)
		proxy_log(p, "refused %s and %" PRIu64 " more client(s): %u sessions open, "
			  "--max-sessions %u", who, p->refused - p->refused_reported - 1,
			  p->sessions.count, p->config.max_sessions);
	else
		proxy_log(p, "refused %s: %u sessions open, --max-sessions %u", who,
			  p->sessions.count, p->config.max_sessions);
	p->refused_reported = p->refused;
	p->refused_logged = now;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct proxy *p = arg;

	(void)l;
	(void)salen;
	if (p->shutting_down) {
		close(fd);
		return;
	}
	if (p->config.max_sessions > 0 && p->sessions.count >= p->config.max_sessions) {
		refuse(p, fd, sa);
		return;
	}
	proxy_session_start(&p->env, &p->sessions, fd, sa);
}

static void session_gone(void *owner)
{
	struct proxy *p = owner;

	if (p->shutting_down && p->sessions.count == 0)
		event_base_loopexit(p->base, NULL);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;

	(void)fd;
	(void)what;
	if (!p->shutting_down && p->listener != NULL)
		evconnlistener_enable(p->listener);
}

static bool out_of_resources(void *owner, int err)
{
	struct proxy *p = owner;
	struct timeval again = {ACCEPT_RETRY_S, 0};

	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return false;
	if (p->listener == NULL || evtimer_pending(p->accept_retry, NULL))
		return true;
	/* stop accepting for a while instead of spinning on a listener that
	 * stays readable, or taking clients that cannot be served */
	proxy_log(p, "out of %s (%s): pausing accepts for %d s (%u sessions open); raise the "
		  "descriptor limit or lower --max-sessions",
		  err == EMFILE || err == ENFILE ? "descriptors" : "memory", strerror(err),
		  ACCEPT_RETRY_S, p->sessions.count);
	evconnlistener_disable(p->listener);
	evtimer_add(p->accept_retry, &again);
	return true;
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct proxy *p = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	if (!out_of_resources(p, err))
		proxy_log(p, "accept failed: %s", strerror(err));
}

static int start_listening(struct proxy *p, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int last_errno = 0;

	if (resolve(&p->config.listen, 1, &res, err, errlen) < 0)
		return PROXY_ERR_RESOLVE;
	for (ai = res; ai != NULL && p->listener == NULL; ai = ai->ai_next) {
		p->listener = evconnlistener_new_bind(
			p->base, on_accept, p,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
			ai->ai_addr, (int)ai->ai_addrlen);
		if (p->listener == NULL)
			last_errno = errno;
	}
	freeaddrinfo(res);
	if (p->listener == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s%s", p->config.listen.host,
			 p->config.listen.port, strerror(last_errno),
			 last_errno == EADDRINUSE
				 ? " (another program uses this port: pick another with --listen, or port 0 for any free one)"
			 : last_errno == EACCES ? " (ports below 1024 need privileges: pick a higher port)"
						: "");
		return PROXY_ERR_LISTEN;
	}
	evconnlistener_set_error_cb(p->listener, on_accept_error);
	{
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		evutil_socket_t fd = evconnlistener_get_fd(p->listener);

		if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
			proxy_sockaddr_str((struct sockaddr *)&ss, p->listen_str, sizeof(p->listen_str));
			p->listen_loopback = proxy_sockaddr_is_loopback((struct sockaddr *)&ss);
			p->listen_port = ntohs(ss.ss_family == AF_INET6
						       ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
		}
	}
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

	if (tap != NULL)
		tap->secret(tap->ctx, line);
	if (p == NULL || p->keylog_fd < 0)
		return;
	n = snprintf(buf, sizeof(buf), "%s\n", line);
	if (n > 0 && (size_t)n < sizeof(buf) && write(p->keylog_fd, buf, (size_t)n) != n)
		proxy_log(p, "cannot write the key log: %s", strerror(errno));
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
			proxy_log(p, "--keylog: neither leg uses TLS, so %s stays empty",
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

struct proxy *proxy_new(struct event_base *base, const struct proxy_config *config,
			const struct capture_sinks *sinks, enum proxy_error *code_r, char *err,
			size_t errlen)
{
	struct proxy *p = calloc(1, sizeof(*p));
	struct addrinfo *res, *ai;
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
	p->env.base = base;
	p->env.config = &p->config;
	p->env.sinks = sinks;
	p->env.out_of_resources = out_of_resources;
	p->env.gone = session_gone;
	p->env.owner = p;
	session_set_init(&p->sessions);
	p->keylog_fd = -1;
	p->accept_retry = evtimer_new(base, on_accept_retry, p);
	if (resolve(&config->upstream, 0, &res, err, errlen) < 0) {
		*code_r = PROXY_ERR_RESOLVE;
		proxy_free(&p);
		return NULL;
	}
	for (ai = res; ai != NULL && p->env.upstream_addr_count < SESSION_UPSTREAM_ADDR_MAX; ai = ai->ai_next) {
		memcpy(&p->env.upstream_addr[p->env.upstream_addr_count], ai->ai_addr, ai->ai_addrlen);
		p->env.upstream_addr_len[p->env.upstream_addr_count++] = (socklen_t)ai->ai_addrlen;
	}
	freeaddrinfo(res);
	proxy_sockaddr_str((struct sockaddr *)&p->env.upstream_addr[0], p->env.upstream_str,
			   sizeof(p->env.upstream_str));
	if (config->upstream_tls != PROXY_TLS_NONE) {
		p->env.upstream_ctx = proxy_tls_upstream_ctx(config->upstream_ca,
							 config->insecure_upstream, err, errlen);
		if (p->env.upstream_ctx == NULL) {
			*code_r = PROXY_ERR_TLS;
			proxy_free(&p);
			return NULL;
		}
	}
	if (config->client_tls != PROXY_TLS_NONE) {
		if (config->cert_file == NULL) {
			p->env.ca = proxy_ca_load(config->ca_dir, err, errlen);
			if (p->env.ca == NULL) {
				*code_r = PROXY_ERR_TLS;
				proxy_free(&p);
				return NULL;
			}
			if (proxy_ca_created(p->env.ca))
				proxy_log(p, "--ca %s held no CA: created one; clients must trust %s "
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

const char *proxy_upstream_str(const struct proxy *p)
{
	return p->env.upstream_str;
}

int proxy_listen_is_loopback(const struct proxy *p)
{
	return p->listen_loopback;
}

unsigned proxy_session_count(const struct proxy *p)
{
	return p->sessions.count;
}

static void on_shutdown_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;

	(void)fd;
	(void)what;
	proxy_log(p, "%u session(s) still flushing after %d s; exiting anyway", p->sessions.count,
		  SHUTDOWN_GRACE_S);
	event_base_loopexit(p->base, NULL);
}

void proxy_shutdown(struct proxy *p)
{
	struct timeval grace = {SHUTDOWN_GRACE_S, 0};

	if (p->shutting_down) {
		event_base_loopexit(p->base, NULL);
		return;
	}
	p->shutting_down = 1;
	if (p->listener != NULL) {
		evconnlistener_free(p->listener);
		p->listener = NULL;
	}
	if (p->sessions.count == 0) {
		event_base_loopexit(p->base, NULL);
		return;
	}
	p->shutdown_deadline = evtimer_new(p->base, on_shutdown_deadline, p);
	if (p->shutdown_deadline != NULL)
		evtimer_add(p->shutdown_deadline, &grace);
	proxy_session_stop_all(&p->sessions, "proxy shutting down");
}

void proxy_free(struct proxy **proxy)
{
	struct proxy *p = *proxy;

	if (p == NULL)
		return;
	if (p->listener != NULL)
		evconnlistener_free(p->listener);
	proxy_session_stop_all(&p->sessions, NULL);
	if (p->accept_retry != NULL)
		event_free(p->accept_retry);
	if (p->shutdown_deadline != NULL)
		event_free(p->shutdown_deadline);
	if (p->keylog_fd >= 0)
		close(p->keylog_fd);
	SSL_CTX_free(p->env.upstream_ctx);
	SSL_CTX_free(p->env.client_ctx);
	proxy_ca_free(&p->env.ca);
	free(p);
	*proxy = NULL;
}
