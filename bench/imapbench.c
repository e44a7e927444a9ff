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
#include "imapbench.h"

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
