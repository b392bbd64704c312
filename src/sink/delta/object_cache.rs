//! An object store that keeps in memory what a Delta writer reads back soon after it wrote
//! it. A commit file (`_delta_log/<version>.json`) never changes once it exists (each is a
//! put-if-absent): after each commit delta-rs reads the table again and would otherwise fetch
//! the commit it has just written, twice, on every batch. Data files have unique names and
//! are never rewritten either: the next copy-on-write MERGE reads the file the last one wrote
//! (the newest keys), compaction reads the small files appends just wrote, and the
//! deletion-vector mode reads the key columns of new files; each such read would otherwise
//! fetch them back from the store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use deltalake::logstore::object_store::path::DELIMITER;
use deltalake::logstore::object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};
use deltalake::Path;
use futures::stream::BoxStream;
use futures::StreamExt;

/// How much is kept; the oldest entries go first.
#[derive(Debug, Clone, Copy)]
struct Limits {
    entries: usize,
    bytes: usize,
    /// Larger objects are not kept.
    entry_bytes: usize,
}

/// Per table handle: the newest few commits are what the refresh after a commit reads;
/// a commit of many files, or a schema change of a very wide table, is not kept.
const COMMIT_LIMITS: Limits = Limits {
    entries: 64,
    bytes: 4 << 20,
    entry_bytes: 1 << 20,
};

/// For the whole process (every table on every store): a few files of the default 8 MiB
/// target size per table being written, not a copy of the tables.
const DATA_LIMITS: Limits = Limits {
    entries: 256,
    bytes: 64 << 20,
    entry_bytes: 16 << 20,
};

/// The data files kept, by store and path (see [`ObjectCache::data_key`]).
static DATA_FILES: LazyLock<Mutex<Entries>> =
    LazyLock::new(|| Mutex::new(Entries::new(Kind::Data.limits())));

/// `inner` with its Delta commit files and the data files written through it kept in
/// memory.
pub struct ObjectCache {
    inner: Arc<dyn ObjectStore>,
    /// `inner`'s name, which keys its data files in the process's cache.
    store: String,
    commits: Arc<Mutex<Entries>>,
}

/// An object as kept: its bytes and what a read reports of it.
#[derive(Clone)]
struct Kept {
    bytes: Bytes,
    last_modified: DateTime<Utc>,
    e_tag: Option<String>,
    version: Option<String>,
}

