#!/usr/bin/env python3
"""Checks the layout DESIGN.md and docs/design-notes.md promise.

- no circular includes among the project's own files;
- each library includes only the layers below it: imap/ nothing else,
  capture/ and net/ imap/, proxy/ and replay/ capture/ imap/ net/, cli/
  everything; replay/ and proxy/ never each other;
- imap/ is pure: no sockets, no clocks, no event loop;
- no source file over MAX_FILE_LINES lines;
- no function in cli/ over MAX_CLI_FUNCTION_LINES lines.

Prints every breach and exits 1 when there is one.
"""
import os
import re
import sys

MAX_FILE_LINES = 700
MAX_CLI_FUNCTION_LINES = 80
LIBRARIES = ["imap", "capture", "net", "proxy", "replay", "cli", "bench"]
ALLOWED = {
    "imap": {"imap"},
    "capture": {"capture", "imap"},
    "net": {"net", "imap"},
    "proxy": {"proxy", "capture", "imap", "net"},
    "replay": {"replay", "capture", "imap", "net"},
    "cli": {"cli", "proxy", "replay", "capture", "imap", "net"},
    "bench": {"bench"},
}
# what would make imap/ depend on the world rather than on what it is passed
IMPURE_HEADERS = {"sys/socket.h", "netinet/in.h", "arpa/inet.h", "event2/event.h",
                  "event2/buffer.h", "openssl/ssl.h", "pcap/pcap.h", "pcap.h", "unistd.h"}
IMPURE_CALLS = re.compile(r"\b(clock_gettime|gettimeofday|time)\s*\(|\b(socket|connect|accept|"
                          r"recv|send|read|write)\s*\(")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def sources(root):
    for lib in LIBRARIES:
        top = os.path.join(root, lib)
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                if name.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, name), root)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


def project_includes(path, text):
    """The project's own includes of path, as paths from the root."""
    out = []
    for kind, name in INCLUDE.findall(text):
        if kind == '"' and name.split("/")[0] in LIBRARIES:
            out.append(name)
        elif kind == '"':
            out.append(os.path.normpath(os.path.join(os.path.dirname(path), name)))
    return out


def find_cycles(graph):
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def long_functions(text, limit):
    """(name, first line, length) of each function body over limit lines."""
    lines = strip_comments(text).split("\n")
    out, depth, start, name = [], 0, None, None
    head = re.compile(r"^[A-Za-z_][\w \*]*?\b(\w+)\s*\(")
    for i, line in enumerate(lines):
        if depth == 0 and line.startswith("{") and start is None:
            for j in range(i - 1, max(i - 6, -1), -1):
                m = head.match(lines[j])
                if m:
                    name = m.group(1)
                    break
            start = i
        depth += line.count("{") - line.count("}")
        if start is not None and depth == 0:
            if name and i - start + 1 > limit:
                out.append((name, start + 1, i - start + 1))
            start, name = None, None
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    root = os.path.abspath(root)
    problems, graph = [], {}
    files = list(sources(root))
    if not any(f.startswith("proxy/") for f in files):
        print(f"{root}: no sources found; give the checkout's root", file=sys.stderr)
        return 2
    for path in files:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
        lib = path.split("/")[0]
        graph[path] = []
        for inc in project_includes(path, text):
            graph[path].append(inc)
            if not os.path.exists(os.path.join(root, inc)):
                continue
            target = inc.split("/")[0]
            if target in LIBRARIES and target not in ALLOWED[lib]:
                problems.append(f"{path}: includes {inc}: {lib}/ may not depend on {target}/")
        if lib == "imap":
            for kind, name in INCLUDE.findall(text):
                if kind == "<" and name in IMPURE_HEADERS:
                    problems.append(f"{path}: includes <{name}>: imap/ is pure")
            for m in IMPURE_CALLS.finditer(strip_comments(text)):
                problems.append(f"{path}: calls {m.group(0).strip()}: imap/ is pure")
        count = text.count("\n")
        if count > MAX_FILE_LINES:
            problems.append(f"{path}: {count} lines (at most {MAX_FILE_LINES})")
        if lib == "cli" and path.endswith(".c"):
            for name, line, length in long_functions(text, MAX_CLI_FUNCTION_LINES):
                problems.append(f"{path}:{line}: {name}() is {length} lines "
                                f"(at most {MAX_CLI_FUNCTION_LINES} in cli/)")
    for cycle in find_cycles(graph):
        problems.append("circular includes: " + " -> ".join(cycle))
    for p in problems:
        print(p)
    print(f"{len(files)} files checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
