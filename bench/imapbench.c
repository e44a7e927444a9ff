/*
 * imapbench: a small IMAP load client for the relay benchmark.
 *
 *   imapbench fetch  --connect HOST:PORT [--total-mib 256] ...
 *   imapbench noop   --connect HOST:PORT [--count 20000] ...
 *   imapbench append --connect HOST:PORT --login USER:PASS [--size 64m] ...
 *
 * Every mode prints one machine-readable line of key=value pairs on stdout
 * and a human-readable summary on stderr. The exit status is 0 on success,
 * 1 on a protocol or I/O failure, 2 on a usage error, 3 on timeout.
 *
 * Literals are read straight from the socket into a 1 MiB buffer and thrown
 * away, so the client costs one recv(2) per MiB at most and no copy.
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
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#define RBUF_SIZE (1u << 20)
#define MAX_LINE (64 * 1024)

struct conn {
    int fd;
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
};

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
        "options:\n"
        "  --connect HOST:PORT   server or relay to talk to (required)\n"
        "  --login USER:PASS     LOGIN first (default: no LOGIN)\n"
        "  --mailbox NAME        mailbox to SELECT / APPEND to (default INBOX)\n"
        "  --total-mib N         fetch: literal MiB to receive (default 256)\n"
        "  --seq SET             fetch: message set (default 1)\n"
        "  --item ITEM           fetch: data item (default BODY.PEEK[])\n"
        "  --count N             noop: round trips (default 20000);\n"
        "                        append: messages (default 1)\n"
        "  --warmup N            fetch: untimed FETCHes first (default 1);\n"
        "                        noop: untimed NOOPs first (default 1000)\n"
        "  --size S              append: message size, e.g. 64m (default 64m)\n"
        "  --no-nodelay          leave Nagle's algorithm on\n"
        "  --timeout SEC         give up after SEC seconds (default 120)\n"
        "  --verbose             print server lines (not literals) on stderr\n");
}

static int conn_open(struct conn *c, const char *hostport, int nodelay)
{
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
    c->buf = malloc(RBUF_SIZE);
    c->start = c->end = 0;
    c->next_tag = 1;
    c->logging_out = 0;
    if (!c->buf)
        return -1;
    return 0;
}

static int send_all(struct conn *c, const void *p, size_t n)
{
    const char *s = p;
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
        ssize_t r = recv(c->fd, c->buf + c->end, RBUF_SIZE - c->end, 0);
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
        ssize_t r = recv(c->fd, c->buf, want, 0);
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
    if (conn_open(c, o->connect, o->nodelay) < 0)
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
    close(c->fd);
    free(c->buf);
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
    session_end(&c, o);
    double mbps = (double)got / dt / 1e6;
    printf("mode=fetch bytes=%llu seconds=%.6f mbps=%.1f fetches=%ld literal=%llu\n",
           (unsigned long long)got, dt, mbps, fetches, (unsigned long long)per);
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
           "mean_us=%.1f min_us=%.1f max_us=%.1f\n",
           o->count, p50, p90, p99, p999, mean, mn, mx);
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

int main(int argc, char **argv)
{
    struct opts o = {
        .mailbox = "INBOX", .item = "BODY.PEEK[]", .seq = "1",
        .total_mib = 256, .count = -1, .warmup = -1,
        .size = (size_t)64 << 20, .nodelay = 1, .timeout = 120,
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
    fprintf(stderr, "imapbench: unknown mode '%s'\n", o.mode);
    usage(stderr);
    return 2;
}
