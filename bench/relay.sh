#!/usr/bin/env bash
# Relay benchmark: how much does `imaptap proxy` cost over a direct
# connection, for a large FETCH and for NOOP round trips?
#
#   bash bench/relay.sh [--reps N] [--quick] [--no-socat] [--no-dovecot]
#                       [--no-build] [--build-dir DIR]
#
# Every figure is taken in the same run as its direct baseline, each
# measurement is repeated (default 5 times, interleaved direct / imaptap /
# socat) and the median is reported. See bench/README.md.
#
# Environment:
#   IMAPTAP=PATH        use this imaptap binary instead of the built one
#   IMAPTAP_ARGS="..."  extra arguments for `imaptap proxy` (e.g. capture)
#   FAST_MIB=1024       MiB fetched per fastserver measurement
#   DOVECOT_MIB=256     MiB fetched per Dovecot measurement
#   MSG_SIZE=64m        literal size (fastserver) / appended message (Dovecot)
#   NOOP_COUNT=20000    NOOP round trips per latency measurement
#   LINES_MIB=256       MiB of one-line FETCH responses per lines measurement
#   LINES=20000         one-line responses per FETCH (fastserver --lines)
#   SYNC_MESSAGES=20000 messages in the Dovecot INBOX of the flag sync
#   SYNC_MIB=64         MiB of `FETCH 1:* (UID FLAGS)` answers per sync measurement
#   RESULTS=FILE        where to write the key=value results
#                       (default BUILD_DIR/relay-bench.kv)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
REPS=${REPS:-5}
FAST_MIB=${FAST_MIB:-1024}
DOVECOT_MIB=${DOVECOT_MIB:-256}
MSG_SIZE=${MSG_SIZE:-64m}
NOOP_COUNT=${NOOP_COUNT:-20000}
LINES_MIB=${LINES_MIB:-256}
LINES=${LINES:-20000}
SYNC_MESSAGES=${SYNC_MESSAGES:-20000}
SYNC_MIB=${SYNC_MIB:-64}
WITH_SOCAT=1
WITH_DOVECOT=1
DO_BUILD=1

usage() { sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift ;;
        --quick) REPS=1; FAST_MIB=256; DOVECOT_MIB=128; NOOP_COUNT=5000; LINES_MIB=64; SYNC_MIB=16 ;;
        --no-socat) WITH_SOCAT=0 ;;
        --no-dovecot) WITH_DOVECOT=0 ;;
        --no-build) DO_BUILD=0 ;;
        --build-dir) BUILD_DIR=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "relay.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$BUILD_DIR/relay-bench.kv}

BENCH=relay.sh
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"

# ----------------------------------------------------------- dependencies

if [ "$WITH_SOCAT" = 1 ] && ! command -v socat >/dev/null; then
    log "installing socat ..."
    as_root_apt socat || { log "socat not available: socat rows skipped"; WITH_SOCAT=0; }
fi
DOVECOT_PY=$ROOT/tests/lib/dovecot.py
if [ "$WITH_DOVECOT" = 1 ]; then
    if [ ! -f "$DOVECOT_PY" ]; then
        log "tests/lib/dovecot.py not found: Dovecot rows skipped"; WITH_DOVECOT=0
    elif [ ! -x "${DOVECOT_BIN:-/usr/sbin/dovecot}" ]; then
        log "installing dovecot-imapd ..."
        as_root_apt dovecot-imapd || { log "Dovecot not available: Dovecot rows skipped"; WITH_DOVECOT=0; }
    fi
fi

# ------------------------------------------------------------------ build
build_tools

# ------------------------------------------------------- process helpers
# The start_* helpers run in the main shell (never inside $(...), so that
# the PIDs list stays complete) and leave the port they got in RET.

start_fastserver() { # [name [fastserver options]] -> RET=port
    local name=${1:-fast}
    shift || true
    local f=$WORK/$name.port
    "$FASTSERVER" --port 0 --port-file "$f" --size "$MSG_SIZE" "$@" \
        </dev/null >/dev/null 2>"$WORK/$name.log" &
    PIDS+=("$!")
    wait_port_file "$f" "$!" fastserver || die "cannot start fastserver: $(cat "$WORK/$name.log")"
}

start_imaptap() { # upstream_port name [extra imaptap options] -> RET=port
    local f=$WORK/imaptap-$2.port up=$1 name=$2
    shift 2
    "$IMAPTAP" proxy --upstream "127.0.0.1:$up" --listen 127.0.0.1:0 --port-file "$f" \
        --quiet "${IMAPTAP_EXTRA[@]}" "$@" </dev/null >"$WORK/imaptap-$name.out" \
        2>"$WORK/imaptap-$name.log" &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "imaptap proxy ($name)" ||
        die "cannot start imaptap proxy: $(tail -n 20 "$WORK/imaptap-$name.log")"
}

