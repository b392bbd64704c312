//! Direct mode end to end: a real PostgreSQL cluster, the pgdelta binary, and an independent
//! Delta reader (the Python `deltalake` package).

mod harness;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{assert_each_key_inserted_once, cluster_with_db, Pgdelta, DB};
use serde_json::Value;
use support::{
    delta_as_strings, delta_replayed_as_strings, pg_as_strings, read_delta_cdf, read_delta_meta,
    PgCluster,
};

fn change_types(cdf: &Value, version: i64) -> Vec<String> {
    let mut types: Vec<String> = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["_commit_version"] == version)
        .map(|r| r["_change_type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    types
}

/// How the tests' pipelines write updates and deletes: each test runs in both modes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    CopyOnWrite,
    DeletionVectors,
}

impl Mode {
    /// The pipeline's `write_mode` line.
    fn setting(self) -> &'static str {
        match self {
            Mode::CopyOnWrite => "write_mode = \"copy_on_write\"\n",
            Mode::DeletionVectors => "write_mode = \"deletion_vectors\"\n",
        }
    }

    /// With deletion vectors: the table has them, and a second reader (the log replayed by
    /// hand, Parquet through pyarrow, the vectors through pyroaring) sees the same rows.
    fn check_table(self, path: &std::path::Path, expected: &[Vec<String>]) {
        if self == Mode::CopyOnWrite {
            return;
        }
        let protocol = &read_delta_meta(path)["protocol"];
        assert_eq!(protocol["min_reader_version"], 3, "{protocol}");
        assert!(
            protocol["reader_features"]
                .to_string()
                .contains("deletionVectors"),
            "{protocol}"
        );
        let (rows, vectors) = delta_replayed_as_strings(path);
        assert_eq!(rows, expected, "rows replayed with pyarrow and pyroaring");
        assert!(vectors > 0, "no deletion vector in {}", path.display());
    }
}

/// Two tables; orders is partitioned by region.
fn two_tables(mode: Mode) -> String {
    format!(
        "[pipelines.shop]\ntables = [\"public.customers\", \"public.orders\"]\n\
         delta_root = \"DELTA_ROOT\"\nbatch_size = 1000\nbatch_interval_ms = 200\n{}\
         \n[pipelines.shop.table.\"public.orders\"]\npartition_by = [\"region\"]\n",
        mode.setting()
    )
}

const CUSTOMERS_AND_ORDERS: &str = "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, balance numeric(10,2), active boolean);
     CREATE TABLE orders (region text, order_id bigint, customer_id int, amount numeric(12,2),
                          PRIMARY KEY (region, order_id));";
const CUSTOMERS: &str = "SELECT id::text, name, balance::text, active::text FROM customers";
const ORDERS: &str = "SELECT region, order_id::text, customer_id::text, amount::text FROM orders";

#[test]
fn inserts_updates_deletes_and_truncates_reach_equal_delta_tables_with_cdf() {
    equal_tables_with_cdf(Mode::CopyOnWrite);
}

#[test]
fn with_deletion_vectors_inserts_updates_deletes_and_truncates_reach_equal_tables_with_cdf() {
    equal_tables_with_cdf(Mode::DeletionVectors);
}

