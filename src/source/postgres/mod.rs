//! PostgreSQL source: connections, catalog checks, publication and slot, the replication stream.

mod catalog;
mod connection;
pub mod pgoutput;
mod replication;
mod slot_source;
pub mod snapshot;

pub use catalog::{
    check_readiness, current_wal_lsn, drop_slot, drop_slot_and_publication, emit_marker,
    ensure_publication, ensure_slot, in_recovery, introspect_table, publication_change,
    publication_on_standby_problem, published_tables, server_version_num, slot_position,
    slot_state, warn_when_standby_drops_catalog_rows, warn_when_wal_retention_is_unbounded,
    ColumnInfo, Readiness, ReadinessProblem, SlotState, SourceTable, TableRequest, MESSAGES_SINCE,
};
pub use connection::{backoff_delay, parse_url, ConnectionSettings};
pub use replication::{ChangeStream, PartPolicy, StreamItem, TransactionPart};
pub use slot_source::{SlotSettings, SlotSource};

use crate::event::{Lsn, TableName};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to PostgreSQL at {target} after {attempts} attempt(s): {message}")]
    Connect {
        target: String,
        attempts: usize,
        message: String,
        /// No retry will fix it (decided from the SQLSTATE or the TLS error).
        permanent: bool,
    },
    #[error("PostgreSQL query failed ({context}): {source}")]
    Query {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL is not ready for change data capture:\n{}", list(.0))]
    NotReady(Vec<ReadinessProblem>),
    #[error("table {0} does not exist in the source database")]
    MissingTable(TableName),
    #[error("replication stream from {target}: {message}")]
    Replication { target: String, message: String },
    #[error("replication stream: {0}")]
    Decode(#[from] pgoutput::DecodeError),
    #[error("invalid connection setting: {0}")]
    Settings(String),
    #[error(
        "replication slot {slot} was dropped: changes made since pgdelta last confirmed a position are gone from the slot; \
         remove the pipeline's Delta tables and start again to copy them afresh"
    )]
    SlotMissing { slot: String },
    #[error(
        "replication slot {slot} was invalidated by PostgreSQL ({reason}); the changes after its \
         confirmed position {confirmed} are no longer in the WAL, so replicating on would lose them. \
         To recover: `pgdelta pipeline start <pipeline> --resnapshot` (drops the slot, creates a \
         new one and copies every table again, replacing its Delta rows in one commit), or \
         `pgdelta pipeline drop <pipeline>`, move the Delta tables away and start again; raise \
         max_slot_wal_keep_size so that a stopped pipeline has more time"
    )]
    SlotInvalidated {
        slot: String,
        reason: String,
        confirmed: Lsn,
    },
    #[error("PostgreSQL answered {what} with '{text}', which is not an LSN: {source}")]
    BadLsn {
        what: &'static str,
        text: String,
        #[source]
        source: crate::event::ParseLsnError,
    },
    #[error(
        "replication slot {slot} uses plugin {plugin}, not pgoutput: choose another slot name"
    )]
    WrongPlugin { slot: String, plugin: String },
    #[error("{}", catalog::publication_on_standby_problem(.publication, .sql))]
    PublicationOnStandby { publication: String, sql: String },
    #[error("copy of {table} stopped by a Delta write error")]
    CopyStopped { table: TableName },
}

impl SourceError {
    /// Whether retrying later may help (the server went away), as opposed to a problem
    /// that needs a person to fix something.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect { permanent, .. } => !permanent,
            SourceError::Replication { .. } => true,
            SourceError::Query { source, .. } => {
                source.is_closed() || source.as_db_error().is_none()
            }
            _ => false,
        }
    }
}

fn list(problems: &[ReadinessProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
