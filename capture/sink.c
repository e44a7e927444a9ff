#include "capture/sink.h"

size_t capture_line_content(const struct imap_observation *obs)
{
	size_t n = obs->len;

	if (obs->unit->wire_len == obs->len) {
		if (n > 0 && obs->data[n - 1] == '\n')
			n--;
		if (n > 0 && obs->data[n - 1] == '\r')
			n--;
	}
	return n;
}

const char *capture_side_str(enum capture_side side)
{
	static const char *const names[] = {"client", "server", "proxy", "capture"};

	return (unsigned)side < sizeof(names) / sizeof(names[0]) ? names[side] : "side?";
}

const char *capture_end_str(enum capture_end end)
{
	static const char *const names[] = {"eof",   "half-closed", "shutdown", "reset",
					    "error", "open",        "unseen"};

	return (unsigned)end < sizeof(names) / sizeof(names[0]) ? names[end] : "end?";
}

bool capture_end_is_clean(enum capture_end end)
{
	return end == CAPTURE_END_EOF || end == CAPTURE_END_HALF_CLOSED ||
	       end == CAPTURE_END_SHUTDOWN;
}

int capture_sinks_add(struct capture_sinks *s, struct capture_sink sink)
{
	if (s->count == CAPTURE_SINKS_MAX)
		return -1;
	s->sink[s->count++] = sink;
	return 0;
}

/* Calls op with the arguments on every sink that has it. */
#define EACH(s, op, ...)                                                     \
	do {                                                                 \
		for (unsigned i_ = 0; i_ < (s)->count; i_++)                 \
			if ((s)->sink[i_].ops->op != NULL)                   \
				(s)->sink[i_].ops->op((s)->sink[i_].self, __VA_ARGS__); \
	} while (0)

void capture_sinks_settings(const struct capture_sinks *s, imap_time_us ts,
			    const struct capture_run_settings *settings)
{
	EACH(s, settings, ts, settings);
}

void capture_sinks_open(const struct capture_sinks *s, const struct capture_session_info *info)
{
	EACH(s, open, info);
}

void capture_sinks_bytes(const struct capture_sinks *s, unsigned session, enum imap_dir dir,
			 imap_time_us ts, const uint8_t *data, size_t len, uint64_t secret_from)
{
	EACH(s, bytes, session, dir, ts, data, len, secret_from);
}

void capture_sinks_observe(const struct capture_sinks *s, unsigned session,
			   const struct imap_observation *obs)
{
	EACH(s, observe, session, obs);
}

void capture_sinks_tls(const struct capture_sinks *s, unsigned session, imap_time_us ts,
		       const struct capture_tls_info *info)
{
	EACH(s, tls, session, ts, info);
}

void capture_sinks_notice(const struct capture_sinks *s, unsigned session, imap_time_us ts,
			  const char *text)
{
	EACH(s, notice, session, ts, text);
}

void capture_sinks_anomaly(const struct capture_sinks *s, unsigned session,
			   const struct imap_anomaly *anomaly)
{
	EACH(s, anomaly, session, anomaly);
}

void capture_sinks_flow(const struct capture_sinks *s, unsigned session, imap_time_us ts,
			enum imap_dir dir, bool blocked, uint64_t pending)
{
	EACH(s, flow, session, ts, dir, blocked, pending);
}

void capture_sinks_fault(const struct capture_sinks *s, unsigned session,
			 const struct capture_fault_mark *mark)
{
	EACH(s, fault, session, mark);
}

void capture_sinks_summary(const struct capture_sinks *s, unsigned session, imap_time_us ts,
			   const struct imap_summary *summary)
{
	EACH(s, summary, session, ts, summary);
}

void capture_sinks_close(const struct capture_sinks *s, const struct capture_close_info *info)
{
	EACH(s, close, info);
}

void capture_sinks_reopen(const struct capture_sinks *s)
{
	for (unsigned i = 0; i < s->count; i++)
		if (s->sink[i].ops->reopen != NULL)
			s->sink[i].ops->reopen(s->sink[i].self);
}

void capture_sinks_whole(const struct capture_sinks *s, imap_time_us ts,
			 const struct capture_whole *whole)
{
	EACH(s, whole, ts, whole);
}

void capture_sinks_flush(const struct capture_sinks *s)
{
	for (unsigned i = 0; i < s->count; i++)
		if (s->sink[i].ops->flush != NULL)
			s->sink[i].ops->flush(s->sink[i].self);
}

void capture_sinks_destroy(struct capture_sinks *s)
{
	for (unsigned i = 0; i < s->count; i++)
		if (s->sink[i].ops->destroy != NULL)
			s->sink[i].ops->destroy(s->sink[i].self);
	s->count = 0;
}
