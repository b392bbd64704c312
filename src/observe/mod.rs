//! What a running pipeline tells its operators: Prometheus metrics, health, snapshot progress.
//!
//! The pipeline reports events to one shared [`Observer`]; the HTTP server ([`server`]) reads
//! it on every request.

pub mod health;
pub mod metrics;
pub mod progress;
pub mod server;
pub mod sink_probe;
pub mod slot;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::ResolvedPipeline;
use crate::event::{Lsn, Operation, TableName, Transaction};
use crate::source::postgres::SlotState;
use health::{seconds_between, Component, HealthReport, HealthState};
use metrics::{
    FlagFamily, Metrics, PipelineErrorType, PipelineLabel, PipelineSlot, PipelineSlotStatus,
    PipelineTable, TableOperation, ERROR_TYPES, OPERATIONS,
};

/// Changes received from the source but not yet committed to Delta.
#[derive(Default)]
struct Pending {
    events: HashMap<(TableName, Operation), u64>,
    /// Per table, the commit time of its oldest change not yet in Delta.
    oldest_commit: BTreeMap<TableName, DateTime<Utc>>,
}

/// What one transaction carries, per table and operation.
pub struct TransactionCounts {
    commit_timestamp: DateTime<Utc>,
    events: HashMap<(TableName, Operation), u64>,
}

impl TransactionCounts {
    /// One event on its own (Kafka mode, where events arrive one record at a time).
    pub fn of_event(event: &crate::event::ChangeEvent) -> TransactionCounts {
        TransactionCounts {
            commit_timestamp: event.commit_timestamp,
            events: HashMap::from([((event.table().clone(), event.operation), 1)]),
        }
    }

    pub fn of(tx: &Transaction) -> TransactionCounts {
        Self::of_events(&tx.events, tx.commit_timestamp)
    }

    /// Some events of a transaction committed at `commit_timestamp`.
    pub fn of_events(
        events: &[crate::event::ChangeEvent],
        commit_timestamp: DateTime<Utc>,
    ) -> TransactionCounts {
        let mut counts = HashMap::new();
        for event in events {
            *counts
                .entry((event.table().clone(), event.operation))
                .or_default() += 1;
        }
        TransactionCounts {
            commit_timestamp,
            events: counts,
        }
    }
}

