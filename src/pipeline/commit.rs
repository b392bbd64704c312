//! Writing a batch: one Delta commit per table, tried again while the store fails, with
//! unconvertible rows sent to the dead-letter file under `on_error = "dead_letter"`.
//!
//! It needs the tables but not the source, so the pipeline can run it on a task of its own
//! while the source reads ahead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_retry::strategy::jitter;

use crate::config::{ErrorPolicy, ResolvedPipeline};
use crate::event::TableName;
use crate::observe::Observer;
use crate::sink::delta::{KafkaOffset, SinkError, TableChanges};

use super::batch::Batch;
use super::dead_letter::{self, DeadLetter, DeadLetterFile};
use super::{PipelineError, SourcePosition, Tables};

/// Tries of one Delta commit while the store fails (backoff from 0.25 s doubling up to 30 s:
/// about a minute and a half in all).
const SINK_ATTEMPTS: usize = 10;
/// Tries of one Delta commit that keeps losing races with other writers: each lost race is
/// another writer's progress, so this only ends a run whose tables something rewrites
/// without pause.
const CONFLICT_ATTEMPTS: usize = 100;
/// The longest wait before trying again after a lost race (a random part of it, so that
/// racing members do not meet again).
const CONFLICT_DELAY: Duration = Duration::from_millis(200);

/// What writing a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    pub commits: usize,
    /// Commits that lost a race with another writer's and were made again.
    pub lost_races: usize,
}

/// What committing needs to know of the pipeline.
#[derive(Clone)]
pub(super) struct Committer {
    pipeline: String,
    on_error: ErrorPolicy,
    dead_letter_path: String,
    observer: Arc<Observer>,
    /// Tries of one Delta commit (or table reload) while the store fails.
    pub(super) sink_attempts: usize,
}

impl Committer {
    pub(super) fn new(resolved: &ResolvedPipeline, observer: Arc<Observer>) -> Committer {
        Committer {
            pipeline: resolved.name.clone(),
            on_error: resolved.on_error,
            dead_letter_path: resolved.dead_letter_path.clone(),
            observer,
            sink_attempts: SINK_ATTEMPTS,
        }
    }

    /// Writes every table of the batch, one Delta commit each.
    pub(super) async fn write_batch(
        &self,
        tables: &mut Tables,
        batch: &mut Batch,
    ) -> Result<Written, PipelineError> {
        let mut written = Written::default();
        let lsn = batch.progress.lsn;
        for (table, part) in batch.tables.iter_mut() {
            if part.changes.is_empty() {
                continue;
            }
            let started = Instant::now();
            let position = SourcePosition {
                lsn: lsn.or(part.lsn),
                offsets: part
                    .next_offsets
                    .iter()
                    .map(|(partition, next)| KafkaOffset {
                        partition: partition.clone(),
                        next_offset: *next,
                    })
                    .collect(),
                first_offsets: part.first_offsets.clone(),
            };
            written.lost_races += self
                .commit(tables, table, &mut part.changes, &position)
                .await?;
            self.observer.table_committed(table, started.elapsed());
            written.commits += 1;
        }
        Ok(written)
    }

