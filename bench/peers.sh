#!/usr/bin/env bash
# Side-by-side benchmark: the same workloads, in one run on one machine,
# through a direct connection, imaptap, socat, stunnel and sslsplit.
#
#   bash bench/peers.sh [--reps N] [--quick] [--no-build] [--build-dir DIR]
#                       [--only TOOL,...]
#
# Workloads: a large FETCH from fastserver (in-memory) and from Dovecot,
# and NOOP round trips (fastserver); each plain and TLS on both legs,
# capture off and on (imaptap --pcap, sslsplit -X). Every measurement is
# repeated (default 3 times, interleaved) and the best run kept: the best
# of a few is the least disturbed by other work on a shared machine. One
# table, a row per workload x mode, a column per tool, each figure as a
# ratio to direct and absolute; the AES-GCM speed of one core from the
# same run; the targets and whether they hold. See bench/README.md.
#
# Environment:
#   IMAPTAP=PATH        use this imaptap binary instead of the built one
#   IMAPTAP_ARGS="..."  extra arguments for every `imaptap proxy`
#   FAST_MIB=512        MiB per plain FETCH measurement against fastserver
#   TLS_MIB=256         MiB per TLS FETCH measurement against fastserver
#   DOVECOT_MIB=128     MiB per FETCH measurement against Dovecot
#   MSG_SIZE=64m        literal size (fastserver) / appended message (Dovecot)
#   NOOP_COUNT=5000     NOOP round trips per latency measurement
#   SPEED_SECONDS=2     seconds per openssl speed measurement
#   RESULTS=FILE        key=value results (default BUILD_DIR/peers-bench.kv)
#   PCAP_EXT=pcapng     imaptap's capture rows write pcapng (its verdicts as
#                       packet comments) instead of pcap
#   RAW_PCAP=1          imaptap's capture rows write --raw-pcap FILE.pcapng (both
#                       legs as sent, with the TLS secrets) instead of --pcap
#   WORKERS_ROWS=0      leave out the event-loop rows (bench/workers.sh: many
#                       sessions through --workers 1 and 2)
#   SCALE_SESSIONS=N    TLS IDLE sessions held at the end (bench/scale.py;
#                       default 10000, --quick 2000; 0 leaves them out)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
REPS=${REPS:-3}
FAST_MIB=${FAST_MIB:-512}
TLS_MIB=${TLS_MIB:-256}
DOVECOT_MIB=${DOVECOT_MIB:-128}
MSG_SIZE=${MSG_SIZE:-64m}
NOOP_COUNT=${NOOP_COUNT:-5000}
SPEED_SECONDS=${SPEED_SECONDS:-2}
DO_BUILD=1
ONLY=""

usage() { sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift ;;
        --quick) REPS=1; FAST_MIB=128; TLS_MIB=64; DOVECOT_MIB=64; NOOP_COUNT=1000; SPEED_SECONDS=1 ;;
        --no-build) DO_BUILD=0 ;;
        --build-dir) BUILD_DIR=$2; shift ;;
        --only) ONLY=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "peers.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$BUILD_DIR/peers-bench.kv}

BENCH=peers.sh
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck source=../scripts/lib/deps.sh
. "$ROOT/scripts/lib/deps.sh"

# ----------------------------------------------------------- dependencies
# The peers and Dovecot come from Debian; the script installs what is
# missing (as root, or through sudo).
ensure_packages socat stunnel4 sslsplit dovecot-imapd openssl python3 >&2 ||
    log "could not install every peer; the missing ones are left out"
TOOLS=(imaptap)
for t in socat stunnel sslsplit; do
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$t,"* ]]; then continue; fi
    command -v "$t" >/dev/null && TOOLS+=("$t") || log "$t not found: its column is left out"
done
WITH_DOVECOT=1
[ -x "${DOVECOT_BIN:-/usr/sbin/dovecot}" ] || { log "Dovecot not found: Dovecot rows left out"; WITH_DOVECOT=0; }

# ------------------------------------------------------------------ build
build_tools
PKI=$WORK/pki
make_test_pki "$PKI" >"$WORK/pki.log" 2>&1 || { cat "$WORK/pki.log" >&2; die "cannot make the test certificates"; }
TAPCA=$PKI/imaptap-ca

