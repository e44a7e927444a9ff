/* imaptap replay serve: a recorded server played to live clients. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>

#include "capture/escape.h"
#include "cli/cli.h"
#include "proxy/addr.h"
#include "proxy/ca.h"
#include "replay/client.h"
#include "replay/serve.h"

static const char serve_usage[] =
	"usage: imaptap replay serve FILE [OPTIONS] [-- COMMAND ARGS...]\n"
	"\n"
	"Plays the server side of a recorded session (a pcap: imaptap's --pcap, or a\n"
	"tcpdump/tshark capture of plaintext IMAP) to live clients. Every recorded\n"
	"client line must arrive: the client's own tags stand for the recorded ones,\n"
	"masked passwords and --ignore spans match anything. The server's lines go\n"
	"out at their recorded delays after the client line before them. When the\n"
	"client does something else, imaptap prints the line expected, the line\n"
	"received and the recording before it, and exits 1.\n"
	"\n"
	"options:\n"
	"  --session N              the N-th session of FILE (default 1)\n"
	"  --listen ADDR:PORT       where clients connect (default 127.0.0.1:0: a free\n"
	"                           port, printed on stderr)\n"
	"  --port-file FILE         write the port to FILE once listening\n"
	"  --speed X                play X times faster (default 1)\n"
	"  --no-delay               send the server's lines as soon as they are due\n"
	"  --segment byte|random[:SEED]|coalesce\n"
	"                           cut the server's bytes into other writes: one byte\n"
	"                           each, random sizes from SEED (default 1), or a whole\n"
	"                           server turn at once; byte and random pieces leave\n"
	"                           as their own TCP segments and TLS records\n"
	"  --ignore REGEX           a volatile span (a date, a UID) that matches anything;\n"
	"                           POSIX extended regex, repeatable\n"
	"  --timeout SECONDS        bound on one whole replay (default: 60, or twice the\n"
	"                           recording's length plus 30 when longer)\n"
	"  --quiet-limit SECONDS    a client silent this long beyond the recorded pause\n"
	"                           while a line is due is reported (default 10)\n"
	"  --client-tls none|implicit|starttls\n"
	"                           what the client speaks (default none); starttls: the\n"
	"                           handshake follows the recorded OK to its STARTTLS\n"
	"  --ca DIR                 CA that signs the certificate shown to the client\n"
	"                           (DIR/ca.crt, DIR/ca.key; created when missing)\n"
	"  --cert FILE --key FILE   show this certificate instead\n"
	"  --name NAME              a host name or IP address the forged certificate\n"
	"                           carries (repeatable; default localhost and 127.0.0.1)\n"
	"  --loop                   serve every new connection afresh until interrupted\n"
	"  -- COMMAND ARGS...       run COMMAND with IMAPTAP_PORT set and serve until it\n"
	"                           exits; the result is the worse of the two\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 the client did what the recording did, 1 it diverged (or the\n"
	"command failed), 2 usage error, 3 the file cannot be read or no listening\n";

enum {
	OPT_SESSION = 256,
	OPT_LISTEN,
	OPT_PORT_FILE,
	OPT_SPEED,
	OPT_NO_DELAY,
	OPT_IGNORE,
	OPT_TIMEOUT,
	OPT_QUIET_LIMIT,
	OPT_LOOP,
	OPT_CLIENT_TLS,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_NAME,
	OPT_SEGMENT,
};

static const struct option serve_options[] = {
	{"session", required_argument, NULL, OPT_SESSION},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"port-file", required_argument, NULL, OPT_PORT_FILE},
	{"speed", required_argument, NULL, OPT_SPEED},
	{"no-delay", no_argument, NULL, OPT_NO_DELAY},
	{"ignore", required_argument, NULL, OPT_IGNORE},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"quiet-limit", required_argument, NULL, OPT_QUIET_LIMIT},
	{"loop", no_argument, NULL, OPT_LOOP},
	{"client-tls", required_argument, NULL, OPT_CLIENT_TLS},
	{"ca", required_argument, NULL, OPT_CA},
	{"cert", required_argument, NULL, OPT_CERT},
	{"key", required_argument, NULL, OPT_KEY},
	{"name", required_argument, NULL, OPT_NAME},
	{"segment", required_argument, NULL, OPT_SEGMENT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

#define IGNORE_MAX 32
#define NAMES_MAX 16

struct serve_args {
	const char *file;
	const char *listen;
	const char *port_file;
	unsigned session;
	double speed;
	imap_time_us timeout;
	imap_time_us quiet;
	bool loop;
	regex_t ignore[IGNORE_MAX];
	size_t ignore_count;
	char **command; /* after "--", or NULL */
	const char *client_tls;
	const char *ca;
	const char *cert;
	const char *key;
	const char *names[NAMES_MAX];
	size_t name_count;
	struct imap_split segment;
};

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static int parse_serve(int argc, char **argv, struct serve_args *a)
{
	unsigned long long v;
	imap_time_us us;
	int c;

	optind = 1;
	opterr = 0;
again:
	/* "+": stop at the first operand, so "-- COMMAND --its-flags" stays whole */
	while ((c = getopt_long(argc, argv, "+:h", serve_options, NULL)) != -1) {
		switch (c) {
		case OPT_SESSION:
			if (cli_number(optarg, 1, 1u << 30, &v) != 0)
				return cli_usage_error("replay serve",
						       "--session takes a number from 1, not '%s'", optarg);
			a->session = (unsigned)v;
			break;
		case OPT_LISTEN:
			a->listen = optarg;
			break;
		case OPT_PORT_FILE:
			a->port_file = optarg;
			break;
		case OPT_SPEED:
			if (cli_seconds(optarg, 0.01, 10000, &us) != 0)
				return cli_usage_error("replay serve",
						       "--speed takes a factor from 0.01 to 10000, not '%s'",
						       optarg);
			a->speed = (double)us / 1e6;
			break;
		case OPT_NO_DELAY:
			a->speed = 0;
			break;
		case OPT_IGNORE: {
			int rc;

			if (a->ignore_count == IGNORE_MAX)
				return cli_usage_error("replay serve", "at most %d --ignore patterns",
						       IGNORE_MAX);
			rc = regcomp(&a->ignore[a->ignore_count], optarg, REG_EXTENDED);
			if (rc != 0) {
				char msg[200];

				regerror(rc, &a->ignore[a->ignore_count], msg, sizeof(msg));
				return cli_usage_error("replay serve", "--ignore '%s': %s", optarg, msg);
			}
			a->ignore_count++;
			break;
		}
		case OPT_TIMEOUT:
			if (cli_seconds(optarg, 1, 7 * 24 * 3600.0, &a->timeout) != 0)
				return cli_usage_error("replay serve",
						       "--timeout takes seconds from 1, not '%s'", optarg);
			break;
		case OPT_QUIET_LIMIT:
			if (cli_seconds(optarg, 0.1, 24 * 3600.0, &a->quiet) != 0)
				return cli_usage_error("replay serve",
						       "--quiet-limit takes seconds from 0.1, not '%s'", optarg);
			break;
		case OPT_LOOP:
			a->loop = true;
			break;
		case OPT_CLIENT_TLS:
			a->client_tls = optarg;
			break;
		case OPT_CA:
			a->ca = optarg;
			break;
		case OPT_CERT:
			a->cert = optarg;
			break;
		case OPT_KEY:
			a->key = optarg;
			break;
		case OPT_NAME: {
			const char *why = NULL;
			char shown[4 * 96 + 1];

			if (a->name_count == NAMES_MAX)
				return cli_usage_error("replay serve", "at most %d --name", NAMES_MAX);
			if (proxy_ca_name_check(optarg, &why) == PROXY_CA_NAME_BAD) {
				capture_escape(shown, sizeof(shown), (const uint8_t *)optarg,
						  strnlen(optarg, 96), 0, NULL);
				return cli_usage_error("replay serve",
						       "--name '%s' is not a host name or IP address: %s",
						       shown, why);
			}
			a->names[a->name_count++] = optarg;
			break;
		}
		case OPT_SEGMENT: {
			char msg[200];

			if (imap_split_parse(optarg, strlen(optarg), &a->segment, msg, sizeof(msg)) != 0)
				return cli_usage_error("replay serve", "--segment: %s", msg);
			break;
		}
		case 'h':
			fputs(serve_usage, stdout);
			return -1;
		case ':':
		default:
			return cli_option_error("replay serve", c, argv);
		}
	}
	if (optind < argc && strcmp(argv[optind], "--") != 0 && a->file == NULL &&
	    strcmp(argv[optind - 1], "--") != 0) {
		a->file = argv[optind++];
		goto again; /* options may follow FILE */
	}
	if (optind < argc && strcmp(argv[optind - 1], "--") == 0 && argv[optind][0] != '\0' &&
	    a->command == NULL) {
		/* getopt consumed the "--" */
		a->command = argv + optind;
	} else if (optind < argc && strcmp(argv[optind], "--") == 0) {
		optind++;
		if (optind >= argc)
			return cli_usage_error("replay serve", "'--' must be followed by a command");
		a->command = argv + optind;
	} else if (optind < argc) {
		return cli_usage_error("replay serve", "unexpected argument '%s' (a command goes after '--')",
				       argv[optind]);
	} else if (optind > 1 && strcmp(argv[optind - 1], "--") == 0) {
		return cli_usage_error("replay serve", "'--' must be followed by a command");
	}
	if (a->file == NULL)
		return cli_usage_error("replay serve", "which recording? imaptap replay serve FILE.pcap");
	if (a->loop && a->command != NULL)
		return cli_usage_error("replay serve", "--loop and a command do not go together");
	if (a->client_tls != NULL && strcmp(a->client_tls, "none") != 0 &&
	    strcmp(a->client_tls, "implicit") != 0 && strcmp(a->client_tls, "starttls") != 0)
		return cli_usage_error("replay serve", "--client-tls takes implicit, starttls or none, not '%s'",
				       a->client_tls);
	if ((a->cert == NULL) != (a->key == NULL))
		return cli_usage_error("replay serve", "--cert and --key go together");
	if (a->client_tls != NULL && strcmp(a->client_tls, "none") != 0 && a->ca == NULL &&
	    a->cert == NULL)
		return cli_usage_error("replay serve", "--client-tls %s needs --ca DIR or --cert FILE --key FILE",
				       a->client_tls);
	return 0;
}

