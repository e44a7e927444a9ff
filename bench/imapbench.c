/*
 * imapbench: a small IMAP load client for the relay benchmark.
 *
 *   imapbench fetch  --connect HOST:PORT [--total-mib 256] ...
 *   imapbench noop   --connect HOST:PORT [--count 20000] ...
 *   imapbench append --connect HOST:PORT --login USER:PASS [--size 64m] ...
 *   imapbench handshake --connect HOST:PORT [--count 1000] [--tls ...] ...
 *
 * --tls makes every connection implicit TLS (IMAPS) with OpenSSL; --tls-ca
 * turns certificate verification on, --tls-name sets SNI and the name
 * checked. handshake mode opens --count sessions one after the other
 * (connect, TLS, greeting, LOGOUT, close) and reports sessions per second.
 *
 * Every mode prints one machine-readable line of key=value pairs on stdout
 * and a human-readable summary on stderr. The exit status is 0 on success,
 * 1 on a protocol or I/O failure, 2 on a usage error, 3 on timeout.
 *
 * Literals are read straight from the socket into a 1 MiB buffer and thrown
 * away, so the client costs one recv(2) per MiB at most and no copy. With
 * TLS, SSL_read decrypts into the same buffer (read-ahead on, so one read(2)
 * brings in many records).
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "benchutil.h"

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

static SSL_CTX *g_tls_ctx; /* set with --tls */
static char *g_rbuf;       /* one read buffer, reused by every connection */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "imapbench: timeout\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: imapbench MODE --connect HOST:PORT [options]\n"
        "modes:\n"
        "  fetch    FETCH one message repeatedly until --total-mib of literal\n"
        "           data arrived; reports MB/s (1 MB = 10^6 bytes)\n"
        "  noop     --count sequential NOOP round trips; reports latency in us\n"
        "  append   APPEND --count messages of --size bytes (needs a server\n"
        "           that stores mail, e.g. Dovecot)\n"
        "  handshake  --count sessions one after the other: connect, TLS (with\n"
        "           --tls), greeting, LOGOUT, close; reports sessions per second\n"
        "           and the time per session in us\n"
        "options:\n"
        "  --connect HOST:PORT   server or relay to talk to (required)\n"
        "  --login USER:PASS     LOGIN first (default: no LOGIN)\n"
        "  --mailbox NAME        mailbox to SELECT / APPEND to (default INBOX)\n"
        "  --total-mib N         fetch: literal MiB to receive (default 256)\n"
        "  --seq SET             fetch: message set (default 1)\n"
        "  --item ITEM           fetch: data item (default BODY.PEEK[])\n"
        "  --count N             noop: round trips (default 20000);\n"
        "                        append: messages (default 1);\n"
        "                        handshake: sessions (default 1000)\n"
        "  --warmup N            fetch: untimed FETCHes first (default 1);\n"
        "                        noop: untimed NOOPs first (default 1000);\n"
        "                        handshake: untimed sessions first (default 20)\n"
        "  --parallel P          handshake: P client processes share --count\n"
        "                        (default 1: one session at a time)\n"
        "  --duration SEC        handshake: stop after SEC seconds even if fewer\n"
        "                        than --count sessions were done (default: none)\n"
        "  --tls                 implicit TLS (IMAPS) on every connection\n"
        "  --tls-ca FILE         verify the server certificate against this CA\n"
        "                        (PEM); without it nothing is verified\n"
        "  --tls-name NAME       SNI and the name (or IP) checked in the\n"
        "                        certificate (default: the --connect host; an IP\n"
        "                        address is checked, never sent as SNI)\n"
        "  --size S              append: message size, e.g. 64m (default 64m)\n"
        "  --no-nodelay          leave Nagle's algorithm on\n"
        "  --timeout SEC         give up after SEC seconds (default 120)\n"
        "  --verbose             print server lines (not literals) on stderr\n");
}

static void tls_error(const char *what)
{
    unsigned long e;
    char msg[256];
    int any = 0;
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, msg, sizeof msg);
        fprintf(stderr, "imapbench: %s: %s\n", what, msg);
        any = 1;
    }
    if (!any)
        fprintf(stderr, "imapbench: %s: %s\n", what,
                errno ? strerror(errno) : "connection closed");
}

