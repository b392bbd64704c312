//! Delta tables on a real S3-protocol server (s3s-fs on loopback): the whole direct-mode path,
//! errors at start, a store that goes away mid-stream, and a stale writer losing a commit race;
//! and the direct-mode path on Azure Blob Storage (the Azurite emulator).

mod support;

mod harness;

use std::process::Command;
use std::time::Duration;

use std::collections::BTreeMap;

use harness::azure::{self, Azurite};
use harness::s3::{S3Server, SECRET_KEY};
use harness::{
    assert_txn_versions_strictly_increase, cluster_with_db, kill9, publication_exists, slot_exists,
    terminate, wait_for, Pgdelta, DB,
};
use support::{delta_as_strings_on_store, pg_as_strings, read_delta_cdf_on_store, PgCluster};

const PIPELINE: &str = r#"
[pipelines.shop]
tables = ["public.customers", "public.orders"]
delta_root = "s3://pgdelta/lake"
batch_size = 500
batch_interval_ms = 200
large_transaction_events = 2000
"#;

const CUSTOMERS: &str = "SELECT id::text, name FROM customers";
const CUSTOMERS_WITH_EMAIL: &str =
    "SELECT id::text, name, coalesce(email, '<<NULL>>') FROM customers";
const ORDERS: &str = "SELECT id::text, customer::text, amount::text FROM orders";

fn shop(cluster: &PgCluster) {
    cluster.psql(
        DB,
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         CREATE TABLE orders (id int PRIMARY KEY, customer int, amount numeric(10,2));
         INSERT INTO customers SELECT i, 'c' || i FROM generate_series(1, 1000) i;",
    );
}

/// An object store a test runs pgdelta against.
trait Store {
    /// The standard environment (`AWS_*`, `AZURE_*`) that reaches it, with no pgdelta config.
    fn env(&self) -> Vec<(String, String)>;
    /// The same settings as delta-rs storage options, for the independent reader.
    fn storage_options(&self) -> BTreeMap<String, String>;
    fn table_url(&self, path: &str) -> String;
    /// The credential that must never be printed.
    fn secret(&self) -> &'static str;
}

impl Store for S3Server {
    fn env(&self) -> Vec<(String, String)> {
        S3Server::env(self)
    }
    fn storage_options(&self) -> BTreeMap<String, String> {
        S3Server::storage_options(self)
    }
    fn table_url(&self, path: &str) -> String {
        S3Server::table_url(self, path)
    }
    fn secret(&self) -> &'static str {
        SECRET_KEY
    }
}

impl Store for Azurite {
    fn env(&self) -> Vec<(String, String)> {
        Azurite::env(self)
    }
    fn storage_options(&self) -> BTreeMap<String, String> {
        Azurite::storage_options(self)
    }
    fn table_url(&self, path: &str) -> String {
        Azurite::table_url(self, path)
    }
    fn secret(&self) -> &'static str {
        azure::ACCOUNT_KEY
    }
}

/// `pgdelta <args>` with the store reached through the standard environment only.
fn with_env(mut command: Command, store: &impl Store) -> Command {
    command.envs(store.env());
    command
}

fn run_ok(pg: &Pgdelta, store: &impl Store, args: &[&str]) -> String {
    let output = with_env(pg.command(args), store).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "pgdelta {args:?} failed:\n{stderr}"
    );
    assert!(
        !stderr.contains(store.secret()),
        "the secret key is in the log:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !stdout.contains(store.secret()),
        "the secret key is in the output:\n{stdout}"
    );
    stdout
}

fn catch_up(pg: &Pgdelta, store: &impl Store) {
    run_ok(
        pg,
        store,
        &["pipeline", "start", "shop", "--exit-when-caught-up"],
    );
}

fn assert_equal(cluster: &PgCluster, store: &impl Store) {
    let options = store.storage_options();
    let customers = delta_as_strings_on_store(&store.table_url("lake/public/customers"), &options);
    let query = match customers.first().is_some_and(|row| row.len() == 3) {
        true => CUSTOMERS_WITH_EMAIL,
        false => CUSTOMERS,
    };
    assert_eq!(customers, pg_as_strings(cluster, DB, query));
    let orders = delta_as_strings_on_store(&store.table_url("lake/public/orders"), &options);
    assert_eq!(orders, pg_as_strings(cluster, DB, ORDERS));
}

