#!/usr/bin/env bash
# TLS benchmark: what TLS on both legs costs through `imaptap proxy`,
# compared with a direct TLS connection, with sslsplit relaying the same
# traffic, and with the raw AES-GCM speed of one core.
#
#   bash bench/tls.sh [--reps N] [--quick] [--no-sslsplit] [--no-build]
#                     [--build-dir DIR]
#
# Measured in one run, each measurement repeated (default 5 times,
# interleaved) and the median reported; see bench/README.md:
#   - openssl speed -evp aes-128-gcm / aes-256-gcm, 16 KiB blocks (MB/s)
#   - FETCH throughput (MB/s): plain TCP, direct TLS, imaptap, sslsplit
#   - new sessions per second (connect, TLS, greeting, LOGOUT, one at a
#     time): plain TCP, direct TLS, imaptap, sslsplit; plus the relay's CPU
#
# Environment:
#   IMAPTAP=PATH        use this imaptap binary instead of the built one
#   IMAPTAP_ARGS="..."  extra arguments for `imaptap proxy`
#   SSLSPLIT_ARGS="..." extra arguments for sslsplit (before the proxyspec)
#   TLS_MIB=1024        MiB fetched per throughput measurement
#   MSG_SIZE=64m        literal size of every FETCH answer
#   HS_COUNT=1000       sessions per session-rate measurement ...
#   HS_SECONDS=3        ... or fewer when this many seconds have passed
#   HS_PARALLEL=0       if > 0, also measure sessions/s with that many clients
#   SPEED_SECONDS=2     seconds per openssl speed measurement
#   RESULTS=FILE        where to write the key=value results
#                       (default BUILD_DIR/tls-bench.kv)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
REPS=${REPS:-5}
TLS_MIB=${TLS_MIB:-1024}
MSG_SIZE=${MSG_SIZE:-64m}
HS_COUNT=${HS_COUNT:-1000}
HS_SECONDS=${HS_SECONDS:-3}
HS_PARALLEL=${HS_PARALLEL:-0}
SPEED_SECONDS=${SPEED_SECONDS:-2}
WITH_SSLSPLIT=1
DO_BUILD=1

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift ;;
        --quick) REPS=1; TLS_MIB=256; HS_COUNT=300; HS_SECONDS=1; SPEED_SECONDS=1 ;;
        --no-sslsplit) WITH_SSLSPLIT=0 ;;
        --no-build) DO_BUILD=0 ;;
        --build-dir) BUILD_DIR=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "tls.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$BUILD_DIR/tls-bench.kv}


BENCH=tls.sh
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"

# ----------------------------------------------------------- dependencies

command -v openssl >/dev/null || die "the openssl command is needed (apt-get install openssl)"
command -v python3 >/dev/null || die "python3 is needed (free ports)"
if [ "$WITH_SSLSPLIT" = 1 ] && ! command -v sslsplit >/dev/null; then
    log "installing sslsplit ..."
    as_root_apt sslsplit || { log "sslsplit not available: sslsplit rows skipped"; WITH_SSLSPLIT=0; }
fi

# ------------------------------------------------------------------ build
build_tools
read -r -a SSLSPLIT_EXTRA <<<"${SSLSPLIT_ARGS:-}"

# ------------------------------------------------------------ certificates
# A throwaway test CA and a server certificate for localhost / 127.0.0.1
# (what fastserver shows), EC P-256 like the leaves imaptap forges; and an
# imaptap CA directory, used by imaptap and (same key) by sslsplit to forge
# the certificates the client sees.
PKI=$WORK/pki
make_test_pki "$PKI" >"$WORK/pki.log" 2>&1 || { cat "$WORK/pki.log" >&2; die "cannot make the test certificates"; }
TAPCA=$PKI/imaptap-ca

# ------------------------------------------------------- process helpers
# The start_* helpers run in the main shell (never inside $(...), so that
# the PIDs list stays complete) and leave the port they got in RET.

