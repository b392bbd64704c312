//! The Delta protocol's deletion vectors on disk: a `RoaringBitmapArray` (a magic number and a
//! portable 64-bit Roaring treemap of deleted row positions) stored in a
//! `deletion_vector_<uuid>.bin` file (version byte, then per vector: size, bitmap, CRC-32) or
//! inline in the log as Z85 text. See PROTOCOL.md, "Deletion Vector Format".

use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::{ObjectStore, Path};
use roaring::RoaringTreemap;
use uuid::Uuid;

/// `RoaringBitmapArray` magic number of the portable format, little-endian on disk.
const PORTABLE_MAGIC: u32 = 1681511377;
const FILE_FORMAT_VERSION: u8 = 1;
/// Z85 of a 16-byte UUID: the fixed-length tail of a relative DV path.
const UUID_Z85_LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DeletionVectorError {
    #[error("deletion vector {id}: {reason}")]
    Malformed { id: String, reason: String },
    #[error("deletion vector {id} in {path}: {source}")]
    Store {
        id: String,
        path: String,
        #[source]
        source: deltalake::ObjectStoreError,
    },
}

/// How the Delta writer reports it (the sink's errors are Delta errors): a store that could
/// not be read stays an object-store error, which the pipeline retries; a malformed vector
/// does not get better by trying again.
impl From<DeletionVectorError> for deltalake::DeltaTableError {
    fn from(error: DeletionVectorError) -> Self {
        match error {
            DeletionVectorError::Store { source, .. } => {
                deltalake::DeltaTableError::ObjectStore { source }
            }
            malformed => deltalake::DeltaTableError::Generic(malformed.to_string()),
        }
    }
}

/// The id readers use to tell a file's deletion vectors apart (`uniqueId` in the protocol).
pub fn unique_id(descriptor: &DeletionVectorDescriptor) -> String {
    match descriptor.offset {
        Some(offset) => format!(
            "{}{}@{offset}",
            descriptor.storage_type, descriptor.path_or_inline_dv
        ),
        None => format!(
            "{}{}",
            descriptor.storage_type, descriptor.path_or_inline_dv
        ),
    }
}

/// Magic number and bitmap: what a DV file holds per vector and an inline DV encodes.
fn serialize(bitmap: &RoaringTreemap) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + bitmap.serialized_size());
    bytes.extend_from_slice(&PORTABLE_MAGIC.to_le_bytes());
    bitmap
        .serialize_into(&mut bytes)
        .expect("writing to a Vec cannot fail");
    bytes
}

fn deserialize(bytes: &[u8], id: &str) -> Result<RoaringTreemap, DeletionVectorError> {
    let malformed = |reason: String| DeletionVectorError::Malformed {
        id: id.to_string(),
        reason,
    };
    let (magic, bitmap) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("shorter than its magic number".into()))?;
    let magic = u32::from_le_bytes(*magic);
    if magic != PORTABLE_MAGIC {
        return Err(malformed(format!(
            "magic number {magic} is not the portable format's {PORTABLE_MAGIC}"
        )));
    }
    RoaringTreemap::deserialize_from(bitmap).map_err(|e| malformed(format!("bitmap: {e}")))
}

/// The deletion vectors of one commit, written as one `deletion_vector_<uuid>.bin` file at
/// the table root.
pub struct DeletionVectorFile {
    uuid: Uuid,
    bytes: Vec<u8>,
}

impl Default for DeletionVectorFile {
    fn default() -> Self {
        DeletionVectorFile {
            uuid: Uuid::new_v4(),
            bytes: vec![FILE_FORMAT_VERSION],
        }
    }
}

impl DeletionVectorFile {
    /// Adds `bitmap` and returns the descriptor that points at it.
    pub fn add(&mut self, bitmap: &RoaringTreemap) -> DeletionVectorDescriptor {
        let data = serialize(bitmap);
        let offset = self.bytes.len();
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(&data);
        self.bytes
            .extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
        DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(self.uuid.as_bytes()),
            offset: Some(i32::try_from(offset).expect("a commit's DV file stays under 2 GiB")),
            size_in_bytes: data.len() as i32,
            cardinality: bitmap.len() as i64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.len() == 1
    }

