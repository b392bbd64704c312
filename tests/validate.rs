//! `pgdelta validate` end to end: a real PostgreSQL cluster, the pgdelta binary to replicate,
//! and the Python `deltalake` package to tamper with the Delta table behind the pipeline's back.

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{Pgdelta, DB};
use serde_json::Value;
use support::PgCluster;

const PIPELINE: &str = r#"
[pipelines.shop]
tables = ["public.items"]
delta_root = "DELTA_ROOT"
batch_interval_ms = 200
"#;

/// Every common type, with NULLs, edge values and text that needs quoting in arrays.
const ITEMS: &str = r#"
CREATE TABLE items (
    id int PRIMARY KEY, name text, price numeric(10,2), active boolean, born date,
    seen timestamp, seen_tz timestamptz, score float8, ratio float4, big bigint,
    small smallint, code varchar(12), tags text[], counts int[], blob bytea, doc jsonb,
    amount numeric, at_time time, uid uuid);
INSERT INTO items
SELECT i, 'item ' || i, (i * 1.25)::numeric(10,2), i % 2 = 0, date '2024-01-01' + i,
       timestamp '2024-01-01 00:00:00' + i * interval '1.5 second',
       timestamptz '2024-01-01 00:00:00+02' + i * interval '1 minute 0.25 second',
       i / 3.0, (i / 7.0)::float4, i::bigint * 1000000000, (i % 100)::smallint,
       'c' || i, ARRAY['a b', 'x"y', NULL, 'plain' || i], ARRAY[i, NULL, -i],
       decode(md5(i::text), 'hex'), jsonb_build_object('k', i, 's', 'v' || i),
       i / 9.0, time '12:00:00' + i * interval '1 second', md5(i::text)::uuid
FROM generate_series(1, 2500) AS i;
INSERT INTO items (id) VALUES (-1);
INSERT INTO items (id, name, price, score, ratio, born, seen, seen_tz, tags) VALUES
    (0, '', -0.01, 1e20, 1234567, 'infinity', '-infinity', '2000-02-29 23:59:59.999999+00', '{}'),
    (100000, 'ünïcödé | 3:x', 99999999.99, 'NaN', '-Infinity', '0044-03-15 BC', '1999-12-31 23:59:59.5', NULL, ARRAY['', 'NULL']);
"#;

fn items_path(pgdelta: &Pgdelta) -> PathBuf {
    pgdelta.table_path("public", "items")
}

