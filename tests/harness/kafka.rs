//! A real Kafka-protocol broker for tests: `tansu` (crates.io), started on a free port with
//! in-memory storage, plus topic creation and producing through librdkafka (`rdkafka`).
//!
//! `scripts/setup.sh` installs tansu to `~/.cache/pgdelta/tansu/bin/tansu`; `PGDELTA_TANSU`
//! names another binary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

pub use crate::support::free_port;

/// One record to produce.
pub struct Produce<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub value: Option<&'a str>,
}

/// A running tansu broker; killed on drop.
pub struct Tansu {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("PGDELTA_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").expect("HOME is set");
    let path = PathBuf::from(home).join(".cache/pgdelta/tansu/bin/tansu");
    assert!(
        path.exists(),
        "no tansu broker at {}: run scripts/setup.sh (cargo install tansu --locked --features dynostore,postgres)",
        path.display()
    );
    path
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        let child = spawn_broker(port, &dir);
        let tansu = Tansu {
            child,
            port,
            log,
            _dir: dir,
        };
        tansu.wait_until_listening();
        tansu
    }

    /// Kills the broker and starts a new one on the same port; with in-memory storage it
    /// comes back empty, as if every topic had been deleted.
    pub fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_broker(self.port, &self._dir);
        self.wait_until_listening();
    }

    /// Freezes the broker (SIGSTOP): clients see a broker that stopped answering.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    pub fn create_topics(&self, topics: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = block_on(admin.create_topics(&new, &AdminOptions::new())).unwrap();
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic}: {code:?}");
            }
        }
    }

    /// Produces `records` in order and waits until the broker has each of them.
    pub fn produce(&self, records: &[Produce<'_>]) {
        let producer: FutureProducer = self
            .client_config()
            .set("message.timeout.ms", "30000")
            .set("enable.idempotence", "false")
            .set("partitioner", "murmur2_random")
            .set("max.in.flight.requests.per.connection", "1")
            // tansu 0.6 cannot fetch from an offset inside a record batch (Kafka can): one
            // record per batch lets a consumer resume at any committed offset.
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .create()
            .unwrap();
        block_on(async {
            let mut deliveries = Vec::new();
            for record in records {
                let mut future = FutureRecord::<str, str>::to(record.topic);
                if let Some(key) = record.key {
                    future = future.key(key);
                }
                if let Some(value) = record.value {
                    future = future.payload(value);
                }
                let delivery = producer
                    .send_result(future)
                    .map_err(|(e, _)| e)
                    .unwrap_or_else(|e| panic!("produce to {}: {e}", record.topic));
                deliveries.push((record.topic.to_string(), delivery));
            }
            for (topic, delivery) in deliveries {
                delivery
                    .await
                    .expect("producer alive")
                    .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
            }
        });
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_broker(port: u16, dir: &tempfile::TempDir) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    Command::new(tansu_binary())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("tansu.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("tansu.err")).unwrap())
        .spawn()
        .expect("start tansu")
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} tansu");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