static SSL_CTX *tls_client_ctx(const struct opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_error("SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* servers and relays often close without close_notify after LOGOUT */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* many records per read(2) */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, TLS_RBUF_SIZE);
    if (o->tls_ca) {
        if (SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1) {
            tls_error(o->tls_ca);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* TLS handshake on c->fd; name is the SNI / name to check. */
static int tls_start(struct conn *c, const struct opts *o, const char *name)
{
    c->ssl = SSL_new(g_tls_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        tls_error("SSL_new");
        return -1;
    }
    if (name[0] && !is_ip(name))
        SSL_set_tlsext_host_name(c->ssl, name);
    if (o->tls_ca && name[0]) {
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        if (is_ip(name))
            X509_VERIFY_PARAM_set1_ip_asc(param, name);
        else
            X509_VERIFY_PARAM_set1_host(param, name, 0);
    }
    errno = 0;
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK)
            fprintf(stderr, "imapbench: certificate verification failed: %s (name %s)\n",
                    X509_verify_cert_error_string(v), name);
        tls_error("TLS handshake");
        return -1;
    }
    return 0;
}

static int conn_open(struct conn *c, const struct opts *o)
{
    const char *hostport = o->connect;
    int nodelay = o->nodelay;
    c->fd = -1;
    c->ssl = NULL;
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        fprintf(stderr, "imapbench: --connect wants HOST:PORT, got '%s'\n", hostport);
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    if (host[0] == '[') { /* [::1]:143 */
        size_t l = strlen(host);
        if (l >= 2 && host[l - 1] == ']') {
            memmove(host, host + 1, l - 2);
            host[l - 2] = '\0';
        }
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int e = getaddrinfo(host, colon + 1, &hints, &res);
    if (e) {
        fprintf(stderr, "imapbench: %s: %s\n", hostport, gai_strerror(e));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "imapbench: cannot connect to %s: %s\n", hostport, strerror(errno));
        return -1;
    }
    if (nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->fd = fd;
    if (!g_rbuf)
        g_rbuf = malloc(RBUF_SIZE);
    c->buf = g_rbuf;
    c->start = c->end = 0;
    c->next_tag = 1;
    c->logging_out = 0;
    if (!c->buf)
        return -1;
    if (g_tls_ctx && tls_start(c, o, o->tls_name ? o->tls_name : host) < 0)
        return -1;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* send close_notify; do not wait for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* recv(2) or SSL_read: bytes read, 0 on EOF / close_notify, -1 on error. */
static ssize_t conn_recv(struct conn *c, void *p, size_t n)
{
    if (c->ssl) {
        size_t r;
        if (SSL_read_ex(c->ssl, p, n, &r) == 1)
            return (ssize_t)r;
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_SYSCALL && errno == EINTR)
            return -1;
        tls_error("SSL_read");
        errno = EPROTO;
        return -1;
    }
    return recv(c->fd, p, n, 0);
}

static const char *tls_desc(const struct conn *c, char *out, size_t n)
{
    if (!c->ssl)
        snprintf(out, n, "%s", "");
    else
        snprintf(out, n, " tls=%s cipher=%s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl));
    return out;
}

static int send_all(struct conn *c, const void *p, size_t n)
{
    const char *s = p;
    if (c->ssl) {
        size_t w;
        if (n > 0 && (SSL_write_ex(c->ssl, p, n, &w) != 1 || w != n)) {
            tls_error("SSL_write");
            return -1;
        }
        return 0;
    }
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "imapbench: send: %s\n", strerror(errno));
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Make room and read more; returns bytes read, 0 on EOF, -1 on error. */
static ssize_t fill(struct conn *c)
{
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end >= RBUF_SIZE)
        return -1;
    for (;;) {
        ssize_t r = conn_recv(c, c->buf + c->end, RBUF_SIZE - c->end);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            c->end += (size_t)r;
        return r;
    }
}

/*
 * Next line without its CRLF, NUL-terminated inside the buffer. The pointer
 * stays valid until the next read from c.
 */
static char *read_line(struct conn *c, size_t *len)
{
    size_t scanned = c->start;
    for (;;) {
        char *nl = memchr(c->buf + scanned, '\n', c->end - scanned);
        if (nl) {
            char *line = c->buf + c->start;
            size_t l = (size_t)(nl - line);
            c->start += l + 1;
            if (l > 0 && line[l - 1] == '\r')
                l--;
            line[l] = '\0';
            *len = l;
            return line;
        }
        if (c->end - c->start > MAX_LINE) {
            fprintf(stderr, "imapbench: server line longer than %d bytes\n", MAX_LINE);
            return NULL;
        }
        size_t off = c->end - c->start;
        ssize_t r = fill(c);
        if (r <= 0) {
            fprintf(stderr, "imapbench: %s while reading a line\n",
                    r == 0 ? "connection closed" : strerror(errno));
            return NULL;
        }
        scanned = c->start + off;
    }
}

/* Discard n literal bytes; reads straight into the buffer in large chunks. */
static int skip_literal(struct conn *c, uint64_t n)
{
    size_t avail = c->end - c->start;
    if (avail >= n) {
        c->start += (size_t)n;
        return 0;
    }
    n -= avail;
    c->start = c->end = 0;
    while (n > 0) {
        size_t want = n < RBUF_SIZE ? (size_t)n : RBUF_SIZE;
        ssize_t r = conn_recv(c, c->buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "imapbench: %s inside a literal\n",
                    r == 0 ? "connection closed" : strerror(errno));
            return -1;
        }
        n -= (uint64_t)r;
    }
    return 0;
}

/* If the line ends in {N} or {N+}, return 1 and set *n. */
static int literal_at_end(const char *line, size_t len, uint64_t *n)
{
    if (len < 3 || line[len - 1] != '}')
        return 0;
    size_t i = len - 1;
    if (i > 0 && line[i - 1] == '+')
        i--;
    size_t digits_end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == digits_end || i == 0 || line[i - 1] != '{')
        return 0;
    uint64_t v = 0;
    for (size_t k = i; k < digits_end; k++)
        v = v * 10 + (uint64_t)(line[k] - '0');
    *n = v;
    return 1;
}

enum result { RES_OK, RES_NO, RES_BAD, RES_ERR, RES_CONT };

/*
 * Read responses until the tagged one for `tag` (or, with want_cont, a
 * continuation request). Literal bytes seen are added to *lit.
 */
static enum result wait_for(struct conn *c, const char *tag, int want_cont,
                            uint64_t *lit, int verbose)
{
    size_t tl = strlen(tag);
    int continuation = 0; /* the line goes on after a literal */
    for (;;) {
        size_t len;
        char *line = read_line(c, &len);
        if (!line)
            return RES_ERR;
        if (verbose)
            fprintf(stderr, "S: %s\n", line);
        uint64_t n;
        if (literal_at_end(line, len, &n)) {
            if (skip_literal(c, n) < 0)
                return RES_ERR;
            if (lit)
                *lit += n;
            continuation = 1;
            continue;
        }
        if (continuation) {
            continuation = 0;
            continue;
        }
        if (want_cont && line[0] == '+')
            return RES_CONT;
        if (len > tl && strncmp(line, tag, tl) == 0 && line[tl] == ' ') {
            const char *st = line + tl + 1;
            if (strncasecmp(st, "OK", 2) == 0)
                return RES_OK;
            fprintf(stderr, "imapbench: server answered: %s\n", line);
            return strncasecmp(st, "NO", 2) == 0 ? RES_NO : RES_BAD;
        }
        if (!c->logging_out && len >= 5 && strncasecmp(line, "* BYE", 5) == 0) {
            fprintf(stderr, "imapbench: server said: %s\n", line);
            return RES_ERR;
        }
    }
}

/* Send "TAG <fmt...>\r\n"; writes the tag used into tag (>= 16 bytes). */
static int command(struct conn *c, char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int command(struct conn *c, char *tag, const char *fmt, ...)
{
    char line[4096];
    snprintf(tag, 16, "b%lu", c->next_tag++);
    int n = snprintf(line, sizeof line, "%s ", tag);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)(n + m) >= sizeof line - 2)
        return -1;
    n += m;
    line[n++] = '\r';
    line[n++] = '\n';
    return send_all(c, line, (size_t)n);
}

