/* --persona NAME: a provider's known behaviour as a named bundle of
 * --fault SPECs, each reproducing a public report (docs/faults.md). Pure
 * data. */
#ifndef PROXY_FAULT_PERSONA_H
#define PROXY_FAULT_PERSONA_H

#include <stddef.h>

#define PROXY_PERSONA_FAULTS_MAX 4

struct proxy_persona {
	const char *name;
	/* canonical SPECs (proxy_fault_spec_str gives them back), NULL after the last */
	const char *specs[PROXY_PERSONA_FAULTS_MAX + 1];
};

extern const struct proxy_persona proxy_personas[];
extern const size_t proxy_persona_count;

/* The names, as "gmail, outlook, yahoo", for messages. */
extern const char proxy_persona_names[];

/* The persona called name (exact, lower case), or NULL. */
const struct proxy_persona *proxy_persona_find(const char *name);

#endif
