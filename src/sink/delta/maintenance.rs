//! Keeping a table fast after weeks of streaming: compaction (bin-packing or Z-order) as
//! `OPTIMIZE` commits with `dataChange = false`, checkpoint and log-retention settings, and
//! VACUUM of files no commit references any more.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use deltalake::delta_datafusion::create_session_state_with_spill_config;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;

use deltalake::{DeltaTable, DeltaTableError};

use super::deletion_vectors::PurgeThreshold;
use super::writer::{commit_properties, data_file_properties, DeltaTableWriter, SinkError};
use crate::config::Maintenance;

/// The table's data files at the loaded version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    pub files: usize,
    pub bytes: u64,
    /// The size of every file, for [`plan_compaction`].
    pub sizes: Vec<u64>,
    /// Files [`PURGE`] covers.
    pub mostly_deleted: usize,
}

/// A data file whose deletion vector removes at least a fifth of its rows is rewritten
/// without them (see `deletion_vectors::purge_deleted_rows`): readers stop reading them and
/// the vector stops growing. Files under 2 MiB are left to compaction, which drops their
/// deleted rows as it merges them.
pub const PURGE: PurgeThreshold = PurgeThreshold {
    fraction: 0.2,
    min_bytes: 2 << 20,
};

/// How many times smaller each compaction tier's files are than the next tier's.
const TIER_FANOUT: u64 = 8;
/// At most this many tiers: with a 128 MiB target, files are merged into 2 MiB, then
/// 16 MiB, then 128 MiB files.
const TIERS: usize = 3;
/// No tier's files are smaller: merging small files into files that are still small costs
/// a commit and a rewrite and buys little (with the default 8 MiB target: 1 MiB, 8 MiB).
const MIN_TIER_BYTES: u64 = 1 << 20;

/// The file size of each compaction tier, smallest first, the last `target_file_size`.
fn tier_sizes(target_file_size: u64) -> Vec<u64> {
    let mut sizes = vec![target_file_size.max(1)];
    while sizes.len() < TIERS && sizes[0] / TIER_FANOUT >= MIN_TIER_BYTES {
        sizes.insert(0, sizes[0] / TIER_FANOUT);
    }
    sizes
}

/// The target size of the next compaction pass over files of `sizes`, if one is due.
///
/// Compaction is tiered (as in an LSM tree) so that a byte is rewritten about once per tier
/// instead of once per pass: a pass with target `t` rewrites every file smaller than `t`, so
/// merging new small files straight into one growing file of the final size would rewrite
/// that file again and again. A file is in tier `k` when it is smaller than half of tier
/// `k`'s size and not in a smaller tier. The smallest tier is merged once it holds
/// `min_files` files, a larger one once it holds [`TIER_FANOUT`]; the largest due tier wins
/// (its pass takes the smaller files along).
pub fn plan_compaction(sizes: &[u64], target_file_size: u64, min_files: usize) -> Option<u64> {
    let tiers = tier_sizes(target_file_size);
    let tier_of = |size: u64| tiers.iter().position(|&t| size.saturating_mul(2) < t);
    let mut counts = vec![0usize; tiers.len()];
    for tier in sizes.iter().filter_map(|&size| tier_of(size)) {
        counts[tier] += 1;
    }
    (0..tiers.len()).rev().find_map(|k| {
        let needed = match k {
            0 => min_files.max(2),
            _ => TIER_FANOUT as usize,
        };
        (counts[k] >= needed).then_some(tiers[k])
    })
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub files_added: u64,
    pub files_removed: u64,
}

/// The encoded size at which compaction closes a row group of the file it writes. The
/// Parquet writer keeps the open row group in memory and copies it into one buffer when it
/// closes it, so this (not the file size) bounds what a compaction holds: with the writer's
/// default of 1M rows a row group of a narrow table is ~20 MB and of a wide one hundreds.
/// 8 MiB (files ~4% larger than with 16 MiB) keeps a 10M-row stream with compaction under
/// 300 MB now that batches grow when the pipeline is behind (docs/benchmarks.md).
const ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// What Z-ordering's sort may hold in memory before it spills to disk (it sorts every file
/// it rewrites at once).
const ZORDER_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// The Parquet settings of `table`'s compacted files: delta-rs's own for OPTIMIZE (ZSTD
/// level 4), with row groups closed at [`ROW_GROUP_BYTES`] and the pages of the table's
/// other files.
fn writer_properties(table: &DeltaTable) -> WriterProperties {
    let zstd = Compression::ZSTD(ZstdLevel::try_new(4).expect("a valid ZSTD level"));
    data_file_properties(table, zstd)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build()
}

/// `OPTIMIZE` of `table`: small files rewritten into files of about `target_file_size`,
/// Z-ordered by `zorder_by` when given.
pub async fn compact_table(
    table: DeltaTable,
    target_file_size: u64,
    zorder_by: &[String],
) -> Result<(DeltaTable, Compaction), DeltaTableError> {
    let target = NonZeroU64::new(target_file_size.max(1)).expect("at least 1");
    let properties = writer_properties(&table);
    let optimize = table
        .optimize()
        .with_target_size(target)
        .with_writer_properties(properties)
        // One file at a time, and the pipeline beside it keeps its share of the cores.
        .with_max_concurrent_tasks(1)
        .with_commit_properties(commit_properties());
    let optimize = match zorder_by.is_empty() {
        true => optimize.with_type(OptimizeType::Compact),
        false => optimize
            .with_type(OptimizeType::ZOrder(zorder_by.to_vec()))
            .with_session_state(Arc::new(create_session_state_with_spill_config(
                Some(ZORDER_MEMORY_BYTES),
                None,
            ))),
    };
    let (table, metrics) = optimize.await?;
    let done = Compaction {
        files_added: metrics.num_files_added,
        files_removed: metrics.num_files_removed,
    };
    Ok((table, done))
}