fn equal_tables_with_cdf(mode: Mode) {
    let cluster = cluster_with_db();
    cluster.psql(DB, CUSTOMERS_AND_ORDERS);
    if mode == Mode::DeletionVectors {
        // The old rows of customers come from the WAL, those of orders from the data files.
        cluster.psql(DB, "ALTER TABLE customers REPLICA IDENTITY FULL");
    }
    let pgdelta = Pgdelta::new(&cluster, &two_tables(mode));
    pgdelta.catch_up("shop"); // creates publication, slot and Delta tables

    cluster.psql(
        DB,
        "INSERT INTO customers VALUES (1, 'Ada', 10.50, true), (2, 'Grace', 0, false), (3, 'Linus', NULL, NULL);
         INSERT INTO orders VALUES ('eu', 1, 1, 99.99), ('us', 1, 2, 5.00), ('eu', 2, 3, 1.25);",
    );
    pgdelta.catch_up("shop");
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "customers")),
        pg_as_strings(&cluster, DB, CUSTOMERS)
    );

    cluster.psql(
        DB,
        "UPDATE customers SET balance = balance + 1, name = 'Ada L.' WHERE id = 1;
         DELETE FROM customers WHERE id = 2;
         BEGIN; UPDATE orders SET amount = 100 WHERE region = 'eu' AND order_id = 1;
                DELETE FROM orders WHERE region = 'us'; COMMIT;",
    );
    pgdelta.catch_up("shop");
    mode.check_table(
        &pgdelta.table_path("public", "customers"),
        &pg_as_strings(&cluster, DB, CUSTOMERS),
    );
    mode.check_table(
        &pgdelta.table_path("public", "orders"),
        &pg_as_strings(&cluster, DB, ORDERS),
    );
    cluster.psql(
        DB,
        "TRUNCATE orders; INSERT INTO orders VALUES ('apac', 7, 3, 70.00);",
    );
    pgdelta.catch_up("shop");

    let customers_path = pgdelta.table_path("public", "customers");
    let orders_path = pgdelta.table_path("public", "orders");
    assert_eq!(
        delta_as_strings(&customers_path),
        pg_as_strings(&cluster, DB, CUSTOMERS)
    );
    assert_eq!(
        delta_as_strings(&orders_path),
        pg_as_strings(&cluster, DB, ORDERS)
    );

    let meta = read_delta_meta(&customers_path);
    assert_eq!(meta["configuration"]["delta.enableChangeDataFeed"], "true");
    let columns: Vec<&str> = meta["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["id", "name", "balance", "active"]);
    assert_eq!(
        read_delta_meta(&orders_path)["partition_columns"],
        serde_json::json!(["region"])
    );

    // Version 0 creates the table, version 1 is the (empty) initial snapshot; then each
    // catch-up with changes is one commit.
    let cdf = read_delta_cdf(&customers_path, 0);
    assert!(change_types(&cdf, 1).is_empty());
    assert_eq!(change_types(&cdf, 2), ["insert", "insert", "insert"]);
    let update_and_delete = ["delete", "update_postimage", "update_preimage"];
    assert_eq!(change_types(&cdf, 3), update_and_delete);
    let preimage = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["_change_type"] == "update_preimage" && r["_commit_version"] == 3)
        .unwrap();
    assert_eq!(
        (&preimage["name"], &preimage["balance"]),
        (&"Ada".into(), &"10.50".into()),
        "{preimage}"
    );
    let orders_cdf = read_delta_cdf(&orders_path, 0);
    assert_eq!(change_types(&orders_cdf, 3), update_and_delete);
    assert_eq!(change_types(&orders_cdf, 4), ["delete", "delete", "insert"]);

    // pgdelta's own readers apply the deletion vectors: validate compares every row.
    let validated = pgdelta.run_ok(&["validate", "shop", "--check", "checksum"]);
    assert!(validated.contains("PASS"), "{validated}");
    let status = pgdelta.status("shop");
    assert_eq!(status.len(), 2);
    let customers = status
        .iter()
        .find(|s| s["table"] == "public.customers")
        .unwrap();
    assert_eq!(customers["rows"], 2);
    assert_eq!(customers["delta_version"], 3);
    assert!(customers["last_applied_lsn"]
        .as_str()
        .unwrap()
        .contains('/'));
}

#[test]
fn composite_keys_and_key_changing_updates() {
    composite_and_changing_keys(Mode::CopyOnWrite);
}

#[test]
fn with_deletion_vectors_composite_keys_and_key_changing_updates() {
    composite_and_changing_keys(Mode::DeletionVectors);
}

