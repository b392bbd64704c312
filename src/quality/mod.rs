//! Data quality validation: proves a Delta table equals its PostgreSQL source.
//!
//! Checks: `rows` (row counts), `checksum` (per key-range chunk checksums over a canonical
//! rendering of every row, then the differing keys), `lag` (CDC lag in bytes and seconds against
//! thresholds) and `schema` (columns and types).
//!
//! Consistency: PostgreSQL is read in one REPEATABLE READ snapshot taken at WAL position `W`;
//! the Delta table is read after it, at its last applied LSN `D`. A difference is a failure only
//! when it cannot be replication lag:
//! - `D > W`: Delta already holds changes newer than the snapshot; the comparison is retried;
//! - slot idle (no pipeline running): the slot is peeked (nothing consumed) for transactions
//!   on this table committed after `D` and before `W`; if there are any, the result is
//!   "not comparable (source ahead by N bytes)", otherwise a failure;
//! - pipeline running (the slot is held, so it cannot be peeked): the comparison waits until
//!   the walsender has sent `W` plus one batch interval, and reads Delta only then.

mod canonical;
mod chunks;
mod delta;
mod periodic;
mod postgres;
mod report;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Client;

use crate::config::{Config, ConfigError, ResolvedPipeline, ResolvedTable};
use crate::event::{Lsn, TableName};
use crate::sink::delta::types::delta_type;
use crate::source::postgres::{current_wal_lsn, introspect_table, ConnectionSettings, SourceError};
use chunks::{describe_key, differing_chunks, differing_keys, ChunkSum, Chunking};
use postgres::{SlotState, TableSpec};

pub use crate::config::ValidationConfig;
pub use canonical::{row_hash, row_text, KeyOrder};
pub use chunks::KeyDifference;
pub use periodic::{run_periodic, LogSink, ValidationSink};
pub use report::render_table;

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("PostgreSQL query failed ({context}): {source}")]
    Query {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("Delta table: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Rows,
    Checksum,
    Lag,
    Schema,
}

impl Check {
    pub const ALL: [Check; 4] = [Check::Schema, Check::Rows, Check::Checksum, Check::Lag];

    pub fn name(self) -> &'static str {
        match self {
            Check::Rows => "rows",
            Check::Checksum => "checksum",
            Check::Lag => "lag",
            Check::Schema => "schema",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// The source has moved past what Delta holds: no verdict.
    NotComparable,
    /// The check could not run.
    Error,
}

/// One check's outcome for one table (or the whole pipeline, for `lag`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: Check,
    pub table: Option<String>,
    pub status: Status,
    pub summary: String,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub pipeline: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub results: Vec<CheckResult>,
}

impl ValidationReport {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.status == Status::Pass)
    }

    /// Checks that found a difference (not counting "not comparable" or errors).
    pub fn mismatches(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.status == Status::Fail)
            .count()
    }

    /// 0 all passed, 2 nothing failed but some results were not comparable, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else if self
            .results
            .iter()
            .all(|r| matches!(r.status, Status::Pass | Status::NotComparable))
        {
            2
        } else {
            1
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValidateOptions {
    pub table: Option<TableName>,
    pub checks: Vec<Check>,
    pub max_lag_seconds: f64,
    pub max_lag_bytes: u64,
    pub chunk_rows: u64,
    /// How many differing keys a checksum failure lists.
    pub max_reported_keys: usize,
}

const DEFAULT_MAX_LAG_SECONDS: f64 = 300.0;
const DEFAULT_MAX_LAG_BYTES: u64 = 1 << 30;
const DEFAULT_CHUNK_ROWS: u64 = 100_000;
const MAX_CHUNKS_TO_DIFF: usize = 5;
const PEEK_LIMIT: i32 = 100_000;
const ATTEMPTS: usize = 3;

impl ValidateOptions {
    /// Every check, thresholds from the pipeline's `validation` section or the defaults.
    pub fn from_config(config: &Config, pipeline: &str) -> ValidateOptions {
        let section = config
            .pipelines
            .get(pipeline)
            .map(|p| p.validation.clone())
            .unwrap_or_default();
        ValidateOptions {
            table: None,
            checks: Check::ALL.to_vec(),
            max_lag_seconds: section.max_lag_seconds.unwrap_or(DEFAULT_MAX_LAG_SECONDS),
            max_lag_bytes: section.max_lag_bytes.unwrap_or(DEFAULT_MAX_LAG_BYTES),
            chunk_rows: section.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS).max(1),
            max_reported_keys: 20,
        }
    }
}

