#!/usr/bin/env bash
# Runs every libFuzzer target for longer than scripts/test does.
#
#   bash bench/fuzz.sh [--duration SECONDS] [--jobs N] [--build-dir DIR]
#                      [--no-build] [TARGET...]
#
# Each target (default: all of tests/fuzz/fuzz_*.c) runs for --duration
# seconds (default 600), one target after another, with --jobs workers
# (default: the cores, at most 2 on a shared machine), under nice. Inputs
# that reach new code are kept in OUT/NAME/ (default
# BUILD_DIR/fuzz-long/), never in the checked-in corpus; the corpus is only
# read. A crash stops that target, leaves crash-<sha1> (or leak-, timeout-,
# oom-) in OUT/NAME/, prints the command that reproduces it, and the script
# goes on with the next target; it exits 1 when any target found something.
#
# Turning a crash into a regression seed:
#   1. reproduce: BUILD_DIR/tests/fuzz_NAME OUT/NAME/crash-<sha1>
#   2. optionally shrink it: BUILD_DIR/tests/fuzz_NAME -minimize_crash=1 \
#        -runs=10000 -exact_artifact_path=/tmp/min OUT/NAME/crash-<sha1>
#   3. fix the code, then copy the input into the corpus under a name
#      that says what broke:  cp /tmp/min tests/fuzz/corpus/NAME/<what-broke>
#   4. ctest --test-dir BUILD_DIR -R fuzz_NAME_corpus runs it with every
#      scripts/test from then on.
# To fold new finds into the checked-in corpus (keeping it small), merge:
#   BUILD_DIR/tests/fuzz_NAME -merge=1 tests/fuzz/corpus/NAME OUT/NAME
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$ROOT/build-asan
DURATION=600
JOBS=$(nproc 2>/dev/null || echo 1)
[ "$JOBS" -gt 2 ] && JOBS=2
BUILD=1
TARGETS=()

while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION=$2; shift 2 ;;
	--jobs) JOBS=$2; shift 2 ;;
	--build-dir) BUILD_DIR=$(cd "$2" 2>/dev/null && pwd || echo "$2"); shift 2 ;;
	--no-build) BUILD=0; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	*) TARGETS+=("$1"); shift ;;
	esac
done
OUT=${OUT:-$BUILD_DIR/fuzz-long}

if [ ${#TARGETS[@]} -eq 0 ]; then
	for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
		n=$(basename "$f" .c)
		TARGETS+=("${n#fuzz_}")
	done
fi

if [ "$BUILD" = 1 ]; then
	cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_C_COMPILER=clang-14 -DIMAPTAP_SANITIZE=ON \
		-DIMAPTAP_FUZZ=ON -DIMAPTAP_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	for t in "${TARGETS[@]}"; do
		cmake --build "$BUILD_DIR" -j "$JOBS" --target "fuzz_$t" >/dev/null
	done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
found=0
for t in "${TARGETS[@]}"; do
	bin=$BUILD_DIR/tests/fuzz_$t
	corpus=$ROOT/tests/fuzz/corpus/$t
	dir=$OUT/$t
	if [ ! -x "$bin" ]; then
		echo "fuzz.sh: no $bin (build with -DIMAPTAP_FUZZ=ON)" >&2
		exit 2
	fi
	mkdir -p "$dir/corpus" "$corpus"
	echo "== fuzz_$t: ${DURATION}s, $JOBS job(s); new inputs in $dir"
	before=$(ls "$dir" | grep -cE '^(crash|leak|timeout|oom)-' || true)
	# the first directory collects new inputs; the corpus is read only
	(cd "$dir" && nice -n 10 "$bin" -max_total_time="$DURATION" -timeout=10 \
		-rss_limit_mb=2048 -max_len=65536 -jobs="$JOBS" -workers="$JOBS" \
		-artifact_prefix="$dir/" -print_final_stats=1 "$dir/corpus" "$corpus" \
		>"$dir/run.log" 2>&1 || true)
	grep -hE '^#[0-9]+ +DONE|^stat::number_of_executed_units' "$dir"/fuzz-*.log "$dir/run.log" \
		2>/dev/null | tail -"$JOBS" || true
	after=$(ls "$dir" | grep -cE '^(crash|leak|timeout|oom)-' || true)
	if [ "$after" -gt "$before" ]; then
		found=1
		for a in $(ls -t "$dir" | grep -E '^(crash|leak|timeout|oom)-' | head -$((after - before))); do
			echo "   FOUND $dir/$a"
			echo "   reproduce: $bin $dir/$a"
		done
	else
		echo "   nothing found"
	fi
done
exit $found
