#!/usr/bin/env python3
"""A private Dovecot IMAP server on loopback, for tests and demos.

Everything (config, state, sockets, log, mail) lives under a fresh temporary
directory; listening ports are picked per run.  Usable as a context manager:

    with Dovecot(users={"alice": "secret"}, rawlog=True) as dc:
        imaplib.IMAP4("127.0.0.1", dc.port).login("alice", "secret")
        sessions = dc.rawlog_sessions("alice")

or from the command line, in the foreground until SIGTERM/SIGINT:

    python3 tests/lib/dovecot.py --users alice:secret --port-file F

With rawlog=True Dovecot records every byte it received (*.in) and sent
(*.out) after login under $T/mail/<user>/dovecot.rawlog/, each line prefixed
with an epoch timestamp "SECONDS.USECONDS ".  read_rawlog() strips those
prefixes and gives back the exact byte stream.
"""

import argparse
import glob
import os
import pwd
import grp
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procs  # noqa: E402
from procs import free_port  # noqa: E402,F401

DOVECOT_BIN = os.environ.get("DOVECOT_BIN", "/usr/sbin/dovecot")

# "1712345678.123456 " at the start of every rawlog line (rawlog -t).
_RAWLOG_TS = re.compile(rb"\A[0-9]+\.[0-9]{6} ")
_RAWLOG_TS_PART = re.compile(rb"\A[0-9]*(?:\.[0-9]{0,6})?\Z")


class DovecotError(RuntimeError):
    pass








def strip_rawlog_timestamps(data):
    """Remove the "SECONDS.USECONDS " prefix that rawlog -t writes at the
    start of every line.  Lines are split after each LF; every line start
    carries exactly one prefix."""
    out = []
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if last and _RAWLOG_TS_PART.match(line):
            break       # nothing, or a prefix still being written
        m = _RAWLOG_TS.match(line)
        if m is None:
            raise DovecotError("rawlog line without timestamp prefix: %r"
                               % line[:80])
        out.append(line[m.end():])
        if not last:
            out.append(b"\n")
    return b"".join(out)


