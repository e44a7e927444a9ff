#include "replay/child.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture/escape.h"

int replay_child_start(struct replay_child *child, char *const *argv, unsigned port, int close_fd,
		       char *err, size_t errlen)
{
	char portstr[16];

	child->name = argv[0];
	snprintf(portstr, sizeof(portstr), "%u", port);
	child->pid = fork();
	if (child->pid == 0) {
		char shown[512];
		int saved;

		if (close_fd >= 0)
			close(close_fd);
		setenv("IMAPTAP_PORT", portstr, 1);
		execvp(argv[0], argv);
		/* the shared stderr is the one place left to say it */
		saved = errno;
		capture_escape(shown, sizeof(shown), argv[0], strlen(argv[0]), 0, NULL);
		fprintf(stderr, "imaptap: cannot run %s: %s\n", shown, strerror(saved));
		_exit(127);
	}
	if (child->pid < 0) {
		snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(errno));
		return -1;
	}
	return 0;
}

bool replay_child_ended(struct replay_child *child, int *exit_code_r)
{
	int status;

	if (child->pid <= 0 || waitpid(child->pid, &status, WNOHANG) != child->pid)
		return false;
	child->pid = -1;
	*exit_code_r = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return true;
}

void replay_child_stop(struct replay_child *child)
{
	if (child->pid <= 0)
		return;
	kill(child->pid, SIGTERM);
	waitpid(child->pid, NULL, 0);
	child->pid = -1;
}
