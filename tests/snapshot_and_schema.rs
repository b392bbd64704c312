//! Initial snapshot, tables added later, snapshot modes, schema evolution and TOAST, against
//! a real PostgreSQL and the pgdelta binary.

mod harness;
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{cluster_with_db, commit_operations, terminate, wait_for, Pgdelta, DB};
use support::{
    delta_as_strings, pg_as_strings, read_delta_cdf, read_delta_meta, read_delta_rows,
    read_delta_rows_by_id, render, PgCluster, NULL_MARKER,
};

fn pipeline(name: &str, tables: &[&str], extra: &str) -> String {
    let list = tables
        .iter()
        .map(|t| format!("\"public.{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let batch = if extra.contains("batch_size") {
        ""
    } else {
        "batch_size = 5000\n"
    };
    format!("[pipelines.{name}]\ntables = [{list}]\ndelta_root = \"DELTA_ROOT\"\n{batch}{extra}\n")
}

/// Keeps changing `accounts` from another connection until told to stop; each round touches
/// a few neighbouring keys, as application traffic does.
fn start_writer(cluster: &PgCluster, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let url = cluster.url(DB);
    std::thread::spawn(move || {
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            let sql = format!(
                "BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id BETWEEN {r} AND {r} + 9;
                 DELETE FROM accounts WHERE id = {d};
                 INSERT INTO accounts VALUES ({n}, 'late {n}', 0); COMMIT;",
                r = 500_000 + rounds * 10,
                d = 900_000 + rounds,
                n = 2_000_000 + rounds
            );
            let status = Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &url, "-c", &sql])
                .status()
                .unwrap();
            assert!(status.success());
            rounds += 1;
        }
        rounds
    })
}

fn wait_for_log(path: &Path, needle: &str, child: &mut std::process::Child) -> String {
    let started = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pgdelta exited ({status}) before logging '{needle}':\n{log}");
        }
        assert!(
            started.elapsed().as_secs() < 600,
            "no '{needle}' in:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn snapshot_of_a_million_rows_while_writers_change_the_table_has_no_gap_or_duplicate() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 'owner ' || g, g % 1000 FROM generate_series(1, 1000000) g;
         ANALYZE accounts;",
    );
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline("acc", &["accounts"], "snapshot_parallelism = 2"));

    // Writers run before, during and until the end of the copy.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&cluster, stop.clone());
    let log_path = pgdelta.dir.path().join("snapshot.log");
    let mut child = pgdelta
        .command(&["pipeline", "start", "acc", "--exit-when-caught-up"])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_for_log(&log_path, "initial snapshot committed", &mut child);
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(
        child.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    pgdelta.catch_up("acc"); // whatever the first run's marker did not cover

    let query = "SELECT id::text, owner, balance::text FROM accounts";
    let path = pgdelta.table_path("public", "accounts");
    let delta = delta_as_strings(&path);
    let expected = pg_as_strings(&cluster, DB, query);
    assert!(rounds > 0, "the writer never ran");
    assert_eq!(
        delta.len(),
        expected.len(),
        "row count differs ({rounds} writer rounds)"
    );
    assert!(
        delta == expected,
        "Delta differs from PostgreSQL after {rounds} writer rounds"
    );
    let mut ids: Vec<&String> = delta.iter().map(|r| &r[0]).collect();
    ids.dedup();
    assert_eq!(ids.len(), delta.len(), "a key is doubled");
}