/* "TAG VERB ARGS" and wait for the tagged OK. */
static int simple(struct conn *c, int verbose, const char *verb, const char *args)
{
    char tag[16];
    if (command(c, tag, "%s %s", verb, args) < 0)
        return -1;
    return wait_for(c, tag, 0, NULL, verbose) == RES_OK ? 0 : -1;
}

/* Quote an IMAP string into out (size >= 2*len+3). */
static void quote(char *out, const char *s, size_t n)
{
    *out++ = '"';
    for (size_t i = 0; i < n && s[i]; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *out++ = '\\';
        *out++ = s[i];
    }
    *out++ = '"';
    *out = '\0';
}

static int session_start(struct conn *c, const struct opts *o)
{
    if (conn_open(c, o) < 0)
        return -1;
    size_t len;
    char *greet = read_line(c, &len);
    if (!greet)
        return -1;
    if (o->verbose)
        fprintf(stderr, "S: %s\n", greet);
    if (strncasecmp(greet, "* OK", 4) != 0 && strncasecmp(greet, "* PREAUTH", 9) != 0) {
        fprintf(stderr, "imapbench: unexpected greeting: %s\n", greet);
        return -1;
    }
    if (o->login) {
        const char *colon = strchr(o->login, ':');
        if (!colon) {
            fprintf(stderr, "imapbench: --login wants USER:PASS\n");
            return -1;
        }
        char user[600], pass[600], args[1300];
        size_t ul = (size_t)(colon - o->login);
        if (ul > 256 || strlen(colon + 1) > 256)
            return -1;
        quote(user, o->login, ul);
        quote(pass, colon + 1, strlen(colon + 1));
        snprintf(args, sizeof args, "%s %s", user, pass);
        if (simple(c, o->verbose, "LOGIN", args) < 0) {
            fprintf(stderr, "imapbench: LOGIN failed\n");
            return -1;
        }
    }
    return 0;
}

