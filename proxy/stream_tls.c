/* TLS over a stream: the handshake, application data written through
 * SSL_write into records gathered in an evbuffer (one write(2) for many
 * records), records read and decrypted into the input, and OpenSSL's
 * errors turned into the stream's. */
#include "proxy/stream_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

/* Keeps OpenSSL's first reason (and the certificate verdict) as words. */
static void stream_take_tls_error(struct proxy_stream *s, int ssl_err)
{
	unsigned long e = ERR_peek_error();
	long verify = s->ssl != NULL ? SSL_get_verify_result(s->ssl) : X509_V_OK;
	char text[256];

	s->error = EPROTO;
	if (verify != X509_V_OK) {
		snprintf(text, sizeof(text), "certificate verify failed: %s",
			 X509_verify_cert_error_string(verify));
	} else if (e != 0) {
		const char *reason = ERR_reason_error_string(e);

		snprintf(text, sizeof(text), "%s", reason != NULL ? reason : "TLS error");
	} else if (ssl_err == SSL_ERROR_SYSCALL) {
		snprintf(text, sizeof(text), "%s",
			 errno ? strerror(errno) : "connection closed during the TLS handshake");
		if (errno)
			s->error = errno;
	} else {
		snprintf(text, sizeof(text), "TLS error %d", ssl_err);
	}
	free(s->error_text);
	s->error_text = strdup(text); /* NULL: strerror(EPROTO) says enough */
	ERR_clear_error();
}

/* Sends the records gathered in tls_out; true when none is left. */
static bool stream_send_tls_out(struct proxy_stream *s)
{
	if (s->tls_out == NULL)
		return true; /* socket BIOs (out of memory at the start of TLS) */
	while (evbuffer_get_length(s->tls_out) > 0) {
		int n = stream_send(s, s->tls_out, -1);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return false;
			if (errno == EINTR)
				continue;
			stream_fail_later(s, errno);
			return false;
		}
		if (n == 0)
			return false;
	}
	return true;
}

/* OpenSSL's write side of a stream: records are appended to tls_out, and
 * stream_send_tls_out() gives them to the socket in large writes. */
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

/* One for the process, never freed; made once, whichever loop's thread
 * starts the first TLS leg (two making it at once leaked one). */
static BIO_METHOD *tls_out_bio_method;
static pthread_once_t tls_out_once = PTHREAD_ONCE_INIT;

static void tls_out_method_make(void)
{
	BIO_METHOD *method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
					  "imaptap tls_out");

	if (method != NULL &&
	    (!BIO_meth_set_write(method, tls_out_write) || !BIO_meth_set_ctrl(method, tls_out_ctrl) ||
	     !BIO_meth_set_create(method, tls_out_create))) {
		BIO_meth_free(method);
		method = NULL;
	}
	tls_out_bio_method = method;
}

static BIO_METHOD *tls_out_method(void)
{
	pthread_once(&tls_out_once, tls_out_method_make);
	return tls_out_bio_method;
}

/* After an OpenSSL call that may have written: sends, and waits for the
 * socket if it did not take everything. */
static void send_tls_out_or_wait(struct proxy_stream *s)
{
	if (!stream_send_tls_out(s) && !s->error_pending)
		event_add(s->ev_write, NULL);
}

/* TLS: encrypts what the output holds, record by record, and sends the
 * records in writes of up to TLS_OUT_MAX. A re-split stream makes one
 * record of one piece per call, once the kernel has sent the last one. */
