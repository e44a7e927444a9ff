#include "proxy/peer.h"

#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

bool proxy_peer_progress(int fd, uint64_t *acked_r, size_t *unsent_r)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked) ||
	    ioctl(fd, SIOCOUTQ, &outq) != 0)
		return false;
	*acked_r = ti.tcpi_bytes_acked;
	*unsent_r = outq > 0 ? (size_t)outq : 0;
	return true;
}
