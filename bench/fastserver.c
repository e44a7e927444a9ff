/*
 * fastserver: a deliberately minimal IMAP server used as the fast upstream
 * of the relay benchmark.
 *
 * It sends a greeting, answers CAPABILITY, LOGIN (any credentials),
 * SELECT/EXAMINE, NOOP, CHECK and LOGOUT, and answers every FETCH (and
 * UID FETCH) with one literal of a fixed size, taken from a buffer built once
 * at start-up:
 *
 *   * 1 FETCH (BODY[] {N}\r\n<N bytes>)\r\n
 *   tag OK FETCH completed\r\n
 *
 * Nothing is parsed beyond the tag and the command word, so the server costs
 * as little CPU per byte as a plain write(2) loop. One process is forked per
 * connection; the parent only accepts. SIGTERM or SIGINT stops the parent,
 * which then terminates its children.
 *
 * With --tls-cert FILE --tls-key FILE every connection is implicit TLS
 * (IMAPS): the child completes the handshake, then speaks the same protocol
 * through SSL_write/SSL_read. Records go through a write buffer
 * (--tls-wbuf, default 256 KiB) so that a big literal leaves in a few large
 * send(2) calls instead of one per 16 KiB record. No session tickets and no
 * session cache unless --tls-tickets: every handshake is a full one.
 *
 * --prefork N replaces the fork per connection by N workers forked at
 * start that accept() in turn; for connection-rate runs, where fork and
 * exit would otherwise cost more than the TLS handshake.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "benchutil.h"

#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_LINE (64 * 1024)
#define MAX_CHILDREN 1024

static volatile sig_atomic_t g_stop;
static pid_t g_children[MAX_CHILDREN];

static const char *g_literal;
static size_t g_literal_len;
/* --lines N: FETCH is answered with N one-line responses instead */
static char *g_lines;
static size_t g_lines_len;
static long g_line_count;
static int g_nodelay = 1;
static int g_verbose;

/* TLS: the context is made by the parent, the SSL by each child */
static SSL_CTX *g_tls_ctx;
static SSL *g_ssl;
static size_t g_tls_wbuf = (size_t)256 << 10;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fastserver [--listen ADDR] [--port N] [--port-file FILE]\n"
            "                  [--size BYTES[k|m|g]] [--lines N] [--no-nodelay]\n"
            "                  [--tls-cert FILE --tls-key FILE [--tls-wbuf BYTES]\n"
            "                   [--tls-tickets]] [--prefork N] [--verbose]\n"
            "  --listen ADDR    IPv4 address to listen on (default 127.0.0.1)\n"
            "  --port N         TCP port, 0 picks a free one (default 0)\n"
            "  --port-file F    write the bound port as \"PORT\\n\" once listening\n"
            "  --size S         literal size of every FETCH answer (default 64m)\n"
            "  --lines N        answer FETCH with N one-line responses\n"
            "                   (* i FETCH (UID i MODSEQ (i) FLAGS (\\Seen))), no literal;\n"
            "                   SELECT then says N EXISTS\n"
            "  --no-nodelay     leave Nagle's algorithm on for accepted sockets\n"
            "  --prefork N      N worker processes forked at start accept in turn,\n"
            "                   one connection at a time each (default 0: one\n"
            "                   process forked per connection). For connection-rate\n"
            "                   runs, where a fork per connection would dominate\n"
            "  --tls-cert FILE  serve implicit TLS with this certificate (PEM, chain\n"
            "                   allowed); needs --tls-key\n"
            "  --tls-key FILE   the certificate's private key (PEM)\n"
            "  --tls-wbuf S     TLS records are collected up to S bytes per send(2)\n"
            "                   (default 256k; 0 = one send per record)\n"
            "  --tls-tickets    issue session tickets (default: none, so that every\n"
            "                   handshake is a full one)\n"
            "  --verbose        one line per connection on stderr (TLS version,\n"
            "                   cipher, resumed or not; handshake errors)\n");
}

