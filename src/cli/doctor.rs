//! `pgdelta doctor`: the troubleshooting steps a user would take by hand when a pipeline does
//! not consume, lags or misses events, run against the live source and sink. Each check is
//! one [`Finding`] with what was seen and, when it fails, the fix.

use std::fmt;

use serde::Serialize;
use tokio_postgres::Client;

use pgdelta::config::{PipelineMode, ResolvedPipeline};
use pgdelta::observe::sink_probe::{probe, probe_targets};
use pgdelta::pipeline::check_built_in;
use pgdelta::pipeline::status::pipeline_status;
use pgdelta::source::postgres::{self as pg, ConnectionSettings, SourceTable};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but is worth a look (e.g. the slot may keep WAL without bound).
    Warn,
    Fail,
}

/// One check: what it looked at, what it saw, and the fix when it did not pass.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            verdict: Verdict::Warn,
            fix: Some(fix.into()),
            ..Finding::ok(check, detail)
        }
    }

    fn fail(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            verdict: Verdict::Fail,
            ..Finding::warn(check, detail, fix)
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{verdict}  {}: {}", self.check, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every check of `pipeline`, in the order a person would go through them.
pub async fn diagnose(pipeline: &ResolvedPipeline, settings: &ConnectionSettings) -> Vec<Finding> {
    let mut findings: Vec<Finding> = built_in(pipeline).into_iter().collect();
    match settings.connect_without_retry().await {
        Ok(client) => source_checks(&client, pipeline, &mut findings).await,
        Err(error) => findings.push(Finding::fail(
            "source",
            format!("cannot connect to {}: {error}", settings.describe()),
            "check [source] url, the password (PGPASSWORD or password_file), sslmode and that \
             PostgreSQL listens on that address (listen_addresses, pg_hba.conf)",
        )),
    }
    sink_checks(pipeline, &mut findings).await;
    findings
}

/// A pipeline that needs what this build left out (Kafka mode without the `kafka` feature, a
/// table on S3 without the `s3` one) cannot start, whatever the other checks find.
fn built_in(pipeline: &ResolvedPipeline) -> Option<Finding> {
    let error = check_built_in(pipeline).err()?;
    Some(Finding::fail(
        "build",
        error.to_string(),
        "build pgdelta with its default features: cargo build",
    ))
}

/// Whether every check passed (warnings pass).
pub fn all_passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.verdict != Verdict::Fail)
}

async fn source_checks(client: &Client, pipeline: &ResolvedPipeline, out: &mut Vec<Finding>) {
    out.push(Finding::ok("source", "connected"));
    let mut tables = Vec::new();
    for table in &pipeline.tables {
        match pg::introspect_table(client, &table.name).await {
            Ok(source) => tables.push((table, source)),
            Err(error) => out.push(Finding::fail(
                format!("table {}", table.name),
                error.to_string(),
                format!(
                    "create it, or remove it from [pipelines.{}] tables",
                    pipeline.name
                ),
            )),
        }
    }
    if pipeline.mode == PipelineMode::Kafka {
        out.push(Finding::ok(
            "mode",
            "kafka: changes come from Debezium's topics, so no slot or publication of pgdelta's",
        ));
        return;
    }
    readiness(client, pipeline, &tables, out).await;
    for (_, source) in &tables {
        out.push(replica_identity(source));
    }
    slot(client, pipeline, out).await;
    publication(client, pipeline, out).await;
}

