#!/usr/bin/env bash
# Table-maintenance benchmark: does a table stay fast after a long stream? See
# bench/maintenance.py and docs/benchmarks.md.
#
#   bench/maintenance.sh           10M-row insert stream and a 1M-update stream (about 15 min)
#   bench/maintenance.sh --quick   tiny sizes, only proves the benchmark runs
#   other arguments go to bench/maintenance.py, e.g. --workloads update --override update_steps=300
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

WORK="${BENCH_DIR:-$(mktemp -d /tmp/pgdelta-maintenance.XXXXXX)}"
mkdir -p "$WORK"
if [ "${BENCH_KEEP:-0}" != 1 ] && [ -z "${BENCH_DIR:-}" ]; then
    trap 'rm -rf "$WORK"' EXIT
fi
python3 bench/maintenance.py --size "$size" --work "$WORK" --pgdelta "$CARGO_TARGET_DIR/release/pgdelta" "${args[@]}"
