//! Connection settings and retried connects, with TLS per `sslmode`; passwords never logged.

use std::path::PathBuf;
use std::time::Duration;

use pgwire_replication::{ReplicationConfig, TlsConfig};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::Client;
use tokio_retry::strategy::{jitter, ExponentialBackoff};

use super::SourceError;
pub use crate::config::parse_url;
use crate::config::{Config, SslMode};

/// How to reach the source database.
#[derive(Clone)]
pub struct ConnectionSettings {
    config: tokio_postgres::Config,
    sslmode: SslMode,
    root_cert: Option<PathBuf>,
    attempts: usize,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionSettings({})", self.describe())
    }
}

impl ConnectionSettings {
    pub fn from_config(config: &Config) -> Result<Self, SourceError> {
        let mut pg = parse_url(&config.source.url).map_err(SourceError::Settings)?;
        let password = config
            .source_password()
            .map_err(|e| SourceError::Settings(e.to_string()))?;
        if let Some(password) = password {
            pg.password(password);
        }
        let sslmode = config.source.sslmode.unwrap_or_default();
        if config.source.sslmode.is_none() && pg.get_ssl_mode() == PgSslMode::Disable {
            // sslmode=disable given in the URL itself.
            return Ok(Self::new(
                pg,
                SslMode::Disable,
                None,
                config.source.connect_attempts,
            ));
        }
        Ok(Self::new(
            pg,
            sslmode,
            config.source.sslrootcert.clone(),
            config.source.connect_attempts,
        ))
    }

    fn new(
        config: tokio_postgres::Config,
        sslmode: SslMode,
        root_cert: Option<PathBuf>,
        attempts: usize,
    ) -> Self {
        ConnectionSettings {
            config,
            sslmode,
            root_cert,
            attempts: attempts.max(1),
        }
    }

