//! `pgdelta connector config`: the generated Debezium connector config is accepted by the real
//! Debezium 3.x engine, which then captures the pipeline's tables into events pgdelta parses.

mod debezium_support;
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use debezium_support::{add_embedded_engine_properties, Capture, CaptureRun};
use pgdelta::event::debezium::{DebeziumParser, DebeziumRecord};
use pgdelta::event::{Cell, ColumnSchema, Operation, TableName, TableSchema};
use serde_json::{Map, Value};
use support::{PgCluster, PG_PASSWORD};

const DB: &str = "shop";

fn write_config(dir: &std::path::Path, cluster: &PgCluster, kafka: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[source]
url = "{}"
sslmode = "disable"

[pipelines.orders-cdc]
tables = ["public.orders", "public.stop_marker"]
delta_root = "{}"

[pipelines.orders-cdc.kafka]
{kafka}
"#,
        cluster.url_without_password(DB),
        dir.join("delta").display()
    );
    let path = dir.join("pgdelta.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn pgdelta(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PGDELTA_SOURCE_PASSWORD", PG_PASSWORD)
        .output()
        .unwrap()
}

fn connector_json(config: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["connector", "config", "orders-cdc"];
    args.extend(extra);
    let output = pgdelta(config, &args);
    assert!(
        output.status.success(),
        "connector config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_password_is_hidden_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    // The server need not run: `connector config` never connects.
    let config = write_config_for_url(dir.path(), "postgres://cdc@127.0.0.1:1/shop");
    let secret = "Sup3r-s3cret";
    let run = |extra: &[&str]| -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_pgdelta"))
            .arg("--config")
            .arg(&config)
            .args(["connector", "config", "orders-cdc"])
            .args(extra)
            .env("PGDELTA_SOURCE_PASSWORD", secret)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let hidden = run(&[]);
    assert_eq!(
        hidden["config"]["database.password"],
        "${env:PGDELTA_SOURCE_PASSWORD}"
    );
    assert!(!hidden.to_string().contains(secret));
    let shown = run(&["--show-password"]);
    assert_eq!(shown["config"]["database.password"], secret);
    assert_eq!(shown["name"], "pgdelta-orders-cdc");
}

fn write_config_for_url(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let text = format!(
        "[source]\nurl = \"{url}\"\n\n[pipelines.orders-cdc]\ntables = [\"public.orders\"]\n"
    );
    let path = dir.join("pgdelta.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn invalid_settings_are_refused_before_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_for_url(dir.path(), "postgres://u@127.0.0.1:1/shop");
    let text = std::fs::read_to_string(&config).unwrap()
        + "\n[pipelines.orders-cdc.kafka]\ntopic_prefix = \"bad prefix!\"\n";
    std::fs::write(&config, text).unwrap();
    let output = pgdelta(&config, &["connector", "config", "orders-cdc"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("topic_prefix 'bad prefix!'"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn real_debezium_engine_accepts_the_generated_config() {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(
        DB,
        "CREATE TABLE public.orders (id int PRIMARY KEY, amount numeric(10,2), placed date);
         CREATE TABLE public.other (id int PRIMARY KEY);
         CREATE TABLE public.stop_marker (id int PRIMARY KEY);
         INSERT INTO orders VALUES (1, 10.50, '2024-01-01');",
    );
    let dir = tempfile::tempdir().unwrap();
    let variants = [
        ("envelope", "unwrap = false"),
        ("unwrap", "unwrap = true\nschemas = false"),
    ];
    let mut runs = Vec::new();
    for (label, kafka) in variants {
        let variant_dir = dir.path().join(label);
        std::fs::create_dir_all(&variant_dir).unwrap();
        let kafka = format!("{kafka}\ntopic_prefix = \"cdc_{label}\"\nheartbeat_interval_ms = 300");
        let config = write_config(&variant_dir, &cluster, &kafka);
        // Each variant needs its own slot and publication.
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "delta_root",
            &format!("slot = \"slot_{label}\"\npublication = \"pub_{label}\"\ndelta_root"),
        );
        std::fs::write(&config, text).unwrap();
        let connector = connector_json(&config, &["--show-password"]);
        let mut properties: Map<String, Value> = connector["config"].as_object().unwrap().clone();
        add_embedded_engine_properties(&mut properties, label);
        runs.push(CaptureRun {
            name: label.to_string(),
            output: dir.path().join(format!("{label}.jsonl")),
            properties,
        });
    }
    let mut capture = Capture::start(dir.path(), runs);
    capture.wait_for_records(1);
    std::thread::sleep(std::time::Duration::from_secs(2)); // let heartbeats flow
    cluster.psql(
        DB,
        "INSERT INTO orders VALUES (2, 20.00, '2024-02-02');
         INSERT INTO other VALUES (1);
         UPDATE orders SET amount = 11 WHERE id = 1;
         DELETE FROM orders WHERE id = 2;
         INSERT INTO stop_marker VALUES (1);",
    );
    let outputs = capture.finish();
    for ((label, _), records) in variants.iter().zip(outputs) {
        assert!(
            records.iter().all(|r| !r.topic.ends_with(".other")),
            "{label}: table.include.list must leave public.other out"
        );
        // Registered so events without schemas (schemas = false) decode too.
        let mut parser = DebeziumParser::new().with_table(orders_schema());
        let mut rows: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        let mut operations = Vec::new();
        for record in &records {
            let event = parser
                .parse(&DebeziumRecord {
                    topic: Some(&record.topic),
                    key: record.key.as_deref().map(str::as_bytes),
                    value: record.value.as_deref().map(str::as_bytes),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let Some(event) = event else {
                continue; // tombstones and heartbeats
            };
            let table = event.table().to_string();
            assert!(
                table == "public.orders" || table == "public.stop_marker",
                "{label}: unexpected event for {table}: {record:?}"
            );
            if table != "public.orders" {
                continue;
            }
            operations.push(event.operation);
            let text = |cells: &Vec<Cell>| -> Vec<Option<String>> {
                cells
                    .iter()
                    .map(|c| c.as_text().map(String::from))
                    .collect()
            };
            match event.operation {
                Operation::Delete => {
                    let before = text(event.before.as_ref().unwrap());
                    rows.remove(before[0].as_ref().unwrap());
                }
                _ => {
                    let after = text(event.data.as_ref().unwrap());
                    rows.insert(after[0].clone().unwrap(), after);
                }
            }
        }
        assert!(
            records
                .iter()
                .any(|r| r.topic.starts_with("__debezium-heartbeat")),
            "{label}: heartbeats were configured; parsed (and skipped) above"
        );
        use Operation::*;
        assert_eq!(operations, vec![Insert, Insert, Update, Delete], "{label}");
        let expected = vec![
            Some("1".into()),
            Some("11.00".into()),
            Some("2024-01-01".into()),
        ];
        assert_eq!(
            rows.into_values().collect::<Vec<_>>(),
            vec![expected],
            "{label}"
        );
    }
}

fn orders_schema() -> std::sync::Arc<TableSchema> {
    let column = |name: &str, type_oid, type_modifier, is_key| ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier,
        type_name: None,
        is_key,
    };
    std::sync::Arc::new(TableSchema {
        table: TableName::new("public", "orders"),
        columns: vec![
            column("id", 23, -1, true),
            column("amount", 1700, ((10 << 16) | 2) + 4, false),
            column("placed", 1082, -1, false),
        ],
    })
}
