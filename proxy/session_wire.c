/* A session's legs as the sockets carry them, for --raw-pcap: the wire
 * tap told when a leg is up, of every read and write, and of its close.
 * Called from inside reads and writes, so each call takes the outputs'
 * lock for itself. */
#include "proxy/session_int.h"

static enum capture_wire_leg wire_leg(enum side side)
{
	return side == SIDE_CLIENT ? CAPTURE_WIRE_CLIENT : CAPTURE_WIRE_UPSTREAM;
}

static void wire_bytes(struct proxy_session *s, enum side side, bool sent, const uint8_t *data,
		       size_t len)
{
	const struct capture_wiretap *tap = s->env->config->wiretap;
	struct capture_lock *lock = s->set->shared->lock;

	/* called in the middle of reads and writes: the lock is taken for
	 * this call only */
	capture_lock_acquire(lock);
	tap->bytes(tap->ctx, s->id, wire_leg(side), sent, proxy_now(), data, len);
	capture_lock_release(lock);
}

void session_wire_sent(struct proxy_session *s, enum side side, const uint8_t *data, size_t len)
{
	if (s->wired[side])
		wire_bytes(s, side, true, data, len);
}

static void tap_client(void *ctx, bool sent, const uint8_t *data, size_t len)
{
	wire_bytes(ctx, SIDE_CLIENT, sent, data, len);
}

static void tap_upstream(void *ctx, bool sent, const uint8_t *data, size_t len)
{
	wire_bytes(ctx, SIDE_UPSTREAM, sent, data, len);
}

void session_wire_open(struct proxy_session *s, enum side side)
{
	const struct capture_wiretap *tap = s->env->config->wiretap;
	struct capture_endpoint from = s->info.client, to = s->info.local;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd;

	if (tap == NULL || s->stream[side] == NULL || s->wired[side])
		return;
	fd = proxy_stream_fd(s->stream[side]);
	if (side == SIDE_UPSTREAM) {
		if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
			return;
		capture_endpoint_from_sockaddr((struct sockaddr *)&ss, &from);
		len = sizeof(ss);
		if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
			return;
		capture_endpoint_from_sockaddr((struct sockaddr *)&ss, &to);
	}
	s->wired[side] = true;
	capture_lock_acquire(s->set->shared->lock);
	tap->open(tap->ctx, s->id, wire_leg(side), &from, &to,
		  (side == SIDE_CLIENT ? s->client_tls : s->route->tls) == PROXY_TLS_IMPLICIT,
		  proxy_now());
	capture_lock_release(s->set->shared->lock);
	proxy_stream_set_tap(s->stream[side], side == SIDE_CLIENT ? tap_client : tap_upstream, s);
}

void session_wire_close(struct proxy_session *s, enum side side)
{
	const struct capture_wiretap *tap = s->env->config->wiretap;

	if (!s->wired[side] || s->stream[side] == NULL)
		return;
	s->wired[side] = false;
	capture_lock_acquire(s->set->shared->lock);
	tap->close(tap->ctx, s->id, wire_leg(side), s->read_eof[side] != 0, proxy_now());
	capture_lock_release(s->set->shared->lock);
}
