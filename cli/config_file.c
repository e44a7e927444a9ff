#include "cli/config_file.h"

#include <errno.h>
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

/* One line of the file: 0, or the usage error's exit code. */
static int take_line(const char *cmd, const char *path, unsigned lineno, char *line,
		     const struct option *options, struct cli_config_args *out)
{
	char *eq, *key, *value, flag[128];
	const struct option *opt;
	int on;

	line = trim(line);
	if (*line == '\0' || *line == '#')
		return 0;
	eq = strchr(line, '=');
	if (eq == NULL)
		return cli_usage_error(cmd, "--config %s line %u: not 'key = value'", path, lineno);
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	opt = find(options, key);
	if (opt == NULL || strcmp(key, "config") == 0 || strcmp(key, "help") == 0)
		return cli_usage_error(cmd, "--config %s line %u: '%s' is no option of imaptap %s "
				       "(a long option's name without its dashes)", path, lineno, key,
				       cmd);
	snprintf(flag, sizeof(flag), "--%s", key);
	if (opt->has_arg == no_argument) {
		on = switch_value(value);
		if (on < 0)
			return cli_usage_error(cmd, "--config %s line %u: %s takes true or false, not "
					       "'%s'", path, lineno, key, value);
		if (on == 1 && !push_copy(out, flag))
			return cli_usage_error(cmd, "out of memory");
		return 0;
	}
	if (*value == '\0')
		return cli_usage_error(cmd, "--config %s line %u: %s needs a value", path, lineno,
				       key);
	if (!push_copy(out, flag) || !push_copy(out, value))
		return cli_usage_error(cmd, "out of memory");
	return 0;
}

static int read_file(const char *cmd, const char *path, const struct option *options,
		     struct cli_config_args *out)
{
	FILE *f = fopen(path, "r");
	char line[LINE_MAX_BYTES + 2];
	unsigned lineno = 0;
	int rc = 0;

	if (f == NULL)
		return cli_usage_error(cmd, "--config %s: %s", path, strerror(errno));
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strlen(line) > LINE_MAX_BYTES)
			rc = cli_usage_error(cmd, "--config %s line %u: longer than %d bytes", path,
					     lineno, LINE_MAX_BYTES);
		else if (memchr(line, '\0', strlen(line)) != NULL)
			rc = cli_usage_error(cmd, "--config %s line %u: a NUL byte", path, lineno);
		else
			rc = take_line(cmd, path, lineno, line, options, out);
	}
	if (rc == 0 && ferror(f))
		rc = cli_usage_error(cmd, "--config %s: %s", path, strerror(errno));
	fclose(f);
	return rc;
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
	if (!push(out, argv[0]))
		return cli_usage_error(cmd, "out of memory");
	if (path != NULL)
		rc = read_file(cmd, path, options, out);
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

void cli_config_args_free(struct cli_config_args *args)
{
	for (int i = 0; i < args->owned_count; i++)
		free(args->owned[i]);
	free(args->owned);
	free(args->argv);
	memset(args, 0, sizeof(*args));
}
