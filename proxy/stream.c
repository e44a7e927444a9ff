#include "proxy/stream.h"
#include "net/split_pacer.h"
#include "proxy/peer.h"

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

#define MIN_READ 4096
#define TLS_WRITE_MAX (64 * 1024)
/* TLS records are gathered in tls_out up to this much before the socket
 * gets them: one write(2) per 16 KiB record made fifteen times as many
 * write calls on a bulk transfer. */
#define TLS_OUT_MAX (256 * 1024)

enum tls_state {
	TLS_OFF,
	TLS_HANDSHAKE,
	TLS_PAUSED, /* waiting for proxy_stream_tls_resume() */
	TLS_ON,
};

struct proxy_stream {
	int fd;
	struct event *ev_read;
	struct event *ev_write;
	struct evbuffer *input;
	struct evbuffer *output;
	proxy_stream_cb *cb;
	void *ctx;
	size_t low_water;
	int error;
	bool connecting;
	bool reading;
	bool want_shut;
	bool shut;
	bool error_pending; /* an error to report from the loop */
	bool streaming;      /* the last read filled what it reserved */
	int in_callback;    /* depth of callbacks on the stack */
	bool dead;          /* freed while a callback was running */
	SSL *ssl;
	enum tls_state tls;
	struct evbuffer *tls_out; /* records OpenSSL wrote, not yet sent */
	bool close_notify_sent;
	char error_text[256];
	uint64_t written; /* application bytes taken by the socket or TLS */
	struct split_pacer pacer; /* a re-split stream: one piece per write, paced */
};

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

static void destroy(struct proxy_stream *s)
{
	SSL_free(s->ssl);
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
static bool notify(struct proxy_stream *s, enum proxy_stream_event event)
{
	s->in_callback++;
	s->cb(s, event, s->ctx);
	s->in_callback--;
	if (s->dead && s->in_callback == 0) {
		destroy(s);
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
		destroy(s);
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
		destroy(s);
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
	if (s->in_callback > 0) {
		event_del(s->ev_read);
		event_del(s->ev_write);
		s->dead = true;
		return;
	}
	destroy(s);
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
	if (s->error_text[0] != '\0')
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

/* Keeps OpenSSL's first reason (and the certificate verdict) as words. */
static void take_tls_error(struct proxy_stream *s, int ssl_err)
{
	unsigned long e = ERR_peek_error();
	long verify = s->ssl != NULL ? SSL_get_verify_result(s->ssl) : X509_V_OK;

	s->error = EPROTO;
	if (verify != X509_V_OK) {
		snprintf(s->error_text, sizeof(s->error_text), "certificate verify failed: %s",
			 X509_verify_cert_error_string(verify));
	} else if (e != 0) {
		const char *reason = ERR_reason_error_string(e);

		snprintf(s->error_text, sizeof(s->error_text), "%s",
			 reason != NULL ? reason : "TLS error");
	} else if (ssl_err == SSL_ERROR_SYSCALL) {
		snprintf(s->error_text, sizeof(s->error_text), "%s",
			 errno ? strerror(errno) : "connection closed during the TLS handshake");
		if (errno)
			s->error = errno;
	} else {
		snprintf(s->error_text, sizeof(s->error_text), "TLS error %d", ssl_err);
	}
	ERR_clear_error();
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

static void fail_later(struct proxy_stream *s, int err)
{
	if (s->error_pending)
		return;
	s->error = err;
	s->error_pending = true;
	event_active(s->ev_write, EV_WRITE, 1);
}

/* Sends the records gathered in tls_out; true when none is left. */
static bool send_tls_out(struct proxy_stream *s)
{
	if (s->tls_out == NULL)
		return true; /* socket BIOs (out of memory at the start of TLS) */
	while (evbuffer_get_length(s->tls_out) > 0) {
		int n = evbuffer_write(s->tls_out, s->fd);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return false;
			if (errno == EINTR)
				continue;
			fail_later(s, errno);
			return false;
		}
		if (n == 0)
			return false;
	}
	return true;
}

/* OpenSSL's write side of a stream: records are appended to tls_out, and
 * send_tls_out() gives them to the socket in large writes. */
static int tls_out_write(BIO *bio, const char *data, int len)
{
	struct proxy_stream *s = BIO_get_data(bio);

	if (len <= 0)
		return 0;
	if (evbuffer_add(s->tls_out, data, (size_t)len) < 0)
		return -1;
	return len;
}

static long tls_out_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct proxy_stream *s = BIO_get_data(bio);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* the stream sends after each step */
	case BIO_CTRL_WPENDING:
		return (long)evbuffer_get_length(s->tls_out);
	default:
		return 0;
	}
}

static int tls_out_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static BIO_METHOD *tls_out_method(void)
{
	static BIO_METHOD *method; /* one for the process, never freed */

	if (method == NULL) {
		method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "imaptap tls_out");
		if (method != NULL &&
		    (!BIO_meth_set_write(method, tls_out_write) ||
		     !BIO_meth_set_ctrl(method, tls_out_ctrl) ||
		     !BIO_meth_set_create(method, tls_out_create))) {
			BIO_meth_free(method);
			method = NULL;
		}
	}
	return method;
}

