#!/usr/bin/env bash
# Event loops: the same load through `imaptap proxy --workers 1` and
# `--workers 2`, in one run on one machine.
#
#   bash bench/workers.sh [--quick] [--reps N] [--sessions 8] [--no-build]
#                         [--build-dir DIR]
#
# Load: --sessions concurrent FETCH sessions (one imapbench process each)
# against fastserver, plain and TLS on both legs, capture off and on
# (--pcap). Per row and worker count: the aggregate throughput (all bytes
# over the wall-clock time of the slowest session) and imaptap's CPU time
# per GB relayed (user + system, from /proc). Then the idle memory of a
# TLS<->TLS session with 1 and 2 loops: N sessions held in IDLE through
# imaptap against Dovecot (bench/idleload), the RSS growth over N.
# Best of --reps runs (default 3; --quick: 1 and smaller transfers).
#
# Environment: MIB_PLAIN=2048, MIB_TLS=512 (all sessions together),
# IDLE_SESSIONS=500, RESULTS=FILE (key=value, default BUILD_DIR/workers-bench.kv)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
REPS=${REPS:-3}
SESSIONS=8
MIB_PLAIN=${MIB_PLAIN:-2048}
MIB_TLS=${MIB_TLS:-512}
IDLE_SESSIONS=${IDLE_SESSIONS:-500}
MSG_SIZE=${MSG_SIZE:-16m}
DO_BUILD=1

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift ;;
        --sessions) SESSIONS=$2; shift ;;
        --quick) REPS=1; MIB_PLAIN=1024; MIB_TLS=256; IDLE_SESSIONS=300 ;;
        --no-build) DO_BUILD=0 ;;
        --build-dir) BUILD_DIR=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "workers.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$BUILD_DIR/workers-bench.kv}

BENCH=workers.sh
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck source=../scripts/lib/deps.sh
. "$ROOT/scripts/lib/deps.sh"

ensure_packages dovecot-imapd openssl python3 >&2 || log "could not install Dovecot: idle rows left out"
build_tools
IDLELOAD=$(find_tool idleload)
PKI=$WORK/pki
make_test_pki "$PKI" >"$WORK/pki.log" 2>&1 || { cat "$WORK/pki.log" >&2; die "cannot make the test certificates"; }
TAPCA=$PKI/imaptap-ca
TICKS=$(getconf CLK_TCK)

