//! The initial copy of tables that have no pgdelta position yet, under one exported
//! snapshot, several tables at a time.

use std::time::Instant;

use futures::StreamExt;

use super::PipelineError;
use crate::event::{Lsn, TableName};
use crate::sink::delta::DeltaTableWriter;
use crate::source::postgres::snapshot::{
    begin_snapshot_transaction, copy_all_rows, ExportedSnapshot,
};
use crate::source::postgres::{ConnectionSettings, SourceTable};

/// Rows handed to the Delta writer at a time: bounds memory whatever the table's size.
const CHUNK_ROWS: usize = 50_000;

/// One table to copy: its writer and what the source says it holds.
pub(super) struct CopyJob {
    pub writer: DeltaTableWriter,
    pub source: SourceTable,
}

/// Copies every job's table as of `snapshot`, each into one Delta commit tagged with the
/// snapshot's consistent point, so streaming skips what the copy already holds.
pub(super) async fn copy_tables(
    settings: &ConnectionSettings,
    snapshot: &ExportedSnapshot,
    jobs: Vec<CopyJob>,
    parallelism: usize,
) -> Result<Vec<DeltaTableWriter>, PipelineError> {
    let results: Vec<Result<DeltaTableWriter, PipelineError>> = futures::stream::iter(jobs)
        .map(|job| copy_table(settings, &snapshot.name, snapshot.consistent_point, job))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn copy_table(
    settings: &ConnectionSettings,
    snapshot_name: &str,
    lsn: Lsn,
    job: CopyJob,
) -> Result<DeltaTableWriter, PipelineError> {
    let CopyJob { mut writer, source } = job;
    let estimated_rows = source.estimated_rows;
    let table = source.name.clone();
    let client = settings.connect().await?;
    begin_snapshot_transaction(&client, snapshot_name).await?;
    let delta_columns = writer.column_names();
    let copy_columns: Vec<String> = delta_columns
        .iter()
        .filter(|name| source.columns.iter().any(|c| &c.name == *name))
        .cloned()
        .collect();
    let positions: Vec<Option<usize>> = delta_columns
        .iter()
        .map(|name| copy_columns.iter().position(|c| c == name))
        .collect();
    let mut appender = writer.begin_snapshot()?;
    let started = Instant::now();
    let mut copied = 0u64;
    let mut sink_error = None;
    let result = copy_all_rows(&client, &table, &copy_columns, CHUNK_ROWS, async |chunk| {
        if let Err(error) = appender.append(&table, &chunk, &positions).await {
            sink_error = Some(error);
            return Err(stop_copy(&table));
        }
        copied += chunk.len() as u64;
        log_progress(&table, copied, estimated_rows, started);
        Ok(())
    })
    .await;
    if let Some(error) = sink_error {
        return Err(error.into());
    }
    result?;
    let rows = writer.commit_snapshot(appender, lsn).await?;
    tracing::info!(%table, rows, %lsn, elapsed = ?started.elapsed(), "initial snapshot committed");
    Ok(writer)
}

fn stop_copy(table: &TableName) -> crate::source::postgres::SourceError {
    crate::source::postgres::SourceError::Settings(format!(
        "copy of {table} stopped by a Delta write error"
    ))
}

fn log_progress(table: &TableName, copied: u64, estimated: i64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    let rate = copied as f64 / seconds;
    let estimate = estimated.max(copied as i64) as u64;
    let eta = (estimate.saturating_sub(copied)) as f64 / rate.max(1.0);
    tracing::info!(%table, copied, estimated = estimate, rows_per_sec = rate as u64, eta_secs = eta as u64, "snapshot progress");
}
