//! The TOML configuration file, with environment overrides.
//!
//! Environment variables override file keys: `PGDELTA_SOURCE_<KEY>` for `[source]` and
//! `PGDELTA_PIPELINES_<PIPELINE>_<KEY>` for `[pipelines.<pipeline>]`, where `<PIPELINE>` is
//! the pipeline name upper-cased with `-` and `.` as `_` (lists are comma-separated).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod kafka;
mod maintenance;
mod source_url;
mod storage;
mod table_name;
mod validation;

pub use kafka::KafkaConfig;
pub use maintenance::{Maintenance, MaintenanceConfig, MIN_VACUUM_RETENTION_HOURS};
pub use source_url::parse_url;
pub use storage::StorageOptions;
pub use table_name::{quote_ident, ParseTableNameError, TableName};
pub use validation::ValidationConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("no pipeline named '{name}' in {path} (configured: {known})")]
    UnknownPipeline {
        name: String,
        path: PathBuf,
        known: String,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `postgres://user[:password]@host:port/db`
    pub url: String,
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// Root certificate file for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Password when not in the URL; prefer `PGDELTA_SOURCE_PASSWORD` or `password_file`.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How many times to try (re)connecting before giving up.
    #[serde(default = "default_connect_attempts")]
    pub connect_attempts: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Delta table location; defaults to `<delta_root>/<schema>/<table>`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Key columns, needed only where the table has no primary key.
    #[serde(default)]
    pub key: Vec<String>,
    /// Object-store options for this table, over the pipeline's and `[storage]`.
    #[serde(default)]
    pub storage: StorageOptions,
    /// Columns to Z-order by when compacting (same as `maintenance.zorder_by` here).
    #[serde(default)]
    pub zorder_by: Option<Vec<String>>,
    /// Maintenance settings of this table, over the pipeline's.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// How updates and deletes are written, over the pipeline's `write_mode`.
    #[serde(default)]
    pub write_mode: Option<WriteMode>,
}

/// How updates and deletes reach a Delta table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// MERGE rewrites every data file that holds a changed key (readable by every Delta reader).
    #[default]
    CopyOnWrite,
    /// The old rows are marked in deletion vectors and the new images appended (protocol
    /// reader 3 / writer 7): a batch costs what it changes, not what the table holds.
    DeletionVectors,
}

/// Whether to copy what the tables already hold before streaming changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy every table that has no pgdelta position yet, then stream (the default).
    #[default]
    Initial,
    /// Never copy; stream changes from when the slot was created.
    Never,
    /// Copy the tables that need it, then exit without streaming.
    InitialOnly,
}

/// What to do with a change that cannot be applied (e.g. a value Delta cannot hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Stop with an error naming table, column, value and position; nothing is confirmed.
    #[default]
    Fail,
    /// Write the change to the dead-letter file with the reason and go on.
    DeadLetter,
}

