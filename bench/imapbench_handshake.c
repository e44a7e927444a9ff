/* imapbench: the handshake mode, sessions per second, in one process or
 * --parallel ones sharing their results through shared memory. */
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
            print_server_line("imapbench: unexpected greeting: ", greet);
        conn_close(&c);
        return -1;
    }
    if (o->verbose)
        print_server_line("S: ", greet);
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

int run_handshake(const struct opts *o)
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
