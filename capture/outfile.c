#include "capture/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/writebehind.h"

int capture_outfile_open_fd(const char *path, enum capture_outfile_mode mode)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
		    (mode == CAPTURE_OUTFILE_APPEND ? O_APPEND : 0);
	struct stat st;
	int fd, saved;

	/* "-": standard output, as it is (a pipe, a terminal, a file the shell
	 * opened): nothing to refuse, truncate or chmod there */
	if (strcmp(path, "-") == 0)
		return fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	fd = open(path, flags, 0600);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0)
		goto fail;
	if (S_ISREG(st.st_mode)) {
		if (mode == CAPTURE_OUTFILE_NEW && st.st_size > 0) {
			errno = EEXIST;
			goto fail;
		}
		/* whatever umask made it, or whoever made it before */
		if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0)
			goto fail;
		/* emptied only once it is known to be a file of ours to write */
		if (mode == CAPTURE_OUTFILE_OVERWRITE && ftruncate(fd, 0) != 0)
			goto fail;
	}
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

void capture_outfile_error(char *err, size_t errlen, const char *what, const char *path,
			   int errnum)
{
	struct stat st;

	if (errnum == ELOOP)
		snprintf(err, errlen, "%s %s is a symbolic link; imaptap does not write through one: "
			 "give the path of the file itself", what, path);
	else if (errnum == EEXIST && stat(path, &st) == 0)
		snprintf(err, errlen, "%s %s already exists (%lld bytes)", what, path,
			 (long long)st.st_size);
	else
		snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(errnum));
}

int capture_outfile_open(struct capture_outfile *out, const char *path,
			 enum capture_outfile_mode mode, size_t buffer_size)
{
	bool append = mode == CAPTURE_OUTFILE_APPEND;
	int fd = capture_outfile_open_fd(path, mode);
	FILE *fp;

	if (fd < 0)
		return -1;
	out->behind = NULL;
	if (buffer_size == CAPTURE_OUTFILE_BEHIND) {
		fp = capture_writebehind_open(fd, &out->behind);
		if (fp == NULL)
			return -1;
	} else {
		fp = fdopen(fd, append ? "a" : "w");
		if (fp == NULL) {
			int saved = errno;

			close(fd);
			errno = saved;
			return -1;
		}
		if (buffer_size > 0)
			setvbuf(fp, NULL, _IOFBF, buffer_size);
	}
	out->fp = fp;
	out->fd = fd;
	out->good = out->behind != NULL ? capture_writebehind_good(out->behind) : lseek(fd, 0, SEEK_END);
	if (out->good < 0)
		out->good = 0;
	return 0;
}

int capture_outfile_open_stream(struct capture_outfile *out, capture_stream_fn *fn, void *ctx)
{
	cookie_io_functions_t io = {.write = fn};

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	out->fp = fopencookie(ctx, "w", io);
	if (out->fp == NULL)
		return -1;
	/* a batch of lines reaches the readers in one piece */
	setvbuf(out->fp, NULL, _IOFBF, 65536);
	return 0;
}

void capture_outfile_rollback(struct capture_outfile *out)
{
	int saved = errno;

	/* the buffer would be written again at close: drop it */
	__fpurge(out->fp);
	clearerr(out->fp);
	if (out->behind != NULL) {
		capture_writebehind_discard(out->behind);
	} else if (out->fd >= 0 && ftruncate(out->fd, out->good) == 0) {
		lseek(out->fd, out->good, SEEK_SET);
	}
	errno = saved;
}

int capture_outfile_commit(struct capture_outfile *out)
{
	off_t end;

	if (fflush(out->fp) != 0 || ferror(out->fp) ||
	    (out->behind != NULL && capture_writebehind_commit(out->behind) != 0)) {
		if (errno == 0)
			errno = EIO;
		capture_outfile_rollback(out);
		return -1;
	}
	end = out->behind != NULL ? capture_writebehind_good(out->behind)
	      : out->fd >= 0     ? lseek(out->fd, 0, SEEK_END)
				 : -1;
	if (end >= 0)
		out->good = end;
	return 0;
}

int capture_outfile_sync(struct capture_outfile *out)
{
	if (capture_outfile_commit(out) != 0)
		return -1;
	if (out->behind != NULL && capture_writebehind_drain(out->behind) != 0) {
		capture_outfile_rollback(out);
		return -1;
	}
	if (out->behind != NULL)
		out->good = capture_writebehind_good(out->behind);
	return 0;
}

bool capture_outfile_moved(const struct capture_outfile *out, const char *path)
{
	struct stat open_st, path_st;

	if (strcmp(path, "-") == 0)
		return false; /* standard output cannot be moved away */
	if (fstat(out->fd, &open_st) != 0 || stat(path, &path_st) != 0)
		return true;
	return open_st.st_dev != path_st.st_dev || open_st.st_ino != path_st.st_ino;
}

int capture_outfile_close(struct capture_outfile *out)
{
	int rc = 0;

	if (out->fp == NULL)
		return 0;
	if (capture_outfile_sync(out) != 0)
		rc = -1;
	if (fclose(out->fp) != 0)
		rc = -1;
	out->fp = NULL;
	out->behind = NULL;
	out->fd = -1;
	return rc;
}
