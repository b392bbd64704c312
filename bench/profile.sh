#!/usr/bin/env bash
# Where pgdelta spends its time on one workload (end to end into Delta; WORKLOAD=insert by
# default, or wide: 50 columns of seven types).
#
#   bench/profile.sh [ROWS]              perf record -e cpu-clock (sampling; this VM has no
#                                        hardware counters, so `perf stat -e instructions`
#                                        reports "not supported" but cpu-clock sampling works)
#   PROFILER=callgrind bench/profile.sh [ROWS]   valgrind --tool=callgrind (exact instruction
#                                        counts, ~50x slower: keep ROWS small, e.g. 20000)
#
# Uses the release binaries of bench/run.sh (build them first). Prints the top functions.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-300000}"
WORKLOAD="${WORKLOAD:-insert}"
PROFILER="${PROFILER:-perf}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pgdelta/target-release}"
BIN="$CARGO_TARGET_DIR/release"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/pgdelta-profile.XXXXXX)}"
mkdir -p "$WORK"
case "$PROFILER" in
    perf) prefix="perf record -e cpu-clock -F 499 -o $WORK/perf.data" ;;
    callgrind) prefix="valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.out" ;;
    *) echo "PROFILER must be perf or callgrind" >&2; exit 2 ;;
esac
python3 bench/bench.py --size quick --work "$WORK" --pgdelta "$BIN/pgdelta" \
    --decode-bench "$BIN/pgdelta-decode-bench" --workloads "$WORKLOAD" --skip pg_recvlogical decode debezium \
    --no-latency --override "$WORKLOAD=$ROWS" --pgdelta-prefix "$prefix" >&2
echo "profile data in $WORK"
if [ "$PROFILER" = perf ]; then
    perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -60
else
    callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2>/dev/null | head -60
    echo "--- inclusive ---"
    callgrind_annotate --inclusive=yes "$WORK/callgrind.out" 2>/dev/null | head -60
fi