/* After an OpenSSL call that may have written: sends, and waits for the
 * socket if it did not take everything. */
static void send_tls_out_or_wait(struct proxy_stream *s)
{
	if (!send_tls_out(s) && !s->error_pending)
		event_add(s->ev_write, NULL);
}

/* TLS: encrypts what the output holds, record by record, and sends the
 * records in writes of up to TLS_OUT_MAX. A re-split stream makes one
 * record of one piece per call, once the kernel has sent the last one. */
static bool write_some_tls(struct proxy_stream *s)
{
	const bool cuts = split_pacer_cuts(&s->pacer);

	while (evbuffer_get_length(s->output) > 0) {
		struct evbuffer_iovec v;
		size_t len;
		int n;

		if (proxy_stream_pending(s) - evbuffer_get_length(s->output) >= TLS_OUT_MAX &&
		    !send_tls_out(s))
			return false;
		if (evbuffer_peek(s->output, -1, NULL, &v, 1) < 1)
			break;
		len = v.iov_len < TLS_WRITE_MAX ? v.iov_len : TLS_WRITE_MAX;
		if (cuts) {
			/* the last record all in the kernel, and sent by it */
			if (!send_tls_out(s))
				return false;
			len = split_pacer_next(&s->pacer, s->fd, evbuffer_get_length(s->output));
			if (len == 0)
				return false;
			len = len < TLS_WRITE_MAX ? len : TLS_WRITE_MAX;
			v.iov_base = evbuffer_pullup(s->output, (ev_ssize_t)len);
			if (v.iov_base == NULL)
				break;
		}
		ERR_clear_error();
		n = SSL_write(s->ssl, v.iov_base, (int)len);
		if (n > 0) {
			s->written += (uint64_t)n;
			evbuffer_drain(s->output, (size_t)n);
			if (cuts) {
				split_pacer_wrote(&s->pacer, (size_t)n);
				/* the next piece on a later turn of the loop */
				send_tls_out(s);
				return false;
			}
			continue;
		}
		switch (SSL_get_error(s->ssl, n)) {
		case SSL_ERROR_WANT_WRITE:
			return false;
		case SSL_ERROR_WANT_READ:
			event_add(s->ev_read, NULL);
			return false;
		default:
			take_tls_error(s, SSL_ERROR_SSL);
			s->error_pending = false;
			fail_later(s, s->error);
			return false;
		}
	}
	if (!send_tls_out(s))
		return false;
	if (s->want_shut && !s->shut) {
		if (!s->close_notify_sent) {
			SSL_shutdown(s->ssl); /* close_notify, then FIN */
			s->close_notify_sent = true;
			if (!send_tls_out(s))
				return false;
		}
		shutdown(s->fd, SHUT_WR);
		s->shut = true;
	}
	return true;
}

/* Writes what it can; true when the output is now empty. A re-split
 * stream writes one piece per call, once the kernel has sent the last
 * one: the socket's next writable event brings the next piece, and the
 * loop serves everything else in between. */
