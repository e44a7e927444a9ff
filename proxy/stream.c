/* A non-blocking socket with an input and an output evbuffer, driven by
 * libevent events (docs/design-notes.md says why not bufferevents); TLS
 * over it is proxy/stream_tls.c. */
#include "proxy/stream.h"
#include "proxy/peer.h"
#include "proxy/stream_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

static void stream_destroy(struct proxy_stream *s)
{
	SSL_free(s->ssl);
	free(s->error_text);
	if (s->tap_in != NULL)
		evbuffer_free(s->tap_in);
	if (s->tls_out != NULL)
		evbuffer_free(s->tls_out);
	if (s->ev_read != NULL)
		event_free(s->ev_read);
	if (s->ev_write != NULL)
		event_free(s->ev_write);
	if (s->input != NULL)
		evbuffer_free(s->input);
	if (s->output != NULL)
		evbuffer_free(s->output);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

/* Calls the owner's callback; returns false when the stream was freed in
 * it, so the caller must not touch it again. */
bool stream_notify(struct proxy_stream *s, enum proxy_stream_event event)
{
	s->in_callback++;
	s->cb(s, event, s->ctx);
	s->in_callback--;
	if (s->dead && s->in_callback == 0) {
		stream_destroy(s);
		return false;
	}
	return !s->dead;
}

static struct proxy_stream *make(struct event_base *base, int fd, proxy_stream_cb *cb, void *ctx)
{
	struct proxy_stream *s = calloc(1, sizeof(*s));
	int one = 1;

	if (s == NULL)
		return NULL;
	s->fd = fd;
	s->cb = cb;
	s->ctx = ctx;
	s->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, s);
	s->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
	s->input = evbuffer_new();
	s->output = evbuffer_new();
	if (s->ev_read == NULL || s->ev_write == NULL || s->input == NULL || s->output == NULL) {
		s->fd = -1; /* the caller keeps its descriptor */
		stream_destroy(s);
		return NULL;
	}
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	/* IMAP is many small lines each way: do not hold them for ACKs */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s;
}

struct proxy_stream *proxy_stream_new(struct event_base *base, int fd, proxy_stream_cb *cb,
				      void *ctx)
{
	return make(base, fd, cb, ctx);
}

struct proxy_stream *proxy_stream_connect(struct event_base *base, const struct sockaddr *sa,
					  socklen_t len, proxy_stream_cb *cb, void *ctx,
					  int *err_r)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct proxy_stream *s;

	if (fd < 0) {
		*err_r = errno;
		return NULL;
	}
	s = make(base, fd, cb, ctx);
	if (s == NULL) {
		close(fd);
		*err_r = ENOMEM;
		return NULL;
	}
	if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
		*err_r = errno;
		stream_destroy(s);
		return NULL;
	}
	s->connecting = true;
	event_add(s->ev_write, NULL);
	return s;
}

void proxy_stream_free(struct proxy_stream **stream)
{
	struct proxy_stream *s = *stream;

	if (s == NULL)
		return;
	*stream = NULL;
	s->tap = NULL; /* its owner said goodbye to the tap already */
	if (s->in_callback > 0) {
		event_del(s->ev_read);
		event_del(s->ev_write);
		s->dead = true;
		return;
	}
	stream_destroy(s);
}

struct evbuffer *proxy_stream_input(struct proxy_stream *s)
{
	return s->input;
}

struct evbuffer *proxy_stream_output(struct proxy_stream *s)
{
	return s->output;
}

int proxy_stream_error(const struct proxy_stream *s)
{
	return s->error;
}

const char *proxy_stream_error_text(const struct proxy_stream *s)
{
	if (s->error_text != NULL)
		return s->error_text;
	return strerror(s->error);
}

size_t proxy_stream_pending(const struct proxy_stream *s)
{
	return evbuffer_get_length(s->output) +
	       (s->tls_out != NULL ? evbuffer_get_length(s->tls_out) : 0);
}

uint64_t proxy_stream_written(const struct proxy_stream *s)
{
	return s->written;
}

bool proxy_stream_peer_progress(const struct proxy_stream *s, uint64_t *acked_r, size_t *unsent_r)
{
	return proxy_peer_progress(s->fd, acked_r, unsent_r);
}

