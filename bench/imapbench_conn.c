/* imapbench: connections (plain or implicit TLS), sending, reading lines
 * and skipping literals, commands and their tagged answers. */
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

#include "imapbench.h"

SSL_CTX *g_tls_ctx;
char *g_rbuf;

/* A server's line on stderr after prefix, bytes outside printable ASCII
 * as \xNN: what a server sends never reaches the terminal raw. */
void print_server_line(const char *prefix, const char *line)
{
    fputs(prefix, stderr);
    for (const unsigned char *p = (const unsigned char *)line; *p != '\0'; p++) {
        if (*p >= 0x20 && *p < 0x7f)
            fputc(*p, stderr);
        else
            fprintf(stderr, "\\x%02x", *p);
    }
    fputc('\n', stderr);
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

SSL_CTX *tls_client_ctx(const struct opts *o)
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

int conn_open(struct conn *c, const struct opts *o)
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

void conn_close(struct conn *c)
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

const char *tls_desc(const struct conn *c, char *out, size_t n)
{
    if (!c->ssl)
        snprintf(out, n, "%s", "");
    else
        snprintf(out, n, " tls=%s cipher=%s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl));
    return out;
}

int send_all(struct conn *c, const void *p, size_t n)
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
char *read_line(struct conn *c, size_t *len)
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

/*
 * Read responses until the tagged one for `tag` (or, with want_cont, a
 * continuation request). Literal bytes seen are added to *lit.
 */
enum result wait_for(struct conn *c, const char *tag, int want_cont,
                            uint64_t *lit, int verbose)
{
    size_t tl = strlen(tag);
    int continuation = 0; /* the line goes on after a literal */
    for (;;) {
        size_t len;
        char *line = read_line(c, &len);
        if (!line)
            return RES_ERR;
        c->line_bytes += len + 2;
        if (verbose)
            print_server_line("S: ", line);
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
            print_server_line("imapbench: server answered: ", line);
            return strncasecmp(st, "NO", 2) == 0 ? RES_NO : RES_BAD;
        }
        if (!c->logging_out && len >= 5 && strncasecmp(line, "* BYE", 5) == 0) {
            print_server_line("imapbench: server said: ", line);
            return RES_ERR;
        }
    }
}

/* Send "TAG <fmt...>\r\n"; writes the tag used into tag (>= 16 bytes). */
int command(struct conn *c, char *tag, const char *fmt, ...)
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
int simple(struct conn *c, int verbose, const char *verb, const char *args)
{
    char tag[16];
    if (command(c, tag, "%s %s", verb, args) < 0)
        return -1;
    return wait_for(c, tag, 0, NULL, verbose) == RES_OK ? 0 : -1;
}

/* Quote an IMAP string into out (size >= 2*len+3). */
void quote(char *out, const char *s, size_t n)
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

int session_start(struct conn *c, const struct opts *o)
{
    if (conn_open(c, o) < 0)
        return -1;
    size_t len;
    char *greet = read_line(c, &len);
    if (!greet)
        return -1;
    if (o->verbose)
        print_server_line("S: ", greet);
    if (strncasecmp(greet, "* OK", 4) != 0 && strncasecmp(greet, "* PREAUTH", 9) != 0) {
        print_server_line("imapbench: unexpected greeting: ", greet);
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

void session_end(struct conn *c, const struct opts *o)
{
    char tag[16];
    c->logging_out = 1;
    if (command(c, tag, "LOGOUT") == 0)
        wait_for(c, tag, 0, NULL, o->verbose);
    conn_close(c);
}
