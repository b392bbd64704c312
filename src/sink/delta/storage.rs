//! Where Delta tables live: a local path or an object-store URL (`s3://`, `s3a://`, `az://`,
//! `abfss://`, `gs://`), opened with delta-rs `storage_options`. Credentials come from those
//! options or from the standard environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`), as delta-rs
//! and object_store read them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::logstore::object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use deltalake::logstore::{object_store_factories, StorageConfig};
use deltalake::{DeltaTable, DeltaTableError, ObjectStoreError, Path};
use url::Url;

use super::commit_hint::HintedLogStore;
use super::object_cache::ObjectCache;

use crate::config::StorageOptions;

/// Whether `location` is an object-store URL rather than a local path.
pub fn is_object_store(location: &str) -> bool {
    location.contains("://") && !location.starts_with("file://")
}

/// The cargo feature of the object store `location` is on, when this build left it out
/// (`--no-default-features`): without it delta-rs knows no store for the URL's scheme.
pub fn store_not_built_in(location: &str) -> Option<&'static str> {
    let (scheme, _) = location.split_once("://")?;
    let (feature, built_in) = match scheme {
        "s3" | "s3a" => ("s3", cfg!(feature = "s3")),
        "az" | "adl" | "azure" | "abfs" | "abfss" => ("azure", cfg!(feature = "azure")),
        "gs" => ("gcs", cfg!(feature = "gcs")),
        _ => return None,
    };
    (!built_in).then_some(feature)
}

/// What a build without the store's feature says about `location`.
pub fn not_built_in_message(feature: &str) -> String {
    format!("this pgdelta was built without the `{feature}` cargo feature (that object store); build it with default features to get it: `cargo build`")
}

/// The table at `location`, loaded when it exists (an empty location is no error: the
/// table can be created there).
pub async fn open_or_empty(
    location: &str,
    storage: &StorageOptions,
) -> Result<DeltaTable, DeltaTableError> {
    let mut table = unloaded(location, storage)?;
    match table.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
        Err(error) => Err(error),
    }
}

/// The table at `location`; an error when there is none.
pub async fn open(location: &str, storage: &StorageOptions) -> Result<DeltaTable, DeltaTableError> {
    let mut table = unloaded(location, storage)?;
    table.load().await?;
    Ok(table)
}

/// A handle on the table's location that has read nothing yet: for probes.
///
/// On an object store, every request costs a round trip: the table's commit files are kept
/// in memory once written or read ([`ObjectCache`]), and a commit can skip listing the log
/// first ([`HintedLogStore`]).
pub fn unloaded(location: &str, storage: &StorageOptions) -> Result<DeltaTable, DeltaTableError> {
    if let Some(feature) = store_not_built_in(location) {
        return Err(DeltaTableError::Generic(not_built_in_message(feature)));
    }
    let url = deltalake::ensure_table_uri(location)?;
    let options = storage.to_map();
    let mut builder =
        deltalake::DeltaTableBuilder::from_url(url.clone())?.with_storage_options(options.clone());
    if !is_object_store(location) {
        return builder.build();
    }
    let root = root_store(&url, &options)?;
    builder = builder.with_storage_backend(Arc::new(ObjectCache::new(root)), url);
    Ok(DeltaTable::new(HintedLogStore::wrap(
        builder.build_storage()?,
    )))
}