static void session_end(struct conn *c, const struct opts *o)
{
    char tag[16];
    c->logging_out = 1;
    if (command(c, tag, "LOGOUT") == 0)
        wait_for(c, tag, 0, NULL, o->verbose);
    conn_close(c);
}

static int run_fetch(const struct opts *o)
{
    struct conn c;
    if (session_start(&c, o) < 0)
        return 1;
    char mbox[600];
    quote(mbox, o->mailbox, strlen(o->mailbox));
    if (simple(&c, o->verbose, "SELECT", mbox) < 0) {
        fprintf(stderr, "imapbench: SELECT failed\n");
        return 1;
    }
    uint64_t want = (uint64_t)(o->total_mib * 1048576.0);
    uint64_t got = 0, per = 0;
    long fetches = 0;
    char tag[16];
    for (long i = 0; i < o->warmup; i++) {
        uint64_t l = 0;
        if (command(&c, tag, "FETCH %s %s", o->seq, o->item) < 0 ||
            wait_for(&c, tag, 0, &l, o->verbose) != RES_OK)
            return 1;
        if (l == 0) {
            fprintf(stderr, "imapbench: FETCH returned no literal (empty mailbox?)\n");
            return 1;
        }
    }
    double t0 = now_s();
    while (got < want || fetches == 0) {
        uint64_t l = 0;
        if (command(&c, tag, "FETCH %s %s", o->seq, o->item) < 0 ||
            wait_for(&c, tag, 0, &l, o->verbose) != RES_OK)
            return 1;
        if (l == 0) {
            fprintf(stderr, "imapbench: FETCH returned no literal (empty mailbox?)\n");
            return 1;
        }
        per = l;
        got += l;
        fetches++;
    }
    double dt = now_s() - t0;
    char tls[160];
    tls_desc(&c, tls, sizeof tls);
    session_end(&c, o);
    double mbps = (double)got / dt / 1e6;
    printf("mode=fetch bytes=%llu seconds=%.6f mbps=%.1f fetches=%ld literal=%llu%s\n",
           (unsigned long long)got, dt, mbps, fetches, (unsigned long long)per, tls);
    fprintf(stderr, "fetch: %ld x %.1f MiB = %.1f MiB in %.3f s: %.1f MB/s (%.1f MiB/s)\n",
            fetches, (double)per / 1048576.0, (double)got / 1048576.0, dt, mbps,
            (double)got / dt / 1048576.0);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, long n, double p)
{
    /* nearest rank */
    long k = (long)(p / 100.0 * (double)n + 0.999999999) - 1;
    if (k < 0)
        k = 0;
    if (k >= n)
        k = n - 1;
    return (double)v[k] / 1000.0;
}

