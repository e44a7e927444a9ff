/* Helpers shared by fastserver and imapbench. */
#ifndef IMAPTAP_BENCHUTIL_H
#define IMAPTAP_BENCHUTIL_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* "65536", "64k", "64m", "1g", "64MiB" -> bytes. Returns 0 or -1. */
static inline int bench_parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = (size_t)v;
    return 0;
}

/*
 * A message-shaped buffer of exactly n bytes: an RFC 5322 header, then
 * 76-character text lines ending in CRLF. Returns malloc'ed memory or NULL.
 */
static inline char *bench_build_message(size_t n)
{
    static const char hdr[] =
        "From: bench@example.org\r\n"
        "To: alice@example.org\r\n"
        "Subject: imaptap relay benchmark\r\n"
        "Message-ID: <relay-bench@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n";
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,";
    char *b = malloc(n ? n : 1);
    if (!b)
        return NULL;
    size_t h = sizeof hdr - 1;
    size_t off = h < n ? h : n;
    memcpy(b, hdr, off);
    unsigned line = 0;
    size_t last = 0;
    while (off < n) {
        char row[78];
        for (int i = 0; i < 76; i++)
            row[i] = alphabet[(line * 7u + (unsigned)i) % (sizeof alphabet - 1)];
        row[76] = '\r';
        row[77] = '\n';
        size_t k = n - off < sizeof row ? n - off : sizeof row;
        memcpy(b + off, row, k);
        off += k;
        last = k;
        line++;
    }
    /* A message cut mid-line still ends in CRLF when the last line allows. */
    if (last >= 2) {
        b[n - 2] = '\r';
        b[n - 1] = '\n';
    }
    return b;
}

#endif