async fn readiness(
    client: &Client,
    pipeline: &ResolvedPipeline,
    tables: &[(&pgdelta::config::ResolvedTable, SourceTable)],
    out: &mut Vec<Finding>,
) {
    let requests: Vec<pg::TableRequest> = tables
        .iter()
        .map(|(table, source)| pg::TableRequest {
            table: source,
            configured_key: &table.key,
            config_section: format!("[pipelines.{}.table.\"{}\"]", pipeline.name, table.name),
        })
        .collect();
    let readiness = match pg::check_readiness(
        client,
        &pipeline.slot,
        pipeline.slot_failover,
        &requests,
    )
    .await
    {
        Ok(readiness) => readiness,
        Err(error) => {
            out.push(Finding::fail(
                "server settings and grants",
                error.to_string(),
                "the role needs to read pg_settings, pg_roles and pg_replication_slots",
            ));
            return;
        }
    };
    match readiness.problems.is_empty() {
        true => out.push(Finding::ok(
            "server settings and grants",
            "wal_level = logical, free slots and WAL senders, the role may replicate, every table has a key",
        )),
        // Each problem says its fix.
        false => out.extend(readiness.problems.iter().map(|problem| Finding {
            verdict: Verdict::Fail,
            ..Finding::ok("server settings and grants", problem.to_string())
        })),
    }
    out.push(match readiness.wal_retention_is_unbounded() {
        true => Finding::warn(
            "max_slot_wal_keep_size",
            "unlimited: a stopped pipeline's slot keeps WAL until the server's disk is full",
            "set max_slot_wal_keep_size (e.g. '50GB'); PostgreSQL then invalidates the slot instead",
        ),
        false => Finding::ok("max_slot_wal_keep_size", readiness.max_slot_wal_keep_size),
    });
}

fn replica_identity(source: &SourceTable) -> Finding {
    let check = format!("replica identity of {}", source.name);
    match source.replica_identity {
        'f' => Finding::ok(check, "FULL: updates and deletes carry the whole old row"),
        'i' => Finding::ok(check, "USING INDEX"),
        'd' if !source.primary_key.is_empty() => {
            Finding::ok(check, "DEFAULT, by the primary key")
        }
        'n' => Finding::fail(
            check,
            "NOTHING: PostgreSQL refuses UPDATE and DELETE on a published table without a replica identity",
            format!("ALTER TABLE {} REPLICA IDENTITY DEFAULT (with a primary key) or FULL", source.name),
        ),
        _ => Finding::fail(
            check,
            "DEFAULT without a primary key: updates and deletes carry no key",
            format!(
                "add a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL and set key = [...]",
                source.name
            ),
        ),
    }
}

async fn slot(client: &Client, pipeline: &ResolvedPipeline, out: &mut Vec<Finding>) {
    let check = format!("replication slot {}", pipeline.slot);
    let state = match pg::slot_state(client, &pipeline.slot).await {
        Ok(Some(state)) => state,
        Ok(None) => {
            out.push(Finding::warn(
                check,
                "does not exist",
                "`pgdelta pipeline start` creates it (and copies the tables first)",
            ));
            return;
        }
        Err(error) => {
            out.push(Finding::fail(
                check,
                error.to_string(),
                "the role needs to read pg_replication_slots",
            ));
            return;
        }
    };
    if let Some(reason) = state.invalidation() {
        out.push(Finding::fail(
            check,
            format!("invalidated by PostgreSQL ({reason})"),
            "`pgdelta pipeline start <pipeline> --resnapshot`: a new slot, every table copied again (README 'Replication slot safety')",
        ));
        return;
    }
    if state.plugin.as_deref() != Some("pgoutput") {
        out.push(Finding::fail(
            check,
            format!("uses plugin {:?}", state.plugin),
            "drop it (`pgdelta pipeline drop`); pgdelta creates it with pgoutput",
        ));
        return;
    }
    let detail = format!(
        "{}; keeps {} of WAL; wal_status {}",
        match state.active {
            Some(true) => "in use by a replication connection",
            _ => "not in use (no pgdelta reading it now)",
        },
        bytes(state.retained_wal_bytes),
        state.wal_status.as_deref().unwrap_or("-"),
    );
    out.push(match state.wal_status.as_deref() {
        Some("unreserved") => Finding::fail(
            check,
            detail,
            "start the pipeline now: PostgreSQL invalidates the slot at its next checkpoint",
        ),
        _ if state.retained_wal_bytes > 10 << 30 => Finding::warn(
            check,
            detail,
            "the pipeline is far behind or stopped: start it, or see why it stalls in its log",
        ),
        _ => Finding::ok(check, detail),
    });
}

