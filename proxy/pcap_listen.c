#include "proxy/pcap_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "net/socket.h"

#define BACKLOG 16
#define FINAL_FLUSH_MS 2000

struct reader {
	struct bufferevent *bev;
	char name[64];
	struct reader *next;
};

struct proxy_pcap_listen {
	struct evconnlistener *listener;
	struct reader *readers;
	struct evbuffer *preamble; /* what a reader gets first */
	bool sealed;
	capture_log_fn *log;
	void *log_ctx;
	struct capture_sink writer; /* the pcap writer writing into fan_out */
	struct capture_lock *lock;  /* the outputs' (--workers): fan_out runs on every loop */
	uint64_t readers_dropped;
	char bound[64];
};

static void say(struct proxy_pcap_listen *l, const char *name, const char *what)
{
	char line[256];

	if (l->log == NULL)
		return;
	snprintf(line, sizeof(line), "--pcap-listen: reader %s %s", name, what);
	l->log(l->log_ctx, line);
}

static void drop(struct proxy_pcap_listen *l, struct reader *r, const char *why)
{
	struct reader **p = &l->readers;

	while (*p != NULL && *p != r)
		p = &(*p)->next;
	if (*p != NULL)
		*p = r->next;
	say(l, r->name, why);
	bufferevent_free(r->bev);
	free(r);
}

/* The capture's bytes, to every reader; one too far behind goes. */
static ssize_t fan_out(void *ctx, const char *buf, size_t len)
{
	struct proxy_pcap_listen *l = ctx;
	struct reader *r = l->readers, *next;

	if (!l->sealed)
		evbuffer_add(l->preamble, buf, len);
	for (; r != NULL; r = next) {
		next = r->next;
		if (evbuffer_get_length(bufferevent_get_output(r->bev)) + len >
		    PROXY_PCAP_LISTEN_BEHIND_MAX) {
			l->readers_dropped++;
			drop(l, r, "dropped: it fell 8 MiB behind the capture (the relay does not wait "
				   "for readers)");
		} else {
			bufferevent_write(r->bev, buf, len);
		}
	}
	return (ssize_t)len;
}

static void on_read(struct bufferevent *bev, void *ctx)
{
	(void)ctx;
	/* readers have nothing to say */
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

/* ctx is the listener, not the reader: a loop may have dropped the reader
 * (fallen behind) while this callback waited for the lock; libevent keeps
 * bev itself alive until the callback returns, so it is looked up. */
static void on_event(struct bufferevent *bev, short what, void *ctx)
{
	struct proxy_pcap_listen *l = ctx;
	struct reader *r;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	capture_lock_acquire(l->lock);
	for (r = l->readers; r != NULL && r->bev != bev; r = r->next)
		;
	if (r != NULL)
		drop(l, r, "left");
	capture_lock_release(l->lock);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *ctx)
{
	struct proxy_pcap_listen *l = ctx;
	struct reader *r = calloc(1, sizeof(*r));
	int opts = BEV_OPT_CLOSE_ON_FREE;
	size_t n;

	(void)socklen;
	(void)listener;
	if (r == NULL) {
		evutil_closesocket(fd);
		return;
	}
	/* with several loops, any of them writes to a reader: its callbacks
	 * run without its own lock, so that they can take the outputs' one */
	if (l->lock != NULL)
		opts |= BEV_OPT_THREADSAFE | BEV_OPT_DEFER_CALLBACKS | BEV_OPT_UNLOCK_CALLBACKS;
	r->bev = bufferevent_socket_new(evconnlistener_get_base(listener), fd, opts);
	if (r->bev == NULL) {
		evutil_closesocket(fd);
		free(r);
		return;
	}
	capture_lock_acquire(l->lock);
	n = evbuffer_get_length(l->preamble);
	proxy_sockaddr_str(sa, r->name, sizeof(r->name));
	bufferevent_setcb(r->bev, on_read, NULL, on_event, l);
	bufferevent_enable(r->bev, EV_READ | EV_WRITE);
	bufferevent_write(r->bev, evbuffer_pullup(l->preamble, (ev_ssize_t)n), n);
	r->next = l->readers;
	l->readers = r;
	capture_lock_release(l->lock);
	say(l, r->name, "connected");
}

static void listen_free(struct proxy_pcap_listen *l)
{
	while (l->readers != NULL) {
		struct reader *r = l->readers;

		l->readers = r->next;
		bufferevent_free(r->bev);
		free(r);
	}
	if (l->listener != NULL)
		evconnlistener_free(l->listener);
	if (l->preamble != NULL)
		evbuffer_free(l->preamble);
	free(l);
}

/* The sink: the writer's, and at its end the listener too. */
#define FORWARD(op, ...)                                                        \
	do {                                                                    \
		struct proxy_pcap_listen *l = self;                             \
		if (l->writer.ops->op != NULL)                                  \
			l->writer.ops->op(l->writer.self, __VA_ARGS__);         \
	} while (0)

static void pl_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	FORWARD(settings, ts, s);
}

static void pl_open(void *self, const struct capture_session_info *info)
{
	FORWARD(open, info);
}

static void pl_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		     const uint8_t *data, size_t len, uint64_t secret_from)
{
	FORWARD(bytes, session, dir, ts, data, len, secret_from);
}

