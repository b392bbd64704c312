//! The logical replication stream, assembled into committed transactions.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use pgwire_replication::{Lsn as WireLsn, ReplicationClient, ReplicationEvent};

use super::pgoutput::{Decoded, PgOutputDecoder};
use super::{ConnectionSettings, SourceError};
use crate::event::{ChangeEvent, EventMetadata, Lsn, Operation, TableName, Transaction};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// What the stream yields.
#[derive(Debug)]
pub enum StreamItem {
    Transaction(Transaction),
    /// The first events of a large committed transaction whose commit has not arrived yet;
    /// its remaining events come in more parts and, at the commit, a [`StreamItem::Transaction`].
    TransactionPart(TransactionPart),
    /// A logical message (non-transactional) with this prefix and content was reached.
    Marker {
        prefix: String,
        content: String,
        lsn: Lsn,
    },
    /// The server has sent everything up to `wal_end` and no transaction is open: what came
    /// before was delivered, so once it is durable this position may be confirmed.
    Idle {
        wal_end: Lsn,
    },
}

/// Some events of a transaction in source order (see [`StreamItem::TransactionPart`]).
#[derive(Debug)]
pub struct TransactionPart {
    pub xid: u32,
    /// Position of the transaction's commit record: a table whose applied position is past
    /// it already holds the transaction.
    pub final_lsn: Lsn,
    pub commit_timestamp: DateTime<Utc>,
    pub events: Vec<ChangeEvent>,
}

struct OpenTransaction {
    xid: u32,
    final_lsn: Lsn,
    commit_timestamp: DateTime<Utc>,
    events: Vec<ChangeEvent>,
}

/// When transactions are handed over in parts.
#[derive(Debug, Clone, Default)]
pub struct PartPolicy {
    /// Hand over a transaction's events in parts of this many (0: never).
    pub events_per_part: usize,
    /// Transactions always handed over whole, by xid.
    pub whole: HashSet<u32>,
}

/// A running replication session on one slot.
pub struct ChangeStream {
    client: ReplicationClient,
    decoder: PgOutputDecoder,
    database: String,
    target: String,
    open: Option<OpenTransaction>,
    parts: PartPolicy,
}

fn pg_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros + PG_EPOCH_OFFSET_MICROS).unwrap_or_default()
}

impl ChangeStream {
    /// Starts streaming `slot` from `start` (the slot's confirmed position).
    pub async fn start(
        settings: &ConnectionSettings,
        slot: &str,
        publication: &str,
        start: Lsn,
        key_overrides: HashMap<TableName, Vec<String>>,
        parts: PartPolicy,
        messages: bool,
    ) -> Result<Self, SourceError> {
        let target = settings.describe();
        // `publication_names` is a list of SQL identifiers: quote so case and spaces survive.
        let config = settings
            .replication_config(slot, &crate::event::quote_ident(publication))
            .with_start_lsn(WireLsn::from_u64(start.0))
            .with_messages(messages);
        let replication_error = |e: pgwire_replication::PgWireError| SourceError::Replication {
            target: target.clone(),
            message: e.to_string(),
        };
        let mut client = ReplicationClient::connect(config)
            .await
            .map_err(replication_error)?;
        client.wait_started().await.map_err(replication_error)?;
        tracing::info!(slot, publication, start = %start, source = %target, "replication started");
        Ok(ChangeStream {
            client,
            decoder: PgOutputDecoder::new(key_overrides),
            database: settings.database(),
            target,
            open: None,
            parts,
        })
    }

    /// Tells the server everything up to `lsn` is durable, so it may recycle that WAL.
    pub fn confirm(&self, lsn: Lsn) {
        self.client.update_applied_lsn(WireLsn::from_u64(lsn.0));
    }