/// Where a pipeline reads changes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineMode {
    /// From the PostgreSQL replication slot (pgoutput), no Kafka.
    #[default]
    Direct,
    /// Debezium change events from Kafka topics (`[pipelines.<name>.kafka]`).
    Kafka,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub tables: Vec<String>,
    #[serde(default)]
    pub mode: PipelineMode,
    #[serde(default = "default_delta_root")]
    pub delta_root: String,
    #[serde(default)]
    pub slot: Option<String>,
    #[serde(default)]
    pub publication: Option<String>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_batch_interval_ms")]
    pub batch_interval_ms: u64,
    /// While a batch is being written and the source has more waiting, the next batch takes
    /// what was read meanwhile, up to this many events (default 4 x `batch_size`): a slow
    /// store gets fewer, larger commits instead of falling further behind. The same, after
    /// a run's first batch, while the changes read committed more than `batch_interval_ms`
    /// ago (catching up on a backlog).
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// A transaction with more changes than this is applied as it streams in (its inserts
    /// appended in chunks) instead of being held in memory until its commit.
    #[serde(default = "default_large_transaction_events")]
    pub large_transaction_events: usize,
    /// How many tables are copied at once during the initial snapshot.
    #[serde(default = "default_snapshot_parallelism")]
    pub snapshot_parallelism: usize,
    /// Defaults to `fail` in direct mode and `dead_letter` in Kafka mode.
    #[serde(default)]
    pub on_error: Option<ErrorPolicy>,
    /// JSONL file for dead letters; defaults to `<delta_root>/_dead_letters/<pipeline>.jsonl`.
    #[serde(default)]
    pub dead_letter_path: Option<String>,
    #[serde(default)]
    pub table: BTreeMap<String, TableConfig>,
    /// `[pipelines.<name>.validation]`: periodic validation and lag thresholds.
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Kafka mode (Debezium): `[pipelines.<name>.kafka]`.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// `[pipelines.<name>.maintenance]`: compaction, checkpoints, log cleanup, VACUUM.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// `[pipelines.<name>.storage]`: object-store options over `[storage]`.
    #[serde(default)]
    pub storage: StorageOptions,
    /// Commit to an object store that does not honour conditional writes (`If-None-Match`),
    /// trusting that this process is the only writer of its tables. Unsafe: two writers
    /// can then overwrite each other's commits.
    #[serde(default)]
    pub unsafe_single_writer: bool,
    /// Direct mode, PostgreSQL 17+: create the replication slot as a failover slot, which
    /// the server syncs to standbys (`sync_replication_slots`), so the pipeline survives a
    /// failover to one (Debezium's `slot.failover`).
    #[serde(default)]
    pub failover: bool,
    /// How updates and deletes are written (per table: `table.<name>.write_mode`).
    #[serde(default)]
    pub write_mode: WriteMode,
    /// This process's name among the processes that run the pipeline (the members of a
    /// Kafka consumer group), recorded in each Delta commit it makes and shown by `pipeline
    /// status`; defaults to `<host name>:<process id>`.
    #[serde(default)]
    pub member: Option<String>,
}

/// `[http]`: the metrics and health endpoints of `pipeline start`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `ip:port` (default 127.0.0.1:9187); port 0 picks a free port (it is logged).
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl HttpConfig {
    /// The configured address, `None` when the file names none.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        self.listen
            .as_deref()
            .map(parse_listen)
            .transpose()
            .map_err(|e| format!("[http] listen: {e}"))
    }
}

/// An `ip:port` to listen on.
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("'{text}' is not an IP address and port such as 127.0.0.1:9187 or [::1]:9187")
    })
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// `[storage]`: object-store options for every pipeline's tables.
    #[serde(default)]
    pub storage: StorageOptions,
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_true() -> bool {
    true
}
fn default_connect_attempts() -> usize {
    10
}
fn default_delta_root() -> String {
    "./delta-lake".into()
}
fn default_batch_size() -> usize {
    10_000
}
/// Half a second, as Debezium's `poll.interval.ms`: a committed change is visible in Delta
/// well within a second at low rates; at high rates `batch_size` closes batches first.
fn default_batch_interval_ms() -> u64 {
    500
}
/// `max_batch_size` unless set: this many times `batch_size`.
const DEFAULT_MAX_BATCH_FACTOR: usize = 4;
fn default_large_transaction_events() -> usize {
    100_000
}
fn default_snapshot_parallelism() -> usize {
    2
}