static int listen_on(const char *spec, char *bound, size_t size, unsigned *port_r)
{
	struct proxy_hostport hp;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char err[256], portstr[16];
	int fd, one = 1, rc;

	if (proxy_hostport_parse(spec, &hp, err, sizeof(err)) < 0) {
		cli_usage_error("replay serve", "--listen %s", err);
		return -2;
	}
	snprintf(portstr, sizeof(portstr), "%u", hp.port);
	rc = getaddrinfo(hp.host, portstr, &hints, &res);
	if (rc != 0) {
		cli_message("cannot resolve --listen %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		cli_message("cannot listen on %s: %s (pick another with --listen, or port 0 for any "
			    "free one)",
			    spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	proxy_sockaddr_str((struct sockaddr *)&ss, bound, size);
	*port_r = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* The certificate shown to TLS clients: given, or forged by the CA. */
static SSL_CTX *tls_context(const struct serve_args *a, struct proxy_ca **ca_r)
{
	static const char *const defaults[] = {"localhost", "127.0.0.1"};
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char err[600];

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (a->cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, a->cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, a->key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			cli_message("cannot use --cert %s --key %s: %s", a->cert, a->key,
				    ERR_reason_error_string(ERR_get_error()));
			SSL_CTX_free(ctx);
			return NULL;
		}
		return ctx;
	}
	*ca_r = proxy_ca_load(a->ca, err, sizeof(err));
	if (*ca_r == NULL) {
		cli_message("--ca %s: %s", a->ca, err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	{
		/* every --name was checked already: nothing is left out */
		X509 *leaf = proxy_ca_forge(*ca_r, a->name_count ? a->names : defaults,
					    a->name_count ? a->name_count : 2, NULL, 0, err,
					    sizeof(err));

		if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, proxy_ca_leaf_key(*ca_r)) != 1) {
			cli_message("cannot forge a certificate with %s: %s", a->ca,
				    leaf == NULL ? err : "OpenSSL refused it");
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	return ctx;
}

static imap_time_us recording_length(const struct replay_recording *rec)
{
	return rec->count > 0 ? rec->units[rec->count - 1].at : 0;
}

/* Serves one accepted connection; returns its outcome. */
static int serve_one(int fd, const struct replay_recording *rec, const struct replay_options *opt,
		     unsigned n)
{
	struct replay_result res;

	replay_serve_fd(rec, fd, opt, &res);
	shutdown(fd, SHUT_RDWR);
	close(fd);
	fprintf(stderr, "imaptap: connection %u: ", n);
	cli_write_escaped(stderr, res.report, strlen(res.report), CAPTURE_ESCAPE_KEEP_NEWLINE);
	fflush(stderr);
	return res.code;
}

static imap_time_us recording_length(const struct replay_recording *rec);

static const char client_usage[] =
	"usage: imaptap replay client FILE --connect HOST:PORT [OPTIONS]\n"
	"\n"
	"Plays the client side of a recorded session to a live server: each command\n"
	"when the recording sent it, waiting for continuations and completions as the\n"
	"recording did. Passes when every command completes with its recorded status.\n"
	"\n"
	"options:\n"
	"  --connect HOST:PORT      the server (required)\n"
	"  --session N              the N-th session of FILE (default 1)\n"
	"  --login USER:PASS        credentials for the masked ones in the recording\n"
	"  --upstream-tls implicit|starttls|none\n"
	"                           TLS to the server (default: implicit for port 993);\n"
	"                           starttls follows the recorded STARTTLS\n"
	"  --upstream-ca FILE       also trust this CA; --insecure-upstream: do not verify\n"
	"  --sni NAME               name sent and verified (default: the host)\n"
	"  --speed X | --no-delay   pace (default: as recorded)\n"
	"  --strict                 untagged responses must match the recording too\n"
	"  --timeout SECONDS        bound on the whole replay\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 every command completed as recorded, 1 one did not, 2 usage\n"
	"error, 3 the file cannot be read or the server cannot be reached\n";

enum {
	OPT_CONNECT = 512,
	OPT_LOGIN,
	OPT_UPSTREAM_TLS,
	OPT_UPSTREAM_CA,
	OPT_INSECURE,
	OPT_SNI,
	OPT_STRICT,
};

static const struct option client_options[] = {
	{"connect", required_argument, NULL, OPT_CONNECT},
	{"session", required_argument, NULL, OPT_SESSION},
	{"login", required_argument, NULL, OPT_LOGIN},
	{"upstream-tls", required_argument, NULL, OPT_UPSTREAM_TLS},
	{"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
	{"insecure-upstream", no_argument, NULL, OPT_INSECURE},
	{"sni", required_argument, NULL, OPT_SNI},
	{"speed", required_argument, NULL, OPT_SPEED},
	{"no-delay", no_argument, NULL, OPT_NO_DELAY},
	{"strict", no_argument, NULL, OPT_STRICT},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int connect_to(const struct proxy_hostport *hp)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	char port[16];
	int fd = -1, rc;

	snprintf(port, sizeof(port), "%u", hp->port);
	rc = getaddrinfo(hp->host, port, &hints, &res);
	if (rc != 0) {
		cli_message("cannot resolve %s: %s (check the name, or give an IP address)", hp->host,
			    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (fd < 0)
		cli_message("cannot connect to %s:%u: %s", hp->host, hp->port, strerror(errno));
	freeaddrinfo(res);
	return fd;
}

static int client_main(int argc, char **argv)
{
	struct replay_client_options opt = {.speed = 1, .quiet = 10 * 1000000LL,
					    .timeout = 0};
	const char *connect_spec = NULL, *file = NULL, *login = NULL, *upstream_tls = NULL,
		   *upstream_ca = NULL, *sni = NULL;
	struct proxy_hostport hp;
	struct replay_recording rec;
	struct replay_result res;
	unsigned long long v;
	unsigned session = 1;
	bool insecure = false;
	char err[4096], user[256] = "";
	const char *colon;
	imap_time_us us;
	int c, code, fd;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", client_options, NULL)) != -1) {
		switch (c) {
		case OPT_CONNECT:
			connect_spec = optarg;
			break;
		case OPT_SESSION:
			if (cli_number(optarg, 1, 1u << 30, &v) != 0)
				return cli_usage_error("replay client",
						       "--session takes a number from 1, not '%s'", optarg);
			session = (unsigned)v;
			break;
		case OPT_LOGIN:
			login = optarg;
			break;
		case OPT_UPSTREAM_TLS:
			upstream_tls = optarg;
			break;
		case OPT_UPSTREAM_CA:
			upstream_ca = optarg;
			break;
		case OPT_INSECURE:
			insecure = true;
			break;
		case OPT_SNI:
			sni = optarg;
			break;
		case OPT_SPEED:
			if (cli_seconds(optarg, 0.01, 10000, &us) != 0)
				return cli_usage_error("replay client",
						       "--speed takes a factor from 0.01 to 10000, not '%s'",
						       optarg);
			opt.speed = (double)us / 1e6;
			break;
		case OPT_NO_DELAY:
			opt.speed = 0;
			break;
		case OPT_STRICT:
			opt.strict = true;
			break;
		case OPT_TIMEOUT:
			if (cli_seconds(optarg, 1, 7 * 24 * 3600.0, &opt.timeout) != 0)
				return cli_usage_error("replay client",
						       "--timeout takes seconds from 1, not '%s'", optarg);
			break;
		case 'h':
			fputs(client_usage, stdout);
			return CLI_EXIT_OK;
		case ':':
		default:
			return cli_option_error("replay client", c, argv);
		}
	}
	if (optind < argc)
		file = argv[optind++];
	if (optind < argc)
		return cli_usage_error("replay client", "unexpected argument '%s'", argv[optind]);
	if (file == NULL)
		return cli_usage_error("replay client", "which recording? imaptap replay client FILE --connect HOST:PORT");
	if (connect_spec == NULL)
		return cli_usage_error("replay client", "--connect HOST:PORT is required");
	if (proxy_hostport_parse(connect_spec, &hp, err, sizeof(err)) < 0 || hp.port == 0)
		return cli_usage_error("replay client", "--connect %s", hp.port == 0 ? "needs a port" : err);
	if (login != NULL) {
		colon = strchr(login, ':');
		if (colon == NULL || colon == login || (size_t)(colon - login) >= sizeof(user))
			return cli_usage_error("replay client", "--login takes USER:PASS");
		memcpy(user, login, (size_t)(colon - login));
		user[colon - login] = '\0';
		opt.user = user;
		opt.pass = colon + 1;
	}
	if (upstream_tls == NULL)
		upstream_tls = hp.port == 993 ? "implicit" : "none";
	if (strcmp(upstream_tls, "none") != 0 && strcmp(upstream_tls, "implicit") != 0 &&
	    strcmp(upstream_tls, "starttls") != 0)
		return cli_usage_error("replay client", "--upstream-tls takes implicit, starttls or none, not '%s'",
				       upstream_tls);
	if (replay_recording_load(file, session, &rec, &code, err, sizeof(err)) != 0) {
		cli_message("%s", err);
		return code == 2 ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
	}
	if (opt.timeout == 0) {
		imap_time_us len = opt.speed > 0 ? (imap_time_us)((double)recording_length(&rec) / opt.speed) : 0;

		opt.timeout = 2 * len + 30 * 1000000LL;
		if (opt.timeout < 60 * 1000000LL)
			opt.timeout = 60 * 1000000LL;
	}
	if (strcmp(upstream_tls, "none") != 0) {
		opt.tls = SSL_CTX_new(TLS_client_method());
		if (opt.tls == NULL) {
			replay_recording_free(&rec);
			return CLI_EXIT_RUNTIME;
		}
		SSL_CTX_set_min_proto_version(opt.tls, TLS1_2_VERSION);
		SSL_CTX_set_options(opt.tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_CTX_set_mode(opt.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (!insecure) {
			SSL_CTX_set_verify(opt.tls, SSL_VERIFY_PEER, NULL);
			SSL_CTX_set_default_verify_paths(opt.tls);
			if (upstream_ca != NULL && SSL_CTX_load_verify_locations(opt.tls, upstream_ca, NULL) != 1) {
				cli_message("--upstream-ca %s: cannot load it as PEM certificates", upstream_ca);
				SSL_CTX_free(opt.tls);
				replay_recording_free(&rec);
				return CLI_EXIT_RUNTIME;
			}
		}
		opt.implicit_tls = strcmp(upstream_tls, "implicit") == 0;
		opt.sni = sni != NULL ? sni : hp.host;
	}
	fd = connect_to(&hp);
	if (fd < 0) {
		SSL_CTX_free(opt.tls);
		replay_recording_free(&rec);
		return CLI_EXIT_RUNTIME;
	}
	signal(SIGPIPE, SIG_IGN);
	replay_client_fd(&rec, fd, &opt, &res);
	close(fd);
	cli_write_escaped(stderr, res.report, strlen(res.report), CAPTURE_ESCAPE_KEEP_NEWLINE);
	SSL_CTX_free(opt.tls);
	replay_recording_free(&rec);
	return res.code == 3 ? CLI_EXIT_RUNTIME : res.code == 1 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
}

int cli_replay_main(int argc, char **argv)
{
	struct serve_args a = {.listen = "127.0.0.1:0", .session = 1, .speed = 1,
			       .quiet = 10 * 1000000LL};
	struct replay_recording rec;
	struct replay_options opt;
	struct proxy_ca *ca = NULL;
	char err[4096], bound[64];
	unsigned port, served = 0;
	int code, lfd, rc, worst = 0;
	pid_t child = -1;

	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return client_main(argc - 1, argv + 1);
	if (argc < 2 || strcmp(argv[1], "serve") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
			fputs(serve_usage, stdout);
			fputs("\n", stdout);
			fputs(client_usage, stdout);
			return CLI_EXIT_OK;
		}
		return cli_usage_error("replay", "%s: replay takes 'serve' or 'client' (imaptap replay serve FILE)",
				       argc >= 2 ? argv[1] : "nothing");
	}
	rc = parse_serve(argc - 1, argv + 1, &a);
	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (replay_recording_load(a.file, a.session, &rec, &code, err, sizeof(err)) != 0) {
		cli_message("%s", err);
		return code == 2 ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
	}
	opt = (struct replay_options){
		.speed = a.speed,
		.timeout = a.timeout,
		.quiet = a.quiet,
		.ignore = a.ignore,
		.ignore_count = a.ignore_count,
		.segment = a.segment,
	};
	if (opt.timeout == 0) {
		imap_time_us len = a.speed > 0 ? (imap_time_us)((double)recording_length(&rec) / a.speed)
					      : 0;

		opt.timeout = 2 * len + 30 * 1000000LL;
		if (opt.timeout < 60 * 1000000LL)
			opt.timeout = 60 * 1000000LL;
	}
	if (a.client_tls != NULL && strcmp(a.client_tls, "none") != 0) {
		opt.tls = tls_context(&a, &ca);
		opt.implicit_tls = strcmp(a.client_tls, "implicit") == 0;
		if (opt.tls == NULL) {
			replay_recording_free(&rec);
			return CLI_EXIT_RUNTIME;
		}
	}
	lfd = listen_on(a.listen, bound, sizeof(bound), &port);
	if (lfd < 0) {
		replay_recording_free(&rec);
		SSL_CTX_free(opt.tls);
		proxy_ca_free(&ca);
		return lfd == -2 ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
	}
	if (a.port_file != NULL && cli_write_port_file(a.port_file, port) != 0) {
		cli_message("cannot write the port file %s: %s", a.port_file, strerror(errno));
		close(lfd);
		replay_recording_free(&rec);
		return CLI_EXIT_RUNTIME;
	}
	{
		char mode[32], how[48] = "";

		/* a CI log says how the bytes were cut */
		if (a.segment.mode != IMAP_SPLIT_NONE) {
			imap_split_describe(&a.segment, mode, sizeof(mode));
			snprintf(how, sizeof(how), ", --segment %s", mode);
		}
		cli_message("replaying session %u of %s (%zu units, %.3f s%s) on %s", a.session, a.file,
			    rec.count, (double)recording_length(&rec) / 1e6, how, bound);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	if (a.command != NULL) {
		char portstr[16];

		snprintf(portstr, sizeof(portstr), "%u", port);
		child = fork();
		if (child == 0) {
			close(lfd);
			setenv("IMAPTAP_PORT", portstr, 1);
			execvp(a.command[0], a.command);
			cli_message("cannot run %s: %s", a.command[0], strerror(errno));
			_exit(127);
		}
		if (child < 0) {
			cli_message("cannot run %s: %s", a.command[0], strerror(errno));
			close(lfd);
			replay_recording_free(&rec);
			return CLI_EXIT_RUNTIME;
		}
	}
	while (!stopping) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		int status;

		if (child > 0 && waitpid(child, &status, WNOHANG) == child) {
			int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

			cli_message("%s exited with %d", a.command[0], exit_code);
			child = -1;
			if (exit_code != 0 && worst < 1)
				worst = 1;
			if (served == 0) {
				cli_message("%s never connected to IMAPTAP_PORT: nothing was replayed",
					    a.command[0]);
				worst = 1;
			}
			break;
		}
		if (poll(&p, 1, 100) <= 0)
			continue;
		rc = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (rc < 0)
			continue;
		code = serve_one(rc, &rec, &opt, ++served);
		if (code > worst)
			worst = code;
		if (!a.loop && a.command == NULL)
			break;
	}
	if (child > 0) { /* interrupted: the command goes too */
		kill(child, SIGTERM);
		waitpid(child, NULL, 0);
	}
	close(lfd);
	replay_recording_free(&rec);
	for (size_t i = 0; i < a.ignore_count; i++)
		regfree(&a.ignore[i]);
	SSL_CTX_free(opt.tls);
	proxy_ca_free(&ca);
	return worst == 3 ? CLI_EXIT_RUNTIME : worst == 1 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
}