/// Rounds of inserts, updates and deletes, with a large transaction and a column added at
/// round 8.
fn write_rounds(cluster: &PgCluster, rounds: std::ops::Range<i32>) {
    for round in rounds {
        let base = 2000 + round * 10;
        cluster.psql(
            DB,
            &format!(
                "BEGIN;
                 INSERT INTO orders SELECT i, i % 100, i * 1.5 FROM generate_series({base}, {base} + 9) i;
                 UPDATE customers SET name = name || '+' WHERE id % 20 = {round};
                 DELETE FROM customers WHERE id = {round} + 1;
                 COMMIT;"
            ),
        );
        if round == 8 {
            // A large transaction: staged in chunks on the store, committed once.
            cluster.psql(
                DB,
                "INSERT INTO orders SELECT i, 1, 2.5 FROM generate_series(100000, 105000) i",
            );
            cluster.psql(DB, "ALTER TABLE customers ADD COLUMN email text");
            cluster.psql(
                DB,
                "INSERT INTO customers VALUES (5000, 'new', 'n@example.com')",
            );
        }
    }
}

/// The orders' change feed holds each of the `expected` inserts once.
fn assert_each_order_inserted_once(store: &impl Store, expected: usize) {
    let cdf = read_delta_cdf_on_store(
        &store.table_url("lake/public/orders"),
        &store.storage_options(),
    );
    let inserts = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["_change_type"] == "insert")
        .count();
    assert_eq!(
        inserts, expected,
        "every order inserted once in the change feed"
    );
}

#[test]
fn snapshot_streaming_large_transactions_and_a_kill_on_s3_end_equal_to_postgres() {
    let s3 = S3Server::start();
    let cluster = cluster_with_db();
    shop(&cluster);
    let pg = Pgdelta::new(&cluster, PIPELINE);

    catch_up(&pg, &s3);
    assert_equal(&cluster, &s3);

    let mut running = with_env(pg.command(&["pipeline", "start", "shop"]), &s3)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(pg.dir.path().join("run.log")).unwrap())
        .spawn()
        .unwrap();
    write_rounds(&cluster, 0..12);
    kill9(&mut running);
    write_rounds(&cluster, 12..20);
    let _ = running.wait();
    catch_up(&pg, &s3);
    assert_equal(&cluster, &s3);
    for table in ["customers", "orders"] {
        let dir = s3.data_dir().join(format!("pgdelta/lake/public/{table}"));
        assert_txn_versions_strictly_increase(&dir);
    }
    let log = std::fs::read_to_string(pg.dir.path().join("run.log")).unwrap();
    assert!(!log.contains(SECRET_KEY), "the secret key is in the log");

    assert_each_order_inserted_once(&s3, 200 + 5001);

    let status: Vec<serde_json::Value> =
        serde_json::from_str(&run_ok(&pg, &s3, &["pipeline", "status", "shop", "--json"])).unwrap();
    for table in &status {
        assert!(
            table["delta_path"]
                .as_str()
                .unwrap()
                .starts_with("s3://pgdelta/lake/"),
            "{table}"
        );
        assert!(table["delta_version"].as_u64().unwrap() > 0, "{table}");
        assert!(table["error"].is_null(), "{table}");
    }
    let rows = run_ok(
        &pg,
        &s3,
        &["pipeline", "inspect", "shop", "--table", "public.customers"],
    );
    assert!(rows.contains("n@example.com"), "{rows}");
    run_ok(&pg, &s3, &["validate", "shop", "--check", "rows"]);
    run_ok(&pg, &s3, &["validate", "shop", "--check", "checksum"]);
}

#[test]
fn snapshot_streaming_a_large_transaction_and_a_kill_on_azure_blob_storage_end_equal() {
    core_path_on(&Azurite::start(), "");
}

#[test]
fn with_deletion_vectors_on_s3_snapshot_streaming_and_a_kill_end_equal() {
    let s3 = S3Server::start();
    core_path_on(&s3, "write_mode = \"deletion_vectors\"\n");
    let vectors = s3.keys("lake/public/customers/");
    assert!(
        vectors.iter().any(|key| key.contains("deletion_vector_")),
        "no deletion vector was written: {vectors:?}"
    );
}