SSL *proxy_stream_ssl(const struct proxy_stream *s)
{
	return s->ssl;
}

void proxy_stream_set_tap(struct proxy_stream *s, proxy_stream_tap *tap, void *ctx)
{
	s->tap = tap;
	s->tap_ctx = ctx;
}

int proxy_stream_fd(const struct proxy_stream *s)
{
	return s->fd;
}

int stream_send(struct proxy_stream *s, struct evbuffer *buf, ev_ssize_t atmost)
{
	struct evbuffer_iovec vec[16];
	struct iovec iov[16];
	size_t want = atmost < 0 ? evbuffer_get_length(buf) : (size_t)atmost, total = 0;
	ssize_t n;
	int nvec;

	if (s->tap == NULL)
		return evbuffer_write_atmost(buf, s->fd, atmost);
	/* what evbuffer_write_atmost() does, with the bytes in hand */
	stream_tap_flush_in(s);
	nvec = evbuffer_peek(buf, (ev_ssize_t)want, NULL, vec, 16);
	if (nvec > 16)
		nvec = 16;
	for (int i = 0; i < nvec; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len < want - total ? vec[i].iov_len : want - total;
		total += iov[i].iov_len;
	}
	if (nvec <= 0 || total == 0)
		return 0;
	n = writev(s->fd, iov, nvec);
	if (n <= 0)
		return (int)n;
	total = (size_t)n;
	for (int i = 0; i < nvec && total > 0; i++) {
		size_t take = iov[i].iov_len < total ? iov[i].iov_len : total;

		s->tap(s->tap_ctx, true, iov[i].iov_base, take);
		total -= take;
	}
	evbuffer_drain(buf, (size_t)n);
	return (int)n;
}

void stream_tap_flush_in(struct proxy_stream *s)
{
	struct evbuffer_iovec vec[16];
	int n;

	if (s->tap == NULL || s->tap_in == NULL)
		return;
	while (evbuffer_get_length(s->tap_in) > 0) {
		size_t done = 0;

		n = evbuffer_peek(s->tap_in, -1, NULL, vec, 16);
		if (n > 16)
			n = 16;
		for (int i = 0; i < n; i++) {
			s->tap(s->tap_ctx, false, vec[i].iov_base, vec[i].iov_len);
			done += vec[i].iov_len;
		}
		evbuffer_drain(s->tap_in, done);
	}
}

void proxy_stream_set_reading(struct proxy_stream *s, bool on)
{
	if (on == s->reading)
		return;
	s->reading = on;
	if (s->tls == TLS_HANDSHAKE || s->tls == TLS_PAUSED)
		return; /* the handshake decides what it waits for */
	if (on) {
		event_add(s->ev_read, NULL);
		/* records OpenSSL already decrypted wake no poller */
		if (s->ssl != NULL && SSL_has_pending(s->ssl))
			event_active(s->ev_read, EV_READ, 1);
	} else {
		event_del(s->ev_read);
	}
}

void proxy_stream_set_low_water(struct proxy_stream *s, size_t low)
{
	s->low_water = low;
}

void stream_fail_later(struct proxy_stream *s, int err)
{
	if (s->error_pending)
		return;
	s->error = err;
	s->error_pending = true;
	event_active(s->ev_write, EV_WRITE, 1);
}

/* Writes what it can; true when the output is now empty. A re-split
 * stream writes one piece per call, once the kernel has sent the last
 * one: the socket's next writable event brings the next piece, and the
 * loop serves everything else in between. */
static bool write_some(struct proxy_stream *s)
{
	if (s->tls == TLS_ON)
		return stream_write_tls(s);
	while (evbuffer_get_length(s->output) > 0) {
		const bool cuts = split_pacer_cuts(&s->pacer);
		int n;

		if (cuts) {
			size_t len = split_pacer_next(&s->pacer, s->fd, evbuffer_get_length(s->output));

			if (len == 0)
				return false;
			n = stream_send(s, s->output, (ev_ssize_t)len);
		} else {
			n = stream_send(s, s->output, -1);
		}

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			stream_fail_later(s, errno);
			return false;
		}
		if (n == 0)
			break;
		s->written += (uint64_t)n;
		if (cuts) {
			split_pacer_wrote(&s->pacer, (size_t)n);
			break;
		}
	}
	if (evbuffer_get_length(s->output) > 0)
		return false;
	if (s->want_shut && !s->shut) {
		shutdown(s->fd, SHUT_WR);
		s->shut = true;
	}
	return true;
}

