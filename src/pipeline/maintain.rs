//! Table maintenance beside the streaming loop. After a table's commit the loop looks at its
//! files now and then; once compaction (tiered, see [`plan_compaction`]) or VACUUM is due, it
//! runs as a task of its own on a handle of the table, so ingestion goes on meanwhile. Its
//! commits change no data (`dataChange = false`) and no `txn` position; a pipeline commit
//! that loses a race with one is tried again on the new version like any conflict. A
//! failure is logged and tried again later; one job per table at a time.

use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use tokio::task::JoinHandle;

use super::{Pipeline, PipelineError};
use crate::config::Maintenance;
use crate::event::TableName;
use crate::sink::delta::deletion_vectors::purge_deleted_rows;
use crate::sink::delta::lost_a_race;
use crate::sink::delta::maintenance::{
    compact_table, plan_compaction, vacuum_table, Compaction, FileStats, PURGE,
};
use crate::source::ChangeSource;

/// How long a stopping pipeline waits for running maintenance before abandoning it (an
/// abandoned job commits nothing; its files are left for VACUUM).
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// A compaction or VACUUM running beside the pipeline.
pub struct MaintenanceJob {
    operation: &'static str,
    started: Instant,
    task: JoinHandle<Result<Outcome, deltalake::DeltaTableError>>,
}

enum Outcome {
    Compacted(Compaction),
    /// Data files rewritten without the rows their deletion vectors removed.
    Purged(usize),
    Vacuumed(Vec<String>),
}

impl MaintenanceJob {
    fn compact(table: DeltaTable, target: u64, zorder_by: Vec<String>) -> MaintenanceJob {
        MaintenanceJob::spawn("compact", async move {
            let (_, done) = compact_table(table, target, &zorder_by).await?;
            Ok(Outcome::Compacted(done))
        })
    }

    fn purge(table: DeltaTable) -> MaintenanceJob {
        MaintenanceJob::spawn("purge", async move {
            let purged = purge_deleted_rows(&table, PURGE).await?;
            Ok(Outcome::Purged(purged.map_or(0, |(_, files)| files)))
        })
    }

    fn vacuum(table: DeltaTable, retention: Duration) -> MaintenanceJob {
        MaintenanceJob::spawn("vacuum", async move {
            let (_, deleted) = vacuum_table(table, retention, false, true).await?;
            Ok(Outcome::Vacuumed(deleted))
        })
    }

    fn spawn(
        operation: &'static str,
        work: impl std::future::Future<Output = Result<Outcome, deltalake::DeltaTableError>>
            + Send
            + 'static,
    ) -> MaintenanceJob {
        MaintenanceJob {
            operation,
            started: Instant::now(),
            task: tokio::spawn(work),
        }
    }
}

/// Per table: when to look at its files next, and the job running on it.
#[derive(Default)]
pub struct MaintenanceState {
    job: Option<MaintenanceJob>,
    commits_since_look: usize,
    last_look: Option<Instant>,
    last_vacuum: Option<Instant>,
}

impl MaintenanceState {
    /// Whether the table's files are worth reading again: listing them costs time on a
    /// large table, and a commit adds only a file or two, so not after every commit (but
    /// always when they were never looked at, `last_look` being `None`).
    fn look_due(&mut self, policy: &Maintenance) -> bool {
        self.commits_since_look += 1;
        let every = (policy.compact_min_files / 4).max(1);
        let due = self.commits_since_look >= every
            || self
                .last_look
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
        if due {
            self.commits_since_look = 0;
            self.last_look = Some(Instant::now());
        }
        due
    }

    fn vacuum_due(&self, policy: &Maintenance) -> bool {
        self.last_vacuum
            .is_none_or(|at| at.elapsed() >= policy.vacuum_interval)
    }
}