start_fastserver() { # name [tls] -> RET=port
    local f=$WORK/fast-$1.port tls=()
    [ "${2:-}" = tls ] && tls=(--tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key")
    "$FASTSERVER" --port 0 --port-file "$f" --size "$MSG_SIZE" --prefork "$((SESSIONS + 2))" \
        "${tls[@]}" </dev/null >/dev/null 2>"$WORK/fastserver-$1.log" &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "fastserver ($1)" || die "cannot start fastserver"
}

IMAPTAP_PID=
start_imaptap() { # workers upstream_port plain|tls off|on [extra...] -> RET=port
    local w=$1 up=$2 mode=$3 cap=$4 f=$WORK/imaptap.port opts=()
    shift 4
    rm -f "$f"
    [ "$mode" = tls ] && opts+=(--upstream-tls implicit --upstream-ca "$PKI/testca.crt" --sni localhost
                                --client-tls implicit --ca "$TAPCA")
    [ "$cap" = on ] && opts+=(--pcap "$WORK/w.pcap" --overwrite)
    "$IMAPTAP" proxy --upstream "127.0.0.1:$up" --listen 127.0.0.1:0 --port-file "$f" --quiet \
        --workers "$w" "${opts[@]}" "$@" "${IMAPTAP_EXTRA[@]}" </dev/null >/dev/null \
        2>"$WORK/imaptap.log" &
    IMAPTAP_PID=$!
    PIDS+=("$IMAPTAP_PID")
    wait_port_file "$f" "$IMAPTAP_PID" "imaptap proxy" || die "cannot start imaptap: $(tail -n 5 "$WORK/imaptap.log")"
}

stop_imaptap() {
    kill -TERM "$IMAPTAP_PID" 2>/dev/null || true
    wait "$IMAPTAP_PID" 2>/dev/null || true
    rm -f "$WORK/w.pcap"
}

cpu_ticks() { # pid -> user + system ticks of the whole process
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# One measurement: SESSIONS imapbench fetch processes at once through a
# fresh imaptap; aggregate MB/s and imaptap's CPU seconds per GB.
fetch_load() { # workers plain|tls off|on
    local w=$1 mode=$2 cap=$3 up=$FAST_PLAIN mib=$MIB_PLAIN args=() i pids=() t0 t1 c0 c1 bytes
    [ "$mode" = tls ] && { up=$FAST_TLS; mib=$MIB_TLS; args=(--tls --tls-ca "$TAPCA/ca.crt" --tls-name localhost); }
    start_imaptap "$w" "$up" "$mode" "$cap"
    c0=$(cpu_ticks "$IMAPTAP_PID")
    t0=$(date +%s.%N)
    for ((i = 0; i < SESSIONS; i++)); do
        "$IMAPBENCH" fetch --connect "127.0.0.1:$RET" "${args[@]}" --total-mib "$((mib / SESSIONS))" \
            --timeout 600 >"$WORK/f.$i.out" 2>"$WORK/f.$i.err" &
        pids+=("$!")
    done
    local failed=0
    for i in "${pids[@]}"; do wait "$i" || failed=1; done
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$IMAPTAP_PID")
    stop_imaptap
    if [ "$failed" = 1 ]; then
        log "  workers=$w $mode capture $cap: a session FAILED: $(cat "$WORK"/f.*.err | tail -n 3)"
        return 0
    fi
    bytes=$(cat "$WORK"/f.*.out | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes=/) { sub(/bytes=/, "", $i); s += $i } } END { print s + 0 }')
    local mbps cpu
    mbps=$(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / 1e6 / (z - a) }')
    cpu=$(awk -v b="$bytes" -v c="$((c1 - c0))" -v t="$TICKS" 'BEGIN { printf "%.2f", (c / t) / (b / 1e9) }')
    record "fetch.$mode.$cap.w$w.mbps" "$mbps"
    record "fetch.$mode.$cap.w$w.cpu" "$cpu"
    log "  $(printf 'workers=%s %-5s capture %-3s %9s MB/s  %6s CPU s/GB' "$w" "$mode" "$cap" "$mbps" "$cpu")"
}

# Idle TLS<->TLS sessions through imaptap against Dovecot: RSS per session.
DOVE_IMAPS=
start_dovecot() {
    local f=$WORK/dovecot.port i
    # one imap process serves many clients, and one user may hold them all
    cat >"$WORK/limits.conf" <<'EOF'
default_client_limit = 10000
service imap-login {
  service_count = 0
  client_limit = 10000
}
service imap {
  service_count = 0
  client_limit = 2000
  process_limit = 50
}
protocol imap {
  mail_max_userip_connections = 100000
}
EOF
    python3 "$ROOT/tests/lib/dovecot.py" --users alice:secret --port-file "$f" \
        --ssl-cert "$PKI/server.crt" --ssl-key "$PKI/server.key" --extra-conf "$WORK/limits.conf" \
        </dev/null >"$WORK/dovecot.out" 2>&1 &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "dovecot.py" || { tail -n 20 "$WORK/dovecot.out" >&2; return 1; }
    for ((i = 0; i < 50; i++)); do
        DOVE_IMAPS=$(sed -n 's/.*, imaps \([0-9]*\),.*/\1/p' "$WORK/dovecot.out" | head -n 1)
        [ -n "$DOVE_IMAPS" ] && return 0
        sleep 0.1
    done
    return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

idle_memory() { # workers
    local w=$1 empty full fifo=$WORK/idle.in line
    start_imaptap "$w" "$DOVE_IMAPS" tls off
    sleep 0.5
    empty=$(rss_kib "$IMAPTAP_PID")
    rm -f "$fifo"; mkfifo "$fifo"
    "$IDLELOAD" --connect "127.0.0.1:$RET" --login alice:secret --sessions "$IDLE_SESSIONS" \
        --rate 400 --hold 0 --tls <"$fifo" >"$WORK/idle.out" 2>"$WORK/idle.err" &
    local ipid=$!
    exec 9>"$fifo"
    for ((i = 0; i < 600; i++)); do
        grep -q '^idling' "$WORK/idle.out" 2>/dev/null && break
        kill -0 "$ipid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    full=$(rss_kib "$IMAPTAP_PID")
    line=$(grep '^idling' "$WORK/idle.out" || echo "idling 0")
    echo >&9
    exec 9>&-
    wait "$ipid" 2>/dev/null || true
    stop_imaptap
    local held=${line#idling }
    held=${held%% *}
    if [ "${held:-0}" -gt 0 ]; then
        record "idle.w$w.kib" "$(awk -v a="$empty" -v b="$full" -v n="$held" 'BEGIN { printf "%.1f", (b - a) / n }')"
        log "  workers=$w idle TLS<->TLS: $held sessions, RSS $empty -> $full KiB"
    else
        log "  workers=$w idle: no session idled: $(tail -n 3 "$WORK/idle.err")"
    fi
}

log "machine: $(nproc) CPUs; $SESSIONS concurrent FETCH sessions; reps $REPS"
start_fastserver plain; FAST_PLAIN=$RET
start_fastserver tls tls; FAST_TLS=$RET
T0=$(date +%s)
for ((rep = 1; rep <= REPS; rep++)); do
    log "run $rep of $REPS"
    for mode in plain tls; do
        for cap in off on; do
            for w in 1 2; do fetch_load "$w" "$mode" "$cap"; done
        done
    done
done
WITH_IDLE=0
if [ -n "$IDLELOAD" ] && [ -x "${DOVECOT_BIN:-/usr/sbin/dovecot}" ] && start_dovecot; then
    WITH_IDLE=1
    for w in 1 2; do idle_memory "$w"; done
fi

: >"$RESULTS.tmp"
emit() { echo "$1=$2" >>"$RESULTS.tmp"; }
echo
echo "imaptap --workers 1 and 2: $SESSIONS concurrent FETCH sessions from fastserver, best of $REPS run(s), $(nproc) CPUs, $(( $(date +%s) - T0 )) s"
printf '%-26s %-22s %-22s %-10s %s\n' "load" "1 loop MB/s, CPU s/GB" "2 loops MB/s, CPU s/GB" "2 vs 1" "target"
for mode in plain tls; do
    for cap in off on; do
        m1=$(best "fetch.$mode.$cap.w1.mbps" max); c1=$(best "fetch.$mode.$cap.w1.cpu" min)
        m2=$(best "fetch.$mode.$cap.w2.mbps" max); c2=$(best "fetch.$mode.$cap.w2.cpu" min)
        r=$(awk -v a="$m2" -v b="$m1" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "x%.2f", a / b }')
        v=$(awk -v a="$m2" -v b="$m1" 'BEGIN { print (a != "-" && b != "-" && a > b) ? "met" : "MISSED" }')
        printf '%-26s %-22s %-22s %-10s %s\n' "FETCH x$SESSIONS $mode$([ "$cap" = on ] && echo ' +cap')" \
            "$m1, $c1" "$m2, $c2" "$r" "2 loops faster: $v"
        emit "fetch_${mode}_${cap}_w1_mbps" "$m1"; emit "fetch_${mode}_${cap}_w1_cpu_s_per_gb" "$c1"
        emit "fetch_${mode}_${cap}_w2_mbps" "$m2"; emit "fetch_${mode}_${cap}_w2_cpu_s_per_gb" "$c2"
    done
done
if [ "$WITH_IDLE" = 1 ]; then
    i1=$(best idle.w1.kib min); i2=$(best idle.w2.kib min)
    v=$(awk -v a="$i2" -v b="$i1" 'BEGIN { print (a != "-" && b != "-" && a <= b * 1.10 + 1) ? "met" : "MISSED" }')
    printf '%-26s %-22s %-22s %-10s %s\n' "idle TLS<->TLS KiB/sess" "$i1" "$i2" \
        "$(awk -v a="$i2" -v b="$i1" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%+.1f", a - b }')" \
        "unchanged (within 10%): $v"
    emit idle_tls_w1_kib "$i1"; emit idle_tls_w2_kib "$i2"
    v=$(awk -v a="$i2" 'BEGIN { print (a != "-" && a < 32) ? "met" : "MISSED" }')
    echo "idle TLS<->TLS session with $IDLE_SESSIONS held: $i2 KiB (target < 32 KiB): $v;" \
         "its split: python3 bench/tls_idle_memory.py --breakdown"
fi
mkdir -p "$(dirname "$RESULTS")"
mv "$RESULTS.tmp" "$RESULTS"
echo "RESULT $(tr '\n' ' ' <"$RESULTS" | sed 's/ $//')"
