/* Option values shared by the subcommands. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "proxy/proxy.h"

int cli_number(const char *text, unsigned long long lo, unsigned long long hi,
	       unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	v = strtoull(text, &end, 10);
	if (*end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int cli_seconds(const char *text, double lo, double hi, imap_time_us *out)
{
	char *end;
	double v;

	if ((text[0] < '0' || text[0] > '9') && text[0] != '.')
		return -1;
	v = strtod(text, &end);
	if (*end != '\0' || !isfinite(v) || v < lo || v > hi)
		return -1;
	*out = (imap_time_us)llround(v * 1e6);
	return 0;
}

int cli_duration(const char *text, double lo, double hi, imap_time_us *out)
{
	static const struct {
		const char *unit;
		double seconds;
	} units[] = {
		{"", 1}, {"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"m", 60}, {"min", 60}, {"h", 3600},
	};
	char *end;
	double v;

	if ((text[0] < '0' || text[0] > '9') && text[0] != '.')
		return -1;
	v = strtod(text, &end);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		double s = v * units[i].seconds;

		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (!isfinite(s) || s < lo || s > hi)
			return -1;
		*out = (imap_time_us)llround(s * 1e6);
		return 0;
	}
	return -1;
}

int cli_timestamp(const char *text, imap_time_us *out)
{
	struct tm tm = {0};
	const char *p;
	char *end;
	double frac = 0;
	long offset = 0;
	time_t sec;
	bool utc = false;

	if (cli_seconds(text, 0, 4102444800.0, out) == 0)
		return 0; /* seconds since 1970 */
	p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		p = strptime(text, "%Y-%m-%d %H:%M:%S", &tm);
	if (p == NULL)
		return -1;
	if (*p == '.' || *p == ',') {
		char digits[16] = "0.";
		size_t n = strspn(p + 1, "0123456789");

		if (n == 0 || n > 9)
			return -1;
		memcpy(digits + 2, p + 1, n);
		frac = strtod(digits, &end);
		p += 1 + n;
	}
	if (*p == 'Z') {
		utc = true;
		p++;
	} else if (*p == '+' || *p == '-') {
		int hh, mm;

		if (strlen(p) != 6 || p[3] != ':' || sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 ||
		    hh > 23 || mm > 59)
			return -1;
		offset = (hh * 60L + mm) * 60L * (*p == '-' ? -1 : 1);
		utc = true;
		p += 6;
	}
	if (*p != '\0')
		return -1;
	tm.tm_isdst = -1;
	sec = utc ? timegm(&tm) - offset : mktime(&tm);
	if (sec == (time_t)-1)
		return -1;
	*out = (imap_time_us)sec * IMAP_US_PER_S + (imap_time_us)llround(frac * 1e6);
	return 0;
}

const char *const cli_rules_names[CLI_RULES_COUNT] = {"stall", "done-stall", "idle-max",
							 "keepalive-gap"};

int cli_rules_index(const char *name)
{
	for (int i = 0; i < CLI_RULES_COUNT; i++)
		if (strcmp(name, cli_rules_names[i]) == 0)
			return i;
	return -1;
}

imap_time_us *cli_rules_field(struct imap_tracker_config *config, int index)
{
	imap_time_us *field[CLI_RULES_COUNT] = {&config->stall, &config->done_stall,
						&config->idle_max, &config->keepalive_gap};

	return field[index];
}

int cli_rules_option(const char *cmd, const char *flag, const char *value,
		     struct imap_tracker_config *config)
{
	int index = cli_rules_index(flag + 2);
	imap_time_us us;

	if (index < 0 || cli_duration(value, CLI_RULES_MIN_S, CLI_RULES_MAX_S, &us) != 0)
		return cli_usage_error(cmd, "%s takes " CLI_RULES_RANGE ", not '%s'", flag, value);
	*cli_rules_field(config, index) = us;
	return 0;
}

int cli_write_port_file(const char *path, unsigned port)
{
	char tmp[4096];
	FILE *f;
	int fd;

	/* written whole, then renamed: a reader never sees half a number */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -1;
	/* a name nobody may have put a link at: made here, not followed */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* --ca names the CA's directory; given one of its files, or any file,
 * say which directory is meant. */
bool cli_ca_is_a_file(const char *cmd, const char *path)
{
	struct stat st;
	const char *slash = strrchr(path, '/');
	const char *base = slash != NULL ? slash + 1 : path;

	if (stat(path, &st) != 0 || S_ISDIR(st.st_mode))
		return false;
	if (strcmp(base, "ca.crt") == 0 || strcmp(base, "ca.key") == 0)
		cli_usage_error(cmd, "--ca takes the CA's directory (it holds ca.crt and "
				"ca.key), not a file: --ca %.*s", slash != NULL ? (int)(slash - path) : 1,
				slash != NULL ? path : ".");
	else
		cli_usage_error(cmd, "--ca takes the CA's directory (it holds ca.crt and "
				"ca.key); %s is a file (for a certificate of your own: --cert FILE "
				"--key FILE)", path);
	return true;
}

const char *cli_tls_mode_word(enum proxy_tls_mode mode)
{
	return mode == PROXY_TLS_IMPLICIT ? "implicit" : mode == PROXY_TLS_STARTTLS ? "starttls" : "none";
}

/* "implicit", "starttls" or "none". */
int cli_tls_mode(const char *flag, const char *word, enum proxy_tls_mode *out)
{
	static const enum proxy_tls_mode modes[] = {PROXY_TLS_NONE, PROXY_TLS_IMPLICIT,
						    PROXY_TLS_STARTTLS};

	if (word == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(word, cli_tls_mode_word(modes[i])) == 0) {
			*out = modes[i];
			return 0;
		}
	cli_usage_error("proxy", "%s takes implicit, starttls or none, not '%s'", flag, word);
	return -1;
}
