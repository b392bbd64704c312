//! The Debezium PostgreSQL connector configuration for a pipeline (Kafka mode).

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::config::KafkaConfig;
use crate::config::{sanitize_identifier, Config, SslMode};

/// A connector as Kafka Connect's REST API takes it: `{"name", "config"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorConfig {
    pub name: String,
    pub config: BTreeMap<String, String>,
}

/// What to put in `database.password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    /// The real password (to register the connector, or with `--show-password`).
    Reveal,
    /// [`PASSWORD_PLACEHOLDER`], which Kafka Connect resolves from the worker's environment
    /// when it has `config.providers=env`.
    Placeholder,
}

pub const PASSWORD_PLACEHOLDER: &str = "${env:PGDELTA_SOURCE_PASSWORD}";

const SNAPSHOT_MODES: &[&str] = &[
    "always",
    "initial",
    "initial_only",
    "no_data",
    "never",
    "when_needed",
    "configuration_based",
    "recovery",
];

#[derive(Debug, thiserror::Error)]
pub enum ConnectorConfigError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("pipeline {pipeline}: {message}")]
    Invalid { pipeline: String, message: String },
}

/// The Debezium connector config for `pipeline`, validated.
pub fn connector_config(
    config: &Config,
    pipeline: &str,
    password: Password,
) -> Result<ConnectorConfig, ConnectorConfigError> {
    let resolved = config.pipeline(pipeline)?;
    let kafka = kafka_settings(config, pipeline);
    let invalid = |message: String| ConnectorConfigError::Invalid {
        pipeline: pipeline.to_string(),
        message,
    };
    let source = crate::source::postgres::parse_url(&config.source.url)
        .map_err(|e| invalid(format!("[source] url: {e}")))?;
    let host = match source.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => {
            return Err(invalid(
                "[source] url: Kafka Connect needs a TCP host, not a socket".into(),
            ))
        }
    };
    let port = source.get_ports().first().copied().unwrap_or(5432);
    let user = source
        .get_user()
        .ok_or_else(|| invalid("[source] url names no user".into()))?
        .to_string();
    let dbname = source.get_dbname().unwrap_or(&user).to_string();
    let secret = match config.source_password()? {
        Some(password) => Some(password),
        None => source
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    };

    let topic_prefix = topic_prefix(&kafka, pipeline);
    check_topic_prefix(&topic_prefix).map_err(&invalid)?;
    check_pg_name("slot", &resolved.slot).map_err(&invalid)?;
    check_pg_name("publication", &resolved.publication).map_err(&invalid)?;
    let snapshot_mode = kafka.snapshot_mode.as_deref().unwrap_or("initial");
    if !SNAPSHOT_MODES.contains(&snapshot_mode) {
        return Err(invalid(format!(
            "kafka.snapshot_mode '{snapshot_mode}': expected one of {}",
            SNAPSHOT_MODES.join(", ")
        )));
    }
    let name = connector_name(&kafka, pipeline);
    if name.trim().is_empty() || name.contains('/') {
        return Err(invalid(format!(
            "kafka.connector_name '{name}': must be non-empty without '/'"
        )));
    }
    let tables: Vec<String> = resolved
        .tables
        .iter()
        .map(|t| {
            format!(
                "{}\\.{}",
                regex_escape(&t.name.schema),
                regex_escape(&t.name.name)
            )
        })
        .collect();
    let schemas = kafka.schemas.unwrap_or(true).to_string();

    let mut out = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        out.insert(key.to_string(), value.to_string());
    };
    set(
        "connector.class",
        "io.debezium.connector.postgresql.PostgresConnector",
    );
    set("database.hostname", &host);
    set("database.port", &port.to_string());
    set("database.user", &user);
    if let Some(secret) = &secret {
        let shown = match password {
            Password::Reveal => secret.as_str(),
            Password::Placeholder => PASSWORD_PLACEHOLDER,
        };
        set("database.password", shown);
    }
    set("database.dbname", &dbname);
    if let Some(sslmode) = config.source.sslmode {
        set("database.sslmode", sslmode_name(sslmode));
    }
    if let Some(root) = &config.source.sslrootcert {
        set("database.sslrootcert", &root.to_string_lossy());
    }
    set("topic.prefix", &topic_prefix);
    set("plugin.name", "pgoutput");
    set("slot.name", &resolved.slot);
    set("publication.name", &resolved.publication);
    set("publication.autocreate.mode", "filtered");
    set("table.include.list", &tables.join(","));
    set("snapshot.mode", snapshot_mode);
    // Debezium skips TRUNCATE by default; direct mode applies it, so Kafka mode must see it.
    set("skipped.operations", "none");
    // What pgdelta's Debezium parser expects when events carry no schema.
    set("decimal.handling.mode", "precise");
    set("time.precision.mode", "adaptive");
    set("binary.handling.mode", "bytes");
    // The default (microseconds, 30-day months) cannot be turned back into the exact interval.
    set("interval.handling.mode", "string");
    set(
        "heartbeat.interval.ms",
        &kafka.heartbeat_interval_ms.unwrap_or(10_000).to_string(),
    );
    for side in ["key", "value"] {
        set(
            &format!("{side}.converter"),
            "org.apache.kafka.connect.json.JsonConverter",
        );
        set(&format!("{side}.converter.schemas.enable"), &schemas);
    }
    if kafka.unwrap {
        set("transforms", "unwrap");
        set(
            "transforms.unwrap.type",
            "io.debezium.transforms.ExtractNewRecordState",
        );
        set(
            "transforms.unwrap.delete.tombstone.handling.mode",
            "rewrite-with-tombstone",
        );
        set(
            "transforms.unwrap.add.fields",
            "op,lsn,source.ts_ms,txId,table,schema,db",
        );
    }
    Ok(ConnectorConfig { name, config: out })
}

