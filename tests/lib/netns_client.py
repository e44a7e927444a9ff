#!/usr/bin/env python3
"""An IMAP client for tests/integration/test_transparent.py, run inside the
client's network namespace (`ip netns exec NS python3 netns_client.py ...`):
it connects to the server's own address, as a phone or a VM behind a
gateway would, and prints what happened as one JSON object on stdout.

    netns_client.py HOST PORT --tls implicit|starttls|none [--sni NAME]
                    [--ca FILE] [--user U --password P] [--idle]
    netns_client.py HOST PORT --raw BYTES_HEX    send bytes first, read to EOF
    netns_client.py HOST PORT --probe            connect and close (a port scan)
    netns_client.py HOST PORT --read             read what comes until EOF

With --sni the certificate must be valid for NAME (SNI NAME); without it
the chain is checked against --ca but no name is sent nor checked, and the
certificate's names are reported for the test to judge.
"""

import argparse
import imaplib
import json
import socket
import ssl
import sys
import time

from clients import read_to_eof


def cert_info(sock):
    c = sock.getpeercert()
    if not c:
        return None
    flat = lambda rdns: {k: v for rdn in rdns for k, v in rdn}  # noqa: E731
    return {"subject": flat(c.get("subject", ())), "issuer": flat(c.get("issuer", ())),
            "san": ["%s:%s" % kv for kv in c.get("subjectAltName", ())],
            "version": sock.version()}


class Client(imaplib.IMAP4):
    def __init__(self, host, port, ctx, sni, implicit, timeout):
        self.ctx, self.sni, self.implicit = ctx, sni, implicit
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        if self.implicit:
            sock = self.ctx.wrap_socket(sock, server_hostname=self.sni)
        return sock

    def starttls_sni(self):
        typ, dat = self._simple_command("STARTTLS")
        if typ != "OK":
            raise self.error("STARTTLS: %r" % dat)
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname=self.sni)
        self.file = self.sock.makefile("rb")
        self._tls_established = True
        self._get_capabilities()


def tls_context(ca, sni):
    ctx = ssl.create_default_context(cafile=ca)
    if not sni:
        ctx.check_hostname = False
    return ctx


def imap_session(args, out):
    ctx = tls_context(args.ca, args.sni) if args.tls != "none" else None
    m = Client(args.host, args.port, ctx, args.sni, args.tls == "implicit", args.timeout)
    out["greeting"] = m.welcome.decode(errors="replace")
    out["capabilities"] = list(m.capabilities)
    if args.tls == "starttls":
        m.starttls_sni()
        out["capabilities_after_starttls"] = list(m.capabilities)
    if args.tls != "none":
        out["cert"] = cert_info(m.sock)
    steps = out["steps"]
    steps.append(["LOGIN", m.login(args.user, args.password)[0]])
    steps.append(["SELECT", m.select("INBOX")[0]])
    if args.idle:
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        line = m.readline()
        steps.append(["IDLE", "+" if line.startswith(b"+") else line.decode(errors="replace")])
        time.sleep(0.2)
        m.send(b"DONE\r\n")
        while True:
            line = m.readline()
            if not line:
                steps.append(["DONE", "EOF"])
                break
            if line.startswith(tag + b" "):
                steps.append(["DONE", line.split()[1].decode(errors="replace")])
                break
    steps.append(["LOGOUT", m.logout()[0]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--tls", choices=("implicit", "starttls", "none"), default="none")
    ap.add_argument("--sni")
    ap.add_argument("--ca")
    ap.add_argument("--user", default="alice")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--idle", action="store_true")
    ap.add_argument("--raw", metavar="HEX")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--read", action="store_true")
    ap.add_argument("--timeout", type=float, default=15.0)
    args = ap.parse_args()
    out = {"ok": False, "steps": []}
    try:
        if args.probe or args.raw is not None or args.read:
            s = socket.create_connection((args.host, args.port), timeout=args.timeout)
            out["local"] = "%s:%d" % s.getsockname()[:2]
            if args.probe:
                s.close()
            else:
                if args.raw:
                    s.sendall(bytes.fromhex(args.raw))
                got, end = read_to_eof(s, args.timeout)
                out["received"] = got.decode("latin-1")
                out["end"] = end
                s.close()
        else:
            imap_session(args, out)
        out["ok"] = True
    except Exception as e:  # reported to the test, which judges
        out["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