bool stream_write_tls(struct proxy_stream *s)
{
	const bool cuts = split_pacer_cuts(&s->pacer);

	while (evbuffer_get_length(s->output) > 0) {
		struct evbuffer_iovec v;
		size_t len;
		int n;

		if (proxy_stream_pending(s) - evbuffer_get_length(s->output) >= TLS_OUT_MAX &&
		    !stream_send_tls_out(s))
			return false;
		if (evbuffer_peek(s->output, -1, NULL, &v, 1) < 1)
			break;
		len = v.iov_len < TLS_WRITE_MAX ? v.iov_len : TLS_WRITE_MAX;
		if (cuts) {
			/* the last record all in the kernel, and sent by it */
			if (!stream_send_tls_out(s))
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
		stream_tap_flush_in(s);
		if (n > 0) {
			s->written += (uint64_t)n;
			evbuffer_drain(s->output, (size_t)n);
			if (cuts) {
				split_pacer_wrote(&s->pacer, (size_t)n);
				/* the next piece on a later turn of the loop */
				stream_send_tls_out(s);
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
			stream_take_tls_error(s, SSL_ERROR_SSL);
			s->error_pending = false;
			stream_fail_later(s, s->error);
			return false;
		}
	}
	if (!stream_send_tls_out(s))
		return false;
	if (s->want_shut && !s->shut) {
		if (!s->close_notify_sent) {
			SSL_shutdown(s->ssl); /* close_notify, then FIN */
			s->close_notify_sent = true;
			if (!stream_send_tls_out(s))
				return false;
		}
		shutdown(s->fd, SHUT_WR);
		s->shut = true;
	}
	return true;
}

/* Drives the handshake one step; notifies READY, HELLO or ERROR. */
void stream_handshake(struct proxy_stream *s)
{
	int r, err;

	ERR_clear_error();
	r = SSL_do_handshake(s->ssl);
	stream_tap_flush_in(s);
	/* a flight is sent whole or the rest waits for the socket; a failed
	 * handshake's alert gets one try */
	if (!stream_send_tls_out(s) && !s->error_pending && r != 1)
		event_add(s->ev_write, NULL);
	if (r == 1) {
		s->tls = TLS_ON;
		event_del(s->ev_write);
		if (s->reading)
			event_add(s->ev_read, NULL);
		else
			event_del(s->ev_read);
		if (!stream_notify(s, PROXY_STREAM_TLS_READY))
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
		stream_notify(s, PROXY_STREAM_TLS_HELLO);
		return;
	default:
		stream_take_tls_error(s, err);
		event_del(s->ev_read);
		event_del(s->ev_write);
		stream_notify(s, PROXY_STREAM_ERROR);
		return;
	}
}

/* The socket BIO's reads, kept for the tap until the OpenSSL call that
 * made them returns (it may log the secrets that decrypt them); its
 * writes (socket BIOs for both ways, out of memory) go to the tap at once. */
static long tap_bio(BIO *bio, int oper, const char *argp, size_t len, int argi, long argl,
		    int ret, size_t *processed)
{
	struct proxy_stream *s = (struct proxy_stream *)BIO_get_callback_arg(bio);

	(void)len;
	(void)argi;
	(void)argl;
	if (s == NULL || s->tap == NULL || ret <= 0 || processed == NULL || *processed == 0)
		return ret;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
		if (s->tap_in == NULL)
			s->tap_in = evbuffer_new();
		if (s->tap_in != NULL)
			evbuffer_add(s->tap_in, argp, *processed);
	} else if (oper == (BIO_CB_WRITE | BIO_CB_RETURN)) {
		stream_tap_flush_in(s);
		s->tap(s->tap_ctx, true, (const uint8_t *)argp, *processed);
	}
	return ret;
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
	if (s->tap != NULL && SSL_get_rbio(ssl) != NULL) {
		BIO_set_callback_arg(SSL_get_rbio(ssl), (char *)s);
		BIO_set_callback_ex(SSL_get_rbio(ssl), tap_bio);
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

void stream_read_tls(struct proxy_stream *s)
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
		stream_tap_flush_in(s);
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
			stream_take_tls_error(s, SSL_ERROR_SYSCALL);
			failed = true;
			break;
		default:
			stream_take_tls_error(s, SSL_ERROR_SSL);
			failed = true;
			break;
		}
		break;
	}
	if (s->tls_out != NULL && evbuffer_get_length(s->tls_out) > 0)
		send_tls_out_or_wait(s);
	if (total > 0 && !stream_notify(s, PROXY_STREAM_READ))
		return;
	if (failed || eof) {
		proxy_stream_set_reading(s, false);
		stream_notify(s, failed ? PROXY_STREAM_ERROR : PROXY_STREAM_EOF);
		return;
	}
	/* more decrypted than one turn takes: come back */
	if (s->reading && SSL_has_pending(s->ssl))
		event_active(s->ev_read, EV_READ, 1);
}
