#!/usr/bin/env bash
# Write-mode benchmark: updates and deletes on a large table, copy-on-write against deletion
# vectors, both against pg_recvlogical on the same WAL. See bench/deletion_vectors.py and
# docs/benchmarks.md.
#
#   bench/deletion_vectors.sh           1M-row tables, 300k changes per workload
#   bench/deletion_vectors.sh --quick   tiny sizes, only proves the benchmark runs
#   other arguments go to bench/deletion_vectors.py, e.g. --workloads uniform --override rows=10000000
set -euo pipefail
cd "$(dirname "$0")/.."

size=default
args=()
for arg in "$@"; do
    case "$arg" in
        --quick) size=quick ;;
        *) args+=("$arg") ;;
    esac
done

bash scripts/setup.sh >&2
if [ ! -x /usr/bin/time ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pgdelta/target-release}"
source scripts/env.sh
printf 'bench: building release binaries in %s\n' "$CARGO_TARGET_DIR" >&2
cargo build --release --locked --quiet --bins

WORK="${BENCH_DIR:-$(mktemp -d /tmp/pgdelta-write-modes.XXXXXX)}"
mkdir -p "$WORK"
if [ "${BENCH_KEEP:-0}" != 1 ] && [ -z "${BENCH_DIR:-}" ]; then
    trap 'rm -rf "$WORK"' EXIT
fi
python3 bench/deletion_vectors.py --size "$size" --work "$WORK" --pgdelta "$CARGO_TARGET_DIR/release/pgdelta" "${args[@]}"