const SOURCE_KEYS: &[&str] = &[
    "url",
    "sslmode",
    "sslrootcert",
    "password",
    "password_file",
    "connect_attempts",
];
const PIPELINE_KEYS: &[&str] = &[
    "tables",
    "mode",
    "delta_root",
    "slot",
    "publication",
    "batch_size",
    "batch_interval_ms",
    "max_batch_size",
    "snapshot_mode",
    "snapshot_parallelism",
    "large_transaction_events",
    "on_error",
    "dead_letter_path",
    "unsafe_single_writer",
    "failover",
    "write_mode",
    "member",
];
/// Keys of `[pipelines.<name>.kafka]`, overridden by `PGDELTA_PIPELINES_<PIPELINE>_KAFKA_<KEY>`.
const KAFKA_KEYS: &[&str] = &[
    "bootstrap_servers",
    "group_id",
    "topic_prefix",
    "topics",
    "topic_pattern",
    "connect_url",
    "connector_name",
    "unwrap",
    "schemas",
    "snapshot_mode",
    "heartbeat_interval_ms",
];
/// Keys of `[pipelines.<name>.maintenance]`, overridden by
/// `PGDELTA_PIPELINES_<PIPELINE>_MAINTENANCE_<KEY>`.
const MAINTENANCE_KEYS: &[&str] = &[
    "enabled",
    "compact_min_files",
    "target_file_size_mb",
    "zorder_by",
    "checkpoint_interval",
    "log_retention_hours",
    "vacuum_interval_hours",
    "vacuum_retention_hours",
];
const LIST_KEYS: &[&str] = &["tables", "topics", "zorder_by"];
const BOOLEAN_KEYS: &[&str] = &[
    "unwrap",
    "schemas",
    "unsafe_single_writer",
    "failover",
    "enabled",
];
const NUMERIC_KEYS: &[&str] = &[
    "heartbeat_interval_ms",
    "large_transaction_events",
    "batch_size",
    "batch_interval_ms",
    "max_batch_size",
    "connect_attempts",
    "snapshot_parallelism",
    "compact_min_files",
    "target_file_size_mb",
    "checkpoint_interval",
    "log_retention_hours",
    "vacuum_interval_hours",
    "vacuum_retention_hours",
];

/// `<host name>:<process id>`: tells apart processes on one host as well as on several.
fn default_member() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// Everything one pipeline needs, resolved: table names parsed, defaults derived.
#[derive(Debug, Clone)]
pub struct ResolvedPipeline {
    pub name: String,
    pub mode: PipelineMode,
    pub tables: Vec<ResolvedTable>,
    pub slot: String,
    pub publication: String,
    pub batch_size: usize,
    pub batch_interval: Duration,
    /// At least `batch_size`.
    pub max_batch_size: usize,
    pub snapshot_mode: SnapshotMode,
    pub snapshot_parallelism: usize,
    pub large_transaction_events: usize,
    pub on_error: ErrorPolicy,
    pub dead_letter_path: String,
    pub unsafe_single_writer: bool,
    pub slot_failover: bool,
    /// This process's name in the Delta commits it makes (see `member`).
    pub member: String,
}

#[derive(Debug, Clone)]
pub struct ResolvedTable {
    pub name: TableName,
    pub path: String,
    pub partition_by: Vec<String>,
    pub key: Vec<String>,
    /// `[storage]`, then the pipeline's, then the table's own options.
    pub storage: StorageOptions,
    pub maintenance: Maintenance,
    pub write_mode: WriteMode,
}

