/* What the files of one relayed session share: the session itself and the
 * steps one file takes for another. proxy/session.c owns the session (start,
 * relay, close); proxy/legs.c the two legs (connect, TLS, timeouts);
 * proxy/starttls.c STARTTLS on either leg; proxy/preauth.c the relay unit by
 * unit before login; proxy/watch.c the rules timer and peers that stop
 * reading; proxy/session_faults.c what --fault asks of a session. Only these
 * files include it. */
#ifndef PROXY_SESSION_INT_H
#define PROXY_SESSION_INT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "capture/escape.h"
#include "capture/observed.h"
#include "imap/capability.h"
#include "imap/framer.h"
#include "proxy/fault.h"
#include "proxy/clock.h"
#include "proxy/session.h"
#include "proxy/stream.h"
#include "proxy/tls.h"

#define LINE_MODE_MAX 8192

enum side {
	SIDE_CLIENT = 0,
	SIDE_UPSTREAM = 1,
};


struct proxy_session;

/* What a unit seen in line mode asks the session to do once the framer
 * has returned (it may end the session or switch the leg to TLS). */
enum line_action {
	LINE_ACTION_NONE,
	LINE_ACTION_STARTTLS,  /* the client's STARTTLS: answered here */
	LINE_ACTION_PREAUTH,   /* a PREAUTH greeting while the client leg waits for STARTTLS */
	LINE_ACTION_TOO_LONG,  /* a client line over LINE_MODE_MAX before its TLS */
};

/* Before authentication each side is relayed unit by unit as the imap
 * framer cuts it (lines, literal announcements, literal data), so that
 * capability lists are edited and the client's STARTTLS, LOGIN and
 * AUTHENTICATE answered however many literals come first. A unit's bytes
 * stay at the front of the input until the unit is complete. */
struct line_relay {
	struct proxy_session *s;
	int side;                  /* enum side */
	struct imap_framer *framer;
	size_t fed;                /* input bytes given to the framer and not yet passed on */
	uint64_t ahead;            /* bytes of the current literal passed on before its unit */
	int refusing;              /* a LOGIN/AUTHENTICATE in clear: swallowed to its end */
	char tag[200];             /* its tag, for the NO */
	size_t tag_len;
	enum line_action action;
	uint8_t *action_line;      /* the line the action is about */
	size_t action_len;
};

/* The upstream leg, step by step; every change goes through
 * session_upstream_enter(), which names it (IMAPTAP_DEBUG=legs prints each
 * transition on stderr). */
enum upstream_leg {
	UPSTREAM_CONNECTING,         /* TCP connect under way */
	UPSTREAM_GREETING,           /* STARTTLS: waiting for the greeting, in clear */
	UPSTREAM_STARTTLS,           /* STARTTLS sent, waiting for its tagged answer */
	UPSTREAM_STARTTLS_HANDSHAKE, /* its TLS handshake under way */
	UPSTREAM_CAPABILITY,         /* over TLS: CAPABILITY sent, waiting for the answer */
	UPSTREAM_HANDSHAKE,          /* implicit TLS: the handshake under way */
	UPSTREAM_READY,              /* carries IMAP */
};

/* The client leg, likewise (session_client_enter). */
enum client_leg {
	CLIENT_ACCEPTED,            /* the connection was accepted */
	CLIENT_HANDSHAKE,           /* implicit TLS: the handshake (ClientHello first) */
	CLIENT_PLAIN,               /* carries IMAP in clear (plain, or before STARTTLS) */
	CLIENT_STARTTLS_HANDSHAKE,  /* its STARTTLS handshake under way */
	CLIENT_TLS,                 /* carries IMAP over TLS */
};

enum session_state {
	SESSION_CONNECTING, /* waiting for the upstream TCP connection */
	SESSION_RELAYING,
	SESSION_CLOSING,    /* flushing what is queued, then closing */
};