# fastserver with workers forked at start (--prefork): a fork per
# connection would cost more than the TLS handshake being measured.
start_fastserver() { # name [tls] -> RET=port
    local name=$1 f=$WORK/fast-$1.port
    local tls=()
    [ "${2:-}" = tls ] && tls=(--tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" --verbose)
    "$FASTSERVER" --port 0 --port-file "$f" --size "$MSG_SIZE" --prefork 8 "${tls[@]}" \
        </dev/null >/dev/null 2>"$WORK/fastserver-$name.log" &
    PIDS+=("$!")
    wait_port_file "$f" "$!" "fastserver ($name)" ||
        die "cannot start fastserver: $(cat "$WORK/fastserver-$name.log")"
}

IMAPTAP_PID=
start_imaptap() { # upstream_port -> RET=port
    local f=$WORK/imaptap.port
    "$IMAPTAP" proxy --upstream "127.0.0.1:$1" --upstream-tls implicit \
        --upstream-ca "$PKI/testca.crt" --sni localhost \
        --client-tls implicit --ca "$TAPCA" \
        --listen 127.0.0.1:0 --port-file "$f" --quiet "${IMAPTAP_EXTRA[@]}" \
        </dev/null >"$WORK/imaptap.out" 2>"$WORK/imaptap.log" &
    IMAPTAP_PID=$!
    PIDS+=("$IMAPTAP_PID")
    wait_port_file "$f" "$IMAPTAP_PID" "imaptap proxy" ||
        die "cannot start imaptap proxy: $(tail -n 20 "$WORK/imaptap.log")"
}

# sslsplit in the foreground with a static upstream. Its connection log
# (one line per connection) goes to a file. Started as root it reads the
# keys, then drops to nobody (the files are already loaded by then); if it
# does not come up that way, it is retried with -u root.
SSLSPLIT_PID=
start_sslsplit() { # upstream_port -> RET=port
    local up=$1 port i try
    local user_opts=()
    for try in 1 2; do
        port=$(free_port)
        sslsplit -c "$TAPCA/ca.crt" -k "$TAPCA/ca.key" -K "$PKI/sslsplit-leaf.key" \
            "${user_opts[@]}" "${SSLSPLIT_EXTRA[@]}" \
            ssl 127.0.0.1 "$port" 127.0.0.1 "$up" \
            </dev/null >"$WORK/sslsplit.out" 2>"$WORK/sslsplit.log" &
        SSLSPLIT_PID=$!
        PIDS+=("$SSLSPLIT_PID")
        for ((i = 0; i < 200; i++)); do
            if is_listening "$port" && kill -0 "$SSLSPLIT_PID" 2>/dev/null; then
                # listening before the privilege drop; one probe session proves it serves
                if "$IMAPBENCH" handshake --connect "127.0.0.1:$port" --tls \
                        --tls-ca "$TAPCA/ca.crt" --tls-name localhost --count 1 --warmup 0 \
                        --timeout 10 >/dev/null 2>"$WORK/sslsplit-probe.err"; then
                    RET=$port
                    return 0
                fi
                break
            fi
            kill -0 "$SSLSPLIT_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -TERM "$SSLSPLIT_PID" 2>/dev/null || true
        wait "$SSLSPLIT_PID" 2>/dev/null || true
        [ "$(id -u)" = 0 ] && [ "$try" = 1 ] || break
        log "  sslsplit did not serve as 'nobody' ($(cat "$WORK/sslsplit.log" \
            "$WORK/sslsplit-probe.err" 2>/dev/null | tail -n 2 | tr '\n' ' ')); retrying with -u root"
        user_opts=(-u root)
    done
    log "tls.sh: sslsplit did not start: $(tail -n 5 "$WORK/sslsplit.log")"
    return 1
}

# CPU time (utime + stime, all threads) of a process and its children, in
# seconds with 2 decimals.
cpu_of() { # pid
    local tck pids p total=0 fields
    tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
    pids="$1 $(ps -o pid= --ppid "$1" 2>/dev/null | tr '\n' ' ')"
    for p in $pids; do
        [ -r "/proc/$p/stat" ] || continue
        fields=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # after "pid (comm) ": state is field 1, utime 12, stime 13
        total=$((total + $(echo "$fields" | awk '{ print $12 + $13 }')))
    done
    awk -v t="$total" -v h="$tck" 'BEGIN { printf "%.2f", t / h }'
}

# ---------------------------------------------------------- measurements
# Results are kept as files $WORK/r/<key> holding one value per line.

declare -A CUR=() # this run's values, for the ratios within one run
record() { echo "$2" >>"$WORK/r/$1"; CUR[$1]=$2; }

ratio() { # a b -> a/b with 2 decimals, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b == 0) print "-";
                                     else printf "%.2f", a / b }'
}
record_ratio() { # key numerator-key denominator-key: ratio within this run
    local r
    r=$(ratio "${CUR[$2]:-}" "${CUR[$3]:-}")
    [ "$r" = - ] || echo "$r" >>"$WORK/r/$1"
}