impl Config {
    /// Reads `path`, applies `PGDELTA_*` environment overrides and checks every key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path, std::env::vars())
    }

    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut value: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        apply_env_overrides(&mut value, env)?;
        let mut config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.message().to_string()))?;
        config.path = path.to_path_buf();
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        parse_url(&self.source.url).map_err(|e| format!("[source] url: {e}"))?;
        self.http.listen_addr()?;
        for (name, pipeline) in &self.pipelines {
            pipeline
                .resolve(name, &self.storage)
                .map_err(|e| format!("[pipelines.{name}] {e}"))?;
        }
        Ok(())
    }

    pub fn pipeline(&self, name: &str) -> Result<ResolvedPipeline, ConfigError> {
        let pipeline = self
            .pipelines
            .get(name)
            .ok_or_else(|| ConfigError::UnknownPipeline {
                name: name.to_string(),
                path: self.path.clone(),
                known: self
                    .pipelines
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        pipeline
            .resolve(name, &self.storage)
            .map_err(|message| ConfigError::Invalid {
                path: self.path.clone(),
                message,
            })
    }

    /// The source password: from the URL, `password`, `password_file` or `PGDELTA_SOURCE_PASSWORD`
    /// (already merged into `password` by the environment overrides).
    pub fn source_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(password) = &self.source.password {
            return Ok(Some(password.clone()));
        }
        let Some(file) = &self.source.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

impl PipelineConfig {
    fn resolve(&self, name: &str, storage: &StorageOptions) -> Result<ResolvedPipeline, String> {
        if self.tables.is_empty() {
            return Err("tables: list at least one table".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        let max_batch_size = self
            .max_batch_size
            .unwrap_or(self.batch_size.saturating_mul(DEFAULT_MAX_BATCH_FACTOR));
        if max_batch_size < self.batch_size {
            return Err(format!(
                "max_batch_size ({max_batch_size}) must be at least batch_size ({})",
                self.batch_size
            ));
        }
        let mut tables = Vec::new();
        for table in &self.tables {
            let parsed: TableName = table.parse().map_err(|e| format!("tables: {e}"))?;
            let settings = self.table_settings(&parsed);
            let write_mode = settings.write_mode.unwrap_or(self.write_mode);
            let default_path = format!(
                "{}/{}/{}",
                self.delta_root.trim_end_matches('/'),
                parsed.schema,
                parsed.name
            );
            tables.push(ResolvedTable {
                path: settings.path.clone().unwrap_or(default_path),
                partition_by: settings.partition_by.clone(),
                key: settings.key.clone(),
                storage: storage
                    .overridden_by(&self.storage)
                    .overridden_by(&settings.storage),
                maintenance: self
                    .maintenance
                    .overridden_by(&MaintenanceConfig {
                        zorder_by: settings.zorder_by.clone(),
                        ..Default::default()
                    })
                    .overridden_by(&settings.maintenance)
                    .resolve(write_mode)
                    .map_err(|e| format!("table.\"{parsed}\": {e}"))?,
                write_mode,
                name: parsed,
            });
        }
        for configured in self.table.keys() {
            let parsed: TableName = configured
                .parse()
                .map_err(|e| format!("table.\"{configured}\": {e}"))?;
            if !tables.iter().any(|t| t.name == parsed) {
                return Err(format!("table.\"{configured}\" is not in tables"));
            }
        }
        let derived = format!("pgdelta_{}", sanitize_identifier(name));
        let slot = self.slot.clone().unwrap_or_else(|| derived.clone());
        check_slot_name(&slot)?;
        let default_policy = match self.mode {
            PipelineMode::Direct => ErrorPolicy::Fail,
            PipelineMode::Kafka => ErrorPolicy::DeadLetter,
        };
        if self.mode == PipelineMode::Kafka {
            let kafka = self.kafka.clone().unwrap_or_default();
            if kafka.bootstrap_servers.is_none() {
                return Err("mode = \"kafka\" needs kafka.bootstrap_servers".into());
            }
            if !kafka.topics.is_empty() && kafka.topic_pattern.is_some() {
                return Err("kafka: set topics or topic_pattern, not both".into());
            }
        }
        Ok(ResolvedPipeline {
            name: name.to_string(),
            mode: self.mode,
            tables,
            slot,
            publication: self.publication.clone().unwrap_or(derived),
            batch_size: self.batch_size,
            batch_interval: Duration::from_millis(self.batch_interval_ms),
            max_batch_size,
            snapshot_mode: self.snapshot_mode,
            snapshot_parallelism: self.snapshot_parallelism.max(1),
            large_transaction_events: self.large_transaction_events,
            on_error: self.on_error.unwrap_or(default_policy),
            dead_letter_path: self.dead_letter_path.clone().unwrap_or_else(|| {
                format!(
                    "{}/_dead_letters/{name}.jsonl",
                    self.delta_root.trim_end_matches('/')
                )
            }),
            unsafe_single_writer: self.unsafe_single_writer,
            slot_failover: self.failover,
            member: self.member.clone().unwrap_or_else(default_member),
        })
    }

    fn table_settings(&self, table: &TableName) -> TableConfig {
        self.table
            .iter()
            .find(|(name, _)| name.parse::<TableName>().ok().as_ref() == Some(table))
            .map(|(_, settings)| settings.clone())
            .unwrap_or_default()
    }
}

/// Lower-case letters, digits and `_`, as replication slot names require.
pub fn sanitize_identifier(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn check_slot_name(slot: &str) -> Result<(), String> {
    let legal = !slot.is_empty()
        && slot.len() <= 63
        && slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if legal {
        Ok(())
    } else {
        Err(format!(
            "slot '{slot}': replication slot names may contain only lower-case letters, digits and '_' (at most 63)"
        ))
    }
}

fn env_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn env_value(var: &str, key: &str, raw: &str) -> Result<toml::Value, ConfigError> {
    if BOOLEAN_KEYS.contains(&key) {
        let flag = raw.parse::<bool>().map_err(|_| ConfigError::Env {
            var: var.to_string(),
            message: format!("'{key}' must be true or false"),
        })?;
        return Ok(toml::Value::Boolean(flag));
    }
    if LIST_KEYS.contains(&key) {
        let items = raw
            .split(',')
            .map(|s| toml::Value::String(s.trim().to_string()));
        return Ok(toml::Value::Array(items.collect()));
    }
    if NUMERIC_KEYS.contains(&key) {
        let number = raw.parse::<i64>().map_err(|_| ConfigError::Env {
            var: var.to_string(),
            message: format!("'{key}' must be a whole number"),
        })?;
        return Ok(toml::Value::Integer(number));
    }
    Ok(toml::Value::String(raw.to_string()))
}

fn apply_env_overrides(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let pipeline_names: Vec<String> = root
        .get("pipelines")
        .and_then(|p| p.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    for (var, raw) in env {
        if let Some(key) = var.strip_prefix("PGDELTA_STORAGE_") {
            let storage = table_entry(root, "storage");
            storage.insert(key.to_ascii_lowercase(), toml::Value::String(raw));
        } else if let Some(rest) = var.strip_prefix("PGDELTA_SOURCE_") {
            if let Some(key) = SOURCE_KEYS.iter().find(|k| env_key(k) == rest) {
                let source = table_entry(root, "source");
                source.insert(key.to_string(), env_value(&var, key, &raw)?);
            }
        } else if let Some(rest) = var.strip_prefix("PGDELTA_PIPELINES_") {
            for pipeline in &pipeline_names {
                let Some(key_part) = rest.strip_prefix(&format!("{}_", env_key(pipeline))) else {
                    continue;
                };
                if let Some(key) = PIPELINE_KEYS.iter().find(|k| env_key(k) == key_part) {
                    let pipelines = table_entry(root, "pipelines");
                    let target = table_entry(pipelines, pipeline);
                    target.insert(key.to_string(), env_value(&var, key, &raw)?);
                } else if let Some(key) = key_part
                    .strip_prefix("KAFKA_")
                    .and_then(|part| KAFKA_KEYS.iter().find(|k| env_key(k) == part))
                {
                    let pipelines = table_entry(root, "pipelines");
                    let kafka = table_entry(table_entry(pipelines, pipeline), "kafka");
                    kafka.insert(key.to_string(), env_value(&var, key, &raw)?);
                } else if let Some(key) = key_part
                    .strip_prefix("MAINTENANCE_")
                    .and_then(|part| MAINTENANCE_KEYS.iter().find(|k| env_key(k) == part))
                {
                    let pipelines = table_entry(root, "pipelines");
                    let section = table_entry(table_entry(pipelines, pipeline), "maintenance");
                    section.insert(key.to_string(), env_value(&var, key, &raw)?);
                } else if let Some(key) = key_part.strip_prefix("STORAGE_") {
                    let pipelines = table_entry(root, "pipelines");
                    let storage = table_entry(table_entry(pipelines, pipeline), "storage");
                    storage.insert(key.to_ascii_lowercase(), toml::Value::String(raw.clone()));
                }
            }
        }
    }
    Ok(())
}

fn table_entry<'a>(table: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let entry = table
        .entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    entry.as_table_mut().expect("just made a table")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[source]
url = "postgres://cdcuser@127.0.0.1:5432/cdcdb"
sslmode = "prefer"

[pipelines.postgres-cdc]
tables = ["public.customers", "public.orders"]
delta_root = "./delta-lake"
batch_size = 500

[pipelines.postgres-cdc.table."public.orders"]
path = "./delta-lake/orders"
partition_by = ["region"]
key = ["order_id"]
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(text, Path::new("pgdelta.toml"), env)
    }

    #[test]
    fn loads_the_documented_shape_with_defaults() {
        let config = load(SAMPLE, &[]).unwrap();
        let pipeline = config.pipeline("postgres-cdc").unwrap();
        assert_eq!(pipeline.slot, "pgdelta_postgres_cdc");
        assert_eq!(pipeline.publication, "pgdelta_postgres_cdc");
        assert_eq!(pipeline.batch_size, 500);
        assert_eq!(pipeline.batch_interval, Duration::from_millis(500));
        assert_eq!(pipeline.max_batch_size, 2_000);
        assert_eq!(pipeline.tables[0].path, "./delta-lake/public/customers");
        assert_eq!(pipeline.tables[1].path, "./delta-lake/orders");
        assert_eq!(pipeline.tables[1].partition_by, vec!["region"]);
        assert_eq!(pipeline.tables[1].key, vec!["order_id"]);
        assert_eq!(config.source.sslmode, Some(SslMode::Prefer));
    }

    #[test]
    fn max_batch_size_below_batch_size_is_refused() {
        let text = SAMPLE.replace("batch_size = 500", "batch_size = 500\nmax_batch_size = 499");
        let error = load(&text, &[]).unwrap_err().to_string();
        assert!(
            error.contains("max_batch_size (499) must be at least batch_size (500)"),
            "{error}"
        );
        let env = [("PGDELTA_PIPELINES_POSTGRES_CDC_MAX_BATCH_SIZE", "600")];
        let config = load(SAMPLE, &env).unwrap();
        assert_eq!(config.pipeline("postgres-cdc").unwrap().max_batch_size, 600);
    }

    #[test]
    fn environment_overrides_file_keys() {
        let config = load(
            SAMPLE,
            &[
                ("PGDELTA_SOURCE_URL", "postgres://other@db:6543/x"),
                ("PGDELTA_SOURCE_PASSWORD", "s3cret"),
                ("PGDELTA_PIPELINES_POSTGRES_CDC_BATCH_SIZE", "7"),
                (
                    "PGDELTA_PIPELINES_POSTGRES_CDC_TABLES",
                    "public.a, public.orders",
                ),
            ],
        )
        .unwrap();
        assert_eq!(config.source.url, "postgres://other@db:6543/x");
        assert_eq!(config.source_password().unwrap().as_deref(), Some("s3cret"));
        let pipeline = config.pipelines.get("postgres-cdc").unwrap();
        assert_eq!(pipeline.batch_size, 7);
        assert_eq!(pipeline.tables, vec!["public.a", "public.orders"]);
    }

    #[test]
    fn environment_overrides_kafka_keys() {
        let config = load(
            SAMPLE,
            &[
                ("PGDELTA_PIPELINES_POSTGRES_CDC_MODE", "kafka"),
                (
                    "PGDELTA_PIPELINES_POSTGRES_CDC_KAFKA_BOOTSTRAP_SERVERS",
                    "broker:9092",
                ),
                ("PGDELTA_PIPELINES_POSTGRES_CDC_KAFKA_GROUP_ID", "g1"),
                (
                    "PGDELTA_PIPELINES_POSTGRES_CDC_KAFKA_TOPICS",
                    "a.b.c, d.e.f",
                ),
                ("PGDELTA_PIPELINES_POSTGRES_CDC_KAFKA_UNWRAP", "true"),
            ],
        )
        .unwrap();
        let pipeline = config.pipelines.get("postgres-cdc").unwrap();
        let kafka = pipeline.kafka.clone().unwrap();
        assert_eq!(kafka.bootstrap_servers.as_deref(), Some("broker:9092"));
        assert_eq!(kafka.group_id.as_deref(), Some("g1"));
        assert_eq!(kafka.topics, vec!["a.b.c", "d.e.f"]);
        assert!(kafka.unwrap);
        let resolved = config.pipeline("postgres-cdc").unwrap();
        assert_eq!(resolved.mode, PipelineMode::Kafka);
        assert_eq!(resolved.on_error, ErrorPolicy::DeadLetter);
    }

    #[test]
    fn kafka_mode_needs_brokers() {
        let text = SAMPLE.replace("batch_size = 500", "batch_size = 500\nmode = \"kafka\"");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("bootstrap_servers"), "{err}");
        let direct = load(SAMPLE, &[]).unwrap().pipeline("postgres-cdc").unwrap();
        assert_eq!(direct.on_error, ErrorPolicy::Fail);
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let text = SAMPLE.replace("batch_size = 500", "batch_sise = 500");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("batch_sise"), "{err}");
        assert!(err.contains("pgdelta.toml"), "{err}");
    }

    #[test]
    fn rejects_bad_urls_tables_and_slots() {
        let err = load(
            &SAMPLE.replace("postgres://cdcuser@127.0.0.1:5432/cdcdb", "http:/nope"),
            &[],
        );
        assert!(err.unwrap_err().to_string().contains("url"));
        let err = load(&SAMPLE.replace("public.orders\"]", "a.b.c\"]"), &[]);
        assert!(err.unwrap_err().to_string().contains("a.b.c"));
        let text = SAMPLE.replace("delta_root", "slot = \"Bad-Slot\"\ndelta_root");
        assert!(load(&text, &[])
            .unwrap_err()
            .to_string()
            .contains("Bad-Slot"));
    }

    #[test]
    fn http_listen_is_optional_and_checked() {
        let config = load(SAMPLE, &[]).unwrap();
        assert_eq!(config.http.listen_addr().unwrap(), None);
        assert!(config.http.enabled);
        let text = format!("{SAMPLE}\n[http]\nlisten = \"0.0.0.0:9000\"\n");
        let addr = load(&text, &[]).unwrap().http.listen_addr().unwrap();
        assert_eq!(addr.unwrap().to_string(), "0.0.0.0:9000");
        let text = format!("{SAMPLE}\n[http]\nlisten = \"nowhere\"\n");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("[http] listen") && err.contains("nowhere"),
            "{err}"
        );
    }

    /// The module graph is one-way: config is a leaf every other module may use.
    #[test]
    fn config_imports_nothing_from_the_rest_of_the_crate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
        let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs")];
        files.extend(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()));
        for file in files.iter().filter(|f| f.exists()) {
            let text = std::fs::read_to_string(file).unwrap();
            // Spelled in two parts so that this test does not find itself.
            let (path, own) = (concat!("crate", "::"), concat!("crate", "::config"));
            for (n, line) in text.lines().enumerate() {
                let outside = line
                    .match_indices(path)
                    .any(|(at, _)| !line[at..].starts_with(own));
                assert!(!outside, "{}:{}: {line}", file.display(), n + 1);
            }
        }
    }

    #[test]
    fn storage_options_layer_global_pipeline_table_and_environment() {
        let text = format!(
            "{SAMPLE}\n[storage]\naws_region = \"eu-west-1\"\naws_allow_http = true\n\
             [pipelines.postgres-cdc.storage]\naws_endpoint = \"http://minio:9000\"\n\
             [pipelines.postgres-cdc.table.\"public.orders\".storage]\naws_endpoint = \"http://other:9000\"\n"
        );
        let config = load(
            &text,
            &[
                ("PGDELTA_STORAGE_AWS_SECRET_ACCESS_KEY", "hunter2"),
                (
                    "PGDELTA_PIPELINES_POSTGRES_CDC_STORAGE_AWS_REGION",
                    "us-east-2",
                ),
                (
                    "PGDELTA_PIPELINES_POSTGRES_CDC_UNSAFE_SINGLE_WRITER",
                    "true",
                ),
            ],
        )
        .unwrap();
        let pipeline = config.pipeline("postgres-cdc").unwrap();
        let customers = &pipeline.tables[0].storage;
        assert_eq!(customers.get("aws_endpoint"), Some("http://minio:9000"));
        assert_eq!(customers.get("aws_region"), Some("us-east-2"));
        assert_eq!(customers.get("aws_allow_http"), Some("true"));
        assert_eq!(customers.get("aws_secret_access_key"), Some("hunter2"));
        let orders = &pipeline.tables[1].storage;
        assert_eq!(orders.get("aws_endpoint"), Some("http://other:9000"));
        assert!(pipeline.unsafe_single_writer);
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn write_mode_comes_from_the_pipeline_the_table_and_the_environment() {
        let config = load(SAMPLE, &[]).unwrap();
        let pipeline = config.pipeline("postgres-cdc").unwrap();
        assert_eq!(pipeline.tables[0].write_mode, WriteMode::CopyOnWrite);
        let text = format!(
            "{SAMPLE}\n[pipelines.postgres-cdc.table.\"public.customers\"]\nwrite_mode = \"deletion_vectors\"\n"
        );
        let pipeline = load(&text, &[]).unwrap().pipeline("postgres-cdc").unwrap();
        assert_eq!(pipeline.tables[0].write_mode, WriteMode::DeletionVectors);
        assert_eq!(pipeline.tables[1].write_mode, WriteMode::CopyOnWrite);
        let env = [(
            "PGDELTA_PIPELINES_POSTGRES_CDC_WRITE_MODE",
            "deletion_vectors",
        )];
        let pipeline = load(SAMPLE, &env)
            .unwrap()
            .pipeline("postgres-cdc")
            .unwrap();
        assert_eq!(pipeline.tables[1].write_mode, WriteMode::DeletionVectors);
        let bad = text.replace("\"deletion_vectors\"", "\"merge_on_read\"");
        assert!(load(&bad, &[])
            .unwrap_err()
            .to_string()
            .contains("merge_on_read"));
    }

    #[test]
    fn maintenance_settings_come_from_the_pipeline_the_table_and_the_environment() {
        let text = format!(
            "{SAMPLE}\n[pipelines.postgres-cdc.maintenance]\ncompact_min_files = 8\n\
             [pipelines.postgres-cdc.table.\"public.customers\"]\nzorder_by = [\"name\"]\n"
        );
        let config = load(
            &text,
            &[(
                "PGDELTA_PIPELINES_POSTGRES_CDC_MAINTENANCE_VACUUM_RETENTION_HOURS",
                "48",
            )],
        )
        .unwrap();
        let pipeline = config.pipeline("postgres-cdc").unwrap();
        let customers = &pipeline.tables[0].maintenance;
        assert_eq!(customers.compact_min_files, 8);
        assert_eq!(customers.zorder_by, vec!["name"]);
        assert_eq!(customers.vacuum_retention, Duration::from_secs(48 * 3600));
        assert!(pipeline.tables[1].maintenance.zorder_by.is_empty());
        let bad = text.replace("compact_min_files = 8", "compact_min_fils = 8");
        assert!(load(&bad, &[])
            .unwrap_err()
            .to_string()
            .contains("compact_min_fils"));
    }

    #[test]
    fn unknown_pipeline_lists_the_known_ones() {
        let config = load(SAMPLE, &[]).unwrap();
        let err = config.pipeline("nope").unwrap_err().to_string();
        assert!(err.contains("postgres-cdc"), "{err}");
    }
}
