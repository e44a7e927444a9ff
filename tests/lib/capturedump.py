"""tests/capture_dump (tests/tools/pcapdump.c): what the pcap reader and
the TCP reassembly make of a capture, as JSON lines, for the tests that
compare streams (test_pcap_reader.py, test_export.py). Found through
$IMAPTAP_CAPTURE_DUMP or next to the imaptap binary."""

import json
import os
import subprocess

from imaptap import imaptap_bin, sanitizer_env, sanitizer_reports


def capture_dump_bin():
    path = os.environ.get("IMAPTAP_CAPTURE_DUMP")
    if not path:
        path = os.path.join(os.path.dirname(imaptap_bin()), "tests",
                            "capture_dump")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError("capture_dump not found at %s (build the tests, or "
                           "set IMAPTAP_CAPTURE_DUMP)" % path)
    return path


class Dump:
    """capture_dump's output: events by session, the stats, exit code and
    stderr. Raises when a sanitizer spoke or the process died."""

    def __init__(self, path, timeout=120):
        proc = subprocess.run([capture_dump_bin(), path], capture_output=True,
                              timeout=timeout, env=sanitizer_env())
        self.rc = proc.returncode
        self.stderr = proc.stderr.decode("utf-8", "replace")
        reports = sanitizer_reports(self.stderr)
        if reports or self.rc < 0:
            raise AssertionError("capture_dump %s: exit %d, sanitizer: %s\n%s"
                                 % (path, self.rc, reports, self.stderr[-3000:]))
        self.events = [json.loads(line) for line in
                       proc.stdout.decode().splitlines()]
        self.stats = None
        if self.events and self.events[-1]["kind"] == "stats":
            self.stats = self.events.pop()

    def sessions(self):
        return sorted({e["session"] for e in self.events})

    def session_events(self, session):
        return [e for e in self.events if e["session"] == session]

    def session_of_client_port(self, port):
        for e in self.events:
            if e["kind"] == "open" and e["client"].endswith(":%d" % port):
                return e["session"]
        raise AssertionError("no session with client port %d among %r"
                             % (port, [e for e in self.events
                                       if e["kind"] == "open"]))

    def stream(self, session, direction):
        """(bytes, [(offset, gap_len)]) of one direction; bytes hold the
        data only. Offsets must run on across data and gaps."""
        data = bytearray()
        gaps = []
        at = 0
        for e in self.session_events(session):
            if e.get("dir") != direction or e["kind"] not in ("data", "gap"):
                continue
            if e["offset"] != at:
                raise AssertionError("session %d %s: event at offset %d, "
                                     "expected %d" % (session, direction,
                                                      e["offset"], at))
            if e["kind"] == "data":
                chunk = bytes.fromhex(e["hex"])
                assert len(chunk) == e["len"], e
                data += chunk
                at += len(chunk)
            elif e["kind"] == "gap":
                gaps.append((e["offset"], e["gap_len"]))
                at += e["gap_len"]
        return bytes(data), gaps

    def only(self, session, kind):
        evs = [e for e in self.session_events(session) if e["kind"] == kind]
        if len(evs) != 1:
            raise AssertionError("session %d: %d %s events, want 1"
                                 % (session, len(evs), kind))
        return evs[0]
