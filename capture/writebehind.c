#include "capture/writebehind.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum {
	BLOCK_SIZE = 1024 * 1024,        /* one write(2) */
	SMALL_BATCH = BLOCK_SIZE / 16,   /* a batch this small goes in a small block, shared */
	QUEUE_MAX = 8 * BLOCK_SIZE,      /* bytes waiting: the writer of the stream waits beyond */
	SPARE_MAX = QUEUE_MAX / BLOCK_SIZE + 2, /* written full-size blocks kept: as many as can be alive */
	SPARE_IDLE = 1,                  /* ... and once idle for IDLE_TRIM_S */
	IDLE_TRIM_S = 1,
	LINGER_NS = 5 * 1000 * 1000,     /* after a write, small batches wait this long */
};

struct block {
	struct block *next;
	size_t len, cap;
	bool batch_end; /* a batch ends with this block's last byte */
	uint8_t data[];
};

struct capture_writebehind {
	int fd;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work; /* to the thread: a block queued, or stop */
	pthread_cond_t done; /* from the thread: a block handled */

	/* under lock */
	struct block *head, *tail;
	size_t queued; /* bytes in the queue */
	bool busy; /* the thread is writing a block it took */
	bool idle; /* the thread waits with nothing written lately: wake it */
	bool stop;
	int error;     /* errno of the write that failed; 0 none */
	off_t written; /* end of what the thread wrote */
	off_t good;
	struct block *spare;
	unsigned spare_count;

	/* the stream's side: only the thread that writes the stream */
	struct block *current; /* being filled */
	bool open_batch;       /* blocks queued since the last batch end */
};

