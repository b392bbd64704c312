//! What each table of a pipeline holds: read from the Delta tables alone.

use deltalake::arrow::array::{Array, Int64Array};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::CommitInfo;
use deltalake::DeltaTable;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::ResolvedPipeline;
use crate::event::Lsn;
use crate::sink::delta::position::{open_with_position, recent_commits};
use crate::sink::delta::{MEMBER_METADATA, OFFSETS_METADATA};

/// One table's replication state.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub pipeline: String,
    pub table: String,
    pub delta_path: String,
    /// `None` when the Delta table does not exist yet.
    pub delta_version: Option<u64>,
    pub last_applied_lsn: Option<Lsn>,
    pub rows: Option<u64>,
    /// When the newest Delta commit was written.
    pub last_commit_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds since the newest Delta commit. While the source keeps changing the table, the
    /// table lags at least this much; on an idle source it grows too (the live lag is the
    /// `postgres_cdc_lag_seconds` metric).
    pub last_commit_age_seconds: Option<f64>,
    /// The process (`member`) that made the newest of the table's recent data commits.
    pub last_committed_by: Option<String>,
    /// Kafka mode: per topic and partition, the offset of the next record the table does
    /// not hold, as recorded by its recent commits (the last [`RECENT_COMMITS`](crate::sink::delta::position::RECENT_COMMITS)).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kafka_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn pipeline_status(pipeline: &ResolvedPipeline) -> Vec<TableStatus> {
    let mut statuses = Vec::new();
    for table in &pipeline.tables {
        let mut status = TableStatus {
            pipeline: pipeline.name.clone(),
            table: table.name.to_string(),
            delta_path: table.path.clone(),
            delta_version: None,
            last_applied_lsn: None,
            rows: None,
            last_commit_at: None,
            last_commit_age_seconds: None,
            last_committed_by: None,
            kafka_offsets: BTreeMap::new(),
            error: None,
        };
        let app_id = crate::sink::delta::txn::table_app_id(&pipeline.name, &table.name);
        if let Err(error) = fill_from_delta(&mut status, &table.storage, &app_id).await {
            status.error = Some(error.to_string());
        }
        statuses.push(status);
    }
    statuses
}

async fn fill_from_delta(
    status: &mut TableStatus,
    storage: &crate::config::StorageOptions,
    app_id: &str,
) -> Result<(), deltalake::DeltaTableError> {
    let Some(position) = open_with_position(&status.delta_path, storage, app_id).await? else {
        return Ok(());
    };
    let recent = recent_commits(&position.table).await?;
    status.last_applied_lsn = position.newest_lsn(&recent);
    let table = position.table;
    status.delta_version = table.version();
    status.last_commit_at = recent.first().and_then(commit_time);
    status.last_committed_by = last_member(&recent);
    status.kafka_offsets = kafka_offsets(&recent);
    status.last_commit_age_seconds = status
        .last_commit_at
        .map(|at| crate::observe::health::seconds_between(at, chrono::Utc::now()));
    status.rows = Some(count_rows(table).await?);
    Ok(())
}

/// When `commit` was made (its in-commit timestamp where it has one).
fn commit_time(commit: &CommitInfo) -> Option<chrono::DateTime<chrono::Utc>> {
    commit
        .in_commit_timestamp
        .or(commit.timestamp)
        .and_then(chrono::DateTime::from_timestamp_millis)
}

/// The member of the newest commit that names one (compactions and VACUUM name none).
fn last_member(commits: &[CommitInfo]) -> Option<String> {
    commits.iter().find_map(|commit| {
        let member = commit.info.get(MEMBER_METADATA)?;
        member.as_str().map(str::to_string)
    })
}

/// The newest next offset of each topic-partition the commits name.
fn kafka_offsets(commits: &[CommitInfo]) -> BTreeMap<String, BTreeMap<i32, i64>> {
    let mut offsets: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    let recorded = commits
        .iter()
        .filter_map(|commit| commit.info.get(OFFSETS_METADATA)?.as_object());
    for topics in recorded {
        for (topic, partitions) in topics {
            let Some(partitions) = partitions.as_object() else {
                continue;
            };
            let known = offsets.entry(topic.clone()).or_default();
            for (partition, next) in partitions {
                if let (Ok(partition), Some(next)) = (partition.parse(), next.as_i64()) {
                    known.entry(partition).or_insert(next);
                }
            }
        }
    }
    offsets
}

async fn count_rows(table: DeltaTable) -> Result<u64, deltalake::DeltaTableError> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    let batches = ctx.sql("SELECT count(*) FROM t").await?.collect().await?;
    let count = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    Ok(count as u64)
}
