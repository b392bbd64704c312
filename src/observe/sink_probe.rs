//! Checks that the Delta tables' locations still take writes, so that readiness fails
//! before the next commit does (read-only remount, full disk, changed permissions, an object
//! store that is down or refuses the credentials).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::StorageOptions;
use crate::observe::Observer;
use crate::sink::delta::storage;

/// Where one table's writability is probed.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeTarget {
    /// A local table directory: a hidden file is created and removed.
    Dir(PathBuf),
    /// A table on an object store: a small object is put and deleted under its prefix.
    Store {
        location: String,
        storage: StorageOptions,
    },
}

/// What to probe for each table location.
pub fn probe_targets<'a>(
    tables: impl IntoIterator<Item = (&'a str, &'a StorageOptions)>,
) -> Vec<ProbeTarget> {
    tables
        .into_iter()
        .map(|(path, options)| match storage::is_object_store(path) {
            true => ProbeTarget::Store {
                location: path.to_string(),
                storage: options.clone(),
            },
            false => ProbeTarget::Dir(PathBuf::from(path.trim_start_matches("file://"))),
        })
        .collect()
}

/// Whether pgdelta can write where `target` says.
pub async fn probe(target: &ProbeTarget) -> Result<(), String> {
    match target {
        ProbeTarget::Dir(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || probe_dir(&dir))
                .await
                .unwrap_or_else(|error| Err(format!("write probe failed: {error}")))
        }
        ProbeTarget::Store { location, storage } => {
            let table = storage::unloaded(location, storage).map_err(|error| {
                format!(
                    "cannot reach Delta table {location}: {}",
                    storage::without_secrets(&error.to_string())
                )
            })?;
            storage::probe_writable(&table).await
        }
    }
}

/// Creates and removes a hidden file in `dir` (Delta ignores files its log does not name).
pub fn probe_dir(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".pgdelta-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|error| {
            format!(
                "cannot write to Delta table directory {}: {error}",
                dir.display()
            )
        })
}

/// Every `every`, probes each table's location and reports the outcome to `observer`.
pub fn spawn_sink_probe(
    targets: Vec<ProbeTarget>,
    observer: Arc<Observer>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let mut outcome = Ok(());
            for target in &targets {
                outcome = probe(target).await;
                if outcome.is_err() {
                    break;
                }
            }
            observer.sink_probed(outcome);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_probed_as_directories_and_urls_on_their_store() {
        let none = StorageOptions::default();
        let targets = probe_targets([
            ("./delta/a", &none),
            ("s3://bucket/b", &none),
            ("file:///data/c", &none),
        ]);
        assert_eq!(
            targets,
            vec![
                ProbeTarget::Dir(PathBuf::from("./delta/a")),
                ProbeTarget::Store {
                    location: "s3://bucket/b".into(),
                    storage: none.clone()
                },
                ProbeTarget::Dir(PathBuf::from("/data/c")),
            ]
        );
    }

    #[test]
    fn a_writable_directory_passes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        probe_dir(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_that_cannot_take_files_fails_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let error = probe_dir(&not_a_dir).unwrap_err();
        assert!(error.contains(&not_a_dir.display().to_string()), "{error}");
    }
}
