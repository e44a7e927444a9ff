/* Blocking TCP sockets for the commands that serve or reach one peer at a
 * time (the replay harness): a listener on a numeric or named address and
 * a connection to the first address of a name that answers. The proxy's
 * own sockets are libevent's. */
#ifndef NET_SOCKET_H
#define NET_SOCKET_H

#include <stddef.h>
#include <sys/socket.h>

#define NET_LISTEN_UNRESOLVED (-2)

/* Listens on host:port (port 0: any free one) with backlog. Returns the
 * socket, the address it is bound to in bound and its port in *port_r; or
 * -1 (the socket calls failed) or NET_LISTEN_UNRESOLVED (host is no
 * address) with err saying why. */
int net_listen_tcp(const char *host, unsigned port, int backlog, struct sockaddr_storage *bound,
		   unsigned *port_r, char *err, size_t errlen);

/* Connects to host:port, trying each of its addresses in turn. Returns the
 * connected socket, or -1 with err saying why (the last address's
 * error). */
int net_connect_tcp(const char *host, unsigned port, char *err, size_t errlen);

#endif
