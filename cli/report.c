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

int cli_option_error(const char *cmd, int c, char **argv)
{
	if (c == ':')
		return cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
	return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
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
