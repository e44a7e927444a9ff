#include "check.h"

#include <stdarg.h>
#include <stdio.h>

int check_failures;
int check_count;

void check_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	check_failures++;
	fprintf(stderr, "%s:%d: FAIL: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int check_finish(const char *suite)
{
	printf("%s: %d passed, %d failed\n", suite, check_count - check_failures, check_failures);
	return check_failures == 0 ? 0 : 1;
}
