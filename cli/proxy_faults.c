/* --fault and --persona of imaptap proxy: specs parsed, bundles opened. */
#include "cli/proxy_faults.h"

#include <string.h>

#include "cli/cli.h"
#include "proxy/fault_persona.h"

static int add(struct cli_faults *list, const char *spec, const char *persona)
{
	char why[300];

	if (list->count == PROXY_FAULTS_MAX)
		return cli_usage_error("proxy", "at most %d faults, --persona's and --fault's together",
				       PROXY_FAULTS_MAX);
	if (proxy_fault_parse(spec, strlen(spec), &list->faults[list->count], why, sizeof(why)) != 0)
		return cli_usage_error("proxy", "--fault '%.200s': %s; SPEC is %s", spec, why,
				       proxy_fault_grammar);
	list->persona[list->count++] = persona;
	return 0;
}

int cli_faults_add(struct cli_faults *list, const char *spec)
{
	return add(list, spec, NULL);
}

int cli_faults_add_persona(struct cli_faults *list, const char *name)
{
	const struct proxy_persona *p = proxy_persona_find(name);
	int rc;

	if (list->persona_given != NULL)
		return cli_usage_error("proxy", "--persona is given once (it was '%.40s'); add --fault "
				       "options to it instead", list->persona_given);
	if (p == NULL)
		return cli_usage_error("proxy", "--persona takes %s, not '%.40s'", proxy_persona_names,
				       name);
	list->persona_given = p->name;
	for (size_t i = 0; p->specs[i] != NULL; i++) {
		rc = add(list, p->specs[i], p->name);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void cli_faults_say(const struct cli_faults *list)
{
	for (size_t i = 0; i < list->count; i++) {
		char spec[128], how[300];

		proxy_fault_spec_str(&list->faults[i], spec, sizeof(spec));
		proxy_fault_explain(&list->faults[i], how, sizeof(how));
		if (list->persona[i] != NULL)
			cli_message("FAULT ACTIVE: --persona %s: --fault %s %s", list->persona[i], spec,
				    how);
		else
			cli_message("FAULT ACTIVE: --fault %s %s", spec, how);
	}
}