/// Collects metrics and health of one pipeline.
pub struct Observer {
    pipeline: String,
    tables: Vec<TableName>,
    started: Instant,
    metrics: Metrics,
    health: Mutex<HealthState>,
    pending: Mutex<Pending>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the health endpoints down with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Observer {
    /// An observer for `pipeline` with every per-table series present (at 0) from the start,
    /// so that rates and alerts work from the first change on.
    pub fn new(pipeline: &ResolvedPipeline) -> Observer {
        let tables: Vec<TableName> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
        let observer = Observer {
            pipeline: pipeline.name.clone(),
            tables,
            started: Instant::now(),
            metrics: Metrics::new(),
            health: Mutex::new(HealthState::default()),
            pending: Mutex::new(Pending::default()),
        };
        observer.create_series(&pipeline.slot);
        let member = metrics::PipelineMember {
            pipeline: pipeline.name.clone(),
            member: pipeline.member.clone(),
        };
        observer.metrics.member_info.get_or_create(&member).set(1);
        observer
    }

    fn create_series(&self, slot: &str) {
        let m = &self.metrics;
        for table in &self.tables {
            for operation in OPERATIONS {
                let _ = m
                    .events_processed
                    .get_or_create(&table_operation(table, operation));
            }
            let label = self.table_label(table);
            let _ = m.lag_seconds.get_or_create(&label);
            let _ = m.delta_commit_duration.get_or_create(&label);
            let _ = m.snapshot_rows_copied.get_or_create(&label);
            let _ = m.snapshot_rows_estimated.get_or_create(&label);
            let _ = m.table_files.get_or_create(&label);
            let _ = m.table_bytes.get_or_create(&label);
            for operation in metrics::MAINTENANCE_OPERATIONS {
                let label = metrics::TableMaintenance {
                    pipeline: self.pipeline.clone(),
                    table: table.to_string(),
                    operation: operation.to_string(),
                };
                let _ = m.maintenance_last_run.get_or_create(&label);
                let _ = m.maintenance_duration.get_or_create(&label);
                let _ = m.maintenance_files_removed.get_or_create(&label);
            }
        }
        for error_type in ERROR_TYPES {
            let _ = m.errors.get_or_create(&self.error_label(error_type));
        }
        for flag in [&m.last_committed_lsn, &m.source_connected, &m.sink_writable] {
            let _ = flag.get_or_create(&self.pipeline_label());
        }
        let _ = m.slot_retained_wal_bytes.get_or_create(&PipelineSlot {
            pipeline: self.pipeline.clone(),
            slot: slot.to_string(),
        });
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The replication stream is up: what was pending will be streamed again from the
    /// confirmed position, so it is counted again then.
    pub fn source_connected(&self) {
        lock(&self.pending).events.clear();
        lock(&self.health).source.set(Component::up());
        self.set_flag(&self.metrics.source_connected, true);
    }

    /// The source went away (it will be retried).
    pub fn source_lost(&self, error: &dyn Display) {
        self.count_error("source");
        lock(&self.health)
            .source
            .set(Component::down(error.to_string()));
        self.set_flag(&self.metrics.source_connected, false);
    }

    /// The Delta tables are open (or created) and can be written.
    pub fn sink_opened(&self) {
        lock(&self.health).sink.set(Component::up());
        self.set_flag(&self.metrics.sink_writable, true);
    }

    /// Outcome of a write probe of the Delta table directories.
    pub fn sink_probed(&self, outcome: Result<(), String>) {
        let component = match outcome {
            Ok(()) => Component::up(),
            Err(reason) => Component::down(reason),
        };
        let writable = component.is_up();
        lock(&self.health).sink.set(component);
        self.set_flag(&self.metrics.sink_writable, writable);
    }

    /// The pipeline stopped with `error`, of kind `error_type` (one of [`ERROR_TYPES`]).
    pub fn failed(&self, error_type: &str, error: &dyn Display) {
        self.count_error(error_type);
        let component = Component::down(error.to_string());
        let mut health = lock(&self.health);
        match error_type {
            "sink" | "change" => {
                health.sink.set(component);
                self.set_flag(&self.metrics.sink_writable, false);
            }
            _ => {
                health.source.set(component);
                self.set_flag(&self.metrics.source_connected, false);
            }
        }
    }

    /// A transaction (counted with [`TransactionCounts::of`] before it was handed over) was
    /// added to the current batch; `accepted` tells which tables took its events (the others
    /// already hold it, or are not replicated).
    pub fn transaction_added(
        &self,
        counts: TransactionCounts,
        accepted: impl Fn(&TableName) -> bool,
    ) {
        let mut pending = lock(&self.pending);
        for ((table, operation), count) in counts.events {
            if !accepted(&table) {
                continue;
            }
            pending
                .oldest_commit
                .entry(table.clone())
                .or_insert(counts.commit_timestamp);
            *pending.events.entry((table, operation)).or_default() += count;
        }
    }

    /// One table's changes were committed to Delta in `elapsed`.
    pub fn table_committed(&self, table: &TableName, elapsed: Duration) {
        self.metrics
            .delta_commit_duration
            .get_or_create(&self.table_label(table))
            .observe(elapsed.as_secs_f64());
    }

    /// The batch of `events` changes up to `lsn` is in Delta and confirmed to the source.
    pub fn batch_flushed(&self, events: usize, lsn: Lsn) {
        let committed = std::mem::take(&mut *lock(&self.pending));
        for ((table, operation), count) in committed.events {
            self.metrics
                .events_processed
                .get_or_create(&table_operation(&table, operation))
                .inc_by(count);
        }
        if events > 0 {
            self.metrics.batch_size.observe(events as f64);
        }
        self.metrics
            .last_committed_lsn
            .get_or_create(&self.pipeline_label())
            .set(lsn.0 as i64);
        let mut health = lock(&self.health);
        health.last_commit = Some((lsn, Utc::now()));
        health.sink.set(Component::up());
        self.set_flag(&self.metrics.sink_writable, true);
    }

    /// How much WAL the server retains for the pipeline's slot, and how safe that is.
    pub fn set_slot_wal(&self, slot: &str, state: &SlotState) {
        let label = PipelineSlot {
            pipeline: self.pipeline.clone(),
            slot: slot.to_string(),
        };
        let m = &self.metrics;
        m.slot_retained_wal_bytes
            .get_or_create(&label)
            .set(state.retained_wal_bytes);
        if let Some(safe) = state.safe_wal_size {
            m.slot_safe_wal_size_bytes.get_or_create(&label).set(safe);
        }
        if let Some(current) = &state.wal_status {
            for status in metrics::WAL_STATUSES {
                let series = PipelineSlotStatus {
                    pipeline: self.pipeline.clone(),
                    slot: slot.to_string(),
                    status: status.to_string(),
                };
                m.slot_wal_status
                    .get_or_create(&series)
                    .set(i64::from(status == current));
            }
        }
    }

    /// The Delta table's data files at its latest version.
    pub fn set_table_files(&self, table: &TableName, files: usize, bytes: u64) {
        let label = self.table_label(table);
        self.metrics
            .table_files
            .get_or_create(&label)
            .set(files as i64);
        self.metrics
            .table_bytes
            .get_or_create(&label)
            .set(bytes as i64);
    }

    /// A compaction or VACUUM (`operation`) of `table` finished in `elapsed`, removing
    /// `files_removed` files.
    pub fn maintenance_ran(
        &self,
        table: &TableName,
        operation: &str,
        elapsed: Duration,
        files_removed: u64,
    ) {
        let label = metrics::TableMaintenance {
            pipeline: self.pipeline.clone(),
            table: table.to_string(),
            operation: operation.to_string(),
        };
        let m = &self.metrics;
        m.maintenance_last_run
            .get_or_create(&label)
            .set(Utc::now().timestamp());
        m.maintenance_duration
            .get_or_create(&label)
            .set(elapsed.as_secs_f64());
        m.maintenance_files_removed
            .get_or_create(&label)
            .inc_by(files_removed);
    }

    /// Initial snapshot progress of `table`: rows copied so far, of about `estimated`.
    pub fn set_snapshot_progress(&self, table: &TableName, copied: u64, estimated: Option<u64>) {
        let label = self.table_label(table);
        self.metrics
            .snapshot_rows_copied
            .get_or_create(&label)
            .set(copied as i64);
        if let Some(estimated) = estimated {
            self.metrics
                .snapshot_rows_estimated
                .get_or_create(&label)
                .set(estimated as i64);
        }
    }

    /// A validation found `mismatches` failed checks; `passed_at` is when it started, when
    /// every check passed.
    pub fn validation_ran(&self, mismatches: usize, passed_at: Option<DateTime<Utc>>) {
        let label = self.pipeline_label();
        self.metrics
            .validation_mismatches
            .get_or_create(&label)
            .set(mismatches as i64);
        if let Some(at) = passed_at {
            self.metrics
                .validation_last_success
                .get_or_create(&label)
                .set(at.timestamp());
        }
    }

    /// Brings the time-dependent gauges up to date: per table, the age of its oldest change
    /// not yet in Delta, 0 when it has none.
    pub fn refresh(&self) {
        let now = Utc::now();
        let pending = lock(&self.pending);
        for table in &self.tables {
            let lag = pending
                .oldest_commit
                .get(table)
                .map_or(0.0, |&commit| seconds_between(commit, now));
            self.metrics
                .lag_seconds
                .get_or_create(&self.table_label(table))
                .set(lag);
        }
    }

    /// The `/metrics` body.
    pub fn encode_metrics(&self) -> String {
        self.refresh();
        self.metrics.encode()
    }

    pub fn health(&self) -> HealthReport {
        lock(&self.health).report(
            &self.pipeline,
            self.started.elapsed().as_secs_f64(),
            Utc::now(),
        )
    }

    /// `Ok` when connected to the source and the sink is writable, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        lock(&self.health).readiness()
    }

    fn count_error(&self, error_type: &str) {
        self.record_errors(error_type, 1);
    }

    /// Counts `count` errors of `error_type` that did not stop the pipeline (a dead letter,
    /// a table stopped while the others go on).
    pub fn record_errors(&self, error_type: &str, count: u64) {
        self.metrics
            .errors
            .get_or_create(&self.error_label(error_type))
            .inc_by(count);
    }

    fn set_flag(&self, family: &FlagFamily, up: bool) {
        family
            .get_or_create(&self.pipeline_label())
            .set(i64::from(up));
    }

    fn pipeline_label(&self) -> PipelineLabel {
        PipelineLabel {
            pipeline: self.pipeline.clone(),
        }
    }

    fn table_label(&self, table: &TableName) -> PipelineTable {
        PipelineTable {
            pipeline: self.pipeline.clone(),
            table: table.to_string(),
        }
    }

    fn error_label(&self, error_type: &str) -> PipelineErrorType {
        PipelineErrorType {
            pipeline: self.pipeline.clone(),
            error_type: error_type.to_string(),
        }
    }
}

fn table_operation(table: &TableName, operation: Operation) -> TableOperation {
    TableOperation {
        table: table.to_string(),
        operation: operation.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChangeEvent, EventMetadata, TableSchema};
    use std::sync::Arc as StdArc;

    fn observer() -> Observer {
        let config = crate::config::Config::from_toml(
            "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.shop]\ntables = [\"public.a\", \"public.b\"]\n",
            std::path::Path::new("t.toml"),
            Vec::new(),
        )
        .unwrap();
        Observer::new(&config.pipeline("shop").unwrap())
    }

    fn event(table: &str, operation: Operation, at: DateTime<Utc>) -> ChangeEvent {
        ChangeEvent {
            operation,
            schema: StdArc::new(TableSchema {
                table: table.parse().unwrap(),
                columns: Vec::new(),
            }),
            data: None,
            before: None,
            before_is_whole_row: false,
            commit_timestamp: at,
            metadata: EventMetadata {
                database: "db".into(),
                lsn: Lsn(1),
                tx_id: None,
                snapshot: false,
            },
        }
    }

    #[test]
    fn every_series_exists_from_the_start() {
        let names = metrics::exported_names(&observer().encode_metrics());
        for name in [
            "postgres_cdc_events_processed_total",
            "postgres_cdc_lag_seconds",
            "postgres_cdc_batch_size_bucket",
            "cdc_errors_total",
            "postgres_cdc_delta_commit_duration_seconds_bucket",
            "postgres_cdc_last_committed_lsn",
            "postgres_cdc_replication_slot_retained_wal_bytes",
            "postgres_cdc_snapshot_rows_copied",
            "postgres_cdc_source_connected",
            "postgres_cdc_sink_writable",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
    }

    #[test]
    fn the_slot_wal_status_is_one_series_per_status_with_the_current_one_set() {
        let observer = observer();
        let state = SlotState {
            retained_wal_bytes: 4096,
            wal_status: Some("unreserved".into()),
            safe_wal_size: Some(-100),
            ..Default::default()
        };
        observer.set_slot_wal("s", &state);
        let text = observer.encode_metrics();
        let sample = |series: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        let status = |s: &str| {
            sample(&format!(
                "postgres_cdc_replication_slot_wal_status{{pipeline=\"shop\",slot=\"s\",status=\"{s}\"}}"
            ))
        };
        assert_eq!(status("unreserved").as_deref(), Some("1"), "{text}");
        assert_eq!(status("reserved").as_deref(), Some("0"));
        assert_eq!(status("lost").as_deref(), Some("0"));
        assert_eq!(
            sample(
                "postgres_cdc_replication_slot_safe_wal_size_bytes{pipeline=\"shop\",slot=\"s\"}"
            )
            .as_deref(),
            Some("-100")
        );
        assert_eq!(
            sample(
                "postgres_cdc_replication_slot_retained_wal_bytes{pipeline=\"shop\",slot=\"s\"}"
            )
            .as_deref(),
            Some("4096")
        );
    }

    #[test]
    fn counts_accepted_events_once_flushed_and_lags_only_while_pending() {
        let observer = observer();
        let old = Utc::now() - chrono::Duration::seconds(30);
        let tx = Transaction {
            xid: Some(7),
            end_lsn: Lsn(100),
            commit_timestamp: old,
            events: vec![
                event("public.a", Operation::Insert, old),
                event("public.a", Operation::Insert, old),
                event("public.b", Operation::Delete, old),
            ],
        };
        let a: TableName = "public.a".parse().unwrap();
        observer.transaction_added(TransactionCounts::of(&tx), |table| table == &a);
        let text = observer.encode_metrics();
        assert!(
            text.contains(
                "postgres_cdc_events_processed_total{table=\"public.a\",operation=\"INSERT\"} 0"
            ),
            "{text}"
        );
        let lag_line = text
            .lines()
            .find(|l| {
                l.starts_with("postgres_cdc_lag_seconds{pipeline=\"shop\",table=\"public.a\"}")
            })
            .unwrap();
        let lag: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((29.0..60.0).contains(&lag), "{lag_line}");
        assert!(
            text.contains("postgres_cdc_lag_seconds{pipeline=\"shop\",table=\"public.b\"} 0.0"),
            "{text}"
        );

        observer.batch_flushed(2, Lsn(100));
        let text = observer.encode_metrics();
        assert!(
            text.contains(
                "postgres_cdc_events_processed_total{table=\"public.a\",operation=\"INSERT\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "postgres_cdc_events_processed_total{table=\"public.b\",operation=\"DELETE\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("postgres_cdc_lag_seconds{pipeline=\"shop\",table=\"public.a\"} 0.0"),
            "{text}"
        );
        assert!(
            text.contains("postgres_cdc_last_committed_lsn{pipeline=\"shop\"} 100"),
            "{text}"
        );
        assert!(text.contains("postgres_cdc_batch_size_count 1"), "{text}");
    }

    #[test]
    fn a_validation_sets_its_mismatches_and_a_passed_one_its_time() {
        let observer = observer();
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        observer.validation_ran(0, Some(at));
        observer.validation_ran(2, None);
        let text = observer.encode_metrics();
        assert!(
            text.contains("cdc_validation_mismatches{pipeline=\"shop\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cdc_validation_last_success_timestamp{pipeline=\"shop\"} 1700000000"),
            "the last passed run is kept: {text}"
        );
    }

    #[test]
    fn readiness_follows_the_source_and_the_sink() {
        let observer = observer();
        assert!(observer.readiness().is_err());
        observer.sink_opened();
        observer.source_connected();
        assert!(observer.readiness().is_ok());
        observer.source_lost(&"connection refused");
        let reason = observer.readiness().unwrap_err();
        assert!(reason.contains("connection refused"), "{reason}");
        let text = observer.encode_metrics();
        assert!(
            text.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"source\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("postgres_cdc_source_connected{pipeline=\"shop\"} 0"),
            "{text}"
        );
        observer.source_connected();
        assert!(observer.health().is_ok());
    }
}
