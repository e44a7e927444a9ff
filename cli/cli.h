/* Shared by the subcommands: exit codes and messages. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Exit codes (docs/exit-codes.md). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_CHECK = 1,   /* a check failed */
	CLI_EXIT_USAGE = 2,   /* bad command line */
	CLI_EXIT_RUNTIME = 3, /* I/O, TLS, network */
};

/* "imaptap: message" on stderr, flushed. */
void cli_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "imaptap CMD: message" and a hint to --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resolves --color auto|always|never for a stream; -1 for a bad word. */
int cli_color_choice(const char *word, FILE *stream);

int cli_proxy_main(int argc, char **argv);
int cli_ca_main(int argc, char **argv);

#endif
