/* Files written behind: batches reach the file in order and whole; a
 * failed write cuts the file back to its last whole batch and is reported
 * by the next commit; discard lets writing start again; small batches
 * that did not wake the writer thread reach the file without a drain. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture/writebehind.h"
#include "check.h"

static char path[] = "/tmp/imaptap-writebehind-XXXXXX";

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 131u + seed * 7u + (i >> 11));
}

static uint8_t *read_file(size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;

	if (fd < 0 || fstat(fd, &st) != 0)
		return NULL;
	buf = malloc((size_t)st.st_size + 1);
	*len = (size_t)read(fd, buf, (size_t)st.st_size);
	close(fd);
	return buf;
}

static FILE *open_behind(struct capture_writebehind **wb, int flags)
{
	int fd = open(path, O_WRONLY | flags, 0600);

	CHECK(fd >= 0);
	return fd < 0 ? NULL : capture_writebehind_open(fd, wb);
}

/* Many small writes and a few big ones, over several blocks and batches. */
static void test_order(void)
{
	size_t total = 5 * 1024 * 1024 + 12345, done = 0, len = 0;
	uint8_t *want = malloc(total), *got;
	struct capture_writebehind *wb;
	FILE *fp = open_behind(&wb, O_TRUNC);
	unsigned step = 0;

	fill(want, total, 1);
	while (done < total) {
		size_t n = (step % 7 == 0) ? 300000 : 1 + step % 97;

		if (n > total - done)
			n = total - done;
		CHECK(fwrite(want + done, 1, n, fp) == n);
		done += n;
		if (++step % 50 == 0)
			CHECK(capture_writebehind_commit(wb) == 0);
	}
	CHECK(capture_writebehind_commit(wb) == 0);
	CHECK(capture_writebehind_drain(wb) == 0);
	CHECK_MSG(capture_writebehind_good(wb) == (off_t)total, "good %lld",
		  (long long)capture_writebehind_good(wb));
	CHECK(fclose(fp) == 0);
	got = read_file(&len);
	CHECK_MSG(len == total, "file holds %zu bytes, %zu written", len, total);
	CHECK(got != NULL && len == total && memcmp(got, want, total) == 0);
	free(got);
	free(want);
}

/* A write beyond RLIMIT_FSIZE fails (EFBIG): the file ends with the last
 * whole batch, the error comes back, and after discard writing goes on. */
static void test_failure_cuts_back(void)
{
	const size_t a = 1536 * 1024, b = 2 * 1024 * 1024, c = 700 * 1024;
	uint8_t *buf = malloc(b), *got;
	struct rlimit old, small;
	struct capture_writebehind *wb;
	FILE *fp = open_behind(&wb, O_TRUNC);
	size_t len = 0;

	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	small = old;
	small.rlim_cur = a + b / 2;
	CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);

	fill(buf, a, 2);
	CHECK(fwrite(buf, 1, a, fp) == a);
	CHECK(capture_writebehind_commit(wb) == 0);
	fill(buf, b, 3);
	CHECK(fwrite(buf, 1, b, fp) == b);
	capture_writebehind_commit(wb);
	errno = 0;
	CHECK(capture_writebehind_drain(wb) == -1);
	CHECK_MSG(errno == EFBIG, "errno %d", errno);
	CHECK(capture_writebehind_commit(wb) == -1);
	CHECK(capture_writebehind_good(wb) == (off_t)a);
	got = read_file(&len);
	CHECK_MSG(len == a, "after the failure the file holds %zu bytes, the whole batch %zu", len, a);
	free(got);

	CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	capture_writebehind_discard(wb);
	fill(buf, c, 4);
	CHECK(fwrite(buf, 1, c, fp) == c);
	CHECK(capture_writebehind_commit(wb) == 0);
	CHECK(fclose(fp) == 0);
	got = read_file(&len);
	CHECK_MSG(len == a + c, "after discard the file holds %zu bytes, not %zu", len, a + c);
	if (got != NULL && len == a + c) {
		uint8_t *first = malloc(a);

		fill(first, a, 2);
		CHECK(memcmp(got, first, a) == 0);
		CHECK(memcmp(got + a, buf, c) == 0);
		free(first);
	}
	free(got);
	free(buf);
}

/* A device that is always full: the error reaches the caller, and fclose
 * says so too. */
static void test_full_device(void)
{
	int fd = open("/dev/full", O_WRONLY);
	struct capture_writebehind *wb;
	FILE *fp;
	char line[64] = "a1 OK done\r\n";

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	fp = capture_writebehind_open(fd, &wb);
	CHECK(fp != NULL);
	CHECK(fwrite(line, 1, strlen(line), fp) == strlen(line));
	capture_writebehind_commit(wb);
	errno = 0;
	CHECK(capture_writebehind_drain(wb) == -1 && errno == ENOSPC);
	CHECK(fclose(fp) == EOF);
}

/* Appending to an existing file: good starts at its end. */
static void test_append(void)
{
	struct capture_writebehind *wb;
	FILE *fp = open_behind(&wb, O_TRUNC);
	size_t len = 0;
	uint8_t *got;

	CHECK(fwrite("header", 1, 6, fp) == 6);
	CHECK(fclose(fp) == 0);
	fp = open_behind(&wb, O_APPEND);
	CHECK(capture_writebehind_good(wb) == 6);
	CHECK(fwrite("+more", 1, 5, fp) == 5);
	CHECK(fclose(fp) == 0);
	got = read_file(&len);
	CHECK(got != NULL && len == 11 && memcmp(got, "header+more", 11) == 0);
	free(got);
}

/* Waits (at most seconds) until the file holds len bytes, without
 * draining: what the writer thread does on its own. */
static size_t wait_for_size(size_t len, int seconds)
{
	struct stat st = {0};

	for (int i = 0; i < seconds * 100; i++) {
		if (stat(path, &st) == 0 && (size_t)st.st_size >= len)
			break;
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	return (size_t)st.st_size;
}

/* A batch per line, as a session of small commands commits them: the
 * batches after the first wake nobody, share blocks, and still reach the
 * file in order, unasked; so does one after the thread went idle. */
static void test_small_batches_unasked(void)
{
	const size_t batches = 3000, each = 57, total = batches * each + 11;
	uint8_t *want = malloc(total), *got;
	struct capture_writebehind *wb;
	FILE *fp = open_behind(&wb, O_TRUNC);
	size_t len = 0;

	fill(want, total, 5);
	for (size_t i = 0; i < batches; i++) {
		CHECK(fwrite(want + i * each, 1, each, fp) == each);
		CHECK(capture_writebehind_commit(wb) == 0);
	}
	len = wait_for_size(batches * each, 10);
	CHECK_MSG(len == batches * each, "the file holds %zu bytes of %zu committed", len,
		  batches * each);
	CHECK(capture_writebehind_good(wb) == (off_t)(batches * each));
	/* idle by now: the next small batch wakes the thread */
	nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
	CHECK(fwrite(want + batches * each, 1, 11, fp) == 11);
	CHECK(capture_writebehind_commit(wb) == 0);
	len = wait_for_size(total, 10);
	CHECK_MSG(len == total, "after a pause the file holds %zu bytes of %zu", len, total);
	got = read_file(&len);
	CHECK(got != NULL && len == total && memcmp(got, want, total) == 0);
	CHECK(fclose(fp) == 0);
	free(got);
	free(want);
}

int main(void)
{
	int fd = mkstemp(path);

	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);
	test_order();
	test_failure_cuts_back();
	test_full_device();
	test_append();
	test_small_batches_unasked();
	unlink(path);
	return check_finish("writebehind");
}