median() { # key [decimals] -> median of the recorded values, or "-"
    local f=$WORK/r/$1 n d=${2:-1}
    [ -s "$f" ] || { echo "-"; return; }
    n=$(wc -l <"$f")
    sort -g "$f" | awk -v n="$n" -v d="$d" '{ v[NR] = $1 }
        END { if (n % 2) printf "%.*f", d, v[(n + 1) / 2];
              else printf "%.*f", d, (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

spread() { # key -> (max - min) / median in %, or "-"
    local f=$WORK/r/$1 m
    [ -s "$f" ] || { echo "-"; return; }
    m=$(median "$1" 6)
    sort -g "$f" | awk -v m="$m" 'NR == 1 { lo = $1 } { hi = $1 }
        END { if (m + 0 == 0 || NR < 2) print "-"; else printf "%.0f%%", (hi - lo) / m * 100 }'
}

run_speed() { # cipher
    local c=$1 v
    v=$(aes_gcm_mbps "$c" "$SPEED_SECONDS")
    [ -n "$v" ] || { log "  speed $c: FAILED"; return 0; }
    record "speed.$c" "$v"
    log "  $(printf '%-22s %9s MB/s' "speed.$c" "$v")"
}

declare -A PORT=() CLIENT_TLS=() RELAY_PID=()
client_args() { # path -> the imapbench connection options for that path
    case "$1" in
        plain) echo "--connect 127.0.0.1:${PORT[plain]}" ;;
        direct) echo "--connect 127.0.0.1:${PORT[direct]} --tls --tls-ca $PKI/testca.crt --tls-name localhost" ;;
        *) echo "--connect 127.0.0.1:${PORT[$1]} --tls --tls-ca $TAPCA/ca.crt --tls-name localhost" ;;
    esac
}

note_tls() { # path output-line
    local v c
    v=$(kv "$2" tls || true); c=$(kv "$2" cipher || true)
    [ -n "$v" ] && CLIENT_TLS[$1]="$v $c"
    return 0
}

run_fetch() { # path
    local p=$1 out c0=0 c1 rp=${RELAY_PID[$1]:-}
    local args
    read -r -a args <<<"$(client_args "$p")"
    [ -n "$rp" ] && c0=$(cpu_of "$rp")
    if ! out=$("$IMAPBENCH" fetch "${args[@]}" --total-mib "$TLS_MIB" --timeout 600 \
                 2>"$WORK/last.err"); then
        log "  fetch.$p: FAILED: $(tail -n 3 "$WORK/last.err")"
        return 0
    fi
    record "fetch.$p" "$(kv "$out" mbps)"
    note_tls "$p" "$out"
    local extra=""
    if [ -n "$rp" ]; then
        c1=$(cpu_of "$rp")
        # relay CPU seconds per 10^9 bytes (the warm-up FETCH included)
        local bytes lit cps
        bytes=$(kv "$out" bytes); lit=$(kv "$out" literal)
        cps=$(awk -v a="$c0" -v b="$c1" -v n="$bytes" -v l="$lit" \
              'BEGIN { printf "%.2f", (b - a) / ((n + l) / 1e9) }')
        record "fetch.$p.cpu" "$cps"
        extra="  relay CPU $cps s/GB"
    fi
    log "  $(printf '%-22s %9s MB/s%s' "fetch.$p" "$(kv "$out" mbps)" "$extra")"
}

