"""The commands shown in README.md and docs/*.md, page by page, in order:
each `imaptap ...` line of a sh/bash/yaml block (a `- run:` step too),
continuation lines joined, comments cut; runnable, also the `tshark -r` and
`mergecap` lines that read what the page's commands wrote."""

import glob
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

IMAPTAP = re.compile(r"(?:^|[;&|]\s*|build/|\s)(imaptap (?:proxy|analyze|replay|compile|export|diff|ca)\b[^#&|;]*)")
TSHARK_READ = re.compile(r"^(tshark -r [^#&|;]*)")
MERGECAP = re.compile(r"^(mergecap [^#&|;]*)")
# a synopsis, not a command: HOST:PORT, [OPTIONS], FILE ...
PLACEHOLDER = re.compile(r"\b[A-Z]{2,}(?::[A-Z]{2,})?\b|\[|\.\.\.")


def doc_pages(runnable=False):
    """[(path relative to the root, [command, ...])]. runnable: leave out
    synopses and add the `tshark -r` lines that read a pcap the page made."""
    pages = []
    for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        with open(path) as f:
            text = f.read()
        commands = []
        for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if lang not in ("", "sh", "bash", "yaml"):
                continue
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = re.sub(r"^- run: ", "", line.strip())
                m = IMAPTAP.search(line)
                if m:
                    cmd = m.group(1).strip()
                    if not (runnable and PLACEHOLDER.search(cmd)):
                        commands.append(cmd)
                elif runnable and MERGECAP.match(line):
                    # joins captures the page's own commands wrote
                    commands.append(MERGECAP.match(line).group(1).strip())
                elif runnable and TSHARK_READ.match(line):
                    cmd = TSHARK_READ.match(line).group(1).strip()
                    # only a capture the page's own commands wrote (not a
                    # raw capture of a leg, which needs capture rights)
                    if any(flag + cmd.split()[2] in c for c in commands
                           for flag in ("--pcap ", "--raw-pcap ")):
                        commands.append(cmd)
        pages.append((os.path.relpath(path, ROOT), commands))
    return pages


def doc_commands():
    """(path, command) for every imaptap command of every page."""
    return [(path, cmd) for path, cmds in doc_pages() for cmd in cmds]
