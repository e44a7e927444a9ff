/*
 * heapcount: a counting allocator preloaded into a process to see where its
 * live heap goes (bench/tls_idle_memory.py --breakdown).
 *
 *   HEAPCOUNT_OUT=/tmp/heap.txt LD_PRELOAD=build/bench/libheapcount.so imaptap ...
 *   kill -USR2 <pid>     # appends a snapshot of the live heap to the file
 *
 * Every allocation is charged to a site: OpenSSL's own allocations (taken
 * with CRYPTO_set_mem_functions) to the OpenSSL source file and line that
 * made them, every other one to the first return address on the stack that
 * lies in the program (or, failing that, in a library other than libc), so
 * an evbuffer chain grown from proxy/stream.c is charged to that line of
 * proxy/stream.c. A snapshot lists, per site, the bytes still allocated
 * (malloc_usable_size, what the heap really holds for it less the chunk
 * header) and how many blocks. Sites are resolved to files by the caller
 * (addr2line); nothing here formats names beyond what dladdr knows.
 *
 * Bench-only: slow (a backtrace per allocation), single lock, never in the
 * product.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

#define SITES 16384
#define SLOTS (1u << 21) /* live blocks tracked at most (2M) */

struct site {
	uintptr_t key;      /* return address, or OpenSSL file pointer ^ line */
	const char *file;   /* OpenSSL source file, or NULL */
	int line;
	uintptr_t offset;   /* address less its object's base */
	const char *object; /* dladdr's object path */
	long long live, blocks;
};

struct slot {
	uintptr_t ptr;
	uint32_t size;
	uint32_t site;
};

static struct site sites[SITES];
static struct slot *slots;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int busy;
static int ready;

/* address ranges of the objects whose frames are skipped (libc, this file,
 * OpenSSL, whose allocations come through the hooks anyway) */
struct range {
	uintptr_t lo, hi;
};
static struct range skip[32];
static int nskip;
static struct range program[8];
static int nprogram;

static int in_ranges(const struct range *r, int n, uintptr_t a)
{
	for (int i = 0; i < n; i++)
		if (a >= r[i].lo && a < r[i].hi)
			return 1;
	return 0;
}

static void read_maps(void)
{
	static char buf[1 << 17];
	char exe[512];
	ssize_t elen = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int fd = open("/proc/self/maps", O_RDONLY);
	size_t len = 0;
	ssize_t n;

	if (fd < 0 || elen <= 0)
		return;
	exe[elen] = '\0';
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	for (char *line = buf, *next; line != NULL && *line; line = next) {
		unsigned long lo, hi;
		char perms[8], *path;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[2] != 'x')
			continue;
		path = strchr(line, '/');
		if (path == NULL)
			continue;
		if (strcmp(path, exe) == 0 && nprogram < 8)
			program[nprogram++] = (struct range){lo, hi};
		else if ((strstr(path, "/libc.so") || strstr(path, "heapcount") ||
			  strstr(path, "libcrypto") || strstr(path, "libssl")) && nskip < 32)
			skip[nskip++] = (struct range){lo, hi};
	}
}

static uint32_t site_for(uintptr_t key, const char *file, int line, uintptr_t addr)
{
	uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) % SITES;

	for (uint32_t i = 0; i < SITES; i++, h = (h + 1) % SITES) {
		struct site *s = &sites[h];

		if (s->key == key && (s->file == file || file == NULL) && s->line == line)
			return h;
		if (s->key == 0) {
			Dl_info info;

			s->key = key;
			s->file = file;
			s->line = line;
			if (file == NULL && dladdr((void *)addr, &info) && info.dli_fname != NULL) {
				s->object = info.dli_fname;
				s->offset = addr - (uintptr_t)info.dli_fbase;
			} else {
				s->offset = addr;
			}
			return h;
		}
	}
	return 0;
}

static uint32_t caller_site(void)
{
	void *frames[12];
	int n = backtrace(frames, 12);
	uintptr_t chosen = 0;

	for (int i = 1; i < n; i++) {
		uintptr_t a = (uintptr_t)frames[i];

		if (in_ranges(program, nprogram, a)) {
			chosen = a;
			break;
		}
		if (chosen == 0 && !in_ranges(skip, nskip, a))
			chosen = a;
	}
	if (chosen == 0)
		chosen = n > 1 ? (uintptr_t)frames[1] : 1;
	return site_for(chosen, NULL, 0, chosen);
}

static void slot_put(void *p, uint32_t site)
{
	uintptr_t key = (uintptr_t)p;
	uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (SLOTS - 1);
	size_t size = malloc_usable_size(p);

	while (slots[h].ptr != 0)
		h = (h + 1) & (SLOTS - 1);
	slots[h] = (struct slot){key, (uint32_t)size, site};
	sites[site].live += (long long)size;
	sites[site].blocks++;
}

