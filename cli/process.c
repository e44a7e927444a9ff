/* Process set-up for the long-running commands: the descriptor limit,
 * malloc's tuning and dropping root. */
#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"

/* Each session holds two sockets; the rest is listeners, files, stdio. */
#define DESCRIPTORS_PER_SESSION 2
#define DESCRIPTORS_SPARE 64

unsigned cli_raise_descriptor_limit(unsigned want_sessions)
{
	struct rlimit rl;
	rlim_t before, spare;
	unsigned room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	before = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		/* past this many, select() would break, but libevent uses epoll */
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = before;
	}
	spare = rl.rlim_cur > 4 * DESCRIPTORS_SPARE ? DESCRIPTORS_SPARE : rl.rlim_cur / 4;
	room = rl.rlim_cur > spare + DESCRIPTORS_PER_SESSION
		       ? (unsigned)((rl.rlim_cur - spare) / DESCRIPTORS_PER_SESSION)
		       : 1;
	if (rl.rlim_cur > 4000000)
		room = 2000000;
	if (want_sessions > room)
		cli_message("warning: the descriptor limit (%llu, the hard limit) leaves room for about "
			    "%u sessions, fewer than --max-sessions %u; raise it (ulimit -Hn, "
			    "LimitNOFILE=) or accepting will pause when it runs out",
			    (unsigned long long)rl.rlim_cur, room, want_sessions);
	else if (want_sessions == 0 && room < 1000)
		cli_message("warning: the descriptor limit (%llu, the hard limit) leaves room for about "
			    "%u sessions; raise it (ulimit -Hn, LimitNOFILE=) for more",
			    (unsigned long long)rl.rlim_cur, room);
	return room;
}

int cli_drop_privileges(const char *user, const char *const *files, size_t nfiles)
{
	struct passwd *pw;

	if (geteuid() != 0) {
		cli_message("--user %s: imaptap is not running as root, so there is nothing to drop; "
			    "leave --user out", user);
		return -1;
	}
	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		cli_message("--user %s: %s", user, errno ? strerror(errno) : "no such user");
		return -1;
	}
	/* the outputs stay writable by the user, also when SIGHUP reopens them */
	for (size_t i = 0; i < nfiles; i++) {
		if (files[i] != NULL && strcmp(files[i], "-") != 0 &&
		    lchown(files[i], pw->pw_uid, pw->pw_gid) != 0) {
			cli_message("--user %s: cannot hand %s over: %s", user, files[i], strerror(errno));
			return -1;
		}
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		cli_message("--user %s: cannot switch to it: %s", user, strerror(errno));
		return -1;
	}
	/* root must be out of reach for good */
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		cli_message("--user %s: root privileges could be regained; stopping", user);
		return -1;
	}
	cli_message("running as %s (uid %u, gid %u)", pw->pw_name, (unsigned)pw->pw_uid,
		    (unsigned)pw->pw_gid);
	return 0;
}

void cli_tune_malloc(void)
{
	/* Relaying allocates and frees buffers all the time; glibc would hand the
	 * top of the heap back after each burst and fault it in again on the next
	 * (a third of the CPU of a TLS relay). Keep 64 MiB of freed memory. */
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TOP_PAD, 1024 * 1024);
	/* Setting the trim threshold turns off glibc's sliding mmap threshold:
	 * every read buffer of 128 KiB or more was then a fresh mapping, a
	 * page fault per 4 KiB relayed. Such buffers come from the heap too. */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
}
