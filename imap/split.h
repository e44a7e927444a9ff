/* Where to cut a byte stream into writes: one byte each, random sizes from
 * a seed, or everything at once. The re-split fault and `replay serve
 * --segment` use it to show, deterministically, a peer whose parser
 * depends on how the stream was segmented. Pure. */
#ifndef IMAP_SPLIT_H
#define IMAP_SPLIT_H

#include <stddef.h>
#include <stdint.h>

enum imap_split_mode {
	IMAP_SPLIT_NONE,     /* writes as they come */
	IMAP_SPLIT_BYTE,     /* one byte per write */
	IMAP_SPLIT_RANDOM,   /* sizes drawn from a seeded generator */
	IMAP_SPLIT_COALESCE, /* as much as possible in one write */
};

#define IMAP_SPLIT_DEFAULT_SEED 1

struct imap_split {
	enum imap_split_mode mode;
	uint64_t seed;  /* as given, for reports */
	uint64_t state; /* the generator; the same seed gives the same cuts */
};

/* Parses "byte", "random", "random:SEED" or "coalesce" (len bytes of
 * spec). Returns 0, or -1 with a message for a person in err. */
int imap_split_parse(const char *spec, size_t len, struct imap_split *split_r, char *err,
		     size_t err_size);

/* Mode and seed back as text ("random:7"). */
void imap_split_describe(const struct imap_split *split, char *buf, size_t size);

/* Size of the next write when avail (> 0) bytes wait: 1 for byte, a
 * drawn size of at most avail for random, avail otherwise. */
size_t imap_split_next(struct imap_split *split, size_t avail);

#endif