start_socat() { # upstream_port name [extra socat options] -> RET=port
    local up=$1 name=$2 port pid i
    shift 2
    port=$(free_port)
    socat "$@" "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$up" \
        </dev/null >/dev/null 2>"$WORK/socat-$name.log" &
    pid=$!
    PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        is_listening "$port" && { RET=$port; return 0; }
        kill -0 "$pid" 2>/dev/null || die "socat ($name) exited: $(cat "$WORK/socat-$name.log")"
        sleep 0.05
    done
    die "socat ($name) is not listening on $port"
}

start_dovecot() { # [name [dovecot.py options...]] -> RET=port
    local name=${1:-dovecot}
    local f=$WORK/$name.port
    shift || true
    python3 "$DOVECOT_PY" --users alice:secret --port-file "$f" "$@" \
        </dev/null >"$WORK/$name.out" 2>&1 &
    PIDS+=("$!")
    # a mailbox of SYNC_MESSAGES files is written first: more than 15 s
    # on a loaded machine
    wait_port_file "$f" "$!" "dovecot.py" 60 && return 0
    tail -n 20 "$WORK/$name.out" >&2
    return 1
}

# ---------------------------------------------------------- measurements
# Results are kept as files $WORK/r/<key> holding one value per line
# (record, bench/lib.sh).

