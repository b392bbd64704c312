//! The initial copy of tables that have no pgdelta position yet, under one exported
//! snapshot, several tables at a time.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::{PipelineError, TableState};
use crate::event::{Lsn, TableName};
use crate::observe::progress::Progress;
use crate::observe::Observer;
use crate::source::postgres::snapshot::{
    begin_snapshot_transaction, copy_all_rows, ExportedSnapshot,
};
use crate::source::postgres::{ConnectionSettings, SourceTable};

/// Rows handed to the Delta writer at a time: bounds memory whatever the table's size.
const CHUNK_ROWS: usize = 50_000;

/// One table to copy: its state and what the source says it holds.
pub(super) struct CopyJob {
    pub state: TableState,
    pub source: SourceTable,
    /// The copy replaces the rows the table holds (`--resnapshot`) instead of being its first.
    pub replace: bool,
}

/// Copies every job's table as of `snapshot`, each into one Delta commit tagged with the
/// snapshot's consistent point, so streaming skips what the copy already holds.
pub(super) async fn copy_tables(
    settings: &ConnectionSettings,
    snapshot: &ExportedSnapshot,
    jobs: Vec<CopyJob>,
    parallelism: usize,
    observer: &Arc<Observer>,
) -> Result<Vec<TableState>, PipelineError> {
    let results: Vec<Result<TableState, PipelineError>> = futures::stream::iter(jobs)
        .map(|job| {
            copy_table(
                settings,
                &snapshot.name,
                snapshot.consistent_point,
                job,
                observer.clone(),
            )
        })
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
    observer: Arc<Observer>,
) -> Result<TableState, PipelineError> {
    let CopyJob {
        mut state,
        source,
        replace,
    } = job;
    let writer = &mut state.writer;
    let table = source.name.clone();
    let estimated = u64::try_from(source.estimated_rows).ok();
    let mut progress = Progress::new(table.clone(), estimated).with_observer(observer);
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
    let mut sink_error = None;
    let result = copy_all_rows(&client, &table, &copy_columns, CHUNK_ROWS, async |chunk| {
        if let Err(error) = appender.append(&table, &chunk, &positions).await {
            sink_error = Some(error);
            return Err(stop_copy(&table));
        }
        progress.advance(chunk.len() as u64);
        Ok(())
    })
    .await;
    if let Some(error) = sink_error {
        return Err(error.into());
    }
    result?;
    progress.finish();
    let elapsed = started.elapsed();
    if replace {
        let rows = writer.commit_resnapshot(appender, lsn).await?;
        tracing::info!(%table, rows, %lsn, ?elapsed, "re-snapshot committed: the table's rows are replaced");
    } else {
        let rows = writer.commit_snapshot(appender, lsn).await?;
        tracing::info!(%table, rows, %lsn, ?elapsed, "initial snapshot committed");
    }
    Ok(state)
}

fn stop_copy(table: &TableName) -> crate::source::postgres::SourceError {
    crate::source::postgres::SourceError::CopyStopped {
        table: table.clone(),
    }
}
