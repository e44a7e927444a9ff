#include "capture/sink.h"

int capture_sinks_add(struct capture_sinks *s, struct capture_sink sink)
{
	if (s->count == CAPTURE_SINKS_MAX)
		return -1;
	s->sink[s->count++] = sink;
	return 0;
}

void capture_sinks_open(const struct capture_sinks *s, const struct capture_session_info *info)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->open(s->sink[i].self, info);
}

void capture_sinks_observe(const struct capture_sinks *s, unsigned session,
			   const struct imap_observation *obs)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->observe(s->sink[i].self, session, obs);
}

void capture_sinks_notice(const struct capture_sinks *s, unsigned session, imap_time_us ts,
			  const char *text)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->notice(s->sink[i].self, session, ts, text);
}

void capture_sinks_anomaly(const struct capture_sinks *s, unsigned session, imap_time_us ts,
			   const char *rule, const char *text)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->anomaly(s->sink[i].self, session, ts, rule, text);
}

void capture_sinks_close(const struct capture_sinks *s, const struct capture_close_info *info)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->close(s->sink[i].self, info);
}

void capture_sinks_flush(const struct capture_sinks *s)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->flush(s->sink[i].self);
}

void capture_sinks_destroy(struct capture_sinks *s)
{
	for (unsigned i = 0; i < s->count; i++)
		s->sink[i].ops->destroy(s->sink[i].self);
	s->count = 0;
}
