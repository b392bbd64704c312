//! `[pipelines.<name>.maintenance]` (and per table): compaction, Z-ordering, checkpoints, log
//! cleanup and VACUUM of the Delta tables while the pipeline runs.

use std::time::Duration;

use serde::Deserialize;

use super::WriteMode;

/// Every key optional, so that a table's section overrides only what it names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Compact and vacuum while `pipeline start` runs (default true).
    pub enabled: Option<bool>,
    /// Compact a table once it has this many files smaller than half the target size.
    pub compact_min_files: Option<usize>,
    /// Size of the data files pgdelta writes (its copies and appends, MERGE rewrites,
    /// compaction), in MiB: the table's `delta.targetFileSize` (default: see
    /// [`default_target_file_size_mb`]).
    pub target_file_size_mb: Option<u64>,
    /// Columns to Z-order by when compacting (default none: bin-packing only).
    pub zorder_by: Option<Vec<String>>,
    /// A checkpoint every this many commits (`delta.checkpointInterval`, default 100).
    pub checkpoint_interval: Option<u64>,
    /// Log entries older than this are removed after a checkpoint (`delta.logRetentionDuration`).
    pub log_retention_hours: Option<u64>,
    /// How often VACUUM runs (default every 24 hours).
    pub vacuum_interval_hours: Option<u64>,
    /// Files no longer referenced and older than this are deleted (default 168: 7 days).
    pub vacuum_retention_hours: Option<u64>,
}

/// Small files where MERGE rewrites them all the time: a copy-on-write batch rewrites every
/// file holding a changed key, so its cost is the size of the files it touches (with 8 MiB
/// files, updates to the newest 1% of a 1M-row table's keys ran 2.5x as fast as with
/// 128 MiB; docs/benchmarks.md). In the deletion-vector mode an update rewrites no file but
/// writes a vector for each file it touches, so large files are cheaper (uniform updates
/// on a 10M-row table: a batch took 0.27 s with 8 MiB files, 0.20 s with 128 MiB).
pub fn default_target_file_size_mb(write_mode: WriteMode) -> u64 {
    match write_mode {
        WriteMode::CopyOnWrite => 8,
        WriteMode::DeletionVectors => 128,
    }
}

/// The shortest VACUUM retention accepted without `--force`: readers and writers that
/// started before it may still need the files.
pub const MIN_VACUUM_RETENTION_HOURS: u64 = 24;

/// The settings one table runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub enabled: bool,
    pub compact_min_files: usize,
    pub target_file_size: u64,
    pub zorder_by: Vec<String>,
    pub checkpoint_interval: u64,
    pub log_retention: Duration,
    pub vacuum_interval: Duration,
    pub vacuum_retention: Duration,
}

const HOUR: u64 = 3600;

impl MaintenanceConfig {
    /// `self` with `over`'s keys on top.
    pub fn overridden_by(&self, over: &MaintenanceConfig) -> MaintenanceConfig {
        MaintenanceConfig {
            enabled: over.enabled.or(self.enabled),
            compact_min_files: over.compact_min_files.or(self.compact_min_files),
            target_file_size_mb: over.target_file_size_mb.or(self.target_file_size_mb),
            zorder_by: over.zorder_by.clone().or_else(|| self.zorder_by.clone()),
            checkpoint_interval: over.checkpoint_interval.or(self.checkpoint_interval),
            log_retention_hours: over.log_retention_hours.or(self.log_retention_hours),
            vacuum_interval_hours: over.vacuum_interval_hours.or(self.vacuum_interval_hours),
            vacuum_retention_hours: over.vacuum_retention_hours.or(self.vacuum_retention_hours),
        }
    }

    /// The settings of a table written in `write_mode`.
    pub fn resolve(&self, write_mode: WriteMode) -> Result<Maintenance, String> {
        let retention = self.vacuum_retention_hours.unwrap_or(168);
        if retention < MIN_VACUUM_RETENTION_HOURS {
            return Err(format!(
                "maintenance.vacuum_retention_hours = {retention} is shorter than the safe minimum of {MIN_VACUUM_RETENTION_HOURS} hours \
                 (readers may still need those files); `pgdelta table vacuum --retention-hours H --force` runs a shorter one by hand"
            ));
        }
        let target_mb = self
            .target_file_size_mb
            .unwrap_or_else(|| default_target_file_size_mb(write_mode))
            .max(1);
        Ok(Maintenance {
            enabled: self.enabled.unwrap_or(true),
            compact_min_files: self.compact_min_files.unwrap_or(32).max(2),
            target_file_size: target_mb * 1024 * 1024,
            zorder_by: self.zorder_by.clone().unwrap_or_default(),
            checkpoint_interval: self.checkpoint_interval.unwrap_or(100).max(1),
            log_retention: Duration::from_secs(self.log_retention_hours.unwrap_or(720) * HOUR),
            vacuum_interval: Duration::from_secs(self.vacuum_interval_hours.unwrap_or(24) * HOUR),
            vacuum_retention: Duration::from_secs(retention * HOUR),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_table_overrides() {
        let pipeline = MaintenanceConfig {
            compact_min_files: Some(10),
            zorder_by: Some(vec!["region".into()]),
            ..Default::default()
        };
        let table = MaintenanceConfig {
            zorder_by: Some(vec!["customer".into()]),
            ..Default::default()
        };
        let resolved = pipeline
            .overridden_by(&table)
            .resolve(WriteMode::CopyOnWrite)
            .unwrap();
        assert!(resolved.enabled);
        assert_eq!(resolved.compact_min_files, 10);
        assert_eq!(resolved.zorder_by, vec!["customer"]);
        assert_eq!(resolved.target_file_size, 8 * 1024 * 1024);
        assert_eq!(resolved.vacuum_retention, Duration::from_secs(168 * 3600));
    }

    #[test]
    fn the_default_file_size_follows_the_write_mode_unless_set() {
        let size =
            |config: &MaintenanceConfig, mode| config.resolve(mode).unwrap().target_file_size;
        let default = MaintenanceConfig::default();
        assert_eq!(size(&default, WriteMode::CopyOnWrite), 8 << 20);
        assert_eq!(size(&default, WriteMode::DeletionVectors), 128 << 20);
        let set = MaintenanceConfig {
            target_file_size_mb: Some(32),
            ..Default::default()
        };
        assert_eq!(size(&set, WriteMode::DeletionVectors), 32 << 20);
    }

    #[test]
    fn a_retention_below_the_safe_minimum_is_refused() {
        let config = MaintenanceConfig {
            vacuum_retention_hours: Some(1),
            ..Default::default()
        };
        let error = config.resolve(WriteMode::CopyOnWrite).unwrap_err();
        assert!(error.contains("vacuum_retention_hours = 1"), "{error}");
    }
}
