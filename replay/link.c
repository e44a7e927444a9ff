#include "replay/link.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/err.h>

imap_time_us replay_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (imap_time_us)t.tv_sec * IMAP_US_PER_S + t.tv_nsec / 1000;
}

void replay_link_init(struct replay_link *l, int fd, replay_received_cb *received, void *ctx)
{
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->received = received;
	l->ctx = ctx;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void replay_link_free(struct replay_link *l)
{
	if (l->ssl != NULL) {
		SSL_shutdown(l->ssl);
		SSL_free(l->ssl);
		l->ssl = NULL;
	}
	free(l->out);
	l->out = NULL;
	l->out_len = l->out_cap = 0;
}

void replay_link_set_split(struct replay_link *l, const struct imap_split *split)
{
	l->split = *split;
	l->writes = 0;
	split_pacer_set(&l->pacer, l->fd, &l->split);
}

void replay_link_queue(struct replay_link *l, const uint8_t *p, size_t n)
{
	if (l->out_len + n > l->out_cap) {
		size_t cap = l->out_cap ? l->out_cap : 65536;
		uint8_t *q;

		while (cap < l->out_len + n)
			cap *= 2;
		q = realloc(l->out, cap);
		if (q == NULL) {
			l->nomem = true;
			return;
		}
		l->out = q;
		l->out_cap = cap;
	}
	memcpy(l->out + l->out_len, p, n);
	l->out_len += n;
}

static ssize_t link_send(struct replay_link *l, const uint8_t *p, size_t n)
{
	int r;

	if (l->ssl == NULL)
		return send(l->fd, p, n, MSG_NOSIGNAL);
	r = SSL_write(l->ssl, p, (int)(n > 1 << 20 ? 1 << 20 : n));
	if (r > 0)
		return r;
	switch (SSL_get_error(l->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		errno = EPIPE;
		return -1;
	}
}

static ssize_t link_recv(struct replay_link *l, uint8_t *p, size_t n)
{
	int r;

	if (l->ssl == NULL)
		return recv(l->fd, p, n, 0);
	r = SSL_read(l->ssl, p, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(l->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		return 0; /* closed, or a broken TLS session: the peer is gone */
	}
}

void replay_link_pump(struct replay_link *l, imap_time_us wait_us)
{
	struct pollfd p = {.fd = l->fd, .events = POLLIN};
	uint8_t buf[65536];
	int ms = wait_us <= 0 ? 0 : (int)((wait_us + 999) / 1000);
	bool pending = l->ssl != NULL && SSL_pending(l->ssl) > 0;

	if (ms > 1000)
		ms = 1000;
	if (l->out_len > 0)
		p.events |= POLLOUT;
	if (l->eof)
		p.events &= (short)~POLLIN;
	if (p.events == 0) {
		if (ms > 0)
			poll(NULL, 0, ms);
		return;
	}
	/* records OpenSSL decrypted already wake no poller */
	if (!pending && poll(&p, 1, ms) <= 0)
		return;
	if (pending)
		p.revents |= POLLIN;
	if (p.revents & POLLOUT) {
		size_t size = split_pacer_next(&l->pacer, l->fd, l->out_len);
		ssize_t n = size > 0 ? link_send(l, l->out, size) : 0;

		if (n > 0) {
			memmove(l->out, l->out + n, l->out_len - (size_t)n);
			l->out_len -= (size_t)n;
			l->writes++;
			split_pacer_wrote(&l->pacer, (size_t)n);
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			l->eof = true;
			l->out_len = 0;
		}
	}
	if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
		ssize_t n = link_recv(l, buf, sizeof(buf));

		if (n > 0)
			l->received(l->ctx, buf, (size_t)n);
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			l->eof = true;
	}
}

bool replay_link_start_tls(struct replay_link *l, SSL_CTX *ctx, bool server, const char *sni,
			   imap_time_us limit_us)
{
	imap_time_us until = replay_now() + limit_us;

	while (l->out_len > 0 && !l->eof && replay_now() < until)
		replay_link_pump(l, REPLAY_LINK_POLL_US);
	if (l->eof)
		return false;
	l->ssl = SSL_new(ctx);
	if (l->ssl == NULL || SSL_set_fd(l->ssl, l->fd) != 1)
		return false;
	if (!server && sni != NULL) {
		SSL_set_tlsext_host_name(l->ssl, sni);
		SSL_set1_host(l->ssl, sni);
	}
	while (replay_now() < until) {
		int r = server ? SSL_accept(l->ssl) : SSL_connect(l->ssl), e;
		struct pollfd p = {.fd = l->fd};

		if (r == 1)
			return true;
		e = SSL_get_error(l->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			p.events = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			p.events = POLLOUT;
		else
			break;
		poll(&p, 1, 100);
	}
	ERR_clear_error();
	return false;
}