/// Told how far the long reads of a validation are (the CLI draws a progress line).
pub trait ReadProgress: Send + Sync {
    /// `rows` more rows of `table`'s Delta side were read, of about `estimated`.
    fn advance(&self, table: &TableName, rows: u64, estimated: Option<u64>);
    /// The read of `table` is done.
    fn finish(&self, table: &TableName);
}

/// A [`ReadProgress`] that shows nothing.
pub struct NoProgress;

impl ReadProgress for NoProgress {
    fn advance(&self, _table: &TableName, _rows: u64, _estimated: Option<u64>) {}
    fn finish(&self, _table: &TableName) {}
}

/// Runs the requested checks on a pipeline's tables. Check failures are in the report;
/// `Err` only when the validation could not start (configuration, connection).
pub async fn validate(
    config: &Config,
    pipeline: &str,
    options: &ValidateOptions,
) -> Result<ValidationReport, QualityError> {
    validate_with_progress(config, pipeline, options, &NoProgress).await
}

/// [`validate`], telling `progress` how far the reads of the Delta tables are.
pub async fn validate_with_progress(
    config: &Config,
    pipeline: &str,
    options: &ValidateOptions,
    progress: &dyn ReadProgress,
) -> Result<ValidationReport, QualityError> {
    let resolved = config.pipeline(pipeline)?;
    let tables: Vec<&ResolvedTable> = resolved
        .tables
        .iter()
        .filter(|t| options.table.as_ref().is_none_or(|only| only == &t.name))
        .collect();
    if let (Some(only), true) = (&options.table, tables.is_empty()) {
        return Err(QualityError::Invalid(format!(
            "table {only} is not replicated by pipeline {pipeline}"
        )));
    }
    let client = ConnectionSettings::from_config(config)?.connect().await?;
    postgres::prepare_session(&client).await?;
    let context = Context {
        client,
        resolved: &resolved,
        options,
        progress,
    };
    let mut report = ValidationReport {
        pipeline: pipeline.to_string(),
        started_at: chrono::Utc::now(),
        results: Vec::new(),
    };
    for table in tables {
        for check in Check::ALL
            .into_iter()
            .filter(|c| *c != Check::Lag && options.checks.contains(c))
        {
            let result = context.run(check, table).await;
            report.results.push(result);
        }
    }
    if options.checks.contains(&Check::Lag) {
        let result = match context.lag().await {
            Ok(result) => result,
            Err(error) => error_result(Check::Lag, None, &error),
        };
        report.results.push(result);
    }
    Ok(report)
}

fn error_result(check: Check, table: Option<&TableName>, error: &QualityError) -> CheckResult {
    CheckResult {
        check,
        table: table.map(|t| t.to_string()),
        status: Status::Error,
        summary: format!("{error}"),
        details: serde_json::Value::Null,
    }
}

struct Context<'a> {
    client: Client,
    resolved: &'a ResolvedPipeline,
    options: &'a ValidateOptions,
    progress: &'a dyn ReadProgress,
}

/// One side's measurement of a table.
#[derive(Debug, Clone, PartialEq)]
enum Measure {
    Count(u64),
    Chunks(Vec<ChunkSum>),
}

impl Measure {
    /// Whether both sides hold the same rows. A chunk one side lacks counts as empty: an empty
    /// table has no PostgreSQL chunk, while Delta rows always have one chunk to go to.
    fn matches(&self, other: &Measure) -> bool {
        match (self, other) {
            (Measure::Chunks(a), Measure::Chunks(b)) => differing_chunks(a, b).is_empty(),
            (a, b) => a == b,
        }
    }
}