#[test]
fn snapshot_rows_are_inserts_in_the_change_feed_and_modes_never_and_initial_only() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x'), (2, 'y');
         CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b VALUES (1, 'old');",
    );
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline("p", &["a"], "snapshot_mode = \"initial_only\""));
    let log = pgdelta.catch_up("p");
    assert!(log.contains("initial_only"), "{log}");
    let cdf = read_delta_cdf(&pgdelta.table_path("public", "a"), 0);
    let types: Vec<&str> = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_change_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["insert", "insert"]);

    // Table b joins later: the slot exists, so b is copied under a temporary slot's snapshot.
    cluster.psql(DB, "INSERT INTO a VALUES (3, 'z'); UPDATE b SET v = 'new';");
    pgdelta.configure(&pipeline("p", &["a", "b"], ""));
    pgdelta.catch_up("p");
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "a")),
        pg_as_strings(&cluster, DB, "SELECT id::text, v FROM a")
    );
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "b")),
        pg_as_strings(&cluster, DB, "SELECT id::text, v FROM b")
    );

    // snapshot_mode = never: what c held before is not copied, later changes stream.
    cluster.psql(
        DB,
        "CREATE TABLE c (id int PRIMARY KEY); INSERT INTO c VALUES (1);",
    );
    pgdelta.configure(&pipeline("q", &["c"], "snapshot_mode = \"never\""));
    pgdelta.catch_up("q");
    cluster.psql(DB, "INSERT INTO c VALUES (2);");
    pgdelta.catch_up("q");
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "c")),
        vec![vec!["2".to_string()]]
    );
}

#[test]
fn updates_that_leave_a_toasted_value_alone_keep_it_in_delta() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE docs (id int PRIMARY KEY, title text, body text)",
    );
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline("d", &["docs"], ""));
    pgdelta.catch_up("d");
    // 10 MB of incompressible-ish text is stored out of line (TOAST).
    cluster.psql(
        DB,
        "INSERT INTO docs SELECT 1, 'first', string_agg(md5(g::text), '') FROM generate_series(1, 330000) g;
         INSERT INTO docs VALUES (2, 'small', 'short body');",
    );
    pgdelta.catch_up("d");
    cluster.psql(DB, "UPDATE docs SET title = 'renamed' WHERE id = 1;");
    pgdelta.catch_up("d");
    // Both in one batch: the second update also leaves body untouched.
    cluster.psql(DB, "UPDATE docs SET title = 'again' WHERE id = 1; UPDATE docs SET title = 'twice' WHERE id = 1;");
    pgdelta.catch_up("d");
    let query = "SELECT id::text, title, md5(body), length(body)::text FROM docs";
    let delta = read_delta_rows(&pgdelta.table_path("public", "docs"));
    let mut summarized: Vec<Vec<String>> = delta["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let body = row[2].as_str().unwrap();
            vec![
                render(&row[0]),
                render(&row[1]),
                md5_hex(body),
                body.len().to_string(),
            ]
        })
        .collect();
    summarized.sort();
    assert_eq!(summarized, pg_as_strings(&cluster, DB, query));
}

/// MD5 of a value computed outside the test, so a 10 MB value is compared without printing it.
fn md5_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn added_columns_extend_delta_and_dropped_columns_keep_their_history() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE people (id int PRIMARY KEY, name text, nickname text)",
    );
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline("s", &["people", "pets"], ""));
    cluster.psql(DB, "CREATE TABLE pets (id int PRIMARY KEY, legs int)");
    pgdelta.catch_up("s");
    cluster.psql(DB, "INSERT INTO people VALUES (1, 'Ada', 'A');");
    pgdelta.catch_up("s");
    cluster.psql(
        DB,
        "ALTER TABLE people ADD COLUMN age int;
         INSERT INTO people VALUES (2, 'Grace', 'G', 85);
         UPDATE people SET age = 36 WHERE id = 1;",
    );
    pgdelta.catch_up("s");
    let path = pgdelta.table_path("public", "people");
    let columns: Vec<String> = read_delta_meta(&path)["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(columns, ["id", "name", "nickname", "age"]);
    assert_eq!(
        delta_as_strings(&path),
        pg_as_strings(
            &cluster,
            DB,
            "SELECT id::text, name, nickname, age::text FROM people"
        )
    );

    cluster.psql(
        DB,
        "ALTER TABLE people DROP COLUMN nickname; INSERT INTO people VALUES (3, 'Linus', 50);",
    );
    pgdelta.catch_up("s");
    let rows = delta_as_strings(&path);
    assert_eq!(rows.len(), 3);
    let linus = rows.iter().find(|r| r[0] == "3").unwrap();
    assert_eq!(
        linus[2], NULL_MARKER,
        "a dropped column is null from then on"
    );
    let ada = rows.iter().find(|r| r[0] == "1").unwrap();
    assert_eq!(ada[2], "A", "earlier rows keep the dropped column's values");

    // A type change Delta cannot widen stops that table, names the column and both types,
    // and the other table goes on.
    cluster.psql(
        DB,
        "ALTER TABLE people ALTER COLUMN age TYPE text; INSERT INTO people VALUES (4, 'Ken', 'old');
         INSERT INTO pets VALUES (1, 4);",
    );
    let output = pgdelta.run(&["pipeline", "start", "s", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("age") && stderr.contains("integer") && stderr.contains("string"),
        "{stderr}"
    );
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "pets")),
        vec![vec!["1".to_string(), "4".to_string()]]
    );
}

