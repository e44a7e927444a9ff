#include "capture/settings.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>

#include "capture/escape.h"
#include "capture/mark_text.h"
#include "capture/timefmt.h"
#include "imap/redact.h"

#define AFTER_TIME_SETTINGS " imaptap imaptap - settings - run settings"

/* Appends printf output to out[*len..size). */
static void addf(char *out, size_t size, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void addf(char *out, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;

	if (*len >= size - 1)
		return;
	va_start(ap, fmt);
	*len += mark_written(out + *len, size - *len, vsnprintf(out + *len, size - *len, fmt, ap));
	va_end(ap);
}

/* " key=value", the value as one token: "-" when empty, '?' for what a
 * token cannot hold. */
static void add_token(char *out, size_t size, size_t *len, const char *key, const char *value)
{
	addf(out, size, len, " %s=", key);
	if (value[0] == '\0')
		value = "-";
	for (const char *p = value; *p != '\0' && *len < size - 1; p++) {
		unsigned char ch = (unsigned char)*p;

		out[(*len)++] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[*len] = '\0';
}

static const char *redact_word(unsigned flags)
{
	if (flags & IMAP_REDACT_BODIES)
		return flags & IMAP_REDACT_CREDENTIALS ? "credentials,bodies" : "bodies";
	return flags & IMAP_REDACT_CREDENTIALS ? "credentials" : "none";
}

size_t capture_settings_mark_format(char *out, size_t size, imap_time_us ts,
				    const struct capture_run_settings *s)
{
	char when[40];
	size_t len = 0;

	if (size == 0)
		return 0;
	out[0] = '\0';
	capture_format_rfc3339(when, sizeof(when), ts);
	addf(out, size, &len, MARK_HEAD "%s" AFTER_TIME_SETTINGS, when);
	add_token(out, size, &len, "version", s->version);
	add_token(out, size, &len, "command", s->command);
	add_token(out, size, &len, "upstream", s->upstream);
	add_token(out, size, &len, "upstream-tls", s->upstream_tls);
	add_token(out, size, &len, "client-tls", s->client_tls);
	add_token(out, size, &len, "sni", s->sni);
	add_token(out, size, &len, "rules", s->rules ? "on" : "off");
	add_token(out, size, &len, "redact", redact_word(s->redact_flags));
	addf(out, size, &len, " max-line=%" PRIu64, s->max_line);
	addf(out, size, &len, " command-stall-us=%lld done-stall-us=%lld idle-max-us=%lld "
	     "keepalive-gap-us=%lld", (long long)s->thresholds.stall,
	     (long long)s->thresholds.done_stall, (long long)s->thresholds.idle_max,
	     (long long)s->thresholds.keepalive_gap);
	for (unsigned i = 0; i < s->fault_count && i < CAPTURE_SETTINGS_FAULTS_MAX; i++)
		add_token(out, size, &len, "fault", s->faults[i]);
	return len;
}

/* A duration in microseconds, at most a week as the flags allow. */
static bool read_us(const char *value, imap_time_us *out)
{
	char *end;
	unsigned long long v;

	if (value[0] < '0' || value[0] > '9')
		return false;
	v = strtoull(value, &end, 10);
	if (*end != '\0' || v > 7ULL * 24 * 3600 * 1000000)
		return false;
	*out = (imap_time_us)v;
	return true;
}

static bool read_word(const char *value, char *out, size_t size)
{
	if (strlen(value) >= size)
		return false;
	snprintf(out, size, "%s", strcmp(value, "-") == 0 ? "" : value);
	return true;
}

/* One key=value into r; false when the value does not read. Unknown keys
 * are skipped. */
static bool read_field(const char *key, const char *value, struct capture_run_settings *r)
{
	if (strcmp(key, "version") == 0)
		return read_word(value, r->version, sizeof(r->version));
	if (strcmp(key, "command") == 0)
		return read_word(value, r->command, sizeof(r->command));
	if (strcmp(key, "upstream") == 0)
		return read_word(value, r->upstream, sizeof(r->upstream));
	if (strcmp(key, "upstream-tls") == 0)
		return read_word(value, r->upstream_tls, sizeof(r->upstream_tls));
	if (strcmp(key, "client-tls") == 0)
		return read_word(value, r->client_tls, sizeof(r->client_tls));
	if (strcmp(key, "sni") == 0)
		return read_word(value, r->sni, sizeof(r->sni));
	if (strcmp(key, "rules") == 0) {
		r->rules = strcmp(value, "on") == 0;
		return r->rules || strcmp(value, "off") == 0;
	}
	if (strcmp(key, "redact") == 0) {
		r->redact_flags = (strstr(value, "credentials") ? IMAP_REDACT_CREDENTIALS : 0) |
				  (strstr(value, "bodies") ? IMAP_REDACT_BODIES : 0);
		return true;
	}
	if (strcmp(key, "max-line") == 0) {
		imap_time_us v;

		if (!read_us(value, &v))
			return false;
		r->max_line = (uint64_t)v;
		return true;
	}
	if (strcmp(key, "command-stall-us") == 0)
		return read_us(value, &r->thresholds.stall);
	if (strcmp(key, "done-stall-us") == 0)
		return read_us(value, &r->thresholds.done_stall);
	if (strcmp(key, "idle-max-us") == 0)
		return read_us(value, &r->thresholds.idle_max);
	if (strcmp(key, "keepalive-gap-us") == 0)
		return read_us(value, &r->thresholds.keepalive_gap);
	if (strcmp(key, "fault") == 0) {
		if (r->fault_count == CAPTURE_SETTINGS_FAULTS_MAX)
			return true; /* more than a reader keeps: the rest are not shown */
		return read_word(value, r->faults[r->fault_count++], sizeof(r->faults[0]));
	}
	return true;
}

enum capture_fault_mark_parse_result
capture_settings_mark_parse(const uint8_t *text, size_t len, struct capture_run_settings *r,
			    char *why, size_t why_size)
{
	struct mark_cursor c = {text, len};
	char field[400], *eq;

	memset(r, 0, sizeof(*r));
	if (why_size > 0)
		why[0] = '\0';
	if (!mark_take_head(&c, AFTER_TIME_SETTINGS))
		return CAPTURE_FAULT_MARK_NONE;
	while (c.len > 0) {
		if (!mark_take(&c, " ") || !mark_token(&c, field, sizeof(field)))
			return mark_damaged(why, why_size, "a field is not key=value");
		eq = strchr(field, '=');
		if (eq == NULL || eq == field)
			return mark_damaged(why, why_size, "a field is not key=value");
		*eq = '\0';
		if (!read_field(field, eq + 1, r))
			return mark_damaged(why, why_size, "a value does not read");
	}
	if (r->version[0] == '\0')
		return mark_damaged(why, why_size, "no version=");
	return CAPTURE_FAULT_MARK_OK;
}

static const char *tls_words(const char *mode)
{
	if (strcmp(mode, "implicit") == 0)
		return "implicit TLS";
	if (strcmp(mode, "starttls") == 0)
		return "STARTTLS";
	return "plain";
}

void capture_settings_describe(const struct capture_run_settings *s, char *out, size_t size)
{
	char raw[CAPTURE_SETTINGS_TEXT_MAX], d[4][32];
	size_t len = 0;

	if (size == 0)
		return;
	addf(raw, sizeof(raw), &len, "settings: imaptap %s %s, upstream %s (%s%s%s), client leg %s",
	     s->version, s->command[0] ? s->command : "proxy", s->upstream[0] ? s->upstream : "?",
	     tls_words(s->upstream_tls), s->sni[0] ? ", SNI " : "", s->sni,
	     tls_words(s->client_tls));
	if (s->rules)
		addf(raw, sizeof(raw), &len, "; rules: command-stall %s, done-stall %s, idle-max %s, "
		     "keepalive-gap %s",
		     capture_format_duration(d[0], sizeof(d[0]), s->thresholds.stall),
		     capture_format_duration(d[1], sizeof(d[1]), s->thresholds.done_stall),
		     capture_format_duration(d[2], sizeof(d[2]), s->thresholds.idle_max),
		     s->thresholds.keepalive_gap > 0
			     ? capture_format_duration(d[3], sizeof(d[3]), s->thresholds.keepalive_gap)
			     : "off");
	else
		addf(raw, sizeof(raw), &len, "; rules off");
	addf(raw, sizeof(raw), &len, "; masking: %s", redact_word(s->redact_flags));
	for (unsigned i = 0; i < s->fault_count; i++)
		addf(raw, sizeof(raw), &len, "%s%s", i == 0 ? "; faults: " : ", ", s->faults[i]);
	capture_escape(out, size, raw, len, 0, NULL);
}
