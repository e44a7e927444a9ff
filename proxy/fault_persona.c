#include "proxy/fault_persona.h"

#include <string.h>

/* What each fault reproduces, with its source, is in docs/faults.md
 * ("Personas"); a fault goes in only with a public report behind it. */
const struct proxy_persona proxy_personas[] = {
	/* Gmail Help answer 97150 (15 simultaneous connections, the BYE
	 * [ALERT]); MailKit #1697 (DONE answered some 16 minutes late) */
	{"gmail", {"max-connections:15", "hold-idle-completion:960s", NULL}},
	/* php-imap #258: Exchange's OK to IDLE, then its "+", no DONE sent */
	{"outlook", {"end-idle-early", NULL}},
	/* mailcore2 #1274, super-imap #6, FairEmail #86, mail-api #419: no
	 * IDLE in Yahoo's capabilities */
	{"yahoo", {"hide-capability:IDLE", NULL}},
};

const size_t proxy_persona_count = sizeof(proxy_personas) / sizeof(proxy_personas[0]);

const char proxy_persona_names[] = "gmail, outlook, yahoo";

const struct proxy_persona *proxy_persona_find(const char *name)
{
	for (size_t i = 0; i < proxy_persona_count; i++)
		if (strcmp(proxy_personas[i].name, name) == 0)
			return &proxy_personas[i];
	return NULL;
}