static int run_noop(const struct opts *o)
{
    struct conn c;
    if (o->count <= 0) {
        fprintf(stderr, "imapbench: --count must be positive\n");
        return 2;
    }
    if (session_start(&c, o) < 0)
        return 1;
    uint64_t *lat = malloc(sizeof *lat * (size_t)o->count);
    if (!lat)
        return 1;
    char tag[16];
    for (long i = 0; i < o->warmup + o->count; i++) {
        uint64_t t0 = now_ns();
        if (command(&c, tag, "NOOP") < 0 || wait_for(&c, tag, 0, NULL, o->verbose) != RES_OK)
            return 1;
        uint64_t t1 = now_ns();
        if (i >= o->warmup)
            lat[i - o->warmup] = t1 - t0;
    }
    char tls[160];
    tls_desc(&c, tls, sizeof tls);
    session_end(&c, o);
    double sum = 0;
    for (long i = 0; i < o->count; i++)
        sum += (double)lat[i];
    qsort(lat, (size_t)o->count, sizeof *lat, cmp_u64);
    double mean = sum / (double)o->count / 1000.0;
    double p50 = pct(lat, o->count, 50), p90 = pct(lat, o->count, 90);
    double p99 = pct(lat, o->count, 99), p999 = pct(lat, o->count, 99.9);
    double mn = (double)lat[0] / 1000.0, mx = (double)lat[o->count - 1] / 1000.0;
    printf("mode=noop count=%ld p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f "
           "mean_us=%.1f min_us=%.1f max_us=%.1f%s\n",
           o->count, p50, p90, p99, p999, mean, mn, mx, tls);
    fprintf(stderr, "noop: %ld round trips: p50 %.1f us, p99 %.1f us, mean %.1f us "
                    "(min %.1f, p90 %.1f, p99.9 %.1f, max %.1f)\n",
            o->count, p50, p99, mean, mn, p90, p999, mx);
    free(lat);
    return 0;
}

static int run_append(const struct opts *o)
{
    struct conn c;
    if (!o->login)
        fprintf(stderr, "imapbench: append without --login; the server may refuse\n");
    if (session_start(&c, o) < 0)
        return 1;
    char *msg = bench_build_message(o->size);
    if (!msg)
        return 1;
    char mbox[600], tag[16];
    quote(mbox, o->mailbox, strlen(o->mailbox));
    double t0 = now_s();
    for (long i = 0; i < o->count; i++) {
        if (command(&c, tag, "APPEND %s {%zu}", mbox, o->size) < 0)
            return 1;
        enum result r = wait_for(&c, tag, 1, NULL, o->verbose);
        if (r != RES_CONT) {
            fprintf(stderr, "imapbench: APPEND refused\n");
            return 1;
        }
        if (send_all(&c, msg, o->size) < 0 || send_all(&c, "\r\n", 2) < 0)
            return 1;
        if (wait_for(&c, tag, 0, NULL, o->verbose) != RES_OK) {
            fprintf(stderr, "imapbench: APPEND failed\n");
            return 1;
        }
    }
    double dt = now_s() - t0;
    session_end(&c, o);
    free(msg);
    double bytes = (double)o->size * (double)o->count;
    printf("mode=append count=%ld bytes=%.0f seconds=%.6f mbps=%.1f\n",
           o->count, bytes, dt, bytes / dt / 1e6);
    fprintf(stderr, "append: %ld x %zu bytes in %.3f s: %.1f MB/s\n",
            o->count, o->size, dt, bytes / dt / 1e6);
    return 0;
}

/* What one handshake worker hands back (in shared memory with --parallel). */
struct hs_result {
    int ok;
    long done;
    uint64_t t_start, t_end; /* CLOCK_MONOTONIC ns, timed part only */
    char tls[160];
};