/// `VACUUM` of `table`: deletes files no version within `retention` references and returns
/// their paths, then (unless `dry_run`) the log entries older than `delta.logRetentionDuration`
/// that a checkpoint covers (commits do not, see `writer::commit_properties`).
/// `enforce`: refuse a retention shorter than `deletedFileRetentionDuration`.
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
        .with_commit_properties(commit_properties())
        .await?;
    if !dry_run {
        let removed = deltalake::checkpoints::cleanup_metadata(&table, None).await?;
        tracing::debug!(log_entries_removed = removed, "cleaned the Delta log");
    }
    Ok((table, metrics.files_deleted))
}

/// The table properties of `maintenance`: delta-rs checkpoints every `checkpoint_interval`
/// commits and removes log entries older than `log_retention` after a checkpoint, and
/// [`file_size_setting`].
pub fn table_settings(maintenance: &Maintenance) -> HashMap<String, String> {
    HashMap::from([
        (
            "delta.checkpointInterval".to_string(),
            maintenance.checkpoint_interval.to_string(),
        ),
        (
            "delta.logRetentionDuration".to_string(),
            format!(
                "interval {} hours",
                maintenance.log_retention.as_secs() / 3600
            ),
        ),
        file_size_setting(maintenance),
    ])
}

/// `delta.targetFileSize`: every writer of the table (pgdelta's copies and appends, MERGE,
/// OPTIMIZE, Spark's too) aims at files of `target_file_size`. A table is created with it
/// even when maintenance is off: a copy-on-write MERGE's cost is the size of the files it
/// rewrites, compaction or not.
pub fn file_size_setting(maintenance: &Maintenance) -> (String, String) {
    (
        "delta.targetFileSize".to_string(),
        maintenance.target_file_size.to_string(),
    )
}

impl DeltaTableWriter {
    /// The active files of the loaded version.
    pub async fn file_stats(&self) -> Result<FileStats, SinkError> {
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
        let sizes: Vec<u64> = files
            .iter()
            .map(|file| u64::try_from(file.size()).unwrap_or(0))
            .collect();
        let mostly_deleted = files.iter().filter(|file| PURGE.covers(file)).count();
        Ok(FileStats {
            files: sizes.len(),
            bytes: sizes.iter().sum(),
            sizes,
            mostly_deleted,
        })
    }

    /// A handle on the table as this writer last loaded it, for maintenance that runs
    /// beside the writer; [`DeltaTableWriter::reload`] picks up what it committed.
    pub fn detached_table(&self) -> DeltaTable {
        self.table.clone()
    }

    /// Sets the [`table_settings`] of `maintenance` where they differ, so that delta-rs
    /// writes checkpoints, removes expired log entries and sizes files as configured.
    pub async fn apply_table_settings(
        &mut self,
        maintenance: &Maintenance,
    ) -> Result<(), SinkError> {
        let wanted = table_settings(maintenance);
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

#[cfg(test)]
mod tests {
    use super::plan_compaction;

    const MIB: u64 = 1024 * 1024;
    const TARGET: u64 = 128 * MIB;

    #[test]
    fn small_files_are_merged_into_the_smallest_tier_once_there_are_enough() {
        let batches = vec![200 * 1024; 31];
        assert_eq!(plan_compaction(&batches, TARGET, 32), None);
        let batches = vec![200 * 1024; 32];
        assert_eq!(plan_compaction(&batches, TARGET, 32), Some(2 * MIB));
    }

    #[test]
    fn files_of_the_smallest_tier_size_are_not_merged_again_until_a_fanout_of_them_exists() {
        let mut sizes = vec![2 * MIB; 7];
        sizes.extend([200 * 1024; 3]);
        assert_eq!(plan_compaction(&sizes, TARGET, 32), None);
        sizes.push(2 * MIB);
        assert_eq!(plan_compaction(&sizes, TARGET, 32), Some(16 * MIB));
    }

    #[test]
    fn the_largest_due_tier_wins_and_full_size_files_are_left_alone() {
        let mut sizes = vec![16 * MIB; 8];
        sizes.extend([2 * MIB; 8]);
        sizes.extend([100 * 1024; 40]);
        assert_eq!(plan_compaction(&sizes, TARGET, 32), Some(TARGET));
        assert_eq!(plan_compaction(&[TARGET; 100], TARGET, 32), None);
        assert_eq!(plan_compaction(&[70 * MIB; 100], TARGET, 32), None);
    }

    #[test]
    fn no_tier_is_smaller_than_a_mebibyte() {
        assert_eq!(super::tier_sizes(8 * MIB), vec![MIB, 8 * MIB]);
        assert_eq!(super::tier_sizes(4 * MIB), vec![4 * MIB]);
        let batches = vec![40 * 1024; 32];
        assert_eq!(plan_compaction(&batches, 8 * MIB, 32), Some(MIB));
        assert_eq!(plan_compaction(&[MIB; 8], 8 * MIB, 32), Some(8 * MIB));
    }

    #[test]
    fn a_tiny_target_still_plans() {
        assert_eq!(plan_compaction(&[0; 4], 1, 4), Some(1));
    }
}
