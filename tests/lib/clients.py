"""IMAP clients for tests: a raw-socket client for exact byte sequences, an
imaplib client that records every byte it sends and receives, and test
messages."""

import base64
import imaplib
import os
import re
import socket
import struct
import subprocess
import tempfile
import time

CRLF = b"\r\n"
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def make_message(size, tag="imaptap"):
    """An RFC 5322 message of exactly `size` bytes, CRLF line endings only,
    7-bit, with a random body (so two messages never look alike)."""
    pad = ""
    while True:
        header = ("From: Alice <alice@example.org>\r\n"
                  "To: Bob <bob@example.org>\r\n"
                  "Subject: %s %s%s\r\n"
                  "Message-ID: <%s@imaptap.test>\r\n"
                  "\r\n" % (tag, size, pad, os.urandom(8).hex())).encode()
        if len(header) + 2 > size:
            raise ValueError("message size too small")
        body_len = size - len(header)
        if body_len % 78 != 1:
            break
        pad += "x"
    full, rest = divmod(body_len, 78)
    nchars = full * 76 + max(rest - 2, 0)
    text = base64.b64encode(os.urandom(nchars * 3 // 4 + 3))[:nchars]
    lines = [text[i:i + 76] for i in range(0, full * 76, 76)]
    if rest:
        lines.append(text[full * 76:])
    body = CRLF.join(lines) + CRLF
    msg = header + body
    assert len(msg) == size, (len(msg), size)
    return msg


def appenduid(response):
    """The UID from an APPEND response (imaplib's typ, data)."""
    typ, data = response
    if typ != "OK":
        raise AssertionError("APPEND failed: %r" % (response,))
    for item in data:
        m = _APPENDUID.search(item if isinstance(item, bytes) else b"")
        if m:
            return int(m.group(1))
    raise AssertionError("no APPENDUID in %r" % (data,))


class RecordingIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 that keeps every byte sent and received, in order,
    with a mark where the LOGIN command was sent."""

    def __init__(self, host, port, timeout=30):
        self.sent = bytearray()
        self.received = bytearray()
        self.login_sent_at = None     # (len(sent), len(received))
        super().__init__(host, port, timeout=timeout)

    def send(self, data):
        self.sent += data
        super().send(data)

    def read(self, size):
        data = super().read(size)
        self.received += data
        return data

    def readline(self):
        data = super().readline()
        self.received += data
        return data

    def login(self, user, password):
        self.login_sent_at = (len(self.sent), len(self.received))
        return super().login(user, password)

    def after_login(self):
        """(bytes sent after the LOGIN command, bytes received from the
        LOGIN response on)."""
        s0, r0 = self.login_sent_at
        # The LOGIN command itself is the first line sent after the mark.
        sent = bytes(self.sent[s0:])
        end = sent.index(CRLF) + 2
        return sent[end:], bytes(self.received[r0:])

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def logout_to_eof(self, tag=b"L999"):
        """LOGOUT by hand, reading everything up to the server's close
        (imaplib's logout() stops reading at the BYE).  Returns the lines."""
        self.send(tag + b" LOGOUT" + CRLF)
        lines = []
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
        self.shutdown()
        return lines

    def idle_done(self, tag=b"I001", wait=0.3):
        """IDLE by hand: send IDLE, wait for the continuation, hold `wait`
        seconds, send DONE, read to the tagged completion.  Returns the
        lines received."""
        self.send(tag + b" IDLE" + CRLF)
        lines = []
        while True:
            line = self.readline()
            if not line:
                raise EOFError("EOF waiting for IDLE continuation")
            lines.append(line)
            if line.startswith(b"+"):
                break
            if line.startswith(tag + b" "):
                raise AssertionError("IDLE completed early: %r" % line)
        time.sleep(wait)
        self.send(b"DONE" + CRLF)
        while True:
            line = self.readline()
            if not line:
                raise EOFError("EOF waiting for IDLE completion")
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines


class RawIMAP:
    """A client on a plain socket, for exact byte sequences.  Every byte
    sent and received is kept (self.sent, self.received)."""

    def __init__(self, port, host="127.0.0.1", timeout=20, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.sent = bytearray()
        self.received = bytearray()
        self.eof = False

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sent += data
        self.sock.sendall(data)

    def _fill(self, n=65536):
        chunk = self.sock.recv(n)
        if not chunk:
            self.eof = True
            raise EOFError("connection closed by peer")
        self.buf += chunk
        self.received += chunk
        return len(chunk)

    def readline(self):
        """One line including its CRLF (or LF)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_response(self):
        """One response: a line, with any literals it announces and the
        line text after them, joined as received."""
        out = bytearray()
        while True:
            line = self.readline()
            out += line
            m = _LITERAL_AT_END.search(line)
            if not m:
                return bytes(out)
            out += self.read_exact(int(m.group(1)))

    def read_greeting(self):
        return self.readline()

    def read_until_tagged(self, tag):
        """Responses up to and including the tagged one for tag (bytes)."""
        if isinstance(tag, str):
            tag = tag.encode()
        resps = []
        while True:
            r = self.read_response()
            resps.append(r)
            if r.startswith(tag + b" "):
                return resps

    def command(self, tag, text):
        """Send `tag text CRLF`, return (responses, tagged status)."""
        if isinstance(tag, str):
            tag = tag.encode()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag + b" " + text + CRLF)
        resps = self.read_until_tagged(tag)
        status = resps[-1][len(tag) + 1:].split(b" ", 1)[0].decode()
        return resps, status

    def expect_continuation(self):
        """Read lines until a `+` continuation; return the lines."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(b"+"):
                return lines

    def read_until_eof(self, timeout=10):
        """Everything until the peer closes; raises on timeout."""
        self.sock.settimeout(timeout)
        data = bytes(self.buf)
        self.buf.clear()
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.eof = True
                return data
            self.received += chunk
            data += chunk

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def close_reset(self):
        """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def run_mbsync(workdir, port, user, password, ca_file=None, timeout=180):
    """mbsync pulling INBOX and Archive from 127.0.0.1:port into a new
    maildir under workdir, pipelined (PipelineDepth 50), with STARTTLS
    when ca_file is given. Returns (completed process, the INBOX message
    files it wrote, the maildir)."""
    d = tempfile.mkdtemp(dir=workdir)
    maildir = os.path.join(d, "mail") + "/"
    os.makedirs(maildir)
    rc = os.path.join(d, "mbsyncrc")
    with open(rc, "w") as f:
        f.write("IMAPAccount remote\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\n"
                "%s\nAuthMechs LOGIN\nPipelineDepth 50\n\n"
                "IMAPStore remote\nAccount remote\n\n"
                "MaildirStore local\nPath %s\nInbox %sINBOX\n\n"
                "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Archive\n"
                "Create Near\nSync Pull\nSyncState *\n"
                % (port, user, password,
                   "SSLType STARTTLS\nCertificateFile %s" % ca_file if ca_file
                   else "SSLType None", maildir, maildir))
    r = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True,
                       timeout=timeout)
    got = []
    for sub in ("cur", "new"):
        path = os.path.join(maildir, "INBOX", sub)
        if os.path.isdir(path):
            got += os.listdir(path)
    return r, got, maildir


def read_to_eof(sock, timeout):
    """What sock receives until its peer closes: (bytes, "eof"), or
    "reset" / "timeout" as the reading ended."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return got, "eof"
            got += chunk
    except ConnectionResetError:
        return got, "reset"
    except socket.timeout:
        return got, "timeout"