fn composite_and_changing_keys(mode: Mode) {
    let cluster = cluster_with_db();
    cluster.psql(DB, CUSTOMERS_AND_ORDERS);
    let pgdelta = Pgdelta::new(&cluster, &two_tables(mode));
    pgdelta.catch_up("shop");
    cluster.psql(
        DB,
        "INSERT INTO orders VALUES ('eu', 1, 1, 1), ('eu', 2, 1, 2), ('us', 1, 1, 3), ('eu', 3, 1, 4);
         UPDATE orders SET order_id = 10 WHERE region = 'eu' AND order_id = 1;
         UPDATE orders SET region = 'apac' WHERE region = 'us';",
    );
    pgdelta.catch_up("shop");
    cluster.psql(
        DB,
        "UPDATE orders SET order_id = order_id + 100 WHERE region = 'eu' AND order_id <> 3;",
    );
    pgdelta.catch_up("shop");
    let expected = pg_as_strings(&cluster, DB, ORDERS);
    let path = pgdelta.table_path("public", "orders");
    assert_eq!(delta_as_strings(&path), expected);
    mode.check_table(&path, &expected);
}

#[test]
fn table_without_primary_key_is_refused_unless_a_key_is_configured() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE events (code text NOT NULL, note text); ALTER TABLE events REPLICA IDENTITY FULL;",
    );
    let refused = Pgdelta::new(
        &cluster,
        "[pipelines.ev]\ntables = [\"public.events\"]\ndelta_root = \"DELTA_ROOT\"\n",
    );
    let output = refused.run(&["pipeline", "start", "ev", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("public.events has no primary key"),
        "{stderr}"
    );
    assert!(stderr.contains("key = "), "{stderr}");
    assert_eq!(
        cluster.psql(DB, "SELECT count(*) FROM pg_replication_slots"),
        "0\n"
    );
    assert!(!refused.table_path("public", "events").exists());

    let keyed = Pgdelta::new(
        &cluster,
        "[pipelines.ev]\ntables = [\"public.events\"]\ndelta_root = \"DELTA_ROOT\"\n\
         [pipelines.ev.table.\"public.events\"]\nkey = [\"code\"]\n",
    );
    keyed.catch_up("ev");
    cluster.psql(
        DB,
        "INSERT INTO events VALUES ('a', 'first'), ('b', 'second'), ('c', NULL);
         UPDATE events SET note = 'changed' WHERE code = 'a';
         DELETE FROM events WHERE code = 'b';",
    );
    keyed.catch_up("ev");
    assert_eq!(
        delta_as_strings(&keyed.table_path("public", "events")),
        pg_as_strings(&cluster, DB, "SELECT code, note FROM events")
    );
}

#[test]
fn unknown_config_keys_and_missing_tables_fail_before_any_slot_exists() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE t (id int PRIMARY KEY)");
    let typo = Pgdelta::new(
        &cluster,
        "[pipelines.p]\ntables = [\"public.t\"]\ndelta_root = \"DELTA_ROOT\"\nbatch_sise = 5\n",
    );
    let stderr =
        String::from_utf8_lossy(&typo.run(&["pipeline", "start", "p"]).stderr).into_owned();
    assert!(
        stderr.contains("batch_sise") && stderr.contains("pgdelta.toml"),
        "{stderr}"
    );

    let missing = Pgdelta::new(
        &cluster,
        "[pipelines.p]\ntables = [\"public.t\", \"public.nope\"]\ndelta_root = \"DELTA_ROOT\"\n",
    );
    let stderr =
        String::from_utf8_lossy(&missing.run(&["pipeline", "start", "p"]).stderr).into_owned();
    assert!(stderr.contains("public.nope does not exist"), "{stderr}");
    assert_eq!(
        cluster.psql(DB, "SELECT count(*) FROM pg_replication_slots"),
        "0\n"
    );
}

fn insert_transactions(cluster: &PgCluster, from: i64, count: i64, rows_each: i64) {
    let mut sql = String::new();
    for tx in 0..count {
        let first = from + tx * rows_each;
        sql.push_str(&format!(
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series({first}, {}) g;\n",
            first + rows_each - 1
        ));
    }
    cluster.psql(DB, &sql);
}

