/* --config FILE: a command's options as `key = value` lines (the long
 * option's name without its dashes), for a service that starts imaptap
 * with one file per instance. The file's options come first and the
 * command line's after them, so a flag given on the command line wins
 * (and a repeatable one, such as --fault, adds to the file's). */
#ifndef CLI_CONFIG_FILE_H
#define CLI_CONFIG_FILE_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

/* One line of the file that sets an option: its long name, its value (a
 * switch's is "1" or "0"), and the line's number. */
struct cli_config_entry {
	char *key;
	char *value;
	unsigned line;
};

struct cli_config_file {
	struct cli_config_entry *entry;
	size_t count;
};

/* Reads path, every key checked against options (the options of imaptap
 * cmd): 0, or -1 with err "PATH line N: why" (or "PATH: why"). Free
 * *out with cli_config_file_free in either case. */
int cli_config_read(const char *cmd, const char *path, const struct option *options,
		    struct cli_config_file *out, char *err, size_t errlen);
void cli_config_file_free(struct cli_config_file *file);

struct cli_config_args {
	int argc;
	char **argv;   /* argv[0], the file's options, the command line's others */
	char **owned;  /* the strings made from the file */
	int owned_count;
	const char *path;            /* --config's FILE, or NULL */
	struct cli_config_file file; /* FILE as it was read */
};

/* Expands --config FILE (or --config=FILE) in argv. Returns 0, or the
 * usage error's exit code after saying which line of FILE is wrong and
 * why. Free the result with cli_config_args_free in either case. */
int cli_config_expand(const char *cmd, int argc, char **argv, const struct option *options,
		      struct cli_config_args *out);
/* Whether arg (an element of args->argv, or an option's value in one)
 * came from the file rather than the command line. */
bool cli_config_from_file(const struct cli_config_args *args, const char *arg);
void cli_config_args_free(struct cli_config_args *args);

#endif