median() { # key -> median of the recorded values, or "-"
    local f=$WORK/r/$1 n
    [ -s "$f" ] || { echo "-"; return; }
    n=$(wc -l <"$f")
    sort -g "$f" | awk -v n="$n" '{ v[NR] = $1 }
        END { if (n % 2) printf "%.1f", v[(n + 1) / 2];
              else printf "%.1f", (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

run_fetch() { # key port mib [imapbench options...]
    local key=$1 port=$2 mib=$3 out
    shift 3
    if ! out=$("$IMAPBENCH" fetch --connect "127.0.0.1:$port" --total-mib "$mib" "$@" \
                 2>"$WORK/last.err"); then
        log "  $key: FAILED: $(tail -n 3 "$WORK/last.err")"
        return 0
    fi
    record "$key" "$(kv "$out" mbps)"
    LAST_SECONDS=$(kv "$out" seconds)
    log "  $(printf '%-22s %9s MB/s' "$key" "$(kv "$out" mbps)")"
}

PCAP_SEEN=0
pcap_written() { # -> RET=bytes the proxy wrote to $PCAP since the last call
    local now
    sleep 0.2 # the last segments and the session's FIN
    now=$(stat -c %s "$PCAP")
    RET=$((now - PCAP_SEEN))
    PCAP_SEEN=$now
    truncate -s 0 "$PCAP" # the proxy writes on at its offset: a sparse file
}

run_noop() { # key port
    local key=$1 port=$2 out
    if ! out=$("$IMAPBENCH" noop --connect "127.0.0.1:$port" --count "$NOOP_COUNT" \
                 2>"$WORK/last.err"); then
        log "  $key: FAILED: $(tail -n 3 "$WORK/last.err")"
        return 0
    fi
    record "$key.p50" "$(kv "$out" p50_us)"
    record "$key.p99" "$(kv "$out" p99_us)"
    record "$key.mean" "$(kv "$out" mean_us)"
    log "  $(printf '%-22s p50 %7s us  p99 %7s us  mean %7s us' "$key" \
        "$(kv "$out" p50_us)" "$(kv "$out" p99_us)" "$(kv "$out" mean_us)")"
}

log "machine: $(nproc 2>/dev/null || echo ?) CPUs, $(uname -sr)"
log "imaptap: $IMAPTAP ${IMAPTAP_ARGS:-}"
log "tools:   $FASTSERVER, $IMAPBENCH"
T0=$(date +%s)

start_fastserver; FAST=$RET
start_imaptap "$FAST" fast; FAST_TAP=$RET
# the same proxy writing a pcap of everything; the file is emptied after
# each run (its blocks freed) so a long benchmark cannot fill the disk
PCAP=$WORK/bench.pcap
start_imaptap "$FAST" fast-pcap --pcap "$PCAP"; FAST_PCAP=$RET
# framing only: what the tracker and the anomaly rules cost
start_imaptap "$FAST" fast-norules --no-rules; FAST_NORULES=$RET
RELAYS=(direct imaptap imaptap-pcap imaptap-norules)
declare -A PORT_FAST=([direct]=$FAST [imaptap]=$FAST_TAP [imaptap-pcap]=$FAST_PCAP
                      [imaptap-norules]=$FAST_NORULES)
if [ "$WITH_SOCAT" = 1 ]; then
    start_socat "$FAST" fast; PORT_FAST[socat]=$RET
    start_socat "$FAST" fast-1m -b 1048576; PORT_FAST[socat-1m]=$RET
    RELAYS+=(socat socat-1m)
fi
log "fastserver :$FAST  imaptap :$FAST_TAP${PORT_FAST[socat]:+  socat :${PORT_FAST[socat]}}"

log ""
log "(a) FETCH throughput, fastserver, $FAST_MIB MiB per run, literal $MSG_SIZE, $REPS runs"
for ((rep = 1; rep <= REPS; rep++)); do
    for r in "${RELAYS[@]}"; do
        run_fetch "fast.$r" "${PORT_FAST[$r]}" "$FAST_MIB"
        if [ "$r" = imaptap-pcap ]; then
            # the ceiling: how fast this file system takes sequential writes
            dd if=/dev/zero of="$WORK/dd.out" bs=1M count="$FAST_MIB" 2>"$WORK/dd.err" || true
            record dd.mbps "$(awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) }' "$WORK/dd.err" |
                awk -v mib="$FAST_MIB" '{ printf "%.1f", mib * 1048576 / $1 / 1e6 }')"
            rm -f "$WORK/dd.out"
            pcap_written; b=$RET
            record pcap.mbps "$(awk -v b="$b" -v s="$LAST_SECONDS" 'BEGIN { printf "%.1f", b / s / 1e6 }')"
            log "  $(printf '%-22s %9s MB/s of pcap (%s bytes)' pcap-write "$(tail -n 1 "$WORK/r/pcap.mbps")" "$b")"
        fi
    done
done

DOVE_RELAYS=()
if [ "$WITH_DOVECOT" = 1 ]; then
    log ""
    log "(b) FETCH throughput, Dovecot, $DOVECOT_MIB MiB per run, message $MSG_SIZE, $REPS runs"
    if ! start_dovecot; then
        log "  Dovecot did not start; Dovecot rows skipped"
    elif DOVE=$RET && "$IMAPBENCH" append --connect "127.0.0.1:$DOVE" --login alice:secret \
            --size "$MSG_SIZE" >"$WORK/append.out" 2>"$WORK/append.err"; then
        log "  appended: $(cat "$WORK/append.out")"
        declare -A PORT_DOVE=([direct]=$DOVE)
        start_imaptap "$DOVE" dovecot; PORT_DOVE[imaptap]=$RET
        DOVE_RELAYS=(direct imaptap)
        if [ "$WITH_SOCAT" = 1 ]; then
            start_socat "$DOVE" dovecot; PORT_DOVE[socat]=$RET
            DOVE_RELAYS+=(socat)
        fi
        for ((rep = 1; rep <= REPS; rep++)); do
            for r in "${DOVE_RELAYS[@]}"; do
                run_fetch "dovecot.$r" "${PORT_DOVE[$r]}" "$DOVECOT_MIB" --login alice:secret
            done
        done
    else
        log "  APPEND to Dovecot failed: $(tail -n 3 "$WORK/append.err"); Dovecot rows skipped"
    fi
fi

log ""
log "(d) FETCH of one-line responses, fastserver --lines $LINES, $LINES_MIB MiB per run, $REPS runs"
# every line parsed and checked by the protocol rules, against framing only
start_fastserver lines --lines "$LINES" --size 1k; LINES_FAST=$RET
start_imaptap "$LINES_FAST" lines; LINES_TAP=$RET
start_imaptap "$LINES_FAST" lines-norules --no-rules; LINES_NORULES=$RET
declare -A PORT_LINES=([direct]=$LINES_FAST [imaptap]=$LINES_TAP [imaptap-norules]=$LINES_NORULES)
for ((rep = 1; rep <= REPS; rep++)); do
    for r in direct imaptap imaptap-norules; do
        run_fetch "lines.$r" "${PORT_LINES[$r]}" "$LINES_MIB"
    done
done

SYNC_DONE=0
if [ "$WITH_DOVECOT" = 1 ]; then
    log ""
    log "(e) flag sync against Dovecot: FETCH 1:* (UID FLAGS) of $SYNC_MESSAGES messages, $SYNC_MIB MiB per run, $REPS runs"
    # what a client does at start-up: one line per message, from a real
    # server, every line parsed and checked by the protocol rules
    if start_dovecot dovecot-sync --messages "$SYNC_MESSAGES"; then
        SYNC=$RET
        start_imaptap "$SYNC" sync; SYNC_TAP=$RET
        start_imaptap "$SYNC" sync-norules --no-rules; SYNC_NORULES=$RET
        declare -A PORT_SYNC=([direct]=$SYNC [imaptap]=$SYNC_TAP [imaptap-norules]=$SYNC_NORULES)
        SYNC_DONE=1
        for ((rep = 1; rep <= REPS; rep++)); do
            for r in direct imaptap imaptap-norules; do
                run_fetch "sync.$r" "${PORT_SYNC[$r]}" "$SYNC_MIB" --login alice:secret \
                    --seq '1:*' --item '(UID FLAGS)'
            done
        done
    else
        log "  Dovecot did not start; flag sync rows skipped"
    fi
fi

log ""
log "(c) NOOP round trips, fastserver, $NOOP_COUNT per run, TCP_NODELAY, $REPS runs"
for ((rep = 1; rep <= REPS; rep++)); do
    for r in direct imaptap ${PORT_FAST[socat]:+socat}; do
        run_noop "noop.$r" "${PORT_FAST[$r]}"
    done
done

# ---------------------------------------------------------------- summary
ratio() { # a b -> a/b with 2 decimals, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-";
                                     else printf "%.2f", a / b }'
}
delta() { # a b -> a-b with 1 decimal and sign, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-";
                                     else printf "%+.1f", a - b }'
}
verdict() { # value op limit -> met/MISSED/n/a
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "-") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "met" : "MISSED" }'
}