    /// How many times to try reaching the server before giving up.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// `user@host:port/database`, never the password.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user(),
            self.host(),
            self.port(),
            self.database()
        )
    }

    pub fn user(&self) -> String {
        self.config.get_user().unwrap_or("postgres").to_string()
    }

    pub fn database(&self) -> String {
        self.config
            .get_dbname()
            .map(str::to_string)
            .unwrap_or_else(|| self.user())
    }

    fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".into(),
        }
    }

    fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    fn password(&self) -> String {
        self.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    }

    /// Connects, retrying with exponential backoff while the server is unreachable.
    pub async fn connect(&self) -> Result<Client, SourceError> {
        let mut delays = backoff_delays().take(self.attempts - 1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.connect_once().await {
                Ok(client) => return Ok(client),
                Err(failure) => match delays.next() {
                    Some(delay) if !failure.permanent => {
                        tracing::warn!(target_db = %self.describe(), attempt, error = %failure.message, retry_in = ?delay, "connect failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    _ => return Err(failure.into_error(self.describe(), attempt)),
                },
            }
        }
    }

    /// One connection attempt, for callers that retry on their own schedule.
    pub async fn connect_without_retry(&self) -> Result<Client, SourceError> {
        self.connect_once()
            .await
            .map_err(|failure| failure.into_error(self.describe(), 1))
    }

    /// One connection attempt, no retries.
    pub async fn connect_once(&self) -> Result<Client, ConnectFailure> {
        let mut config = self.config.clone();
        config.ssl_mode(match self.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        config.application_name("pgdelta");
        if self.sslmode == SslMode::Disable {
            // Building a TLS connector loads the system certificates: skip it when unused.
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| ConnectFailure::of(&e))?;
            tokio::spawn(log_when_closed(connection));
            return Ok(client);
        }
        let connector = self.tls_connector().map_err(|message| ConnectFailure {
            message,
            permanent: true,
        })?;
        let (client, connection) = config
            .connect(connector)
            .await
            .map_err(|e| ConnectFailure::of(&e))?;
        tokio::spawn(log_when_closed(connection));
        Ok(client)
    }

    fn tls_connector(&self) -> Result<postgres_native_tls::MakeTlsConnector, String> {
        let mut builder = native_tls::TlsConnector::builder();
        match self.sslmode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                builder.danger_accept_invalid_certs(true);
                builder.danger_accept_invalid_hostnames(true);
            }
            SslMode::VerifyCa => {
                builder.danger_accept_invalid_hostnames(true);
            }
            SslMode::VerifyFull => {}
        }
        if let Some(path) = &self.root_cert {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            let cert = native_tls::Certificate::from_pem(&pem)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            builder.add_root_certificate(cert);
        }
        let connector = builder.build().map_err(|e| e.to_string())?;
        Ok(postgres_native_tls::MakeTlsConnector::new(connector))
    }

    /// Settings for the replication connection of `slot`, reading `publication`.
    pub fn replication_config(&self, slot: &str, publication: &str) -> ReplicationConfig {
        let tls = match self.sslmode {
            SslMode::Disable => TlsConfig::disabled(),
            SslMode::Prefer => {
                let mut tls = TlsConfig::require();
                tls.mode = pgwire_replication::SslMode::Prefer;
                tls
            }
            SslMode::Require => TlsConfig::require(),
            SslMode::VerifyCa => TlsConfig::verify_ca(self.root_cert.clone()),
            // The certificate may name an IP address (IP SAN), as libpq accepts; the
            // replication client verifies against its SNI name, which may be that IP.
            SslMode::VerifyFull if self.host().parse::<std::net::IpAddr>().is_ok() => {
                TlsConfig::verify_full(self.root_cert.clone()).with_sni_hostname(self.host())
            }
            SslMode::VerifyFull => TlsConfig::verify_full(self.root_cert.clone()),
        };
        let config = ReplicationConfig::new(
            self.host(),
            self.user(),
            self.password(),
            self.database(),
            slot,
            publication,
        )
        .with_port(self.port())
        .with_tls(tls)
        .with_application_name(format!("pgdelta:{slot}"))
        // One text rendering per type, whatever the server's defaults are.
        .with_options(
            "-c datestyle=ISO,YMD -c timezone=UTC -c intervalstyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex",
        )
        .with_status_interval(Duration::from_millis(500))
        .with_coalesce_reads(COALESCE_READS);
        match self.is_loopback() {
            true => config.with_recv_buffer_size(LOOPBACK_RECV_BUFFER),
            false => config,
        }
    }

    /// Whether the replication connection reaches a server on this machine over TCP (a Unix
    /// socket's [`host`](Self::host) is its path).
    fn is_loopback(&self) -> bool {
        let host = self.host();
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A walsender writes each change as it decodes it. Read what arrived within a millisecond
/// at once instead of waking, and making a syscall, for nearly every change: on 1M narrow
/// inserts the replication client's CPU went from 4.5–6.1 to 1.2–1.6 s (with the buffer below).
const COALESCE_READS: Duration = Duration::from_millis(1);

/// With a server on the same machine, a small receive buffer (the kernel's grows to MBs)
/// fills during those pauses, and the walsender then writes what it decoded meanwhile in one
/// go: it used half the CPU on 1M narrow inserts, the stream took half the time. Over a
/// network the kernel's buffer stays, as a fixed small window would cap throughput at
/// window / round trip.
const LOOPBACK_RECV_BUFFER: u32 = 32 * 1024;

async fn log_when_closed<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "PostgreSQL connection closed");
    }
}

/// The longest wait before each retry: 250 ms, doubling, capped at 30 s.
fn backoff_ceilings() -> impl Iterator<Item = Duration> {
    ExponentialBackoff::from_millis(2)
        .factor(125)
        .max_delay(Duration::from_secs(30))
}

/// Exponential backoff from 250 ms, capped at 30 s, with jitter (a random part of each
/// ceiling).
pub fn backoff_delays() -> impl Iterator<Item = Duration> {
    backoff_ceilings().map(jitter)
}

/// The delay before retry number `attempt` (1-based).
pub fn backoff_delay(attempt: usize) -> Duration {
    backoff_delays()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(Duration::from_secs(30))
}

