//! The Delta Lake sink: one writer per table, MERGE-based, CDF on, exactly once.

pub mod changes;
mod commit_hint;
pub mod convert;
pub mod deletion_vectors;
pub mod evolution;
pub mod maintenance;
mod object_cache;
pub mod position;
pub mod reader;
pub mod storage;
pub mod txn;
pub mod types;
mod writer;

pub use changes::{ChangeError, RowChange, TableChanges};
pub use writer::{
    lost_a_race, DeltaTableWriter, KafkaOffset, SinkError, SnapshotAppender, TableLayout,
    LSN_METADATA, MEMBER_METADATA, OFFSETS_METADATA,
};
