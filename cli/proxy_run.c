/* imaptap proxy: the loop, the proxy and the signals, from start to stop. */
#include "cli/proxy_run.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>

#include "capture/sink_lock.h"
#include "cli/cli.h"
#include "cli/config_reload.h"
#include "proxy/metrics_http.h"

/* libevent's own warnings, which it would print raw, through the gate */
static void libevent_message(int severity, const char *message)
{
	if (severity != EVENT_LOG_DEBUG)
		cli_message("libevent: %s", message);
}

/* Log rotation moved the outputs away, or a full disk stopped them; and
 * with --config the file's thresholds may have changed. */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct cli_proxy_run *run = arg;
	struct capture_lock *lock = proxy_outputs_lock(run->proxy);
	struct proxy_config config = *run->config;
	bool changed = run->reload != NULL && cli_config_reload(run->reload, &config.thresholds);

	(void)sig;
	(void)what;
	/* under the lock, the settings record falls between the sessions
	 * that took the old thresholds and those that take the new, so
	 * analyze judges each as the proxy did; a reopened file starts with
	 * the new settings */
	capture_lock_acquire(lock);
	if (changed) {
		proxy_set_thresholds(run->proxy, &config.thresholds);
		cli_record_proxy_settings(&config, config.faults, config.fault_count, run->sinks);
	}
	capture_sinks_reopen(run->sinks);
	capture_lock_release(lock);
	cli_message("SIGHUP: the pcap and the event log reopened");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct cli_proxy_run *run = arg;

	(void)what;
	if (run->signals++ == 0)
		cli_message("%s: stopping; %u session(s) open", sig == SIGINT ? "SIGINT" : "SIGTERM",
			    proxy_session_count(run->proxy));
	else
		cli_message("second signal: exiting now");
	proxy_shutdown(run->proxy);
}

static int install_signals(struct cli_proxy_run *run)
{
	run->sigint = evsignal_new(run->base, SIGINT, on_signal, run);
	run->sigterm = evsignal_new(run->base, SIGTERM, on_signal, run);
	run->sighup = evsignal_new(run->base, SIGHUP, on_sighup, run);
	if (run->sigint == NULL || run->sigterm == NULL || run->sighup == NULL ||
	    evsignal_add(run->sigint, NULL) < 0 || evsignal_add(run->sigterm, NULL) < 0 ||
	    evsignal_add(run->sighup, NULL) < 0) {
		cli_message("cannot install signal handlers");
		return -1;
	}
	return 0;
}

int cli_proxy_start(struct cli_proxy_run *run, const struct proxy_config *config,
		    struct capture_sinks *sinks)
{
	enum proxy_error code;
	char err[512];

	run->sinks = sinks;
	event_set_log_callback(libevent_message);
	/* the other loops are told to stop from this one's thread */
	if (config->workers > 1 && evthread_use_pthreads() != 0) {
		cli_message("cannot make libevent thread-safe: use --workers 1");
		return -1;
	}
	run->base = event_base_new();
	if (run->base == NULL) {
		cli_message("cannot start the event loop: %s", strerror(errno));
		return -1;
	}
	run->proxy = proxy_new(run->base, config, sinks, &code, err, sizeof(err));
	if (run->proxy == NULL) {
		if (code == PROXY_ERR_TLS)
			cli_message("TLS: %s", err);
		else if (code == PROXY_ERR_RESOLVE && strstr(err, config->upstream.host) != NULL)
			cli_message("upstream: %s (check the name, or give an IP address)", err);
		else
			cli_message("%s", err);
		return -1;
	}
	return install_signals(run);
}

int cli_proxy_serve(struct cli_proxy_run *run)
{
	char err[512];

	if (proxy_start_workers(run->proxy, err, sizeof(err)) != 0) {
		cli_message("%s", err);
		return -1;
	}
	event_base_dispatch(run->base);
	return 0;
}

void cli_proxy_stop(struct cli_proxy_run *run)
{
	if (run->sigint != NULL)
		event_free(run->sigint);
	if (run->sigterm != NULL)
		event_free(run->sigterm);
	if (run->sighup != NULL)
		event_free(run->sighup);
	cli_config_reload_free(&run->reload);
	proxy_free(&run->proxy);
	proxy_metrics_http_free(&run->metrics);
	if (run->sinks != NULL)
		capture_sinks_destroy(run->sinks);
	if (run->base != NULL)
		event_base_free(run->base);
	fflush(stderr);
}

unsigned cli_proxy_default_workers(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > PROXY_WORKERS_MAX ? PROXY_WORKERS_MAX : (unsigned)n;
}
