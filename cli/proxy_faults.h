/* The faults of imaptap proxy: --fault SPECs and a --persona's bundle,
 * in the order given, and what is said of them at start-up. */
#ifndef CLI_PROXY_FAULTS_H
#define CLI_PROXY_FAULTS_H

#include <stddef.h>

#include "proxy/fault.h"

struct cli_faults {
	struct proxy_fault faults[PROXY_FAULTS_MAX];
	const char *persona[PROXY_FAULTS_MAX]; /* the persona that set it; NULL: --fault */
	size_t count;
	const char *persona_given;
};

/* One --fault SPEC: 0, or the usage error's exit code after saying why. */
int cli_faults_add(struct cli_faults *list, const char *spec);

/* --persona NAME: its faults, after those given so far. */
int cli_faults_add_persona(struct cli_faults *list, const char *name);

/* One "FAULT ACTIVE" line per fault, naming the persona that set it. */
void cli_faults_say(const struct cli_faults *list);

#endif