/// An `hstore` column added while the pipeline streams (pgoutput names its type) becomes the
/// same `map<string,string>` as one present at start (the catalog names it), and `validate
/// --check schema` agrees; also with the extension in a schema off the search path, where
/// the catalog says `ext.hstore` and pgoutput `hstore`.
#[test]
fn an_hstore_column_added_while_streaming_is_the_same_map_as_one_present_at_start() {
    let cluster = cluster_with_db();
    hstore_column_added_while_streaming(&cluster, DB, "CREATE EXTENSION hstore", "hstore");
    // Its own pipeline: a slot belongs to one database.
    cluster.create_database("cdc_ext");
    hstore_column_added_while_streaming(
        &cluster,
        "cdc_ext",
        "CREATE SCHEMA ext; CREATE EXTENSION hstore SCHEMA ext",
        "ext.hstore",
    );
}

fn hstore_column_added_while_streaming(
    cluster: &PgCluster,
    db: &str,
    extension: &str,
    hstore: &str,
) {
    cluster.psql(
        db,
        &format!(
            "{extension}; CREATE TABLE tagged (id int PRIMARY KEY, tags {hstore});
             INSERT INTO tagged VALUES (1, 'a=>1');"
        ),
    );
    let extra = "batch_interval_ms = 200\n";
    let pgdelta = Pgdelta::on_database(cluster, db, &pipeline(db, &["tagged"], extra));
    let rows = || pgdelta.status(db)[0]["rows"].as_u64();
    let mut child = pgdelta.spawn(db, "start.log");
    let waited = |what: &str, count: u64| {
        let done = wait_for(Duration::from_secs(120), || rows() == Some(count));
        assert!(done, "{db}: no {what}:\n{}", pgdelta.log("start.log"));
    };
    waited("initial snapshot", 1);
    cluster.psql(
        db,
        &format!(
            "ALTER TABLE tagged ADD COLUMN more {hstore};
             INSERT INTO tagged VALUES (2, 'b=>2', 'c=>3, d=>NULL');"
        ),
    );
    waited("row with the added column", 2);
    assert!(
        terminate(&mut child).success(),
        "{}",
        pgdelta.log("start.log")
    );

    let table = read_delta_rows_by_id(&pgdelta.table_path("public", "tagged"));
    assert_eq!(table.columns, ["id", "tags", "more"], "{db}");
    let map = "map<string,string>";
    assert_eq!(table.types, ["integer", map, map], "{db}: {}", table.raw);
    let more = table.column("more");
    assert_eq!(
        table.rows[1][more],
        serde_json::json!([["c", "3"], ["d", null]]),
        "{db}"
    );
    let output = pgdelta.run(&["validate", db, "--check", "schema"]);
    assert!(
        output.status.success(),
        "{db}: validate --check schema failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_large_transaction_lands_in_one_delta_commit_whatever_the_batch_size() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE big (id bigint PRIMARY KEY, payload text)");
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline("big", &["big"], "batch_size = 1000"));
    pgdelta.catch_up("big");
    cluster.psql(
        DB,
        "BEGIN;
         INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(1, 300000) g;
         UPDATE big SET payload = 'changed' WHERE id % 3 = 0;
         DELETE FROM big WHERE id % 5 = 0;
         COMMIT;",
    );
    pgdelta.catch_up("big");
    let cdf = read_delta_cdf(&pgdelta.table_path("public", "big"), 0);
    let versions: std::collections::BTreeSet<i64> = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_commit_version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "the transaction was split across Delta commits: {versions:?}"
    );
    let count = cdf["rows"].as_array().unwrap().len();
    assert_eq!(
        count, 240_000,
        "only the net inserts of the transaction appear"
    );
    let expected = cluster.psql(
        DB,
        "SELECT count(*), count(*) FILTER (WHERE payload = 'changed') FROM big",
    );
    let rows = read_delta_rows(&pgdelta.table_path("public", "big"));
    let changed = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[1] == "changed")
        .count();
    assert_eq!(
        expected.trim(),
        format!("{}|{changed}", rows["rows"].as_array().unwrap().len())
    );
}