/// The pipeline's `[kafka]` section, or the defaults.
pub fn kafka_settings(config: &Config, pipeline: &str) -> KafkaConfig {
    config
        .pipelines
        .get(pipeline)
        .and_then(|p| p.kafka.clone())
        .unwrap_or_default()
}

/// Debezium's `topic.prefix` for the pipeline.
pub fn topic_prefix(kafka: &KafkaConfig, pipeline: &str) -> String {
    kafka
        .topic_prefix
        .clone()
        .unwrap_or_else(|| sanitize_identifier(pipeline))
}

/// The topic Debezium writes a table's changes to.
pub fn table_topic(prefix: &str, table: &crate::event::TableName) -> String {
    format!("{prefix}.{}.{}", table.schema, table.name)
}

pub fn consumer_group(kafka: &KafkaConfig, pipeline: &str) -> String {
    kafka
        .group_id
        .clone()
        .unwrap_or_else(|| format!("pgdelta-{pipeline}"))
}

pub fn connector_name(kafka: &KafkaConfig, pipeline: &str) -> String {
    kafka
        .connector_name
        .clone()
        .unwrap_or_else(|| format!("pgdelta-{pipeline}"))
}

fn sslmode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// Debezium reads `table.include.list` entries as regular expressions.
fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Slot and publication names Debezium uses unquoted: lower-case, digits, `_`, at most 63.
fn check_pg_name(what: &str, name: &str) -> Result<(), String> {
    let legal = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if legal {
        return Ok(());
    }
    Err(format!(
        "{what} '{name}': Debezium needs lower-case letters, digits and '_' (at most 63, not starting with a digit)"
    ))
}