struct proxy_session {
	const struct session_env *env;
	struct session_set *set;
	unsigned id;
	enum session_state state;
	struct proxy_stream *stream[2]; /* NULL once that side is closed */
	int read_eof[2];                /* that side sent FIN */
	int throttled[2];               /* reading that side paused for backpressure */
	const struct proxy_route *route; /* where it goes; with --route, the default until
					    the ClientHello names another */
	struct proxy_route *own_route;  /* --transparent: its original destination */
	enum proxy_tls_mode client_tls; /* what the client leg speaks */
	unsigned addr_index;            /* upstream address being tried */
	struct observed_session *observed; /* the conversation and the sinks */
	struct event *timer;            /* connect timeout, then linger guard */
	struct event *rules_timer;      /* the next time a rule could fire; NULL without rules */
	imap_time_us rules_at;          /* when rules_timer fires, -1 when not armed */
	bool observing;                 /* in session_observe: the timer is armed once, after */
	bool closed;                    /* how it ends is decided: */
	enum capture_side closed_by;
	enum capture_end end;
	char *reason;                   /* at most 191 bytes; NULL: "closed" */
	enum client_leg client;      /* where the client leg is (session_client_enter) */
	char *client_sni;       /* the ClientHello's server name; NULL: none */
	char *pending_bye;      /* a BYE to send once the client's TLS is up */
	uint8_t *proxy_header;  /* --send-proxy: what goes to the upstream first */
	size_t proxy_header_len;
	char legs[64];          /* "client TLS, upstream STARTTLS" for the open row */
	/* peers that stopped reading: by side, the output's written count
	 * when last seen moving, and when */
	uint64_t seen_written[2];
	uint64_t written_drained[2]; /* output written when the kernel last held none of it */
	imap_time_us progress_at[2];
	bool blocked[2];
	imap_time_us blocked_at[2];  /* when it was first seen not reading */
	enum upstream_leg upstream;  /* where the upstream leg is (session_upstream_enter) */
	char *tls_caps;            /* upstream STARTTLS: the capabilities sent over TLS */
	struct evbuffer *greeting; /* the greeting imaptap made, shown to the client later */
	int greeting_seen;         /* a greeting went to the client */
	int line_mode[2];       /* before login: relay unit by unit (capability edits,
				   the client's STARTTLS, LOGIN refused in clear) */
	struct line_relay lines[2];
	int authenticated;      /* LOGIN or AUTHENTICATE completed OK */
	bool spoke[2];          /* by side: its first bytes were relayed */
	struct capture_session_info info;
	struct proxy_faults *faults; /* NULL unless a --fault applies to this session */
	bool eof_deferred[2];        /* by side: its FIN waits behind a fault's queue */
	unsigned frames;             /* callbacks under way inside the session */
	bool doomed;                 /* it ended inside one: freed at the outermost leave */
	bool holds_outputs;          /* it took the outputs' lock in this callback (session_now) */
	bool wired[2];               /* by side: the wire tap was told the leg is up */
	TAILQ_ENTRY(proxy_session) link;
};

static inline enum imap_dir dir_from(enum side side)
{
	return side == SIDE_CLIENT ? IMAP_C2S : IMAP_S2C;
}

/* proxy/session.c */
/* Shows the session to the outputs (its open row) on its route: at its
 * start, or with --route once the route is chosen. Returns false when out
 * of memory. */
bool session_open_observed(struct proxy_session *s);
/* Every callback that enters a session (a stream event, a timer, a fault's
 * timer) runs between these: a session that ends inside is freed only at
 * the outermost leave, so no code after a close can touch freed memory,
 * whether or not it returns at once. */
void session_enter(struct proxy_session *s);
void session_leave(struct proxy_session *s);
/* The time of what the session is about to write to the outputs. With
 * several loops sharing them, the clock is read under the outputs' lock,
 * which the callback then holds until its outermost leave (or until
 * session_outputs_done), so that the files stay in time order; read the
 * clock after the work that need not hold it (encryption, writes). */
