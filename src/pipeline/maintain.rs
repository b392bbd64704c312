//! Table maintenance between batches: a table is compacted once it has enough small files,
//! and vacuumed every `vacuum_interval`. It runs in the streaming loop, right after a batch
//! was written and confirmed, so it never races the pipeline's own commits and never touches
//! the `txn` positions; a failure is logged and tried again later, streaming goes on.

use std::time::Instant;

use super::{Pipeline, PipelineError};
use crate::event::TableName;
use crate::source::ChangeSource;

impl<S: ChangeSource> Pipeline<S>
where
    PipelineError: From<S::Error>,
{
    pub(super) async fn maintain(&mut self, table: &TableName) {
        let Some(state) = self.tables.get_mut(table) else {
            return;
        };
        let policy = state.maintenance.clone();
        let stats = match state.writer.file_stats(policy.target_file_size).await {
            Ok(stats) => stats,
            Err(error) => {
                tracing::warn!(%table, %error, "cannot count the Delta table's files");
                return;
            }
        };
        self.observer
            .set_table_files(table, stats.files, stats.bytes);
        tracing::debug!(%table, files = stats.files, small_files = stats.small_files, bytes = stats.bytes, "Delta table files");
        if !policy.enabled {
            return;
        }
        if stats.small_files >= policy.compact_min_files {
            let started = Instant::now();
            match state
                .writer
                .compact(policy.target_file_size, &policy.zorder_by)
                .await
            {
                Ok(done) => {
                    tracing::info!(%table, files_removed = done.files_removed, files_added = done.files_added,
                        elapsed = ?started.elapsed(), version = ?state.writer.version(), "compacted the Delta table");
                    self.observer.maintenance_ran(
                        table,
                        "compact",
                        started.elapsed(),
                        done.files_removed,
                    );
                    if let Ok(after) = state.writer.file_stats(policy.target_file_size).await {
                        self.observer
                            .set_table_files(table, after.files, after.bytes);
                    }
                }
                Err(error) => {
                    self.observer.record_errors("sink", 1);
                    tracing::warn!(%table, %error, "compaction failed; it is tried again after a later batch");
                }
            }
        }
        let vacuum_due = state
            .last_vacuum
            .is_none_or(|at| at.elapsed() >= policy.vacuum_interval);
        if vacuum_due {
            state.last_vacuum = Some(Instant::now());
            let started = Instant::now();
            match state
                .writer
                .vacuum(policy.vacuum_retention, false, true)
                .await
            {
                Ok(deleted) => {
                    tracing::info!(%table, files_deleted = deleted.len(), elapsed = ?started.elapsed(), "vacuumed the Delta table");
                    self.observer.maintenance_ran(
                        table,
                        "vacuum",
                        started.elapsed(),
                        deleted.len() as u64,
                    );
                }
                Err(error) => {
                    self.observer.record_errors("sink", 1);
                    tracing::warn!(%table, %error, "VACUUM failed; it is tried again after the next interval");
                }
            }
        }
    }
}
