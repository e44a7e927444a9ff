#!/usr/bin/env bash
# Soak: mixed real-client traffic through `imaptap proxy` with capture on,
# for a long time; is memory flat, are descriptors given back, and is clean
# traffic free of anomalies?
#
#   bash bench/soak.sh [DURATION] [--interval S] [--workers N] [--no-node]
#                      [--no-build] [--build-dir DIR]
#
# DURATION is seconds, or with a unit: 90s, 5m, 1h (default 30m). A private
# Dovecot on loopback; the proxy in front of it with --pcap, --pcap-max-size
# and --events; N imaplib workers (LOGIN, SELECT, APPEND, FETCH, IDLE,
# LOGOUT, in a loop) and one imapflow worker when Node is there
# (bench/soak_clients.py). Every S seconds (default 5) the proxy's RSS and
# open descriptors go to a CSV; at the end the curve (start, quarter,
# middle, three quarters, end, max, slope) and the anomaly count of the
# event log are printed. See bench/README.md.
#
# Environment: IMAPTAP=PATH, IMAPTAP_ARGS="...", BUILD_DIR,
#   SOAK_OUT=DIR (default BUILD_DIR/soak: CSV, event log, client summary)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
DURATION=30m
INTERVAL=5
WORKERS=4
WITH_NODE=1
DO_BUILD=1

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --interval) INTERVAL=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        --no-node) WITH_NODE=0 ;;
        --no-build) DO_BUILD=0 ;;
        --build-dir) BUILD_DIR=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        [0-9]*) DURATION=$1 ;;
        *) echo "soak.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$DURATION" in
    *h) SECONDS_TOTAL=$(( ${DURATION%h} * 3600 )) ;;
    *m) SECONDS_TOTAL=$(( ${DURATION%m} * 60 )) ;;
    *s) SECONDS_TOTAL=${DURATION%s} ;;
    *) SECONDS_TOTAL=$DURATION ;;
esac
SOAK_OUT=${SOAK_OUT:-$BUILD_DIR/soak}

BENCH=soak.sh
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck source=../scripts/lib/deps.sh
. "$ROOT/scripts/lib/deps.sh"

ensure_packages dovecot-imapd python3 >&2
if [ "$WITH_NODE" = 1 ]; then
    if ! command -v node >/dev/null || ! python3 -c "
import sys; sys.path.insert(0, '$ROOT/tests/lib')
import node; node.ensure_node_clients()" >"$WORK/node.log" 2>&1; then
        log "imapflow not available ($(tail -n 1 "$WORK/node.log" 2>/dev/null)): imaplib clients only"
        WITH_NODE=0
    fi
fi
build_tools
mkdir -p "$SOAK_OUT"
CSV=$SOAK_OUT/soak.csv
EVENTS=$SOAK_OUT/events.jsonl
rm -f "$CSV" "$EVENTS" "$SOAK_OUT"/soak*.pcap

# ---------------------------------------------------------------- peers
USERS=()
for ((i = 0; i < WORKERS; i++)); do USERS+=(--users "soak$i:secret"); done
USERS+=(--users soaknode:secret)
python3 "$ROOT/tests/lib/dovecot.py" "${USERS[@]}" --port-file "$WORK/dovecot.port" \
    </dev/null >"$WORK/dovecot.out" 2>&1 &
PIDS+=("$!")
wait_port_file "$WORK/dovecot.port" "$!" dovecot.py || { tail -n 20 "$WORK/dovecot.out" >&2; die "Dovecot did not start"; }
DOVE=$RET

# pcap rotation at 16 MiB, so that a long soak rotates many times
"$IMAPTAP" proxy --upstream "127.0.0.1:$DOVE" --listen 127.0.0.1:0 --port-file "$WORK/tap.port" \
    --quiet --pcap "$SOAK_OUT/soak.pcap" --pcap-max-size 16 --events "$EVENTS" \
    "${IMAPTAP_EXTRA[@]}" </dev/null >"$SOAK_OUT/proxy.out" 2>"$SOAK_OUT/proxy.log" &
TAP_PID=$!
PIDS+=("$TAP_PID")
wait_port_file "$WORK/tap.port" "$TAP_PID" "imaptap proxy" || die "imaptap proxy did not start: $(tail -n 5 "$SOAK_OUT/proxy.log")"
TAP=$RET