static bool write_some(struct proxy_stream *s)
{
	if (s->tls == TLS_ON)
		return write_some_tls(s);
	while (evbuffer_get_length(s->output) > 0) {
		const bool cuts = split_pacer_cuts(&s->pacer);
		int n;

		if (cuts) {
			size_t len = split_pacer_next(&s->pacer, s->fd, evbuffer_get_length(s->output));

			if (len == 0)
				return false;
			n = evbuffer_write_atmost(s->output, s->fd, (ev_ssize_t)len);
		} else {
			n = evbuffer_write(s->output, s->fd);
		}

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			fail_later(s, errno);
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

/* Drives the handshake one step; notifies READY, HELLO or ERROR. */
static void handshake(struct proxy_stream *s)
{
	int r, err;

	ERR_clear_error();
	r = SSL_do_handshake(s->ssl);
	/* a flight is sent whole or the rest waits for the socket; a failed
	 * handshake's alert gets one try */
	if (!send_tls_out(s) && !s->error_pending && r != 1)
		event_add(s->ev_write, NULL);
	if (r == 1) {
		s->tls = TLS_ON;
		event_del(s->ev_write);
		if (s->reading)
			event_add(s->ev_read, NULL);
		else
			event_del(s->ev_read);
		if (!notify(s, PROXY_STREAM_TLS_READY))
			return;
		proxy_stream_flush(s);
		if (s->reading && SSL_has_pending(s->ssl))
			event_active(s->ev_read, EV_READ, 1);
		return;
	}
	err = SSL_get_error(s->ssl, r);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		event_add(s->ev_read, NULL);
		if (s->tls_out == NULL || evbuffer_get_length(s->tls_out) == 0)
			event_del(s->ev_write);
		return;
	case SSL_ERROR_WANT_WRITE:
		event_add(s->ev_write, NULL);
		return;
	case SSL_ERROR_WANT_CLIENT_HELLO_CB:
		s->tls = TLS_PAUSED;
		event_del(s->ev_read);
		event_del(s->ev_write);
		notify(s, PROXY_STREAM_TLS_HELLO);
		return;
	default:
		take_tls_error(s, err);
		event_del(s->ev_read);
		event_del(s->ev_write);
		notify(s, PROXY_STREAM_ERROR);
		return;
	}
}

void proxy_stream_start_tls(struct proxy_stream *s, SSL *ssl, bool server)
{
	BIO *rbio = BIO_new_socket(s->fd, BIO_NOCLOSE);
	BIO *wbio = tls_out_method() != NULL ? BIO_new(tls_out_method()) : NULL;

	SSL_free(s->ssl);
	s->ssl = ssl;
	if (s->tls_out == NULL)
		s->tls_out = evbuffer_new();
	if (rbio == NULL || wbio == NULL || s->tls_out == NULL) {
		/* out of memory: plain socket BIOs, one write per record */
		BIO_free(rbio);
		BIO_free(wbio);
		SSL_set_fd(ssl, s->fd);
	} else {
		BIO_set_data(wbio, s);
		SSL_set_bio(ssl, rbio, wbio);
	}
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	s->tls = TLS_HANDSHAKE;
	/* start from the loop, so the caller never sees a callback here */
	event_add(s->ev_write, NULL);
}

void proxy_stream_tls_resume(struct proxy_stream *s)
{
	if (s->tls != TLS_PAUSED)
		return;
	s->tls = TLS_HANDSHAKE;
	event_add(s->ev_write, NULL);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_stream *s = arg;

	(void)fd;
	(void)what;
	if (s->error_pending) {
		event_del(s->ev_write);
		event_del(s->ev_read);
		notify(s, PROXY_STREAM_ERROR);
		return;
	}
	if (s->tls == TLS_HANDSHAKE) {
		handshake(s);
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
			notify(s, PROXY_STREAM_ERROR);
			return;
		}
		if (!notify(s, PROXY_STREAM_CONNECTED))
			return;
		proxy_stream_flush(s);
		return;
	}
	if (write_some(s))
		event_del(s->ev_write);
	if (s->error_pending)
		return;
	if (proxy_stream_pending(s) <= s->low_water)
		notify(s, PROXY_STREAM_DRAINED);
}

static void read_tls(struct proxy_stream *s)
{
	size_t total = 0;
	bool eof = false, failed = false;

	while (total < PROXY_STREAM_MAX_READ) {
		struct evbuffer_iovec v;
		int n;

		if (evbuffer_reserve_space(s->input, 16384, &v, 1) < 1) {
			s->error = ENOMEM;
			failed = true;
			break;
		}
		ERR_clear_error();
		n = SSL_read(s->ssl, v.iov_base, (int)v.iov_len);
		if (n > 0) {
			v.iov_len = (size_t)n;
			evbuffer_commit_space(s->input, &v, 1);
			total += (size_t)n;
			continue;
		}
		evbuffer_commit_space(s->input, &v, 0);
		switch (SSL_get_error(s->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			break;
		case SSL_ERROR_WANT_WRITE:
			event_add(s->ev_write, NULL);
			break;
		case SSL_ERROR_ZERO_RETURN:
			eof = true;
			break;
		case SSL_ERROR_SYSCALL:
			if (ERR_peek_error() == 0 && (n == 0 || errno == 0)) {
				eof = true; /* closed without close_notify */
				break;
			}
			take_tls_error(s, SSL_ERROR_SYSCALL);
			failed = true;
			break;
		default:
			take_tls_error(s, SSL_ERROR_SSL);
			failed = true;
			break;
		}
		break;
	}
	if (s->tls_out != NULL && evbuffer_get_length(s->tls_out) > 0)
		send_tls_out_or_wait(s);
	if (total > 0 && !notify(s, PROXY_STREAM_READ))
		return;
	if (failed || eof) {
		proxy_stream_set_reading(s, false);
		notify(s, failed ? PROXY_STREAM_ERROR : PROXY_STREAM_EOF);
		return;
	}
	/* more decrypted than one turn takes: come back */
	if (s->reading && SSL_has_pending(s->ssl))
		event_active(s->ev_read, EV_READ, 1);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_stream *s = arg;

	if (s->tls == TLS_HANDSHAKE) {
		handshake(s);
		return;
	}
	if (s->tls == TLS_ON) {
		read_tls(s);
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
		notify(s, PROXY_STREAM_ERROR);
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
		notify(s, PROXY_STREAM_ERROR);
		return;
	}
	if (n == 0) {
		evbuffer_commit_space(s->input, vec, 0);
		proxy_stream_set_reading(s, false);
		notify(s, PROXY_STREAM_EOF);
		return;
	}
	s->streaming = (size_t)n >= want;
	for (int i = 0; i < nvec; i++) {
		size_t take = (size_t)n < vec[i].iov_len ? (size_t)n : vec[i].iov_len;

		vec[i].iov_len = take;
		n -= (ssize_t)take;
		if (take == 0)
			nvec = i;
	}
	evbuffer_commit_space(s->input, vec, nvec);
	notify(s, PROXY_STREAM_READ);
}
