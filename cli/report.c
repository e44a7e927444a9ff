/* Messages of every subcommand: one escaping gate, one form. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture/escape.h"
#include "cli/cli.h"

void cli_write_escaped(FILE *f, const char *text, size_t len, unsigned flags)
{
	char out[1024];

	while (len > 0) {
		size_t used, n = capture_escape(out, sizeof(out), text, len, flags, &used);

		fwrite(out, 1, n, f);
		text += used;
		len -= used;
	}
}

/* fmt with its arguments, escaped, to stderr. */
static void write_message(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static void write_message(const char *fmt, va_list ap)
{
	char *text = NULL;
	int n = vasprintf(&text, fmt, ap);

	if (n < 0) {
		fputs("(out of memory for a message)", stderr);
		return;
	}
	cli_write_escaped(stderr, text, (size_t)n, 0);
	free(text);
}

void cli_message(const char *fmt, ...)
{
	va_list ap;

	fputs("imaptap: ", stderr);
	va_start(ap, fmt);
	write_message(fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "imaptap %s: ", cmd);
	va_start(ap, fmt);
	write_message(fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nrun 'imaptap %s --help' for the options\n", cmd);
	fflush(stderr);
	return CLI_EXIT_USAGE;
}

/* Edits (insert, delete, replace, swap two neighbours) from a to b, or
 * limit + 1 when more; only short words are compared. */
static unsigned edits(const char *a, const char *b, unsigned limit)
{
	size_t n = strlen(a), m = strlen(b);
	unsigned d[40][40];

	if (n >= 40 || m >= 40)
		return limit + 1;
	for (size_t i = 0; i <= n; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= n; i++) {
		for (size_t j = 1; j <= m; j++) {
			unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[n][m] <= limit ? d[n][m] : limit + 1;
}

const char *cli_closest(const char *word, const char *const *names, size_t count)
{
	const char *found = NULL;
	unsigned best = strlen(word) > 4 ? 2 : 1;

	for (size_t i = 0; i < count; i++) {
		unsigned e = edits(word, names[i], best);

		if (e < best || (e == best && found == NULL)) {
			best = e;
			found = names[i];
		}
		/* a prefix of a name: what was typed before it was finished */
		if (found == NULL && strlen(word) >= 3 && strncmp(names[i], word, strlen(word)) == 0)
			found = names[i];
	}
	return found;
}

int cli_option_error(const char *cmd, int c, char **argv, const struct option *options)
{
	const char *bad = argv[optind - 1];
	const char *names[64];
	char name[40];
	size_t count = 0;
	const char *near;

	if (c == ':')
		return cli_usage_error(cmd, "%s needs a value", bad);
	for (; options != NULL && options->name != NULL && count < 64; options++)
		names[count++] = options->name;
	snprintf(name, sizeof(name), "%s", bad[0] == '-' && bad[1] == '-' ? bad + 2 : bad);
	name[strcspn(name, "=")] = '\0';
	near = strncmp(bad, "--", 2) == 0 ? cli_closest(name, names, count) : NULL;
	if (near != NULL)
		return cli_usage_error(cmd, "unknown option '%s'; did you mean '--%s'?", bad, near);
	return cli_usage_error(cmd, "unknown option '%s'", bad);
}

int cli_color_choice(const char *word, FILE *stream)
{
	const char *term = getenv("TERM");

	if (strcmp(word, "always") == 0)
		return 1;
	if (strcmp(word, "never") == 0)
		return 0;
	if (strcmp(word, "auto") != 0)
		return -1;
	if (getenv("NO_COLOR") != NULL && getenv("NO_COLOR")[0] != '\0')
		return 0;
	if (term != NULL && strcmp(term, "dumb") == 0)
		return 0;
	return isatty(fileno(stream));
}
