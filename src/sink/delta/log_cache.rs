//! An object store that keeps the Delta commit files (`_delta_log/<version>.json`) it wrote
//! or read. A commit file never changes once it exists (each is a put-if-absent), so a copy
//! can answer every later read of it: after each commit delta-rs reads the table again and
//! would otherwise fetch the commit it has just written, twice, on every batch.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::logstore::object_store::path::DELIMITER;
use deltalake::logstore::object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use deltalake::Path;
use futures::stream::BoxStream;
use futures::StreamExt;

/// How many commit files are kept, and their bytes at most; the oldest go first. The
/// newest few are what the refresh after a commit reads.
const MAX_ENTRIES: usize = 64;
const MAX_BYTES: usize = 4 << 20;
/// Commit files larger than this are not kept (a commit of many files, or a schema change
/// of a very wide table).
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// `inner` with its Delta commit files kept in memory once written or read.
pub struct LogCache {
    inner: Arc<dyn ObjectStore>,
    entries: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    files: HashMap<Path, (Bytes, DateTime<Utc>)>,
    order: VecDeque<Path>,
    bytes: usize,
}

impl Entries {
    /// Keeps `bytes` as the object at `path`, replacing what was kept (a put-if-absent that
    /// succeeded means the old object was deleted).
    fn insert(&mut self, path: Path, bytes: Bytes, last_modified: DateTime<Utc>) {
        self.remove(&path);
        if bytes.len() > MAX_ENTRY_BYTES {
            return;
        }
        while self.order.len() >= MAX_ENTRIES || self.bytes + bytes.len() > MAX_BYTES {
            let Some(oldest) = self.order.front().cloned() else {
                break;
            };
            self.remove(&oldest);
        }
        self.bytes += bytes.len();
        self.order.push_back(path.clone());
        self.files.insert(path, (bytes, last_modified));
    }

    fn remove(&mut self, path: &Path) {
        if let Some((bytes, _)) = self.files.remove(path) {
            self.bytes -= bytes.len();
            self.order.retain(|kept| kept != path);
        }
    }
}

impl LogCache {
    pub fn new(inner: Arc<dyn ObjectStore>) -> LogCache {
        LogCache {
            inner,
            entries: Arc::default(),
        }
    }

    fn cached(&self, path: &Path) -> Option<(Bytes, DateTime<Utc>)> {
        let entries = self.entries.lock().expect("log cache lock");
        entries.files.get(path).cloned()
    }

    fn keep(&self, path: &Path, bytes: Bytes, last_modified: DateTime<Utc>) {
        let mut entries = self.entries.lock().expect("log cache lock");
        entries.insert(path.clone(), bytes, last_modified);
    }
}

/// Whether `path` names a Delta commit file: `.../_delta_log/` and a 20-digit version.
fn is_commit_file(path: &Path) -> bool {
    let mut parts = path.as_ref().rsplit(DELIMITER);
    let (Some(file), Some(folder)) = (parts.next(), parts.next()) else {
        return false;
    };
    let version = file.strip_suffix(".json");
    folder == "_delta_log"
        && version.is_some_and(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
}

/// A plain read of a whole object: what a kept copy can answer.
fn whole_object(options: &GetOptions) -> bool {
    options.range.is_none()
        && !options.head
        && options.version.is_none()
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
}

/// A kept file as a read's answer. Its time is the put's or the first read's; delta-rs
/// takes commit times from listings, not from reads.
fn result_of(path: &Path, bytes: Bytes, last_modified: DateTime<Utc>) -> GetResult {
    let size = bytes.len() as u64;
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
        meta: ObjectMeta {
            location: path.clone(),
            last_modified,
            size,
            e_tag: None,
            version: None,
        },
        range: 0..size,
        attributes: Attributes::default(),
    }
}

#[async_trait]
impl ObjectStore for LogCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !is_commit_file(location) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let written = self.inner.put_opts(location, payload.clone(), opts).await?;
        self.keep(location, Bytes::from(payload), Utc::now());
        Ok(written)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !is_commit_file(location) || !whole_object(&options) {
            return self.inner.get_opts(location, options).await;
        }
        if let Some((bytes, last_modified)) = self.cached(location) {
            return Ok(result_of(location, bytes, last_modified));
        }
        let fetched = self.inner.get_opts(location, options).await?;
        let last_modified = fetched.meta.last_modified;
        let bytes = fetched.bytes().await?;
        self.keep(location, bytes.clone(), last_modified);
        Ok(result_of(location, bytes, last_modified))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let entries = self.entries.clone();
        let locations = locations.inspect(move |path| {
            if let Ok(path) = path {
                entries.lock().expect("log cache lock").remove(path);
            }
        });
        self.inner.delete_stream(locations.boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.entries.lock().expect("log cache lock").remove(to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.entries.lock().expect("log cache lock").remove(to);
        self.inner.rename_opts(from, to, options).await
    }
}

impl fmt::Debug for LogCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogCache({})", self.inner)
    }
}

