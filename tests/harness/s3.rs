//! A real S3-protocol server for tests: `s3s-fs` (crates.io, the s3s project), started on a
//! free 127.0.0.1 port with its objects in a temporary directory and one fixed access key.
//!
//! `scripts/setup.sh` installs it to `~/.cache/pgdelta/s3s-fs/bin/s3s-fs`;
//! `PGDELTA_S3_SERVER` names another binary.
//!
//! What the server does and does not do, as tests may rely on it:
//! - PUT with `If-None-Match: *` answers 412 when the object exists, so delta-rs's commits
//!   (`PutMode::Create` of `_delta_log/<version>.json`) fail with "version already exists"
//!   instead of overwriting. The check comes before the write and is not atomic: two PUTs of
//!   the same absent key at the same instant can both succeed (real S3 lets one win), so a
//!   test must not count on the server to split truly simultaneous commits.
//! - A bucket is a directory under the data directory; `create_bucket` makes one. A PUT into a
//!   bucket that does not exist creates it (real S3 answers NoSuchBucket); GET and LIST of a
//!   missing bucket do answer NoSuchBucket.
//! - Requests are checked against the one access key and secret (SigV4), wrong ones get 403.
//! - ListObjectsV2 (prefix, start-after), HEAD, DELETE, copy and multipart uploads work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::support::free_port;

pub const ACCESS_KEY: &str = "pgdelta-test-key";
pub const SECRET_KEY: &str = "pgdelta-test-secret-0123456789";
pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "pgdelta";

/// A running s3s-fs server; killed on drop. Its data directory outlives `stop` and `restart`,
/// and goes with the value.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

pub fn s3_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("PGDELTA_S3_SERVER") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").expect("HOME is set");
    let path = PathBuf::from(home).join(".cache/pgdelta/s3s-fs/bin/s3s-fs");
    assert!(
        path.exists(),
        "no S3 server at {}: run scripts/setup.sh (cargo install s3s-fs --version 0.14.1 --locked --features binary)",
        path.display()
    );
    path
}

impl S3Server {
    /// Starts the server with an empty data directory and the bucket `BUCKET`.
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut server = S3Server {
            child: None,
            port: free_port(),
            dir,
        };
        server.create_bucket(BUCKET);
        server.spawn();
        server
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    pub fn region(&self) -> &'static str {
        REGION
    }

    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// `s3://<bucket>/<path>`.
    pub fn table_url(&self, path: &str) -> String {
        format!("s3://{}/{}", BUCKET, path.trim_start_matches('/'))
    }

    /// The delta-rs (deltalake 1.1 / deltalake-aws 1.0 / object_store 0.13) storage options
    /// that reach this server: pass them to `DeltaTableBuilder::with_storage_options` or
    /// `DeltaTable::try_from_url_with_storage_options`. `conditional_put = etag` makes commits
    /// `PUT If-None-Match: *` (the object_store 0.13 default; spelled out so that a
    /// `AWS_CONDITIONAL_PUT` in the environment cannot turn it off). Values in the map win over
    /// the environment's `AWS_*` variables, which delta-rs reads as well.
    pub fn storage_options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".to_string(), ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET_KEY.to_string()),
            ("AWS_REGION".to_string(), REGION.to_string()),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
            ("conditional_put".to_string(), "etag".to_string()),
        ])
    }

    /// `storage_options` plus bounds on object_store's retries and timeouts, for tests of a
    /// server that is stopped or paused. The defaults are 10 retries within 3 minutes and 30 s
    /// a request: a refused connection then fails after about 2 s (the retries' backoff is
    /// short), a paused server only after minutes. With these a stopped server fails in
    /// about 0.3 s and a paused one in 5 s.
    pub fn storage_options_fail_fast(&self) -> BTreeMap<String, String> {
        let mut options = self.storage_options();
        for (key, value) in [
            ("max_retries", "2"),
            ("retry_timeout", "5s"),
            ("connect_timeout", "1s"),
            ("timeout", "5s"),
        ] {
            options.insert(key.to_string(), value.to_string());
        }
        options
    }

    /// The same options as `AWS_*` environment variables, for a child process that reads them.
    pub fn env(&self) -> Vec<(String, String)> {
        self.storage_options()
            .into_iter()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .chain([("AWS_CONDITIONAL_PUT".to_string(), "etag".to_string())])
            .collect()
    }

    /// Makes another (empty) bucket; a bucket is a directory under the data directory.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.data_dir().join(name)).unwrap();
    }

    /// Where the server keeps its objects: `<bucket>/<key>` files, plus hidden metadata files.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that holds `key` in `BUCKET`, to check or damage what a test wrote.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.data_dir().join(BUCKET).join(key)
    }

    /// Keys under `prefix` in `BUCKET`, read off the data directory, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let root = self.data_dir().join(BUCKET);
        let mut keys = Vec::new();
        collect_keys(&root, &root, &mut keys);
        keys.retain(|key| key.starts_with(prefix));
        keys.sort();
        keys
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL); its port then refuses connections. The data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again on the same port and data directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the S3 server is running");
        self.spawn();
    }

    /// `stop` then `start_again`: clients see the connection drop, then the same objects.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections open, requests are never answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the S3 server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} s3s-fs");
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("s3s-fs.log"))
            .unwrap();
        let child = Command::new(s3_server_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.data_dir())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "s3s-fs exited ({status}) before listening on {}:\n{}",
                    self.port,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must go on to die.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.stop();
    }
}

fn collect_keys(root: &Path, dir: &Path, keys: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_keys(root, &path, keys);
        } else if let Ok(relative) = path.strip_prefix(root) {
            keys.push(relative.to_string_lossy().into_owned());
        }
    }
}
