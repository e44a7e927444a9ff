#!/usr/bin/env python3
"""A private Cyrus IMAP server on loopback, for tests and demos: a second
real IMAP server beside Dovecot (tests/lib/dovecot.py), with CONDSTORE,
QRESYNC, COMPRESS=DEFLATE and IDLE (through its idled).

Everything (imapd.conf, cyrus.conf, the SASL password database, mail
spool, sockets, the TLS key) lives under a fresh temporary directory;
listening ports are picked per run.  Usable as a context manager:

    with Cyrus(users={"alice": "secret"}, ssl_cert=crt, ssl_key=key) as cy:
        m = imaplib.IMAP4("127.0.0.1", cy.port)     # STARTTLS offered
        m.starttls(ssl_context=ctx)
        m.login("alice", "secret")
        cy.tls_port                                 # implicit TLS (imaps)
        cy.deliver("alice", b"Subject: hi\\r\\n\\r\\nhello\\r\\n")  # LMTP

or from the command line, in the foreground until SIGTERM/SIGINT:

    python3 tests/lib/cyrus.py --users alice:secret --port-file F

What it needs.  cyrus-common (master, lmtpd, the libraries, and the
`cyrus` system user its postinst creates) and sasl2-bin (saslpasswd2) are
ordinary packages (PEER_PACKAGES in scripts/lib/deps.sh).  imapd and
idled are in cyrus-imapd, which Debian marks as conflicting with every
other imap-server, dovecot-imapd included, so it cannot be installed
beside Dovecot.  Its .deb, of exactly the installed cyrus-common version,
is fetched once with `apt-get download` into a cache directory
($IMAPTAP_CACHE, default ~/.cache/imaptap) and unpacked with `dpkg-deb -x`
into each server's own directory; nothing is installed system-wide.  Set
CYRUS_IMAPD_DIR to a directory holding imapd and idled to skip that (an
installed cyrus-imapd, /usr/lib/cyrus/bin, is used when present).

Started as root, master binds the ports and then runs as the `cyrus`
user, so the directory is chowned to it and the certificate and key are
copied in.  Cyrus logs only through syslog(3); with no syslog daemon there
is no server log, only master's own stderr (see log_tail()) and the
server's answers.
"""

import argparse
import fcntl
import glob
import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procs  # noqa: E402
from procs import free_port  # noqa: E402,F401

CYRUS_BIN = os.environ.get("CYRUS_BIN", "/usr/lib/cyrus/bin")
SASLPASSWD2 = os.environ.get("SASLPASSWD2", "/usr/sbin/saslpasswd2")
CYRUS_USER = "cyrus"
SERVERNAME = "imaptap-cyrus.test"
# sockaddr_un.sun_path holds 108 bytes; Cyrus puts idle.<pid> sockets there.
_SUN_PATH_MAX = 100


class CyrusError(RuntimeError):
    pass






# Reads its stdin, a pipe whose write end only the test process holds, until
# EOF, that is until the test process has gone (killed or not), then ends
# master's process group.  stop() kills the watchdog first.
_WATCHDOG = r"""
import os, signal, sys, time
pgid = int(sys.argv[1])
try:
    while sys.stdin.buffer.read(4096):
        pass
except Exception:
    pass
try:
    os.killpg(pgid, signal.SIGTERM)
    for _ in range(100):
        time.sleep(0.05)
        os.killpg(pgid, 0)
    os.killpg(pgid, signal.SIGKILL)
except OSError:
    pass
"""