/// The store at the root (bucket or container) of `url`, as delta-rs builds it for the URL's
/// scheme; delta-rs adds the table's prefix on top.
fn root_store(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, DeltaTableError> {
    let scheme = Url::parse(&format!("{}://", url.scheme()))
        .map_err(|_| DeltaTableError::InvalidTableLocation(url.to_string()))?;
    let factory = object_store_factories()
        .get(&scheme)
        .map(|entry| entry.value().clone())
        .ok_or_else(|| DeltaTableError::InvalidTableLocation(url.to_string()))?;
    let config = StorageConfig::parse_options(options)?;
    let (store, _prefix) = factory.parse_url_opts(url, &config)?;
    Ok(store)
}

fn probe_path(what: &str) -> Path {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    Path::from(format!(".pgdelta-{what}-{}-{nanos}", std::process::id()))
}

/// Puts and deletes a small object under the table's prefix (Delta ignores files its log
/// does not name): the store takes writes with these credentials.
pub async fn probe_writable(table: &DeltaTable) -> Result<(), String> {
    let store = table.object_store();
    let path = probe_path("write-probe");
    let failed = |error: ObjectStoreError| {
        format!(
            "cannot write to Delta table {}: {}",
            table.table_url(),
            without_secrets(&error.to_string())
        )
    };
    store
        .put(&path, PutPayload::from_static(b"probe"))
        .await
        .map_err(failed)?;
    store.delete(&path).await.map_err(failed)
}

/// Whether the store refuses to create an object that exists (`If-None-Match: *` on S3):
/// a Delta commit is a put-if-absent of the next log entry, so without it two writers can
/// overwrite each other's commits.
pub async fn honours_conditional_put(table: &DeltaTable) -> Result<bool, ObjectStoreError> {
    let store = table.object_store();
    let path = probe_path("conditional-put-probe");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&path, PutPayload::from(Bytes::from_static(b"1")), create())
        .await?;
    let second = store
        .put_opts(&path, PutPayload::from(Bytes::from_static(b"2")), create())
        .await;
    let _ = store.delete(&path).await;
    match second {
        Err(ObjectStoreError::AlreadyExists { .. } | ObjectStoreError::Precondition { .. }) => {
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Drops anything after a signature or key parameter from an object-store error text (the
/// stores put request URLs in their errors; a presigned or SAS URL carries credentials).
pub fn without_secrets(text: &str) -> String {
    const MARKERS: [&str; 4] = [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "sig=",
        "Signature=",
    ];
    const REDACTED: &str = "<redacted>";
    let mut text = text.to_string();
    for marker in MARKERS {
        let mut from = 0;
        while let Some(found) = text[from..].find(marker) {
            let value = from + found + marker.len();
            let end = text[value..]
                .find(|c: char| c == '&' || c.is_whitespace())
                .map_or(text.len(), |e| value + e);
            text.replace_range(value..end, REDACTED);
            from = value + REDACTED.len();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_urls_are_told_from_local_paths() {
        for url in [
            "s3://b/t",
            "s3a://b/t",
            "az://c/t",
            "abfss://c@a.dfs.core.windows.net/t",
            "gs://b/t",
        ] {
            assert!(is_object_store(url), "{url}");
        }
        for path in ["./delta/t", "/data/t", "file:///data/t"] {
            assert!(!is_object_store(path), "{path}");
        }
    }

    #[test]
    fn a_store_this_build_left_out_is_named_by_its_feature() {
        let cases = [
            ("s3a://b/t", "s3", cfg!(feature = "s3")),
            (
                "abfss://c@a.dfs.core.windows.net/t",
                "azure",
                cfg!(feature = "azure"),
            ),
            ("gs://b/t", "gcs", cfg!(feature = "gcs")),
        ];
        for (url, feature, built_in) in cases {
            let expected = (!built_in).then_some(feature);
            assert_eq!(store_not_built_in(url), expected, "{url}");
        }
        assert_eq!(store_not_built_in("/data/t"), None);
        assert_eq!(store_not_built_in("file:///data/t"), None);
    }

    #[cfg(not(feature = "s3"))]
    #[tokio::test]
    async fn opening_a_table_on_s3_in_a_build_without_s3_names_the_feature() {
        let error = open("s3://b/t", &StorageOptions::default())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("`s3` cargo feature"), "{error}");
    }

    #[test]
    fn signatures_in_error_texts_are_redacted() {
        let text = "GET https://b.s3/x?X-Amz-Credential=AKIA/123&X-Amz-Signature=abc123 failed; sig=s3cr3t&sp=r";
        let clean = without_secrets(text);
        assert!(
            !clean.contains("abc123") && !clean.contains("AKIA") && !clean.contains("s3cr3t"),
            "{clean}"
        );
        assert!(clean.contains("failed"), "{clean}");
    }

    #[tokio::test]
    async fn a_local_table_directory_takes_the_write_probe_and_refuses_a_second_create() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_str().unwrap();
        let table = open_or_empty(location, &StorageOptions::default())
            .await
            .unwrap();
        probe_writable(&table).await.unwrap();
        assert!(honours_conditional_put(&table).await.unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probes leave nothing"
        );
    }
}
