//! Table maintenance end to end: compaction while streaming (and killed in the middle of it),
//! `pgdelta table optimize` racing the running pipeline, and `pgdelta table vacuum`.

mod support;

mod harness;

use std::time::Duration;

use harness::{
    assert_txn_versions_strictly_increase, cluster_with_db, commit_operations, delta_as_strings,
    kill9, pg_as_strings, terminate, Pgdelta, DB,
};

const ROWS: &str = "SELECT id::text, v::text FROM items";

fn pipeline(maintenance: &str) -> String {
    format!(
        r#"
[pipelines.shop]
tables = ["public.items"]
delta_root = "DELTA_ROOT"
batch_size = 50
batch_interval_ms = 100

[pipelines.shop.maintenance]
{maintenance}
"#
    )
}

/// A cluster with the `items` table and a pipeline on it, caught up once.
fn items_pipeline(maintenance: &str) -> (support::PgCluster, Pgdelta) {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id int PRIMARY KEY, v int)");
    let pg = Pgdelta::new(&cluster, &pipeline(maintenance));
    pg.catch_up("shop");
    (cluster, pg)
}

fn files(pg: &Pgdelta) -> usize {
    let meta = support::read_delta_meta(&pg.table_path("public", "items"));
    meta["files"].as_u64().unwrap() as usize
}

/// Inserts (appended: one new file per batch), and every fourth round an update and a delete
/// of earlier rows (MERGEd).
fn write_some(cluster: &support::PgCluster, round: usize) {
    let base = round * 100;
    cluster.psql(
        DB,
        &format!("INSERT INTO items SELECT i, 0 FROM generate_series({base}, {base} + 99) i"),
    );
    if round % 4 == 3 {
        cluster.psql(
            DB,
            &format!("UPDATE items SET v = v + 1 WHERE id = {base} - 50; DELETE FROM items WHERE id = {base} - 7"),
        );
    }
}

/// `target_file_size_mb` becomes the table's `delta.targetFileSize`, which the initial copy
/// (like MERGE, OPTIMIZE and other engines) rolls its files at: a copy of a table clustered
/// by its key is a run of key-ranged files, of which a MERGE of recent keys rewrites few.
#[test]
fn the_initial_copy_is_written_in_files_of_the_target_size() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         INSERT INTO items SELECT i, md5(i::text) || md5((-i)::text) FROM generate_series(1, 100000) i",
    );
    let pg = Pgdelta::new(&cluster, &pipeline("target_file_size_mb = 1"));
    pg.catch_up("shop");
    let meta = support::read_delta_meta(&pg.table_path("public", "items"));
    assert_eq!(meta["configuration"]["delta.targetFileSize"], "1048576");
    assert!(files(&pg) >= 3, "{} files", files(&pg));
    let table = pg.table_path("public", "items");
    assert_eq!(delta_as_strings(&table), pg_as_strings(&cluster, DB, ROWS));
}

#[test]
fn compaction_while_streaming_survives_kills_and_keeps_rows_and_positions() {
    let (cluster, pg) = items_pipeline("compact_min_files = 3");
    for kill in 0..4 {
        let mut running = pg.spawn("shop", "run.log");
        for round in 0..6 {
            write_some(&cluster, kill * 6 + round);
            std::thread::sleep(Duration::from_millis(150));
        }
        kill9(&mut running);
    }
    // The log line of a compaction comes with the pipeline's next commit after it, which a
    // kill on a loaded machine can preclude; its commit in the Delta log cannot be missed.
    let table = pg.table_path("public", "items");
    let while_streaming = commit_operations(&table);
    assert!(
        while_streaming
            .iter()
            .any(|(_, operation)| operation == "OPTIMIZE"),
        "no compaction while streaming: {while_streaming:?}\n{}",
        pg.log("run.log")
    );
    pg.catch_up("shop");
    assert_eq!(delta_as_strings(&table), pg_as_strings(&cluster, DB, ROWS));
    assert_txn_versions_strictly_increase(&table);
    assert!(files(&pg) < 10, "{} files after compaction", files(&pg));
}

#[test]
fn table_optimize_races_the_running_pipeline_and_vacuum_removes_only_what_is_old_and_unused() {
    let (cluster, pg) = items_pipeline("enabled = false");
    let mut running = pg.spawn("shop", "run.log");
    for round in 0..12 {
        write_some(&cluster, round);
        if round % 3 == 2 {
            let out = pg.run_ok(&["table", "optimize", "shop", "--zorder-by", "id"]);
            assert!(out.contains("public.items"), "{out}");
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(terminate(&mut running).success(), "{}", pg.log("run.log"));
    pg.catch_up("shop");
    let table = pg.table_path("public", "items");
    assert_eq!(delta_as_strings(&table), pg_as_strings(&cluster, DB, ROWS));
    assert_txn_versions_strictly_increase(&table);

    let refused = pg.run(&["table", "vacuum", "shop", "--retention-hours", "1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let kept = pg.run_ok(&["table", "vacuum", "shop", "--dry-run"]);
    assert!(
        kept.contains("would delete 0 files"),
        "within the retention nothing goes: {kept}"
    );
    let parquet = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
    };
    let before = parquet(&table);
    let dry = pg.run_ok(&[
        "table",
        "vacuum",
        "shop",
        "--retention-hours",
        "0",
        "--force",
        "--dry-run",
    ]);
    assert!(!dry.contains("would delete 0 files"), "{dry}");
    assert_eq!(parquet(&table), before, "a dry run deletes nothing");
    pg.run_ok(&[
        "table",
        "vacuum",
        "shop",
        "--retention-hours",
        "0",
        "--force",
    ]);
    assert!(parquet(&table) < before, "unreferenced files are deleted");
    assert_eq!(
        parquet(&table),
        files(&pg),
        "every file the latest version references is kept"
    );
    assert_eq!(delta_as_strings(&table), pg_as_strings(&cluster, DB, ROWS));
}