impl<S: ChangeSource> Pipeline<S>
where
    PipelineError: From<S::Error>,
{
    /// After a commit to `table`: collects a finished job, then starts one if due.
    pub(super) async fn maintain(&mut self, table: &TableName) {
        let Some(running) = self
            .tables
            .get(table)
            .and_then(|s| s.maintenance_state.job.as_ref())
        else {
            return self.start_maintenance_if_due(table).await;
        };
        if running.task.is_finished() {
            self.collect_maintenance(table).await;
        }
    }

    async fn start_maintenance_if_due(&mut self, table: &TableName) {
        let Some(state) = self.tables.get_mut(table) else {
            return;
        };
        let policy = state.maintenance.clone();
        if !state.maintenance_state.look_due(&policy) {
            return;
        }
        let stats = match state.writer.file_stats().await {
            Ok(stats) => stats,
            Err(error) => {
                tracing::warn!(%table, %error, "cannot count the Delta table's files");
                return;
            }
        };
        self.observer
            .set_table_files(table, stats.files, stats.bytes);
        tracing::debug!(%table, files = stats.files, bytes = stats.bytes, "Delta table files");
        if !policy.enabled {
            return;
        }
        let handle = state.writer.detached_table();
        let maintenance = &mut state.maintenance_state;
        if let Some(target) = compaction_target(&stats, &policy) {
            // Z-ordering rewrites every file, so it is left for passes to the full size.
            let zorder_by = match target == policy.target_file_size {
                true => policy.zorder_by.clone(),
                false => Vec::new(),
            };
            tracing::debug!(%table, target, "compaction started");
            maintenance.job = Some(MaintenanceJob::compact(handle, target, zorder_by));
        } else if stats.mostly_deleted > 0 {
            tracing::debug!(%table, files = stats.mostly_deleted, "rewriting files most of whose rows are deleted");
            maintenance.job = Some(MaintenanceJob::purge(handle));
        } else if maintenance.vacuum_due(&policy) {
            maintenance.last_vacuum = Some(Instant::now());
            maintenance.job = Some(MaintenanceJob::vacuum(handle, policy.vacuum_retention));
        }
    }

    /// Waits for `table`'s job, reports it and reloads the table, whose version it moved.
    async fn collect_maintenance(&mut self, table: &TableName) {
        let Some(state) = self.tables.get_mut(table) else {
            return;
        };
        let Some(job) = state.maintenance_state.job.take() else {
            return;
        };
        let elapsed = || job.started.elapsed();
        let outcome = match job.task.await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%table, %error, operation = job.operation, "maintenance task ended abnormally");
                return;
            }
        };
        match outcome {
            Ok(Outcome::Compacted(done)) => {
                tracing::info!(%table, files_removed = done.files_removed, files_added = done.files_added,
                    elapsed = ?elapsed(), "compacted the Delta table");
                self.observer
                    .maintenance_ran(table, "compact", elapsed(), done.files_removed);
            }
            Ok(Outcome::Purged(files)) => {
                tracing::info!(%table, files_rewritten = files, elapsed = ?elapsed(), "rewrote Delta files without their deleted rows");
                self.observer
                    .maintenance_ran(table, "purge", elapsed(), files as u64);
            }
            Ok(Outcome::Vacuumed(deleted)) => {
                tracing::info!(%table, files_deleted = deleted.len(), elapsed = ?elapsed(), "vacuumed the Delta table");
                self.observer
                    .maintenance_ran(table, "vacuum", elapsed(), deleted.len() as u64);
            }
            // Another process of the pipeline (or a `pgdelta table optimize`) changed the
            // files first: nothing failed, the next look plans on the new version.
            Err(error) if lost_a_race(&error) => {
                tracing::info!(%table, %error, operation = job.operation, "another writer changed the table first; maintenance looks again after a later batch");
            }
            Err(error) => {
                self.observer.record_errors("sink", 1);
                tracing::warn!(%table, %error, operation = job.operation, "table maintenance failed; it is tried again after a later batch");
            }
        }
        if let Err(error) = state.reload().await {
            tracing::warn!(%table, %error, "cannot read the Delta table after maintenance; the next commit reads it");
        }
    }

    /// When the pipeline stops: waits for running jobs (up to [`FINISH_TIMEOUT`]); after
    /// catching up it also runs what is due then, so a batch-style run leaves tables compact.
    pub(super) async fn finish_maintenance(&mut self, run_what_is_due: bool) {
        let tables: Vec<TableName> = self.tables.names().cloned().collect();
        let finish = async {
            for table in &tables {
                self.collect_maintenance(table).await;
                if run_what_is_due {
                    if let Some(state) = self.tables.get_mut(table) {
                        state.maintenance_state.last_look = None;
                    }
                    self.start_maintenance_if_due(table).await;
                    self.collect_maintenance(table).await;
                }
            }
        };
        if tokio::time::timeout(FINISH_TIMEOUT, finish).await.is_err() {
            tracing::info!("table maintenance is still running: abandoned, it runs again later");
        }
    }
}

fn compaction_target(stats: &FileStats, policy: &Maintenance) -> Option<u64> {
    plan_compaction(
        &stats.sizes,
        policy.target_file_size,
        policy.compact_min_files,
    )
}