/* One session: connect, TLS, greeting, LOGOUT, tagged OK, close. */
static int hs_session(const struct opts *o, char *tls, size_t tlslen)
{
    struct conn c;
    if (conn_open(&c, o) < 0) {
        conn_close(&c);
        return -1;
    }
    size_t len;
    char *greet = read_line(&c, &len);
    if (!greet || strncasecmp(greet, "* OK", 4) != 0) {
        if (greet)
            fprintf(stderr, "imapbench: unexpected greeting: %s\n", greet);
        conn_close(&c);
        return -1;
    }
    if (o->verbose)
        fprintf(stderr, "S: %s\n", greet);
    char tag[16];
    c.logging_out = 1;
    if (command(&c, tag, "LOGOUT") < 0 || wait_for(&c, tag, 0, NULL, o->verbose) != RES_OK) {
        fprintf(stderr, "imapbench: LOGOUT failed\n");
        conn_close(&c);
        return -1;
    }
    if (tls)
        tls_desc(&c, tls, tlslen);
    conn_close(&c);
    return 0;
}

/*
 * Untimed warm-up sessions, then (after the go byte when go_fd >= 0) n timed
 * sessions; latencies in ns go to lat[0..n).
 */
static void hs_worker(const struct opts *o, long n, uint64_t *lat, struct hs_result *res,
                      int ready_fd, int go_fd)
{
    res->ok = 0;
    res->done = 0;
    res->tls[0] = '\0';
    for (long i = 0; i < o->warmup; i++)
        if (hs_session(o, NULL, 0) < 0)
            return;
    if (ready_fd >= 0) {
        char b = 'r';
        if (write(ready_fd, &b, 1) != 1)
            return;
        if (read(go_fd, &b, 1) != 1)
            return;
    }
    res->t_start = now_ns();
    uint64_t deadline = o->duration > 0 ? res->t_start + (uint64_t)(o->duration * 1e9) : 0;
    for (long i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        if (hs_session(o, i == 0 ? res->tls : NULL, sizeof res->tls) < 0)
            return;
        uint64_t t1 = now_ns();
        lat[i] = t1 - t0;
        res->done = i + 1;
        if (deadline && t1 >= deadline)
            break;
    }
    res->t_end = now_ns();
    res->ok = 1;
}

