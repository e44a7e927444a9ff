/* Which route each open session took (--route), for sinks that name it
 * on every row and record while being told only the session's number.
 * Names are kept once each, however many sessions share them. Pure. */
#ifndef CAPTURE_ROUTE_NAMES_H
#define CAPTURE_ROUTE_NAMES_H

struct capture_route_names;

struct capture_route_names *capture_route_names_new(void);
/* Session id took route name (NULL: none, nothing kept). Out of memory:
 * the session's rows go without it. */
void capture_route_names_open(struct capture_route_names *m, unsigned id, const char *name);
/* The route of session id, or NULL. */
const char *capture_route_names_get(const struct capture_route_names *m, unsigned id);
void capture_route_names_close(struct capture_route_names *m, unsigned id);
void capture_route_names_free(struct capture_route_names **m);

#endif
