/* libFuzzer target: the line classifier on one arbitrary line. The first
 * byte picks the direction, continued and auth_pending; the rest is the
 * line. Checks that every slice lies inside the line and that the name is
 * a terminated string. */
#include <stdlib.h>
#include <string.h>

#include "imap/classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_slice(struct imap_slice s, const uint8_t *line, size_t len)
{
	if (s.len == 0)
		return;
	if (s.p < line || s.p > line + len || s.len > (size_t)(line + len - s.p))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_line_info info;
	enum imap_dir dir;
	uint8_t *line;
	size_t len;

	if (size < 1)
		return 0;
	dir = (data[0] & 1) ? IMAP_S2C : IMAP_C2S;
	/* a copy of exactly len bytes, so that reading past it is caught */
	len = size - 1;
	line = malloc(len ? len : 1);
	if (line == NULL)
		return 0;
	memcpy(line, data + 1, len);
	memset(&info, 0xa5, sizeof(info));
	imap_classify(dir, line, len, (data[0] & 2) != 0, (data[0] & 4) != 0, &info);
	if (memchr(info.name, '\0', sizeof(info.name)) == NULL)
		abort();
	if ((unsigned)info.cls > IMAP_LINE_MALFORMED || (unsigned)info.status > IMAP_STATUS_PREAUTH)
		abort();
	if (imap_line_class_str(info.cls) == NULL || imap_status_str(info.status) == NULL)
		abort();
	check_slice(info.tag, line, len);
	check_slice(info.code, line, len);
	check_slice(info.args, line, len);
	if (info.cls == IMAP_LINE_COMMAND || info.cls == IMAP_LINE_TAGGED) {
		if (info.tag.len == 0)
			abort();
		for (size_t i = 0; i < info.tag.len; i++)
			if (!imap_is_tag_char(info.tag.p[i]))
				abort();
	}
	free(line);
	return 0;
}
