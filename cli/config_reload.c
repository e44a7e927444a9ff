#include "cli/config_reload.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Room for a file's line in an error, and for a list of option names. */
#define ERR_MAX 4608
#define LIST_MAX 1024

struct cli_config_reload {
	const char *cmd;
	char *path;
	const struct option *options;
	struct cli_config_file start; /* what the run started with */
	unsigned pinned;              /* thresholds the command line gave */
	struct imap_tracker_config now;
};

struct cli_config_reload *cli_config_reload_new(const char *cmd, const char *path,
						const struct option *options,
						struct cli_config_file *start, unsigned pinned,
						const struct imap_tracker_config *now)
{
	struct cli_config_reload *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->path = strdup(path)) == NULL) {
		free(r);
		return NULL;
	}
	r->cmd = cmd;
	r->options = options;
	r->start = *start;
	memset(start, 0, sizeof(*start));
	r->pinned = pinned;
	r->now = *now;
	return r;
}

void cli_config_reload_free(struct cli_config_reload **reload)
{
	struct cli_config_reload *r = *reload;

	if (r == NULL)
		return;
	cli_config_file_free(&r->start);
	free(r->path);
	free(r);
	*reload = NULL;
}

static bool pinned(const struct cli_config_reload *r, int index)
{
	return index >= 0 && (r->pinned & (1u << index)) != 0;
}

/* The thresholds file sets, over the command line's: 0, or -1 with err. */
static int file_thresholds(const struct cli_config_reload *r, const struct cli_config_file *file,
			   struct imap_tracker_config *next, char *err, size_t errlen)
{
	*next = r->now;
	for (int i = 0; i < CLI_RULES_COUNT; i++)
		if (!pinned(r, i))
			*cli_rules_field(next, i) = 0;
	for (size_t i = 0; i < file->count; i++) {
		const struct cli_config_entry *e = &file->entry[i];
		int index = cli_rules_index(e->key);
		imap_time_us us;

		if (index < 0)
			continue;
		if (cli_duration(e->value, CLI_RULES_MIN_S, CLI_RULES_MAX_S, &us) != 0) {
			snprintf(err, errlen, "%s line %u: %s takes " CLI_RULES_RANGE ", not '%s'",
				 r->path, e->line, e->key, e->value);
			return -1;
		}
		if (!pinned(r, index))
			*cli_rules_field(next, index) = us;
	}
	return 0;
}

/* Whether a and b give key the same values, in the same order. */
static bool same_values(const struct cli_config_file *a, const struct cli_config_file *b,
			const char *key)
{
	size_t i = 0, j = 0;

	for (;;) {
		while (i < a->count && strcmp(a->entry[i].key, key) != 0)
			i++;
		while (j < b->count && strcmp(b->entry[j].key, key) != 0)
			j++;
		if (i == a->count || j == b->count)
			return i == a->count && j == b->count;
		if (strcmp(a->entry[i++].value, b->entry[j++].value) != 0)
			return false;
	}
}

/* Adds name to the list ("listen, fault") once. */
static void list_add(char *list, const char *name)
{
	size_t n = strlen(list), len = strlen(name);

	for (const char *p = strstr(list, name); p != NULL; p = strstr(p + 1, name))
		if ((p == list || p[-1] == ' ') && (p[len] == ',' || p[len] == '\0'))
			return;
	snprintf(list + n, LIST_MAX - n, "%s%s", n > 0 ? ", " : "", name);
}

/* The options file changed that this run does not take: those that need
 * a restart, and thresholds the command line holds. */
static void say_not_applied(const struct cli_config_reload *r, const struct cli_config_file *file)
{
	const struct cli_config_file *both[2] = {&r->start, file};
	char restart[LIST_MAX] = "", held[LIST_MAX] = "";

	for (int f = 0; f < 2; f++)
		for (size_t i = 0; i < both[f]->count; i++) {
			const char *key = both[f]->entry[i].key;
			int index = cli_rules_index(key);

			if ((index < 0 || pinned(r, index)) && !same_values(&r->start, file, key))
				list_add(index < 0 ? restart : held, key);
		}
	if (restart[0] != '\0' && held[0] != '\0')
		cli_message("SIGHUP: %s: %s changed: restart to apply; %s changed: the command "
			    "line's value stands", r->path, restart, held);
	else if (restart[0] != '\0')
		cli_message("SIGHUP: %s: %s changed: restart to apply", r->path, restart);
	else if (held[0] != '\0')
		cli_message("SIGHUP: %s: %s changed: the command line's value stands", r->path,
			    held);
}

/* "30s", "250ms", "1500us"; "off" for a keepalive-gap of 0. */
static const char *duration(char *out, size_t size, imap_time_us us)
{
	if (us <= 0)
		snprintf(out, size, "off");
	else if (us % IMAP_US_PER_S == 0)
		snprintf(out, size, "%" PRId64 "s", (int64_t)(us / IMAP_US_PER_S));
	else if (us % 1000 == 0)
		snprintf(out, size, "%" PRId64 "ms", (int64_t)(us / 1000));
	else
		snprintf(out, size, "%" PRId64 "us", (int64_t)us);
	return out;
}

/* Says which thresholds in effect change: true when any does. */
static bool say_changes(const struct cli_config_reload *r, const struct imap_tracker_config *next)
{
	struct imap_tracker_config was = imap_tracker_config_resolved(&r->now);
	struct imap_tracker_config will = imap_tracker_config_resolved(next);
	char list[LIST_MAX] = "", a[32], b[32];
	size_t n = 0;

	for (int i = 0; i < CLI_RULES_COUNT; i++) {
		imap_time_us old = *cli_rules_field(&was, i), new = *cli_rules_field(&will, i);

		if (old != new && n < sizeof(list))
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s %s (was %s)",
					      n > 0 ? ", " : "", cli_rules_names[i],
					      duration(a, sizeof(a), new), duration(b, sizeof(b), old));
	}
	if (n == 0) {
		cli_message("SIGHUP: %s: thresholds unchanged", r->path);
		return false;
	}
	cli_message("SIGHUP: thresholds from %s: %s", r->path, list);
	return true;
}

bool cli_config_reload(struct cli_config_reload *r, struct imap_tracker_config *next)
{
	struct cli_config_file file;
	char err[ERR_MAX];
	bool changed;

	if (cli_config_read(r->cmd, r->path, r->options, &file, err, sizeof(err)) != 0 ||
	    file_thresholds(r, &file, next, err, sizeof(err)) != 0) {
		cli_message("SIGHUP: %s; the thresholds in effect stay", err);
		cli_config_file_free(&file);
		return false;
	}
	say_not_applied(r, &file);
	changed = say_changes(r, next);
	r->now = *next;
	cli_config_file_free(&file);
	return changed;
}
