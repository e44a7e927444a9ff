/* A tiny assertion kit for the unit tests: failures are counted and
 * reported with file and line; main returns check_finish(). */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <stddef.h>

extern int check_failures;
extern int check_count;

void check_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                          \
	do {                                                                 \
		check_count++;                                               \
		if (!(cond))                                                 \
			check_fail(__FILE__, __LINE__, "%s", #cond);         \
	} while (0)

#define CHECK_MSG(cond, ...)                                                 \
	do {                                                                 \
		check_count++;                                               \
		if (!(cond))                                                 \
			check_fail(__FILE__, __LINE__, __VA_ARGS__);         \
	} while (0)

/* Prints "N passed, N failed" and returns the exit code. */
int check_finish(const char *suite);

#endif
