#include "capture/pcapng.h"

#include <string.h>

#define BT_SHB 0x0A0D0D0Au
#define BT_IDB 0x00000001u
#define BT_EPB 0x00000006u
#define BT_DSB 0x0000000Au
#define BYTE_ORDER_MAGIC 0x1A2B3C4Du
#define LINKTYPE_ETHERNET 1
#define SNAPLEN 262144

/* option codes */
#define OPT_ENDOFOPT 0
#define OPT_COMMENT 1
#define SHB_USERAPPL 4
#define IF_NAME 2
#define IF_DESCRIPTION 3
#define IF_TSRESOL 9
#define EPB_FLAGS 2

static size_t pad4(size_t n)
{
	return (4 - n % 4) % 4;
}

static size_t option_len(size_t len)
{
	return 4 + len + pad4(len);
}

/* Writes one option; returns its size. */
static size_t put_option(FILE *fp, uint16_t code, const void *value, size_t len)
{
	static const uint8_t zeros[4];
	uint16_t head[2] = {code, (uint16_t)len};

	fwrite(head, sizeof(head), 1, fp);
	if (len > 0)
		fwrite(value, 1, len, fp);
	fwrite(zeros, 1, pad4(len), fp);
	return option_len(len);
}

static size_t put_end(FILE *fp)
{
	return put_option(fp, OPT_ENDOFOPT, NULL, 0);
}

static size_t put32(FILE *fp, uint32_t v)
{
	fwrite(&v, sizeof(v), 1, fp);
	return sizeof(v);
}

/* A text option cut where its length field cannot carry it. */
static size_t text_len(size_t len)
{
	return len > 0xfff0 ? 0xfff0 : len;
}

size_t pcapng_write_head(FILE *fp, const char *app, const char *comment, size_t comment_len,
			 const char *name, const char *description)
{
	size_t app_len = text_len(strlen(app)), n = 0;
	size_t name_len = text_len(strlen(name)), desc_len = text_len(strlen(description));
	uint32_t shb_len, idb_len;
	const uint8_t tsresol = 6; /* microseconds */
	uint16_t link[2] = {LINKTYPE_ETHERNET, 0};
	uint16_t version[2] = {1, 0};
	int64_t section_len = -1; /* not known: written as the run goes */

	comment_len = text_len(comment_len);
	shb_len = (uint32_t)(28 + option_len(app_len) + (comment_len ? option_len(comment_len) : 0) +
			     option_len(0));
	n += put32(fp, BT_SHB);
	n += put32(fp, shb_len);
	n += put32(fp, BYTE_ORDER_MAGIC);
	n += fwrite(version, 1, sizeof(version), fp);
	n += fwrite(&section_len, 1, sizeof(section_len), fp);
	n += put_option(fp, SHB_USERAPPL, app, app_len);
	if (comment_len > 0)
		n += put_option(fp, OPT_COMMENT, comment, comment_len);
	n += put_end(fp);
	n += put32(fp, shb_len);

	idb_len = (uint32_t)(20 + option_len(name_len) + option_len(desc_len) + option_len(1) +
			     option_len(0));
	n += put32(fp, BT_IDB);
	n += put32(fp, idb_len);
	n += fwrite(link, 1, sizeof(link), fp);
	n += put32(fp, SNAPLEN);
	n += put_option(fp, IF_NAME, name, name_len);
	n += put_option(fp, IF_DESCRIPTION, description, desc_len);
	n += put_option(fp, IF_TSRESOL, &tsresol, 1);
	n += put_end(fp);
	n += put32(fp, idb_len);
	return n;
}

/* Puts v at p; returns the bytes put. */
static size_t at32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
	return sizeof(v);
}

/* The block goes out in three or four writes (its start with the headers,
 * the payload, its end), not a write per field: a capture of small lines
 * pays for every call. */
size_t pcapng_write_packet(FILE *fp, imap_time_us ts, const uint8_t *head, size_t head_len,
			   const uint8_t *payload, size_t len, enum pcapng_direction dir,
			   const struct pcapng_comment *comments, size_t ncomments)
{
	uint8_t start[28 + 128], end[3 + 8 + 4 + 4] = {0};
	size_t captured = head_len + len, options = 0, n = 0, e;
	uint64_t stamp = ts < 0 ? 0 : (uint64_t)ts;
	uint32_t block_len, flags = (uint32_t)dir;

	if (ncomments > PCAPNG_COMMENTS_MAX)
		ncomments = PCAPNG_COMMENTS_MAX;
	if (dir != PCAPNG_DIR_UNKNOWN)
		options += option_len(4);
	for (size_t i = 0; i < ncomments; i++)
		options += option_len(text_len(comments[i].len));
	if (options > 0)
		options += option_len(0);
	block_len = (uint32_t)(32 + captured + pad4(captured) + options);
	n += at32(start + n, BT_EPB);
	n += at32(start + n, block_len);
	n += at32(start + n, 0); /* the interface */
	n += at32(start + n, (uint32_t)(stamp >> 32));
	n += at32(start + n, (uint32_t)stamp);
	n += at32(start + n, (uint32_t)captured);
	n += at32(start + n, (uint32_t)captured);
	if (head_len <= sizeof(start) - n) {
		memcpy(start + n, head, head_len);
		n += fwrite(start, 1, n + head_len, fp) - n;
	} else {
		n = fwrite(start, 1, n, fp);
		n += fwrite(head, 1, head_len, fp);
	}
	if (len > 0)
		n += fwrite(payload, 1, len, fp);
	/* the padding (zeros), the direction and, without comments, the end
	 * of the options and the length again */
	e = pad4(captured);
	if (dir != PCAPNG_DIR_UNKNOWN) {
		uint16_t code[2] = {EPB_FLAGS, 4};

		memcpy(end + e, code, sizeof(code));
		memcpy(end + e + 4, &flags, 4);
		e += 8;
	}
	if (ncomments > 0) {
		n += fwrite(end, 1, e, fp);
		for (size_t i = 0; i < ncomments; i++)
			n += put_option(fp, OPT_COMMENT, comments[i].text, text_len(comments[i].len));
		memset(end, 0, sizeof(end));
		e = 0;
	}
	if (options > 0)
		e += 4; /* opt_endofopt: four zero bytes */
	e += at32(end + e, block_len);
	n += fwrite(end, 1, e, fp);
	return n;
}

size_t pcapng_write_secrets(FILE *fp, uint32_t type, const void *secrets, size_t len)
{
	static const uint8_t zeros[4];
	uint32_t block_len = (uint32_t)(20 + len + pad4(len));
	size_t n = 0;

	n += put32(fp, BT_DSB);
	n += put32(fp, block_len);
	n += put32(fp, type);
	n += put32(fp, (uint32_t)len);
	n += fwrite(secrets, 1, len, fp);
	n += fwrite(zeros, 1, pad4(len), fp);
	n += put32(fp, block_len);
	return n;
}
