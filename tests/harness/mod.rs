//! Drives the pgdelta binary for the reliability, TLS and identifier tests: a config file in
//! a temporary directory, `pipeline start|status|drop`, and comparisons of Delta with
//! PostgreSQL through the independent Python reader.
//!
//! Include it after `mod support;` with `mod harness;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, PgCluster};
#[allow(unused_imports)]
pub use crate::support::{delta_as_strings, pg_as_strings};

pub mod azure;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod s3;

pub const DB: &str = "cdcdb";

/// A pgdelta configuration in a temporary directory, and ways to run the binary on it.
pub struct Pgdelta {
    pub dir: tempfile::TempDir,
    source_toml: String,
}

impl Pgdelta {
    /// A plain-TCP source (`sslmode = "disable"`) on `cluster`'s `DB`.
    pub fn new(cluster: &PgCluster, pipelines_toml: &str) -> Pgdelta {
        Pgdelta::on_database(cluster, DB, pipelines_toml)
    }

    /// A plain-TCP source (`sslmode = "disable"`) on `cluster`'s database `db`.
    pub fn on_database(cluster: &PgCluster, db: &str, pipelines_toml: &str) -> Pgdelta {
        Pgdelta::with_source(&plain_source(cluster, db), pipelines_toml)
    }

    /// `source_toml` is the body of `[source]`; `DELTA_ROOT` in `pipelines_toml` becomes a
    /// directory inside the temporary directory.
    pub fn with_source(source_toml: &str, pipelines_toml: &str) -> Pgdelta {
        let pgdelta = Pgdelta {
            dir: tempfile::tempdir().unwrap(),
            source_toml: source_toml.to_string(),
        };
        pgdelta.configure(pipelines_toml);
        pgdelta
    }

    /// Points `[source]` at `cluster`'s `DB` (a promoted standby, say) and writes the config
    /// file again with `pipelines_toml`.
    pub fn switch_source(&mut self, cluster: &PgCluster, pipelines_toml: &str) {
        self.source_toml = plain_source(cluster, DB);
        self.configure(pipelines_toml);
    }

    /// Writes the config file again with `pipelines_toml` (and the same `[source]`).
    pub fn configure(&self, pipelines_toml: &str) {
        let root = self.delta_root();
        let config = format!(
            "[source]\n{}\n{}",
            self.source_toml,
            pipelines_toml.replace("DELTA_ROOT", &root.to_string_lossy())
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pgdelta.toml")
    }

    pub fn delta_root(&self) -> PathBuf {
        self.dir.path().join("delta")
    }

    pub fn table_path(&self, schema: &str, table: &str) -> PathBuf {
        self.delta_root().join(schema).join(table)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(pgdelta_binary());
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("PGDELTA_SOURCE_PASSWORD", support::PG_PASSWORD)
            .env("PGDELTA_HTTP_LISTEN", "127.0.0.1:0")
            .env("PGDELTA_LOG", "info,pgdelta=debug");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "pgdelta {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `pipeline start --exit-when-caught-up`, which must succeed; returns its log (stderr).
    pub fn catch_up(&self, pipeline: &str) -> String {
        let output = self.run(&["pipeline", "start", pipeline, "--exit-when-caught-up"]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "catch-up of {pipeline} failed:\n{stderr}"
        );
        stderr
    }

    /// `pipeline start <pipeline>` in the background, its stderr appended to `log_name`.
    pub fn spawn(&self, pipeline: &str, log_name: &str) -> Child {
        self.spawn_args(&["pipeline", "start", pipeline], log_name)
    }

    pub fn spawn_args(&self, args: &[&str], log_name: &str) -> Child {
        self.spawn_command(self.command(args), log_name)
    }

    /// Starts `command` (from [`Pgdelta::command`]) with stderr appended to `log_name`.
    pub fn spawn_command(&self, mut command: Command, log_name: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(log_name))
            .unwrap();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log_name)).unwrap_or_default()
    }

    pub fn status(&self, pipeline: &str) -> Vec<Value> {
        let out = self.run_ok(&["pipeline", "status", pipeline, "--json"]);
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    }
}

/// A private copy of the pgdelta binary made once per test process, so that a rebuild of
/// the shared target directory during a long test cannot swap or remove it mid-run. A
/// static is never dropped, so the copies of test processes that ended are removed here.
/// The body of `[source]` for `cluster`'s database `db` over plain TCP.
fn plain_source(cluster: &PgCluster, db: &str) -> String {
    format!(
        "url = \"{}\"\nsslmode = \"disable\"\nconnect_attempts = 12\n",
        cluster.url_without_password(db)
    )
}

pub fn pgdelta_binary() -> &'static Path {
    static COPY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = COPY.get_or_init(|| {
        remove_binary_copies_of_ended_runs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{BINARY_COPY_PREFIX}{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let path = dir.path().join("pgdelta");
        std::fs::copy(env!("CARGO_BIN_EXE_pgdelta"), &path)
            .expect("copy the pgdelta binary for this test run");
        (dir, path)
    });
    path
}

