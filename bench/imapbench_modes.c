/* imapbench: the fetch, noop and append modes. */
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

/* One FETCH: the bytes of its answer's literals or, for an answer of
 * lines only (fastserver --lines), of its lines; 0 after a failure, said. */
static uint64_t fetch_once(struct conn *c, const struct opts *o)
{
    char tag[16];
    uint64_t l = 0, lines_before = c->line_bytes;
    if (command(c, tag, "FETCH %s %s", o->seq, o->item) < 0 ||
        wait_for(c, tag, 0, &l, o->verbose) != RES_OK)
        return 0;
    if (l == 0)
        l = c->line_bytes - lines_before;
    if (l == 0)
        fprintf(stderr, "imapbench: FETCH returned no literal (empty mailbox?)\n");
    return l;
}

int run_fetch(const struct opts *o)
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
    for (long i = 0; i < o->warmup; i++)
        if (fetch_once(&c, o) == 0)
            return 1;
    double t0 = now_s();
    while (got < want || fetches == 0) {
        uint64_t l = fetch_once(&c, o);
        if (l == 0)
            return 1;
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

int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double pct(const uint64_t *v, long n, double p)
{
    /* nearest rank */
    long k = (long)(p / 100.0 * (double)n + 0.999999999) - 1;
    if (k < 0)
        k = 0;
    if (k >= n)
        k = n - 1;
    return (double)v[k] / 1000.0;
}

int run_noop(const struct opts *o)
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

int run_append(const struct opts *o)
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
