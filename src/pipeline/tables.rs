//! The state of each replicated table, in one place: its Delta writer, what it last saw of
//! the source, whether it stopped, and where it resumes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::config::Maintenance;
use crate::event::{Origin, TableName, TableSchema, TopicPartition};
use crate::sink::delta::{DeltaTableWriter, SinkError};
use crate::source::ChangeSource;

use super::maintain::MaintenanceState;
use super::PipelineError;

/// One replicated table.
pub struct TableState {
    pub writer: DeltaTableWriter,
    /// The key is the table's primary key, which PostgreSQL keeps unique: a batch of
    /// inserts from the WAL only holds keys Delta cannot have yet, so it is appended.
    pub keyed_by_primary_key: bool,
    /// The last source schema seen, to notice schema changes once.
    pub schema: Option<Arc<TableSchema>>,
    /// Why the table's stream stopped (e.g. an incompatible type change).
    pub stopped: Option<String>,
    /// Compaction and VACUUM settings.
    pub maintenance: Maintenance,
    /// The maintenance job running on the table, and when it was last looked at.
    pub maintenance_state: MaintenanceState,
    /// Kafka mode: the partitions whose resume point was checked against the broker since
    /// the table was last read again.
    resumed: HashSet<TopicPartition>,
}

impl TableState {
    pub fn new(
        writer: DeltaTableWriter,
        keyed_by_primary_key: bool,
        maintenance: Maintenance,
    ) -> TableState {
        TableState {
            writer,
            keyed_by_primary_key,
            schema: None,
            stopped: None,
            maintenance,
            maintenance_state: MaintenanceState::default(),
            resumed: HashSet::new(),
        }
    }

    /// Whether the Delta table already holds the change that came from `origin`.
    pub async fn holds<S: ChangeSource>(
        &mut self,
        origin: &Origin,
        source: &S,
    ) -> Result<bool, PipelineError>
    where
        PipelineError: From<S::Error>,
    {
        match origin {
            Origin::Wal(lsn) => Ok(self
                .writer
                .last_applied_lsn()
                .is_some_and(|applied| *lsn <= applied)),
            Origin::Record(record) => {
                let partition = record.topic_partition();
                let next = self.writer.kafka_next_offset(&partition).await?;
                if let Some(next) = next.filter(|_| !self.resumed.contains(&partition)) {
                    self.resumed.insert(partition.clone());
                    let table = self.writer.table_name();
                    tracing::info!(%table, %partition, next_offset = next, "resuming after what Delta holds");
                    source.check_resume(table, &partition, next)?;
                }
                Ok(next.is_some_and(|next| record.offset < next))
            }
        }
    }

    /// Whether the loaded table version already holds a commit of `position`.
    pub(super) async fn holds_commit(
        &mut self,
        position: &super::SourcePosition,
    ) -> Result<bool, SinkError> {
        if let Some(lsn) = position.lsn.filter(|_| position.offsets.is_empty()) {
            return Ok(self.writer.last_applied_lsn().is_some_and(|a| a >= lsn));
        }
        for offset in &position.offsets {
            let held = self.writer.kafka_next_offset(&offset.partition).await?;
            if held.is_none_or(|next| next < offset.next_offset) {
                return Ok(false);
            }
        }
        Ok(!position.offsets.is_empty())
    }

    /// Kafka mode: whether the loaded table version holds records of `position` that this
    /// process has not committed, i.e. another member of the group applied them (a partition
    /// moved to it while the batch was written). Such a batch cannot be applied on top; it
    /// must be read again after what the table holds.
    pub(super) async fn overtaken(
        &mut self,
        position: &super::SourcePosition,
    ) -> Result<Option<PipelineError>, SinkError> {
        for (partition, first) in &position.first_offsets {
            let held = self.writer.kafka_next_offset(partition).await?;
            if let Some(held) = held.filter(|held| held > first) {
                return Ok(Some(PipelineError::Overtaken {
                    table: self.writer.table_name().clone(),
                    partition: partition.clone(),
                    held,
                    first: *first,
                }));
            }
        }
        Ok(None)
    }

    /// Reads the Delta table's latest version (another process may have committed since).
    pub async fn reload(&mut self) -> Result<(), SinkError> {
        self.resumed.clear();
        self.writer.reload().await
    }
}

/// Every replicated table, by source name.
#[derive(Default)]
pub struct Tables {
    tables: BTreeMap<TableName, TableState>,
    /// Tables the source carries that the pipeline does not replicate (warned once).
    ignored: HashSet<TableName>,
}

impl Tables {
    pub fn insert(&mut self, state: TableState) {
        self.tables.insert(state.writer.table_name().clone(), state);
    }

    pub fn names(&self) -> impl Iterator<Item = &TableName> {
        self.tables.keys()
    }

    pub fn get(&self, table: &TableName) -> Option<&TableState> {
        self.tables.get(table)
    }

    pub fn get_mut(&mut self, table: &TableName) -> Option<&mut TableState> {
        self.tables.get_mut(table)
    }

    /// The table that takes `table`'s changes: `None` when it stopped, or when the pipeline
    /// does not replicate it (said once).
    pub fn accepting(&mut self, table: &TableName) -> Option<&mut TableState> {
        match self.tables.get_mut(table) {
            Some(state) if state.stopped.is_some() => None,
            Some(state) => Some(state),
            None => {
                if self.ignored.insert(table.clone()) {
                    tracing::warn!(%table, "the source carries a table this pipeline does not replicate; its changes are ignored");
                }
                None
            }
        }
    }

    pub async fn reload(&mut self) -> Result<(), SinkError> {
        for state in self.tables.values_mut() {
            state.reload().await?;
        }
        Ok(())
    }

    /// `  - table: reason` for every stopped table, sorted.
    pub fn stopped(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter_map(|(table, state)| {
                state
                    .stopped
                    .as_ref()
                    .map(|why| format!("  - {table}: {why}"))
            })
            .collect()
    }

    /// Takes the writers of `tables` out, e.g. for the initial copy.
    pub fn take(&mut self, table: &TableName) -> Option<TableState> {
        self.tables.remove(table)
    }
}
