//! `pgdelta connector register|status|delete` against a tiny Kafka Connect stand-in on 127.0.0.1
//! that answers like the real REST API (canned answers, requests recorded).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

const SECRET: &str = "Sup3r-s3cret";

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// Answers the i-th request with `answers[i]` (status, JSON body), one request per connection.
struct FakeConnect {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeConnect {
    fn start(answers: Vec<(u16, &'static str)>) -> FakeConnect {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let thread = std::thread::spawn(move || {
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let request = read_request(&mut stream);
                recorded.lock().unwrap().push(request);
                let reason = match status {
                    200 => "OK",
                    201 => "Created",
                    204 => "No Content",
                    400 => "Bad Request",
                    404 => "Not Found",
                    409 => "Conflict",
                    _ => "Other",
                };
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        FakeConnect {
            url,
            requests,
            thread: Some(thread),
        }
    }

    /// Waits until every canned answer was given; returns the requests.
    fn finish(mut self) -> Vec<Request> {
        self.thread.take().unwrap().join().unwrap();
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Request {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap().to_string();
    let path = parts.next().unwrap().to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Request {
        method,
        path,
        body: String::from_utf8(body).unwrap(),
    }
}

fn config_file(dir: &Path) -> PathBuf {
    let text = r#"[source]
url = "postgres://cdc@db.internal:5432/shop"

[pipelines.orders-cdc]
tables = ["public.orders"]

[pipelines.orders-cdc.kafka]
unwrap = true
"#;
    let path = dir.join("pgdelta.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn pgdelta(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(config_file(dir))
        .args(args)
        .env("PGDELTA_SOURCE_PASSWORD", SECRET)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "pgdelta failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of_failure(output: &Output) -> String {
    assert!(!output.status.success(), "pgdelta should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn register_creates_the_connector_with_the_real_password() {
    let dir = tempfile::tempdir().unwrap();
    let connect = FakeConnect::start(vec![(201, r#"{"name": "pgdelta-orders-cdc"}"#)]);
    let args = ["connector", "register", "orders-cdc", "--connect-url"];
    let out = stdout(&pgdelta(dir.path(), &[&args[..], &[&connect.url]].concat()));
    assert!(
        out.contains("connector pgdelta-orders-cdc created"),
        "{out}"
    );
    let requests = connect.finish();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/connectors");
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["name"], "pgdelta-orders-cdc");
    assert_eq!(body["config"]["database.password"], SECRET);
    assert_eq!(body["config"]["transforms"], "unwrap");
    assert!(!out.contains(SECRET));
}

#[test]
fn register_updates_an_existing_connector() {
    let dir = tempfile::tempdir().unwrap();
    let connect = FakeConnect::start(vec![
        (
            409,
            r#"{"error_code": 409, "message": "Connector pgdelta-orders-cdc already exists"}"#,
        ),
        (200, r#"{"name": "pgdelta-orders-cdc", "config": {}}"#),
    ]);
    let out = stdout(&pgdelta(
        dir.path(),
        &[
            "connector",
            "register",
            "orders-cdc",
            "--connect-url",
            &connect.url,
        ],
    ));
    assert!(out.contains("updated"), "{out}");
    let requests = connect.finish();
    assert_eq!(requests[1].method, "PUT");
    assert_eq!(requests[1].path, "/connectors/pgdelta-orders-cdc/config");
    let config: Value = serde_json::from_str(&requests[1].body).unwrap();
    assert_eq!(
        config["connector.class"],
        "io.debezium.connector.postgresql.PostgresConnector"
    );
}

#[test]
fn register_reports_rejections_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let connect = FakeConnect::start(vec![
        (
            400,
            r#"{"error_code": 400, "message": "Connector configuration is invalid: slot.name"}"#,
        ),
        (
            409,
            r#"{"error_code": 409, "message": "Cannot complete request momentarily due to stale configuration"}"#,
        ),
    ]);
    let args = [
        "connector",
        "register",
        "orders-cdc",
        "--connect-url",
        &connect.url,
    ];
    let rejected = stderr_of_failure(&pgdelta(dir.path(), &args));
    assert!(
        rejected.contains("rejected the connector config"),
        "{rejected}"
    );
    assert!(
        rejected.contains("Connector configuration is invalid: slot.name"),
        "{rejected}"
    );
    assert!(!rejected.contains(SECRET));
    let conflict = stderr_of_failure(&pgdelta(dir.path(), &args));
    assert!(conflict.contains("409"), "{conflict}");
    assert!(conflict.contains("rebalancing"), "{conflict}");
    connect.finish();
}

#[test]
fn status_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let connect = FakeConnect::start(vec![
        (
            200,
            r#"{"name": "pgdelta-orders-cdc", "connector": {"state": "RUNNING", "worker_id": "w:8083"}, "tasks": [{"id": 0, "state": "RUNNING"}]}"#,
        ),
        (204, ""),
        (
            404,
            r#"{"error_code": 404, "message": "Connector pgdelta-orders-cdc not found"}"#,
        ),
    ]);
    let url = connect.url.clone();
    let status = stdout(&pgdelta(
        dir.path(),
        &["connector", "status", "orders-cdc", "--connect-url", &url],
    ));
    assert!(status.contains("RUNNING"), "{status}");
    let deleted = stdout(&pgdelta(
        dir.path(),
        &["connector", "delete", "orders-cdc", "--connect-url", &url],
    ));
    assert!(deleted.contains("deleted"), "{deleted}");
    let missing = stderr_of_failure(&pgdelta(
        dir.path(),
        &["connector", "delete", "orders-cdc", "--connect-url", &url],
    ));
    assert!(
        missing.contains("no connector named 'pgdelta-orders-cdc'"),
        "{missing}"
    );
    let requests = connect.finish();
    let seen: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("GET", "/connectors/pgdelta-orders-cdc/status"),
            ("DELETE", "/connectors/pgdelta-orders-cdc"),
            ("DELETE", "/connectors/pgdelta-orders-cdc"),
        ]
    );
}

#[test]
fn unreachable_connect_says_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let url = format!("http://127.0.0.1:{port}");
    let err = stderr_of_failure(&pgdelta(
        dir.path(),
        &["connector", "status", "orders-cdc", "--connect-url", &url],
    ));
    assert!(err.contains("cannot reach Kafka Connect"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    let no_url = stderr_of_failure(&pgdelta(dir.path(), &["connector", "status", "orders-cdc"]));
    assert!(no_url.contains("--connect-url"), "{no_url}");
}
