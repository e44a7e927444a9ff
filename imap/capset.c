#include "imap/capset.h"

#include <string.h>

static const char *const names[IMAP_CAP_COUNT] = {
	[IMAP_CAP_IMAP4REV1] = "IMAP4REV1",
	[IMAP_CAP_IMAP4REV2] = "IMAP4REV2",
	[IMAP_CAP_LITERAL_PLUS] = "LITERAL+",
	[IMAP_CAP_LITERAL_MINUS] = "LITERAL-",
	[IMAP_CAP_IDLE] = "IDLE",
	[IMAP_CAP_MOVE] = "MOVE",
	[IMAP_CAP_UIDPLUS] = "UIDPLUS",
	[IMAP_CAP_COMPRESS_DEFLATE] = "COMPRESS=DEFLATE",
	[IMAP_CAP_ESEARCH] = "ESEARCH",
	[IMAP_CAP_CONDSTORE] = "CONDSTORE",
	[IMAP_CAP_QRESYNC] = "QRESYNC",
	[IMAP_CAP_ENABLE] = "ENABLE",
	[IMAP_CAP_ID] = "ID",
	[IMAP_CAP_NAMESPACE] = "NAMESPACE",
	[IMAP_CAP_UNSELECT] = "UNSELECT",
	[IMAP_CAP_SPECIAL_USE] = "SPECIAL-USE",
	[IMAP_CAP_BINARY] = "BINARY",
	[IMAP_CAP_UTF8_ACCEPT] = "UTF8=ACCEPT",
	[IMAP_CAP_UTF8_ONLY] = "UTF8=ONLY",
	[IMAP_CAP_OBJECTID] = "OBJECTID",
	[IMAP_CAP_STATUS_SIZE] = "STATUS=SIZE",
	[IMAP_CAP_UIDONLY] = "UIDONLY",
	[IMAP_CAP_NOTIFY] = "NOTIFY",
	[IMAP_CAP_SASL_IR] = "SASL-IR",
	[IMAP_CAP_STARTTLS] = "STARTTLS",
	[IMAP_CAP_LOGINDISABLED] = "LOGINDISABLED",
	[IMAP_CAP_SEARCHRES] = "SEARCHRES",
	[IMAP_CAP_LIST_STATUS] = "LIST-STATUS",
};

static bool same_name(const uint8_t *p, size_t len, const char *name)
{
	if (strlen(name) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];

		if (c >= 'a' && c <= 'z')
			c -= 32;
		if (c != (uint8_t)name[i])
			return false;
	}
	return true;
}

bool imap_cap_parse(const uint8_t *name, size_t len, enum imap_cap *cap_r)
{
	for (int i = 0; i < IMAP_CAP_COUNT; i++) {
		if (same_name(name, len, names[i])) {
			*cap_r = (enum imap_cap)i;
			return true;
		}
	}
	return false;
}

const char *imap_cap_name(enum imap_cap cap)
{
	return (unsigned)cap < IMAP_CAP_COUNT ? names[cap] : "?";
}

imap_capset imap_capset_effective(imap_capset advertised)
{
	static const enum imap_cap rev2[] = {
		IMAP_CAP_NAMESPACE, IMAP_CAP_UNSELECT, IMAP_CAP_UIDPLUS, IMAP_CAP_ESEARCH,
		IMAP_CAP_SEARCHRES, IMAP_CAP_ENABLE, IMAP_CAP_IDLE, IMAP_CAP_SASL_IR,
		IMAP_CAP_LIST_STATUS, IMAP_CAP_MOVE, IMAP_CAP_LITERAL_MINUS, IMAP_CAP_BINARY,
		IMAP_CAP_SPECIAL_USE, IMAP_CAP_STATUS_SIZE,
	};
	imap_capset set = advertised;

	if (IMAP_CAPSET_HAS(advertised, IMAP_CAP_IMAP4REV2))
		for (size_t i = 0; i < sizeof(rev2) / sizeof(rev2[0]); i++)
			set |= (imap_capset)1 << rev2[i];
	/* QRESYNC implies CONDSTORE (RFC 7162 section 3.2.3) */
	if (IMAP_CAPSET_HAS(advertised, IMAP_CAP_QRESYNC))
		set |= (imap_capset)1 << IMAP_CAP_CONDSTORE;
	/* LITERAL+ covers everything LITERAL- allows */
	if (IMAP_CAPSET_HAS(advertised, IMAP_CAP_LITERAL_PLUS))
		set |= (imap_capset)1 << IMAP_CAP_LITERAL_MINUS;
	return set;
}
