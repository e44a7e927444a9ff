"""Network namespaces for tests that need real routing: a client, a
gateway and a server, each in a namespace of its own, joined by veth
pairs, with REDIRECT rules in the gateway (what `imaptap proxy
--transparent` sits behind, docs/transparent.md).

    with Gateway(redirect_ports=(993, 143), to_port=8993) as net:
        dc = Dovecot(host=net.SERVER, netns=net.server, port=143, imaps_port=993)
        px = net.popen(net.gateway, ["imaptap", "proxy", "--transparent", ...])
        net.run(net.client, ["python3", "client.py", net.SERVER, "993"])

    client ns  eth0 10.77.1.2/24, default via 10.77.1.1
      |  veth
    gateway ns cli0 10.77.1.1/24 (PREROUTING REDIRECT of the redirected
               ports to to_port), srv0 10.77.2.1/24, ip_forward on
      |  veth
    server ns  eth0 10.77.2.2/24, default via 10.77.2.1

The namespaces are named PREFIX-PID-{c,g,s} so that runs in parallel do not
meet; the veth pairs are made inside the gateway's namespace, so their
names clash with nothing. Everything is deleted on exit, also when a test
failed; namespaces left by a killed earlier run (their pid is gone) are
deleted at the start. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), iproute2
and iptables (or nft with redirect_with="nft").
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

PREFIX = "imaptap-t"
CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    pass


def requirements_problem():
    """None when namespaces can be made here, else what is missing (for a
    test's failure message)."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return ("%s is not installed: scripts/test installs it "
                    "(apt-get install iproute2 iptables)" % tool)
    name = "%s-%d-probe" % (PREFIX, os.getpid())
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "`ip netns add` failed (%s): the tests need CAP_SYS_ADMIN and CAP_NET_ADMIN" \
            % r.stderr.strip()
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return None


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetnsError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespace_pids(ns):
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def delete_namespace(ns):
    """Kill what still runs inside ns (only the tests' own processes can:
    the namespace is theirs) and delete it."""
    for _ in range(3):
        pids = namespace_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _ip("netns", "delete", ns, check=False)


def remove_stale(prefix=PREFIX):
    """Delete namespaces PREFIX-PID-* whose pid no longer runs (a killed
    earlier run)."""
    r = _ip("netns", "list", check=False)
    pat = re.compile(r"^%s-(\d+)-\w+" % re.escape(prefix))
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pat.match(name)
        if m and not _pid_alive(int(m.group(1))):
            delete_namespace(name)


def in_netns(ns, fn):
    """fn() run on a thread that joined network namespace ns; returns its
    result (or raises its exception). A socket made there stays in ns."""
    box = {}

    def body():
        try:
            fd = os.open("/run/netns/" + ns, os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "setns(%s): %s" % (ns, os.strerror(err)))
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, name="netns-" + ns)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def connect(ns, host, port, timeout=5.0):
    """A TCP connection to host:port made from inside namespace ns."""
    return in_netns(ns, lambda: socket.create_connection((host, port), timeout=timeout))


