#include "proxy/metrics_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "net/socket.h"

#define BACKLOG 16
#define REQUEST_TIMEOUT_S 10
/* a scrape is a GET with a few headers: anything larger is refused */
#define HEADERS_MAX 8192
#define BODY_MAX 0

struct proxy_metrics_http {
	struct evhttp *http;
	const struct capture_metrics *metrics;
	const struct capture_sinks *outputs;
	struct capture_lock *lock;
	char bound[64];
};

static void send_metrics(struct proxy_metrics_http *h, struct evhttp_request *req)
{
	struct evbuffer *body = evbuffer_new();
	size_t len = 0;
	char *text;

	/* the sinks are written by every loop under this lock */
	capture_lock_acquire(h->lock);
	text = capture_metrics_render(h->metrics, h->outputs, &len);
	capture_lock_release(h->lock);
	if (body == NULL || text == NULL || evbuffer_add(body, text, len) != 0) {
		free(text);
		if (body != NULL)
			evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct proxy_metrics_http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	send_metrics(h, req);
}

static bool start_listening(struct proxy_metrics_http *h, const struct proxy_hostport *where,
			    bool remote, enum proxy_metrics_error *code_r, char *err,
			    size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned port;
	char why[256];
	int fd = net_listen_tcp(where->host, where->port, BACKLOG, &ss, &port, why, sizeof(why));
	int errnum = errno;

	if (fd < 0) {
		*code_r = PROXY_METRICS_LISTEN;
		snprintf(err, errlen, "cannot listen on %s:%u: %s%s", where->host, where->port, why,
			 fd == -1 && errnum == EADDRINUSE
				 ? " (another program uses this port: pick another with --metrics, "
				   "or port 0 for any free one)"
			 : fd == -1 && errnum == EACCES
				 ? " (ports below 1024 need privileges: pick a higher port)"
				 : "");
		return false;
	}
	if (!remote && !proxy_sockaddr_is_loopback((struct sockaddr *)&ss)) {
		evutil_closesocket(fd);
		*code_r = PROXY_METRICS_REMOTE;
		snprintf(err, errlen, "%s is not a loopback address: the metrics name the routes "
			 "and the traffic; --allow-remote serves them to other hosts", where->host);
		return false;
	}
	proxy_sockaddr_str((struct sockaddr *)&ss, h->bound, sizeof(h->bound));
	evutil_make_socket_nonblocking(fd);
	if (evhttp_accept_socket_with_handle(h->http, fd) == NULL) {
		evutil_closesocket(fd);
		*code_r = PROXY_METRICS_MEMORY;
		snprintf(err, errlen, "cannot serve on %s: out of memory", h->bound);
		return false;
	}
	return true;
}

struct proxy_metrics_http *proxy_metrics_http_new(struct event_base *base,
						  const struct proxy_hostport *where, bool remote,
						  const struct capture_metrics *metrics,
						  const struct capture_sinks *outputs,
						  struct capture_lock *lock,
						  enum proxy_metrics_error *code_r, char *err,
						  size_t errlen)
{
	struct proxy_metrics_http *h = calloc(1, sizeof(*h));

	if (h == NULL || (h->http = evhttp_new(base)) == NULL) {
		*code_r = PROXY_METRICS_MEMORY;
		snprintf(err, errlen, "out of memory");
		free(h);
		return NULL;
	}
	h->metrics = metrics;
	h->outputs = outputs;
	h->lock = lock;
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(h->http, HEADERS_MAX);
	evhttp_set_max_body_size(h->http, BODY_MAX);
	evhttp_set_timeout(h->http, REQUEST_TIMEOUT_S);
	evhttp_set_gencb(h->http, on_request, h);
	if (!start_listening(h, where, remote, code_r, err, errlen)) {
		proxy_metrics_http_free(&h);
		return NULL;
	}
	return h;
}

const char *proxy_metrics_http_str(const struct proxy_metrics_http *h)
{
	return h->bound;
}

void proxy_metrics_http_free(struct proxy_metrics_http **hp)
{
	struct proxy_metrics_http *h = *hp;

	if (h == NULL)
		return;
	evhttp_free(h->http);
	free(h);
	*hp = NULL;
}