    /// Where the file goes, relative to the table root.
    pub fn path(&self) -> Path {
        Path::from(file_name(&self.uuid))
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn file_name(uuid: &Uuid) -> String {
    format!("deletion_vector_{}.bin", uuid.hyphenated())
}

/// An inline deletion vector (`storageType` `i`). pgdelta writes files: a vector grows with
/// every commit that touches its file, and each would repeat it in the log.
#[cfg(test)]
pub fn inline(bitmap: &RoaringTreemap) -> DeletionVectorDescriptor {
    let mut data = serialize(bitmap);
    let size = data.len();
    // Z85 takes whole 4-byte groups; readers cut the padding off at `sizeInBytes`.
    data.resize(size.div_ceil(4) * 4, 0);
    DeletionVectorDescriptor {
        storage_type: StorageType::Inline,
        path_or_inline_dv: z85::encode(&data),
        offset: None,
        size_in_bytes: size as i32,
        cardinality: bitmap.len() as i64,
    }
}

/// The row positions `descriptor` marks deleted; `store` is rooted at the table.
pub async fn read(
    descriptor: &DeletionVectorDescriptor,
    store: &dyn ObjectStore,
    table_root: &url::Url,
) -> Result<RoaringTreemap, DeletionVectorError> {
    let id = unique_id(descriptor);
    let malformed = |reason: String| DeletionVectorError::Malformed {
        id: id.clone(),
        reason,
    };
    let size = usize::try_from(descriptor.size_in_bytes)
        .map_err(|_| malformed("negative sizeInBytes".into()))?;
    let bitmap = match descriptor.storage_type {
        StorageType::Inline => {
            let data = z85::decode(&descriptor.path_or_inline_dv)
                .map_err(|e| malformed(format!("inline data: {e}")))?;
            let data = data
                .get(..size)
                .ok_or_else(|| malformed("inline data shorter than sizeInBytes".into()))?;
            deserialize(data, &id)?
        }
        StorageType::UuidRelativePath | StorageType::AbsolutePath => {
            let path = file_path(descriptor, table_root).map_err(malformed)?;
            let offset = descriptor.offset.unwrap_or(1) as u64;
            let range = offset..offset + 4 + size as u64 + 4;
            let bytes = store.get_range(&path, range).await.map_err(|source| {
                DeletionVectorError::Store {
                    id: id.clone(),
                    path: path.to_string(),
                    source,
                }
            })?;
            let stored_size = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
            if stored_size as usize != size {
                return Err(malformed(format!(
                    "the file says {stored_size} bytes, the log {size}"
                )));
            }
            let data = &bytes[4..4 + size];
            let crc = u32::from_be_bytes(bytes[4 + size..].try_into().expect("4 bytes"));
            if crc32fast::hash(data) != crc {
                return Err(malformed("checksum does not match".into()));
            }
            deserialize(data, &id)?
        }
    };
    if bitmap.len() != descriptor.cardinality as u64 {
        return Err(malformed(format!(
            "holds {} rows, the log says {}",
            bitmap.len(),
            descriptor.cardinality
        )));
    }
    Ok(bitmap)
}

/// The DV file of a `u` or `p` descriptor, relative to the table root.
fn file_path(descriptor: &DeletionVectorDescriptor, table_root: &url::Url) -> Result<Path, String> {
    let encoded = &descriptor.path_or_inline_dv;
    if descriptor.storage_type == StorageType::AbsolutePath {
        let absolute = url::Url::parse(encoded).map_err(|e| format!("path: {e}"))?;
        let root = table_root.as_str().trim_end_matches('/');
        let relative = absolute
            .as_str()
            .strip_prefix(root)
            .ok_or_else(|| format!("{absolute} is outside the table"))?;
        return Path::parse(relative.trim_start_matches('/')).map_err(|e| e.to_string());
    }
    let split = encoded
        .len()
        .checked_sub(UUID_Z85_LEN)
        .ok_or_else(|| "path shorter than a UUID".to_string())?;
    let (prefix, uuid) = encoded.split_at(split);
    let uuid = z85::decode(uuid)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| format!("'{uuid}' is not a Z85 UUID"))?;
    Ok(match prefix.is_empty() {
        true => Path::from(file_name(&uuid)),
        false => Path::from(format!("{prefix}/{}", file_name(&uuid))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::logstore::object_store::memory::InMemory;

    fn bitmap(rows: &[u64]) -> RoaringTreemap {
        rows.iter().copied().collect()
    }

    fn root() -> url::Url {
        url::Url::parse("memory:///table/").unwrap()
    }

    #[tokio::test]
    async fn reads_the_delta_kernels_inline_test_vector() {
        // From delta-kernel-rs (actions/deletion_vector.rs): rows 3, 4, 7, 11, 18, 29.
        let descriptor = DeletionVectorDescriptor {
            storage_type: StorageType::Inline,
            path_or_inline_dv: "^Bg9^0rr910000000000iXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L".into(),
            offset: None,
            size_in_bytes: 44,
            cardinality: 6,
        };
        let store = InMemory::new();
        let rows = read(&descriptor, &store, &root()).await.unwrap();
        assert_eq!(rows, bitmap(&[3, 4, 7, 11, 18, 29]));
        assert_eq!(inline(&rows), descriptor);
    }

    #[tokio::test]
    async fn vectors_written_to_one_file_read_back_at_their_offsets() {
        let store = InMemory::new();
        let first = bitmap(&[0, 2, 5]);
        let second = bitmap(&[7, 1 << 33, (1 << 33) + 1]);
        let mut file = DeletionVectorFile::default();
        let a = file.add(&first);
        let b = file.add(&second);
        assert_eq!(a.offset, Some(1));
        assert_eq!(a.path_or_inline_dv.len(), UUID_Z85_LEN);
        let path = file.path();
        assert!(path.as_ref().starts_with("deletion_vector_"));
        store.put(&path, file.into_bytes().into()).await.unwrap();
        assert_eq!(read(&a, &store, &root()).await.unwrap(), first);
        assert_eq!(read(&b, &store, &root()).await.unwrap(), second);
        assert_eq!(b.cardinality, 3);
        assert_ne!(unique_id(&a), unique_id(&b));
    }

    #[tokio::test]
    async fn a_corrupted_file_is_refused_naming_the_vector() {
        let store = InMemory::new();
        let mut file = DeletionVectorFile::default();
        let descriptor = file.add(&bitmap(&[1, 2, 3]));
        let path = file.path();
        let mut bytes = file.into_bytes();
        let last = bytes.len() - 6;
        bytes[last] ^= 0xff;
        store.put(&path, bytes.into()).await.unwrap();
        let error = read(&descriptor, &store, &root()).await.unwrap_err();
        assert!(
            error.to_string().contains(&unique_id(&descriptor)),
            "{error}"
        );
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    #[tokio::test]
    async fn a_vector_the_store_cannot_give_is_a_store_error_a_corrupt_one_is_not() {
        let store = InMemory::new();
        let mut file = DeletionVectorFile::default();
        let descriptor = file.add(&bitmap(&[1]));
        let missing = read(&descriptor, &store, &root()).await.unwrap_err();
        assert!(matches!(
            deltalake::DeltaTableError::from(missing),
            deltalake::DeltaTableError::ObjectStore { .. }
        ));
        let corrupt = DeletionVectorError::Malformed {
            id: "x".into(),
            reason: "checksum does not match".into(),
        };
        assert!(matches!(
            deltalake::DeltaTableError::from(corrupt),
            deltalake::DeltaTableError::Generic(_)
        ));
    }

    #[test]
    fn inline_vectors_of_any_length_are_padded_for_z85() {
        for rows in [vec![1u64], vec![1, 2, 3, 70_000], (0..100).collect()] {
            let descriptor = inline(&bitmap(&rows));
            let decoded = z85::decode(&descriptor.path_or_inline_dv).unwrap();
            let data = &decoded[..descriptor.size_in_bytes as usize];
            assert_eq!(deserialize(data, "t").unwrap(), bitmap(&rows));
        }
    }
}
