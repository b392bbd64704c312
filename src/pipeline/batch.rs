//! Changes received but not yet written, collapsed per table, with where they came from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::event::{Lsn, Origin, TableName, TopicPartition};
use crate::sink::delta::TableChanges;
use crate::source::Progress;

/// One table's part of a batch.
pub struct TableBatch {
    pub changes: TableChanges,
    /// Kafka mode: per partition that fed the table, the offset of its next record.
    pub next_offsets: BTreeMap<TopicPartition, i64>,
    /// Kafka mode: per partition that fed the table, the offset of its first record.
    pub first_offsets: BTreeMap<TopicPartition, i64>,
    /// Kafka mode: the newest source LSN the Debezium events named.
    pub lsn: Option<Lsn>,
}

impl TableBatch {
    fn new(changes: TableChanges) -> TableBatch {
        TableBatch {
            changes,
            next_offsets: BTreeMap::new(),
            first_offsets: BTreeMap::new(),
            lsn: None,
        }
    }

    /// Notes that a change of this table came from `origin` (with `event_lsn`, the source
    /// LSN the event names).
    pub fn took(&mut self, origin: &Origin, event_lsn: Lsn) {
        if let Origin::Record(record) = origin {
            let partition = record.topic_partition();
            self.first_offsets
                .entry(partition.clone())
                .or_insert(record.offset);
            self.next_offsets.insert(partition, record.offset + 1);
            if event_lsn.0 > 0 {
                self.lsn = Some(self.lsn.map_or(event_lsn, |l| l.max(event_lsn)));
            }
        }
    }
}

/// Committed changes not yet written.
#[derive(Default)]
pub struct Batch {
    pub tables: BTreeMap<TableName, TableBatch>,
    /// Every position read, including changes skipped or rejected.
    pub progress: Progress,
    pub transactions: usize,
    pub events: usize,
    pub started: Option<Instant>,
    /// When the newest transaction of the batch committed at the source.
    newest_commit: Option<DateTime<Utc>>,
    last_xid: Option<u32>,
}

impl Batch {
    /// Notes an item read from `origin`; `xid` is its source transaction, when it is one.
    pub fn note(&mut self, origin: &Origin, xid: Option<Option<u32>>) {
        self.started.get_or_insert_with(Instant::now);
        self.progress.advance(origin);
        if let Some(xid) = xid {
            // Kafka mode hands over one event at a time: consecutive events of one source
            // transaction count once.
            if xid.is_none() || xid != self.last_xid {
                self.transactions += 1;
            }
            self.last_xid = xid;
        }
    }

    /// The table's part, started with `new_changes` when the batch has none yet.
    pub fn table(
        &mut self,
        table: &TableName,
        new_changes: impl FnOnce() -> TableChanges,
    ) -> &mut TableBatch {
        self.tables
            .entry(table.clone())
            .or_insert_with(|| TableBatch::new(new_changes()))
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_none()
    }

    /// Whether the batch is due to be written.
    pub fn is_full(&self, batch_size: usize) -> bool {
        self.events >= batch_size
    }

    /// Notes that a transaction of the batch committed at the source at `commit`.
    pub fn committed(&mut self, commit: DateTime<Utc>) {
        self.newest_commit = self.newest_commit.max(Some(commit));
    }

    /// Whether the newest change of the batch committed more than `lag` before `now`: the
    /// source is behind, catching up on a backlog.
    pub fn is_behind(&self, now: DateTime<Utc>, lag: Duration) -> bool {
        self.newest_commit.is_some_and(|commit| {
            now.signed_duration_since(commit)
                .to_std()
                .is_ok_and(|age| age > lag)
        })
    }

    /// The newest source LSN the batch holds, for metrics and the run summary.
    pub fn newest_lsn(&self) -> Option<Lsn> {
        self.progress
            .lsn
            .or_else(|| self.tables.values().filter_map(|t| t.lsn).max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceRecord;

    fn record(offset: i64) -> Origin {
        Origin::Record(SourceRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            key: None,
            value: None,
        })
    }

    #[test]
    fn events_of_one_source_transaction_count_once() {
        let mut batch = Batch::default();
        batch.note(&record(0), Some(Some(7)));
        batch.note(&record(1), Some(Some(7)));
        batch.note(&record(2), Some(Some(8)));
        batch.note(&record(3), None);
        batch.note(&record(4), Some(None));
        batch.note(&record(5), Some(None));
        assert_eq!(batch.transactions, 4);
        assert!(!batch.is_empty());
    }

    #[test]
    fn a_batch_is_behind_when_its_newest_commit_is_older_than_the_lag() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let second = Duration::from_secs(1);
        let mut batch = Batch::default();
        assert!(
            !batch.is_behind(now, second),
            "nothing read, nothing behind"
        );
        batch.committed(now - chrono::TimeDelta::seconds(5));
        assert!(batch.is_behind(now, second));
        batch.committed(now - chrono::TimeDelta::milliseconds(200));
        assert!(!batch.is_behind(now, second), "the newest commit counts");
        batch.committed(now - chrono::TimeDelta::seconds(9));
        assert!(
            !batch.is_behind(now, second),
            "an older commit does not move it back"
        );
        batch.committed(now + chrono::TimeDelta::seconds(3));
        assert!(
            !batch.is_behind(now, second),
            "a source clock ahead of ours is not behind"
        );
    }
}