: >"$RESULTS.tmp"
emit() { echo "$1=$2" >>"$RESULTS.tmp"; }

fd=$(median fast.direct); ft=$(median fast.imaptap)
fratio=$(ratio "$ft" "$fd")
emit fast_direct_mbps "$fd"; emit fast_imaptap_mbps "$ft"; emit fast_ratio "$fratio"
fp=$(median fast.imaptap-pcap); pratio=$(ratio "$fp" "$ft"); pw=$(median pcap.mbps)
ddw=$(median dd.mbps)
emit fast_pcap_mbps "$fp"; emit fast_pcap_ratio "$pratio"; emit pcap_write_mbps "$pw"
emit dd_write_mbps "$ddw"; emit pcap_dd_ratio "$(ratio "$pw" "$ddw")"
fnr=$(median fast.imaptap-norules); rratio=$(ratio "$ft" "$fnr")
emit fast_norules_mbps "$fnr"; emit fast_rules_ratio "$rratio"
ld=$(median lines.direct); lt=$(median lines.imaptap); lnr=$(median lines.imaptap-norules)
lratio=$(ratio "$lt" "$lnr")
emit lines_direct_mbps "$ld"; emit lines_imaptap_mbps "$lt"; emit lines_norules_mbps "$lnr"
emit lines_rules_ratio "$lratio"
if [ "$SYNC_DONE" = 1 ]; then
    sd=$(median sync.direct); st=$(median sync.imaptap); snr=$(median sync.imaptap-norules)
    sratio=$(ratio "$st" "$snr")
    emit sync_direct_mbps "$sd"; emit sync_imaptap_mbps "$st"; emit sync_norules_mbps "$snr"
    emit sync_rules_ratio "$sratio"
fi
if [ "$WITH_SOCAT" = 1 ]; then
    fs=$(median fast.socat); fs1=$(median fast.socat-1m)
    emit fast_socat_mbps "$fs"; emit fast_socat_ratio "$(ratio "$fs" "$fd")"
    emit fast_socat1m_mbps "$fs1"; emit fast_socat1m_ratio "$(ratio "$fs1" "$fd")"
