/* The subcommands, each given its own argv (argv[0] is its name). Only
 * cli/main.c calls them; they share cli/cli.h, never each other. */
#ifndef CLI_COMMANDS_H
#define CLI_COMMANDS_H

int cli_proxy_main(int argc, char **argv);
int cli_ca_main(int argc, char **argv);
int cli_analyze_main(int argc, char **argv);
int cli_replay_main(int argc, char **argv);
int cli_compile_main(int argc, char **argv);
int cli_export_main(int argc, char **argv);
int cli_diff_main(int argc, char **argv);

#endif
