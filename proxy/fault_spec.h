/* The --fault grammar (docs/faults.md): one SPEC in, one fault out.
 * Pure: no sockets, no clock, no allocation, so a fuzzer can drive it.
 *
 *   hold-idle-completion:D          delay:c2s|s2c:D
 *   split:c2s|s2c:byte|random[:SEED]|coalesce
 *   stop-reading:client|server:D    bye:after-idle-continuation|in-literal[:c2s|s2c]
 *   answer:COMMAND:NO|BAD           respond-code:CODE:COMMAND
 *   bye-after-idle:D                max-connections:N
 *   hide-capability:CAP[,CAP...]   end-idle-early[:D]
 *   then any of ,session=N ,nth=N ,after=COMMAND */
#ifndef PROXY_FAULT_SPEC_H
#define PROXY_FAULT_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/split.h"
#include "imap/types.h"

enum proxy_fault_action {
	PROXY_FAULT_HOLD_IDLE_COMPLETION, /* keep IDLE's tagged completion from the client
					     for a time after DONE */
	PROXY_FAULT_DELAY,                /* every byte of one direction, a time late */
	PROXY_FAULT_SPLIT,                /* one direction's writes cut anew */
	PROXY_FAULT_STOP_READING,         /* one side not read for a time */
	PROXY_FAULT_BYE,                  /* "* BYE" to the client, then close */
	PROXY_FAULT_ANSWER,               /* a command answered NO/BAD by the proxy */
	PROXY_FAULT_MAX_CONNECTIONS,      /* a connection past N open ones refused with
					     * BYE [ALERT], as Gmail does */
	PROXY_FAULT_HIDE_CAPABILITY,      /* capabilities taken out of the lists the
					     client sees */
	PROXY_FAULT_END_IDLE_EARLY,       /* IDLE completed before any DONE, as Exchange
					     does; the server's IDLE ended with DONE */
};

/* Capabilities hide-capability takes, at most, and their longest name. */
#define PROXY_FAULT_HIDE_MAX 8

enum proxy_fault_point {
	PROXY_FAULT_AFTER_IDLE_CONTINUATION, /* right after the server's "+" to IDLE */
	PROXY_FAULT_IN_LITERAL,              /* halfway through a literal */
	PROXY_FAULT_IDLE_FOR,                /* an IDLE that lasted duration without DONE */
};

/* Longest command name answer: and after= take. */
#define PROXY_FAULT_NAME_MAX 32

struct proxy_fault {
	enum proxy_fault_action action;
	enum imap_dir dir;        /* delay, split; bye in-literal when dir_set */
	bool dir_set;             /* bye in-literal: only literals of dir */
	bool read_client;         /* stop-reading: the client side (else the server) */
	imap_time_us duration;    /* hold, delay, stop-reading, bye-after-idle;
				     end-idle-early: after the "+", 0 right before it */
	struct imap_split split;  /* split */
	enum proxy_fault_point point;      /* bye */
	char command[PROXY_FAULT_NAME_MAX]; /* answer: upper case */
	bool bad;                 /* answer: BAD rather than NO */
	char code[PROXY_FAULT_NAME_MAX]; /* answer: a response code ("THROTTLED"), "" none
					    (respond-code:CODE:COMMAND) */
	unsigned limit;           /* max-connections: sessions open at once */
	char hide[PROXY_FAULT_HIDE_MAX][PROXY_FAULT_NAME_MAX]; /* hide-capability, upper case */
	unsigned hide_count;
	unsigned session;         /* only this session; 0 every session */
	unsigned nth;             /* only the nth occurrence; 0 every one */
	char after[PROXY_FAULT_NAME_MAX]; /* stop-reading: start when the client sends
					     this command; "" at the start */
};

/* The grammar in one line, for messages. */
extern const char proxy_fault_grammar[];

/* Parses one SPEC of len bytes. Returns 0, or -1 with one line for a
 * person in err saying what is wrong (the grammar follows from the
 * caller). */
int proxy_fault_parse(const char *spec, size_t len, struct proxy_fault *fault_r, char *err,
		      size_t err_size);

/* The fault back as a canonical SPEC ("hold-idle-completion:30s,session=2"). */
void proxy_fault_spec_str(const struct proxy_fault *fault, char *buf, size_t size);

/* What the fault does, in words ("holds the server's tagged completion of
 * IDLE for 30 s after DONE, in every session"). */
void proxy_fault_explain(const struct proxy_fault *fault, char *buf, size_t size);

const char *proxy_fault_action_str(enum proxy_fault_action action);

/* hide-capability: line[0..len), a server line, with the fault's names
 * taken out of its capability list, into out (at least len bytes); its
 * length, or 0 when the line names none of them. */
size_t proxy_fault_hide(const struct proxy_fault *fault, const uint8_t *line, size_t len,
			uint8_t *out);

/* Whether the fault needs the IMAP view of the stream (it reads lines):
 * such a fault stops once COMPRESS=DEFLATE is on. */
bool proxy_fault_needs_imap(const struct proxy_fault *fault);

#endif
