# Sourced by the scripts: keeps the cargo build cache outside the checkout, shared by runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pgdelta/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"
