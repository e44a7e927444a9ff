"""What may reach a terminal: the predicate every terminal-safety test
uses (tests/lib/terminal_safe.h is the same predicate in C, for the unit
tests and the fuzz targets), and the hostile bytes they try it with.

imaptap's output holds printable ASCII and line feeds, and ESC only as
one of the SGR colour codes its timeline writes; everything a peer, a
capture file, a script or a command line chose is escaped as \\xNN.
"""

import re

# ESC [ n m for reset, bold, dim, red, green, yellow, magenta, cyan: the
# codes capture/timeline.c writes, and no others
SGR_CODES = (b"\x1b[0m", b"\x1b[1m", b"\x1b[2m", b"\x1b[31m", b"\x1b[32m",
             b"\x1b[33m", b"\x1b[35m", b"\x1b[36m", b"\x1b[7m")
_SAFE = re.compile(rb"(?:[\x20-\x7e\n]+|" + b"|".join(re.escape(c) for c in SGR_CODES) + rb")")

# One of each thing a terminal acts on, none of them a space or a line feed
# (so the blob fits in a tag, an atom or a response code).
HOSTILE_PARTS = (
    ("CSI", b"\x1b[31m"),
    ("OSC 0", b"\x1b]0;title\x07"),
    ("OSC 8", b"\x1b]8;;http://x\x1b\\"),
    ("OSC 52", b"\x1b]52;c;Zm9v\x07"),
    ("C1 CSI", b"\x9b31m"),
    ("C1 CSI as UTF-8", b"\xc2\x9b31m"),
    ("BEL", b"\x07"),
    ("BS", b"\x08"),
    ("CR", b"\r"),
    ("NUL", b"\x00"),
    ("invalid UTF-8", b"\xff\xc3("),
    ("U+2028", "\u2028".encode()),
    ("U+202E", "\u202e".encode()),
)
HOSTILE = b"".join(part for _, part in HOSTILE_PARTS)
# the same without NUL, for what travels as a C string (argv, a file name)
HOSTILE_NO_NUL = HOSTILE.replace(b"\x00", b"")


def unsafe_spans(data):
    """[(offset, bytes around it)] of every byte of data that must not
    reach a terminal: a control byte but \\n, DEL, a byte >= 0x80, an ESC
    that does not start one of SGR_CODES."""
    bad = []
    pos = 0
    while pos < len(data):
        m = _SAFE.match(data, pos)
        if m:
            pos = m.end()
            continue
        bad.append((pos, data[max(0, pos - 30):pos + 30]))
        pos += 1
    return bad


def assert_terminal_safe(tc, data, what):
    """Fails tc when data (bytes a person reads) holds anything but what
    imaptap may write to a terminal."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    bad = unsafe_spans(data)
    tc.assertFalse(bad, "%s: %d byte(s) must not reach a terminal; the first at %d: %r"
                   % (what, len(bad), bad[0][0] if bad else 0, bad[0][1] if bad else b""))


def assert_json_safe(tc, data, what):
    """JSON lines (an event log): no control byte but \\n, no DEL, no byte
    >= 0x80 raw; every such byte is a \\u00XX escape."""
    bad = [(i, data[max(0, i - 30):i + 30]) for i, c in enumerate(data)
           if (c < 0x20 and c != 0x0A) or c >= 0x7F]
    tc.assertFalse(bad, "%s: %d raw byte(s) in JSON; the first at %d: %r"
                   % (what, len(bad), bad[0][0] if bad else 0, bad[0][1] if bad else b""))
