# Sourced by the benchmark scripts (bench/run.sh, maintenance.sh, deletion_vectors.sh): installs
# what they need, builds the release binaries and makes a work directory.
#   source bench/release.sh <work-dir-prefix> "$@"
# sets $size (default, or quick with --quick), $args (the other arguments), $BIN and $WORK.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work_prefix="$1"
shift
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
BIN="$CARGO_TARGET_DIR/release"

WORK="${BENCH_DIR:-$(mktemp -d "/tmp/$work_prefix.XXXXXX")}"
mkdir -p "$WORK"
if [ "${BENCH_KEEP:-0}" != 1 ] && [ -z "${BENCH_DIR:-}" ]; then
    trap 'rm -rf "$WORK"' EXIT
fi