fi
if [ ${#DOVE_RELAYS[@]} -gt 0 ]; then
    dd=$(median dovecot.direct); dt=$(median dovecot.imaptap)
    dratio=$(ratio "$dt" "$dd")
    emit dovecot_direct_mbps "$dd"; emit dovecot_imaptap_mbps "$dt"; emit dovecot_ratio "$dratio"
    if [ "$WITH_SOCAT" = 1 ]; then
        ds=$(median dovecot.socat)
        emit dovecot_socat_mbps "$ds"; emit dovecot_socat_ratio "$(ratio "$ds" "$dd")"
    fi
fi
n50d=$(median noop.direct.p50); n50t=$(median noop.imaptap.p50)
n99d=$(median noop.direct.p99); n99t=$(median noop.imaptap.p99)
a50=$(delta "$n50t" "$n50d"); a99=$(delta "$n99t" "$n99d")
emit noop_direct_p50_us "$n50d"; emit noop_imaptap_p50_us "$n50t"; emit noop_added_p50_us "$a50"
emit noop_direct_p99_us "$n99d"; emit noop_imaptap_p99_us "$n99t"; emit noop_added_p99_us "$a99"
if [ "$WITH_SOCAT" = 1 ]; then
    emit noop_socat_p50_us "$(median noop.socat.p50)"; emit noop_socat_p99_us "$(median noop.socat.p99)"
    emit noop_socat_added_p50_us "$(delta "$(median noop.socat.p50)" "$n50d")"
    emit noop_socat_added_p99_us "$(delta "$(median noop.socat.p99)" "$n99d")"
fi
emit reps "$REPS"
mkdir -p "$(dirname "$RESULTS")"
mv "$RESULTS.tmp" "$RESULTS"

row() { printf '%-30s %10s %10s %9s  %-12s %s\n' "$@"; }
echo
echo "imaptap relay benchmark: medians of $REPS run(s), $(nproc 2>/dev/null || echo ?) CPUs, $(( $(date +%s) - T0 )) s"
row "workload" "direct" "imaptap" "imaptap" "target" "verdict"
row "------------------------------" "----------" "----------" "---------" "------------" "-------"
row "FETCH fastserver MB/s" "$fd" "$ft" "x$fratio" ">= x0.90" "$(verdict "$fratio" ">=" 0.9)"
row "FETCH with --pcap MB/s" "$ft" "$fp" "x$pratio" ">= x0.90" "$(verdict "$pratio" ">=" 0.9)"
row "  pcap written MB/s" "$ddw" "$pw" "x$(ratio "$pw" "$ddw")" "" "(direct: dd to the same file system)"
row "FETCH rules vs --no-rules" "$fnr" "$ft" "x$rratio" ">= x0.95" "$(verdict "$rratio" ">=" 0.95)"
row "lines MB/s" "$ld" "$lt" "x$(ratio "$lt" "$ld")" "" "(one-line FETCH responses)"
row "lines rules vs --no-rules" "$lnr" "$lt" "x$lratio" ">= x0.95" "$(verdict "$lratio" ">=" 0.95)"
if [ "$SYNC_DONE" = 1 ]; then
    row "flag sync Dovecot MB/s" "$sd" "$st" "x$(ratio "$st" "$sd")" "" "(FETCH 1:* (UID FLAGS))"
    row "flag sync rules vs --no-rules" "$snr" "$st" "x$sratio" ">= x0.95" "$(verdict "$sratio" ">=" 0.95)"
fi
if [ ${#DOVE_RELAYS[@]} -gt 0 ]; then
    row "FETCH Dovecot MB/s" "$dd" "$dt" "x$dratio" ">= x0.90" "$(verdict "$dratio" ">=" 0.9)"
fi
row "NOOP p50 us" "$n50d" "$n50t" "$a50" "<= +30" "$(verdict "$a50" "<=" 30)"
row "NOOP p99 us" "$n99d" "$n99t" "$a99" "<= +200" "$(verdict "$a99" "<=" 200)"
if [ "$WITH_SOCAT" = 1 ]; then
    echo
    echo "byte-blind comparison (socat, same run):"
    row "workload" "direct" "socat" "socat" "" ""
    row "------------------------------" "----------" "----------" "---------" "" ""
    row "FETCH fastserver MB/s" "$fd" "$fs" "x$(ratio "$fs" "$fd")" "" "(8 KiB buffer, default)"
    row "FETCH fastserver MB/s" "$fd" "$fs1" "x$(ratio "$fs1" "$fd")" "" "(socat -b 1048576)"
    if [ ${#DOVE_RELAYS[@]} -gt 0 ]; then
        row "FETCH Dovecot MB/s" "$dd" "$ds" "x$(ratio "$ds" "$dd")" "" "(default)"
    fi
    row "NOOP p50 us" "$n50d" "$(median noop.socat.p50)" "$(delta "$(median noop.socat.p50)" "$n50d")" "" ""
    row "NOOP p99 us" "$n99d" "$(median noop.socat.p99)" "$(delta "$(median noop.socat.p99)" "$n99d")" "" ""
fi
echo
echo "key=value results: $RESULTS"
echo "RESULT $(tr '\n' ' ' <"$RESULTS" | sed 's/ $//')"