static void pl_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	FORWARD(observe, session, obs);
}

static void pl_anomaly(void *self, unsigned session, const struct imap_anomaly *a)
{
	FORWARD(anomaly, session, a);
}

static void pl_flow(void *self, unsigned session, imap_time_us ts, enum imap_dir dir, bool blocked,
		    uint64_t pending)
{
	FORWARD(flow, session, ts, dir, blocked, pending);
}

static void pl_fault(void *self, unsigned session, const struct capture_fault_mark *mark)
{
	FORWARD(fault, session, mark);
}

static void pl_close(void *self, const struct capture_close_info *info)
{
	FORWARD(close, info);
}

static void pl_flush(void *self)
{
	struct proxy_pcap_listen *l = self;

	if (l->writer.ops->flush != NULL)
		l->writer.ops->flush(l->writer.self);
}

static void pl_stats(void *self, struct capture_output_stats *stats)
{
	struct proxy_pcap_listen *l = self;

	l->writer.ops->stats(l->writer.self, stats);
	stats->output = "pcap-listen";
	stats->readers_dropped = l->readers_dropped;
}

/* The loops have stopped, so nothing sends what is queued for the readers
 * any more: it goes out now, blocking, within FINAL_FLUSH_MS for all of
 * them (a reader that does not read is left with what it has). */
static void flush_readers(struct proxy_pcap_listen *l)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (struct reader *r = l->readers; r != NULL; r = r->next) {
		struct evbuffer *out = bufferevent_get_output(r->bev);
		evutil_socket_t fd = bufferevent_getfd(r->bev);
		long left_ms;
		struct timeval limit;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left_ms = FINAL_FLUSH_MS - ((now.tv_sec - start.tv_sec) * 1000 +
					    (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left_ms <= 0)
			return;
		limit.tv_sec = left_ms / 1000;
		limit.tv_usec = (left_ms % 1000) * 1000;
		if (fd < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit)) != 0)
			continue;
		/* a bufferevent keeps its output's start frozen for itself */
		evbuffer_unfreeze(out, 1);
		while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
			;
	}
}

static void pl_destroy(void *self)
{
	struct proxy_pcap_listen *l = self;

	/* the writer's last bytes go to the readers still there */
	l->writer.ops->destroy(l->writer.self);
	flush_readers(l);
	listen_free(l);
}

static const struct capture_sink_ops listen_ops = {
	.settings = pl_settings,
	.open = pl_open,
	.bytes = pl_bytes,
	.observe = pl_observe,
	.anomaly = pl_anomaly,
	.flow = pl_flow,
	.fault = pl_fault,
	.close = pl_close,
	.flush = pl_flush,
	.stats = pl_stats,
	.destroy = pl_destroy,
};

static bool start_listening(struct proxy_pcap_listen *l, struct event_base *base,
			    const struct proxy_hostport *where, bool remote, char *err,
			    size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned port;
	char why[256];
	int fd = net_listen_tcp(where->host, where->port, BACKLOG, &ss, &port, why, sizeof(why));

	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s:%u: %s", where->host, where->port, why);
		return false;
	}
	if (!remote && !proxy_sockaddr_is_loopback((struct sockaddr *)&ss)) {
		evutil_closesocket(fd);
		snprintf(err, errlen, "%s is not a loopback address: the capture holds mail; "
			 "--allow-remote serves it to other hosts", where->host);
		return false;
	}
	proxy_sockaddr_str((struct sockaddr *)&ss, l->bound, sizeof(l->bound));
	/* libevent accepts until EAGAIN: a blocking socket would stall the relay */
	evutil_make_socket_nonblocking(fd);
	l->listener = evconnlistener_new(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE, BACKLOG, fd);
	if (l->listener == NULL) {
		evutil_closesocket(fd);
		snprintf(err, errlen, "cannot listen on %s: out of memory", l->bound);
		return false;
	}
	return true;
}

struct proxy_pcap_listen *proxy_pcap_listen_new(struct event_base *base,
						const struct proxy_hostport *where, bool remote,
						capture_log_fn *log, void *log_ctx,
						struct capture_lock *lock,
						struct capture_sink *sink_r, char *err,
						size_t errlen)
{
	struct proxy_pcap_listen *l = calloc(1, sizeof(*l));
	struct capture_pcap_config pc = {
		.path = "--pcap-listen",
		.format = CAPTURE_PCAP_CLASSIC,
		.log = log,
		.log_ctx = log_ctx,
		.stream = fan_out,
	};

	if (l == NULL || (l->preamble = evbuffer_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		if (l != NULL)
			listen_free(l);
		return NULL;
	}
	l->log = log;
	l->log_ctx = log_ctx;
	l->lock = lock;
	pc.stream_ctx = l;
	if (!start_listening(l, base, where, remote, err, errlen)) {
		listen_free(l);
		return NULL;
	}
	if (capture_pcap_writer_new(&pc, &l->writer, NULL, err, errlen) != 0) {
		listen_free(l);
		return NULL;
	}
	*sink_r = (struct capture_sink){&listen_ops, l};
	return l;
}

const char *proxy_pcap_listen_str(const struct proxy_pcap_listen *l)
{
	return l->bound;
}

void proxy_pcap_listen_seal(struct proxy_pcap_listen *l)
{
	l->sealed = true;
}
