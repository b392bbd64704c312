#!/usr/bin/env bash
# Table-maintenance benchmark: does a table stay fast after a long stream? See
# bench/maintenance.py and docs/benchmarks.md.
#
#   bench/maintenance.sh           10M-row insert stream and a 1M-update stream (about 15 min)
#   bench/maintenance.sh --quick   tiny sizes, only proves the benchmark runs
#   other arguments go to bench/maintenance.py, e.g. --workloads update --override update_steps=300
source "$(dirname "$0")/release.sh" pgdelta-maintenance "$@"
python3 bench/maintenance.py --size "$size" --work "$WORK" --pgdelta "$BIN/pgdelta" "${args[@]}"
