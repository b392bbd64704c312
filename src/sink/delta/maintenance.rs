//! Keeping a table fast after weeks of streaming: compaction (bin-packing or Z-order) as
//! `OPTIMIZE` commits with `dataChange = false`, checkpoint and log-retention settings, and
//! VACUUM of files no commit references any more.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;

use deltalake::{DeltaTable, DeltaTableError};

use super::writer::{DeltaTableWriter, SinkError};

/// The table's data files at the loaded version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    pub files: usize,
    pub bytes: u64,
    /// Files smaller than half the compaction target.
    pub small_files: usize,
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub files_added: u64,
    pub files_removed: u64,
}

/// `OPTIMIZE` of `table`: small files rewritten into files of about `target_file_size`,
/// Z-ordered by `zorder_by` when given.
pub async fn compact_table(
    table: DeltaTable,
    target_file_size: u64,
    zorder_by: &[String],
) -> Result<(DeltaTable, Compaction), DeltaTableError> {
    let kind = match zorder_by.is_empty() {
        true => OptimizeType::Compact,
        false => OptimizeType::ZOrder(zorder_by.to_vec()),
    };
    let target = NonZeroU64::new(target_file_size.max(1)).expect("at least 1");
    let (table, metrics) = table
        .optimize()
        .with_type(kind)
        .with_target_size(target)
        .await?;
    let done = Compaction {
        files_added: metrics.num_files_added,
        files_removed: metrics.num_files_removed,
    };
    Ok((table, done))
}

/// `VACUUM` of `table`: deletes files no version within `retention` references and returns
/// their paths. `enforce`: refuse a retention shorter than `deletedFileRetentionDuration`.
pub async fn vacuum_table(
    table: DeltaTable,
    retention: Duration,
    dry_run: bool,
    enforce: bool,
) -> Result<(DeltaTable, Vec<String>), DeltaTableError> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (table, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(enforce)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .await?;
    Ok((table, metrics.files_deleted))
}

/// The table properties that make delta-rs checkpoint every `checkpoint_interval` commits
/// and remove log entries older than `log_retention` after a checkpoint.
pub fn log_settings(checkpoint_interval: u64, log_retention: Duration) -> HashMap<String, String> {
    HashMap::from([
        (
            "delta.checkpointInterval".to_string(),
            checkpoint_interval.to_string(),
        ),
        (
            "delta.logRetentionDuration".to_string(),
            format!("interval {} hours", log_retention.as_secs() / 3600),
        ),
    ])
}

impl DeltaTableWriter {
    /// Reads the active files from the log (a table returned by a MERGE may not hold them).
    pub async fn file_stats(&self, target_file_size: u64) -> Result<FileStats, SinkError> {
        use futures::TryStreamExt;
        let snapshot = self.delta(self.table.snapshot())?;
        let log_store = self.table.log_store();
        let files: Vec<_> = self.delta(
            snapshot
                .snapshot()
                .file_views(log_store.as_ref(), None)
                .try_collect()
                .await,
        )?;
        let mut stats = FileStats::default();
        for file in files {
            let size = u64::try_from(file.size()).unwrap_or(0);
            stats.files += 1;
            stats.bytes += size;
            if size < target_file_size / 2 {
                stats.small_files += 1;
            }
        }
        Ok(stats)
    }

    /// Rewrites small files into files of about `target_file_size` (Z-ordered by `zorder_by`
    /// when given). The rows, the change feed and the `txn` positions stay as they were.
    pub async fn compact(
        &mut self,
        target_file_size: u64,
        zorder_by: &[String],
    ) -> Result<Compaction, SinkError> {
        let compacted = compact_table(self.table.clone(), target_file_size, zorder_by).await;
        let (table, done) = self.delta(compacted)?;
        self.table = table;
        self.read_state().await?;
        Ok(done)
    }

    /// [`vacuum_table`] of this writer's table.
    pub async fn vacuum(
        &mut self,
        retention: Duration,
        dry_run: bool,
        enforce: bool,
    ) -> Result<Vec<String>, SinkError> {
        let vacuumed = vacuum_table(self.table.clone(), retention, dry_run, enforce).await;
        let (table, deleted) = self.delta(vacuumed)?;
        self.table = table;
        self.read_state().await?;
        Ok(deleted)
    }

    /// Sets `delta.checkpointInterval` and `delta.logRetentionDuration` where they differ,
    /// so that delta-rs writes checkpoints and removes expired log entries after commits.
    pub async fn apply_log_settings(
        &mut self,
        checkpoint_interval: u64,
        log_retention: Duration,
    ) -> Result<(), SinkError> {
        let wanted = log_settings(checkpoint_interval, log_retention);
        let snapshot = self.delta(self.table.snapshot())?;
        let current = snapshot.metadata().configuration();
        if wanted.iter().all(|(k, v)| current.get(k) == Some(v)) {
            return Ok(());
        }
        let updated = self
            .table
            .clone()
            .set_tbl_properties()
            .with_properties(wanted)
            .await;
        self.table = self.delta(updated)?;
        self.read_state().await
    }
}