const BINARY_COPY_PREFIX: &str = "pgdelta-bin-";

fn remove_binary_copies_of_ended_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(BINARY_COPY_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn cluster_with_db() -> PgCluster {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster
}

/// One `txn` action of a Delta commit: the commit's version, its appId and its version
/// (for pgdelta: the source commit LSN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnAction {
    pub delta_version: u64,
    pub app_id: String,
    pub txn_version: i64,
}

/// Every action of every commit in `<table>/_delta_log/<version>.json`, with the commit's
/// version, in version order.
pub fn log_actions(table: &Path) -> Vec<(u64, Value)> {
    let mut commits: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(Ok(version)) = name.strip_suffix(".json").map(str::parse::<u64>) {
            commits.insert(version, path);
        }
    }
    let mut actions = Vec::new();
    for (version, path) in commits {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: invalid JSON line ({e}): {line}", path.display()));
            actions.push((version, action));
        }
    }
    actions
}

/// Every `txn` action in `<table>/_delta_log/*.json`, in Delta version order.
pub fn txn_actions(table: &Path) -> Vec<TxnAction> {
    log_actions(table)
        .into_iter()
        .filter_map(|(version, action)| {
            let txn = action.get("txn")?;
            Some(TxnAction {
                delta_version: version,
                app_id: txn["appId"].as_str().unwrap().to_string(),
                txn_version: txn["version"].as_i64().unwrap(),
            })
        })
        .collect()
}

/// Panics unless, per appId, the txn versions strictly increase with the Delta version:
/// a repeated or lower version means a source transaction was applied twice.
pub fn assert_txn_versions_strictly_increase(table: &Path) -> usize {
    let actions = txn_actions(table);
    let mut last: BTreeMap<&str, &TxnAction> = BTreeMap::new();
    for action in &actions {
        if let Some(previous) = last.get(action.app_id.as_str()) {
            assert!(
                action.txn_version > previous.txn_version,
                "{}: txn version of {} did not increase: Delta version {} has {}, Delta version {} had {}",
                table.display(),
                action.app_id,
                action.delta_version,
                action.txn_version,
                previous.delta_version,
                previous.txn_version
            );
        }
        last.insert(&action.app_id, action);
    }
    actions.len()
}

/// Polls `done` every 200 ms until it holds, panicking with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every key appears in the change feed as exactly one insert and nothing else (for
/// workloads that only insert): a transaction applied twice would show as a second insert
/// or as an update.
pub fn assert_each_key_inserted_once(path: &Path, expected_keys: usize) {
    let cdf = support::read_delta_cdf(path, 0);
    let rows = cdf["rows"].as_array().unwrap();
    let mut ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(
        rows.iter().all(|r| r["_change_type"] == "insert"),
        "only inserts happened, yet the change feed holds other changes"
    );
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!(
        total,
        ids.len(),
        "a row was inserted twice in the change feed"
    );
    assert_eq!(ids.len(), expected_keys);
}

/// Polls `done` every 250 ms for up to `limit`; whether it came true.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// Sends SIGKILL and reaps the process.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGTERM and waits for the exit.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap()
}

/// Runs `cmd` as the `postgres` OS user when root (the server's files must belong to it).
pub fn as_postgres_user(program: &str) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Hands `path` to the `postgres` OS user when running as root.
pub fn give_to_postgres(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown {}", path.display());
    }
}

/// Replaces the server's `pg_hba.conf` (keeping its owner) and reloads the configuration.
pub fn replace_pg_hba(cluster: &PgCluster, text: &str) {
    std::fs::write(cluster.data_dir().join("pg_hba.conf"), text).unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()");
}

/// Inserts rows `from..` into `table (id, label)` in `transactions` transactions of
/// `rows_each` rows, one psql call; labels are `'<label> <id>'`.
pub fn insert_labelled_rows(
    cluster: &PgCluster,
    table: &str,
    label: &str,
    from: i64,
    transactions: i64,
    rows_each: i64,
) {
    let mut sql = String::new();
    for tx in 0..transactions {
        let first = from + tx * rows_each;
        sql.push_str(&format!(
            "INSERT INTO {table} SELECT g, '{label} ' || g FROM generate_series({first}, {}) g;\n",
            first + rows_each - 1
        ));
    }
    cluster.psql(DB, &sql);
}

pub fn slot_exists(cluster: &PgCluster, slot: &str) -> bool {
    let sql = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'");
    cluster.psql(DB, &sql).trim() == "1"
}

pub fn publication_exists(cluster: &PgCluster, publication: &str) -> bool {
    let sql = format!("SELECT count(*) FROM pg_publication WHERE pubname = '{publication}'");
    cluster.psql(DB, &sql).trim() == "1"
}

/// The operation of every Delta commit, by version, from the table's log.
pub fn commit_operations(table: &Path) -> Vec<(u64, String)> {
    log_actions(table)
        .into_iter()
        .filter_map(|(version, action)| {
            let operation = action["commitInfo"]["operation"].as_str()?;
            Some((version, operation.to_string()))
        })
        .collect()
}