void proxy_stream_flush(struct proxy_stream *s)
{
	if (s->connecting || s->error_pending || s->tls == TLS_HANDSHAKE || s->tls == TLS_PAUSED)
		return;
	if (write_some(s))
		event_del(s->ev_write);
	else if (!s->error_pending)
		event_add(s->ev_write, NULL);
}

void proxy_stream_set_split(struct proxy_stream *s, struct imap_split *split)
{
	split_pacer_set(&s->pacer, s->fd, split);
}

void proxy_stream_shutdown_write(struct proxy_stream *s)
{
	s->want_shut = true;
	proxy_stream_flush(s);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_stream *s = arg;

	(void)fd;
	(void)what;
	if (s->error_pending) {
		event_del(s->ev_write);
		event_del(s->ev_read);
		stream_notify(s, PROXY_STREAM_ERROR);
		return;
	}
	if (s->tls == TLS_HANDSHAKE) {
		stream_handshake(s);
		return;
	}
	if (s->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == EINPROGRESS)
			return;
		s->connecting = false;
		event_del(s->ev_write);
		if (err != 0) {
			s->error = err;
			stream_notify(s, PROXY_STREAM_ERROR);
			return;
		}
		if (!stream_notify(s, PROXY_STREAM_CONNECTED))
			return;
		proxy_stream_flush(s);
		return;
	}
	if (write_some(s))
		event_del(s->ev_write);
	if (s->error_pending)
		return;
	if (proxy_stream_pending(s) <= s->low_water)
		stream_notify(s, PROXY_STREAM_DRAINED);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_stream *s = arg;

	if (s->tls == TLS_HANDSHAKE) {
		stream_handshake(s);
		return;
	}
	if (s->tls == TLS_ON) {
		stream_read_tls(s);
		return;
	}
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	int avail = 0, nvec;
	size_t want;
	ssize_t n;

	(void)what;
	/* Asking the kernel how much is queued costs a system call: worth it
	 * only while data streams in; a line or two fits in MIN_READ. */
	if (!s->streaming || ioctl(fd, FIONREAD, &avail) < 0 || avail < MIN_READ)
		avail = MIN_READ;
	want = (size_t)avail < PROXY_STREAM_MAX_READ ? (size_t)avail : PROXY_STREAM_MAX_READ;
	nvec = evbuffer_reserve_space(s->input, (ev_ssize_t)want, vec, 2);
	if (nvec <= 0) {
		s->error = ENOMEM;
		proxy_stream_set_reading(s, false);
		stream_notify(s, PROXY_STREAM_ERROR);
		return;
	}
	for (int i = 0; i < nvec; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len;
	}
	n = readv(fd, iov, nvec);
	if (n < 0) {
		evbuffer_commit_space(s->input, vec, 0);
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		s->error = errno;
		proxy_stream_set_reading(s, false);
		stream_notify(s, PROXY_STREAM_ERROR);
		return;
	}
	if (n == 0) {
		evbuffer_commit_space(s->input, vec, 0);
		proxy_stream_set_reading(s, false);
		stream_notify(s, PROXY_STREAM_EOF);
		return;
	}
	s->streaming = (size_t)n >= want;
	if (s->tap != NULL) {
		size_t left = (size_t)n;

		for (int i = 0; i < nvec && left > 0; i++) {
			size_t take = left < vec[i].iov_len ? left : vec[i].iov_len;

			s->tap(s->tap_ctx, false, vec[i].iov_base, take);
			left -= take;
		}
	}
	for (int i = 0; i < nvec; i++) {
		size_t take = (size_t)n < vec[i].iov_len ? (size_t)n : vec[i].iov_len;

		vec[i].iov_len = take;
		n -= (ssize_t)take;
		if (take == 0)
			nvec = i;
	}
	evbuffer_commit_space(s->input, vec, nvec);
	stream_notify(s, PROXY_STREAM_READ);
}
