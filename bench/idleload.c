/*
 * idleload: opens many IMAP sessions, takes each into IDLE, holds them, and
 * ends every IDLE with DONE; for the scale benchmark (bench/scale.py).
 *
 *   idleload --connect HOST:PORT --login USER:PASS [--sessions 10000]
 *            [--rate 500] [--hold 30] [--tls] [--parallel 200]
 *            [--users K] [--expect-exists]
 *
 * With --users K, a "%d" in USER is session i's number modulo K, so the
 * sessions spread over K mailboxes. With --expect-exists every session must
 * see new mail (an untagged EXISTS) while in IDLE: once all idling sessions
 * have, the tool prints "newmail N"; a session that has not by DONE counts
 * as failed.
 *
 * Each session: connect (implicit TLS with --tls, certificates not
 * checked: the point is load), greeting, LOGIN, SELECT INBOX, IDLE, '+';
 * then it idles. Once all are idling (or failed) the tool prints a line
 * "idling N" on stdout and holds for --hold seconds (or until it reads a
 * line on stdin when --hold is 0), then sends DONE to every session, waits
 * for the tagged OK, LOGOUT, close. At most --parallel sessions are being
 * set up at once, and new connections start at no more than --rate per
 * second. --connect may be given up to 16 times: session i goes to the
 * (i modulo count)th address.
 *
 * Output on stdout, one key=value line per phase:
 *   setup sessions=N failed=F seconds=S per_second=R
 *   newmail N          (with --expect-exists, once all idling sessions saw it)
 *   done sessions=N failed=F done_ok_p50_us=.. done_ok_p99_us=.. seconds=S newmail=M
 * Exit 0 when no session failed, 1 otherwise, 2 on a usage error.
 *
 * One libevent loop, bufferevents (with OpenSSL for --tls): cheap enough
 * per session that the tool is not what limits the measurement.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum phase { CONNECTING, GREETING, LOGIN, SELECT, IDLE_WAIT, IDLING, DONE_WAIT, LOGOUT, FINISHED, FAILED };

struct session {
	struct bufferevent *bev;
	enum phase phase;
	int number;
	bool saw_exists;
	int64_t done_sent_us;
};

static struct {
	const char *user, *pass;
	int sessions, rate, hold, tls, parallel, users, expect_exists;
} opt = {.sessions = 10000, .rate = 500, .hold = 30, .parallel = 200, .users = 1};

static struct event_base *base;
static SSL_CTX *ssl_ctx;
#define MAX_TARGETS 16
static struct addrinfo *addr[MAX_TARGETS]; /* --connect, taken in turn */
static int targets;
static struct session *all;
static int started, settled, in_setup, idling, failed, finished, newmail;
/* settled: sessions past setup (idling or failed); finished: of the idling
 * ones, those done (or lost) since */
static int64_t setup_start_us, done_start_us;
static int64_t *done_latency;
static int done_latency_n;
static struct event *starter;

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void all_idling(void);
static void all_finished(void);

/* A session reached IDLE, finished, or failed: counts it, and moves the
 * run on when a phase is over for every session. */
static void settle(struct session *s, enum phase phase)
{
	enum phase was = s->phase;

	if (phase == FAILED || phase == FINISHED) {
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		s->bev = NULL;
	}
	s->phase = phase;
	if (phase == FAILED)
		failed++;
	if (was < IDLING) {
		in_setup--;
		settled++;
		if (phase == IDLING)
			idling++;
		if (settled == opt.sessions)
			all_idling();
	} else if (phase != IDLING) {
		finished++; /* after DONE, or a session lost while idling */
		if (done_start_us != 0 && finished == idling)
			all_finished();
	}
}

static void send_line(struct session *s, const char *line)
{
	bufferevent_write(s->bev, line, strlen(line));
}

