//! Checks that the Delta tables' directories still take writes, so that readiness fails
//! before the next commit does (read-only remount, full disk, changed permissions).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::observe::Observer;

/// Local directories to probe: object-store URIs (`s3://`, ...) are left out; their health
/// shows in the outcome of each commit.
pub fn local_table_dirs<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<PathBuf> {
    paths
        .into_iter()
        .filter(|path| !path.contains("://") || path.starts_with("file://"))
        .map(|path| PathBuf::from(path.trim_start_matches("file://")))
        .collect()
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

/// Every `every`, probes each directory and reports the outcome to `observer`.
pub fn spawn_sink_probe(
    dirs: Vec<PathBuf>,
    observer: Arc<Observer>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let dirs = dirs.clone();
            let outcome =
                tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|d| probe_dir(d)))
                    .await
                    .unwrap_or_else(|error| Err(format!("write probe failed: {error}")));
            observer.sink_probed(outcome);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_local_directories_only() {
        let dirs = local_table_dirs(["./delta/a", "s3://bucket/b", "file:///data/c"]);
        assert_eq!(
            dirs,
            vec![PathBuf::from("./delta/a"), PathBuf::from("/data/c")]
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