async fn publication(client: &Client, pipeline: &ResolvedPipeline, out: &mut Vec<Finding>) {
    let check = format!("publication {}", pipeline.publication);
    let published = match pg::published_tables(client, &pipeline.publication).await {
        Ok(Some(published)) => published,
        Ok(None) => {
            out.push(Finding::warn(
                check,
                "does not exist",
                "`pgdelta pipeline start` creates it",
            ));
            return;
        }
        Err(error) => {
            out.push(Finding::fail(
                check,
                error.to_string(),
                "the role needs to read pg_publication_tables",
            ));
            return;
        }
    };
    let missing: Vec<String> = pipeline
        .tables
        .iter()
        .filter(|t| !published.contains(&t.name))
        .map(|t| t.name.to_string())
        .collect();
    out.push(match missing.is_empty() {
        true => Finding::ok(check, "holds every table of the pipeline"),
        false => Finding::fail(
            check,
            format!("does not hold {}: their changes are not sent", missing.join(", ")),
            format!(
                "ALTER PUBLICATION {} ADD TABLE {} (pipeline start does it too, for tables it copies)",
                pipeline.publication,
                missing.join(", ")
            ),
        ),
    });
}

async fn sink_checks(pipeline: &ResolvedPipeline, out: &mut Vec<Finding>) {
    let statuses = pipeline_status(pipeline).await;
    for (table, status) in pipeline.tables.iter().zip(statuses) {
        let check = format!("Delta table of {}", table.name);
        if let Some(error) = status.error {
            out.push(Finding::fail(
                check,
                error,
                "check the path, the storage credentials ([storage] or the environment) and that no other tool rewrote the table",
            ));
            continue;
        }
        let Some(version) = status.delta_version else {
            out.push(Finding::ok(
                check,
                format!(
                    "{} does not exist yet: the first start creates it",
                    table.path
                ),
            ));
            continue;
        };
        let target = probe_targets([(table.path.as_str(), &table.storage)]);
        if let Err(error) = probe(&target[0]).await {
            out.push(Finding::fail(
                check,
                error,
                "give pgdelta write access to the table's location",
            ));
            continue;
        }
        let applied = status
            .last_applied_lsn
            .map_or("nothing yet".to_string(), |lsn| lsn.to_string());
        out.push(Finding::ok(
            check,
            format!(
                "{} at version {version}, writable, holds changes up to LSN {applied}",
                table.path
            ),
        ));
    }
}

fn bytes(n: i64) -> String {
    const MIB: i64 = 1 << 20;
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= MIB => format!("{:.1} MiB", n as f64 / MIB as f64),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_prints_its_fix_and_fails_the_run() {
        let findings = vec![
            Finding::ok("source", "connected"),
            Finding::warn("max_slot_wal_keep_size", "unlimited", "set it"),
        ];
        assert!(all_passed(&findings), "warnings pass");
        let failed = Finding::fail(
            "publication p",
            "does not hold public.a",
            "ALTER PUBLICATION",
        );
        assert_eq!(
            failed.to_string(),
            "FAIL  publication p: does not hold public.a\n      fix: ALTER PUBLICATION"
        );
        assert!(!all_passed(&[failed]));
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn a_kafka_mode_pipeline_fails_the_build_check_without_kafka_support() {
        let text = "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.shop]\nmode = \"kafka\"\ntables = [\"public.a\"]\n[pipelines.shop.kafka]\nbootstrap_servers = \"b:9092\"\n";
        let path = std::path::Path::new("t.toml");
        let config = pgdelta::config::Config::from_toml(text, path, Vec::new()).unwrap();
        let finding = built_in(&config.pipeline("shop").unwrap()).expect("a finding");
        assert_eq!(finding.verdict, Verdict::Fail);
        assert!(
            finding.detail.contains("`kafka` cargo feature"),
            "{finding}"
        );
    }

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }
}
