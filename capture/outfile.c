#include "capture/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <unistd.h>

int capture_outfile_open(struct capture_outfile *out, const char *path, bool append,
			 size_t buffer_size)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
	int fd = open(path, flags, 0600);
	FILE *fp;

	if (fd < 0)
		return -1;
	fp = fdopen(fd, append ? "a" : "w");
	if (fp == NULL) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	if (buffer_size > 0)
		setvbuf(fp, NULL, _IOFBF, buffer_size);
	capture_outfile_adopt(out, fp);
	return 0;
}

void capture_outfile_adopt(struct capture_outfile *out, FILE *fp)
{
	off_t end = lseek(fileno(fp), 0, SEEK_END);

	out->fp = fp;
	/* what stdio holds is not in the file yet */
	out->good = end < 0 ? 0 : end;
}

void capture_outfile_rollback(struct capture_outfile *out)
{
	int saved = errno;

	/* the buffer would be written again at close: drop it */
	__fpurge(out->fp);
	clearerr(out->fp);
	if (ftruncate(fileno(out->fp), out->good) == 0)
		lseek(fileno(out->fp), out->good, SEEK_SET);
	errno = saved;
}

int capture_outfile_commit(struct capture_outfile *out)
{
	off_t end;

	if (fflush(out->fp) != 0 || ferror(out->fp)) {
		if (errno == 0)
			errno = EIO;
		capture_outfile_rollback(out);
		return -1;
	}
	end = lseek(fileno(out->fp), 0, SEEK_END);
	if (end >= 0)
		out->good = end;
	return 0;
}

bool capture_outfile_moved(const struct capture_outfile *out, const char *path)
{
	struct stat open_st, path_st;

	if (fstat(fileno(out->fp), &open_st) != 0 || stat(path, &path_st) != 0)
		return true;
	return open_st.st_dev != path_st.st_dev || open_st.st_ino != path_st.st_ino;
}

int capture_outfile_close(struct capture_outfile *out)
{
	int rc = 0;

	if (out->fp == NULL)
		return 0;
	if (capture_outfile_commit(out) != 0)
		rc = -1;
	fclose(out->fp);
	out->fp = NULL;
	return rc;
}
