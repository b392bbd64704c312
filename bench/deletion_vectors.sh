#!/usr/bin/env bash
# Write-mode benchmark: updates and deletes on a large table, copy-on-write against deletion
# vectors, both against pg_recvlogical on the same WAL. See bench/deletion_vectors.py and
# docs/benchmarks.md.
#
#   bench/deletion_vectors.sh           1M-row tables, 300k changes per workload
#   bench/deletion_vectors.sh --quick   tiny sizes, only proves the benchmark runs
#   other arguments go to bench/deletion_vectors.py, e.g. --workloads uniform --override rows=10000000
source "$(dirname "$0")/release.sh" pgdelta-write-modes "$@"
python3 bench/deletion_vectors.py --size "$size" --work "$WORK" --pgdelta "$BIN/pgdelta" "${args[@]}"
