/* replay client: the client side of a recorded session played to a live
 * server. Each command goes out when the recording sent it (scaled),
 * continuations and completions are awaited as the recording did, masked
 * credentials are filled from --login. A DONE waits for the untagged
 * responses the recorded IDLE got before it. Every command must complete
 * with its recorded status; other differences fail only when strict. */
#ifndef REPLAY_CLIENT_H
#define REPLAY_CLIENT_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "replay/ensemble.h"
#include "replay/recording.h"
#include "replay/serve.h"

struct replay_client_options {
	double speed;           /* 1 for the recorded pace; 0: no delays */
	imap_time_us timeout;   /* the whole replay */
	imap_time_us quiet;     /* a server silent this long beyond the recorded pause */
	const char *user;       /* --login, for masked credentials; NULL: none */
	const char *pass;
	SSL_CTX *tls;           /* TLS to the server, or NULL */
	bool implicit_tls;      /* from the first byte; else after a recorded STARTTLS */
	const char *sni;        /* name sent and verified */
	bool strict;            /* untagged responses must match too */
};

/* The first client line of rec whose credentials the recording holds
 * masked (it needs --login), or 0 when none does. */
unsigned replay_client_masked_line(const struct replay_recording *rec);

/* Plays the client side of session (an index into ens) on fd
 * (connected), beside the other sessions of ens, each in its own
 * thread. result->code: 0 every command completed as recorded, 1 not,
 * 3 an I/O problem. */
void replay_client_fd(struct replay_ensemble *ens, size_t session, int fd,
		      const struct replay_client_options *options, struct replay_result *result);

#endif
