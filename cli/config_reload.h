/* SIGHUP with --config FILE: the file is read again and the rules'
 * thresholds it sets (stall, done-stall, idle-max, keepalive-gap) become
 * those of the sessions that start from then on. A threshold the command
 * line gave keeps the command line's value; one the file no longer sets
 * goes back to its default; any other option the file changed needs a
 * restart, and is named as such. A file that does not read, or a
 * threshold that does not, changes nothing. Every outcome is one line on
 * stderr ("SIGHUP: ..."). */
#ifndef CLI_CONFIG_RELOAD_H
#define CLI_CONFIG_RELOAD_H

#include <getopt.h>
#include <stdbool.h>

#include "cli/config_file.h"
#include "imap/tracker.h"

struct cli_config_reload;

/* For the options of imaptap cmd, read from path at the start as *start
 * (taken over: *start is left empty); pinned: bit i set when the command
 * line gave cli_rules_names[i]; now: the thresholds in effect (zeros:
 * defaults). NULL when out of memory. */
struct cli_config_reload *cli_config_reload_new(const char *cmd, const char *path,
						const struct option *options,
						struct cli_config_file *start, unsigned pinned,
						const struct imap_tracker_config *now);

/* Reads the file again and says what came of it: true with *next the
 * thresholds to apply when they changed, false otherwise. */
bool cli_config_reload(struct cli_config_reload *reload, struct imap_tracker_config *next);

void cli_config_reload_free(struct cli_config_reload **reload);

#endif
