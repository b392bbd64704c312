#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, builds with the
# cache outside the checkout, checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The build without Kafka support (scripts/demo.sh's) still compiles and is lint-clean.
cargo clippy --locked --no-default-features --lib --bins -- -D warnings
# Its refusal of Kafka mode and of object stores, naming the feature.
cargo test --locked --no-default-features --lib --bins -- kafka build_without
bash scripts/fuzz.sh 10   # the parsers must survive a bounded fuzzing run
# The vendored crates' own tests, which cover what pgdelta changed in them (their PGDELTA.md).
for crate in pgwire-replication async-trait; do
    (cd "vendor/$crate" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/vendor" cargo test --locked --quiet)
done
# --all-targets: no doc-test run (the crate has none) closing the output with "0 passed".
cargo test --locked --no-fail-fast --all-targets "$@"
# The version matrix: tests/versions.rs runs the core path on 13 to 18; the direct-mode,
# snapshot and schema, type, TLS, reliability and slot-safety tests also run on the newest.
PGDELTA_TEST_PG_VERSION=18 cargo test --locked --no-fail-fast --test direct_mode \
    --test snapshot_and_schema --test types --test tls --test reliability --test slot_safety "$@"