/* "* <number> EXISTS" */
static bool is_exists(const char *line)
{
	const char *p = line + 2;

	if (strncmp(line, "* ", 2) != 0 || *p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	return strcasecmp(p, " EXISTS") == 0;
}

/* Answers one line from the server; returns -1 on a protocol failure. */
static int on_line(struct session *s, const char *line)
{
	switch (s->phase) {
	case GREETING:
		if (strncmp(line, "* OK", 4) != 0)
			return -1;
		{
			char user[256], login[512];

			const char *mark = strstr(opt.user, "%d");

			/* "%d" in the user name: this session's mailbox */
			if (mark != NULL)
				snprintf(user, sizeof(user), "%.*s%d%s", (int)(mark - opt.user),
					 opt.user, s->number % opt.users, mark + 2);
			else
				snprintf(user, sizeof(user), "%s", opt.user);
			snprintf(login, sizeof(login), "a LOGIN %s %s\r\n", user, opt.pass);
			send_line(s, login);
		}
		s->phase = LOGIN;
		return 0;
	case LOGIN:
		if (line[0] == '*')
			return 0;
		if (strncmp(line, "a OK", 4) != 0)
			return -1;
		send_line(s, "b SELECT INBOX\r\n");
		s->phase = SELECT;
		return 0;
	case SELECT:
		if (line[0] == '*')
			return 0;
		if (strncmp(line, "b OK", 4) != 0)
			return -1;
		send_line(s, "c IDLE\r\n");
		s->phase = IDLE_WAIT;
		return 0;
	case IDLE_WAIT:
		if (line[0] == '*')
			return 0;
		if (line[0] != '+')
			return -1;
		settle(s, IDLING);
		return 0;
	case IDLING:
		if (line[0] != '*')
			return -1;
		if (is_exists(line) && !s->saw_exists) {
			s->saw_exists = true;
			newmail++;
			if (opt.expect_exists && settled == opt.sessions && newmail == idling) {
				printf("newmail %d\n", newmail);
				fflush(stdout);
			}
		}
		return 0; /* keepalives, new mail */
	case DONE_WAIT:
		if (line[0] == '*')
			return 0;
		if (strncmp(line, "c OK", 4) != 0)
			return -1;
		done_latency[done_latency_n++] = now_us() - s->done_sent_us;
		send_line(s, "d LOGOUT\r\n");
		s->phase = LOGOUT;
		return 0;
	case LOGOUT:
		if (strncmp(line, "d OK", 4) == 0)
			settle(s, FINISHED);
		return 0;
	case CONNECTING:
	case FINISHED:
	case FAILED:
		return 0;
	}
	return 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while (s->bev != NULL && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = on_line(s, line);

		free(line);
		if (rc != 0) {
			settle(s, FAILED);
			return;
		}
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		s->phase = GREETING;
		return;
	}
	if (s->phase != FINISHED)
		settle(s, s->phase == LOGOUT ? FINISHED : FAILED);
}

static void start_one(void)
{
	struct session *s = &all[started];
	int fd = -1;

	s->number = started++;

	in_setup++;
	s->phase = CONNECTING;
	if (opt.tls) {
		SSL *ssl = SSL_new(ssl_ctx);

		s->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
							BEV_OPT_CLOSE_ON_FREE);
	} else {
		s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->bev == NULL) {
		settle(s, FAILED);
		return;
	}
	bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(s->bev, addr[s->number % targets]->ai_addr,
				       (int)addr[s->number % targets]->ai_addrlen) != 0)
		settle(s, FAILED);
}

/* Every 10 ms: start what the rate and the parallel bound allow. */
static void on_start_tick(evutil_socket_t fd, short what, void *arg)
{
	static int64_t last;
	static double credit;
	int64_t t = now_us();

	(void)fd;
	(void)what;
	(void)arg;
	if (last != 0)
		credit += (double)(t - last) * opt.rate / 1e6;
	last = t;
	if (credit > opt.rate)
		credit = opt.rate;
	while (started < opt.sessions && credit >= 1 && in_setup < opt.parallel) {
		credit -= 1;
		start_one();
	}
	if (started == opt.sessions)
		event_del(starter);
}

static void send_done(void)
{
	done_start_us = now_us();
	for (int i = 0; i < opt.sessions; i++) {
		struct session *s = &all[i];

		if (s->phase != IDLING)
			continue;
		if (opt.expect_exists && !s->saw_exists) {
			settle(s, FAILED); /* no new mail seen during IDLE */
			continue;
		}
		s->done_sent_us = now_us();
		send_line(s, "DONE\r\n");
		s->phase = DONE_WAIT;
	}
	if (finished == idling)
		all_finished();
}

static void on_hold_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	send_done();
}

