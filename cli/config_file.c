#include "cli/config_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define LINE_MAX_BYTES 4096

static bool push(struct cli_config_args *out, char *arg)
{
	char **argv = realloc(out->argv, (size_t)(out->argc + 2) * sizeof(*argv));

	if (argv == NULL)
		return false;
	out->argv = argv;
	out->argv[out->argc++] = arg;
	out->argv[out->argc] = NULL;
	return true;
}

static char *own(struct cli_config_args *out, const char *text)
{
	char **owned = realloc(out->owned, (size_t)(out->owned_count + 1) * sizeof(*owned));
	char *copy = strdup(text);

	if (owned != NULL)
		out->owned = owned;
	if (owned == NULL || copy == NULL) {
		free(copy);
		return NULL;
	}
	out->owned[out->owned_count++] = copy;
	return copy;
}

static bool push_copy(struct cli_config_args *out, const char *text)
{
	char *copy = own(out, text);

	return copy != NULL && push(out, copy);
}

static char *trim(char *s)
{
	char *end = s + strlen(s);

	while (*s == ' ' || *s == '\t')
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	*end = '\0';
	if (end - s >= 2 && s[0] == '"' && end[-1] == '"') {
		end[-1] = '\0';
		s++;
	}
	return s;
}

static const struct option *find(const struct option *options, const char *name)
{
	for (; options->name != NULL; options++)
		if (strcmp(options->name, name) == 0)
			return options;
	return NULL;
}

/* err as printf makes it; returns -1. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* A switch's value: 1 on, 0 off, -1 neither. */
static int switch_value(const char *v)
{
	static const char *const on[] = {"", "true", "yes", "on", "1"};
	static const char *const off[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++)
		if (strcmp(v, on[i]) == 0)
			return 1;
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++)
		if (strcmp(v, off[i]) == 0)
			return 0;
	return -1;
}

/* Adds key = value (both copied) to out: false when out of memory. */
static bool add_entry(struct cli_config_file *out, const char *key, const char *value,
		      unsigned lineno)
{
	struct cli_config_entry *entry =
		realloc(out->entry, (out->count + 1) * sizeof(*entry));
	struct cli_config_entry e = {strdup(key), strdup(value), lineno};

	if (entry != NULL)
		out->entry = entry;
	if (entry == NULL || e.key == NULL || e.value == NULL) {
		free(e.key);
		free(e.value);
		return false;
	}
	out->entry[out->count++] = e;
	return true;
}

/* One line of the file: 0, or -1 with err. */
static int take_line(const char *cmd, const char *path, unsigned lineno, char *line,
		     const struct option *options, struct cli_config_file *out, char *err,
		     size_t errlen)
{
	char *eq, *key;
	const char *value;
	const struct option *opt;
	int on;

	line = trim(line);
	if (*line == '\0' || *line == '#')
		return 0;
	eq = strchr(line, '=');
	if (eq == NULL)
		return fail(err, errlen, "%s line %u: not 'key = value'", path, lineno);
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	opt = find(options, key);
	if (opt == NULL || strcmp(key, "config") == 0 || strcmp(key, "help") == 0)
		return fail(err, errlen, "%s line %u: '%s' is no option of imaptap %s (a long "
			    "option's name without its dashes)", path, lineno, key, cmd);
	if (opt->has_arg == no_argument) {
		on = switch_value(value);
		if (on < 0)
			return fail(err, errlen, "%s line %u: %s takes true or false, not '%s'", path,
				    lineno, key, value);
		value = on ? "1" : "0";
	} else if (*value == '\0') {
		return fail(err, errlen, "%s line %u: %s needs a value", path, lineno, key);
	}
	if (!add_entry(out, key, value, lineno))
		return fail(err, errlen, "out of memory");
	return 0;
}

int cli_config_read(const char *cmd, const char *path, const struct option *options,
		    struct cli_config_file *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[LINE_MAX_BYTES + 2];
	unsigned lineno = 0;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (f == NULL)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strlen(line) > LINE_MAX_BYTES)
			rc = fail(err, errlen, "%s line %u: longer than %d bytes", path, lineno,
				  LINE_MAX_BYTES);
		else if (memchr(line, '\0', strlen(line)) != NULL)
			rc = fail(err, errlen, "%s line %u: a NUL byte", path, lineno);
		else
			rc = take_line(cmd, path, lineno, line, options, out, err, errlen);
	}
	if (rc == 0 && ferror(f))
		rc = fail(err, errlen, "%s: %s", path, strerror(errno));
	fclose(f);
	return rc;
}

void cli_config_file_free(struct cli_config_file *file)
{
	for (size_t i = 0; i < file->count; i++) {
		free(file->entry[i].key);
		free(file->entry[i].value);
	}
	free(file->entry);
	memset(file, 0, sizeof(*file));
}

/* The file's options as flags in out: 0, or the usage error's exit code. */
static int push_file(const char *cmd, const char *path, const struct option *options,
		     struct cli_config_args *out)
{
	char err[LINE_MAX_BYTES + 256], flag[128];

	if (cli_config_read(cmd, path, options, &out->file, err, sizeof(err)) != 0)
		return cli_usage_error(cmd, "--config %s", err);
	for (size_t i = 0; i < out->file.count; i++) {
		const struct cli_config_entry *e = &out->file.entry[i];
		bool is_switch = find(options, e->key)->has_arg == no_argument;

		snprintf(flag, sizeof(flag), "--%s", e->key);
		if (is_switch && strcmp(e->value, "0") == 0)
			continue;
		if (!push_copy(out, flag) || (!is_switch && !push_copy(out, e->value)))
			return cli_usage_error(cmd, "out of memory");
	}
	return 0;
}

int cli_config_expand(const char *cmd, int argc, char **argv, const struct option *options,
		      struct cli_config_args *out)
{
	const char *path = NULL;
	int rc = 0, skip = -1;

	memset(out, 0, sizeof(*out));
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			path = argv[i + 1];
			skip = i;
			break;
		}
		if (strncmp(argv[i], "--config=", 9) == 0) {
			path = argv[i] + 9;
			skip = i;
			break;
		}
	}
	out->path = path;
	if (!push(out, argv[0]))
		return cli_usage_error(cmd, "out of memory");
	if (path != NULL)
		rc = push_file(cmd, path, options, out);
	for (int i = 1; rc == 0 && i < argc; i++) {
		if (i == skip) {
			if (strcmp(argv[i], "--config") == 0)
				i++;
			continue;
		}
		if (!push(out, argv[i]))
			rc = cli_usage_error(cmd, "out of memory");
	}
	return rc;
}

bool cli_config_from_file(const struct cli_config_args *args, const char *arg)
{
	for (int i = 0; i < args->owned_count; i++)
		if (args->owned[i] == arg)
			return true;
	return false;
}

void cli_config_args_free(struct cli_config_args *args)
{
	cli_config_file_free(&args->file);
	for (int i = 0; i < args->owned_count; i++)
		free(args->owned[i]);
	free(args->owned);
	free(args->argv);
	memset(args, 0, sizeof(*args));
}