/// Kafka topic names allow letters, digits, `.`, `_` and `-`.
fn check_topic_prefix(prefix: &str) -> Result<(), String> {
    let legal = !prefix.is_empty()
        && prefix.len() <= 200
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if legal {
        return Ok(());
    }
    Err(format!(
        "kafka.topic_prefix '{prefix}': Kafka topics allow only letters, digits, '.', '_' and '-'"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(kafka: &str, env: &[(&str, &str)]) -> Config {
        let text = format!(
            r#"
[source]
url = "postgres://cdc@db.example:6543/shop"
sslmode = "require"

[pipelines.orders-cdc]
tables = ["public.orders", "sales.line$items"]
{kafka}
"#
        );
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(&text, Path::new("pgdelta.toml"), env).unwrap()
    }

    #[test]
    fn builds_the_debezium_connector_with_defaults() {
        let config = load("", &[("PGDELTA_SOURCE_PASSWORD", "s3cret")]);
        let connector = connector_config(&config, "orders-cdc", Password::Placeholder).unwrap();
        assert_eq!(connector.name, "pgdelta-orders-cdc");
        let c = &connector.config;
        assert_eq!(
            c["connector.class"],
            "io.debezium.connector.postgresql.PostgresConnector"
        );
        assert_eq!(c["database.hostname"], "db.example");
        assert_eq!(c["database.port"], "6543");
        assert_eq!(c["database.user"], "cdc");
        assert_eq!(c["database.dbname"], "shop");
        assert_eq!(c["database.password"], PASSWORD_PLACEHOLDER);
        assert_eq!(c["database.sslmode"], "require");
        assert_eq!(c["topic.prefix"], "orders_cdc");
        assert_eq!(c["slot.name"], "pgdelta_orders_cdc");
        assert_eq!(c["publication.name"], "pgdelta_orders_cdc");
        assert_eq!(
            c["table.include.list"],
            r"public\.orders,sales\.line\$items"
        );
        assert_eq!(c["plugin.name"], "pgoutput");
        assert_eq!(c["snapshot.mode"], "initial");
        assert_eq!(c["skipped.operations"], "none");
        assert_eq!(c["interval.handling.mode"], "string");
        assert_eq!(c["value.converter.schemas.enable"], "true");
        assert_eq!(c["heartbeat.interval.ms"], "10000");
        assert!(!c.contains_key("transforms"));
        let shown = connector_config(&config, "orders-cdc", Password::Reveal).unwrap();
        assert_eq!(shown.config["database.password"], "s3cret");
    }

    #[test]
    fn applies_the_kafka_section() {
        let kafka = r#"
[pipelines.orders-cdc.kafka]
topic_prefix = "shop.cdc"
unwrap = true
schemas = false
snapshot_mode = "no_data"
heartbeat_interval_ms = 0
connector_name = "orders"
bootstrap_servers = "localhost:9092"
"#;
        let connector =
            connector_config(&load(kafka, &[]), "orders-cdc", Password::Placeholder).unwrap();
        let c = &connector.config;
        assert_eq!(connector.name, "orders");
        assert_eq!(c["topic.prefix"], "shop.cdc");
        assert_eq!(c["snapshot.mode"], "no_data");
        assert_eq!(c["heartbeat.interval.ms"], "0");
        assert_eq!(c["key.converter.schemas.enable"], "false");
        assert_eq!(c["transforms"], "unwrap");
        assert_eq!(
            c["transforms.unwrap.delete.tombstone.handling.mode"],
            "rewrite-with-tombstone"
        );
        assert!(
            !c.contains_key("database.password"),
            "no password configured"
        );
    }

    #[test]
    fn rejects_illegal_names() {
        let bad_prefix = "[pipelines.orders-cdc.kafka]\ntopic_prefix = \"a b\"";
        let err = connector_config(&load(bad_prefix, &[]), "orders-cdc", Password::Placeholder)
            .unwrap_err();
        assert!(err.to_string().contains("topic_prefix 'a b'"), "{err}");
        let bad_publication = "publication = \"Pub-1\"";
        let err = connector_config(
            &load(bad_publication, &[]),
            "orders-cdc",
            Password::Placeholder,
        )
        .unwrap_err();
        assert!(err.to_string().contains("publication 'Pub-1'"), "{err}");
        let bad_mode = "[pipelines.orders-cdc.kafka]\nsnapshot_mode = \"sometimes\"";
        let err = connector_config(&load(bad_mode, &[]), "orders-cdc", Password::Placeholder)
            .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        let unknown = "[pipelines.orders-cdc.kafka]\ntopic_prefx = \"x\"";
        let text = format!(
            "[source]\nurl = \"postgres://u@h/d\"\n[pipelines.p]\ntables = [\"t\"]\n{}",
            unknown.replace("orders-cdc", "p")
        );
        let err = Config::from_toml(&text, Path::new("x.toml"), std::iter::empty()).unwrap_err();
        assert!(err.to_string().contains("topic_prefx"), "{err}");
    }
}