sample() { # seconds-since-start -> one CSV row
    local rss fds pcap opened
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$TAP_PID/status" 2>/dev/null || echo 0)
    fds=$(find "/proc/$TAP_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    pcap=$(cat "$SOAK_OUT"/soak*.pcap 2>/dev/null | wc -c)
    opened=$(grep -c '"kind":"session-open"' "$EVENTS" 2>/dev/null || true)
    echo "$1,$rss,$fds,$pcap,${opened:-0},$(cut -d ' ' -f 1 /proc/loadavg)" >>"$CSV"
}

log "soak: ${SECONDS_TOTAL} s, $WORKERS imaplib workers$([ "$WITH_NODE" = 1 ] && echo ' + imapflow'), sample every ${INTERVAL} s"
log "Dovecot :$DOVE, imaptap :$TAP (pid $TAP_PID), output in $SOAK_OUT"
echo "seconds,rss_kb,fds,pcap_bytes,sessions_opened,load1" >"$CSV"
T0=$(date +%s)
sample 0
NODE_OPT=()
[ "$WITH_NODE" = 1 ] && NODE_OPT=(--node)
python3 "$ROOT/bench/soak_clients.py" --port "$TAP" --seconds "$SECONDS_TOTAL" \
    --workers "$WORKERS" "${NODE_OPT[@]}" >"$SOAK_OUT/clients.json" 2>"$SOAK_OUT/clients.log" &
CLIENTS=$!
PIDS+=("$CLIENTS")
while kill -0 "$CLIENTS" 2>/dev/null; do
    sleep "$INTERVAL"
    kill -0 "$TAP_PID" 2>/dev/null || die "the proxy died: $(tail -n 5 "$SOAK_OUT/proxy.log")"
    sample $(( $(date +%s) - T0 ))
done
CLIENTS_RC=0
wait "$CLIENTS" || CLIENTS_RC=$?
# every client gone: descriptors should be back where they started
sleep 2
sample $(( $(date +%s) - T0 ))
kill -TERM "$TAP_PID" 2>/dev/null || true
wait "$TAP_PID" 2>/dev/null || true

# ---------------------------------------------------------------- report
anomalies=$(grep -c '"kind":"anomaly"' "$EVENTS" 2>/dev/null || true)
opened=$(grep -c '"kind":"session-open"' "$EVENTS" 2>/dev/null || true)
closed=$(grep -c '"kind":"session-close"' "$EVENTS" 2>/dev/null || true)
pcaps=$(find "$SOAK_OUT" -maxdepth 1 -name 'soak*.pcap' | wc -l)

echo
echo "imaptap soak: $SECONDS_TOTAL s, $(nproc) CPUs, load average at the end $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "clients: $(tail -n 1 "$SOAK_OUT/clients.json" 2>/dev/null) (exit $CLIENTS_RC)"
echo "sessions: $opened opened, $closed closed; pcap files: $pcaps (rotation at 16 MiB)"
echo "anomalies in the event log: ${anomalies:-0}"
grep '"kind":"anomaly"' "$EVENTS" 2>/dev/null | head -n 5 | sed 's/^/  /' || true
echo
# the curve: the last row is taken after the clients left, the others
# while they ran; slopes are least squares over the running rows, over all
# of them and over the second half (after warm-up)
awk -F, 'BEGIN { n = 0 } NR > 1 { t[n] = $1; r[n] = $2; f[n] = $3; n++ }
    function at(q,   i) { i = int((n - 2) * q + 0.5); return i }
    function slope(a, from, to,   i, m, st, sa, stt, sta) {
        m = 0; st = sa = stt = sta = 0
        for (i = from; i <= to; i++) { m++; st += t[i]; sa += a[i]; stt += t[i] * t[i]; sta += t[i] * a[i] }
        if (m < 2 || m * stt - st * st == 0) return 0
        return (m * sta - st * sa) / (m * stt - st * st) * 60
    }
    END {
        if (n < 3) { print "too few samples"; exit }
        last = n - 2
        printf "%-22s %8s %8s %8s %8s %8s %8s %8s %14s %14s\n", "", "start", "25%", "middle", "75%", "end", "max", "after", "slope/min", "2nd half/min"
        mr = 0; mf = 0
        for (i = 0; i <= last; i++) { if (r[i] > mr) mr = r[i]; if (f[i] > mf) mf = f[i] }
        printf "%-22s %8d %8d %8d %8d %8d %8d %8d %14.1f %14.1f\n", "RSS KiB", r[0], r[at(0.25)], r[at(0.5)], r[at(0.75)], r[last], mr, r[n - 1], slope(r, 0, last), slope(r, int(last / 2), last)
        printf "%-22s %8d %8d %8d %8d %8d %8d %8d %14.2f %14.2f\n", "open descriptors", f[0], f[at(0.25)], f[at(0.5)], f[at(0.75)], f[last], mf, f[n - 1], slope(f, 0, last), slope(f, int(last / 2), last)
        printf "(at t = %d, %d, %d, %d, %d s; after: %d s, once every client had left)\n", t[0], t[at(0.25)], t[at(0.5)], t[at(0.75)], t[last], t[n - 1]
    }' "$CSV"
echo
echo "samples: $CSV"
