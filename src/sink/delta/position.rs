//! A table's source position, read back: opens an existing Delta table and reads the `txn`
//! version of one application id (see [`super::txn`]). Used wherever a Delta table is looked
//! at from outside the writer: `status`, `validate`.

use deltalake::kernel::CommitInfo;
use deltalake::{DeltaTable, DeltaTableError};

use crate::config::StorageOptions;
use crate::event::Lsn;

/// An existing Delta table, opened at its latest version, and where its changes came from.
pub struct TablePosition {
    pub table: DeltaTable,
    /// The `txn` version recorded under the application id: for a table's id the commit LSN
    /// of the last source transaction it holds, for a Kafka partition's id the next offset.
    /// `None` when the table has none.
    pub applied: Option<i64>,
}

/// How many of a table's newest commits `status` and `validate` read for members, Kafka
/// offsets and LSNs.
pub const RECENT_COMMITS: usize = 50;

impl TablePosition {
    /// [`TablePosition::applied`] read as a commit LSN.
    pub fn last_lsn(&self) -> Option<Lsn> {
        self.applied.map(|version| Lsn(version as u64))
    }

    /// The commit LSN of the newest source transaction the table holds: the `txn` version of
    /// its application id or, where higher, the newest LSN its recent commits record (Kafka
    /// mode records it only there).
    pub fn newest_lsn(&self, recent: &[CommitInfo]) -> Option<Lsn> {
        self.last_lsn().max(recorded_lsn(recent))
    }
}

/// `table`'s newest commits, newest first (at most [`RECENT_COMMITS`]).
pub async fn recent_commits(table: &DeltaTable) -> Result<Vec<CommitInfo>, DeltaTableError> {
    use futures::TryStreamExt;
    table.history(Some(RECENT_COMMITS)).try_collect().await
}

/// The highest source LSN the commits record in their metadata.
fn recorded_lsn(commits: &[CommitInfo]) -> Option<Lsn> {
    commits
        .iter()
        .filter_map(|commit| commit.info.get(super::LSN_METADATA)?.as_str()?.parse().ok())
        .max()
}

/// Opens the table at `location` and reads the version of `app_id`; `None` when there is no
/// Delta table there yet (a local path that does not exist, or a location without a log).
pub async fn open_with_position(
    location: &str,
    storage: &StorageOptions,
    app_id: &str,
) -> Result<Option<TablePosition>, DeltaTableError> {
    if !location.contains("://") && !std::path::Path::new(location).exists() {
        return Ok(None);
    }
    let table = match super::storage::open(location, storage).await {
        Ok(table) => table,
        Err(DeltaTableError::NotATable(_)) => return Ok(None),
        Err(error) => return Err(error),
    };
    let applied = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await?;
    Ok(Some(TablePosition { table, applied }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_table_yet_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageOptions::default();
        let missing = dir.path().join("missing");
        let opened = open_with_position(missing.to_str().unwrap(), &storage, "id").await;
        assert!(opened.unwrap().is_none(), "a path that does not exist");
        let opened = open_with_position(dir.path().to_str().unwrap(), &storage, "id").await;
        assert!(opened.unwrap().is_none(), "a directory without a Delta log");
    }
}