class Gateway:
    """Client, gateway and server namespaces (see the module's text)."""

    CLIENT = "10.77.1.2"
    GATEWAY = "10.77.1.1"           # the gateway's address on the client side
    GATEWAY_SERVER_SIDE = "10.77.2.1"
    SERVER = "10.77.2.2"
    CLIENT_IF = "cli0"              # the gateway's interface facing the client
    # the same over IPv6 (ipv6=True)
    CLIENT6 = "fd77:1::2"
    GATEWAY6 = "fd77:1::1"
    GATEWAY6_SERVER_SIDE = "fd77:2::1"
    SERVER6 = "fd77:2::2"

    def __init__(self, redirect_ports=(993, 143), to_port=8993, prefix=PREFIX,
                 redirect_with="iptables", ipv6=False):
        base = "%s-%d-%d" % (prefix, os.getpid(), id(self) % 10000)
        self.client = base + "-c"
        self.gateway = base + "-g"
        self.server = base + "-s"
        self.redirect_ports = tuple(redirect_ports)
        self.to_port = to_port
        self.prefix = prefix
        self.redirect_with = redirect_with
        self.ipv6 = ipv6
        self._made = []

    # ----- setup -------------------------------------------------------
    def start(self):
        remove_stale(self.prefix)
        try:
            for ns in (self.client, self.gateway, self.server):
                _ip("netns", "add", ns)
                self._made.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            g = self.gateway
            _ip("-n", g, "link", "add", self.CLIENT_IF, "type", "veth",
                "peer", "name", "eth0", "netns", self.client)
            _ip("-n", g, "link", "add", "srv0", "type", "veth",
                "peer", "name", "eth0", "netns", self.server)
            for ns, ifname, addr in ((self.client, "eth0", self.CLIENT),
                                     (g, self.CLIENT_IF, self.GATEWAY),
                                     (g, "srv0", self.GATEWAY_SERVER_SIDE),
                                     (self.server, "eth0", self.SERVER)):
                _ip("-n", ns, "addr", "add", addr + "/24", "dev", ifname)
                _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", self.client, "route", "add", "default", "via", self.GATEWAY)
            _ip("-n", self.server, "route", "add", "default", "via",
                self.GATEWAY_SERVER_SIDE)
            self.check_output(g, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            if self.ipv6:
                self._start_ipv6()
            self.redirect(self.redirect_ports, self.to_port)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_ipv6(self):
        g = self.gateway
        for ns, ifname, addr in ((self.client, "eth0", self.CLIENT6),
                                 (g, self.CLIENT_IF, self.GATEWAY6),
                                 (g, "srv0", self.GATEWAY6_SERVER_SIDE),
                                 (self.server, "eth0", self.SERVER6)):
            # nodad: usable at once, not after duplicate address detection
            _ip("-n", ns, "addr", "add", addr + "/64", "dev", ifname, "nodad")
        _ip("-n", self.client, "-6", "route", "add", "default", "via", self.GATEWAY6)
        _ip("-n", self.server, "-6", "route", "add", "default", "via",
            self.GATEWAY6_SERVER_SIDE)
        self.check_output(g, ["sh", "-c",
                              "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"])

    def redirect(self, ports, to_port):
        """PREROUTING REDIRECT of TCP to ports arriving on the client side
        of the gateway to to_port."""
        for port in ports:
            if self.redirect_with == "nft":
                self.check_output(self.gateway, ["nft", "-f", "-"], input=(
                    "table ip imaptap {\n"
                    "  chain prerouting {\n"
                    "    type nat hook prerouting priority dstnat; policy accept;\n"
                    "    iifname \"%s\" tcp dport %d redirect to :%d\n"
                    "  }\n}\n" % (self.CLIENT_IF, port, to_port)))
            else:
                for tool in ("iptables", "ip6tables") if self.ipv6 else ("iptables",):
                    self.check_output(self.gateway, [
                        tool, "-t", "nat", "-A", "PREROUTING", "-i", self.CLIENT_IF,
                        "-p", "tcp", "--dport", str(port), "-j", "REDIRECT",
                        "--to-ports", str(to_port)])

    def stop(self):
        for ns in reversed(self._made):
            delete_namespace(ns)
        self._made = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ----- running things inside --------------------------------------
    @staticmethod
    def argv(ns, argv):
        return ["ip", "netns", "exec", ns] + list(argv)

    def run(self, ns, argv, **kw):
        """subprocess.run of argv inside ns (keyword arguments passed on)."""
        return subprocess.run(self.argv(ns, argv), **kw)

    def check_output(self, ns, argv, input=None, timeout=30):
        r = self.run(ns, argv, input=input, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise NetnsError("in %s: %s: exit %d: %s" % (ns, " ".join(argv), r.returncode,
                                                        (r.stdout + r.stderr).strip()))
        return r.stdout

    def popen(self, ns, argv, **kw):
        """subprocess.Popen of argv inside ns (keyword arguments passed on)."""
        return subprocess.Popen(self.argv(ns, argv), **kw)

    def connect(self, ns, host, port, timeout=5.0):
        return connect(ns, host, port, timeout)

    def nat_rules(self):
        """The gateway's nat table as iptables-save (or nft) prints it."""
        if self.redirect_with == "nft":
            return self.check_output(self.gateway, ["nft", "list", "ruleset"])
        return self.check_output(self.gateway, ["iptables-save", "-t", "nat"])