    /// [`Tables::reload`], tried again with backoff while the store is unreachable.
    pub(super) async fn reload(&self, tables: &mut Tables) -> Result<(), PipelineError> {
        let mut attempt = 0;
        loop {
            let error = match tables.reload().await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_transient() && attempt + 1 < self.sink_attempts => error,
                Err(error) => return Err(error.into()),
            };
            attempt += 1;
            let delay = crate::source::postgres::backoff_delay(attempt);
            self.observer.record_errors("sink", 1);
            self.observer.sink_probed(Err(error.to_string()));
            tracing::warn!(%error, attempt, retry_in = ?delay, "cannot read the Delta tables; trying again");
            tokio::time::sleep(delay).await;
        }
    }

    /// [`Committer::apply`], tried again with backoff while the store is unreachable or
    /// failing, and at once on the new version when another writer committed first (another
    /// member of the consumer group, a compaction). Before each retry the table is read
    /// again: a commit whose answer was lost may have landed. In Kafka mode, before each try,
    /// the version it is made on must not hold records of this batch: the records were
    /// chosen against an earlier version, and another member may have applied some since
    /// (then it is [`PipelineError::Overtaken`]). Delta's conflict check covers the rest: a
    /// commit of the same partitions' offsets landing first makes this one fail.
    /// Returns how many races with other writers the commit lost first.
    pub(super) async fn commit(
        &self,
        tables: &mut Tables,
        table: &TableName,
        changes: &mut TableChanges,
        position: &SourcePosition,
    ) -> Result<usize, PipelineError> {
        let (mut failures, mut conflicts) = (0, 0);
        loop {
            let state = tables.get_mut(table).expect("batches hold open tables");
            if let Some(overtaken) = state.overtaken(position).await? {
                return Err(overtaken);
            }
            let error = match self.apply(tables, table, changes, position).await {
                Ok(()) => return Ok(conflicts),
                Err(PipelineError::Sink(error)) if error.is_transient() || error.is_conflict() => {
                    error
                }
                Err(error) => return Err(error),
            };
            if error.is_conflict() {
                conflicts += 1;
                if conflicts >= CONFLICT_ATTEMPTS {
                    return Err(error.into());
                }
                tracing::info!(%table, %error, conflicts, "the Delta commit lost a race with another writer's; trying again on the new version");
                tokio::time::sleep(jitter(CONFLICT_DELAY)).await;
            } else {
                failures += 1;
                if failures >= self.sink_attempts {
                    // Counted once, as the error that stops the run (see `Pipeline::run`).
                    return Err(error.into());
                }
                let delay = crate::source::postgres::backoff_delay(failures);
                self.observer.record_errors("sink", 1);
                self.observer.sink_probed(Err(error.to_string()));
                tracing::warn!(%table, %error, attempt = failures, retry_in = ?delay, "Delta commit failed; trying again");
                tokio::time::sleep(delay).await;
            }
            let state = tables.get_mut(table).expect("batches hold open tables");
            match state.reload().await {
                Ok(()) if state.holds_commit(position).await? => {
                    tracing::info!(%table, "the table already holds this commit (its answer was lost, or another member applied the same records)");
                    return Ok(conflicts);
                }
                Ok(()) => {}
                Err(error) => tracing::warn!(%table, %error, "cannot read the Delta table yet"),
            }
        }
    }

    /// One Delta commit for one table; under `on_error = "dead_letter"`, rows whose values
    /// cannot be converted are written to the dead-letter file and the rest is applied.
    async fn apply(
        &self,
        tables: &mut Tables,
        table: &TableName,
        changes: &mut TableChanges,
        position: &SourcePosition,
    ) -> Result<(), PipelineError> {
        let state = tables.get_mut(table).expect("batches hold open tables");
        let writer = &mut state.writer;
        // Kafka mode always MERGEs: Debezium may send a row again (a new snapshot).
        let from_wal = position.offsets.is_empty();
        if let (true, true, Some(lsn)) = (
            state.keyed_by_primary_key && from_wal,
            changes.only_inserts,
            position.lsn,
        ) {
            match writer.append_inserts(changes, lsn).await {
                Ok(rows) => {
                    tracing::debug!(%table, %lsn, rows, version = ?writer.version(), "appended to Delta");
                    return Ok(());
                }
                // The MERGE path below sorts out (or dead-letters) what does not convert.
                Err(SinkError::Convert { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let error = match writer
            .apply_from(changes, position.lsn, &position.offsets)
            .await
        {
            Ok(()) => {
                tracing::debug!(%table, lsn = ?position.lsn, events = changes.events, version = ?writer.version(), "committed to Delta");
                return Ok(());
            }
            Err(error @ SinkError::Convert { .. }) if self.on_error == ErrorPolicy::DeadLetter => {
                error
            }
            Err(error) => return Err(error.into()),
        };
        let rejected = writer.unconvertible_rows(changes);
        if rejected.is_empty() {
            return Err(error.into());
        }
        let letters: Vec<DeadLetter> = rejected
            .iter()
            .map(|(key, reason)| DeadLetter {
                pipeline: &self.pipeline,
                table: table.to_string(),
                lsn: position.lsn,
                record: None,
                error: reason.clone(),
                operation: "upsert",
                payload: dead_letter::payload_of(changes, key),
                recorded_at: chrono::Utc::now(),
            })
            .collect();
        let file = DeadLetterFile::new(&self.dead_letter_path);
        file.append(&letters)?;
        tracing::error!(%table, lsn = ?position.lsn, rows = letters.len(), file = %file.path().display(), "changes that cannot be applied went to the dead-letter file");
        self.observer
            .record_errors("dead_letter", rejected.len() as u64);
        for (key, _) in &rejected {
            changes.remove(key);
        }
        writer
            .apply_from(changes, position.lsn, &position.offsets)
            .await?;
        Ok(())
    }
}