imap_time_us session_now(struct proxy_session *s);
/* Lets go of the outputs' lock before slow work inside a callback. */
void session_outputs_done(struct proxy_session *s);
/* The first word on how the session ends is the one that stands. */
void session_set_closed_by(struct proxy_session *s, enum capture_side by, enum capture_end end,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void session_close_side(struct proxy_session *s, enum side side);
/* Closes drained sides of a closing session. Returns 1 when the session
 * is gone. */
int session_reap(struct proxy_session *s);
void session_arm_timer(struct proxy_session *s, unsigned seconds);
/* Stops reading both sides, flushes what is queued and closes. Returns 1
 * when the session is gone. */
int session_finish(struct proxy_session *s);
/* Shows the first len bytes of input to the conversation. */
void session_observe(struct proxy_session *s, enum imap_dir dir, struct evbuffer *input,
		    size_t len, enum imap_origin origin, imap_time_us ts);
/* Bytes waiting to reach side: its output, and what a fault still holds. */
size_t session_queued_toward(struct proxy_session *s, enum side side);
/* Whether side may be read now: not paused for backpressure, not closed,
 * not stopped by a fault. */
bool session_may_read(struct proxy_session *s, enum side side);
void session_relay(struct proxy_session *s, enum side side);
/* side's FIN goes on to the other side once everything before it did. */
void session_pass_eof(struct proxy_session *s, enum side side);
void session_on_upstream(struct proxy_stream *stream, enum proxy_stream_event event, void *arg);

/* The leg's TCP connection is up: from now on the wire tap (--raw-pcap)
 * sees its bytes. Nothing without a tap. */
void session_wire_open(struct proxy_session *s, enum side side);
/* Bytes the proxy wrote to side's socket itself, past the stream. */
void session_wire_sent(struct proxy_session *s, enum side side, const uint8_t *data, size_t len);
/* The leg's socket is about to close: the tap hears of it. */
void session_wire_close(struct proxy_session *s, enum side side);

/* proxy/legs.c */
/* The upstream leg moves to state: the one place it changes. */
void session_upstream_enter(struct proxy_session *s, enum upstream_leg state);
void session_client_enter(struct proxy_session *s, enum client_leg state);
/* The client leg carries IMAP (its TLS done, if any). */
bool session_client_ready(const struct proxy_session *s);
/* The proxy speaks STARTTLS with the upstream itself, before the session. */
bool session_upstream_in_starttls(const struct proxy_session *s);
void session_send_bye(struct proxy_session *s, const char *bye);
/* The upstream cannot be used: tells the client with an untagged BYE (over
 * its TLS leg once that is up) and closes. */
void session_upstream_failed(struct proxy_session *s, const char *what, const char *why);
/* Tells the client bye (over its TLS leg once that is up) and closes,
 * the upstream too; the close's words are set already. */
void session_refuse(struct proxy_session *s, const char *bye);
/* --fault max-connections: refuses the session (a mark, the BYE, the
 * close) when too many are open. True when it did. */
bool session_over_connection_limit(struct proxy_session *s);
/* --fault hide-capability on the greeting the proxy made after its own
 * upstream STARTTLS (s->greeting), which no fault engine sees. */
void session_fault_hide_greeting(struct proxy_session *s);
/* The current upstream address failed: tries the next. Returns 1 when the
 * session is gone. */
int session_connect_failed(struct proxy_session *s, const char *what, int err);
int session_connect_upstream(struct proxy_session *s);
void session_relaying(struct proxy_session *s);
void session_tls_report(struct proxy_session *s, enum side side);
/* Gives the paused client handshake its certificate and lets it go on. */
void session_resume_client_tls(struct proxy_session *s);
/* The upstream leg carries IMAP now. */
void session_upstream_up(struct proxy_session *s);
void session_connected(struct proxy_session *s);
void session_start_upstream_tls(struct proxy_session *s);
/* The name the upstream's certificate must carry, sent as SNI unless an
 * address. */
const char *session_upstream_name(const struct proxy_session *s);
void session_client_tls_failed(struct proxy_session *s);
bool session_choose_route(struct proxy_session *s, bool hello);
void session_on_timer(evutil_socket_t fd, short what, void *arg);

/* proxy/starttls.c */
/* A notice that quotes a peer's line, made printable (capture/escape.h):
 * peer words reach the timeline and the event log this way only. */
void session_notice_quoting(struct proxy_session *s, const char *words, const char *line,
			   size_t len);
/* Upstream STARTTLS, done by the proxy before the client's first byte:
 * check the greeting is * OK, send STARTTLS, and on its tagged OK start
 * TLS; then ask for the capabilities over TLS. Nothing the server said in
 * clear reaches the client (it is quoted in notices only). Server bytes
 * after the OK's CRLF would be plaintext injected into the TLS session
 * (IMAP-NOTES section 7): they are dropped. */
void session_upstream_starttls_read(struct proxy_session *s);
int session_is_starttls_command(const uint8_t *line, size_t n);
/* The client asked for STARTTLS: answered here, never relayed. */
void session_client_starttls(struct proxy_session *s, const uint8_t *line, size_t n);

/* proxy/preauth.c */
unsigned session_capability_edits(const struct proxy_session *s);
/* The capability edits line is about to get, as a note on its row. */
void session_note_edit(struct proxy_session *s, const uint8_t *line, size_t len);
/* Lines are relayed one by one before authentication; after it, or once
 * COMPRESS is on (the bytes are no longer lines), chunks go as read. */
bool session_in_line_mode(const struct proxy_session *s, enum side side);
/* Before authentication, passes the framer's units one at a time so the
 * proxy can edit capability lists and answer the client's STARTTLS, LOGIN
 * and AUTHENTICATE. Returns 1 when the rest of the input is handled (the
 * client leg switched to TLS, or the session ends), 0 when raw relaying
 * should go on with what is left. */
int session_relay_lines(struct proxy_session *s, enum side side);

/* The first bytes from side on a leg imaptap runs in clear are a TLS
 * record: a client that wants TLS from a plain listener, or a server that
 * speaks TLS to a plain --upstream. Says which flag to use and ends the
 * session (true), instead of relaying bytes nobody can read. */
bool session_speaks_tls_to_plain(struct proxy_session *s, enum side side);

/* proxy/watch.c */
/* One timer per session, armed for the earliest time a rule could fire
 * (or a peer be found not reading): an idle session costs nothing until
 * then, however many there are. Armed earlier than needed is harmless: it
 * looks and arms again. */
void session_arm_rules(struct proxy_session *s, imap_time_us now);
void session_on_rules_timer(evutil_socket_t fd, short what, void *arg);
/* The timer's look, run by the relay itself once its time has come: a
 * server flooding the client keeps the loop in read callbacks, and the
 * timer would wait behind them past the moment the client stopped
 * reading. */
void session_rules_due(struct proxy_session *s, imap_time_us now);
/* Looks once more whether side, found not reading, reads again (its
 * stream is about to close). */
void session_watch_last_look(struct proxy_session *s, enum side side, imap_time_us now);

/* proxy/session_faults.c */
extern const struct proxy_fault_host session_fault_host;

#endif
