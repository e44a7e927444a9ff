#include "capture/pcapng_secrets.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define SHB_TYPE 0x0A0D0D0Au
#define BYTE_ORDER_MAGIC 0x1A2B3C4Du
/* No block of a capture worth reading is larger; a length beyond it is
 * damage, not data. */
#define BLOCK_MAX (64u * 1024u * 1024u)

static uint32_t u32(const unsigned char *p, bool swap)
{
	uint32_t le = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		      (uint32_t)p[3] << 24;
	uint32_t be = (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 |
		      (uint32_t)p[0] << 24;

	return swap ? be : le;
}

/* A Decryption Secrets Block's body: its TLS key log, if it is one. */
static int secrets_block(const unsigned char *body, size_t len, bool swap,
			 struct capture_keylog *k, int *blocks)
{
	uint32_t type, n;

	if (len < 8)
		return 0;
	type = u32(body, swap);
	n = u32(body + 4, swap);
	if (type != PCAPNG_SECRETS_TLS_KEYLOG || n > len - 8)
		return 0;
	++*blocks;
	return capture_keylog_add_text(k, (const char *)body + 8, n);
}

/* Reads a block header at *off; false at the end or on damage. The
 * section's byte order comes from each Section Header Block. */
static bool block_header(const unsigned char *hdr, size_t avail, bool *swap, uint32_t *type,
			 uint32_t *total)
{
	if (avail < 12)
		return false;
	*type = u32(hdr, false); /* the SHB type reads the same both ways */
	if (*type == SHB_TYPE) {
		uint32_t magic = u32(hdr + 8, false);

		if (magic == BYTE_ORDER_MAGIC)
			*swap = false;
		else if (u32(hdr + 8, true) == BYTE_ORDER_MAGIC)
			*swap = true;
		else
			return false;
	} else {
		*type = u32(hdr, *swap);
	}
	*total = u32(hdr + 4, *swap);
	return *total >= 12 && *total % 4 == 0 && *total <= BLOCK_MAX;
}

int capture_pcapng_secrets_mem(const unsigned char *data, size_t len, struct capture_keylog *k)
{
	size_t off = 0;
	bool swap = false;
	int blocks = 0;

	if (len < 4 || u32(data, false) != SHB_TYPE)
		return 0;
	while (off < len) {
		uint32_t type, total;

		if (!block_header(data + off, len - off, &swap, &type, &total) || total > len - off)
			break;
		if (type == CAPTURE_PCAPNG_DSB &&
		    secrets_block(data + off + 8, total - 12, swap, k, &blocks) != 0)
			return -1;
		off += total;
	}
	return blocks;
}

int capture_pcapng_secrets(const char *path, struct capture_keylog *k)
{
	FILE *f = fopen(path, "rb");
	unsigned char hdr[12];
	bool swap = false;
	int blocks = 0;

	if (f == NULL)
		return 0; /* the capture reader says why */
	/* hdr: the type, the length and the body's first 4 bytes (or, for an
	 * empty body, the trailing length) */
	while (fread(hdr, 1, sizeof(hdr), f) == sizeof(hdr)) {
		uint32_t type, total;
		unsigned char *body;
		size_t body_len;
		int rc;

		if ((blocks == 0 && ftell(f) == (long)sizeof(hdr) && u32(hdr, false) != SHB_TYPE) ||
		    !block_header(hdr, sizeof(hdr), &swap, &type, &total))
			break;
		if (type != CAPTURE_PCAPNG_DSB || total < 16) {
			if (fseek(f, (long)total - (long)sizeof(hdr), SEEK_CUR) != 0)
				break;
			continue;
		}
		/* the body and the trailing length: a block cut short is not read */
		body_len = total - 12;
		body = malloc(body_len + 4);
		if (body == NULL) {
			fclose(f);
			return -1;
		}
		memcpy(body, hdr + 8, 4);
		if (fread(body + 4, 1, body_len, f) != body_len) {
			free(body);
			break;
		}
		rc = secrets_block(body, body_len, swap, k, &blocks);
		OPENSSL_cleanse(body, body_len);
		free(body);
		if (rc != 0) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return blocks;
}
