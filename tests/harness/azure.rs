//! A real Azure Blob Storage emulator for tests: Azurite (npm, Microsoft's emulator), its blob
//! service started on a free 127.0.0.1 port with its data in a temporary directory, and the
//! emulator's well-known account.
//!
//! `scripts/setup.sh` installs it to `~/.cache/pgdelta/azurite`; `PGDELTA_AZURITE` names
//! another `azurite-blob` executable. Azurite answers a PUT with `If-None-Match: *` of an
//! existing blob with 409/412, so delta-rs's put-if-absent commits are safe on it as on Azure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// Azurite's built-in account and key (public, the same in every emulator).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const CONTAINER: &str = "pgdelta";

/// A running Azurite blob service; killed on drop.
pub struct Azurite {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The `azurite-blob` executable, or `None` (with why) when it is not installed.
pub fn azurite_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("PGDELTA_AZURITE") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var("HOME").expect("HOME is set");
    let path = PathBuf::from(home).join(".cache/pgdelta/azurite/node_modules/.bin/azurite-blob");
    match path.exists() {
        true => Ok(path),
        false => Err(format!(
            "no Azurite at {}: run scripts/setup.sh (npm install azurite)",
            path.display()
        )),
    }
}

impl Azurite {
    /// Starts the blob service with the container `CONTAINER`.
    pub fn start() -> Azurite {
        let binary = azurite_binary().unwrap_or_else(|why| panic!("{why}"));
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("azurite.log")).unwrap();
        let child = Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            .args(["--skipApiVersionCheck", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start azurite-blob");
        let mut azurite = Azurite { child, port, dir };
        azurite.wait_until_listening();
        azurite.create_container(CONTAINER);
        azurite
    }

    /// The account's blob endpoint, path-style as Azurite serves it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// `az://<container>/<path>`.
    pub fn table_url(&self, path: &str) -> String {
        format!("az://{CONTAINER}/{}", path.trim_start_matches('/'))
    }

    /// The delta-rs / object_store options that reach this emulator.
    pub fn storage_options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "azure_storage_account_name".to_string(),
                ACCOUNT.to_string(),
            ),
            (
                "azure_storage_account_key".to_string(),
                ACCOUNT_KEY.to_string(),
            ),
            ("azure_storage_endpoint".to_string(), self.endpoint()),
            ("azure_allow_http".to_string(), "true".to_string()),
        ])
    }

    /// The same options as the standard `AZURE_*` environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        self.storage_options()
            .into_iter()
            .map(|(key, value)| (key.to_uppercase(), value))
            .collect()
    }

    pub fn create_container(&self, name: &str) {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/azurite_container.py");
        let status = Command::new("python3")
            .arg(script)
            .args([&self.endpoint(), ACCOUNT, ACCOUNT_KEY, name])
            .status()
            .unwrap();
        assert!(status.success(), "create container {name}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("azurite exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "azurite did not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