run_handshake() { # path [parallel]
    local p=$1 par=${2:-1} out c0=0 c1 rp=${RELAY_PID[$1]:-} key=hs.$1
    local args
    [ "$par" -gt 1 ] && key=hsp.$1
    read -r -a args <<<"$(client_args "$p")"
    [ -n "$rp" ] && c0=$(cpu_of "$rp")
    if ! out=$("$IMAPBENCH" handshake "${args[@]}" --count "$HS_COUNT" --duration "$HS_SECONDS" \
                 --warmup 5 --parallel "$par" --timeout 300 2>"$WORK/last.err"); then
        log "  $key: FAILED: $(tail -n 3 "$WORK/last.err")"
        return 0
    fi
    local n
    n=$(kv "$out" count)
    record "$key" "$(kv "$out" sessions_per_s)"
    record "$key.p50" "$(awk -v u="$(kv "$out" p50_us)" 'BEGIN { printf "%.3f", u / 1000 }')"
    note_tls "$p" "$out"
    local extra=""
    if [ -n "$rp" ]; then
        c1=$(cpu_of "$rp")
        # relay CPU ms per session (the 5 warm-up sessions included)
        local cms
        cms=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v w="$((5 * par))" \
              'BEGIN { printf "%.3f", (b - a) * 1000 / (n + w) }')
        record "$key.cpu" "$cms"
        extra="  relay CPU $cms ms/session"
    fi
    log "  $(printf '%-22s %9s sessions/s  p50 %s ms  (%s sessions)%s' "$key" \
        "$(kv "$out" sessions_per_s)" "$(tail -n 1 "$WORK/r/$key.p50")" "$n" "$extra")"
}

log "machine: $(nproc 2>/dev/null || echo ?) CPUs, $(uname -sr), $(openssl version)"
log "imaptap: $IMAPTAP ${IMAPTAP_ARGS:-}"
log "tools:   $FASTSERVER, $IMAPBENCH"
[ "$WITH_SSLSPLIT" = 1 ] && log "sslsplit: $(command -v sslsplit) $(sslsplit -V 2>&1 | head -n 1) ${SSLSPLIT_ARGS:-}"
T0=$(date +%s)

# One fastserver per path, so that each one's log tells what its
# upstream-leg handshakes negotiated.
start_fastserver plain; PORT[plain]=$RET
start_fastserver direct tls; PORT[direct]=$RET
start_fastserver imaptap tls; FAST_TAP=$RET
start_imaptap "$FAST_TAP"; PORT[imaptap]=$RET; RELAY_PID[imaptap]=$IMAPTAP_PID
PATHS=(plain direct imaptap)
if [ "$WITH_SSLSPLIT" = 1 ]; then
    start_fastserver sslsplit tls; FAST_SPLIT=$RET
    if start_sslsplit "$FAST_SPLIT"; then
        PORT[sslsplit]=$RET; RELAY_PID[sslsplit]=$SSLSPLIT_PID
        PATHS+=(sslsplit)
    else
        WITH_SSLSPLIT=0
    fi
fi
log "plain :${PORT[plain]}  direct TLS :${PORT[direct]}  imaptap :${PORT[imaptap]} -> :$FAST_TAP${PORT[sslsplit]:+  sslsplit :${PORT[sslsplit]} -> :$FAST_SPLIT}"
log ""
log "$REPS run(s), interleaved; per run: openssl speed (${SPEED_SECONDS} s each), FETCH $TLS_MIB MiB"
log "(literal $MSG_SIZE), $HS_COUNT sessions or ${HS_SECONDS} s per session-rate figure"