fn items(mode: Mode) -> String {
    format!(
        "[pipelines.items]\ntables = [\"public.items\"]\ndelta_root = \"DELTA_ROOT\"\n\
         batch_size = 200\nbatch_interval_ms = 100\n{}",
        mode.setting()
    )
}

fn wait_for_rows(pgdelta: &Pgdelta, pipeline: &str, rows: u64, limit: Duration) {
    let started = Instant::now();
    loop {
        let status = pgdelta.status(pipeline);
        if status[0]["rows"].as_u64() == Some(rows) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "Delta did not reach {rows} rows: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every key appears in the change feed as exactly one insert and nothing else.
#[test]
fn sigkill_mid_stream_then_restart_applies_every_transaction_exactly_once() {
    sigkill_then_restart(Mode::CopyOnWrite);
}

/// Updates and deletes stream while pgdelta is killed: no row is lost, none is left twice
/// (a deletion vector missed or applied twice would show as a second or a missing row).
#[test]
fn with_deletion_vectors_sigkill_mid_stream_then_restart_applies_every_transaction_exactly_once() {
    sigkill_then_restart(Mode::DeletionVectors);
}

fn update_transactions(cluster: &PgCluster, round: i64) {
    let mut sql = String::new();
    for tx in 0..40 {
        sql.push_str(&format!(
            "UPDATE items SET label = 'round {round} tx {tx}' WHERE id % 40 = {tx} AND id < 2000;\n"
        ));
    }
    sql.push_str(&format!("DELETE FROM items WHERE id % 97 = {round};\n"));
    cluster.psql(DB, &sql);
}

fn sigkill_then_restart(mode: Mode) {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, &items(mode));
    pgdelta.catch_up("items");

    let mut running = pgdelta.spawn("items", "first.log");
    insert_transactions(&cluster, 0, 100, 20);
    std::thread::sleep(Duration::from_millis(300));
    if mode == Mode::DeletionVectors {
        update_transactions(&cluster, 1);
    }
    insert_transactions(&cluster, 2_000, 100, 20);
    if mode == Mode::DeletionVectors {
        update_transactions(&cluster, 2);
    }
    running.kill().unwrap(); // SIGKILL: no chance to finish the batch
    running.wait().unwrap();
    insert_transactions(&cluster, 4_000, 50, 20);
    if mode == Mode::DeletionVectors {
        update_transactions(&cluster, 3);
    }

    pgdelta.catch_up("items");
    let path = pgdelta.table_path("public", "items");
    let expected = pg_as_strings(&cluster, DB, "SELECT id::text, label FROM items");
    assert_eq!(delta_as_strings(&path), expected);
    match mode {
        Mode::CopyOnWrite => assert_each_key_inserted_once(&path, 5_000),
        Mode::DeletionVectors => mode.check_table(&path, &expected),
    }
    // A further catch-up with nothing new changes nothing.
    let version = pgdelta.status("items")[0]["delta_version"].clone();
    pgdelta.catch_up("items");
    assert_eq!(pgdelta.status("items")[0]["delta_version"], version);
}

#[test]
fn restarting_postgres_while_streaming_reconnects_and_finishes_equal() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, &items(Mode::CopyOnWrite));
    pgdelta.catch_up("items");

    let mut running = pgdelta.spawn("items", "run.log");
    insert_transactions(&cluster, 0, 50, 10);
    wait_for_rows(&pgdelta, "items", 500, Duration::from_secs(60));
    cluster.stop_fast();
    std::thread::sleep(Duration::from_secs(1));
    cluster.start_again();
    insert_transactions(&cluster, 500, 50, 10);
    cluster.stop_immediate();
    cluster.start_again();
    cluster.psql(
        DB,
        "UPDATE items SET label = 'updated' WHERE id % 7 = 0; DELETE FROM items WHERE id % 11 = 0;",
    );
    let expected = pg_as_strings(&cluster, DB, "SELECT id::text, label FROM items");
    wait_for_rows(
        &pgdelta,
        "items",
        expected.len() as u64,
        Duration::from_secs(120),
    );

    // SIGTERM: graceful stop, exit 0.
    Command::new("kill")
        .args(["-TERM", &running.id().to_string()])
        .status()
        .unwrap();
    let exit = running.wait().unwrap();
    assert!(
        exit.success(),
        "pgdelta exited with {exit:?}:\n{}",
        pgdelta.log("run.log")
    );
    let log = pgdelta.log("run.log");
    assert!(log.contains("reconnecting"), "{log}");
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "items")),
        expected
    );
}