fn latest_version(table: &std::path::Path) -> u64 {
    commit_operations(table)
        .last()
        .map_or(0, |(version, _)| *version)
}

/// A transaction larger than `large_transaction_events` is applied while it streams in:
/// an inserts-only table's rows are written in chunks and committed once (a WRITE, not a
/// MERGE), a table with updates and deletes is MERGEd once, both at the commit's LSN.
#[test]
fn a_large_transaction_is_applied_in_chunks_and_committed_once_per_table() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text, amount numeric(10,2));
         CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 3000) g;",
    );
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline(
        "chunks",
        &["events", "accounts"],
        "large_transaction_events = 5000",
    ));
    pgdelta.catch_up("chunks");
    let copied = latest_version(&pgdelta.table_path("public", "events"));
    cluster.psql(
        DB,
        "BEGIN;
         INSERT INTO events SELECT g, 'kind ' || (g % 7), g / 100.0 FROM generate_series(1, 60000) g;
         UPDATE accounts SET balance = balance - 1 WHERE id % 2 = 0;
         DELETE FROM accounts WHERE id % 10 = 1;
         INSERT INTO events SELECT g, 'late', NULL FROM generate_series(60001, 61000) g;
         COMMIT;
         UPDATE events SET kind = 'after' WHERE id = 1;",
    );
    let log = pgdelta.catch_up("chunks");
    assert!(log.contains("appended in one commit"), "{log}");
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "events")),
        pg_as_strings(&cluster, DB, "SELECT id, kind, amount FROM events")
    );
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "accounts")),
        pg_as_strings(&cluster, DB, "SELECT id, balance FROM accounts")
    );
    let events = commit_operations(&pgdelta.table_path("public", "events"));
    let writes: Vec<_> = events
        .iter()
        .filter(|(version, op)| *version > copied && op == "WRITE")
        .collect();
    assert_eq!(
        writes.len(),
        1,
        "the large transaction's inserts are one WRITE commit: {events:?}"
    );
    let cdf = read_delta_cdf(&pgdelta.table_path("public", "events"), writes[0].0 as i64);
    let in_write = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["_commit_version"].as_u64() == Some(writes[0].0))
        .count();
    assert_eq!(
        in_write, 61_000,
        "every insert of the transaction in that commit"
    );
    let accounts = commit_operations(&pgdelta.table_path("public", "accounts"));
    let merges = accounts.iter().filter(|(_, op)| op == "MERGE").count();
    assert_eq!(merges, 1, "one MERGE for the accounts: {accounts:?}");
    assert_txn_versions_increase(&pgdelta.table_path("public", "events"));
}

/// A large transaction that updates rows it inserted after a chunk was written is received
/// again and applied whole: the result is the same.
#[test]
fn a_large_transaction_that_revisits_its_own_inserts_is_applied_whole() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline(
        "revisit",
        &["items"],
        "large_transaction_events = 2000",
    ));
    pgdelta.catch_up("revisit");
    let copied = latest_version(&pgdelta.table_path("public", "items"));
    cluster.psql(
        DB,
        "BEGIN;
         INSERT INTO items SELECT g, 'new' FROM generate_series(1, 20000) g;
         UPDATE items SET label = 'updated' WHERE id % 4 = 0;
         DELETE FROM items WHERE id % 9 = 0;
         COMMIT;",
    );
    let log = pgdelta.catch_up("revisit");
    assert!(log.contains("receiving it again whole"), "{log}");
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "items")),
        pg_as_strings(&cluster, DB, "SELECT id, label FROM items")
    );
    let operations = commit_operations(&pgdelta.table_path("public", "items"));
    let data_commits = operations
        .iter()
        .filter(|(version, op)| *version > copied && (op == "MERGE" || op == "WRITE"))
        .count();
    assert_eq!(data_commits, 1, "{operations:?}");
}

