#!/usr/bin/env bash
# Registers (or updates) a pipeline's Debezium PostgreSQL connector in Kafka Connect and prints
# its status. Uses the pgdelta CLI; the database password comes from the pgdelta configuration
# (PGDELTA_SOURCE_PASSWORD, password or password_file) and is never printed.
#
#   scripts/register-postgres-connector.sh <pipeline> [connect-url]
#
# PGDELTA_CONFIG names the configuration file (default pgdelta.toml); without connect-url the
# pipeline's [pipelines.<name>.kafka] connect_url is used. PGDELTA overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 <pipeline> [connect-url]" >&2
    exit 2
fi
PIPELINE="$1"
URL_ARGS=()
[ $# -eq 2 ] && URL_ARGS=(--connect-url "$2")

if [ -z "${PGDELTA:-}" ]; then
    source scripts/env.sh
    cargo build --locked --quiet
    PGDELTA="$CARGO_TARGET_DIR/debug/pgdelta"
fi

"$PGDELTA" connector config "$PIPELINE" >/dev/null # validates before anything is sent
"$PGDELTA" connector register "$PIPELINE" "${URL_ARGS[@]}"
"$PGDELTA" connector status "$PIPELINE" "${URL_ARGS[@]}"
