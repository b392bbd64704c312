#!/usr/bin/env bash
# Fuzzes pgdelta's parsers with cargo-fuzz (libFuzzer) for a bounded time per target.
# Usage: scripts/fuzz.sh [seconds per target, default 30] [target ...]
# The machine has one stable toolchain; RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export CARGO_TARGET_DIR="$HOME/.cache/pgdelta/target-fuzz"
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
    # Seeds are committed; what the fuzzer finds goes to a scratch corpus.
    scratch="$(mktemp -d)"
    cp "corpus/$target"/* "$scratch"/ 2>/dev/null || true
    echo "fuzz: $target for ${seconds}s"
    cargo fuzz run --release "$target" "$scratch" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
    rm -rf "$scratch"
done
