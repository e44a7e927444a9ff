#include "capture/keylog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

/* A key log larger than this is no key log (a browser's runs for a year
 * stay far below it). */
#define KEYLOG_FILE_MAX (256u * 1024u * 1024u)

struct keylog_entry {
	enum capture_keylog_label label;
	uint8_t random[CAPTURE_KEYLOG_RANDOM];
	struct capture_keylog_secret secret;
};

struct capture_keylog {
	struct keylog_entry *entries;
	size_t count, cap;
	size_t bad_lines;
};

static const struct {
	const char *name;
	enum capture_keylog_label label;
	size_t min, max; /* secret lengths: 48 for TLS 1.2; a hash's for TLS 1.3 */
} labels[] = {
	{"CLIENT_RANDOM", CAPTURE_KEYLOG_MASTER, 48, 48},
	{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", CAPTURE_KEYLOG_CLIENT_HANDSHAKE, 32, 64},
	{"SERVER_HANDSHAKE_TRAFFIC_SECRET", CAPTURE_KEYLOG_SERVER_HANDSHAKE, 32, 64},
	{"CLIENT_TRAFFIC_SECRET_0", CAPTURE_KEYLOG_CLIENT_TRAFFIC, 32, 64},
	{"SERVER_TRAFFIC_SECRET_0", CAPTURE_KEYLOG_SERVER_TRAFFIC, 32, 64},
};

struct capture_keylog *capture_keylog_new(void)
{
	return calloc(1, sizeof(struct capture_keylog));
}

void capture_keylog_free(struct capture_keylog **kp)
{
	struct capture_keylog *k = *kp;

	if (k == NULL)
		return;
	/* secrets: not left behind in freed memory */
	if (k->entries != NULL)
		OPENSSL_cleanse(k->entries, k->cap * sizeof(*k->entries));
	free(k->entries);
	free(k);
	*kp = NULL;
}

/* one hex digit's value, or -1 (OpenSSL's, as it reads hex itself) */
static int hex_digit(char c)
{
	return OPENSSL_hexchar2int((unsigned char)c);
}

/* n hex digits into n/2 bytes; false on anything but hex or an odd n. */
static bool unhex(const char *p, size_t n, uint8_t *out, size_t cap)
{
	if (n % 2 != 0 || n / 2 > cap)
		return false;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hex_digit(p[i]), lo = hex_digit(p[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* The next field of [*p, end) separated by blanks; its length. */
static size_t field(const char **p, const char *end, const char **start)
{
	const char *q = *p;

	while (q < end && (*q == ' ' || *q == '\t'))
		q++;
	*start = q;
	while (q < end && *q != ' ' && *q != '\t')
		q++;
	*p = q;
	return (size_t)(q - *start);
}

static int add_entry(struct capture_keylog *k, const struct keylog_entry *e)
{
	/* a repeated line replaces nothing: the first secret stands */
	if (k->count == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 64;
		struct keylog_entry *n = malloc(cap * sizeof(*n));

		if (n == NULL)
			return -1;
		/* moved by hand, not realloc: the old copy is wiped */
		if (k->count > 0) {
			memcpy(n, k->entries, k->count * sizeof(*n));
			OPENSSL_cleanse(k->entries, k->cap * sizeof(*n));
		}
		free(k->entries);
		k->entries = n;
		k->cap = cap;
	}
	k->entries[k->count++] = *e;
	return 0;
}

static int add_line(struct capture_keylog *k, const char *p, const char *end)
{
	const char *name, *random, *secret, *rest;
	size_t name_len = field(&p, end, &name);
	size_t random_len, secret_len;
	struct keylog_entry e;
	size_t i;

	if (name_len == 0 || name[0] == '#')
		return 0;
	for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		if (strlen(labels[i].name) == name_len && memcmp(labels[i].name, name, name_len) == 0)
			break;
	if (i == sizeof(labels) / sizeof(labels[0]))
		return 0; /* EXPORTER_SECRET, EARLY_TRAFFIC_SECRET, ...: not needed */
	random_len = field(&p, end, &random);
	secret_len = field(&p, end, &secret);
	memset(&e, 0, sizeof(e));
	e.label = labels[i].label;
	e.secret.len = secret_len / 2;
	if (field(&p, end, &rest) != 0 || random_len != 2 * CAPTURE_KEYLOG_RANDOM ||
	    !unhex(random, random_len, e.random, sizeof(e.random)) ||
	    e.secret.len < labels[i].min || e.secret.len > labels[i].max ||
	    !unhex(secret, secret_len, e.secret.bytes, sizeof(e.secret.bytes))) {
		k->bad_lines++;
		return 0;
	}
	return add_entry(k, &e);
}

int capture_keylog_add_text(struct capture_keylog *k, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		const char *stop = eol;

		if (stop > p && stop[-1] == '\r')
			stop--;
		if (add_line(k, p, stop) != 0)
			return -1;
		p = nl != NULL ? nl + 1 : end;
	}
	return 0;
}

int capture_keylog_load(struct capture_keylog *k, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;
	size_t got;
	int rc;

	if (f == NULL) {
		snprintf(err, errlen, "--keylog %s: %s (give the file the client wrote through "
			 "SSLKEYLOGFILE)", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (unsigned long long)st.st_size > KEYLOG_FILE_MAX) {
		fclose(f);
		snprintf(err, errlen, "--keylog %s: not a key log file (a regular file of at most "
			 "%u MiB, as SSLKEYLOGFILE writes)", path, KEYLOG_FILE_MAX >> 20);
		return -1;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		fclose(f);
		snprintf(err, errlen, "--keylog %s: out of memory", path);
		return -1;
	}
	got = fread(buf, 1, (size_t)st.st_size, f);
	rc = ferror(f) ? -1 : 0;
	fclose(f);
	if (rc != 0) {
		free(buf);
		snprintf(err, errlen, "--keylog %s: cannot be read", path);
		return -1;
	}
	rc = capture_keylog_add_text(k, buf, got);
	OPENSSL_cleanse(buf, got);
	free(buf);
	if (rc != 0)
		snprintf(err, errlen, "--keylog %s: out of memory", path);
	return rc;
}

bool capture_keylog_find(const struct capture_keylog *k, enum capture_keylog_label label,
			 const uint8_t random[CAPTURE_KEYLOG_RANDOM],
			 struct capture_keylog_secret *out)
{
	if (k == NULL)
		return false;
	for (size_t i = 0; i < k->count; i++) {
		const struct keylog_entry *e = &k->entries[i];

		if (e->label == label && memcmp(e->random, random, CAPTURE_KEYLOG_RANDOM) == 0) {
			*out = e->secret;
			return true;
		}
	}
	return false;
}

size_t capture_keylog_count(const struct capture_keylog *k)
{
	return k != NULL ? k->count : 0;
}

size_t capture_keylog_bad_lines(const struct capture_keylog *k)
{
	return k != NULL ? k->bad_lines : 0;
}