for ((rep = 1; rep <= REPS; rep++)); do
    log ""
    log "run $rep/$REPS"
    CUR=()
    run_speed aes-128-gcm
    run_speed aes-256-gcm
    for p in "${PATHS[@]}"; do run_fetch "$p"; done
    for p in "${PATHS[@]}"; do run_handshake "$p"; done
    if [ "$HS_PARALLEL" -gt 1 ]; then
        for p in "${PATHS[@]}"; do run_handshake "$p" "$HS_PARALLEL"; done
    fi
    # ratios within the run: the VM's speed drifts between runs, much less
    # within one
    for p in "${PATHS[@]}"; do
        record_ratio "fetch.$p.xd" "fetch.$p" fetch.direct
        record_ratio "fetch.$p.x128" "fetch.$p" speed.aes-128-gcm
        record_ratio "fetch.$p.x256" "fetch.$p" speed.aes-256-gcm
        record_ratio "hs.$p.xd" "hs.$p" hs.direct
        record_ratio "hsp.$p.xd" "hsp.$p" hsp.direct
    done
done

# ---------------------------------------------------------------- summary
xm() { local r; r=$(median "$1" 2); [ "$r" = - ] && echo - || echo "x$r"; }

upstream_tls() { # path -> "TLSv1.3 TLS_AES_... (N full, M resumed)" from its fastserver log
    local f=$WORK/fastserver-$1.log
    [ -f "$f" ] || { echo "-"; return; }
    awk '/^fastserver: TLS / && !/failed/ {
            k = $3 " " $4; n[k]++; if ($5 == "resumed") r[k]++ }
         END { for (k in n) printf "%s%s (%d handshakes, %d resumed)", sep, k, n[k], r[k] + 0; sep = "; " }' "$f"
}

: >"$RESULTS.tmp"
emit() { echo "$1=$2" >>"$RESULTS.tmp"; }

# ratios are medians of the per-run ratios (same run, paired), not ratios
# of the medians
a128=$(median speed.aes-128-gcm); a256=$(median speed.aes-256-gcm)
emit aes128gcm_mbps "$a128"; emit aes256gcm_mbps "$a256"
for p in "${PATHS[@]}"; do
    emit "fetch_${p}_mbps" "$(median "fetch.$p")"
    [ "$p" = direct ] || emit "fetch_${p}_ratio" "$(median "fetch.$p.xd" 2)"
    if [ "$p" != plain ]; then
        emit "fetch_${p}_aes128_ratio" "$(median "fetch.$p.x128" 2)"
        emit "fetch_${p}_aes256_ratio" "$(median "fetch.$p.x256" 2)"
    fi
    if [ -n "${RELAY_PID[$p]:-}" ]; then emit "fetch_${p}_cpu_s_per_gb" "$(median "fetch.$p.cpu" 2)"; fi
done
for p in "${PATHS[@]}"; do
    emit "hs_${p}_per_s" "$(median "hs.$p")"
    emit "hs_${p}_p50_ms" "$(median "hs.$p.p50" 3)"
    [ "$p" = direct ] || emit "hs_${p}_ratio" "$(median "hs.$p.xd" 2)"
    if [ -n "${RELAY_PID[$p]:-}" ]; then emit "hs_${p}_cpu_ms" "$(median "hs.$p.cpu" 3)"; fi
    if [ "$HS_PARALLEL" -gt 1 ]; then
        emit "hsp_${p}_per_s" "$(median "hsp.$p")"
        [ "$p" = direct ] || emit "hsp_${p}_ratio" "$(median "hsp.$p.xd" 2)"
        if [ -n "${RELAY_PID[$p]:-}" ]; then emit "hsp_${p}_cpu_ms" "$(median "hsp.$p.cpu" 3)"; fi
    fi
done
for p in "${PATHS[@]}"; do
    [ -n "${CLIENT_TLS[$p]:-}" ] && emit "tls_${p}_client_leg" "$(echo "${CLIENT_TLS[$p]}" | tr ' ' '/')"