def _dpkg_version(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    status, _, version = r.stdout.partition("\t")
    return version if status == "install ok installed" else None


def cache_dir():
    d = os.environ.get("IMAPTAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "imaptap")
    os.makedirs(d, exist_ok=True)
    return d


def cyrus_imapd_deb():
    """The path of the cyrus-imapd .deb matching the installed cyrus-common,
    fetched with apt-get download on first use (under a lock, so parallel
    tests fetch it once)."""
    version = _dpkg_version("cyrus-common")
    if version is None:
        raise CyrusError(
            "cyrus-common is not installed: scripts/test installs it (or: "
            "apt-get install --no-install-recommends cyrus-common sasl2-bin dma)")
    d = cache_dir()
    safe = re.sub(r"[^A-Za-z0-9.+~-]", "_", version)
    deb = os.path.join(d, "cyrus-imapd_%s.deb" % safe)
    if os.path.exists(deb):
        return deb
    with open(os.path.join(d, "cyrus-imapd.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(deb):
            return deb
        tmp = tempfile.mkdtemp(prefix="download-", dir=d)
        try:
            r = subprocess.run(["apt-get", "download", "-q",
                                "cyrus-imapd=%s" % version],
                               cwd=tmp, capture_output=True, text=True,
                               timeout=300)
            got = glob.glob(os.path.join(tmp, "*.deb"))
            if r.returncode != 0 or len(got) != 1:
                raise CyrusError(
                    "could not fetch cyrus-imapd %s with apt-get download "
                    "(exit %s): %s\nIts version must equal cyrus-common's; "
                    "after `apt-get update`, `apt-get install --only-upgrade "
                    "cyrus-common` brings both to the archive's version."
                    % (version, r.returncode, (r.stderr or r.stdout).strip()))
            os.replace(got[0], deb)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return deb


def _tcp_listeners(port):
    """Socket inodes listening on TCP port (any address), from /proc/net."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            pass
    return inodes


def _socket_inodes(pid):
    """The socket inodes process pid holds open."""
    inodes = set()
    d = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


class Cyrus(procs.PrivateServer):
    """A private Cyrus IMAP instance (master with a private imapd.conf and
    cyrus.conf).

    users     dict name -> password (in a private sasldb, SASL PLAIN/LOGIN);
              each INBOX is created at the first login or delivery
    ssl_cert, ssl_key
              PEM file paths: STARTTLS on the plain port and an implicit-TLS
              listener (tls_port); without them plain IMAP only
    workdir   use this directory instead of a fresh temporary one
    keep      leave the directory behind after stop() (for debugging)
    extra_conf  imapd.conf lines, appended; an option named there replaces
              the fixture's own (Cyrus refuses an option given twice)
    auth_mechanisms  sasl_mech_list
    """

    def __init__(self, users=None, ssl_cert=None, ssl_key=None, workdir=None,
                 keep=False, extra_conf="", host="127.0.0.1",
                 auth_mechanisms="PLAIN LOGIN"):
        self.users = dict(users if users is not None else {"alice": "secret"})
        for name, pw in self.users.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
                raise ValueError("user names are lower-case letters, digits, "
                                 "'_' and '-': %r" % name)
            if "\n" in pw or "\r" in pw or not pw:
                raise ValueError("bad password for %r" % name)
        if bool(ssl_cert) != bool(ssl_key):
            raise ValueError("ssl_cert and ssl_key go together")
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.host = host
        self.keep = keep
        self.extra_conf = extra_conf
        self.auth_mechanisms = auth_mechanisms
        self._own_dir = workdir is None
        self.dir = workdir
        self.port = None
        self.tls_port = None
        self.proc = None
        self._watchdog = None
        self.greeting = None
        self.version = None           # e.g. "3.6.1-Debian-3.6.1-4+deb12u5"
        self.package_version = None   # e.g. "3.6.1-4+deb12u5"
        self.startup_seconds = None

    @property
    def tls(self):
        return bool(self.ssl_cert)

    # ----- paths -------------------------------------------------------
    @property
    def imapd_conf(self):
        return os.path.join(self.dir, "imapd.conf")

    @property
    def cyrus_conf(self):
        return os.path.join(self.dir, "cyrus.conf")

    @property
    def config_dir(self):
        return os.path.join(self.dir, "config")

    @property
    def lmtp_socket(self):
        return os.path.join(self.config_dir, "socket", "lmtp")

    @property
    def out_path(self):
        return os.path.join(self.dir, "master.out")

    # ----- setup -------------------------------------------------------
    def _find_binaries(self):
        """(master, ctl_cyrusdb, lmtpd, imapd, idled) paths; unpacks
        cyrus-imapd into the directory when it is not installed."""
        master = os.path.join(CYRUS_BIN, "master")
        if not os.access(master, os.X_OK):
            raise CyrusError(
                "%s not found: scripts/test installs cyrus-common (or: "
                "apt-get install --no-install-recommends cyrus-common "
                "sasl2-bin dma)" % master)
        if not os.access(SASLPASSWD2, os.X_OK):
            raise CyrusError("%s not found: apt-get install sasl2-bin"
                             % SASLPASSWD2)
        imapd_dir = os.environ.get("CYRUS_IMAPD_DIR")
        if not imapd_dir:
            if _dpkg_version("cyrus-imapd") is not None:
                imapd_dir = CYRUS_BIN
            else:
                deb = cyrus_imapd_deb()
                pkg = os.path.join(self.dir, "pkg")
                r = subprocess.run(["dpkg-deb", "-x", deb, pkg],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    raise CyrusError("dpkg-deb -x %s failed: %s"
                                     % (deb, r.stderr.strip()))
                imapd_dir = os.path.join(pkg, "usr", "lib", "cyrus", "bin")
        for name in ("imapd", "idled"):
            if not os.access(os.path.join(imapd_dir, name), os.X_OK):
                raise CyrusError("no %s in %s" % (name, imapd_dir))
        return (master, os.path.join(CYRUS_BIN, "ctl_cyrusdb"),
                os.path.join(CYRUS_BIN, "lmtpd"),
                os.path.join(imapd_dir, "imapd"),
                os.path.join(imapd_dir, "idled"))

    def _prepare(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="imaptap-cyrus-")
        self.dir = os.path.abspath(self.dir)
        idle_sock = os.path.join(self.config_dir, "socket", "idle.4194304")
        if len(idle_sock) > _SUN_PATH_MAX:
            raise CyrusError("directory path too long for Cyrus's unix "
                             "sockets (%d > %d bytes): %s"
                             % (len(idle_sock), _SUN_PATH_MAX, self.dir))
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for sub in ("config", "config/socket", "spool", "tmp", "sieve", "tls"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.version_info()
        self._bins = self._find_binaries()
        sasldb = os.path.join(self.dir, "sasldb2")
        if os.path.exists(sasldb):
            os.unlink(sasldb)
        for name, pw in self.users.items():
            r = subprocess.run([SASLPASSWD2, "-f", sasldb, "-u", SERVERNAME,
                                "-c", "-p", name], input=pw + "\n",
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise CyrusError("saslpasswd2 for %s failed (exit %d): %s"
                                 % (name, r.returncode, r.stderr.strip()))
        if self.tls:
            for src, dst in ((self.ssl_cert, "server.crt"),
                             (self.ssl_key, "server.key")):
                shutil.copyfile(src, os.path.join(self.dir, "tls", dst))
            os.chmod(os.path.join(self.dir, "tls", "server.key"), 0o600)
        self._write_conf()
        if os.geteuid() == 0:
            # master drops root for the cyrus user; its files must be its own
            try:
                pw = pwd.getpwnam(CYRUS_USER)
            except KeyError:
                raise CyrusError("no system user %r: cyrus-common's postinst "
                                 "creates it (reinstall cyrus-common)"
                                 % CYRUS_USER)
            for root, dirs, files in os.walk(self.dir):
                if root == os.path.join(self.dir, "pkg") or \
                        root.startswith(os.path.join(self.dir, "pkg") + "/"):
                    continue
                os.chown(root, pw.pw_uid, pw.pw_gid)
                for f in files:
                    os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)

    def _write_conf(self):
        T = self.dir
        conf = [
            "configdirectory: %s/config" % T,
            "defaultpartition: default",
            "partition-default: %s/spool" % T,
            "temp_path: %s/tmp" % T,
            "sievedir: %s/sieve" % T,
            "servername: %s" % SERVERNAME,
            "sasl_pwcheck_method: auxprop",
            "sasl_auxprop_plugin: sasldb",
            "sasl_sasldb_path: %s/sasldb2" % T,
            "sasl_mech_list: %s" % self.auth_mechanisms,
            "allowplaintext: yes",
            "unixhierarchysep: yes",
            "autocreate_quota: 0",
            "autocreate_post: 1",
            "lmtp_downcase_rcpt: yes",
            "failedloginpause: 0",      # default 3 s after a failed login
        ]
        if self.tls:
            conf += [
                "tls_server_cert: %s/tls/server.crt" % T,
                "tls_server_key: %s/tls/server.key" % T,
            ]
        # Cyrus refuses an option given twice: extra_conf replaces ours.
        extra_keys = {line.split(":", 1)[0].strip()
                      for line in self.extra_conf.splitlines()
                      if ":" in line and not line.lstrip().startswith("#")}
        conf = [c for c in conf if c.split(":", 1)[0] not in extra_keys]
        with open(self.imapd_conf, "w") as f:
            f.write("\n".join(conf) + "\n" + self.extra_conf)
        master, ctl_cyrusdb, lmtpd, imapd, idled = self._bins
        C = "-C %s" % self.imapd_conf   # master does not pass its -C on
        services = [
            '  imap cmd="%s %s" listen="%s:%d" prefork=0'
            % (imapd, C, self.host, self.port),
            '  lmtpunix cmd="%s %s" listen="%s" prefork=0'
            % (lmtpd, C, self.lmtp_socket),
        ]
        if self.tls:
            services.append('  imaps cmd="%s -s %s" listen="%s:%d" prefork=0'
                            % (imapd, C, self.host, self.tls_port))
        text = "\n".join(
            ["START {",
             '  recover cmd="%s -r %s"' % (ctl_cyrusdb, C),
             "}",
             "SERVICES {"] + services +
            ["}",
             "EVENTS {",
             "}",
             "DAEMON {",
             '  idled cmd="%s %s"' % (idled, C),
             "}"]) + "\n"
        with open(self.cyrus_conf, "w") as f:
            f.write(text)

    def version_info(self):
        """Fill in version (master -V) and package_version (dpkg)."""
        self.package_version = _dpkg_version("cyrus-common")
        try:
            r = subprocess.run([os.path.join(CYRUS_BIN, "master"), "-V"],
                               capture_output=True, text=True, timeout=10)
            m = re.search(r"cyrus-imapd (\S+)", r.stdout + r.stderr)
            self.version = m.group(1) if m else None
        except OSError:
            self.version = None
        return self.version

    # ----- lifecycle ---------------------------------------------------
    def start(self, timeout=20.0):
        last_err = None
        for _attempt in range(3):
            t0 = time.monotonic()
            self.port = free_port(self.host)
            self.tls_port = free_port(self.host) if self.tls else None
            self._prepare()
            with open(self.out_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [self._bins[0], "-C", self.imapd_conf, "-M",
                     self.cyrus_conf, "-p", os.path.join(self.dir, "master.pid"),
                     "-D"],
                    stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=procs.die_with_parent)
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(self.proc.pid)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            procs.RUNNING.add(self)
            try:
                self._wait_ready(timeout)
                self.startup_seconds = time.monotonic() - t0
                return self
            except CyrusError as e:
                last_err = e
                self._kill()
                # A port picked moments ago may have been taken meanwhile:
                # try again with fresh ones; anything else is final.
                if "in use" not in str(e):
                    break
        raise last_err

    def _read_greeting(self, port, deadline):
        s = socket.create_connection((self.host, port), timeout=2)
        try:
            s.settimeout(max(0.5, deadline - time.monotonic()))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            s.close()

    def _wait_listening(self, deadline):
        """Wait until master holds the listening sockets of our ports.  When
        a bind fails master only says so to syslog and goes on without that
        service, so a port someone else listens on is found out here."""
        ports = [p for p in (self.port, self.tls_port) if p]
        foreign_since = None
        while True:
            if self.proc.poll() is not None:
                raise CyrusError(
                    "cyrus master exited with status %s during start\n%s"
                    % (self.proc.returncode, self._failure_text()))
            mine = _socket_inodes(self.proc.pid)
            missing = [p for p in ports if not (_tcp_listeners(p) & mine)]
            if not missing:
                return
            if any(_tcp_listeners(p) - mine for p in missing):
                foreign_since = foreign_since or time.monotonic()
                if time.monotonic() - foreign_since > 1.0:
                    raise CyrusError("port %s already in use by another "
                                     "process" % missing)
            if time.monotonic() > deadline:
                raise CyrusError("cyrus master does not listen on %s:%s "
                                 "within the time limit\n%s"
                                 % (self.host, missing, self._failure_text()))
            time.sleep(0.02)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        self._wait_listening(deadline)
        err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CyrusError(
                    "cyrus master exited with status %s during start\n%s"
                    % (self.proc.returncode, self._failure_text()))
            try:
                data = self._read_greeting(self.port, deadline)
            except OSError as e:
                err = e
                time.sleep(0.05)
                continue
            if not data.startswith(b"* OK"):
                # e.g. "* BYE Fatal error: ..." from a misconfigured imapd
                raise CyrusError("unexpected greeting %r\n%s"
                                 % (data[:300], self._failure_text()))
            self.greeting = data.split(b"\r\n")[0]
            return
        raise CyrusError("cyrus did not greet on %s:%s within %.0f s (%s)\n%s"
                         % (self.host, self.port, timeout, err,
                            self._failure_text()))

    def _failure_text(self):
        t = self.log_tail()
        parts = ["--- master.out (Cyrus logs to syslog only) ---\n%s"
                 % (t if t.strip() else "(empty)")]
        # master exits 78 (EX_CONFIG) without a word on a bad imapd.conf;
        # cyr_info reads the file the same way and says what is wrong.
        try:
            r = subprocess.run([os.path.join(CYRUS_BIN, "cyr_info"), "-C",
                                self.imapd_conf, "-M", self.cyrus_conf,
                                "conf-lint"],
                               capture_output=True, text=True, timeout=10)
            lint = (r.stdout + r.stderr).strip()
            parts.append("--- cyr_info conf-lint (exit %d) ---\n%s"
                         % (r.returncode, lint or "(nothing)"))
        except (OSError, subprocess.TimeoutExpired) as e:
            parts.append("--- cyr_info conf-lint: %s" % e)
        return "\n".join(parts)

    def _kill(self):
        if self._watchdog is not None:
            if self._watchdog.poll() is None:
                self._watchdog.kill()
            self._watchdog.wait()
            try:
                self._watchdog.stdin.close()
            except OSError:
                pass
            self._watchdog = None
        if self.proc is None:
            return None
        return procs.stop_group(self.proc)

    # ----- mail --------------------------------------------------------
    def deliver(self, user, message, sender="sender@example.org"):
        """Deliver message (bytes, CRLF lines) into user's INBOX through
        LMTP on the private unix socket, as an MTA would.  (Cyrus would
        create a mailbox for any name; only users of this server go.)"""
        if user not in self.users:
            raise ValueError("no such user on this server: %r" % user)
        lmtp = smtplib.LMTP(self.lmtp_socket)
        try:
            refused = lmtp.sendmail(sender, [user], message)
        except smtplib.SMTPException as e:
            raise CyrusError("LMTP delivery to %s failed: %s" % (user, e))
        finally:
            try:
                lmtp.quit()
            except smtplib.SMTPException:
                pass
        if refused:
            raise CyrusError("LMTP refused %s: %r" % (user, refused))

    def append(self, user, message, mailbox="INBOX", flags=None):
        """APPEND message into user's mailbox over IMAP, logged in as user;
        returns the server's answer data."""
        m = imaplib.IMAP4(self.host, self.port)
        try:
            m.login(user, self.users[user])
            typ, data = m.append(mailbox, flags, None, message)
            if typ != "OK":
                raise CyrusError("APPEND for %s: %s %r" % (user, typ, data))
            return data
        finally:
            try:
                m.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    # ----- observation -------------------------------------------------
    def log_text(self):
        try:
            with open(self.out_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Run a private Cyrus IMAP on loopback until SIGTERM/SIGINT.")
    ap.add_argument("--users", action="append", default=[],
                    metavar="USER:PASS",
                    help="a user and password (repeatable; "
                         "default alice:secret)")
    ap.add_argument("--port-file", help="write the IMAP port and a newline")
    ap.add_argument("--dir", help="use this directory (kept after exit)")
    ap.add_argument("--ssl-cert", help="PEM certificate; STARTTLS and imaps")
    ap.add_argument("--ssl-key", help="PEM private key for --ssl-cert")
    args = ap.parse_args(argv)

    users = procs.parse_users(ap, args.users)
    if bool(args.ssl_cert) != bool(args.ssl_key):
        ap.error("--ssl-cert and --ssl-key go together")
    cy = Cyrus(users=users, ssl_cert=args.ssl_cert, ssl_key=args.ssl_key,
               workdir=args.dir, keep=bool(args.dir))
    return procs.run_foreground(
        cy, "cyrus.py", CyrusError, args.port_file,
        lambda c: "Cyrus %s listening on %s:%d%s, users %s (dir %s, LMTP %s)"
        % (c.version, c.host, c.port, ", imaps %d" % c.tls_port if c.tls_port else "",
           ",".join(users), c.dir, c.lmtp_socket))

if __name__ == "__main__":
    sys.exit(main())
