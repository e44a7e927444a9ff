/* Option values shared by the subcommands. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

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

int cli_rules_option(const char *cmd, const char *flag, const char *value,
		     struct imap_tracker_config *config)
{
	imap_time_us us;

	if (cli_seconds(value, 0.001, 7 * 24 * 3600.0, &us) != 0)
		return cli_usage_error(cmd, "%s takes seconds (0.001 to 604800), not '%s'", flag, value);
	if (strcmp(flag, "--stall") == 0)
		config->stall = us;
	else if (strcmp(flag, "--done-stall") == 0)
		config->done_stall = us;
	else if (strcmp(flag, "--idle-max") == 0)
		config->idle_max = us;
	else
		config->keepalive_gap = us;
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
