#!/usr/bin/env bash
# The whole product on embedded defaults: installs what is missing, builds pgdelta, starts a
# throwaway PostgreSQL (wal_level=logical) on a free port, creates customers and orders, makes
# inserts/updates/deletes, replicates them into local Delta tables and prints the tables and
# their change data feed. Nothing outside a temporary directory is touched.
# The build leaves out the `kafka` feature: direct mode needs no librdkafka, whose C build is
# the slowest part of a fresh one (`cargo build`, the default features, includes it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh demo
source scripts/env.sh
cargo build --locked --quiet --no-default-features --bin pgdelta
PGDELTA="$CARGO_TARGET_DIR/debug/pgdelta"

WORK="${PGDELTA_DEMO_DIR:-$(mktemp -d /tmp/pgdelta-demo.XXXXXX)}"
mkdir -p "$WORK"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$WORK"

echo "== starting PostgreSQL on 127.0.0.1:$PORT (data in $WORK/pg)"
as_postgres "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust --no-sync >/dev/null
cat >>"$WORK/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
wal_level = logical
max_slot_wal_keep_size = '1GB'
CONF
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/postgres.log" -w start >/dev/null
trap 'as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true' EXIT

sql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d cdcdb -c "$1"; }
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE cdcdb"
sql "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, created_at timestamptz DEFAULT now());
     CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id int REFERENCES customers,
                          region text NOT NULL, amount numeric(12,2), status text)"

cat >"$WORK/pgdelta.toml" <<TOML
[source]
url = "postgres://postgres@127.0.0.1:$PORT/cdcdb"
sslmode = "disable"

[pipelines.postgres-cdc]
tables = ["public.customers", "public.orders"]
delta_root = "$WORK/delta-lake"

[pipelines.postgres-cdc.table."public.orders"]
partition_by = ["region"]
TOML
export PGDELTA_CONFIG="$WORK/pgdelta.toml"

echo "== first run: creates the publication, the replication slot and the Delta tables"
"$PGDELTA" pipeline start postgres-cdc --exit-when-caught-up

echo "== inserts, then updates and deletes, in PostgreSQL"
sql "INSERT INTO customers (id, name, email) VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', 'grace@example.com'), (3, 'Linus', NULL);
     INSERT INTO orders VALUES (100, 1, 'eu', 42.50, 'new'), (101, 2, 'us', 9.99, 'new'), (102, 3, 'eu', 120.00, 'new')"
"$PGDELTA" pipeline start postgres-cdc --exit-when-caught-up
sql "UPDATE customers SET email = 'ada@lovelace.org' WHERE id = 1;
     UPDATE orders SET status = 'shipped' WHERE order_id IN (100, 102);
     DELETE FROM orders WHERE order_id = 101;
     DELETE FROM customers WHERE id = 2"
"$PGDELTA" pipeline start postgres-cdc --exit-when-caught-up

echo
"$PGDELTA" pipeline status postgres-cdc
echo
"$PGDELTA" pipeline inspect postgres-cdc
"$PGDELTA" pipeline inspect postgres-cdc --changes
echo "Delta tables are in $WORK/delta-lake (PostgreSQL is stopped on exit)."
