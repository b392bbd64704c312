//! Where changes come from: a PostgreSQL replication slot ([`postgres`]) or Debezium events
//! in Kafka topics (`kafka`, in builds with the cargo feature `kafka`). Both hand the one
//! event model to the pipeline through [`ChangeSource`]; batching, the Delta commits and
//! confirming happen once, in `pipeline`.

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod postgres;

use std::collections::BTreeMap;

use crate::event::{Lsn, Origin, TableName, TopicPartition, Transaction};
pub use postgres::TransactionPart;

/// What a source hands the pipeline.
#[derive(Debug)]
pub enum SourceItem {
    /// Committed changes (a PostgreSQL transaction, or one Debezium event) and their origin.
    Changes {
        transaction: Transaction,
        origin: Origin,
    },
    /// The first events of a large committed transaction whose commit has not arrived yet;
    /// the rest come in more parts and, at the commit, as [`SourceItem::Changes`].
    Part(TransactionPart),
    /// A record that carries no change (a tombstone, a heartbeat): only its position counts.
    Skipped(Origin),
    /// A record that cannot become a change.
    Malformed {
        origin: Origin,
        table: Option<TableName>,
        reason: String,
    },
    /// Delivery starts again after the last confirmed position (a (re)connect, a
    /// rebalance): what was delivered but not written must be dropped, and each table's
    /// position read again.
    Rewound,
    /// The source is reachable again.
    Up,
    /// The source went away (it is retried): what was delivered is still good.
    Down(String),
    /// Everything the source held when the run started was delivered
    /// (`--exit-when-caught-up`).
    CaughtUp,
}

/// Source positions whose changes are all in Delta.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// PostgreSQL: the end of the newest transaction.
    pub lsn: Option<Lsn>,
    /// Kafka: per partition, the offset of the next record.
    pub next_offsets: BTreeMap<TopicPartition, i64>,
}

impl Progress {
    /// Takes in the position of a delivered item.
    pub fn advance(&mut self, origin: &Origin) {
        match origin {
            Origin::Wal(lsn) => self.lsn = Some(self.lsn.map_or(*lsn, |l| l.max(*lsn))),
            Origin::Record(record) => {
                let next = self
                    .next_offsets
                    .entry(record.topic_partition())
                    .or_insert(record.offset + 1);
                *next = (*next).max(record.offset + 1);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lsn.is_none() && self.next_offsets.is_empty()
    }
}

/// A stream of committed changes that is told which of them are durable.
#[async_trait::async_trait]
pub trait ChangeSource: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The next item. Cancel-safe: nothing delivered is lost when the call is dropped.
    async fn next(&mut self) -> Result<SourceItem, Self::Error>;

    /// Everything up to `progress` is committed to Delta: the source may forget it.
    fn confirm(&mut self, progress: &Progress);

    /// Deliver transaction `xid` whole instead of in parts: the source starts again after
    /// the last confirmed position (and says so with [`SourceItem::Rewound`]).
    async fn receive_whole(&mut self, _xid: u32) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Deliver again everything after the last confirmed position (what was delivered since
    /// was dropped unwritten).
    async fn rewind(&mut self) -> Result<(), Self::Error>;

    /// A table resumes `partition` at `next_offset` (from its Delta commits): refuse when
    /// the partition no longer holds that offset, since skipping would then lose records.
    fn check_resume(
        &self,
        _table: &TableName,
        _partition: &TopicPartition,
        _next_offset: i64,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Ends the session once the last confirmed position has reached the source.
    async fn close(self)
    where
        Self: Sized;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceRecord;

    #[test]
    fn progress_keeps_the_newest_position_of_each_kind() {
        let mut progress = Progress::default();
        assert!(progress.is_empty());
        progress.advance(&Origin::Wal(Lsn(20)));
        progress.advance(&Origin::Wal(Lsn(10)));
        let record = |offset| {
            Origin::Record(SourceRecord {
                topic: "t".into(),
                partition: 1,
                offset,
                key: None,
                value: None,
            })
        };
        progress.advance(&record(7));
        progress.advance(&record(3));
        assert_eq!(progress.lsn, Some(Lsn(20)));
        let partition = TopicPartition {
            topic: "t".into(),
            partition: 1,
        };
        assert_eq!(progress.next_offsets[&partition], 8);
    }
}
