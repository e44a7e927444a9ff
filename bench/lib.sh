# Shared by the bench scripts: messages, the work directory and process
# cleanup, Debian packages, building the tools, waiting for port files,
# test certificates, key=value output and the AES-GCM speed of one core.
# Source it after setting BENCH (the script's name), ROOT, BUILD_DIR and
# DO_BUILD; it defines WORK and PIDS.

log() { printf '%s\n' "$*" >&2; }
die() { log "$BENCH: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imaptap-$BENCH.XXXXXX")
PIDS=()
bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then log "$BENCH: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

as_root_apt() {
    # apt-get install PKG..., only as root and only when apt-get is there.
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >"$WORK/apt.log" 2>&1 || return 1
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$WORK/apt.log" 2>&1
}

find_tool() { # name -> path of an executable under BUILD_DIR, or nothing
    local c
    for c in "$BUILD_DIR/$1" "$BUILD_DIR/bench/$1" "$BUILD_DIR/bin/$1" \
             "$BUILD_DIR/bench-standalone/$1"; do
        [ -f "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
    find "$BUILD_DIR" -type f -name "$1" -perm -u+x 2>/dev/null | head -n 1
}

# Builds imaptap and the tools (Release) unless DO_BUILD=0, then sets
# FASTSERVER, IMAPBENCH, IMAPTAP and IMAPTAP_EXTRA (from IMAPTAP_ARGS).
build_tools() {
    local root_ok=0
    if [ "$DO_BUILD" = 1 ]; then
        mkdir -p "$BUILD_DIR"
        if [ -f "$ROOT/CMakeLists.txt" ]; then
            log "building $ROOT (Release) in $BUILD_DIR ..."
            if cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DIMAPTAP_TESTS=OFF \
                     >"$WORK/cmake.log" 2>&1 &&
               cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)" >>"$WORK/cmake.log" 2>&1; then
                root_ok=1
            else
                log "root build failed (tail of the log follows); building bench/ alone"
                tail -n 15 "$WORK/cmake.log" >&2
            fi
        fi
        if [ "$root_ok" = 0 ] || [ -z "$(find_tool fastserver)" ] || [ -z "$(find_tool imapbench)" ]; then
            if ! { cmake -S "$ROOT/bench" -B "$BUILD_DIR/bench-standalone" -DCMAKE_BUILD_TYPE=Release &&
                   cmake --build "$BUILD_DIR/bench-standalone"; } >"$WORK/cmake-bench.log" 2>&1; then
                cat "$WORK/cmake-bench.log" >&2
                die "cannot build bench/"
            fi
        fi
    fi
    FASTSERVER=$(find_tool fastserver)
    IMAPBENCH=$(find_tool imapbench)
    if [ -z "$FASTSERVER" ] || [ -z "$IMAPBENCH" ]; then
        die "fastserver/imapbench not found under $BUILD_DIR"
    fi
    IMAPTAP=${IMAPTAP:-$(find_tool imaptap)}
    if [ -z "$IMAPTAP" ] || [ ! -x "$IMAPTAP" ]; then
        die "imaptap binary not found under $BUILD_DIR (set IMAPTAP=PATH)"
    fi
    read -r -a IMAPTAP_EXTRA <<<"${IMAPTAP_ARGS:-}"
}

# The start_* helpers of the scripts run in the main shell (never inside
# $(...), so that the PIDs list stays complete) and leave their port in RET.
RET=
wait_port_file() { # file pid what [seconds, default 15] -> RET=port; returns 1 on failure
    local f=$1 pid=$2 what=$3 secs=${4:-15} i
    for ((i = 0; i < secs * 20; i++)); do
        if [ -s "$f" ] && [ -z "$(tail -c 1 "$f")" ]; then
            RET=$(head -n 1 "$f" | tr -dc '0-9')
            [ -n "$RET" ] && return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$BENCH: $what exited before writing $f"
            return 1
        fi
        sleep 0.05
    done
    log "$BENCH: $what did not write $f within $secs s"
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# N distinct free ports, all held open while they are chosen: ports picked
# one at a time can repeat, since a port closed is free again at once.
free_ports() { # n -> one port per line
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

is_listening() { # port: is something listening on 127.0.0.1:port (IPv4)?
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: 0100007F:$hex 00000000:0000 0A " /proc/net/tcp 2>/dev/null ||
        grep -qE "^ *[0-9]+: 00000000:$hex 00000000:0000 0A " /proc/net/tcp 2>/dev/null
}

# Results of repeated runs: $WORK/r/<key>, one value per line (one per run).
mkdir -p "$WORK/r"
record() { echo "$2" >>"$WORK/r/$1"; }
best() { # key max|min -> best recorded value, or "-"
    local f=$WORK/r/$1
    [ -s "$f" ] || { echo "-"; return; }
    if [ "$2" = max ]; then sort -g "$f" | tail -n 1; else sort -g "$f" | head -n 1; fi
}

kv() { # "line of key=value" key -> value
    local k
    for k in $1; do
        case "$k" in "$2="*) echo "${k#*=}"; return 0 ;; esac
    done
    return 1
}

# A throwaway test CA and a server certificate for localhost / 127.0.0.1
# signed by it (testca.crt, server.crt, server.key), EC P-256 like the
# leaves imaptap forges; an EC key for the leaves sslsplit forges
# (sslsplit-leaf.key); and an imaptap CA directory (imaptap-ca/), which
# sslsplit uses to forge as well. Needs IMAPTAP.
make_test_pki() { # dir
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/testca.key" -out "$d/testca.crt" -days 2 \
        -subj "/CN=imaptap bench test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
    printf '%s\n' "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$d/server.ext" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/testca.crt" -CAkey "$d/testca.key" \
        -CAcreateserial -days 2 -extfile "$d/server.ext" -out "$d/server.crt" &&
    openssl verify -CAfile "$d/testca.crt" "$d/server.crt" &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/sslsplit-leaf.key" &&
    "$IMAPTAP" ca init "$d/imaptap-ca"
}

# What one core encrypts with CIPHER in 16 KiB blocks, in 10^6 bytes/s;
# prints nothing when openssl speed fails.
aes_gcm_mbps() { # cipher seconds
    local out bps
    out=$(openssl speed -evp "$1" -seconds "$2" -bytes 16384 -mr 2>&1) || return 0
    # -mr: "+F:<n>:<cipher>:<bytes per second for each block size>"
    bps=$(echo "$out" | awk -F: '/^\+F:/ { print $NF; exit }')
    [ -n "$bps" ] && awk -v b="$bps" 'BEGIN { printf "%.1f", b / 1e6 }'
    return 0
}