/// What a consistent comparison concluded.
enum Verdict {
    Equal(Measure),
    Different {
        postgres: Measure,
        delta: Measure,
        chunking: Option<Chunking>,
        notes: serde_json::Value,
    },
    NotComparable(String, serde_json::Value),
}

impl Context<'_> {
    async fn run(&self, check: Check, table: &ResolvedTable) -> CheckResult {
        let outcome = match check {
            Check::Schema => self.schema(table).await,
            Check::Rows | Check::Checksum => self.compare(check, table).await,
            Check::Lag => unreachable!("lag is checked once per pipeline"),
        };
        outcome.unwrap_or_else(|error| error_result(check, Some(&table.name), &error))
    }

    fn app_id(&self, table: &ResolvedTable) -> String {
        crate::sink::delta::txn::table_app_id(&self.resolved.name, &table.name)
    }

    async fn spec(&self, table: &ResolvedTable) -> Result<TableSpec, QualityError> {
        let source = introspect_table(&self.client, &table.name).await?;
        let key = match table.key.is_empty() {
            true => source.primary_key.clone(),
            false => table.key.clone(),
        };
        if key.is_empty() {
            return Err(QualityError::Invalid(format!(
                "table {} has no primary key and no configured key: cannot name rows",
                table.name
            )));
        }
        Ok(TableSpec {
            name: table.name.clone(),
            columns: source.columns,
            key,
        })
    }

    async fn open_delta(&self, table: &ResolvedTable) -> Result<delta::DeltaSide, QualityError> {
        delta::open(&table.path, &table.storage, &self.app_id(table))
            .await?
            .ok_or_else(|| {
                QualityError::Invalid(format!(
                    "no Delta table at {} yet: run the pipeline first",
                    table.path
                ))
            })
    }

    async fn schema(&self, table: &ResolvedTable) -> Result<CheckResult, QualityError> {
        let spec = self.spec(table).await?;
        let delta_columns = self.open_delta(table).await?.columns()?;
        let mut missing = Vec::new();
        let mut incompatible = Vec::new();
        for column in &spec.columns {
            let expected = delta_type(
                column.type_oid,
                column.type_modifier,
                Some(&column.type_name),
            )
            .unwrap_or(deltalake::kernel::DataType::STRING);
            match delta_columns.iter().find(|(n, _)| n == &column.name) {
                None => missing.push(column.name.clone()),
                Some((_, found)) if found != &expected => incompatible.push(json!({
                    "column": column.name,
                    "postgres_type": column.type_name,
                    "expected_delta_type": expected.to_string(),
                    "delta_type": found.to_string(),
                })),
                Some(_) => {}
            }
        }
        let extra: Vec<&String> = delta_columns
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !spec.columns.iter().any(|c| &c.name == *n))
            .collect();
        let ok = missing.is_empty() && extra.is_empty() && incompatible.is_empty();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing in Delta: {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            let names: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
            problems.push(format!("only in Delta: {}", names.join(", ")));
        }
        for item in &incompatible {
            problems.push(format!(
                "{}: Delta has {}, expected {}",
                item["column"].as_str().unwrap_or("?"),
                item["delta_type"].as_str().unwrap_or("?"),
                item["expected_delta_type"].as_str().unwrap_or("?")
            ));
        }
        Ok(CheckResult {
            check: Check::Schema,
            table: Some(table.name.to_string()),
            status: if ok { Status::Pass } else { Status::Fail },
            summary: match ok {
                true => format!("{} columns match", spec.columns.len()),
                false => problems.join("; "),
            },
            details: json!({
                "missing_in_delta": missing,
                "extra_in_delta": extra,
                "incompatible": incompatible,
            }),
        })
    }

    async fn compare(
        &self,
        check: Check,
        table: &ResolvedTable,
    ) -> Result<CheckResult, QualityError> {
        let spec = self.spec(table).await?;
        let verdict = self.consistent_compare(check, table, &spec).await?;
        let name = Some(table.name.to_string());
        let result = match verdict {
            Verdict::Equal(measure) => CheckResult {
                check,
                table: name,
                status: Status::Pass,
                summary: match &measure {
                    Measure::Count(n) => format!("{n} rows on both sides"),
                    Measure::Chunks(sums) => format!(
                        "{} rows in {} chunks match",
                        sums.iter().map(|s| s.rows).sum::<u64>(),
                        sums.len()
                    ),
                },
                details: serde_json::Value::Null,
            },
            Verdict::NotComparable(summary, details) => CheckResult {
                check,
                table: name,
                status: Status::NotComparable,
                summary,
                details,
            },
            Verdict::Different {
                postgres,
                delta,
                chunking,
                notes,
            } => match (postgres, delta, chunking) {
                (Measure::Count(p), Measure::Count(d), _) => CheckResult {
                    check,
                    table: name,
                    status: Status::Fail,
                    summary: format!("PostgreSQL has {p} rows, Delta has {d}"),
                    details: json!({"postgres_rows": p, "delta_rows": d, "consistency": notes}),
                },
                (Measure::Chunks(p), Measure::Chunks(d), Some(chunking)) => {
                    self.describe_checksum_failure(table, &spec, &chunking, &p, &d, notes)
                        .await?
                }
                _ => unreachable!("both sides measure the same way"),
            },
        };
        Ok(result)
    }

    async fn measure_postgres(
        &self,
        check: Check,
        spec: &TableSpec,
    ) -> Result<(Lsn, Measure, Option<Chunking>), QualityError> {
        let at = postgres::begin_snapshot(&self.client).await?;
        let measured = match check {
            Check::Rows => postgres::count_rows(&self.client, &spec.name)
                .await
                .map(|n| (Measure::Count(n), None)),
            _ => postgres::chunk_sums(&self.client, spec, self.options.chunk_rows)
                .await
                .map(|(chunking, sums)| (Measure::Chunks(sums), Some(chunking))),
        };
        let ended = postgres::end_snapshot(&self.client).await;
        let (measure, chunking) = measured?;
        ended?;
        Ok((at, measure, chunking))
    }

    /// Compares at a point where a difference cannot be lag (see the module documentation).
    async fn consistent_compare(
        &self,
        check: Check,
        table: &ResolvedTable,
        spec: &TableSpec,
    ) -> Result<Verdict, QualityError> {
        for _ in 0..ATTEMPTS {
            let (snapshot_lsn, postgres, chunking) = self.measure_postgres(check, spec).await?;
            let slot = postgres::slot_state(&self.client, &self.resolved.slot).await?;
            if let Some(pid) = slot.as_ref().and_then(|s| s.active_pid) {
                self.wait_for_running_pipeline(pid, snapshot_lsn).await?;
            }
            let side = self.open_delta(table).await?;
            let delta = match &chunking {
                None => Measure::Count(side.count_rows().await?),
                Some(chunking) => {
                    let estimated = side.estimated_rows();
                    let mut read = |rows| self.progress.advance(&spec.name, rows, estimated);
                    let sums = side.chunk_sums(spec, chunking, &mut read).await?;
                    self.progress.finish(&spec.name);
                    Measure::Chunks(sums)
                }
            };
            if postgres.matches(&delta) {
                return Ok(Verdict::Equal(postgres));
            }
            let delta_lsn = side.last_lsn.unwrap_or_default();
            if delta_lsn > snapshot_lsn {
                continue; // Delta holds changes newer than the snapshot: measure again
            }
            let notes = json!({
                "snapshot_lsn": snapshot_lsn.to_string(),
                "delta_lsn": delta_lsn.to_string(),
                "lag_bytes": snapshot_lsn.0.saturating_sub(delta_lsn.0),
                "pipeline_running": slot.as_ref().is_some_and(|s| s.active_pid.is_some()),
            });
            if let Some(reason) = self
                .source_ahead(&slot, table, delta_lsn, snapshot_lsn)
                .await?
            {
                return Ok(Verdict::NotComparable(reason, notes));
            }
            return Ok(Verdict::Different {
                postgres,
                delta,
                chunking,
                notes,
            });
        }
        Ok(Verdict::NotComparable(
            format!(
                "the Delta table kept moving past the PostgreSQL snapshot ({ATTEMPTS} attempts)"
            ),
            serde_json::Value::Null,
        ))
    }

    /// Waits until the running pipeline's walsender has sent `lsn`, then one batch interval
    /// (plus a margin) for the batch holding it to reach Delta.
    async fn wait_for_running_pipeline(&self, pid: i32, lsn: Lsn) -> Result<(), QualityError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            match postgres::walsender_progress(&self.client, pid).await? {
                Some((Some(sent), _)) if sent >= lsn => break,
                None => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        tokio::time::sleep(self.resolved.batch_interval + Duration::from_millis(500)).await;
        Ok(())
    }

    /// Why a difference may be lag, or `None` when Delta has everything the snapshot has.
    async fn source_ahead(
        &self,
        slot: &Option<SlotState>,
        table: &ResolvedTable,
        delta_lsn: Lsn,
        snapshot_lsn: Lsn,
    ) -> Result<Option<String>, QualityError> {
        let Some(slot) = slot else { return Ok(None) };
        if slot.active_pid.is_some() {
            return Ok(None);
        }
        let oid = postgres::table_oid(&self.client, &table.name).await?;
        let (pending, hit_limit) = postgres::pending_transactions(
            &self.client,
            &self.resolved.slot,
            &self.resolved.publication,
            PEEK_LIMIT,
        )
        .await?;
        let for_table = pending
            .iter()
            .filter(|tx| tx.relations.contains(&oid))
            .filter(|tx| tx.commit_lsn > delta_lsn && tx.commit_lsn <= snapshot_lsn)
            .count();
        let lag = snapshot_lsn.0.saturating_sub(delta_lsn.0);
        if for_table > 0 {
            return Ok(Some(format!(
                "not comparable: source ahead by {lag} bytes ({for_table} transaction(s) on this table not yet replicated; run the pipeline)"
            )));
        }
        if hit_limit {
            return Ok(Some(format!(
                "not comparable: source ahead by {lag} bytes (more than {PEEK_LIMIT} pending changes)"
            )));
        }
        Ok(None)
    }

    async fn describe_checksum_failure(
        &self,
        table: &ResolvedTable,
        spec: &TableSpec,
        chunking: &Chunking,
        postgres_sums: &[ChunkSum],
        delta_sums: &[ChunkSum],
        notes: serde_json::Value,
    ) -> Result<CheckResult, QualityError> {
        let chunk_ids = differing_chunks(postgres_sums, delta_sums);
        let range = |i: usize| {
            let (from, to) = chunking.range(i);
            let show = |k: Option<&Vec<String>>| k.map(|k| describe_key(&spec.key, k));
            json!({
                "chunk": i,
                "from": show(from),
                "to_exclusive": show(to),
                "postgres": postgres_sums.get(i).copied().unwrap_or_default(),
                "delta": delta_sums.get(i).copied().unwrap_or_default(),
            })
        };
        let ranges: Vec<serde_json::Value> = chunk_ids.iter().map(|&i| range(i)).collect();
        let examined: Vec<usize> = chunk_ids.iter().copied().take(MAX_CHUNKS_TO_DIFF).collect();
        let pg_rows =
            postgres::chunk_rows(&self.client, spec, self.options.chunk_rows, &examined).await?;
        let side = self.open_delta(table).await?;
        let delta_rows = side.chunk_rows(spec, chunking, &examined).await?;
        let keys = differing_keys(chunking, &pg_rows, &delta_rows);
        let listed: Vec<serde_json::Value> = keys
            .iter()
            .take(self.options.max_reported_keys)
            .map(|(k, d)| json!({"key": describe_key(&spec.key, k), "difference": d}))
            .collect();
        let first: Vec<String> = keys
            .iter()
            .take(5)
            .map(|(k, d)| format!("{} ({})", describe_key(&spec.key, k), difference_name(*d)))
            .collect();
        Ok(CheckResult {
            check: Check::Checksum,
            table: Some(table.name.to_string()),
            status: Status::Fail,
            summary: format!(
                "{} of {} chunks differ; {} differing key(s): {}",
                chunk_ids.len(),
                chunking.chunk_count(),
                keys.len(),
                first.join(", ")
            ),
            details: json!({
                "differing_chunks": ranges,
                "examined_chunks": examined,
                "differing_keys": listed,
                "differing_key_count": keys.len(),
                "consistency": notes,
            }),
        })
    }

    /// CDC lag of the pipeline: bytes between the server's WAL position and the slot's
    /// confirmed position; seconds since the oldest unreplicated commit (idle slot, from a
    /// peek) or the walsender's `flush_lag` (running pipeline).
    async fn lag(&self) -> Result<CheckResult, QualityError> {
        let slot_name = &self.resolved.slot;
        let Some(slot) = postgres::slot_state(&self.client, slot_name).await? else {
            return Ok(CheckResult {
                check: Check::Lag,
                table: None,
                status: Status::Fail,
                summary: format!("replication slot {slot_name} does not exist"),
                details: serde_json::Value::Null,
            });
        };
        let current = current_wal_lsn(&self.client).await?;
        let confirmed = slot.confirmed_flush.unwrap_or_default();
        let lag_bytes = current.0.saturating_sub(confirmed.0);
        let (lag_seconds, source) = match slot.active_pid {
            Some(pid) => {
                let progress = postgres::walsender_progress(&self.client, pid).await?;
                (
                    progress.map(|(_, s)| s).unwrap_or(0.0),
                    "flush_lag of the running pipeline",
                )
            }
            None => {
                let (pending, _) = postgres::pending_transactions(
                    &self.client,
                    slot_name,
                    &self.resolved.publication,
                    PEEK_LIMIT,
                )
                .await?;
                let oldest = pending.iter().map(|tx| tx.commit_micros).min();
                let now = chrono::Utc::now().timestamp_micros();
                (
                    oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6),
                    "age of the oldest unreplicated transaction",
                )
            }
        };
        let too_many_bytes = lag_bytes > self.options.max_lag_bytes;
        let too_late = lag_seconds > self.options.max_lag_seconds;
        let ok = !too_many_bytes && !too_late;
        Ok(CheckResult {
            check: Check::Lag,
            table: None,
            status: if ok { Status::Pass } else { Status::Fail },
            summary: format!(
                "{lag_seconds:.1} s (max {}), {lag_bytes} bytes (max {})",
                self.options.max_lag_seconds, self.options.max_lag_bytes
            ),
            details: json!({
                "lag_seconds": lag_seconds,
                "lag_seconds_source": source,
                "lag_bytes": lag_bytes,
                "current_wal_lsn": current.to_string(),
                "confirmed_flush_lsn": confirmed.to_string(),
                "pipeline_running": slot.active_pid.is_some(),
                "max_lag_seconds": self.options.max_lag_seconds,
                "max_lag_bytes": self.options.max_lag_bytes,
            }),
        })
    }
}