static int write_all(int fd, const uint8_t *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Full-size blocks are mappings of their own: what a burst queued goes
 * back to the system once the queue has been idle a while (the heap
 * would keep it); a steady stream keeps reusing the same blocks, since a
 * fresh mapping costs a page fault per page. */
static struct block *block_new(size_t cap)
{
	struct block *b;

	if (cap < BLOCK_SIZE) {
		b = malloc(sizeof(*b) + cap);
	} else {
		b = mmap(NULL, sizeof(*b) + cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
		if (b == MAP_FAILED)
			b = NULL;
	}
	if (b != NULL) {
		b->cap = cap;
		b->len = 0;
	}
	return b;
}

static void block_free(struct block *b)
{
	if (b == NULL)
		return;
	if (b->cap < BLOCK_SIZE)
		free(b);
	else
		munmap(b, sizeof(*b) + b->cap);
}

static void recycle(struct capture_writebehind *wb, struct block *b)
{
	if (b->cap == BLOCK_SIZE && wb->spare_count < SPARE_MAX) {
		b->next = wb->spare;
		wb->spare = b;
		wb->spare_count++;
	} else {
		block_free(b);
	}
}

/* Under lock, with no block being written: the queue is dropped and the
 * file cut back to its last whole batch. */
static void cut_back(struct capture_writebehind *wb)
{
	while (wb->head != NULL) {
		struct block *b = wb->head;

		wb->head = b->next;
		recycle(wb, b);
	}
	wb->tail = NULL;
	wb->queued = 0;
	if (ftruncate(wb->fd, wb->good) == 0)
		lseek(wb->fd, wb->good, SEEK_SET);
	wb->written = wb->good;
	pthread_cond_broadcast(&wb->done);
}

static void *writer_main(void *arg)
{
	struct capture_writebehind *wb = arg;
	bool linger = false; /* wrote lately: small batches may wait */

	pthread_mutex_lock(&wb->lock);
	for (;;) {
		struct block *b;
		int err;

		if (linger && !wb->stop) {
			/* small batches committed meanwhile do not wake the
			 * thread: they go out together once this wait ends */
			struct timespec at;

			clock_gettime(CLOCK_MONOTONIC, &at);
			at.tv_nsec += LINGER_NS;
			if (at.tv_nsec >= 1000000000) {
				at.tv_sec++;
				at.tv_nsec -= 1000000000;
			}
			while (pthread_cond_timedwait(&wb->work, &wb->lock, &at) != ETIMEDOUT &&
			       wb->head == NULL && !wb->stop)
				;
			linger = wb->head != NULL;
		}
		while (wb->head == NULL && !wb->stop) {
			struct timespec at;

			wb->idle = true;
			if (wb->spare_count <= SPARE_IDLE) {
				pthread_cond_wait(&wb->work, &wb->lock);
				continue;
			}
			clock_gettime(CLOCK_MONOTONIC, &at);
			at.tv_sec += IDLE_TRIM_S;
			if (pthread_cond_timedwait(&wb->work, &wb->lock, &at) != ETIMEDOUT)
				continue;
			while (wb->spare_count > SPARE_IDLE) {
				b = wb->spare;
				wb->spare = b->next;
				wb->spare_count--;
				block_free(b);
			}
		}
		wb->idle = false;
		if (wb->head == NULL)
			break;
		b = wb->head;
		wb->head = b->next;
		if (wb->head == NULL)
			wb->tail = NULL;
		wb->queued -= b->len;
		wb->busy = true;
		pthread_mutex_unlock(&wb->lock);

		err = write_all(wb->fd, b->data, b->len);

		pthread_mutex_lock(&wb->lock);
		wb->busy = false;
		if (err != 0) {
			wb->error = err;
			recycle(wb, b);
			cut_back(wb);
			continue;
		}
		wb->written += (off_t)b->len;
		if (b->batch_end)
			wb->good = wb->written;
		recycle(wb, b);
		pthread_cond_broadcast(&wb->done);
		linger = wb->head == NULL;
	}
	pthread_mutex_unlock(&wb->lock);
	return NULL;
}

/* Under lock: the thread hears of the queue when it waits idle, or when
 * a full block or a megabyte waits; a thread that wrote lately comes back
 * by itself (LINGER_NS), so a stream of small batches (one per command)
 * wakes it once per wait rather than once per batch. */
static void wake(struct capture_writebehind *wb, bool full)
{
	if (wb->idle || full || wb->queued >= BLOCK_SIZE)
		pthread_cond_signal(&wb->work);
}

/* Under lock: a small batch goes at the end of the last queued block when
 * that is a small block with room (the thread has not taken it yet). */
static bool append_to_tail(struct capture_writebehind *wb, const struct block *b)
{
	struct block *t = wb->tail;

	if (t == NULL || t->cap >= BLOCK_SIZE || t->cap - t->len < b->len || wb->error != 0)
		return false;
	memcpy(t->data + t->len, b->data, b->len);
	t->len += b->len;
	t->batch_end = true;
	wb->queued += b->len;
	wake(wb, false);
	return true;
}

/* Hands the current block to the thread, waiting while the queue is full.
 * A small batch is copied into a small block (or the one queued last), so
 * that many of them queued cost what they hold; the current block is
 * kept. */
static void push(struct capture_writebehind *wb, bool batch_end)
{
	struct block *b = wb->current;

	if (batch_end && b->len < SMALL_BATCH) {
		struct block *small;
		bool appended;

		pthread_mutex_lock(&wb->lock);
		appended = append_to_tail(wb, b);
		pthread_mutex_unlock(&wb->lock);
		if (appended) {
			b->len = 0;
			wb->open_batch = false;
			return;
		}
		small = block_new(SMALL_BATCH);
		if (small != NULL) {
			small->len = b->len;
			memcpy(small->data, b->data, b->len);
			b->len = 0;
			b = small;
		} else {
			wb->current = NULL;
		}
	} else {
		wb->current = NULL;
	}
	b->batch_end = batch_end;
	b->next = NULL;
	pthread_mutex_lock(&wb->lock);
	while (wb->queued > 0 && wb->queued + b->len > QUEUE_MAX && wb->error == 0) {
		pthread_cond_signal(&wb->work);
		pthread_cond_wait(&wb->done, &wb->lock);
	}
	if (wb->error != 0) {
		recycle(wb, b); /* the file stopped at its last whole batch */
	} else {
		if (wb->tail != NULL)
			wb->tail->next = b;
		else
			wb->head = b;
		wb->tail = b;
		wb->queued += b->len;
		wake(wb, !batch_end);
	}
	pthread_mutex_unlock(&wb->lock);
	wb->open_batch = !batch_end;
}

static struct block *take_block(struct capture_writebehind *wb)
{
	struct block *b;

	pthread_mutex_lock(&wb->lock);
	b = wb->spare;
	if (b != NULL) {
		wb->spare = b->next;
		wb->spare_count--;
	}
	pthread_mutex_unlock(&wb->lock);
	if (b == NULL)
		return block_new(BLOCK_SIZE);
	b->len = 0;
	return b;
}

static ssize_t stream_write(void *cookie, const char *buf, size_t size)
{
	struct capture_writebehind *wb = cookie;
	size_t copied = 0;

	while (copied < size) {
		size_t n;

		if (wb->current == NULL && (wb->current = take_block(wb)) == NULL) {
			errno = ENOMEM;
			return 0; /* stdio's "error" */
		}
		n = BLOCK_SIZE - wb->current->len;
		if (n > size - copied)
			n = size - copied;
		memcpy(wb->current->data + wb->current->len, buf + copied, n);
		wb->current->len += n;
		copied += n;
		if (wb->current->len == BLOCK_SIZE)
			push(wb, false);
	}
	return (ssize_t)copied;
}

static int failure(struct capture_writebehind *wb)
{
	int err;

	pthread_mutex_lock(&wb->lock);
	err = wb->error;
	pthread_mutex_unlock(&wb->lock);
	if (err == 0)
		return 0;
	errno = err;
	return -1;
}

int capture_writebehind_commit(struct capture_writebehind *wb)
{
	if (wb->current != NULL && wb->current->len > 0)
		push(wb, true);
	else if (wb->open_batch && (wb->current != NULL || (wb->current = take_block(wb)) != NULL))
		push(wb, true); /* an empty block that only ends the batch */
	return failure(wb);
}

int capture_writebehind_drain(struct capture_writebehind *wb)
{
	pthread_mutex_lock(&wb->lock);
	pthread_cond_signal(&wb->work); /* no lingering: the caller waits */
	while ((wb->head != NULL || wb->busy) && wb->error == 0)
		pthread_cond_wait(&wb->done, &wb->lock);
	pthread_mutex_unlock(&wb->lock);
	return failure(wb);
}

void capture_writebehind_discard(struct capture_writebehind *wb)
{
	if (wb->current != NULL)
		wb->current->len = 0;
	wb->open_batch = false;
	pthread_mutex_lock(&wb->lock);
	while (wb->busy)
		pthread_cond_wait(&wb->done, &wb->lock);
	cut_back(wb);
	wb->error = 0;
	pthread_mutex_unlock(&wb->lock);
}

off_t capture_writebehind_good(struct capture_writebehind *wb)
{
	off_t good;

	pthread_mutex_lock(&wb->lock);
	good = wb->good;
	pthread_mutex_unlock(&wb->lock);
	return good;
}

static void destroy(struct capture_writebehind *wb)
{
	block_free(wb->current);
	while (wb->spare != NULL) {
		struct block *b = wb->spare;

		wb->spare = b->next;
		block_free(b);
	}
	pthread_cond_destroy(&wb->done);
	pthread_cond_destroy(&wb->work);
	pthread_mutex_destroy(&wb->lock);
	close(wb->fd);
	free(wb);
}

static int stream_close(void *cookie)
{
	struct capture_writebehind *wb = cookie;
	int rc = capture_writebehind_commit(wb) == 0 && capture_writebehind_drain(wb) == 0 ? 0 : -1;
	int saved = errno;

	pthread_mutex_lock(&wb->lock);
	wb->stop = true;
	pthread_cond_signal(&wb->work);
	pthread_mutex_unlock(&wb->lock);
	pthread_join(wb->thread, NULL);
	destroy(wb);
	errno = saved;
	return rc == 0 ? 0 : EOF;
}

FILE *capture_writebehind_open(int fd, struct capture_writebehind **wb_r)
{
	static const cookie_io_functions_t io = { .write = stream_write, .close = stream_close };
	struct capture_writebehind *wb = calloc(1, sizeof(*wb));
	off_t end = lseek(fd, 0, SEEK_END);
	FILE *fp;
	int err;

	if (wb == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	wb->fd = fd;
	wb->written = wb->good = end < 0 ? 0 : end;
	pthread_mutex_init(&wb->lock, NULL);
	{
		pthread_condattr_t attr;

		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&wb->work, &attr);
		pthread_condattr_destroy(&attr);
	}
	pthread_cond_init(&wb->done, NULL);
	{
		/* signals are the event loop's: the thread must never take one */
		sigset_t all, old;

		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = pthread_create(&wb->thread, NULL, writer_main, wb);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (err != 0) {
		destroy(wb);
		errno = err;
		return NULL;
	}
	fp = fopencookie(wb, "w", io);
	if (fp == NULL) {
		err = errno;
		stream_close(wb);
		errno = err;
		return NULL;
	}
	setvbuf(fp, NULL, _IONBF, 0); /* the queue's blocks are the buffer */
	*wb_r = wb;
	return fp;
}