class Dovecot(procs.PrivateServer):
    """A private Dovecot instance.

    users     dict name -> password (stored as {PLAIN} in a passwd-file)
    rawlog    record post-login traffic per session (see rawlog_sessions)
    ssl       False for ssl=no; True for ssl=yes with ssl_cert/ssl_key
              (PEM file paths), which also opens an implicit-TLS listener
              (imaps_port) and offers STARTTLS on the plain one
    workdir   use this directory instead of a fresh temporary one
    keep      leave the directory behind after stop() (for debugging)
    extra_conf  text appended to dovecot.conf
    port, imaps_port  fixed ports instead of free ones picked per run
    netns     run inside this network namespace (tests/lib/netns.py),
              where host is one of the namespace's addresses
    """

    def __init__(self, users=None, rawlog=False, ssl=False, ssl_cert=None,
                 ssl_key=None, workdir=None, keep=False, extra_conf="",
                 host="127.0.0.1", auth_mechanisms="plain login", messages=0,
                 port=None, imaps_port=None, netns=None):
        self.messages = messages
        self.fixed_ports = (port, imaps_port)
        self.netns = netns
        self.users = dict(users if users is not None else {"alice": "secret"})
        for name, pw in self.users.items():
            if not name or ":" in name or "\n" in name or "\n" in pw:
                raise ValueError("bad user name or password: %r" % name)
        self.rawlog = rawlog
        self.auth_mechanisms = auth_mechanisms
        self.ssl = ssl
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        if ssl and not (ssl_cert and ssl_key):
            raise ValueError("ssl=True needs ssl_cert and ssl_key")
        self.host = host
        self.keep = keep
        self.extra_conf = extra_conf
        self._own_dir = workdir is None
        self.dir = workdir
        self.port = None
        self.imaps_port = None
        self.proc = None
        self.greeting = None

    # ----- paths -------------------------------------------------------
    @property
    def conf_path(self):
        return os.path.join(self.dir, "dovecot.conf")

    @property
    def log_path(self):
        return os.path.join(self.dir, "dovecot.log")

    def mail_dir(self, user):
        return os.path.join(self.dir, "mail", user)

    def rawlog_dir(self, user):
        return os.path.join(self.mail_dir(user), "dovecot.rawlog")

    # ----- setup -------------------------------------------------------
    def _prepare(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="imaptap-dovecot-")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
        for user in self.users:
            os.makedirs(self.mail_dir(user), exist_ok=True)
            if self.rawlog:
                os.makedirs(self.rawlog_dir(user), exist_ok=True)
            self._write_messages(user)
        for root, dirs, files in os.walk(os.path.join(self.dir, "mail")):
            os.chown(root, uid, gid)
            for f in files:
                os.chown(os.path.join(root, f), uid, gid)
        users_path = os.path.join(self.dir, "users")
        with open(users_path, "w") as f:
            for name, pw in self.users.items():
                f.write("%s:{PLAIN}%s\n" % (name, pw))
        os.chmod(users_path, 0o644)
        self._write_conf()

    def _write_messages(self, user):
        """self.messages small messages in the user's INBOX, written as
        maildir files: far quicker than as many APPENDs."""
        if self.messages <= 0:
            return
        new = os.path.join(self.mail_dir(user), "new")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(self.mail_dir(user), sub), exist_ok=True)
        for i in range(1, self.messages + 1):
            with open(os.path.join(new, "%d.M%dP1.imaptap" % (1700000000 + i, i)), "w") as f:
                f.write("From: sender%d@example.org\r\nTo: %s@example.org\r\n"
                        "Subject: message %d\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                        "Message-ID: <%d@example.org>\r\n\r\nBody of message %d.\r\n"
                        % (i, user, i, i, i))

    def _write_conf(self):
        T = self.dir
        lines = [
            "base_dir = %s/run" % T,
            "state_dir = %s/state" % T,
            "protocols = imap",
            "listen = %s" % self.host,
            "disable_plaintext_auth = no",
            "auth_mechanisms = %s" % self.auth_mechanisms,
            "log_path = %s" % self.log_path,
            "default_login_user = dovenull",
            "default_internal_user = dovecot",
            "default_internal_group = dovecot",
            "first_valid_uid = 1",
            "mail_location = maildir:%s/mail/%%u" % T,
        ]
        if self.ssl:
            lines += [
                "ssl = yes",
                "ssl_cert = <%s" % self.ssl_cert,
                "ssl_key = <%s" % self.ssl_key,
            ]
        else:
            lines.append("ssl = no")
        lines += [
            "passdb {",
            "  driver = passwd-file",
            "  args = scheme=PLAIN username_format=%%u %s/users" % T,
            "}",
            "userdb {",
            "  driver = static",
            "  args = uid=nobody gid=nogroup home=%s/mail/%%u" % T,
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = %s" % self.host,
            "    port = %d" % self.port,
            "  }",
        ]
        if self.ssl:
            lines += [
                "  inet_listener imaps {",
                "    address = %s" % self.host,
                "    port = %d" % self.imaps_port,
                "    ssl = yes",
                "  }",
            ]
        lines += [
            "  chroot =",
            "}",
            "service anvil {",
            "  chroot =",
            "}",
        ]
        if self.rawlog:
            lines += [
                "service imap {",
                "  executable = imap postlogin",
                "}",
                "service postlogin {",
                "  executable = script-login -d rawlog -t",
                "  unix_listener postlogin {",
                "  }",
                "}",
            ]
        text = "\n".join(lines) + "\n" + self.extra_conf
        with open(self.conf_path, "w") as f:
            f.write(text)

    # ----- lifecycle ---------------------------------------------------
    def start(self, timeout=15.0):
        last_err = None
        for _attempt in range(3):
            self.port = self.fixed_ports[0] or self._free_port()
            self.imaps_port = (self.fixed_ports[1] or self._free_port()) if self.ssl else None
            self._prepare()
            try:
                open(self.log_path, "a").close()
                self._log_offset = os.path.getsize(self.log_path)
            except OSError:
                self._log_offset = 0
            with open(os.path.join(self.dir, "dovecot.stdout"), "ab") as out:
                self.proc = subprocess.Popen(
                    self._prefix() + [DOVECOT_BIN, "-F", "-c", self.conf_path],
                    stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=procs.die_with_parent)
            procs.RUNNING.add(self)
            try:
                self._wait_ready(timeout)
                return self
            except DovecotError as e:
                last_err = e
                self._kill()
                # A port picked moments ago may have been taken meanwhile:
                # try again with fresh ones; anything else is final.
                if "in use" not in str(e) or all(self.fixed_ports):
                    break
        raise last_err

    def _prefix(self):
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _free_port(self):
        if self.netns:
            import netns
            return netns.in_netns(self.netns, lambda: free_port(self.host))
        return free_port(self.host)

    def _connect(self, port, timeout):
        if self.netns:
            import netns
            return netns.connect(self.netns, self.host, port, timeout)
        return socket.create_connection((self.host, port), timeout=timeout)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DovecotError(
                    "dovecot exited with status %s during start\n%s"
                    % (self.proc.returncode, self._failure_text()))
            try:
                s = self._connect(self.port, timeout=2)
            except OSError as e:
                err = e
                time.sleep(0.05)
                continue
            try:
                s.settimeout(max(0.5, deadline - time.monotonic()))
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError as e:
                err = e
                data = b""
            finally:
                s.close()
            if data.startswith(b"* OK"):
                self.greeting = data.split(b"\r\n")[0]
                return
            err = "unexpected greeting %r" % data[:200]
            time.sleep(0.1)
        raise DovecotError("dovecot did not greet on %s:%s within %.0f s "
                           "(%s)\n%s" % (self.host, self.port, timeout, err,
                                         self._failure_text()))

    def _failure_text(self):
        parts = []
        for name in ("dovecot.stdout",):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    t = f.read()[-4000:]
                if t.strip():
                    parts.append("--- %s ---\n%s" % (name, t))
        parts.append("--- dovecot.log (tail) ---\n%s" % self.log_tail())
        return "\n".join(parts)

    def _kill(self):
        if self.proc is None:
            return None
        return procs.stop_group(self.proc)

    # ----- observation -------------------------------------------------
    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def rawlog_files(self, user):
        """[(in_path, out_path)] per recorded session, oldest first."""
        d = self.rawlog_dir(user)
        ins = glob.glob(os.path.join(d, "*.in"))
        ins.sort(key=lambda p: (os.stat(p).st_ctime_ns, p))
        return [(p, p[:-3] + ".out") for p in ins]

    @staticmethod
    def read_rawlog(path):
        with open(path, "rb") as f:
            return strip_rawlog_timestamps(f.read())

    def rawlog_sessions(self, user):
        """[{'in': bytes, 'out': bytes, 'path': prefix}] per session, with
        the timestamp prefixes stripped."""
        res = []
        for pin, pout in self.rawlog_files(user):
            res.append({
                "in": self.read_rawlog(pin),
                "out": self.read_rawlog(pout) if os.path.exists(pout) else b"",
                "path": pin[:-3],
            })
        return res

    def wait_rawlog(self, user, count=1, out_suffix=None, timeout=10.0):
        """Wait until at least `count` sessions are recorded for `user` and
        (if given) the newest .out stream ends with `out_suffix`; return
        rawlog_sessions(user)."""
        deadline = time.monotonic() + timeout
        while True:
            sessions = self.rawlog_sessions(user)
            if len(sessions) >= count and (
                    out_suffix is None or
                    sessions[-1]["out"].endswith(out_suffix)):
                return sessions
            if time.monotonic() > deadline:
                raise DovecotError(
                    "rawlog for %s: %d session(s), want %d%s\n%s"
                    % (user, len(sessions), count,
                       "" if out_suffix is None else
                       " ending with %r" % out_suffix, self.log_tail()))
            time.sleep(0.05)


    def wait_rawlog_session(self, user, predicate, timeout=10.0):
        """Wait until one recorded session of `user` satisfies
        predicate(session) (see rawlog_sessions); return it."""
        deadline = time.monotonic() + timeout
        while True:
            for sess in self.rawlog_sessions(user):
                if predicate(sess):
                    return sess
            if time.monotonic() > deadline:
                sessions = self.rawlog_sessions(user)
                raise DovecotError(
                    "no rawlog session of %s matches within %.0f s "
                    "(%d recorded; newest in=%r... out=...%r)\n%s"
                    % (user, timeout, len(sessions),
                       sessions[-1]["in"][:120] if sessions else b"",
                       sessions[-1]["out"][-120:] if sessions else b"",
                       self.log_tail()))
            time.sleep(0.05)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Run a private Dovecot on loopback until SIGTERM/SIGINT.")
    ap.add_argument("--users", action="append", default=[],
                    metavar="USER:PASS",
                    help="a user and password (repeatable; "
                         "default alice:secret)")
    ap.add_argument("--port-file", help="write the IMAP port and a newline")
    ap.add_argument("--rawlog", action="store_true",
                    help="record post-login traffic (mail/USER/dovecot.rawlog)")
    ap.add_argument("--dir", help="use this directory (kept after exit)")
    ap.add_argument("--ssl-cert", help="PEM certificate; turns on ssl=yes")
    ap.add_argument("--ssl-key", help="PEM private key for --ssl-cert")
    ap.add_argument("--messages", type=int, default=0, metavar="N",
                    help="start with N small messages in each user's INBOX")
    ap.add_argument("--extra-conf", metavar="FILE",
                    help="append FILE's settings to dovecot.conf (limits for a load)")
    args = ap.parse_args(argv)
    extra = ""
    if args.extra_conf:
        with open(args.extra_conf) as f:
            extra = f.read()

    users = procs.parse_users(ap, args.users)
    ssl = bool(args.ssl_cert or args.ssl_key)
    dc = Dovecot(users=users, rawlog=args.rawlog, ssl=ssl,
                 ssl_cert=args.ssl_cert, ssl_key=args.ssl_key,
                 workdir=args.dir, keep=bool(args.dir), messages=args.messages,
                 extra_conf=extra)
    return procs.run_foreground(
        dc, "dovecot.py", DovecotError, args.port_file,
        lambda d: "listening on %s:%d%s, users %s (dir %s)"
        % (d.host, d.port, ", imaps %d" % d.imaps_port if d.imaps_port else "",
           ",".join(users), d.dir))

if __name__ == "__main__":
    sys.exit(main())
