/* One non-blocking socket with an input and an output evbuffer.
 *
 * libevent 2.1's bufferevents read at most 4096 bytes per system call
 * (EVBUFFER_MAX_READ; only 2.2 can raise it), which caps a relay far below
 * what loopback and TLS can carry, and they always defer writes to the next
 * loop turn. A stream reads as much as the socket holds (up to
 * PROXY_STREAM_MAX_READ) into evbuffer space it reserves, and writes as soon
 * as it is asked to, waiting for the socket only when it is full. Bytes
 * move between streams as evbuffer chains, never copied. */
#ifndef PROXY_STREAM_H
#define PROXY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "imap/split.h"

#define PROXY_STREAM_MAX_READ (256u * 1024u)

enum proxy_stream_event {
	PROXY_STREAM_READ,      /* new bytes in the input buffer */
	PROXY_STREAM_DRAINED,   /* a write left the output at or below the low-water mark */
	PROXY_STREAM_EOF,       /* the peer sent FIN; reading has stopped */
	PROXY_STREAM_ERROR,     /* the socket failed; proxy_stream_error() says why */
	PROXY_STREAM_CONNECTED, /* an outgoing connection is up */
	PROXY_STREAM_TLS_HELLO, /* server side: the ClientHello arrived and the handshake
				   waits for proxy_stream_tls_resume() */
	PROXY_STREAM_TLS_READY, /* the TLS handshake is complete */
};

struct proxy_stream;

/* The callback may free the stream (and its owner); the stream notices. */
typedef void proxy_stream_cb(struct proxy_stream *stream, enum proxy_stream_event event,
			     void *ctx);

/* Wraps a connected socket (made non-blocking here). Reading starts off.
 * Returns NULL when out of memory; fd is then left open. */
struct proxy_stream *proxy_stream_new(struct event_base *base, int fd, proxy_stream_cb *cb,
				      void *ctx);

/* Starts a non-blocking connection; CONNECTED or ERROR follows. Returns
 * NULL with *err_r set (an errno value) when it fails at once. */
struct proxy_stream *proxy_stream_connect(struct event_base *base, const struct sockaddr *sa,
					  socklen_t len, proxy_stream_cb *cb, void *ctx,
					  int *err_r);

/* Closes the socket and frees everything; queued output is dropped.
 * Safe inside the stream's own callback. */
void proxy_stream_free(struct proxy_stream **stream);

struct evbuffer *proxy_stream_input(struct proxy_stream *stream);
struct evbuffer *proxy_stream_output(struct proxy_stream *stream);

void proxy_stream_set_reading(struct proxy_stream *stream, bool on);

/* DRAINED fires when a write brings the output to at most low bytes. */
void proxy_stream_set_low_water(struct proxy_stream *stream, size_t low);

/* Writes what the output holds now, as far as the socket takes it, and
 * waits for the socket for the rest. Never calls the callback; a write
 * error is reported by an ERROR event from the loop. */
void proxy_stream_flush(struct proxy_stream *stream);

/* Cuts what is written from now on at the sizes split draws (a fault
 * re-splitting the stream): with byte and random each piece is its own
 * send() or TLS record and its own TCP segment, written once the kernel
 * has sent the previous one (net/split_pacer.h), one piece per turn of
 * the loop. NULL, none and coalesce write as much as the socket takes.
 * split must stay valid while set. */
void proxy_stream_set_split(struct proxy_stream *stream, struct imap_split *split);

/* Sends FIN once the output is empty. */
void proxy_stream_shutdown_write(struct proxy_stream *stream);

/* The errno value behind an ERROR event (EPROTO for a TLS failure). */
int proxy_stream_error(const struct proxy_stream *stream);
/* Words for the last error: strerror, or OpenSSL's reason for TLS. */
const char *proxy_stream_error_text(const struct proxy_stream *stream);

/* Runs TLS over the stream from now on; ssl (owned by the stream from now)
 * must have no descriptor yet. server: accept rather than connect. Bytes
 * already in the input buffer stay there as plaintext read before TLS. A
 * server SSL whose context has a ClientHello callback that asks to retry
 * pauses with TLS_HELLO. TLS_READY or ERROR follows. */
void proxy_stream_start_tls(struct proxy_stream *stream, SSL *ssl, bool server);
/* Continues a handshake paused at TLS_HELLO. */
void proxy_stream_tls_resume(struct proxy_stream *stream);
/* The stream's SSL, or NULL while it is plain. */
SSL *proxy_stream_ssl(const struct proxy_stream *stream);

/* Bytes as they cross the socket: read (sent false) or written (sent
 * true); TLS records once TLS is on. Bytes read under TLS are handed over
 * once OpenSSL has taken them in, so the secrets they lead to are logged
 * first. */
typedef void proxy_stream_tap(void *ctx, bool sent, const uint8_t *data, size_t len);
/* Taps the stream from now on (NULL: no longer). */
void proxy_stream_set_tap(struct proxy_stream *stream, proxy_stream_tap *tap, void *ctx);
/* The socket, for its addresses. */
int proxy_stream_fd(const struct proxy_stream *stream);

/* Bytes still to send: the output, and with TLS the records made of it
 * that the socket has not taken yet. A stream may be freed without loss
 * when this is 0. */
size_t proxy_stream_pending(const struct proxy_stream *stream);

/* Bytes of the output written so far (taken by the kernel, or by TLS):
 * a queue whose count does not move is a peer that does not read. */
uint64_t proxy_stream_written(const struct proxy_stream *stream);

/* What the kernel knows of the peer: bytes it acknowledged, and bytes
 * still in the socket's send queue. A queue that holds bytes while the
 * acknowledged count stands still is a peer whose window is closed.
 * Returns false when the kernel does not say. */
bool proxy_stream_peer_progress(const struct proxy_stream *stream, uint64_t *acked_r,
				size_t *unsent_r);

#endif
