#include "imap/split.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void seed_state(struct imap_split *s, uint64_t seed)
{
	s->seed = seed;
	/* xorshift must not start at zero */
	s->state = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
	if (s->state == 0)
		s->state = 1;
}

static bool word_is(const char *spec, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(spec, word, len) == 0;
}

int imap_split_parse(const char *spec, size_t len, struct imap_split *out, char *err,
		     size_t err_size)
{
	static const char usage[] = "use byte, random, random:SEED or coalesce";
	struct imap_split s = {.mode = IMAP_SPLIT_NONE};

	seed_state(&s, IMAP_SPLIT_DEFAULT_SEED);
	if (word_is(spec, len, "byte")) {
		s.mode = IMAP_SPLIT_BYTE;
	} else if (word_is(spec, len, "coalesce")) {
		s.mode = IMAP_SPLIT_COALESCE;
	} else if (word_is(spec, len, "random")) {
		s.mode = IMAP_SPLIT_RANDOM;
	} else if (len > 7 && memcmp(spec, "random:", 7) == 0) {
		char digits[24];
		char *end;
		unsigned long long seed;

		if (len - 7 >= sizeof(digits) || spec[7] < '0' || spec[7] > '9') {
			snprintf(err, err_size, "bad seed in '%.*s': a seed is a decimal number; %s",
				 (int)len, spec, usage);
			return -1;
		}
		memcpy(digits, spec + 7, len - 7);
		digits[len - 7] = '\0';
		errno = 0;
		seed = strtoull(digits, &end, 10);
		if (errno != 0 || *end != '\0') {
			snprintf(err, err_size, "bad seed in '%.*s': a seed is a decimal number; %s",
				 (int)len, spec, usage);
			return -1;
		}
		s.mode = IMAP_SPLIT_RANDOM;
		seed_state(&s, seed);
	} else {
		snprintf(err, err_size, "unknown way to split '%.*s': %s", (int)len, spec, usage);
		return -1;
	}
	*out = s;
	return 0;
}

void imap_split_describe(const struct imap_split *s, char *buf, size_t size)
{
	switch (s->mode) {
	case IMAP_SPLIT_BYTE:
		snprintf(buf, size, "byte");
		break;
	case IMAP_SPLIT_RANDOM:
		snprintf(buf, size, "random:%" PRIu64, s->seed);
		break;
	case IMAP_SPLIT_COALESCE:
		snprintf(buf, size, "coalesce");
		break;
	case IMAP_SPLIT_NONE:
	default:
		snprintf(buf, size, "none");
		break;
	}
}

/* xorshift64*: small, fast, and the same everywhere for one seed */
static uint64_t draw(struct imap_split *s)
{
	s->state ^= s->state >> 12;
	s->state ^= s->state << 25;
	s->state ^= s->state >> 27;
	return s->state * 0x2545F4914F6CDD1DULL;
}

size_t imap_split_next(struct imap_split *s, size_t avail)
{
	uint64_t r, size;

	if (avail == 0)
		return 0;
	switch (s->mode) {
	case IMAP_SPLIT_BYTE:
		return 1;
	case IMAP_SPLIT_RANDOM:
		/* mostly short writes, so cuts land inside tags, CRLFs and
		 * literal announcements; now and then a long one */
		r = draw(s);
		size = (r & 3) != 0 ? 1 + (r >> 8) % 16 : 1 + (r >> 8) % 4096;
		return size < avail ? (size_t)size : avail;
	case IMAP_SPLIT_COALESCE:
	case IMAP_SPLIT_NONE:
	default:
		return avail;
	}
}