struct Entries {
    limits: Limits,
    objects: HashMap<String, Kept>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Entries {
    fn new(limits: Limits) -> Entries {
        Entries {
            limits,
            objects: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps `kept` as the object at `key`, replacing what was kept (a put that succeeded
    /// replaced the old object).
    fn insert(&mut self, key: String, kept: Kept) {
        self.remove(&key);
        let size = kept.bytes.len();
        if size > self.limits.entry_bytes {
            return;
        }
        while self.order.len() >= self.limits.entries || self.bytes + size > self.limits.bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.objects.remove(&oldest) {
                self.bytes -= old.bytes.len();
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.objects.insert(key, kept);
    }

    fn get(&self, key: &str) -> Option<Kept> {
        self.objects.get(key).cloned()
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.objects.remove(key) {
            self.bytes -= old.bytes.len();
            self.order.retain(|kept| kept != key);
        }
    }
}

/// Which of the two caches keeps an object, if one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Commit,
    Data,
}

impl Kind {
    fn limits(self) -> Limits {
        match self {
            Kind::Commit => COMMIT_LIMITS,
            Kind::Data => DATA_LIMITS,
        }
    }
}

impl ObjectCache {
    pub fn new(inner: Arc<dyn ObjectStore>) -> ObjectCache {
        ObjectCache {
            store: inner.to_string(),
            inner,
            commits: Arc::new(Mutex::new(Entries::new(Kind::Commit.limits()))),
        }
    }

    fn entries(&self, kind: Kind) -> &Mutex<Entries> {
        match kind {
            Kind::Commit => &self.commits,
            Kind::Data => &DATA_FILES,
        }
    }

    fn key(&self, kind: Kind, path: &Path) -> String {
        match kind {
            Kind::Commit => path.to_string(),
            Kind::Data => data_key(&self.store, path),
        }
    }

    fn cached(&self, kind: Kind, path: &Path) -> Option<Kept> {
        let entries = self.entries(kind).lock().expect("object cache lock");
        entries.get(&self.key(kind, path))
    }

    fn keep(&self, kind: Kind, path: &Path, kept: Kept) {
        let key = self.key(kind, path);
        let mut entries = self.entries(kind).lock().expect("object cache lock");
        entries.insert(key, kept);
    }

    fn forget(&self, path: &Path) {
        forget(&self.commits, &self.store, path);
    }
}

/// Drops what is kept of the object at `path` of `store`, a commit (in `commits`) or a data
/// file.
fn forget(commits: &Mutex<Entries>, store: &str, path: &Path) {
    commits
        .lock()
        .expect("object cache lock")
        .remove(path.as_ref());
    DATA_FILES
        .lock()
        .expect("object cache lock")
        .remove(&data_key(store, path));
}

/// Data files of every store share one cache: the store's name tells apart equal paths in
/// two buckets.
fn data_key(store: &str, path: &Path) -> String {
    format!("{store}/{path}")
}

/// What kind of object `path` names: a Delta commit file (`.../_delta_log/` and a 20-digit
/// version), a data or deletion-vector file a writer may read back (not change data, which
/// only readers of the feed read), or neither.
fn kind_of(path: &Path) -> Option<Kind> {
    let mut parts = path.as_ref().rsplit(DELIMITER);
    let file = parts.next()?;
    let folder = parts.next().unwrap_or_default();
    if folder == "_delta_log" {
        let version = file.strip_suffix(".json")?;
        let is_version = version.len() == 20 && version.bytes().all(|b| b.is_ascii_digit());
        return is_version.then_some(Kind::Commit);
    }
    let is_data = file.ends_with(".parquet") || file.starts_with("deletion_vector_");
    let in_log_or_feed = path
        .as_ref()
        .split(DELIMITER)
        .any(|part| part == "_delta_log" || part == "_change_data");
    (is_data && !in_log_or_feed).then_some(Kind::Data)
}

/// A plain read of an object, or of a range of it: what a kept copy can answer.
fn plain_read(options: &GetOptions) -> bool {
    !options.head
        && options.version.is_none()
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
}

/// `range` of a kept object as a read's answer. Its time is the put's or the first read's;
/// delta-rs takes commit times from listings, not from reads.
fn result_of(path: &Path, kept: Kept, range: Range<u64>) -> GetResult {
    let size = kept.bytes.len() as u64;
    let bytes = kept.bytes.slice(range.start as usize..range.end as usize);
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
        meta: ObjectMeta {
            location: path.clone(),
            last_modified: kept.last_modified,
            size,
            e_tag: kept.e_tag,
            version: kept.version,
        },
        range,
        attributes: Attributes::default(),
    }
}

/// The range `options` asks of an object of `size` bytes, if it is a valid one.
fn requested_range(options: &GetOptions, size: u64) -> Option<Range<u64>> {
    match &options.range {
        None => Some(0..size),
        Some(range) => range.as_range(size).ok(),
    }
}

/// A multipart upload whose parts are also collected, to be kept as the data file at `key`
/// once it completes (unless they grow past what would be kept).
#[derive(Debug)]
struct KeepingUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    parts: Option<Vec<PutPayload>>,
    bytes: usize,
}

#[async_trait]
impl MultipartUpload for KeepingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.bytes += data.content_length();
        if self.bytes > DATA_LIMITS.entry_bytes {
            self.parts = None;
        }
        if let Some(parts) = &mut self.parts {
            parts.push(data.clone());
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let written = self.inner.complete().await?;
        if let Some(parts) = self.parts.take() {
            let mut bytes = BytesMut::with_capacity(self.bytes);
            for chunk in parts.iter().flat_map(|part| part.iter()) {
                bytes.extend_from_slice(chunk);
            }
            let kept = Kept {
                bytes: bytes.freeze(),
                last_modified: Utc::now(),
                e_tag: written.e_tag.clone(),
                version: written.version.clone(),
            };
            DATA_FILES
                .lock()
                .expect("object cache lock")
                .insert(std::mem::take(&mut self.key), kept);
        }
        Ok(written)
    }

    async fn abort(&mut self) -> Result<()> {
        self.parts = None;
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for ObjectCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let Some(kind) = kind_of(location) else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        if payload.content_length() > kind.limits().entry_bytes {
            self.forget(location);
            return self.inner.put_opts(location, payload, opts).await;
        }
        let written = self.inner.put_opts(location, payload.clone(), opts).await?;
        let kept = Kept {
            bytes: Bytes::from(payload),
            last_modified: Utc::now(),
            e_tag: written.e_tag.clone(),
            version: written.version.clone(),
        };
        self.keep(kind, location, kept);
        Ok(written)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        if kind_of(location) != Some(Kind::Data) {
            return Ok(upload);
        }
        self.forget(location);
        Ok(Box::new(KeepingUpload {
            inner: upload,
            key: data_key(&self.store, location),
            parts: Some(Vec::new()),
            bytes: 0,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(kind) = kind_of(location).filter(|_| plain_read(&options)) else {
            return self.inner.get_opts(location, options).await;
        };
        if let Some(kept) = self.cached(kind, location) {
            if let Some(range) = requested_range(&options, kept.bytes.len() as u64) {
                return Ok(result_of(location, kept, range));
            }
        }
        // Only commits are kept on a read: a data file read once is not read again soon.
        if kind == Kind::Data || options.range.is_some() {
            return self.inner.get_opts(location, options).await;
        }
        let fetched = self.inner.get_opts(location, options).await?;
        let meta = fetched.meta.clone();
        let kept = Kept {
            bytes: fetched.bytes().await?,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
            version: meta.version,
        };
        self.keep(kind, location, kept.clone());
        let size = kept.bytes.len() as u64;
        Ok(result_of(location, kept, 0..size))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let kept = kind_of(location).and_then(|kind| self.cached(kind, location));
        if let Some(kept) = kept {
            let size = kept.bytes.len() as u64;
            if ranges.iter().all(|r| r.start <= r.end && r.end <= size) {
                return Ok(ranges
                    .iter()
                    .map(|r| kept.bytes.slice(r.start as usize..r.end as usize))
                    .collect());
            }
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let commits = self.commits.clone();
        let store = self.store.clone();
        let locations = locations.inspect(move |path| {
            if let Ok(path) = path {
                forget(&commits, &store, path);
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
        self.forget(to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.forget(from);
        self.forget(to);
        self.inner.rename_opts(from, to, options).await
    }
}

impl fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectCache({})", self.inner)
    }
}

impl fmt::Display for ObjectCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectCache({})", self.inner)
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
    use deltalake::logstore::object_store::{GetRange, ObjectStoreExt, PutMode};

    fn commit(version: u64) -> Path {
        Path::from(format!("bucket/t/_delta_log/{version:020}.json"))
    }

    #[test]
    fn commits_and_data_files_are_told_apart() {
        assert_eq!(kind_of(&commit(7)), Some(Kind::Commit));
        for data in [
            "bucket/t/part-0001.parquet",
            "bucket/t/region=eu/part-0001.parquet",
            "bucket/t/deletion_vector_0b1c.bin",
        ] {
            assert_eq!(kind_of(&Path::from(data)), Some(Kind::Data), "{data}");
        }
        for other in [
            "bucket/t/_delta_log/00000000000000000010.checkpoint.parquet",
            "bucket/t/_delta_log/_last_checkpoint",
            "bucket/t/part-0001.json",
            "bucket/t/_delta_log/00000000000000000010.crc",
            "bucket/t/_delta_log/_commits/00000000000000000010.json",
            "bucket/t/_change_data/cdc-0001.parquet",
        ] {
            assert_eq!(kind_of(&Path::from(other)), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_commit_written_or_read_once_is_read_again_from_memory() {
        let memory = Arc::new(InMemory::new());
        let cache = ObjectCache::new(memory.clone());
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
    }

    #[tokio::test]
    async fn a_data_file_written_is_read_back_from_memory_whole_or_in_ranges() {
        let memory = Arc::new(InMemory::new());
        let cache = ObjectCache::new(memory.clone());
        let data = Path::from("bucket/t/part-written-once.parquet");
        cache
            .put(&data, PutPayload::from_static(b"0123456789"))
            .await
            .unwrap();
        memory.delete(&data).await.unwrap();
        let whole = cache.get(&data).await.unwrap();
        assert_eq!(whole.meta.size, 10);
        assert_eq!(&whole.bytes().await.unwrap()[..], b"0123456789");
        let suffix = cache.get_range(&data, 6..10).await.unwrap();
        assert_eq!(&suffix[..], b"6789");
        let tail = GetOptions {
            range: Some(GetRange::Suffix(3)),
            ..GetOptions::default()
        };
        let read = cache.get_opts(&data, tail).await.unwrap();
        assert_eq!((read.range.clone(), read.meta.size), (7..10, 10));
        assert_eq!(&read.bytes().await.unwrap()[..], b"789");
        let from = GetOptions {
            range: Some(GetRange::Offset(8)),
            ..GetOptions::default()
        };
        let read = cache.get_opts(&data, from).await.unwrap();
        assert_eq!(&read.bytes().await.unwrap()[..], b"89");
        let ranges = cache.get_ranges(&data, &[0..2, 4..5]).await.unwrap();
        assert_eq!(
            ranges,
            vec![Bytes::from_static(b"01"), Bytes::from_static(b"4")]
        );
        assert!(
            cache.get_range(&data, 12..14).await.is_err(),
            "a range past the end goes to the store (which no longer has it)"
        );

        cache.delete(&data).await.unwrap();
        assert!(cache.get(&data).await.is_err(), "deleted: not kept");

        let other = Path::from("bucket/t/part-copied-over.parquet");
        cache
            .put(&other, PutPayload::from_static(b"before"))
            .await
            .unwrap();
        memory
            .put(&data, PutPayload::from_static(b"after"))
            .await
            .unwrap();
        cache.copy(&data, &other).await.unwrap();
        let read = cache.get(&other).await.unwrap().bytes().await.unwrap();
        assert_eq!(&read[..], b"after", "a copy over a kept file replaces it");

        let read_only = Path::from("bucket/t/part-read-only.parquet");
        memory
            .put(&read_only, PutPayload::from_static(b"data"))
            .await
            .unwrap();
        cache.get(&read_only).await.unwrap();
        memory.delete(&read_only).await.unwrap();
        assert!(
            cache.get(&read_only).await.is_err(),
            "a data file only read is not kept"
        );
    }

    #[tokio::test]
    async fn a_data_file_uploaded_in_parts_is_kept_once_complete_unless_too_large() {
        let memory = Arc::new(InMemory::new());
        let cache = ObjectCache::new(memory.clone());
        let data = Path::from("bucket/t/part-multipart.parquet");
        let mut upload = cache.put_multipart(&data).await.unwrap();
        upload
            .put_part(PutPayload::from_static(b"abc"))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from_static(b"def"))
            .await
            .unwrap();
        assert!(
            cache.cached(Kind::Data, &data).is_none(),
            "not before it completes"
        );
        upload.complete().await.unwrap();
        memory.delete(&data).await.unwrap();
        assert_eq!(&cache.get_range(&data, 2..5).await.unwrap()[..], b"cde");

        let large = Path::from("bucket/t/part-multipart-large.parquet");
        let mut upload = cache.put_multipart(&large).await.unwrap();
        let part = vec![0u8; DATA_LIMITS.entry_bytes / 2 + 1];
        upload.put_part(part.clone().into()).await.unwrap();
        upload.put_part(part.into()).await.unwrap();
        upload.complete().await.unwrap();
        assert!(cache.cached(Kind::Data, &large).is_none());
    }

    #[tokio::test]
    async fn a_commit_deleted_and_written_again_is_read_as_written_again() {
        let memory = Arc::new(InMemory::new());
        let cache = ObjectCache::new(memory.clone());
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
        let mut entries = Entries::new(COMMIT_LIMITS);
        let kept = |size: usize| Kept {
            bytes: Bytes::from(vec![0u8; size]),
            last_modified: Utc::now(),
            e_tag: None,
            version: None,
        };
        let key = |version: u64| commit(version).to_string();
        let max = COMMIT_LIMITS.entries as u64;
        for version in 0..max + 10 {
            entries.insert(key(version), kept(1024));
        }
        assert_eq!(entries.objects.len(), COMMIT_LIMITS.entries);
        assert!(entries.objects.contains_key(&key(max + 9)));
        assert!(
            !entries.objects.contains_key(&key(0)),
            "the oldest went first"
        );
        for version in 0..8 {
            entries.insert(key(1000 + version), kept(900 << 10));
        }
        assert!(
            entries.bytes <= COMMIT_LIMITS.bytes,
            "{} bytes kept",
            entries.bytes
        );
        assert_eq!(
            entries.bytes,
            entries
                .objects
                .values()
                .map(|k| k.bytes.len())
                .sum::<usize>()
        );
        entries.insert(key(2000), kept(COMMIT_LIMITS.entry_bytes + 1));
        assert!(
            !entries.objects.contains_key(&key(2000)),
            "too large to keep"
        );
    }

    #[tokio::test]
    async fn a_commit_that_lost_the_race_is_not_kept() {
        let memory = Arc::new(InMemory::new());
        let cache = ObjectCache::new(memory.clone());
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