/// Scaling direct mode: one slot is one stream, so a database's tables are split over two
/// pipelines (each with its own slot and publication), run as two processes at once, as on
/// two machines. Each ends equal to PostgreSQL, and `pgdelta status` run anywhere with the
/// same configuration shows both.
#[test]
fn tables_split_over_two_pipelines_stream_side_by_side_and_status_shows_both() {
    let cluster = cluster_with_db();
    cluster.psql(DB, CUSTOMERS_AND_ORDERS);
    let pipelines = "[pipelines.people]\ntables = [\"public.customers\"]\ndelta_root = \"DELTA_ROOT\"\n\
        batch_interval_ms = 100\n\
        [pipelines.sales]\ntables = [\"public.orders\"]\ndelta_root = \"DELTA_ROOT\"\nbatch_interval_ms = 100\n";
    let pgdelta = Pgdelta::new(&cluster, pipelines);
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let (people_port, sales_port) = (support::free_port(), support::free_port());
    let mut people = pgdelta.spawn_args(
        &[
            "pipeline",
            "start",
            "people",
            "--http-listen",
            &listen(people_port),
        ],
        "people.log",
    );
    let mut sales = pgdelta.spawn_args(
        &[
            "pipeline",
            "start",
            "sales",
            "--http-listen",
            &listen(sales_port),
        ],
        "sales.log",
    );
    for round in 0..5 {
        cluster.psql(
            DB,
            &format!(
                "INSERT INTO customers SELECT g, 'c' || g, g, true FROM generate_series({lo}, {hi}) g;
                 INSERT INTO orders SELECT 'eu', g, g, g FROM generate_series({lo}, {hi}) g;
                 UPDATE customers SET balance = balance + 1 WHERE id % 3 = {round} % 3;
                 DELETE FROM orders WHERE order_id % 7 = {round};",
                lo = round * 100,
                hi = round * 100 + 99
            ),
        );
    }
    let expected = |query: &str| pg_as_strings(&cluster, DB, query);
    let equal = || {
        delta_as_strings(&pgdelta.table_path("public", "customers")) == expected(CUSTOMERS)
            && delta_as_strings(&pgdelta.table_path("public", "orders")) == expected(ORDERS)
    };
    let caught_up = harness::wait_for(Duration::from_secs(120), equal);
    harness::terminate(&mut people);
    harness::terminate(&mut sales);
    assert!(
        caught_up,
        "the two pipelines did not reach PostgreSQL\n--- people ---\n{}\n--- sales ---\n{}",
        pgdelta.log("people.log"),
        pgdelta.log("sales.log")
    );
    let slots = cluster.psql(DB, "SELECT slot_name FROM pg_replication_slots ORDER BY 1");
    assert_eq!(slots, "pgdelta_people\npgdelta_sales\n");
    let out = pgdelta.run_ok(&["status", "--json"]);
    let statuses: Vec<Value> = serde_json::from_str(&out).unwrap();
    let shown: Vec<(String, String)> = statuses
        .iter()
        .map(|s| {
            (
                s["pipeline"].as_str().unwrap().to_string(),
                s["table"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("people".to_string(), "public.customers".to_string()),
            ("sales".to_string(), "public.orders".to_string())
        ],
        "{out}"
    );
    for status in &statuses {
        assert!(status["last_committed_by"].is_string(), "{status}");
        assert!(status["rows"].as_u64() > Some(0), "{status}");
    }
}
