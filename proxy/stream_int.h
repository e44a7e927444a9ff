/* What the files of a stream share: proxy/stream.c (the socket: reads,
 * writes, connect, events) and proxy/stream_tls.c (TLS over it: the
 * handshake, records in and out through OpenSSL). Only these files
 * include it. */
#ifndef PROXY_STREAM_INT_H
#define PROXY_STREAM_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "net/split_pacer.h"
#include "proxy/stream.h"

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
	char *error_text; /* OpenSSL's words on a failure; NULL: none (an idle stream) */
	uint64_t written; /* application bytes taken by the socket or TLS */
	struct split_pacer pacer; /* a re-split stream: one piece per write, paced */
	proxy_stream_tap *tap;    /* NULL unless --raw-pcap */
	void *tap_ctx;
	struct evbuffer *tap_in;  /* TLS: read by OpenSSL, not yet handed to tap */
};

/* proxy/stream.c */
/* Calls the owner back; false when the stream was freed meanwhile. */
bool stream_notify(struct proxy_stream *s, enum proxy_stream_event event);
/* Reports err from the loop, not from inside the caller. */
void stream_fail_later(struct proxy_stream *s, int err);
/* Writes at most atmost bytes (-1: as many as it takes) of buf to the
 * socket, as evbuffer_write_atmost() does, showing them to the tap. */
int stream_send(struct proxy_stream *s, struct evbuffer *buf, ev_ssize_t atmost);
/* Hands what OpenSSL read to the tap: after each OpenSSL call. */
void stream_tap_flush_in(struct proxy_stream *s);

/* proxy/stream_tls.c */
/* Takes the handshake as far as the socket lets it. */
void stream_handshake(struct proxy_stream *s);
/* Writes what the output holds through TLS; false when the stream failed. */
bool stream_write_tls(struct proxy_stream *s);
/* Reads records and decrypts them into the input. */
void stream_read_tls(struct proxy_stream *s);

#endif