/// Why one connection attempt failed.
#[derive(Debug, Clone)]
pub struct ConnectFailure {
    pub message: String,
    /// No retry will fix it: a wrong password, an unknown database or role, a `pg_hba.conf`
    /// that rejects the connection, a certificate that does not verify.
    pub permanent: bool,
}

impl ConnectFailure {
    fn of(error: &tokio_postgres::Error) -> ConnectFailure {
        ConnectFailure {
            message: error_text(error),
            permanent: is_permanent(error),
        }
    }

    fn into_error(self, target: String, attempts: usize) -> SourceError {
        SourceError::Connect {
            target,
            attempts,
            message: self.message,
            permanent: self.permanent,
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Decided from the server's SQLSTATE (class 28, invalid authorization, covers passwords,
/// roles and `pg_hba.conf`; 3D000 an unknown database), or a failed TLS handshake.
fn is_permanent(error: &tokio_postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        return permanent_sqlstate(db.code());
    }
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        if inner.downcast_ref::<native_tls::Error>().is_some() {
            return true;
        }
        cause = inner.source();
    }
    false
}

fn permanent_sqlstate(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME
}

/// A tokio-postgres error with its database cause, which its `Display` leaves out.
pub(crate) fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {}", db.message()),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_and_unknown_databases_are_permanent_other_server_errors_are_not() {
        use tokio_postgres::error::SqlState;
        for code in [
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::INVALID_CATALOG_NAME,
        ] {
            assert!(permanent_sqlstate(&code), "{}", code.code());
        }
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_FAILURE,
        ] {
            assert!(!permanent_sqlstate(&code), "{}", code.code());
        }
    }

    #[test]
    fn describes_the_target_without_the_password() {
        let pg = parse_url("postgres://cdc:hunter2@db.example:6543/shop").unwrap();
        let settings = ConnectionSettings::new(pg, SslMode::Prefer, None, 3);
        assert_eq!(settings.describe(), "cdc@db.example:6543/shop");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let repl = settings.replication_config("slot_a", "pub_a");
        assert_eq!(repl.password, "hunter2");
        assert_eq!(repl.port, 6543);
    }

    #[test]
    fn reads_are_coalesced_and_a_server_on_this_machine_gets_a_small_receive_buffer() {
        let config = |url: &str| {
            let settings =
                ConnectionSettings::new(parse_url(url).unwrap(), SslMode::Disable, None, 3);
            settings.replication_config("slot", "pub")
        };
        for local in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]/db",
        ] {
            let repl = config(local);
            assert_eq!(repl.recv_buffer_size, Some(LOOPBACK_RECV_BUFFER), "{local}");
            assert_eq!(repl.coalesce_reads, COALESCE_READS);
        }
        for remote in ["postgres://u@db.example/db", "postgres://u@10.0.0.7/db"] {
            let repl = config(remote);
            assert_eq!(repl.recv_buffer_size, None, "{remote}");
            assert_eq!(repl.coalesce_reads, COALESCE_READS);
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let ceilings: Vec<Duration> = backoff_ceilings().take(10).collect();
        let expected: Vec<Duration> = [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000]
            .into_iter()
            .chain([30_000, 30_000])
            .map(Duration::from_millis)
            .collect();
        assert_eq!(ceilings, expected);
        // What `connect` and the pipeline's reconnects wait: jittered, never above the ceiling.
        for _ in 0..50 {
            for (delay, ceiling) in backoff_delays().zip(&expected) {
                assert!(delay <= *ceiling, "{delay:?} > {ceiling:?}");
            }
            for (attempt, ceiling) in expected.iter().enumerate() {
                let delay = backoff_delay(attempt + 1);
                assert!(delay <= *ceiling, "attempt {}: {delay:?}", attempt + 1);
            }
            assert!(backoff_delay(0) <= expected[0]);
            assert!(backoff_delay(1_000) <= Duration::from_secs(30));
        }
        let spread: Vec<Duration> = (0..50).map(|_| backoff_delay(8)).collect();
        assert!(
            spread.iter().any(|d| *d != spread[0]),
            "jittered: {spread:?}"
        );
    }
}