fn difference_name(difference: KeyDifference) -> &'static str {
    match difference {
        KeyDifference::MissingInDelta => "missing in Delta",
        KeyDifference::ExtraInDelta => "only in Delta",
        KeyDifference::ValuesDiffer => "values differ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(rows: u64, hash_sum: i128) -> ChunkSum {
        ChunkSum { rows, hash_sum }
    }

    #[test]
    fn an_empty_table_matches_its_empty_delta_chunk() {
        // PostgreSQL cuts no chunk from an empty table; Delta always has one chunk.
        let postgres = Measure::Chunks(vec![]);
        let delta = Measure::Chunks(vec![ChunkSum::default()]);
        assert!(postgres.matches(&delta));
        assert!(delta.matches(&postgres));
        assert!(!postgres.matches(&Measure::Chunks(vec![sum(1, 7)])));
        assert!(!Measure::Chunks(vec![sum(2, 9)]).matches(&Measure::Chunks(vec![sum(2, 8)])));
        assert!(Measure::Count(0).matches(&Measure::Count(0)));
        assert!(!Measure::Count(0).matches(&Measure::Count(1)));
    }

    /// One way to read the server's WAL position: `source::postgres::current_wal_lsn`.
    #[test]
    fn quality_reads_the_wal_position_through_source_postgres() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/quality");
        let query = concat!("pg_current_wal_lsn", "()::text"); // not found in this file
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(query), "{} runs the query", path.display());
        }
    }
}