static int tls_write_all(const void *p, size_t n)
{
    /* blocking socket, no partial writes: SSL_write_ex sends all of it */
    size_t w;
    if (n == 0)
        return 0;
    if (SSL_write_ex(g_ssl, p, n, &w) != 1 || w != n) {
        if (g_verbose) {
            unsigned long e = ERR_peek_last_error();
            fprintf(stderr, "fastserver: SSL_write: %s\n",
                    e ? ERR_reason_error_string(e) : strerror(errno));
        }
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* Push what the TLS write buffer holds; a no-op on plain connections. */
static int flush_out(void)
{
    if (g_ssl && BIO_flush(SSL_get_wbio(g_ssl)) != 1)
        return -1;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    if (g_ssl)
        return tls_write_all(p, n);
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int reply(int fd, const char *tag, const char *text)
{
    char out[MAX_LINE + 128];
    int len = snprintf(out, sizeof out, "%s %s\r\n", tag, text);
    if (len < 0 || (size_t)len >= sizeof out)
        return -1;
    return write_all(fd, out, (size_t)len);
}

/* Builds the --lines answer once: the same lines for every FETCH. */
static int build_lines(long n)
{
    size_t cap = (size_t)n * 64 + 64;
    g_lines = malloc(cap);
    if (!g_lines)
        return -1;
    for (long i = 1; i <= n; i++)
        g_lines_len += (size_t)snprintf(g_lines + g_lines_len, cap - g_lines_len,
                                        "* %ld FETCH (UID %ld MODSEQ (%ld) FLAGS (\\Seen))\r\n",
                                        i, i, i + 1);
    g_line_count = n;
    return 0;
}

static int answer_fetch(int fd, const char *tag)
{
    if (g_lines) {
        if (write_all(fd, g_lines, g_lines_len) < 0)
            return -1;
        return reply(fd, tag, "OK FETCH completed");
    }
    char head[128];
    char tail[MAX_LINE + 64];
    int hl = snprintf(head, sizeof head, "* 1 FETCH (BODY[] {%zu}\r\n", g_literal_len);
    int tl = snprintf(tail, sizeof tail, ")\r\n%s OK FETCH completed\r\n", tag);
    if (hl < 0 || tl < 0 || (size_t)tl >= sizeof tail)
        return -1;
    if (write_all(fd, head, (size_t)hl) < 0)
        return -1;
    if (write_all(fd, g_literal, g_literal_len) < 0)
        return -1;
    return write_all(fd, tail, (size_t)tl);
}

/*
 * Handle one command line (without CRLF). Returns 1 to keep going, 0 after
 * LOGOUT, -1 on a write error.
 */
static int handle_line(int fd, char *line)
{
    char *sp = strchr(line, ' ');
    if (!sp || sp == line)
        return reply(fd, "*", "BAD missing tag") < 0 ? -1 : 1;
    *sp = '\0';
    const char *tag = line;
    char *cmd = sp + 1;
    char *end = cmd;
    while (*end && *end != ' ')
        end++;
    size_t cl = (size_t)(end - cmd);
    char *args = *end ? end + 1 : end;

#define IS(word) (cl == sizeof(word) - 1 && strncasecmp(cmd, word, cl) == 0)
    if (IS("UID")) { /* UID FETCH behaves like FETCH here */
        cmd = args;
        end = cmd;
        while (*end && *end != ' ')
            end++;
        cl = (size_t)(end - cmd);
    }
    int rc;
    if (IS("FETCH")) {
        rc = answer_fetch(fd, tag);
    } else if (IS("NOOP")) {
        rc = reply(fd, tag, "OK NOOP completed");
    } else if (IS("LOGIN")) {
        rc = reply(fd, tag, "OK [CAPABILITY IMAP4rev1] LOGIN completed");
    } else if (IS("SELECT") || IS("EXAMINE")) {
        char sel[256];
        long exists = g_lines ? g_line_count : 1;
        int n = snprintf(sel, sizeof sel,
                         "* FLAGS (\\Seen)\r\n"
                         "* %ld EXISTS\r\n"
                         "* 0 RECENT\r\n"
                         "* OK [UIDVALIDITY 1] UIDs valid\r\n"
                         "* OK [UIDNEXT %ld] next UID\r\n",
                         exists, exists + 1);
        rc = write_all(fd, sel, (size_t)n);
        if (rc == 0)
            rc = reply(fd, tag, IS("SELECT") ? "OK [READ-WRITE] SELECT completed"
                                             : "OK [READ-ONLY] EXAMINE completed");
    } else if (IS("CAPABILITY")) {
        rc = write_all(fd, "* CAPABILITY IMAP4rev1\r\n", 24);
        if (rc == 0)
            rc = reply(fd, tag, "OK CAPABILITY completed");
    } else if (IS("CHECK") || IS("CLOSE") || IS("UNSELECT")) {
        rc = reply(fd, tag, "OK completed");
    } else if (IS("LOGOUT")) {
        rc = write_all(fd, "* BYE fastserver logging out\r\n", 30);
        if (rc == 0)
            rc = reply(fd, tag, "OK LOGOUT completed");
        return rc < 0 ? -1 : 0;
    } else {
        rc = reply(fd, tag, "BAD command not supported by fastserver");
    }
#undef IS
    return rc < 0 ? -1 : 1;
}

static ssize_t read_some(int fd, char *p, size_t n)
{
    if (g_ssl) {
        size_t r;
        if (SSL_read_ex(g_ssl, p, n, &r) == 1)
            return (ssize_t)r;
        ERR_clear_error();
        return 0; /* close_notify, EOF or error: the session is over */
    }
    return recv(fd, p, n, 0);
}

static void serve(int fd)
{
    static char buf[MAX_LINE];
    size_t have = 0;
    static const char greeting[] = "* OK [CAPABILITY IMAP4rev1] fastserver ready\r\n";
    if (write_all(fd, greeting, sizeof greeting - 1) < 0 || flush_out() < 0)
        return;
    for (;;) {
        ssize_t r = read_some(fd, buf + have, sizeof buf - have - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        have += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', have - start);
            if (!nl)
                break;
            size_t end = (size_t)(nl - buf);
            size_t next = end + 1;
            if (end > start && buf[end - 1] == '\r')
                end--;
            buf[end] = '\0';
            int rc = handle_line(fd, buf + start);
            if (rc == 0)
                flush_out();
            if (rc <= 0)
                return;
            start = next;
        }
        if (flush_out() < 0)
            return;
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have >= sizeof buf - 1) {
            reply(fd, "*", "BAD line too long");
            return;
        }
    }
}

static void ssl_die(const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, msg, sizeof msg);
    fprintf(stderr, "fastserver: %s: %s\n", what, msg);
    exit(1);
}

static SSL_CTX *tls_server_ctx(const char *cert, const char *key, int tickets)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        ssl_die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (!tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        ssl_die(cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        ssl_die(key);
    return ctx;
}

/* In the child: the handshake on fd. Returns 0 with g_ssl set, or -1. */
static int tls_accept(int fd)
{
    g_ssl = SSL_new(g_tls_ctx);
    BIO *rbio = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wbio = BIO_new_socket(fd, BIO_NOCLOSE);
    if (!g_ssl || !rbio || !wbio)
        return -1;
    if (g_tls_wbuf > 0) {
        BIO *buf = BIO_new(BIO_f_buffer());
        if (!buf || BIO_set_write_buffer_size(buf, (long)g_tls_wbuf) != 1)
            return -1;
        wbio = BIO_push(buf, wbio);
    }
    SSL_set_bio(g_ssl, rbio, wbio);
    if (SSL_accept(g_ssl) != 1) {
        if (g_verbose) {
            unsigned long e = ERR_get_error();
            char msg[256] = "connection closed";
            if (e)
                ERR_error_string_n(e, msg, sizeof msg);
            fprintf(stderr, "fastserver: TLS handshake failed: %s\n", msg);
        }
        return -1;
    }
    if (g_verbose)
        fprintf(stderr, "fastserver: TLS %s %s%s\n", SSL_get_version(g_ssl),
                SSL_get_cipher_name(g_ssl), SSL_session_reused(g_ssl) ? " resumed" : "");
    return 0;
}

/* One connection, in a child: TLS handshake if configured, serve, close. */
static void handle_conn(int c)
{
    if (g_tls_ctx) {
        if (tls_accept(c) == 0) {
            serve(c);
            SSL_shutdown(g_ssl); /* close_notify, no wait for the peer's */
            BIO_flush(SSL_get_wbio(g_ssl));
        }
        SSL_free(g_ssl);
        g_ssl = NULL;
        ERR_clear_error();
    } else {
        serve(c);
    }
    close(c);
}

static void child_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
}

static void reap(void)
{
    pid_t p;
    while ((p = waitpid(-1, NULL, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_CHILDREN; i++)
            if (g_children[i] == p) {
                g_children[i] = 0;
                break;
            }
    }
}

int main(int argc, char **argv)
{
    const char *listen_addr = "127.0.0.1";
    const char *port_file = NULL;
    long port = 0;
    size_t size = (size_t)64 << 20;
    const char *tls_cert = NULL, *tls_key = NULL;
    int tls_tickets = 0;
    long prefork = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-nodelay")) {
            g_nodelay = 0;
        } else if (!strcmp(a, "--verbose")) {
            g_verbose = 1;
        } else if (!strcmp(a, "--tls-tickets")) {
            tls_tickets = 1;
        } else if (!v) {
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--listen")) {
            listen_addr = v;
            i++;
        } else if (!strcmp(a, "--port")) {
            char *end;
            port = strtol(v, &end, 10);
            if (*end || port < 0 || port > 65535) {
                fprintf(stderr, "fastserver: bad port '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--port-file")) {
            port_file = v;
            i++;
        } else if (!strcmp(a, "--size")) {
            if (bench_parse_size(v, &size) < 0) {
                fprintf(stderr, "fastserver: bad size '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--lines")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 10000000 || build_lines(n) < 0) {
                fprintf(stderr, "fastserver: bad --lines '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--prefork")) {
            char *end;
            prefork = strtol(v, &end, 10);
            if (*end || prefork < 0 || prefork > MAX_CHILDREN) {
                fprintf(stderr, "fastserver: bad --prefork '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--tls-cert")) {
            tls_cert = v;
            i++;
        } else if (!strcmp(a, "--tls-key")) {
            tls_key = v;
            i++;
        } else if (!strcmp(a, "--tls-wbuf")) {
            if (bench_parse_size(v, &g_tls_wbuf) < 0 || g_tls_wbuf > ((size_t)1 << 30)) {
                fprintf(stderr, "fastserver: bad size '%s'\n", v);
                return 2;
            }
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }

    if (!tls_cert != !tls_key) {
        fprintf(stderr, "fastserver: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_cert)
        g_tls_ctx = tls_server_ctx(tls_cert, tls_key, tls_tickets);

    g_literal = bench_build_message(size);
    g_literal_len = size;
    if (!g_literal) {
        fprintf(stderr, "fastserver: cannot allocate %zu bytes\n", size);
        return 1;
    }

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) {
        perror("fastserver: socket");
        return 1;
    }
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, listen_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "fastserver: bad listen address '%s'\n", listen_addr);
        return 2;
    }
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 128) < 0) {
        perror("fastserver: bind/listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    if (getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        perror("fastserver: getsockname");
        return 1;
    }
    unsigned bound = ntohs(sa.sin_port);

    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_stop; /* no SA_RESTART: accept() returns EINTR */
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) < 0) {
            perror("fastserver: port file");
            return 1;
        }
    }
    fprintf(stderr, "fastserver: listening on %s:%u, literal %zu bytes%s\n", listen_addr, bound,
            size, g_tls_ctx ? ", implicit TLS" : "");

    if (prefork > 0) {
        /* N long-lived workers accept() in turn: no fork per connection */
        for (long w = 0; w < prefork && w < MAX_CHILDREN; w++) {
            pid_t p = fork();
            if (p == 0) {
                child_signals();
                for (;;) {
                    int c = accept(ls, NULL, NULL);
                    if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                            continue;
                        perror("fastserver: accept");
                        _exit(1);
                    }
                    if (g_nodelay)
                        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    handle_conn(c);
                }
            }
            if (p < 0) {
                perror("fastserver: fork");
                g_stop = 1;
                break;
            }
            g_children[w] = p;
        }
        while (!g_stop) { /* bounded naps: no lost-wakeup race with the handler */
            struct timespec nap = {0, 100000000};
            nanosleep(&nap, NULL);
        }
    }

    while (!g_stop) {
        reap();
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("fastserver: accept");
            break;
        }
        if (g_nodelay)
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pid_t p = fork();
        if (p == 0) {
            close(ls);
            child_signals();
            handle_conn(c);
            _exit(0);
        }
        if (p < 0)
            perror("fastserver: fork");
        else {
            int slot = -1;
            for (int i = 0; i < MAX_CHILDREN; i++)
                if (g_children[i] == 0) {
                    slot = i;
                    break;
                }
            if (slot >= 0)
                g_children[slot] = p;
        }
        close(c);
    }

    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] > 0)
            kill(g_children[i], SIGTERM);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    close(ls);
    return 0;
}
