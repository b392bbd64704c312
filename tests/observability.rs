//! Observability end to end: the pgdelta binary on a real PostgreSQL cluster, scraped over
//! HTTP; and the shipped dashboards and alert rules checked against what `/metrics` exports.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http_get, metric_sample as sample, PgCluster};

const DB: &str = "cdcdb";

const PIPELINE: &str = r#"
[pipelines.shop]
tables = ["public.customers", "public.orders"]
delta_root = "DELTA_ROOT"
batch_size = 1000
batch_interval_ms = 200
"#;

/// A running `pgdelta pipeline start shop` with its HTTP endpoints on a free port.
struct Running {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
}

impl Running {
    fn start(cluster: &PgCluster) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[source]\nurl = \"{}\"\nsslmode = \"disable\"\nconnect_attempts = 12\n{}",
            cluster.url_without_password(DB),
            PIPELINE.replace("DELTA_ROOT", &dir.path().join("delta").to_string_lossy())
        );
        std::fs::write(dir.path().join("pgdelta.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
        let child = pgdelta(dir.path())
            .args(["pipeline", "start", "shop", "--http-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut running = Running {
            dir,
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        running.addr = running.wait_for_address();
        running
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default()
    }

    /// The port is picked by the OS (port 0) and logged as `addr=IP:PORT`.
    fn wait_for_address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains("serving /metrics")) {
                let addr = line
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix("addr="))
                    .unwrap_or_else(|| panic!("no addr= in {line}"));
                return addr.parse().unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("pgdelta exited with {status}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pgdelta did not log its HTTP address:\n{}", self.log());
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Waits until `path` answers `status`, then returns the body.
    fn wait_for_status(&self, path: &str, status: u16, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut last = (0, String::new());
        while Instant::now() < deadline {
            last = self.get(path);
            if last.0 == status {
                return last.1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{path} answered {} ({}) instead of {status}\n--- pgdelta log ---\n{}",
            last.0,
            last.1,
            self.log()
        );
    }

    fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgdelta(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdelta"));
    cmd.arg("--config")
        .arg(dir.join("pgdelta.toml"))
        .env("PGDELTA_SOURCE_PASSWORD", support::PG_PASSWORD)
        .env("PGDELTA_LOG", "info,pgdelta=debug");
    cmd
}

fn events(table: &str, operation: &str) -> String {
    format!("postgres_cdc_events_processed_total{{table=\"{table}\",operation=\"{operation}\"}}")
}

fn cluster_with_tables() -> PgCluster {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(
        DB,
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         CREATE TABLE orders (id int PRIMARY KEY, amount numeric(10,2));",
    );
    cluster
}

#[test]
fn metrics_count_every_change_per_table_and_operation() {
    let cluster = cluster_with_tables();
    let running = Running::start(&cluster);
    assert_eq!(running.get("/health/live").0, 200);
    running.wait_for_status("/health/ready", 200, Duration::from_secs(60));

    cluster.psql(
        DB,
        "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 5) g;
         UPDATE customers SET name = 'renamed' WHERE id IN (1, 2);
         DELETE FROM customers WHERE id = 5;
         INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 3) g;
         UPDATE orders SET amount = amount + 1;
         TRUNCATE orders;",
    );
    let expected = [
        ("public.customers", "INSERT", 5.0),
        ("public.customers", "UPDATE", 2.0),
        ("public.customers", "DELETE", 1.0),
        ("public.customers", "TRUNCATE", 0.0),
        ("public.orders", "INSERT", 3.0),
        ("public.orders", "UPDATE", 3.0),
        ("public.orders", "DELETE", 0.0),
        ("public.orders", "TRUNCATE", 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = running.metrics();
        let counted: Vec<Option<f64>> = expected
            .iter()
            .map(|(table, op, _)| sample(&metrics, &events(table, op)))
            .collect();
        let wanted: Vec<Option<f64>> = expected.iter().map(|e| Some(e.2)).collect();
        if counted == wanted {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "counted {counted:?}, expected {wanted:?}\n{metrics}\n--- log ---\n{}",
            running.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    for table in ["public.customers", "public.orders"] {
        let lag = format!("postgres_cdc_lag_seconds{{pipeline=\"shop\",table=\"{table}\"}}");
        let lag = sample(&metrics, &lag).unwrap_or_else(|| panic!("no lag for {table}"));
        assert!((0.0..60.0).contains(&lag), "lag {lag}");
    }
    assert!(sample(&metrics, "postgres_cdc_batch_size_count").unwrap() >= 1.0);
    assert_eq!(
        sample(&metrics, "postgres_cdc_batch_size_sum").unwrap(),
        15.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "postgres_cdc_last_committed_lsn{pipeline=\"shop\"}"
        )
        .unwrap()
            > 0.0
    );
    let commits = "postgres_cdc_delta_commit_duration_seconds_count{pipeline=\"shop\",table=\"public.orders\"}";
    assert!(sample(&metrics, commits).unwrap() >= 1.0, "{metrics}");
    let retained =
        "postgres_cdc_replication_slot_retained_wal_bytes{pipeline=\"shop\",slot=\"pgdelta_shop\"}";
    assert!(sample(&metrics, retained).is_some(), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "cdc_errors_total{pipeline=\"shop\",error_type=\"source\"}"
        ),
        Some(0.0)
    );

    let (status, body) = running.get("/health");
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["components"]["source"]["status"], "up", "{health}");
    assert_eq!(health["components"]["sink"]["status"], "up", "{health}");
    assert!(
        health["components"]["last_commit"]["lsn"].is_string(),
        "{health}"
    );
    assert!(
        health["components"]["last_commit"]["age_seconds"].is_number(),
        "{health}"
    );

    let output = pgdelta(running.dir.path())
        .args(["pipeline", "status", "shop", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let statuses: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    for status in &statuses {
        for field in [
            "pipeline",
            "table",
            "delta_path",
            "delta_version",
            "last_applied_lsn",
            "rows",
        ] {
            assert!(status.get(field).is_some(), "{field} missing: {status}");
        }
        let age = status["last_commit_age_seconds"].as_f64().unwrap();
        assert!((0.0..600.0).contains(&age), "{status}");
        assert!(status["last_commit_at"].is_string(), "{status}");
    }
}

/// The snapshot gauges move while the initial copy runs, and end at the row count.
#[test]
fn snapshot_progress_is_served_while_the_initial_copy_runs() {
    const ROWS: u64 = 1_500_000;
    let cluster = cluster_with_tables();
    cluster.psql(
        DB,
        &format!(
            "INSERT INTO customers SELECT i, repeat('x', 40) || i FROM generate_series(1, {ROWS}) i;
             ANALYZE customers;"
        ),
    );
    let running = Running::start(&cluster);
    let copied = "postgres_cdc_snapshot_rows_copied{pipeline=\"shop\",table=\"public.customers\"}";
    let estimated =
        "postgres_cdc_snapshot_rows_estimated{pipeline=\"shop\",table=\"public.customers\"}";
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen_midway = None;
    loop {
        let metrics = running.metrics();
        let now = sample(&metrics, copied).unwrap_or(0.0);
        let total = sample(&metrics, estimated).unwrap_or(0.0);
        if now > 0.0 && now < ROWS as f64 {
            seen_midway.get_or_insert((now, total));
        }
        if now == ROWS as f64 {
            assert_eq!(total, ROWS as f64, "{metrics}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "copied {now} of {total}\n{metrics}\n{}",
            running.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (now, total) = seen_midway.expect("the copied-rows gauge moved only at the end");
    assert!(
        total >= ROWS as f64 * 0.5,
        "estimate {total} while {now} were copied"
    );
}

#[test]
fn readiness_follows_postgres_going_away_and_coming_back() {
    let cluster = cluster_with_tables();
    let running = Running::start(&cluster);
    running.wait_for_status("/health/ready", 200, Duration::from_secs(60));

    cluster.stop_fast();
    let body = running.wait_for_status("/health/ready", 503, Duration::from_secs(30));
    let reason: Value = serde_json::from_str(&body).unwrap();
    assert!(
        reason["reason"].as_str().unwrap().starts_with("source:"),
        "{reason}"
    );
    assert_eq!(running.get("/health/live").0, 200);
    let (status, health) = running.get("/health");
    assert_eq!(status, 503, "{health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["components"]["source"]["status"], "down", "{health}");

    cluster.start_again();
    running.wait_for_status("/health/ready", 200, Duration::from_secs(90));
    let errors = sample(
        &running.metrics(),
        "cdc_errors_total{pipeline=\"shop\",error_type=\"source\"}",
    );
    assert!(errors.unwrap() >= 1.0, "{errors:?}");

    cluster.psql(DB, "INSERT INTO customers VALUES (1, 'after restart')");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample(&running.metrics(), &events("public.customers", "INSERT")) != Some(1.0) {
        assert!(Instant::now() < deadline, "{}", running.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Names the encoder exports for a pipeline like the one above.
fn exported_metric_names() -> BTreeSet<String> {
    let config = pgdelta::config::Config::from_toml(
        &format!("[source]\nurl = \"postgres://u@h/db\"\n{PIPELINE}"),
        Path::new("test.toml"),
        Vec::new(),
    )
    .unwrap();
    let observer = pgdelta::observe::Observer::new(&config.pipeline("shop").unwrap());
    // The slot's wal_status and safe_wal_size appear once the slot monitor read them.
    let slot = pgdelta::source::postgres::SlotState {
        wal_status: Some("reserved".into()),
        safe_wal_size: Some(1 << 30),
        ..Default::default()
    };
    observer.set_slot_wal("pgdelta_shop", &slot);
    pgdelta::observe::metrics::exported_names(&observer.encode_metrics())
}

/// Metric names (ours: `postgres_cdc_*`, `cdc_*`) in a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("postgres_cdc_") || word.starts_with("cdc_"))
        .map(str::to_string)
        .collect()
}

fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// The `expr:` values of a rules file, including `expr: |` blocks.
fn rule_expressions(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" && rest != ">" {
            exprs.push(rest.to_string());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() > indent.len() {
                block.push_str(next.trim());
                block.push(' ');
                lines.next();
            } else {
                break;
            }
        }
        exprs.push(block);
    }
    exprs
}

#[test]
fn dashboards_and_alerts_use_only_exported_metrics() {
    let exported = exported_metric_names();
    for required in [
        "postgres_cdc_events_processed_total",
        "postgres_cdc_lag_seconds",
        "postgres_cdc_batch_size_bucket",
        "cdc_errors_total",
    ] {
        assert!(exported.contains(required), "{required} not exported");
    }
    let mut checked = 0;
    for (file, uid) in [
        ("deploy/grafana/postgres-cdc.json", "postgres-cdc"),
        ("deploy/grafana/cdc-overview.json", "cdc-overview"),
    ] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        let dashboard: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(dashboard["uid"], uid, "{file}");
        let mut strings = Vec::new();
        strings_in(&dashboard, &mut strings);
        let names: Vec<String> = strings.iter().flat_map(|s| metric_names_in(s)).collect();
        assert!(!names.is_empty(), "{file} references no metric");
        for name in names {
            assert!(exported.contains(&name), "{file}: {name} is not exported");
            checked += 1;
        }
    }
    let alerts = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml")).unwrap();
    let exprs = rule_expressions(&alerts);
    assert!(exprs.len() >= 3, "{exprs:?}");
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("up") || e.contains("absent(")),
        "no pipeline-down alert: {exprs:?}"
    );
    for expr in &exprs {
        for name in metric_names_in(expr) {
            assert!(
                exported.contains(&name),
                "alerts.yml: {name} is not exported"
            );
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn promtool_accepts_the_rules_and_the_prometheus_config() {
    let Ok(version) = Command::new("promtool").arg("--version").output() else {
        println!("note: promtool not installed (Debian package 'prometheus'); skipping");
        return;
    };
    assert!(version.status.success());
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The slot monitor's reading, from source/postgres: the WAL a slot keeps and its
/// `wal_status`, `None` for no slot.
#[test]
fn slot_state_reads_pg_replication_slots() {
    use pgdelta::source::postgres::{current_wal_lsn, slot_state};
    let cluster = PgCluster::start();
    cluster.psql(
        "postgres",
        "SELECT pg_create_logical_replication_slot('watched', 'pgoutput')",
    );
    cluster.psql(
        "postgres",
        "CREATE TABLE filler AS SELECT generate_series(1, 10000) AS i",
    );
    let before: pgdelta::event::Lsn = cluster
        .psql("postgres", "SELECT pg_current_wal_lsn()")
        .trim()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let state = slot_state(&client, "watched").await.unwrap().unwrap();
        assert!(state.retained_wal_bytes > 0, "{state:?}");
        assert_eq!(state.wal_status.as_deref(), Some("reserved"), "{state:?}");
        assert_eq!(state.invalidation(), None);
        assert_eq!(slot_state(&client, "missing").await.unwrap(), None);
        assert!(current_wal_lsn(&client).await.unwrap() >= before);
    });
}