    /// The next committed transaction or marker. Cancel-safe: partial transactions are kept.
    pub async fn next(&mut self) -> Result<StreamItem, SourceError> {
        loop {
            let event = self
                .client
                .recv()
                .await
                .map_err(|e| SourceError::Replication {
                    target: self.target.clone(),
                    message: e.to_string(),
                })?;
            let Some(event) = event else {
                return Err(SourceError::Replication {
                    target: self.target.clone(),
                    message: "the server ended the replication stream".into(),
                });
            };
            if let Some(item) = self.handle(event)? {
                return Ok(item);
            }
        }
    }

    fn handle(&mut self, event: ReplicationEvent) -> Result<Option<StreamItem>, SourceError> {
        match event {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                self.open = Some(OpenTransaction {
                    xid,
                    final_lsn: Lsn(final_lsn.as_u64()),
                    commit_timestamp: pg_time(commit_time_micros),
                    events: Vec::new(),
                });
            }
            ReplicationEvent::XLogData { data, .. } => {
                let decoded = self.decoder.decode(&data)?;
                self.add_change(decoded);
                return Ok(self.take_part().map(StreamItem::TransactionPart));
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                if let Some(open) = self.open.take() {
                    return Ok(Some(StreamItem::Transaction(
                        self.finish(open, Lsn(end_lsn.as_u64())),
                    )));
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } if self.open.is_none() => {
                return Ok(Some(StreamItem::Idle {
                    wal_end: Lsn(wal_end.as_u64()),
                }));
            }
            ReplicationEvent::Message {
                transactional: false,
                lsn,
                prefix,
                content,
            } => {
                return Ok(Some(StreamItem::Marker {
                    prefix,
                    content: String::from_utf8_lossy(&content).into_owned(),
                    lsn: Lsn(lsn.as_u64()),
                }));
            }
            _ => {}
        }
        Ok(None)
    }

    fn add_change(&mut self, decoded: Decoded) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let mut push = |operation, schema, data, before, before_is_whole_row| {
            open.events.push(ChangeEvent {
                operation,
                schema,
                data,
                before,
                before_is_whole_row,
                commit_timestamp: open.commit_timestamp,
                metadata: EventMetadata {
                    database: String::new(),
                    lsn: Lsn::default(),
                    tx_id: Some(open.xid),
                    snapshot: false,
                },
            });
        };
        match decoded {
            Decoded::Insert { schema, new } => {
                push(Operation::Insert, schema, Some(new), None, false)
            }
            Decoded::Update {
                schema,
                old,
                old_is_whole_row,
                new,
            } => push(Operation::Update, schema, Some(new), old, old_is_whole_row),
            Decoded::Delete {
                schema,
                old,
                old_is_whole_row,
            } => push(Operation::Delete, schema, None, Some(old), old_is_whole_row),
            Decoded::Truncate { schemas } => {
                for schema in schemas {
                    push(Operation::Truncate, schema, None, None, false);
                }
            }
            Decoded::Relation(_) | Decoded::Ignored => {}
        }
    }

    /// The open transaction's events so far, once they fill a part.
    fn take_part(&mut self) -> Option<TransactionPart> {
        let open = self.open.as_mut()?;
        let due = self.parts.events_per_part > 0
            && open.events.len() >= self.parts.events_per_part
            && !self.parts.whole.contains(&open.xid);
        if !due {
            return None;
        }
        let mut events = std::mem::take(&mut open.events);
        for event in &mut events {
            event.metadata.database.clone_from(&self.database);
        }
        Some(TransactionPart {
            xid: open.xid,
            final_lsn: open.final_lsn,
            commit_timestamp: open.commit_timestamp,
            events,
        })
    }

    /// Stamps every event with the commit position, now that it is known.
    fn finish(&self, open: OpenTransaction, end_lsn: Lsn) -> Transaction {
        let mut events = open.events;
        for event in &mut events {
            event.metadata.lsn = end_lsn;
            event.metadata.database.clone_from(&self.database);
        }
        Transaction {
            xid: Some(open.xid),
            end_lsn,
            commit_timestamp: open.commit_timestamp,
            events,
        }
    }

    pub async fn shutdown(mut self) {
        if let Err(error) = self.client.shutdown().await {
            tracing::debug!(%error, "replication shutdown");
        }
    }
}