/// Snapshot, streaming with a large transaction and a column added, SIGKILL and restart,
/// `status`, `validate`, `doctor`, on tables under `lake` in `store`; `extra` is added to
/// the pipeline's settings.
fn core_path_on(store: &impl Store, extra: &str) {
    let cluster = cluster_with_db();
    shop(&cluster);
    let pipeline = PIPELINE.replace("s3://pgdelta/lake", &store.table_url("lake"));
    let pg = Pgdelta::new(&cluster, &format!("{pipeline}{extra}"));
    catch_up(&pg, store);
    assert_equal(&cluster, store);

    let log = pg.dir.path().join("run.log");
    let mut running = with_env(pg.command(&["pipeline", "start", "shop"]), store)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    write_rounds(&cluster, 0..10);
    kill9(&mut running);
    write_rounds(&cluster, 10..14);
    let _ = running.wait();
    catch_up(&pg, store);
    assert_equal(&cluster, store);
    assert_each_order_inserted_once(store, 140 + 5001);
    let log = std::fs::read_to_string(log).unwrap();
    assert!(!log.contains(store.secret()), "the secret is in the log");

    let status: Vec<serde_json::Value> = serde_json::from_str(&run_ok(
        &pg,
        store,
        &["pipeline", "status", "shop", "--json"],
    ))
    .unwrap();
    for table in &status {
        let path = table["delta_path"].as_str().unwrap();
        assert!(path.starts_with(&store.table_url("lake/")), "{table}");
        assert!(table["delta_version"].as_u64().unwrap() > 0, "{table}");
    }
    run_ok(&pg, store, &["validate", "shop", "--check", "checksum"]);
    let doctor = run_ok(&pg, store, &["doctor", "shop"]);
    assert!(
        doctor.contains(&store.table_url("lake/public/orders")),
        "{doctor}"
    );
}

#[test]
fn wrong_credentials_a_missing_bucket_or_a_dead_endpoint_fail_at_start_before_any_slot() {
    let s3 = S3Server::start();
    let cluster = cluster_with_db();
    shop(&cluster);
    let cases = [
        (
            "wrong secret",
            "[storage]\naws_secret_access_key = \"not-the-secret-value\"\n",
            "s3://pgdelta/lake",
        ),
        ("missing bucket", "", "s3://no-such-bucket/lake"),
        (
            "dead endpoint",
            &format!(
                "[storage]\naws_endpoint_url = \"http://127.0.0.1:{}\"\nmax_retries = \"1\"\nretry_timeout = \"3s\"\n",
                support::free_port()
            ),
            "s3://pgdelta/lake",
        ),
    ];
    for (what, storage, root) in cases {
        let pg = Pgdelta::new(
            &cluster,
            &format!("{storage}{}", PIPELINE.replace("s3://pgdelta/lake", root)),
        );
        let started = std::time::Instant::now();
        let output = with_env(pg.command(&["pipeline", "start", "shop"]), &s3)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: started:\n{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains(&format!("{root}/public/")),
            "{what}: the URL is not named:\n{stderr}"
        );
        for secret in [SECRET_KEY, "not-the-secret-value"] {
            assert!(
                !stderr.contains(secret),
                "{what}: a secret is in the error:\n{stderr}"
            );
        }
        assert!(
            !slot_exists(&cluster, "pgdelta_shop"),
            "{what}: a slot was created"
        );
        assert!(
            !publication_exists(&cluster, "pgdelta_shop"),
            "{what}: a publication was created"
        );
    }
}

#[test]
fn a_store_that_goes_away_mid_stream_is_retried_and_nothing_is_confirmed_before_it_is_written() {
    let mut s3 = S3Server::start();
    let cluster = cluster_with_db();
    shop(&cluster);
    let pg = Pgdelta::new(
        &cluster,
        &format!("[storage]\nmax_retries = \"1\"\nretry_timeout = \"2s\"\nconnect_timeout = \"1s\"\n{PIPELINE}"),
    );
    catch_up(&pg, &s3);
    let mut running = with_env(pg.command(&["pipeline", "start", "shop"]), &s3)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(pg.dir.path().join("run.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(pg.dir.path().join("run.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(60), || log()
            .contains("replication started")),
        "{}",
        log()
    );

    s3.stop();
    cluster.psql(
        DB,
        "INSERT INTO orders SELECT i, 1, 1.0 FROM generate_series(1, 50) i",
    );
    let written_at = cluster
        .psql(DB, "SELECT pg_current_wal_lsn()")
        .trim()
        .to_string();
    // A commit, or the read of the tables when the stream starts, fails and is retried.
    assert!(
        wait_for(Duration::from_secs(60), || log().contains("; trying again")),
        "{}",
        log()
    );
    let confirmed = cluster
        .psql(
            DB,
            &format!(
                "SELECT confirmed_flush_lsn >= '{written_at}' FROM pg_replication_slots WHERE slot_name = 'pgdelta_shop'"
            ),
        )
        .trim()
        .to_string();
    assert_eq!(
        confirmed, "f",
        "a position was confirmed while its commit failed"
    );
    assert!(
        running.try_wait().unwrap().is_none(),
        "pgdelta gave up:\n{}",
        log()
    );

    s3.start_again();
    let orders = || {
        delta_as_strings_on_store(&s3.table_url("lake/public/orders"), &s3.storage_options()).len()
    };
    assert!(
        wait_for(Duration::from_secs(120), || orders() == 50),
        "{}",
        log()
    );
    assert!(terminate(&mut running).success(), "{}", log());
    assert_equal(&cluster, &s3);
}

