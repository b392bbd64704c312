//! Transactions too large to hold in memory, applied while their parts stream in.
//!
//! pgoutput (protocol v1) sends a transaction only after it committed, so its parts can be
//! worked on before its commit message arrives, as long as nothing is committed to Delta or
//! confirmed to PostgreSQL until then. A table that only receives inserts in the transaction
//! (keyed by its primary key, so the keys cannot exist in Delta yet) has its rows written to
//! Parquet files in chunks and committed in one Delta commit at the end; other tables collect
//! their changes as usual and are MERGEd at the end. Each table still gets one commit tagged
//! with the transaction's commit LSN, so a restart skips or replays it whole.
//!
//! When a table that already wrote chunks receives an update or delete, or anything else the
//! chunked path cannot take (a schema change, a value that does not convert), the stream is
//! restarted and that transaction is received again whole, on the in-memory path; the files
//! already written are never committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{Evolution, Pipeline, PipelineError, SourcePosition};
use crate::event::{ChangeEvent, Lsn, Operation, TableName, Transaction};
use crate::observe::TransactionCounts;
use crate::sink::delta::{SnapshotAppender, TableChanges};
use crate::source::{ChangeSource, Progress, TransactionPart};

/// A transaction whose parts are being applied.
pub(super) struct LargeTransaction {
    xid: u32,
    final_lsn: Lsn,
    commit_timestamp: DateTime<Utc>,
    tables: BTreeMap<TableName, LargeTable>,
    events: usize,
    started: Instant,
}

struct LargeTable {
    /// Changes not written yet.
    pending: TableChanges,
    /// Whether every change so far was an insert, so rows can be appended.
    insert_only: bool,
    /// Present once chunks were written.
    appender: Option<SnapshotAppender>,
}

impl LargeTransaction {
    pub(super) fn starting_with(part: &TransactionPart) -> LargeTransaction {
        tracing::info!(xid = part.xid, at = %part.final_lsn, "large transaction: applying it as it streams in");
        LargeTransaction {
            xid: part.xid,
            final_lsn: part.final_lsn,
            commit_timestamp: part.commit_timestamp,
            tables: BTreeMap::new(),
            events: 0,
            started: Instant::now(),
        }
    }
}

impl<S: ChangeSource> Pipeline<S>
where
    PipelineError: From<S::Error>,
{
    /// Adds a part's events; inserts-only tables write a chunk whenever one is full.
    pub(super) async fn add_large_part(
        &mut self,
        large: &mut LargeTransaction,
        events: Vec<ChangeEvent>,
    ) -> Result<(), PipelineError> {
        let counts = TransactionCounts::of_events(&events, large.commit_timestamp);
        let chunk_rows = self.resolved.large_transaction_events.max(1);
        for event in events {
            let table = event.table().clone();
            if !self.takes_large(&table, large.final_lsn) {
                continue;
            }
            self.check_large_schema(&event, large.xid)?;
            let entry = match large.tables.get_mut(&table) {
                Some(entry) => entry,
                None => {
                    let entry = self.new_large_table(&table);
                    large.tables.entry(table.clone()).or_insert(entry)
                }
            };
            if event.operation != Operation::Insert {
                if entry.appender.is_some() {
                    tracing::info!(%table, xid = large.xid, "large transaction also changes rows it did not insert; receiving it again whole");
                    return Err(PipelineError::ReceiveWhole { xid: large.xid });
                }
                entry.insert_only = false;
            }
            entry.pending.push(event)?;
            large.events += 1;
            if entry.insert_only && entry.pending.row_count() >= chunk_rows {
                self.write_chunk(&table, entry, large.xid).await?;
            }
        }
        self.observer
            .transaction_added(counts, |table| large.tables.contains_key(table));
        Ok(())
    }

    /// The commit arrived: the tail's events, then one Delta commit per table, then confirm.
    pub(super) async fn finish_large(
        &mut self,
        mut large: LargeTransaction,
        tail: Transaction,
    ) -> Result<(), PipelineError> {
        let lsn = tail.end_lsn;
        self.add_large_part(&mut large, tail.events).await?;
        for (table, mut entry) in std::mem::take(&mut large.tables) {
            let started = Instant::now();
            if entry.insert_only {
                self.write_chunk(&table, &mut entry, large.xid).await?;
                let appender = entry.appender.take().expect("write_chunk starts one");
                let state = self.tables.get_mut(&table).expect("taken tables are open");
                let rows = state.writer.commit_append(appender, lsn).await?;
                tracing::info!(%table, rows, %lsn, "large transaction's inserts appended in one commit");
            } else {
                let position = SourcePosition {
                    lsn: Some(lsn),
                    ..SourcePosition::default()
                };
                // Direct mode only (one writer): a lost race here is with table
                // maintenance, no reason to batch differently.
                self.committer
                    .commit(&mut self.tables, &table, &mut entry.pending, &position)
                    .await?;
            }
            self.observer.table_committed(&table, started.elapsed());
            self.summary.delta_commits += 1;
        }
        self.source.confirm(&Progress {
            lsn: Some(lsn),
            ..Progress::default()
        });
        self.observer.batch_flushed(large.events, lsn);
        self.summary.transactions += 1;
        self.summary.events += large.events;
        self.summary.last_lsn = Some(lsn);
        tracing::info!(%lsn, events = large.events, elapsed = ?large.started.elapsed(), "large transaction written");
        Ok(())
    }

    /// Whether `table`'s Delta table should take this transaction's changes.
    fn takes_large(&mut self, table: &TableName, final_lsn: Lsn) -> bool {
        let Some(state) = self.tables.accepting(table) else {
            return false;
        };
        // A table whose position is past the commit record already holds the transaction.
        state
            .writer
            .last_applied_lsn()
            .is_none_or(|applied| applied <= final_lsn)
    }

    /// Schema changes are followed on the in-memory path only.
    fn check_large_schema(&mut self, event: &ChangeEvent, xid: u32) -> Result<(), PipelineError> {
        let state = self
            .tables
            .get_mut(event.table())
            .expect("taken tables are open");
        if state
            .schema
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &event.schema))
        {
            return Ok(());
        }
        match super::plan_evolution(&state.writer, &event.schema)? {
            Evolution::Unchanged => {
                state.schema = Some(event.schema.clone());
                Ok(())
            }
            _ => Err(PipelineError::ReceiveWhole { xid }),
        }
    }

    fn new_large_table(&self, table: &TableName) -> LargeTable {
        let state = self.tables.get(table).expect("taken tables are open");
        LargeTable {
            pending: state.writer.new_changes(),
            insert_only: state.keyed_by_primary_key,
            appender: None,
        }
    }

    /// Writes the pending inserts to Parquet files (not committed yet).
    async fn write_chunk(
        &mut self,
        table: &TableName,
        entry: &mut LargeTable,
        xid: u32,
    ) -> Result<(), PipelineError> {
        let writer = &self
            .tables
            .get(table)
            .expect("taken tables are open")
            .writer;
        if entry.appender.is_none() {
            entry.appender = Some(writer.begin_append()?);
        }
        let appender = entry.appender.as_mut().expect("just set");
        if let Err(error) = appender.append_changes(&entry.pending).await {
            tracing::warn!(%table, %error, "a chunk of the large transaction cannot be appended; receiving it again whole");
            return Err(PipelineError::ReceiveWhole { xid });
        }
        entry.pending = writer.new_changes();
        Ok(())
    }
}