/// Runs `validate shop --json` with `args`; returns the exit code and the report.
fn validate(pgdelta: &Pgdelta, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["validate", "shop", "--json"];
    if !args.contains(&"--chunk-rows") {
        all.extend(["--chunk-rows", "1000"]);
    }
    all.extend_from_slice(args);
    let output = pgdelta.run(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "validate {args:?} printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// Prints the peak memory of a checksum validation alone (GNU time, when installed).
fn print_checksum_peak_memory(pgdelta: &Pgdelta) {
    let measured = Command::new("/usr/bin/time")
        .args(["-f", "max RSS %M KiB"])
        .arg(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(pgdelta.config_path())
        .args(["validate", "shop", "--check", "checksum"])
        .env("PGDELTA_SOURCE_PASSWORD", support::PG_PASSWORD)
        .env("PGDELTA_HTTP_LISTEN", "127.0.0.1:0")
        .output();
    if let Ok(output) = measured {
        eprintln!(
            "checksum alone: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

fn result<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check)
        .unwrap_or_else(|| panic!("no {check} result in {report:#}"))
}

fn python_delta(path: &Path, statement: &str) {
    let script = format!(
        "from deltalake import DeltaTable\ndt = DeltaTable({:?})\n{statement}\n",
        path.to_string_lossy()
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn cluster_with_items() -> (PgCluster, Pgdelta) {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    let pgdelta = Pgdelta::new(&cluster, PIPELINE);
    (cluster, pgdelta)
}

#[test]
fn equal_tables_pass_and_changes_behind_the_pipelines_back_are_named() {
    let (cluster, pgdelta) = cluster_with_items();
    cluster.psql(DB, ITEMS);
    pgdelta.catch_up("shop"); // creates the slot and the Delta table (empty)
    cluster.psql(DB, "UPDATE items SET name = name WHERE true;"); // replicate every row
    pgdelta.catch_up("shop");

    let (code, report) = validate(&pgdelta, &[]);
    assert_eq!(code, 0, "equal tables must pass: {report:#}");
    for check in ["rows", "checksum", "schema", "lag"] {
        assert_eq!(result(&report, check)["status"], "pass", "{report:#}");
    }
    assert!(result(&report, "checksum")["summary"]
        .as_str()
        .unwrap()
        .contains("2503 rows in 3 chunks"));
    // The read of the Delta side reports its progress (a log line when not on a terminal).
    let output = pgdelta.run(&["validate", "shop", "--check", "checksum"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("validate done: public.items: 2,503 of ~2,503 rows (100.0%)"),
        "{stderr}"
    );

    python_delta(
        &items_path(&pgdelta),
        "dt.update(updates={'name': \"'tampered'\"}, predicate='id = 1234')",
    );
    let (code, report) = validate(&pgdelta, &["--check", "checksum"]);
    assert_eq!(code, 1, "{report:#}");
    let checksum = result(&report, "checksum");
    assert_eq!(checksum["status"], "fail");
    assert_eq!(
        checksum["details"]["differing_keys"],
        serde_json::json!([{"key": "id=1234", "difference": "values_differ"}]),
        "{report:#}"
    );
    let chunk = &checksum["details"]["differing_chunks"][0];
    assert_eq!(chunk["from"], "id=999");
    assert_eq!(chunk["to_exclusive"], "id=1999");

    python_delta(&items_path(&pgdelta), "dt.delete('id = 7')");
    let (code, report) = validate(&pgdelta, &["--check", "rows"]);
    assert_eq!(code, 1, "{report:#}");
    let rows = result(&report, "rows");
    assert_eq!(rows["status"], "fail");
    assert_eq!(rows["details"]["postgres_rows"], 2503);
    assert_eq!(rows["details"]["delta_rows"], 2502);

    cluster.psql(DB, "ALTER TABLE items ADD COLUMN extra int;");
    let (code, report) = validate(&pgdelta, &["--check", "schema"]);
    assert_eq!(code, 1, "{report:#}");
    let schema = result(&report, "schema");
    assert_eq!(schema["status"], "fail");
    assert_eq!(
        schema["details"]["missing_in_delta"],
        serde_json::json!(["extra"])
    );
}

/// An empty table has no PostgreSQL chunk and one empty Delta chunk: that is a match.
#[test]
fn an_empty_table_on_both_sides_passes() {
    let (cluster, pgdelta) = cluster_with_items();
    cluster.psql(DB, "CREATE TABLE items (id int PRIMARY KEY, name text);");
    pgdelta.catch_up("shop");

    let (code, report) = validate(&pgdelta, &[]);
    assert_eq!(
        code, 0,
        "an empty table equal on both sides must pass: {report:#}"
    );
    for check in ["rows", "checksum", "schema", "lag"] {
        assert_eq!(result(&report, check)["status"], "pass", "{report:#}");
    }
}

#[test]
fn lag_over_threshold_fails_and_unreplicated_changes_are_not_comparable() {
    let (cluster, pgdelta) = cluster_with_items();
    cluster.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a');",
    );
    pgdelta.catch_up("shop");
    cluster.psql(
        DB,
        "UPDATE items SET name = 'b'; INSERT INTO items VALUES (2, 'c');",
    );
    pgdelta.catch_up("shop");
    let (code, report) = validate(&pgdelta, &["--check", "lag"]);
    assert_eq!(code, 0, "{report:#}");

    cluster.psql(DB, "INSERT INTO items VALUES (3, 'not replicated yet');");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (code, report) = validate(&pgdelta, &["--check", "lag", "--max-lag-seconds", "1"]);
    assert_eq!(code, 1, "{report:#}");
    let lag = result(&report, "lag");
    assert_eq!(lag["status"], "fail");
    assert!(lag["details"]["lag_seconds"].as_f64().unwrap() >= 2.0);

    let (code, report) = validate(&pgdelta, &["--check", "rows"]);
    assert_eq!(
        code, 2,
        "pending changes are lag, not a mismatch: {report:#}"
    );
    assert_eq!(result(&report, "rows")["status"], "not_comparable");
    let human = pgdelta.run(&[
        "validate",
        "shop",
        "--check",
        "lag",
        "--max-lag-seconds",
        "1",
    ]);
    assert_eq!(human.status.code(), Some(1));
    let table = String::from_utf8_lossy(&human.stdout);
    assert!(
        table.contains("(pipeline)")
            && table.contains("FAIL")
            && table.contains("validation FAILED"),
        "{table}"
    );

    pgdelta.catch_up("shop");
    let (code, report) = validate(&pgdelta, &[]);
    assert_eq!(code, 0, "{report:#}");
    print_checksum_peak_memory(&pgdelta);
}

#[test]
fn text_keys_chunk_alike_and_periodic_validation_runs_inside_a_running_pipeline() {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(
        DB,
        "CREATE TABLE items (region text, id bigint, amount numeric(12,2), PRIMARY KEY (region, id));
         INSERT INTO items SELECT r, i, i * 0.5
         FROM unnest(ARRAY['eu', 'EU', 'us', 'Ünïcode', 'a b', '']) AS r, generate_series(-50, 300) AS i;",
    );
    let pgdelta = Pgdelta::new(&cluster, PIPELINE);
    let config_path = pgdelta.dir.path().join("pgdelta.toml");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str("\n[pipelines.shop.validation]\ninterval_secs = 1\nchunk_rows = 97\n");
    std::fs::write(&config_path, config).unwrap();
    pgdelta.catch_up("shop");
    cluster.psql(DB, "UPDATE items SET amount = amount WHERE true;");
    pgdelta.catch_up("shop");

    let (code, report) = validate(&pgdelta, &["--check", "checksum", "--chunk-rows", "97"]);
    assert_eq!(code, 0, "{report:#}");

    let log_path = pgdelta.dir.path().join("running.log");
    let mut running = Command::new(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(&config_path)
        .args(["pipeline", "start", "shop"])
        .env("PGDELTA_SOURCE_PASSWORD", support::PG_PASSWORD)
        .env("PGDELTA_HTTP_LISTEN", "127.0.0.1:0")
        .env("PGDELTA_LOG", "warn,pgdelta=info")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    cluster.psql(DB, "INSERT INTO items VALUES ('new', 1, 1.00);");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut log = String::new();
    while std::time::Instant::now() < deadline && !log.contains("validation passed") {
        std::thread::sleep(std::time::Duration::from_millis(500));
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
    }
    let (code, report) = validate(&pgdelta, &["--check", "all", "--chunk-rows", "97"]);
    let _ = running.kill();
    let _ = running.wait();
    assert!(
        log.contains("validation passed"),
        "no periodic validation in:\n{log}"
    );
    assert_eq!(code, 0, "validation beside a running pipeline: {report:#}");
    assert_eq!(result(&report, "lag")["details"]["pipeline_running"], true);
}

/// Not a timed test: run by hand to see how validation scales
/// (`PGDELTA_VALIDATE_ROWS=1000000 cargo test --release --test validate -- --ignored --nocapture`).
#[test]
#[ignore]
fn large_table_validates_by_streaming() {
    let rows: u64 = std::env::var("PGDELTA_VALIDATE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(
        DB,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), seen timestamptz);",
    );
    let pgdelta = Pgdelta::new(&cluster, PIPELINE);
    pgdelta.catch_up("shop");
    cluster.psql(
        DB,
        &format!(
            "INSERT INTO items SELECT i, 'name ' || i, i % 100000 / 7.0, now() - i * interval '1 s' \
             FROM generate_series(1, {rows}) AS i;"
        ),
    );
    let started = std::time::Instant::now();
    pgdelta.catch_up("shop");
    eprintln!("replicated {rows} rows in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let (code, report) = validate(&pgdelta, &["--chunk-rows", "100000"]);
    eprintln!(
        "validated {rows} rows in {:?}: {}",
        started.elapsed(),
        result(&report, "checksum")["summary"]
    );
    assert_eq!(code, 0, "{report:#}");
    print_checksum_peak_memory(&pgdelta);
}