fn assert_txn_versions_increase(table: &std::path::Path) {
    let mut last = None;
    for (version, operation) in commit_operations(table) {
        let text =
            std::fs::read_to_string(table.join(format!("_delta_log/{version:020}.json"))).unwrap();
        for line in text.lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(txn) = action["txn"]["version"].as_i64() {
                assert!(
                    last < Some(txn),
                    "{operation} at {version}: txn version went back"
                );
                last = Some(txn);
            }
        }
    }
}

/// A batch of inserts only is appended (a WRITE commit, no key lookups); a batch with
/// updates or deletes is MERGEd. Both read back equal to PostgreSQL with inserts in the CDF.
#[test]
fn insert_only_batches_are_appended_and_other_batches_merged() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE logs (id bigint PRIMARY KEY, line text)");
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline("appends", &["logs"], ""));
    pgdelta.catch_up("appends");
    let path = pgdelta.table_path("public", "logs");
    let copied = latest_version(&path);
    for round in 0..5 {
        cluster.psql(
            DB,
            &format!(
                "INSERT INTO logs SELECT g, 'line ' || g FROM generate_series({}, {}) g",
                round * 100 + 1,
                round * 100 + 100
            ),
        );
    }
    pgdelta.catch_up("appends");
    let appended = latest_version(&path);
    cluster.psql(
        DB,
        "UPDATE logs SET line = 'edited' WHERE id <= 10; INSERT INTO logs VALUES (1000, 'x');",
    );
    pgdelta.catch_up("appends");
    let operations: Vec<String> = commit_operations(&path)
        .into_iter()
        .filter(|(version, _)| *version > copied)
        .map(|(_, op)| op)
        .collect();
    assert_eq!(operations, vec!["WRITE", "MERGE"], "commits after the copy");
    let cdf = read_delta_cdf(&path, appended as i64);
    let inserted = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["_commit_version"].as_u64() == Some(appended) && r["_change_type"] == "insert"
        })
        .count();
    assert_eq!(inserted, 500);
    assert_eq!(
        delta_as_strings(&path),
        pg_as_strings(&cluster, DB, "SELECT id, line FROM logs")
    );
}

/// SIGKILL while a large transaction's chunks are being written: nothing of it is visible,
/// and the restart applies it whole, once.
#[test]
fn a_kill_during_a_large_transaction_exposes_nothing_and_the_restart_applies_it_once() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE bulk (id bigint PRIMARY KEY, payload text)",
    );
    let pgdelta = Pgdelta::new(&cluster, "");
    pgdelta.configure(&pipeline(
        "killed",
        &["bulk"],
        "large_transaction_events = 2000",
    ));
    pgdelta.catch_up("killed");
    let path = pgdelta.table_path("public", "bulk");
    let copied = latest_version(&path);
    let log_path = pgdelta.dir.path().join("killed.log");
    let mut running = pgdelta
        .command(&["pipeline", "start", "killed"])
        .env("PGDELTA_HTTP_LISTEN", "127.0.0.1:0")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    cluster.psql(
        DB,
        "INSERT INTO bulk SELECT g, repeat('p', 200) FROM generate_series(1, 200000) g",
    );
    wait_for_log(&log_path, "applying it as it streams in", &mut running);
    let _ = running.kill();
    let _ = running.wait();
    assert_eq!(
        latest_version(&path),
        copied,
        "nothing of the transaction may be committed before its end"
    );
    let log = pgdelta.catch_up("killed");
    assert!(log.contains("appended in one commit"), "{log}");
    let operations = commit_operations(&path);
    let after: Vec<&String> = operations
        .iter()
        .filter(|(version, _)| *version > copied)
        .map(|(_, op)| op)
        .collect();
    assert_eq!(after, vec!["WRITE"], "{operations:?}");
    let count = read_delta_rows(&path)["rows"].as_array().unwrap().len();
    assert_eq!(count, 200_000);
}