/// The commit path's race on the store: a writer whose view of the table is stale commits
/// after another one did. It loses with a conflict; the table holds the winner's commit once.
#[test]
fn a_stale_writer_loses_the_commit_race_on_s3_and_nothing_is_doubled() {
    stale_writer_loses_the_commit_race(&S3Server::start());
}

#[test]
fn a_stale_writer_loses_the_commit_race_on_azure_blob_storage_and_nothing_is_doubled() {
    stale_writer_loses_the_commit_race(&Azurite::start());
}

/// Two writers opened at the same version: the second's commit of the same version fails
/// with the conflict (the store's put-if-absent), and the table holds the first's row only.
fn stale_writer_loses_the_commit_race(store: &impl Store) {
    use pgdelta::event::{Lsn, TableName};
    use pgdelta::sink::delta::{DeltaTableWriter, TableLayout};
    let mut storage = pgdelta::config::StorageOptions::default();
    for (key, value) in store.storage_options() {
        storage.insert(key, value);
    }
    let url = store.table_url("race/t");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let table = TableName::new("public", "t");
        let open = || async {
            let layout = TableLayout {
                columns: vec![
                    deltalake::kernel::StructField::new(
                        "id",
                        deltalake::kernel::DataType::INTEGER,
                        true,
                    ),
                    deltalake::kernel::StructField::new(
                        "v",
                        deltalake::kernel::DataType::STRING,
                        true,
                    ),
                ],
                partition_by: Vec::new(),
                properties: Default::default(),
                write_mode: Default::default(),
            };
            DeltaTableWriter::open_or_create(
                &url,
                &storage,
                table.clone(),
                "pgdelta-race-public.t".into(),
                vec!["id".into()],
                layout,
            )
            .await
            .unwrap()
        };
        let mut first = open().await;
        let mut second = open().await;
        first.check_object_store(false).await.unwrap();
        let changes = |writer: &DeltaTableWriter, v: &str| {
            let mut changes = writer.new_changes();
            changes.push(insert_event(&table, &["1", v])).unwrap();
            changes
        };
        let winner = changes(&first, "first");
        first
            .apply_from(&winner, Some(Lsn(100)), &[])
            .await
            .unwrap();
        let loser = changes(&second, "second");
        let error = second
            .apply_from(&loser, Some(Lsn(100)), &[])
            .await
            .expect_err("the stale writer's commit must lose");
        assert!(!error.is_transient(), "a conflict is not retried: {error}");
    });
    let rows = delta_as_strings_on_store(&url, &store.storage_options());
    assert_eq!(rows, vec![vec!["1".to_string(), "first".to_string()]]);
}

fn insert_event(table: &pgdelta::event::TableName, values: &[&str]) -> pgdelta::event::ChangeEvent {
    use pgdelta::event::{Cell, ChangeEvent, ColumnSchema, EventMetadata, Operation, TableSchema};
    let column = |name: &str, type_oid, is_key| ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier: -1,
        type_name: None,
        is_key,
    };
    ChangeEvent {
        operation: Operation::Insert,
        schema: std::sync::Arc::new(TableSchema {
            table: table.clone(),
            columns: vec![column("id", 23, true), column("v", 25, false)],
        }),
        data: Some(values.iter().map(|v| Cell::Text(v.to_string())).collect()),
        before: None,
        before_is_whole_row: false,
        commit_timestamp: chrono::Utc::now(),
        metadata: EventMetadata {
            database: "db".into(),
            lsn: pgdelta::event::Lsn::default(),
            tx_id: None,
            snapshot: false,
        },
    }
}
