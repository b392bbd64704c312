//! TLS to PostgreSQL against a server with a certificate from a throwaway CA (made with the
//! `openssl` CLI at test time), whose pg_hba.conf refuses every connection without TLS.

#[path = "harness/mod.rs"]
mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{
    cluster_with_db, delta_as_strings, give_to_postgres, pg_as_strings, replace_pg_hba, Pgdelta, DB,
};
use support::PgCluster;

/// Only TLS connections over TCP, for both normal and replication connections.
const TLS_ONLY_HBA: &str = "\
local all all trust
local replication all trust
hostnossl all all 0.0.0.0/0 reject
hostnossl replication all 0.0.0.0/0 reject
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl replication all 127.0.0.1/32 scram-sha-256
";

const ITEMS: &str = "SELECT id::text, label FROM items";

/// A cluster serving TLS with a certificate for `localhost` / `127.0.0.1` signed by `ca`.
struct TlsServer {
    cluster: PgCluster,
    certs: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let cluster = cluster_with_db();
        let certs = tempfile::tempdir().unwrap();
        make_ca(certs.path(), "ca", "pgdelta test CA");
        make_ca(certs.path(), "other_ca", "some other CA");
        make_server_cert(certs.path(), cluster.data_dir());
        let cert = cluster.data_dir().join("server.crt");
        let key = cluster.data_dir().join("server.key");
        cluster.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET ssl = on;
                 ALTER SYSTEM SET ssl_cert_file = '{}';
                 ALTER SYSTEM SET ssl_key_file = '{}';",
                cert.display(),
                key.display()
            ),
        );
        cluster.stop_fast();
        cluster.start_again();
        replace_pg_hba(&cluster, TLS_ONLY_HBA);
        let ssl_in_use = cluster.psql(
            DB,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        );
        assert_eq!(ssl_in_use.trim(), "t", "psql itself should now use TLS");
        cluster.psql(
            DB,
            "CREATE TABLE items (id bigint PRIMARY KEY, label text);
             INSERT INTO items SELECT g, 'before ' || g FROM generate_series(1, 50) g;",
        );
        TlsServer { cluster, certs }
    }

    fn ca(&self) -> PathBuf {
        self.certs.path().join("ca.crt")
    }

    fn other_ca(&self) -> PathBuf {
        self.certs.path().join("other_ca.crt")
    }

    /// A pgdelta config for `host` with the given TLS keys, one pipeline `p` on `items`.
    fn pgdelta(&self, host: &str, tls_keys: &str) -> Pgdelta {
        let source = format!(
            "url = \"postgres://postgres@{host}:{}/{DB}\"\n{tls_keys}\nconnect_attempts = 2\n",
            self.cluster.port()
        );
        Pgdelta::with_source(
            &source,
            "[pipelines.p]\ntables = [\"public.items\"]\ndelta_root = \"DELTA_ROOT\"\n\
             batch_interval_ms = 100\n",
        )
    }

    /// Runs pipeline `p` to the end twice (snapshot, then streamed changes) and checks Delta.
    fn assert_replicates(&self, pgdelta: &Pgdelta, label: &str) {
        pgdelta.catch_up("p");
        self.cluster.psql(
            DB,
            &format!(
                "INSERT INTO items VALUES ((SELECT max(id) + 1 FROM items), '{label}');
                 UPDATE items SET label = label || ' via {label}' WHERE id % 10 = 0;
                 DELETE FROM items WHERE id = (SELECT min(id) FROM items);"
            ),
        );
        pgdelta.catch_up("p");
        assert_eq!(
            delta_as_strings(&pgdelta.table_path("public", "items")),
            pg_as_strings(&self.cluster, DB, ITEMS),
            "{label}"
        );
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI must be installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn make_ca(dir: &Path, name: &str, common_name: &str) {
    let (key, cert, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={common_name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Writes `server.crt` and `server.key` (mode 0600, owned by the server's OS user) into
/// `data_dir`, signed by `ca` in `dir`.
fn make_server_cert(dir: &Path, data_dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "4242",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    for name in ["server.crt", "server.key"] {
        let target = data_dir.join(name);
        std::fs::copy(dir.join(name), &target).unwrap();
        give_to_postgres(&target);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data_dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn stderr_of_failed_start(pgdelta: &Pgdelta) -> String {
    let output = pgdelta.run(&["pipeline", "start", "p", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected a failure:\n{stderr}");
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error"))
        .unwrap_or("");
    println!("pgdelta refused: {last}");
    stderr
}

fn slot_count(server: &TlsServer) -> String {
    server
        .cluster
        .psql(DB, "SELECT count(*) FROM pg_replication_slots")
        .trim()
        .to_string()
}

#[test]
fn require_and_verify_full_with_the_ca_replicate_end_to_end() {
    let server = TlsServer::start();
    let require = server.pgdelta("127.0.0.1", "sslmode = \"require\"");
    server.assert_replicates(&require, "require");

    let verify_full = server.pgdelta(
        "localhost",
        &format!(
            "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
            server.ca().display()
        ),
    );
    // Another pipeline directory, same pipeline name: the same slot and publication, a
    // fresh Delta table copied by a snapshot under a temporary slot.
    server.assert_replicates(&verify_full, "verify-full");

    let verify_ca = server.pgdelta(
        "127.0.0.1",
        &format!(
            "sslmode = \"verify-ca\"\nsslrootcert = \"{}\"",
            server.ca().display()
        ),
    );
    server.assert_replicates(&verify_ca, "verify-ca");
}

#[test]
fn verify_full_with_the_wrong_ca_fails_with_a_certificate_error() {
    let server = TlsServer::start();
    let wrong_ca = server.pgdelta(
        "localhost",
        &format!(
            "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
            server.other_ca().display()
        ),
    );
    let stderr = stderr_of_failed_start(&wrong_ca);
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("certificate") && (lower.contains("verify") || lower.contains("unknown")),
        "no clear certificate error:\n{stderr}"
    );

    // verify-full without any sslrootcert: the server's CA is in no system store.
    let no_ca = server.pgdelta("localhost", "sslmode = \"verify-full\"");
    let stderr = stderr_of_failed_start(&no_ca);
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "no clear certificate error:\n{stderr}"
    );
    assert_eq!(slot_count(&server), "0", "nothing may be created");
}

#[test]
fn sslmode_disable_is_refused_by_a_tls_only_server_with_a_clear_message() {
    let server = TlsServer::start();
    let plain = server.pgdelta("127.0.0.1", "sslmode = \"disable\"");
    let stderr = stderr_of_failed_start(&plain);
    assert!(
        stderr.contains("no encryption") && stderr.contains("pg_hba.conf"),
        "unclear refusal:\n{stderr}"
    );
    assert_eq!(slot_count(&server), "0", "nothing may be created");
}

#[test]
fn verify_full_to_an_ip_address_named_in_the_certificate_replicates() {
    // libpq accepts verify-full to an IP address when the certificate carries it as an IP
    // SAN (here IP:127.0.0.1).
    let server = TlsServer::start();
    let by_ip = server.pgdelta(
        "127.0.0.1",
        &format!(
            "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
            server.ca().display()
        ),
    );
    server.assert_replicates(&by_ip, "verify-full-ip");
}

#[test]
fn a_certificate_error_is_not_retried() {
    let server = TlsServer::start();
    let source = format!(
        "url = \"postgres://postgres@localhost:{}/{DB}\"\nsslmode = \"verify-full\"\nsslrootcert = \"{}\"\n",
        server.cluster.port(),
        server.other_ca().display()
    );
    let wrong_ca = Pgdelta::with_source(
        &source,
        "[pipelines.p]\ntables = [\"public.items\"]\ndelta_root = \"DELTA_ROOT\"\n",
    );
    let started = std::time::Instant::now();
    let stderr = stderr_of_failed_start(&wrong_ca);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a certificate error took {:?} to report:\n{stderr}",
        started.elapsed()
    );
}