static void all_idling(void)
{
	static int once;
	double secs = (double)(now_us() - setup_start_us) / 1e6;

	if (once++)
		return;
	printf("setup sessions=%d failed=%d seconds=%.3f per_second=%.1f\n", opt.sessions, failed,
	       secs, (opt.sessions - failed) / secs);
	printf("idling %d\n", idling);
	if (opt.expect_exists && idling > 0 && newmail == idling)
		printf("newmail %d\n", newmail);
	fflush(stdout);
	if (opt.hold > 0) {
		struct timeval tv = {opt.hold, 0};

		event_base_once(base, -1, EV_TIMEOUT, on_hold_over, NULL, &tv);
	} else {
		event_base_once(base, STDIN_FILENO, EV_READ, on_hold_over, NULL, NULL);
	}
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void all_finished(void)
{
	int64_t p50 = 0, p99 = 0;

	if (done_latency_n > 0) {
		qsort(done_latency, (size_t)done_latency_n, sizeof(int64_t), cmp64);
		p50 = done_latency[done_latency_n / 2];
		p99 = done_latency[(size_t)done_latency_n * 99 / 100];
	}
	printf("done sessions=%d failed=%d done_ok_p50_us=%lld done_ok_p99_us=%lld seconds=%.3f "
	       "newmail=%d\n",
	       done_latency_n, failed, (long long)p50, (long long)p99,
	       (double)(now_us() - done_start_us) / 1e6, newmail);
	fflush(stdout);
	event_base_loopexit(base, NULL);
}

static void usage(void)
{
	fprintf(stderr, "usage: idleload --connect HOST:PORT --login USER:PASS [--sessions N] "
			"[--rate R] [--hold S] [--tls] [--parallel P] [--users K] [--expect-exists]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"connect", required_argument, NULL, 'c'}, {"login", required_argument, NULL, 'l'},
		{"sessions", required_argument, NULL, 'n'}, {"rate", required_argument, NULL, 'r'},
		{"hold", required_argument, NULL, 'H'},    {"tls", no_argument, NULL, 't'},
		{"parallel", required_argument, NULL, 'p'}, {"users", required_argument, NULL, 'u'},
		{"expect-exists", no_argument, NULL, 'e'},  {NULL, 0, NULL, 0},
	};
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct rlimit rl;
	char *colon;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			colon = strrchr(optarg, ':');
			if (colon == NULL || targets == MAX_TARGETS)
				usage();
			*colon = '\0';
			if (getaddrinfo(optarg, colon + 1, &hints, &addr[targets]) != 0) {
				fprintf(stderr, "idleload: cannot resolve %s\n", optarg);
				return 2;
			}
			targets++;
			break;
		case 'l':
			colon = strchr(optarg, ':');
			if (colon == NULL)
				usage();
			*colon = '\0';
			opt.user = optarg;
			opt.pass = colon + 1;
			break;
		case 'n': opt.sessions = atoi(optarg); break;
		case 'r': opt.rate = atoi(optarg); break;
		case 'H': opt.hold = atoi(optarg); break;
		case 't': opt.tls = 1; break;
		case 'p': opt.parallel = atoi(optarg); break;
		case 'u': opt.users = atoi(optarg); break;
		case 'e': opt.expect_exists = 1; break;
		default: usage();
		}
	}
	if (targets == 0 || opt.user == NULL || opt.sessions < 1 || opt.rate < 1 ||
	    opt.parallel < 1 || opt.hold < 0 || opt.users < 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)opt.sessions + 64) {
			fprintf(stderr, "idleload: the descriptor limit %llu is below %d sessions; "
					"raise it (ulimit -Hn)\n",
				(unsigned long long)rl.rlim_cur, opt.sessions);
			return 2;
		}
	}
	if (opt.tls) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
	}
	all = calloc((size_t)opt.sessions, sizeof(*all));
	done_latency = calloc((size_t)opt.sessions, sizeof(*done_latency));
	base = event_base_new();
	if (all == NULL || done_latency == NULL || base == NULL)
		return 1;
	setup_start_us = now_us();
	starter = event_new(base, -1, EV_PERSIST, on_start_tick, NULL);
	{
		struct timeval tick = {0, 10000};

		event_add(starter, &tick);
	}
	event_base_dispatch(base);
	fprintf(stderr, "idleload: %d sessions, %d failed\n", opt.sessions, failed);
	return failed ? 1 : 0;
}