/* Removes p (backward-shift deletion keeps the probe chains whole). */
static void slot_drop(void *p)
{
	uintptr_t key = (uintptr_t)p;
	uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (SLOTS - 1);

	while (slots[h].ptr != key) {
		if (slots[h].ptr == 0)
			return; /* allocated before the counting started */
		h = (h + 1) & (SLOTS - 1);
	}
	sites[slots[h].site].live -= slots[h].size;
	sites[slots[h].site].blocks--;
	for (uint32_t hole = h, j = (h + 1) & (SLOTS - 1);; j = (j + 1) & (SLOTS - 1)) {
		uint32_t home;

		if (slots[j].ptr == 0) {
			slots[hole].ptr = 0;
			return;
		}
		home = (uint32_t)((slots[j].ptr * 0x9E3779B97F4A7C15ull) >> 32) & (SLOTS - 1);
		if (((j - home) & (SLOTS - 1)) >= ((j - hole) & (SLOTS - 1))) {
			slots[hole] = slots[j];
			hole = j;
		}
	}
}

static void note(void *old, void *p, uint32_t site_or_max)
{
	pthread_mutex_lock(&lock);
	if (old != NULL)
		slot_drop(old);
	if (p != NULL)
		slot_put(p, site_or_max);
	pthread_mutex_unlock(&lock);
}

static int counting(void)
{
	return ready && !busy;
}

void *malloc(size_t n)
{
	void *p = __libc_malloc(n);
	uint32_t site;

	if (!counting() || p == NULL)
		return p;
	busy = 1;
	site = caller_site();
	note(NULL, p, site);
	busy = 0;
	return p;
}

void *calloc(size_t a, size_t b)
{
	void *p = __libc_calloc(a, b);
	uint32_t site;

	if (!counting() || p == NULL)
		return p;
	busy = 1;
	site = caller_site();
	note(NULL, p, site);
	busy = 0;
	return p;
}

void *realloc(void *old, size_t n)
{
	void *p;
	uint32_t site;

	if (!counting())
		return __libc_realloc(old, n);
	busy = 1;
	if (old != NULL)
		note(old, NULL, 0);
	p = __libc_realloc(old, n);
	site = caller_site();
	if (p != NULL)
		note(NULL, p, site);
	busy = 0;
	return p;
}

void free(void *p)
{
	if (p != NULL && ready) {
		int was = busy;

		busy = 1;
		note(p, NULL, 0);
		busy = was;
	}
	__libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	if (p == NULL)
		return 12; /* ENOMEM */
	if (counting()) {
		busy = 1;
		note(NULL, p, caller_site());
		busy = 0;
	}
	*out = p;
	return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
	void *p;

	posix_memalign(&p, align, n);
	return p;
}

void *memalign(size_t align, size_t n)
{
	return aligned_alloc(align, n);
}

static uint32_t ossl_site(const char *file, int line)
{
	return site_for(((uintptr_t)file) ^ ((uintptr_t)line << 48), file, line, 0);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
	void *p = __libc_malloc(n);

	if (p != NULL && ready) {
		int was = busy;

		busy = 1;
		pthread_mutex_lock(&lock);
		slot_put(p, ossl_site(file, line));
		pthread_mutex_unlock(&lock);
		busy = was;
	}
	return p;
}

static void *ossl_realloc(void *old, size_t n, const char *file, int line)
{
	void *p;
	int was = busy;

	busy = 1;
	if (old != NULL && ready)
		note(old, NULL, 0);
	p = __libc_realloc(old, n);
	if (p != NULL && ready) {
		pthread_mutex_lock(&lock);
		slot_put(p, ossl_site(file, line));
		pthread_mutex_unlock(&lock);
	}
	busy = was;
	return p;
}

static void ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	free(p);
}

static void put(int fd, const char *text, int len)
{
	if (len > 0 && write(fd, text, (size_t)len) < 0)
		return; /* a snapshot is best effort */
}

static void dump(int sig)
{
	static int snapshot;
	const char *path = getenv("HEAPCOUNT_OUT");
	char line[700];
	int fd, len;

	(void)sig;
	if (path == NULL)
		return;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd < 0)
		return;
	busy = 1;
	len = snprintf(line, sizeof(line), "snapshot %d\n", ++snapshot);
	put(fd, line, len);
	for (int i = 0; i < SITES; i++) {
		const struct site *s = &sites[i];

		if (s->key == 0 || (s->live == 0 && s->blocks == 0))
			continue;
		if (s->file != NULL)
			len = snprintf(line, sizeof(line), "site %lld %lld ossl %s:%d\n", s->live,
				       s->blocks, s->file, s->line);
		else
			len = snprintf(line, sizeof(line), "site %lld %lld addr %s 0x%lx\n", s->live,
				       s->blocks, s->object != NULL ? s->object : "?",
				       (unsigned long)s->offset);
		if ((size_t)len < sizeof(line))
			put(fd, line, len);
	}
	put(fd, "end\n", 4);
	close(fd);
	busy = 0;
}

__attribute__((constructor)) static void heapcount_start(void)
{
	void *frames[2];

	slots = mmap(NULL, (size_t)SLOTS * sizeof(*slots), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (slots == MAP_FAILED)
		return;
	busy = 1;
	backtrace(frames, 2); /* loads the unwinder before counting starts */
	read_maps();
	if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
		put(2, "heapcount: OpenSSL allocated before the hooks; not split\n", 57);
	signal(SIGUSR2, dump);
	busy = 0;
	ready = 1;
}
