//! The Prometheus metrics of one pipeline process, under the names users alert on.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::event::Operation;

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub const OPERATIONS: [Operation; 4] = [
    Operation::Insert,
    Operation::Update,
    Operation::Delete,
    Operation::Truncate,
];

/// The `error_type` label values of `cdc_errors_total`.
pub const ERROR_TYPES: [&str; 8] = [
    "source",
    "sink",
    "change",
    "config",
    "setup",
    "table_stopped",
    "dead_letter",
    "malformed_event",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOperation {
    pub table: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineTable {
    pub pipeline: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableMaintenance {
    pub pipeline: String,
    pub table: String,
    /// `compact` or `vacuum`.
    pub operation: String,
}

/// The `operation` label values of the maintenance metrics.
pub const MAINTENANCE_OPERATIONS: [&str; 2] = ["compact", "vacuum"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineErrorType {
    pub pipeline: String,
    pub error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineMember {
    pub pipeline: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineSlot {
    pub pipeline: String,
    pub slot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineSlotStatus {
    pub pipeline: String,
    pub slot: String,
    pub status: String,
}

/// The values of `pg_replication_slots.wal_status`.
pub const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

type FloatGauge = Gauge<f64, AtomicU64>;
/// A per-pipeline 0/1 gauge.
pub type FlagFamily = Family<PipelineLabel, Gauge>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn commit_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric pgdelta exports. Counters are registered without `_total`: the encoder adds it.
pub struct Metrics {
    registry: Registry,
    pub events_processed: Family<TableOperation, Counter>,
    pub lag_seconds: Family<PipelineTable, FloatGauge>,
    pub batch_size: Histogram,
    pub errors: Family<PipelineErrorType, Counter>,
    pub delta_commit_duration: HistogramFamily<PipelineTable>,
    pub last_committed_lsn: Family<PipelineLabel, Gauge>,
    pub slot_retained_wal_bytes: Family<PipelineSlot, Gauge>,
    pub slot_safe_wal_size_bytes: Family<PipelineSlot, Gauge>,
    pub slot_wal_status: Family<PipelineSlotStatus, Gauge>,
    pub snapshot_rows_copied: Family<PipelineTable, Gauge>,
    pub snapshot_rows_estimated: Family<PipelineTable, Gauge>,
    pub source_connected: FlagFamily,
    pub sink_writable: FlagFamily,
    pub validation_mismatches: Family<PipelineLabel, Gauge>,
    pub validation_last_success: Family<PipelineLabel, Gauge>,
    pub table_files: Family<PipelineTable, Gauge>,
    pub table_bytes: Family<PipelineTable, Gauge>,
    pub maintenance_last_run: Family<TableMaintenance, Gauge>,
    pub maintenance_duration: Family<TableMaintenance, FloatGauge>,
    pub maintenance_files_removed: Family<TableMaintenance, Counter>,
    pub member_info: Family<PipelineMember, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            events_processed: Family::default(),
            lag_seconds: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            errors: Family::default(),
            delta_commit_duration: Family::new_with_constructor(commit_duration_histogram),
            last_committed_lsn: Family::default(),
            slot_retained_wal_bytes: Family::default(),
            slot_safe_wal_size_bytes: Family::default(),
            slot_wal_status: Family::default(),
            snapshot_rows_copied: Family::default(),
            snapshot_rows_estimated: Family::default(),
            source_connected: Family::default(),
            sink_writable: Family::default(),
            validation_mismatches: Family::default(),
            validation_last_success: Family::default(),
            table_files: Family::default(),
            table_bytes: Family::default(),
            maintenance_last_run: Family::default(),
            maintenance_duration: Family::default(),
            maintenance_files_removed: Family::default(),
            member_info: Family::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "postgres_cdc_member_info",
            "1, labelled with this process's member name (the pipeline's `member` setting): tells \
             apart the processes that share a pipeline, and names the committer in `pipeline status`",
            self.member_info.clone(),
        );
        r.register(
            "postgres_cdc_events_processed",
            "Change events written to Delta, per source table and operation",
            self.events_processed.clone(),
        );
        r.register(
            "postgres_cdc_lag_seconds",
            "Seconds since the commit of the oldest source change not yet in Delta (0 when caught up)",
            self.lag_seconds.clone(),
        );
        r.register(
            "postgres_cdc_batch_size",
            "Change events per written batch",
            self.batch_size.clone(),
        );
        r.register(
            "cdc_errors",
            "Errors by kind: source (connection/replication), sink (Delta), change, config, setup",
            self.errors.clone(),
        );
        r.register(
            "postgres_cdc_delta_commit_duration_seconds",
            "Duration of one Delta commit (MERGE) of one table",
            self.delta_commit_duration.clone(),
        );
        r.register(
            "postgres_cdc_last_committed_lsn",
            "Source position (LSN as a number) of the last batch committed to Delta and confirmed",
            self.last_committed_lsn.clone(),
        );
        r.register(
            "postgres_cdc_replication_slot_retained_wal_bytes",
            "WAL the server keeps for the replication slot: current WAL position minus restart_lsn",
            self.slot_retained_wal_bytes.clone(),
        );
        r.register(
            "postgres_cdc_replication_slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is in danger of being invalidated \
             (pg_replication_slots.safe_wal_size; absent when max_slot_wal_keep_size is unlimited)",
            self.slot_safe_wal_size_bytes.clone(),
        );
        r.register(
            "postgres_cdc_replication_slot_wal_status",
            "1 for the slot's current pg_replication_slots.wal_status (reserved, extended, \
             unreserved, lost), 0 for the others",
            self.slot_wal_status.clone(),
        );
        r.register(
            "postgres_cdc_snapshot_rows_copied",
            "Rows copied so far by the initial snapshot, per table",
            self.snapshot_rows_copied.clone(),
        );
        r.register(
            "postgres_cdc_snapshot_rows_estimated",
            "Estimated rows of the initial snapshot, per table",
            self.snapshot_rows_estimated.clone(),
        );
        r.register(
            "postgres_cdc_source_connected",
            "1 while the replication stream from PostgreSQL is connected",
            self.source_connected.clone(),
        );
        r.register(
            "postgres_cdc_sink_writable",
            "1 while the Delta tables are open and the last commit succeeded",
            self.sink_writable.clone(),
        );
        r.register(
            "cdc_validation_mismatches",
            "Failed checks (rows, checksum, lag, schema) in the last periodic validation",
            self.validation_mismatches.clone(),
        );
        r.register(
            "cdc_validation_last_success_timestamp",
            "Unix time of the start of the last periodic validation where every check passed",
            self.validation_last_success.clone(),
        );
        r.register(
            "postgres_cdc_delta_table_files",
            "Data files in the Delta table's latest version",
            self.table_files.clone(),
        );
        r.register(
            "postgres_cdc_delta_table_bytes",
            "Bytes of data files in the Delta table's latest version",
            self.table_bytes.clone(),
        );
        r.register(
            "postgres_cdc_maintenance_last_run_timestamp",
            "Unix time of the last compaction or VACUUM of the table",
            self.maintenance_last_run.clone(),
        );
        r.register(
            "postgres_cdc_maintenance_duration_seconds",
            "How long the last compaction or VACUUM of the table took",
            self.maintenance_duration.clone(),
        );
        r.register(
            "postgres_cdc_maintenance_files_removed",
            "Data files compaction replaced or VACUUM deleted",
            self.maintenance_files_removed.clone(),
        );
    }

    /// The exposition text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The sample names an exposition text carries, with the names a metric family can carry
/// even before it has a sample (`_total` of counters; `_bucket`, `_sum`, `_count` of
/// histograms).
pub fn exported_names(exposition: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_names_users_alert_on() {
        let metrics = Metrics::new();
        metrics
            .events_processed
            .get_or_create(&TableOperation {
                table: "public.orders".into(),
                operation: "INSERT".into(),
            })
            .inc_by(3);
        metrics
            .errors
            .get_or_create(&PipelineErrorType {
                pipeline: "shop".into(),
                error_type: "source".into(),
            })
            .inc();
        metrics.batch_size.observe(3.0);
        let text = metrics.encode();
        assert!(
            text.contains(
                "postgres_cdc_events_processed_total{table=\"public.orders\",operation=\"INSERT\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"source\"} 1"),
            "{text}"
        );
        assert!(!text.contains("_total_total"), "{text}");
        let names = exported_names(&text);
        for name in [
            "postgres_cdc_events_processed_total",
            "postgres_cdc_batch_size_bucket",
            "postgres_cdc_batch_size_count",
            "cdc_errors_total",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
    }
}