# ------------------------------------------------------- process helpers
# The start_* helpers run in the main shell (never inside $(...), so that
# the PIDs list stays complete) and leave the port they got in RET.

start_fastserver() { # name [tls] -> RET=port
    local name=$1 f=$WORK/fast-$1.port tls=()
    [ "${2:-}" = tls ] && tls=(--tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" --verbose)
    "$FASTSERVER" --port 0 --port-file "$f" --size "$MSG_SIZE" --prefork 8 "${tls[@]}" \
        </dev/null >/dev/null 2>"$WORK/fastserver-$name.log" &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "fastserver ($name)" ||
        die "cannot start fastserver: $(cat "$WORK/fastserver-$name.log")"
}

start_dovecot() { # -> RET=plain port, DOVE_IMAPS=implicit TLS port
    local f=$WORK/dovecot.port i
    python3 "$ROOT/tests/lib/dovecot.py" --users alice:secret --port-file "$f" \
        --ssl-cert "$PKI/server.crt" --ssl-key "$PKI/server.key" \
        </dev/null >"$WORK/dovecot.out" 2>&1 &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "dovecot.py" || { tail -n 20 "$WORK/dovecot.out" >&2; return 1; }
    for ((i = 0; i < 50; i++)); do
        DOVE_IMAPS=$(sed -n 's/.*, imaps \([0-9]*\),.*/\1/p' "$WORK/dovecot.out" | head -n 1)
        [ -n "$DOVE_IMAPS" ] && return 0
        sleep 0.1
    done
    log "no imaps port in dovecot.py's output"
    return 1
}

# imaptap: one proxy per upstream, mode and capture setting.
start_imaptap() { # name upstream_port plain|tls off|on -> RET=port
    local name=$1 up=$2 f=$WORK/imaptap-$1.port opts=()
    [ "$3" = tls ] && opts+=(--upstream-tls implicit --upstream-ca "$PKI/testca.crt" --sni localhost
                             --client-tls implicit --ca "$TAPCA")
    if [ "$4" = on ] && [ "${RAW_PCAP:-0}" = 1 ]; then
        opts+=(--raw-pcap "$WORK/imaptap-$name.pcapng")
    elif [ "$4" = on ]; then
        opts+=(--pcap "$WORK/imaptap-$name.${PCAP_EXT:-pcap}")
    fi
    "$IMAPTAP" proxy --upstream "127.0.0.1:$up" --listen 127.0.0.1:0 --port-file "$f" \
        --quiet "${opts[@]}" "${IMAPTAP_EXTRA[@]}" </dev/null >"$WORK/imaptap-$name.out" \
        2>"$WORK/imaptap-$name.log" &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "imaptap proxy ($name)" ||
        die "cannot start imaptap proxy: $(tail -n 20 "$WORK/imaptap-$name.log")"
}

# Ports for the relays that cannot write a port file, chosen at once so
# that none repeats.
mapfile -t PORT_POOL < <(free_ports 64)
take_port() { # -> TP=a port from the pool
    TP=${PORT_POOL[0]:?out of ports}
    PORT_POOL=("${PORT_POOL[@]:1}")
}

wait_listening() { # port pid what
    local i
    for ((i = 0; i < 200; i++)); do
        is_listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# socat with 1 MiB buffers (its fastest setting here) and TCP_NODELAY on
# both legs, like imaptap; with TLS it presents the test server certificate
# and does not verify the upstream.
start_socat() { # name upstream_port plain|tls -> RET=port
    local port pid listen connect
    take_port; port=$TP
    if [ "$3" = tls ]; then
        listen="OPENSSL-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,nodelay,cert=$PKI/server.crt,key=$PKI/server.key,verify=0"
        connect="OPENSSL:127.0.0.1:$2,verify=0,nodelay"
    else
        listen="TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,nodelay"
        connect="TCP:127.0.0.1:$2,nodelay"
    fi
    socat -b 1048576 "$listen" "$connect" </dev/null >/dev/null 2>"$WORK/socat-$1.log" &
    pid=$!
    PIDS+=("$pid")
    wait_listening "$port" "$pid" "socat" || die "socat ($1) is not listening: $(cat "$WORK/socat-$1.log")"
    RET=$port
}

# stunnel terminates TLS in one service and opens TLS upstream in another
# (one service does one TLS side only): client -> [in] -> loopback ->
# [out] -> server, both services in one stunnel process.
declare -A STUNNEL_PORT=()
start_stunnel() { # upstream names and ports as "name:port ..." -> STUNNEL_PORT[name]
    local conf=$WORK/stunnel.conf spec name up in mid pid
    {
        echo "foreground = yes"
        echo "pid ="
        echo "debug = 3"
        echo "output = $WORK/stunnel.log"
        echo "socket = l:TCP_NODELAY=1"
        echo "socket = r:TCP_NODELAY=1"
    } >"$conf"
    for spec in "$@"; do
        name=${spec%%:*}; up=${spec#*:}
        take_port; in=$TP
        take_port; mid=$TP
        STUNNEL_PORT[$name]=$in
        printf '%s\n' "[$name-in]" "accept = 127.0.0.1:$in" "connect = 127.0.0.1:$mid" \
            "cert = $PKI/server.crt" "key = $PKI/server.key" \
            "[$name-out]" "client = yes" "accept = 127.0.0.1:$mid" \
            "connect = 127.0.0.1:$up" >>"$conf"
    done
    stunnel "$conf" </dev/null >"$WORK/stunnel.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for spec in "$@"; do
        wait_listening "${STUNNEL_PORT[${spec%%:*}]}" "$pid" stunnel ||
            die "stunnel is not listening: $(tail -n 5 "$WORK/stunnel.log" "$WORK/stunnel.out" 2>/dev/null)"
    done
}

# sslsplit, one process per capture setting, one proxyspec per upstream
# and mode ("tcp" for plain, "ssl" for TLS on both legs); with capture on
# it writes the content as packets to one pcap file (-X). It forges with
# the imaptap CA, so its client checks the same ca.crt as imaptap's.
declare -A SSLSPLIT_PORT=() SSLSPLIT_PID=()
start_sslsplit() { # off|on "name:plain|tls:port" ... -> SSLSPLIT_PORT[name]
    local cap=$1 spec name mode up port pid specs=() opts=() ports=()
    shift
    for spec in "$@"; do
        IFS=: read -r name mode up <<<"$spec"
        take_port; port=$TP
        SSLSPLIT_PORT[$name]=$port
        ports+=("$port")
        if [ "$mode" = tls ]; then specs+=(ssl 127.0.0.1 "$port" 127.0.0.1 "$up")
        else specs+=(tcp 127.0.0.1 "$port" 127.0.0.1 "$up"); fi
    done
    [ "$cap" = on ] && opts+=(-X "$WORK/sslsplit-on.pcap")
    # as root it would drop to nobody, who cannot reach the work directory
    [ "$(id -u)" = 0 ] && opts+=(-u root)
    sslsplit -c "$TAPCA/ca.crt" -k "$TAPCA/ca.key" -K "$PKI/sslsplit-leaf.key" "${opts[@]}" \
        "${specs[@]}" </dev/null >"$WORK/sslsplit-$cap.out" 2>"$WORK/sslsplit-$cap.log" &
    pid=$!
    PIDS+=("$pid")
    SSLSPLIT_PID[$cap]=$pid
    for port in "${ports[@]}"; do
        wait_listening "$port" "$pid" sslsplit ||
            die "sslsplit ($cap) is not listening: $(tail -n 5 "$WORK/sslsplit-$cap.log")"
    done
}

# ---------------------------------------------------------- measurements
# Results: record and best (bench/lib.sh).

declare -A PORT=() CLIENT_TLS=()
# PORT[<workload>.<mode>.<capture>.<tool>], workload fast|dove, mode
# plain|tls, capture off|on, tool direct|imaptap|socat|stunnel|sslsplit
client_args() { # workload mode tool -> imapbench connection options
    local a="--connect 127.0.0.1:$4"
    if [ "$2" = tls ]; then
        case "$3" in
            imaptap|sslsplit) a+=" --tls --tls-ca $TAPCA/ca.crt --tls-name localhost" ;;
            *) a+=" --tls --tls-ca $PKI/testca.crt --tls-name localhost" ;;
        esac
    fi
    [ "$1" = dove ] && a+=" --login alice:secret"
    echo "$a"
}

empty_pcaps() { # the relays write on at their offsets: sparse files, no disk used
    local f
    for f in "$WORK"/*.pcap "$WORK"/*.pcapng; do [ -f "$f" ] && truncate -s 0 "$f"; done
    return 0
}

# sslsplit has been seen to exit in the middle of a large FETCH; it is
# started again (new ports), so that its later runs count, and the end of
# its log is kept for the summary.
SSLSPLIT_EXITS=0
restart_sslsplit_if_gone() { # capture
    local c=$1 w m rc
    kill -0 "${SSLSPLIT_PID[$c]}" 2>/dev/null && return 0
    wait "${SSLSPLIT_PID[$c]}" 2>/dev/null && rc=0 || rc=$?
    SSLSPLIT_EXITS=$((SSLSPLIT_EXITS + 1))
    { echo "sslsplit (capture $c) exited with status $rc; the end of its log:"
      tail -n 3 "$WORK/sslsplit-$c.log" | sed 's/^/    /'; } >>"$WORK/sslsplit-exits.txt"
    log "  sslsplit (capture $c) exited (status $rc); starting it again"
    start_sslsplit "$c" "${SSLSPLIT_SPECS[@]}"
    for w in "${WORKLOADS[@]}"; do
        for m in plain tls; do PORT[$w.$m.$c.sslsplit]=${SSLSPLIT_PORT[$w-$m]}; done
    done
}

measure() { # kind(fetch|noop) workload mode capture tool
    local kind=$1 w=$2 m=$3 c=$4 t=$5 key="$1.$2.$3.$4.$5" port out args mib
    [ "$t" = sslsplit ] && [ -n "${SSLSPLIT_PID[$c]:-}" ] && restart_sslsplit_if_gone "$c"
    port=${PORT[$w.$m.$c.$t]:-}
    [ -n "$port" ] || return 0
    read -r -a args <<<"$(client_args "$w" "$m" "$t" "$port")"
    if [ "$kind" = fetch ]; then
        mib=$FAST_MIB
        [ "$m" = tls ] && mib=$TLS_MIB
        [ "$w" = dove ] && mib=$DOVECOT_MIB
        if ! out=$("$IMAPBENCH" fetch "${args[@]}" --total-mib "$mib" --timeout 600 \
                     2>"$WORK/last.err"); then
            log "  $key: FAILED: $(tail -n 3 "$WORK/last.err")"
            echo "$key: FAILED:" >>"$WORK/measure.log"
            return 0
        fi
        record "$key" "$(kv "$out" mbps)"
        log "  $(printf '%-34s %9s MB/s' "$key" "$(kv "$out" mbps)")"
    else
        if ! out=$("$IMAPBENCH" noop "${args[@]}" --count "$NOOP_COUNT" --timeout 300 \
                     2>"$WORK/last.err"); then
            log "  $key: FAILED: $(tail -n 3 "$WORK/last.err")"
            echo "$key: FAILED:" >>"$WORK/measure.log"
            return 0
        fi
        record "$key.p50" "$(kv "$out" p50_us)"
        record "$key.p99" "$(kv "$out" p99_us)"
        log "  $(printf '%-34s p50 %7s us  p99 %7s us' "$key" "$(kv "$out" p50_us)" "$(kv "$out" p99_us)")"
    fi
    local v cph
    v=$(kv "$out" tls || true); cph=$(kv "$out" cipher || true)
    [ -n "$v" ] && CLIENT_TLS[$t]="$v $cph"
    [ "$c" = on ] && empty_pcaps
    return 0
}

loadavg() { cut -d ' ' -f 1-3 /proc/loadavg; }

log "machine: $(nproc 2>/dev/null || echo ?) CPUs, $(uname -sr), $(openssl version)"
log "imaptap: $IMAPTAP ${IMAPTAP_ARGS:-}"
log "peers:   ${TOOLS[*]:1}"
T0=$(date +%s)
LOAD_START=$(loadavg)

start_fastserver plain; FAST_PLAIN=$RET
start_fastserver tls tls; FAST_TLS=$RET
WORKLOADS=(fast)
if [ "$WITH_DOVECOT" = 1 ]; then
    if start_dovecot && DOVE_PLAIN=$RET &&
       "$IMAPBENCH" append --connect "127.0.0.1:$DOVE_PLAIN" --login alice:secret \
           --size "$MSG_SIZE" >"$WORK/append.out" 2>"$WORK/append.err"; then
        WORKLOADS+=(dove)
        log "Dovecot :$DOVE_PLAIN (imaps :$DOVE_IMAPS), appended $(kv "$(cat "$WORK/append.out")" bytes || echo ?) bytes"
    else
        log "Dovecot did not start or APPEND failed: Dovecot rows left out"
        tail -n 3 "$WORK/append.err" "$WORK/dovecot.out" 2>/dev/null >&2 || true
    fi
fi

declare -A UP=([fast.plain]=$FAST_PLAIN [fast.tls]=$FAST_TLS)
[ "${DOVE_PLAIN:-}" ] && UP[dove.plain]=$DOVE_PLAIN && UP[dove.tls]=$DOVE_IMAPS
STUNNEL_SPECS=() SSLSPLIT_SPECS=()
for w in "${WORKLOADS[@]}"; do
    for m in plain tls; do
        up=${UP[$w.$m]}
        PORT[$w.$m.off.direct]=$up
        start_imaptap "$w-$m-off" "$up" "$m" off; PORT[$w.$m.off.imaptap]=$RET
        start_imaptap "$w-$m-on" "$up" "$m" on; PORT[$w.$m.on.imaptap]=$RET
        if [[ " ${TOOLS[*]} " == *" socat "* ]]; then
            start_socat "$w-$m" "$up" "$m"; PORT[$w.$m.off.socat]=$RET
        fi
        [ "$m" = tls ] && STUNNEL_SPECS+=("$w:$up")
        SSLSPLIT_SPECS+=("$w-$m:$m:$up")
    done
done
if [[ " ${TOOLS[*]} " == *" stunnel "* ]]; then
    start_stunnel "${STUNNEL_SPECS[@]}"
    for w in "${WORKLOADS[@]}"; do PORT[$w.tls.off.stunnel]=${STUNNEL_PORT[$w]}; done
fi
if [[ " ${TOOLS[*]} " == *" sslsplit "* ]]; then
    for c in off on; do
        start_sslsplit "$c" "${SSLSPLIT_SPECS[@]}"
        for w in "${WORKLOADS[@]}"; do
            for m in plain tls; do PORT[$w.$m.$c.sslsplit]=${SSLSPLIT_PORT[$w-$m]}; done
        done
    done
fi

log ""
log "$REPS run(s), interleaved; FETCH fastserver ${FAST_MIB} MiB plain / ${TLS_MIB} MiB TLS,"
log "Dovecot ${DOVECOT_MIB} MiB, literal $MSG_SIZE; NOOP ${NOOP_COUNT} round trips; load average $LOAD_START"
declare -a LOAD_RUNS=()
for ((rep = 1; rep <= REPS; rep++)); do
    log ""
    log "run $rep/$REPS (load average $(loadavg))"
    for c in aes-128-gcm aes-256-gcm; do
        v=$(aes_gcm_mbps "$c" "$SPEED_SECONDS")
        [ -n "$v" ] && record "speed.$c" "$v" && log "  $(printf '%-34s %9s MB/s' "speed.$c" "$v")"
    done
    for kind in fetch noop; do
        for w in "${WORKLOADS[@]}"; do
            [ "$kind" = noop ] && [ "$w" != fast ] && continue
            for m in plain tls; do
                measure "$kind" "$w" "$m" off direct
                for t in "${TOOLS[@]}"; do
                    measure "$kind" "$w" "$m" off "$t"
                    measure "$kind" "$w" "$m" on "$t"
                done
            done
        done
    done
    LOAD_RUNS+=("$(loadavg)")
done
LOAD_END=$(loadavg)

# ---------------------------------------------------------------- summary
a128=$(best speed.aes-128-gcm max); a256=$(best speed.aes-256-gcm max)
: >"$RESULTS.tmp"
emit() { echo "$1=$2" >>"$RESULTS.tmp"; }
emit aes128gcm_mbps "$a128"; emit aes256gcm_mbps "$a256"

ratio() { # a b -> a/b with 2 decimals, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-";
                                     else printf "%.2f", a / b }'
}
cell() { # value direct -> "x0.93 1234" / "-"
    [ "$1" = - ] && { echo "-"; return; }
    [ "$2" = - ] && { echo "$1"; return; }
    echo "x$(ratio "$1" "$2") $1"
}
ahead() { # better(max|min) imaptap peer-values... -> yes/no/n/a
    local dir=$1 me=$2 v seen=0
    shift 2
    [ "$me" = - ] && { echo "n/a"; return; }
    for v in "$@"; do
        [ "$v" = - ] && continue
        seen=1
        if [ "$dir" = max ]; then awk -v a="$me" -v b="$v" 'BEGIN { exit !(a > b) }' || { echo no; return; }
        else awk -v a="$me" -v b="$v" 'BEGIN { exit !(a < b) }' || { echo no; return; }
        fi
    done
    [ "$seen" = 1 ] && echo yes || echo "n/a"
}

COLS=(direct imaptap socat stunnel sslsplit)
row() { printf '%-28s %-14s %-14s %-14s %-14s %-14s  %-16s %-7s %s\n' "$@"; }
line() { row "----------------------------" "--------------" "--------------" "--------------" \
             "--------------" "--------------" "----------------" "-------" "-----"; }
MET=0 MISSED=0 AHEAD_NO=0

declare -a OUT=()
summarize() { # kind workload mode capture label [metric]
    local kind=$1 w=$2 m=$3 c=$4 label=$5 metric=${6:-} t v d key cells=() vals=() me tgt ok
    local better=max sfx=""
    [ "$kind" = noop ] && { better=min; sfx=".$metric"; }
    d=$(best "$kind.$w.$m.off.direct$sfx" "$better")
    for t in "${COLS[@]}"; do
        if [ "$t" = direct ]; then v=$d; else v=$(best "$kind.$w.$m.$c.$t$sfx" "$better"); fi
        cells+=("$(cell "$v" "$d")")
        [ "$t" != direct ] && [ "$t" != imaptap ] && vals+=("$v")
        [ "$t" = imaptap ] && me=$v
        key="${kind}_${w}_${m}_${c}_${t}${metric:+_$metric}"
        emit "$key" "$v"
    done
    case "$kind.$w.$m.$metric" in
        fetch.fast.tls.)
            tgt=">=0.5 AES256: x$(ratio "$me" "$a256")"
            ok=$(awk -v a="$me" -v b="$a256" 'BEGIN { print (a != "-" && b != "-" && a >= 0.5 * b) ? 1 : 0 }') ;;
        fetch.*)
            tgt=">= x0.90 direct"
            ok=$(awk -v a="$me" -v b="$d" 'BEGIN { print (a != "-" && b != "-" && a >= 0.9 * b) ? 1 : 0 }') ;;
        noop.*.p50)
            tgt="<= +30 us: +$(awk -v a="$me" -v b="$d" 'BEGIN { printf "%.0f", a - b }')"
            ok=$(awk -v a="$me" -v b="$d" 'BEGIN { print (a != "-" && b != "-" && a - b <= 30) ? 1 : 0 }') ;;
        noop.*.p99)
            tgt="<= +200 us: +$(awk -v a="$me" -v b="$d" 'BEGIN { printf "%.0f", a - b }')"
            ok=$(awk -v a="$me" -v b="$d" 'BEGIN { print (a != "-" && b != "-" && a - b <= 200) ? 1 : 0 }') ;;
    esac
    local ah verdict=MISSED
    ah=$(ahead "$better" "$me" "${vals[@]}")
    if [ "$ah" = no ]; then AHEAD_NO=$((AHEAD_NO + 1)); fi
    if [ "$ok" = 1 ]; then verdict=met; MET=$((MET + 1)); else MISSED=$((MISSED + 1)); fi
    OUT+=("$(row "$label" "${cells[@]}" "$tgt" "$verdict" "$ah")")
}

for w in "${WORKLOADS[@]}"; do
    name=fastserver; [ "$w" = dove ] && name=Dovecot
    for m in plain tls; do
        for c in off on; do
            summarize fetch "$w" "$m" "$c" "FETCH $name $m$([ "$c" = on ] && echo ' +cap')"
        done
    done
done
for metric in p50 p99; do
    for m in plain tls; do
        for c in off on; do
            summarize noop fast "$m" "$c" "NOOP $metric $m$([ "$c" = on ] && echo ' +cap')" "$metric"
        done
    done
done
# What capture costs imaptap: each capture row against the same row
# without capture, both measured in this run (the targets of
# docs/design-notes.md, "Capture's cost").
CAP_MET=0 CAP_MISSED=0
declare -a CAP_OUT=()
capture_cost_fetch() { # workload mode label
    local off on r ok verdict=MISSED
    off=$(best "fetch.$1.$2.off.imaptap" max); on=$(best "fetch.$1.$2.on.imaptap" max)
    r=$(ratio "$on" "$off")
    emit "capture_cost_fetch_$1_$2" "$r"
    ok=$(awk -v r="$r" 'BEGIN { print (r != "-" && r >= 0.90) ? 1 : 0 }')
    if [ "$ok" = 1 ]; then verdict=met; CAP_MET=$((CAP_MET + 1)); else CAP_MISSED=$((CAP_MISSED + 1)); fi
    CAP_OUT+=("capture cost $3: on/off = x$r ($on / $off MB/s; target >= x0.90) $verdict")
}
capture_cost_noop() { # mode
    local off on d ok verdict=MISSED
    off=$(best "noop.fast.$1.off.imaptap.p50" min); on=$(best "noop.fast.$1.on.imaptap.p50" min)
    d=$(awk -v a="$on" -v b="$off" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%+.1f", a - b }')
    emit "capture_cost_noop_p50_$1_us" "$d"
    ok=$(awk -v d="$d" 'BEGIN { print (d != "-" && d + 0 <= 10) ? 1 : 0 }')
    if [ "$ok" = 1 ]; then verdict=met; CAP_MET=$((CAP_MET + 1)); else CAP_MISSED=$((CAP_MISSED + 1)); fi
    CAP_OUT+=("NOOP p50 capture cost $1: $d us ($on / $off us; target <= +10 us) $verdict")
}
for w in "${WORKLOADS[@]}"; do
    name=fastserver; [ "$w" = dove ] && name=Dovecot
    for m in plain tls; do capture_cost_fetch "$w" "$m" "FETCH $name $m"; done
done
for m in plain tls; do capture_cost_noop "$m"; done

emit load_start "$LOAD_START"; emit load_end "$LOAD_END"; emit reps "$REPS"
mkdir -p "$(dirname "$RESULTS")"
sed 's/ /,/g' "$RESULTS.tmp" >"$RESULTS"
rm -f "$RESULTS.tmp"

upstream_tls() { # fastserver TLS log -> "TLSv1.3 TLS_AES_256_GCM_SHA384 (N handshakes, M resumed)"
    awk '/^fastserver: TLS / && !/failed/ { k = $3 " " $4; n[k]++; if ($5 == "resumed") r[k]++ }
         END { for (k in n) printf "%s%s (%d handshakes, %d resumed)", sep, k, n[k], r[k] + 0; sep = "; " }' "$1"
}

echo
echo "imaptap side by side: best of $REPS run(s), $(nproc 2>/dev/null || echo ?) CPUs, $(( $(date +%s) - T0 )) s"
echo "load average (1/5/15 min): start $LOAD_START; after each run: $(IFS=';'; echo "${LOAD_RUNS[*]}"); end $LOAD_END"
echo "cells: xR = tool / direct of the same workload and mode (for NOOP: latency ratio, lower is"
echo "better), then MB/s (FETCH) or microseconds (NOOP). +cap: imaptap $([ "${RAW_PCAP:-0}" = 1 ] && echo --raw-pcap || echo --pcap), sslsplit -X;"
echo "the direct figure of a +cap row is the one without capture. ahead: imaptap better than every peer."
echo
row "workload / mode" "${COLS[@]}" "imaptap target" "verdict" "ahead"
line
for r in "${OUT[@]}"; do echo "$r"; done
echo
echo "AES-GCM on one core (openssl speed -evp, 16 KiB blocks, best of $REPS): aes-128-gcm $a128 MB/s, aes-256-gcm $a256 MB/s"
for c in off on; do
    me=$(best "fetch.fast.tls.$c.imaptap" max)
    echo "imaptap TLS<->TLS FETCH fastserver, capture $c: $me MB/s = x$(ratio "$me" "$a256") of AES-256-GCM, x$(ratio "$me" "$a128") of AES-128-GCM (target >= x0.5)"
done
echo "negotiated, client leg as imapbench saw it:$(for t in "${!CLIENT_TLS[@]}"; do printf ' %s=%s;' "$t" "${CLIENT_TLS[$t]// /\/}"; done)"
echo "negotiated, fastserver's side of every TLS leg: $(upstream_tls "$WORK/fastserver-tls.log")"
echo "targets: $MET met, $MISSED missed; imaptap behind a peer on $AHEAD_NO row(s)"
echo
echo "imaptap with capture ($([ "${RAW_PCAP:-0}" = 1 ] && echo --raw-pcap || echo "--pcap .${PCAP_EXT:-pcap}")) against imaptap without, same run:"
for r in "${CAP_OUT[@]}"; do echo "$r"; done
echo "capture cost targets: $CAP_MET met, $CAP_MISSED missed"
if [ "$SSLSPLIT_EXITS" -gt 0 ]; then
    echo "sslsplit exited $SSLSPLIT_EXITS time(s) during the run and was started again:"
    sed 's/^/  /' "$WORK/sslsplit-exits.txt"
fi
failed=$(grep -c ': FAILED:' "$WORK/measure.log" 2>/dev/null || true)
[ "${failed:-0}" -gt 0 ] && echo "failed measurements: $failed (on stderr, marked FAILED)"
echo
echo "key=value results: $RESULTS"
echo "RESULT $(tr '\n' ' ' <"$RESULTS" | sed 's/ $//')"

# ------------------------------------------ event loops (bench/workers.sh)
# imaptap alone with --workers 1 and 2: many sessions at once, which one
# loop cannot spread over the cores (WORKERS_ROWS=0 leaves it out).
if [ "${WORKERS_ROWS:-1}" = 1 ]; then
    quick=()
    [ "$REPS" = 1 ] && quick=(--quick)
    echo
    IMAPTAP_ARGS=${IMAPTAP_ARGS:-} bash "$ROOT/bench/workers.sh" "${quick[@]}" --reps "$REPS" \
        --no-build --build-dir "$BUILD_DIR" || echo "workers.sh failed (its messages are on stderr)"
fi

# -------------------------------- held TLS IDLE sessions (bench/scale.py)
# Thousands of TLS<->TLS sessions idling through imaptap against Dovecot,
# each getting new mail during IDLE and ending it with DONE: memory and CPU
# per session, DONE->OK under that load. SCALE_SESSIONS=N (default 10000,
# --quick 2000; 0 leaves it out). It needs root for the descriptor and
# inotify limits.
SCALE_SESSIONS=${SCALE_SESSIONS:-$([ "$REPS" = 1 ] && echo 2000 || echo 10000)}
if [ "$SCALE_SESSIONS" -gt 0 ]; then
    echo
    python3 "$ROOT/bench/scale.py" --sessions "$SCALE_SESSIONS" --hold 30 --build-dir "$BUILD_DIR" \
        --no-build 2>"$WORK/scale.err" | sed -n '/^scale: /,$p' ||
        echo "scale.py failed: $(tail -n 3 "$WORK/scale.err")"
fi
