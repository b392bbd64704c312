//! A log store that can be told which version a commit expects to follow, so that delta-rs
//! writes the commit file straight away instead of first listing the log for newer
//! versions (a round trip on an object store, on every batch).
//!
//! Safe only where a commit is a put-if-absent of `<version>.json`: log versions have no
//! gaps, so when the put of `expected + 1` succeeds nothing newer than `expected` existed,
//! and when it fails delta-rs lists the log and checks for conflicts as it always does.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use delta_kernel::Engine;
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::Version;
use deltalake::logstore::object_store::ObjectStore;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use deltalake::{DeltaResult, DeltaTable, Path};
use url::Url;
use uuid::Uuid;

/// `inner`, whose next look for the newest version may be answered by a hint.
pub struct HintedLogStore {
    inner: LogStoreRef,
    /// The version the next commit follows; taken by the look for the newest version that
    /// starts from it (another start, e.g. a maintenance job's, leaves it).
    expected: Mutex<Option<Version>>,
}

impl HintedLogStore {
    pub fn wrap(inner: LogStoreRef) -> LogStoreRef {
        Arc::new(HintedLogStore {
            inner,
            expected: Mutex::new(None),
        })
    }

    /// Whether the hint says `start` is the newest version; the hint is used up if so.
    fn take_if_expected(&self, start: Version) -> bool {
        let mut expected = self.expected.lock().expect("hint lock");
        let matches = *expected == Some(start);
        if matches {
            *expected = None;
        }
        matches
    }

    fn set_expected(&self, version: Option<Version>) {
        *self.expected.lock().expect("hint lock") = version;
    }
}

/// While it lives, `table`'s log store (when it takes hints) holds that the next commit
/// follows the table's loaded version; dropped, the hint is gone, whatever happened to the
/// commit (an error, or the write task cancelled).
pub struct CommitHint(LogStoreRef);

impl CommitHint {
    pub fn next_commit_of(table: &DeltaTable) -> CommitHint {
        let hint = CommitHint(table.log_store());
        hint.set(table.version());
        hint
    }

    fn set(&self, version: Option<Version>) {
        if let Some(hinted) = self.0.clone().as_any().downcast_ref::<HintedLogStore>() {
            hinted.set_expected(version);
        }
    }
}

impl Drop for CommitHint {
    fn drop(&mut self) {
        self.set(None);
    }
}

#[async_trait]
impl LogStore for HintedLogStore {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        if self.take_if_expected(start_version) {
            return Ok(start_version);
        }
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn engine(&self, operation_id: Option<Uuid>) -> Arc<dyn Engine> {
        self.inner.engine(operation_id)
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<Url> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::kernel::{DataType as DeltaType, StructField};
    use deltalake::logstore::object_store::local::LocalFileSystem;
    use deltalake::writer::{DeltaWriter, RecordBatchWriter};
    use deltalake::DeltaTableBuilder;

    use super::*;
    use crate::sink::delta::object_cache::tests::Listings;

    /// A table at `dir` whose log store takes hints, over a store that counts listings.
    async fn open(dir: &std::path::Path, listings: &Arc<AtomicUsize>) -> DeltaTable {
        let url = Url::from_directory_path(dir).unwrap();
        let store = Listings::new(Arc::new(LocalFileSystem::new()), listings.clone());
        let log_store = DeltaTableBuilder::from_url(url.clone())
            .unwrap()
            .with_storage_backend(Arc::new(store), url)
            .build_storage()
            .unwrap();
        let mut table = DeltaTable::new(HintedLogStore::wrap(log_store));
        let _ = table.load().await;
        table
    }

    async fn append(table: &mut DeltaTable, id: i64) -> Version {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))]);
        let mut writer = RecordBatchWriter::for_table(table).unwrap();
        writer.write(batch.unwrap()).await.unwrap();
        writer.flush_and_commit(table).await.unwrap()
    }

    #[tokio::test]
    async fn a_hinted_commit_lists_the_log_once_less_and_a_wrong_hint_still_lands_after_the_others()
    {
        let dir = tempfile::tempdir().unwrap();
        let listings = Arc::new(AtomicUsize::new(0));
        let mut first = open(dir.path(), &listings).await;
        first = first
            .create()
            .with_columns([StructField::new("id", DeltaType::LONG, true)])
            .await
            .unwrap();
        let mut second = open(dir.path(), &listings).await;

        let before = listings.load(Ordering::SeqCst);
        assert_eq!(append(&mut first, 1).await, 1);
        let unhinted = listings.load(Ordering::SeqCst) - before;
        let before = listings.load(Ordering::SeqCst);
        let hint = CommitHint::next_commit_of(&first);
        assert_eq!(append(&mut first, 2).await, 2);
        drop(hint);
        let hinted = listings.load(Ordering::SeqCst) - before;
        assert_eq!(hinted + 1, unhinted, "one listing less");

        // `second` still holds version 0: its hint is wrong, the put of version 1 fails and
        // delta-rs looks again, so the commit lands after the others.
        let hint = CommitHint::next_commit_of(&second);
        assert_eq!(append(&mut second, 3).await, 3);
        drop(hint);
        let table = deltalake::open_table(Url::from_directory_path(dir.path()).unwrap())
            .await
            .unwrap();
        assert_eq!(table.version(), Some(3));
        assert_eq!(table.snapshot().unwrap().log_data().num_files(), 3);
    }
}
