/* What the files of imapbench share: bench/imapbench.c (options and
 * main), bench/imapbench_conn.c (connections, TLS, reading responses),
 * bench/imapbench_modes.c (fetch, noop, append) and
 * bench/imapbench_handshake.c (the session-rate mode). */
#ifndef IMAPBENCH_H
#define IMAPBENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define RBUF_SIZE (1u << 20)
#define MAX_LINE (64 * 1024)
#define TLS_RBUF_SIZE (256u << 10) /* OpenSSL's read-ahead buffer */

struct conn {
    int fd;
    SSL *ssl; /* NULL on a plain connection */
    char *buf;
    size_t start, end; /* unread bytes are buf[start, end) */
    unsigned long next_tag;
    int logging_out; /* BYE is expected */
    uint64_t line_bytes; /* bytes of the lines wait_for read, CRLF included */
};

struct opts {
    const char *mode;
    const char *connect;
    const char *login; /* user:pass or NULL */
    const char *mailbox;
    const char *item;
    const char *seq;
    double total_mib;
    long count;
    long warmup;
    size_t size;
    int nodelay;
    int timeout;
    int verbose;
    int tls;
    const char *tls_ca;   /* verify against this CA file; NULL: no verification */
    const char *tls_name; /* SNI and name checked; default the --connect host */
    long parallel;        /* handshake: concurrent client processes */
    double duration;      /* handshake: stop after this many seconds (0: no limit) */
};

enum result { RES_OK, RES_NO, RES_BAD, RES_ERR, RES_CONT };

extern SSL_CTX *g_tls_ctx; /* set with --tls */
extern char *g_rbuf;       /* one read buffer, reused by every connection */

/* bench/imapbench_conn.c */
void print_server_line(const char *prefix, const char *line);
double now_s(void);
uint64_t now_ns(void);
SSL_CTX *tls_client_ctx(const struct opts *o);
int conn_open(struct conn *c, const struct opts *o);
void conn_close(struct conn *c);
const char *tls_desc(const struct conn *c, char *out, size_t n);
int send_all(struct conn *c, const void *p, size_t n);
char *read_line(struct conn *c, size_t *len);
enum result wait_for(struct conn *c, const char *tag, int want_cont, uint64_t *lit, int verbose);
int command(struct conn *c, char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int simple(struct conn *c, int verbose, const char *verb, const char *args);
void quote(char *out, const char *s, size_t n);
int session_start(struct conn *c, const struct opts *o);
void session_end(struct conn *c, const struct opts *o);

/* bench/imapbench_modes.c: latency figures, shared with the handshake mode */
int cmp_u64(const void *a, const void *b);
double pct(const uint64_t *v, long n, double p);

/* the modes */
int run_fetch(const struct opts *o);
int run_noop(const struct opts *o);
int run_append(const struct opts *o);
int run_handshake(const struct opts *o);

#endif