done
emit reps "$REPS"; emit fetch_mib "$TLS_MIB"; emit hs_count "$HS_COUNT"; emit hs_seconds "$HS_SECONDS"
mkdir -p "$(dirname "$RESULTS")"
mv "$RESULTS.tmp" "$RESULTS"

declare -A LABEL=([plain]="plain TCP, no TLS (reference)" [direct]="direct TLS"
                  [imaptap]="imaptap, TLS both legs" [sslsplit]="sslsplit, TLS both legs")
row() { printf '%-32s %10s %9s %9s %9s %11s %7s\n' "$@"; }
echo
echo "imaptap TLS benchmark: medians of $REPS run(s), $(nproc 2>/dev/null || echo ?) CPUs, $(( $(date +%s) - T0 )) s"
echo "AES-GCM on one core (openssl speed -evp, 16 KiB blocks): AES-128-GCM $a128 MB/s, AES-256-GCM $a256 MB/s"
echo "(x ...: median of the ratios within each run; spread: (max - min) / median of the"
echo " path's figure over the runs, above ~15% the machine was busy or its speed drifted)"
echo
row "FETCH $TLS_MIB MiB, literal $MSG_SIZE" "MB/s" "x direct" "x AES128" "x AES256" "relay s/GB" "spread"
row "--------------------------------" "----------" "---------" "---------" "---------" "-----------" "-------"
for p in "${PATHS[@]}"; do
    v=$(median "fetch.$p")
    c=""; [ -n "${RELAY_PID[$p]:-}" ] && c=$(median "fetch.$p.cpu" 2)
    if [ "$p" = plain ]; then
        row "${LABEL[$p]}" "$v" "$(xm "fetch.$p.xd")" "" "" "" "$(spread "fetch.$p")"
    else
        row "${LABEL[$p]}" "$v" "$(xm "fetch.$p.xd")" "$(xm "fetch.$p.x128")" \
            "$(xm "fetch.$p.x256")" "$c" "$(spread "fetch.$p")"
    fi
done
echo
row "New sessions, one at a time" "sessions/s" "x direct" "p50 ms" "" "relay ms/s." "spread"
row "--------------------------------" "----------" "---------" "---------" "" "-----------" "-------"
for p in "${PATHS[@]}"; do
    v=$(median "hs.$p")
    c=""; [ -n "${RELAY_PID[$p]:-}" ] && c=$(median "hs.$p.cpu" 3)
    row "${LABEL[$p]}" "$v" "$(xm "hs.$p.xd")" "$(median "hs.$p.p50" 2)" "" "$c" "$(spread "hs.$p")"
done
if [ "$HS_PARALLEL" -gt 1 ]; then
    echo
    row "New sessions, $HS_PARALLEL clients at once" "sessions/s" "x direct" "" "" "relay ms/s." "spread"
    row "--------------------------------" "----------" "---------" "" "" "-----------" "-------"
    for p in "${PATHS[@]}"; do
        v=$(median "hsp.$p")
        c=""; [ -n "${RELAY_PID[$p]:-}" ] && c=$(median "hsp.$p.cpu" 3)
        row "${LABEL[$p]}" "$v" "$(xm "hsp.$p.xd")" "" "" "$c" "$(spread "hsp.$p")"
    done
fi
echo
echo "negotiated (client leg as imapbench saw it; upstream leg from fastserver's log):"
for p in "${PATHS[@]}"; do
    [ "$p" = plain ] && continue
    if [ "$p" = direct ]; then
        printf '  %-9s %s\n' "$p" "${CLIENT_TLS[$p]:--}"
    else
        printf '  %-9s client leg %s; upstream leg %s\n' "$p" "${CLIENT_TLS[$p]:--}" "$(upstream_tls "$p")"
    fi
done
echo
echo "key=value results: $RESULTS"
echo "RESULT $(tr '\n' ' ' <"$RESULTS" | sed 's/ $//')"
