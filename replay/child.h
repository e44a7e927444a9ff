/* The command run beside a replay (replay serve FILE -- COMMAND ARGS): the
 * client under test, started with IMAPTAP_PORT naming the port to use.
 * Serving lasts as long as it runs. */
#ifndef REPLAY_CHILD_H
#define REPLAY_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct replay_child {
	pid_t pid;              /* -1: not running */
	const char *name;       /* argv[0], for messages */
};

/* Starts argv with IMAPTAP_PORT=port in its environment; close_fd (a
 * listener, or -1) is not inherited. Returns 0, or -1 with err saying
 * why. A command that cannot be run at all exits 127. */
int replay_child_start(struct replay_child *child, char *const *argv, unsigned port, int close_fd,
		       char *err, size_t errlen);

/* True once the command has ended (then *exit_code_r is its exit status,
 * or 128 + the signal that ended it); never waits. */
bool replay_child_ended(struct replay_child *child, int *exit_code_r);

/* Ends a command still running (SIGTERM) and waits for it. */
void replay_child_stop(struct replay_child *child);

#endif
