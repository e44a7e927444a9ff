/* libFuzzer target: the --fault grammar. Any input parses or is refused
 * with a one-line message; what parses prints back as a spec that parses
 * to the same fault. */
#include <stdlib.h>
#include <string.h>

#include "proxy/fault_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_fault f, again;
	char err[300], spec[160], how[300];

	err[0] = '\0';
	if (proxy_fault_parse((const char *)data, size, &f, err, sizeof(err)) != 0) {
		if (err[0] == '\0' || strchr(err, '\n') != NULL)
			abort();
		return 0;
	}
	proxy_fault_spec_str(&f, spec, sizeof(spec));
	proxy_fault_explain(&f, how, sizeof(how));
	if (proxy_fault_parse(spec, strlen(spec), &again, err, sizeof(err)) != 0)
		abort();
	if (again.action != f.action || again.duration != f.duration || again.session != f.session ||
	    again.nth != f.nth)
		abort();
	return 0;
}