impl fmt::Display for LogCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogCache({})", self.inner)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Passes everything to `inner` and counts the listings.
    #[derive(Debug)]
    pub struct Listings {
        inner: Arc<dyn ObjectStore>,
        count: Arc<AtomicUsize>,
    }

    impl Listings {
        pub fn new(inner: Arc<dyn ObjectStore>, count: Arc<AtomicUsize>) -> Listings {
            Listings { inner, count }
        }
    }

    impl fmt::Display for Listings {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Listings({})", self.inner)
        }
    }

    #[async_trait]
    impl ObjectStore for Listings {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            self.inner.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.inner.list(p)
        }
        fn list_with_offset(
            &self,
            p: Option<&Path>,
            o: &Path,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.inner.list_with_offset(p, o)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.inner.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
            self.inner.copy_opts(f, t, o).await
        }
    }
    use deltalake::logstore::object_store::memory::InMemory;
    use deltalake::logstore::object_store::{ObjectStoreExt, PutMode};

    fn commit(version: u64) -> Path {
        Path::from(format!("bucket/t/_delta_log/{version:020}.json"))
    }

    #[test]
    fn only_commit_files_are_kept() {
        assert!(is_commit_file(&commit(7)));
        for other in [
            "bucket/t/_delta_log/00000000000000000010.checkpoint.parquet",
            "bucket/t/_delta_log/_last_checkpoint",
            "bucket/t/part-0001.json",
            "bucket/t/_delta_log/00000000000000000010.crc",
            "bucket/t/_delta_log/_commits/00000000000000000010.json",
        ] {
            assert!(!is_commit_file(&Path::from(other)), "{other}");
        }
    }

    #[tokio::test]
    async fn a_commit_written_or_read_once_is_read_again_from_memory() {
        let memory = Arc::new(InMemory::new());
        let cache = LogCache::new(memory.clone());
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        cache
            .put_opts(&commit(1), PutPayload::from_static(b"{\"add\":1}"), create)
            .await
            .unwrap();
        memory.delete(&commit(1)).await.unwrap();
        let read = cache.get(&commit(1)).await.unwrap().bytes().await.unwrap();
        assert_eq!(&read[..], b"{\"add\":1}", "answered from memory");

        memory
            .put(&commit(2), PutPayload::from_static(b"{\"add\":2}"))
            .await
            .unwrap();
        let first = cache.get(&commit(2)).await.unwrap().bytes().await.unwrap();
        memory.delete(&commit(2)).await.unwrap();
        let again = cache.get(&commit(2)).await.unwrap().bytes().await.unwrap();
        assert_eq!(first, again);

        let data = Path::from("bucket/t/part-1.parquet");
        cache
            .put(&data, PutPayload::from_static(b"data"))
            .await
            .unwrap();
        memory.delete(&data).await.unwrap();
        assert!(cache.get(&data).await.is_err(), "data files are not kept");
    }

    #[tokio::test]
    async fn a_commit_deleted_and_written_again_is_read_as_written_again() {
        let memory = Arc::new(InMemory::new());
        let cache = LogCache::new(memory.clone());
        cache
            .put(&commit(4), PutPayload::from_static(b"old table"))
            .await
            .unwrap();
        cache.delete(&commit(4)).await.unwrap();
        assert!(cache.get(&commit(4)).await.is_err(), "deleted: not kept");
        memory
            .put(&commit(4), PutPayload::from_static(b"new table"))
            .await
            .unwrap();
        let read = cache.get(&commit(4)).await.unwrap().bytes().await.unwrap();
        assert_eq!(&read[..], b"new table");
        cache
            .put(&commit(4), PutPayload::from_static(b"newer"))
            .await
            .unwrap();
        let read = cache.get(&commit(4)).await.unwrap().bytes().await.unwrap();
        assert_eq!(&read[..], b"newer", "a put replaces what was kept");
    }

    #[test]
    fn what_is_kept_stays_within_its_bounds() {
        let mut entries = Entries::default();
        let now = Utc::now();
        for version in 0..(MAX_ENTRIES as u64 + 10) {
            entries.insert(commit(version), Bytes::from(vec![0u8; 1024]), now);
        }
        assert_eq!(entries.files.len(), MAX_ENTRIES);
        assert!(entries.files.contains_key(&commit(MAX_ENTRIES as u64 + 9)));
        assert!(
            !entries.files.contains_key(&commit(0)),
            "the oldest went first"
        );
        for version in 0..8 {
            entries.insert(
                commit(1000 + version),
                Bytes::from(vec![0u8; 900 << 10]),
                now,
            );
        }
        assert!(entries.bytes <= MAX_BYTES, "{} bytes kept", entries.bytes);
        assert_eq!(
            entries.bytes,
            entries.files.values().map(|(b, _)| b.len()).sum::<usize>()
        );
    }

    #[tokio::test]
    async fn a_commit_that_lost_the_race_is_not_kept() {
        let memory = Arc::new(InMemory::new());
        let cache = LogCache::new(memory.clone());
        memory
            .put(&commit(3), PutPayload::from_static(b"winner"))
            .await
            .unwrap();
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let lost = cache
            .put_opts(&commit(3), PutPayload::from_static(b"loser"), create)
            .await;
        assert!(lost.is_err());
        let read = cache.get(&commit(3)).await.unwrap().bytes().await.unwrap();
        assert_eq!(&read[..], b"winner");
    }
}