static int run_handshake(const struct opts *o)
{
    if (o->count <= 0 || o->parallel <= 0 || o->parallel > o->count) {
        fprintf(stderr, "imapbench: --count and --parallel must be positive, "
                        "--parallel at most --count\n");
        return 2;
    }
    long p = o->parallel;
    /* shared with the workers: results, then latencies */
    size_t bytes = sizeof(struct hs_result) * (size_t)p + sizeof(uint64_t) * (size_t)o->count;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("imapbench: mmap");
        return 1;
    }
    struct hs_result *res = mem;
    uint64_t *lat = (uint64_t *)(res + p);
    long per = o->count / p, extra = o->count % p;
    uint64_t t_go;
    if (p == 1) {
        hs_worker(o, o->count, lat, res, -1, -1);
        t_go = res->t_start;
    } else {
        int ready[2], go[2];
        if (pipe(ready) < 0 || pipe(go) < 0) {
            perror("imapbench: pipe");
            return 1;
        }
        fflush(NULL);
        long off = 0;
        for (long w = 0; w < p; w++) {
            long n = per + (w < extra);
            pid_t pid = fork();
            if (pid < 0) {
                perror("imapbench: fork");
                return 1;
            }
            if (pid == 0) {
                close(ready[0]);
                close(go[1]);
                if (o->timeout > 0)
                    alarm((unsigned)o->timeout); /* alarms are not inherited */
                hs_worker(o, n, lat + off, &res[w], ready[1], go[0]);
                _exit(res[w].ok ? 0 : 1);
            }
            off += n;
        }
        close(ready[1]);
        close(go[0]);
        long nready = 0;
        char b;
        while (nready < p && read(ready[0], &b, 1) == 1)
            nready++;
        t_go = now_ns();
        for (long w = 0; w < p; w++)
            if (write(go[1], "g", 1) != 1)
                break;
        close(go[1]);
        close(ready[0]);
        while (wait(NULL) > 0 || errno == EINTR)
            ;
    }
    uint64_t t_end = 0;
    long total = 0, off = 0;
    for (long w = 0; w < p; w++) {
        if (!res[w].ok) {
            fprintf(stderr, "imapbench: handshake worker %ld failed after %ld session(s)\n", w,
                    res[w].done);
            return 1;
        }
        if (res[w].t_end > t_end)
            t_end = res[w].t_end;
        /* workers stopped by --duration leave gaps: pack the latencies */
        memmove(lat + total, lat + off, sizeof *lat * (size_t)res[w].done);
        total += res[w].done;
        off += per + (w < extra);
    }
    double dt = (double)(t_end - t_go) / 1e9;
    double sum = 0;
    for (long i = 0; i < total; i++)
        sum += (double)lat[i];
    qsort(lat, (size_t)total, sizeof *lat, cmp_u64);
    double rate = (double)total / dt;
    double mean = sum / (double)total / 1000.0;
    double p50 = pct(lat, total, 50), p90 = pct(lat, total, 90);
    double p99 = pct(lat, total, 99);
    printf("mode=handshake count=%ld parallel=%ld seconds=%.6f sessions_per_s=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f%s\n",
           total, p, dt, rate, p50, p90, p99, mean, res[0].tls);
    fprintf(stderr, "handshake: %ld sessions (%ld at a time) in %.3f s: %.1f sessions/s, "
                    "p50 %.1f us, p99 %.1f us, mean %.1f us per session%s\n",
            total, p, dt, rate, p50, p99, mean, res[0].tls);
    munmap(mem, bytes);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .mailbox = "INBOX", .item = "BODY.PEEK[]", .seq = "1",
        .total_mib = 256, .count = -1, .warmup = -1,
        .size = (size_t)64 << 20, .nodelay = 1, .timeout = 120, .parallel = 1,
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-nodelay")) {
            o.nodelay = 0;
            continue;
        }
        if (!strcmp(a, "--verbose")) {
            o.verbose = 1;
            continue;
        }
        if (!strcmp(a, "--tls")) {
            o.tls = 1;
            continue;
        }
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "imapbench: %s needs a value\n", a);
            return 2;
        }
        i++;
        char *end = NULL;
        if (!strcmp(a, "--connect"))
            o.connect = v;
        else if (!strcmp(a, "--login"))
            o.login = v;
        else if (!strcmp(a, "--mailbox"))
            o.mailbox = v;
        else if (!strcmp(a, "--item"))
            o.item = v;
        else if (!strcmp(a, "--seq"))
            o.seq = v;
        else if (!strcmp(a, "--total-mib"))
            o.total_mib = strtod(v, &end);
        else if (!strcmp(a, "--count"))
            o.count = strtol(v, &end, 10);
        else if (!strcmp(a, "--warmup"))
            o.warmup = strtol(v, &end, 10);
        else if (!strcmp(a, "--timeout"))
            o.timeout = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--parallel"))
            o.parallel = strtol(v, &end, 10);
        else if (!strcmp(a, "--duration"))
            o.duration = strtod(v, &end);
        else if (!strcmp(a, "--tls-ca"))
            o.tls_ca = v;
        else if (!strcmp(a, "--tls-name"))
            o.tls_name = v;
        else if (!strcmp(a, "--size")) {
            if (bench_parse_size(v, &o.size) < 0) {
                fprintf(stderr, "imapbench: bad size '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "imapbench: unknown option %s\n", a);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "imapbench: bad number '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!o.connect) {
        fprintf(stderr, "imapbench: --connect HOST:PORT is required\n");
        return 2;
    }
    if ((o.tls_ca || o.tls_name) && !o.tls) {
        fprintf(stderr, "imapbench: --tls-ca and --tls-name need --tls\n");
        return 2;
    }
    if (o.tls && !(g_tls_ctx = tls_client_ctx(&o)))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    if (o.timeout > 0)
        alarm((unsigned)o.timeout);

    if (!strcmp(o.mode, "fetch")) {
        if (o.warmup < 0)
            o.warmup = 1;
        return run_fetch(&o);
    }
    if (!strcmp(o.mode, "noop")) {
        if (o.count < 0)
            o.count = 20000;
        if (o.warmup < 0)
            o.warmup = 1000;
        return run_noop(&o);
    }
    if (!strcmp(o.mode, "append")) {
        if (o.count < 0)
            o.count = 1;
        return run_append(&o);
    }
    if (!strcmp(o.mode, "handshake")) {
        if (o.count < 0)
            o.count = 1000;
        if (o.warmup < 0)
            o.warmup = 20;
        return run_handshake(&o);
    }
    fprintf(stderr, "imapbench: unknown mode '%s'\n", o.mode);
    usage(stderr);
    return 2;
}
