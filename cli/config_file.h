/* --config FILE: a command's options as `key = value` lines (the long
 * option's name without its dashes), for a service that starts imaptap
 * with one file per instance. The file's options come first and the
 * command line's after them, so a flag given on the command line wins
 * (and a repeatable one, such as --fault, adds to the file's). */
#ifndef CLI_CONFIG_FILE_H
#define CLI_CONFIG_FILE_H

#include <getopt.h>

struct cli_config_args {
	int argc;
	char **argv;   /* argv[0], the file's options, the command line's others */
	char **owned;  /* the strings made from the file */
	int owned_count;
};

/* Expands --config FILE (or --config=FILE) in argv. Returns 0, or the
 * usage error's exit code after saying which line of FILE is wrong and
 * why. Free the result with cli_config_args_free in either case. */
int cli_config_expand(const char *cmd, int argc, char **argv, const struct option *options,
		      struct cli_config_args *out);
void cli_config_args_free(struct cli_config_args *args);

#endif
