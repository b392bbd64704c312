//! Replication slots that cannot silently hurt the source: a slot PostgreSQL invalidated is
//! one clear error (never a retry loop), and a quiet source (changes only in tables the
//! pipeline does not publish) does not make the slot hold WAL without bound.

mod support;

mod harness;

use std::time::Duration;

use harness::{
    assert_txn_versions_strictly_increase, cluster_with_db, delta_as_strings, pg_as_strings,
    terminate, wait_for, Pgdelta, DB,
};

const PIPELINE: &str = r#"
[pipelines.shop]
tables = ["public.items"]
delta_root = "DELTA_ROOT"
batch_interval_ms = 200
"#;

fn the_slot(cluster: &support::PgCluster, column: &str) -> String {
    let sql = format!("SELECT coalesce({column}::text, '') FROM pg_replication_slots");
    cluster.psql(DB, &sql).trim().to_string()
}

/// Writes about `segments` WAL segments of changes to a table the pipeline does not
/// publish, switching to a new segment after each.
fn write_unpublished_wal(cluster: &support::PgCluster, segments: usize) {
    for _ in 0..segments {
        cluster.psql(
            DB,
            "INSERT INTO other SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
             SELECT pg_switch_wal();",
        );
    }
}

#[test]
fn a_slot_postgres_invalidated_is_one_clear_error_and_resnapshot_recovers_it() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE TABLE other (id int, v text);
         INSERT INTO items VALUES (1, 'a');",
    );
    let pg = Pgdelta::new(&cluster, PIPELINE);
    pg.catch_up("shop");
    let slot = the_slot(&cluster, "slot_name");

    // pgdelta is stopped while the source writes far more WAL than it may keep for the slot.
    cluster.psql(DB, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    cluster.psql(DB, "SELECT pg_reload_conf()");
    cluster.psql(DB, "INSERT INTO items VALUES (2, 'b')");
    let lost = wait_for(Duration::from_secs(60), || {
        write_unpublished_wal(&cluster, 2);
        cluster.psql(DB, "CHECKPOINT");
        the_slot(&cluster, "wal_status") == "lost"
    });
    assert!(
        lost,
        "the slot is not lost: wal_status {}, max_slot_wal_keep_size {}",
        the_slot(&cluster, "wal_status"),
        cluster.psql(DB, "SHOW max_slot_wal_keep_size")
    );

    let output = pg.run(&["pipeline", "start", "shop", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "replication slot {slot} was invalidated by PostgreSQL"
        )) && (stderr.contains("wal_status = lost") // 17+ name the reason instead
            || stderr.contains("invalidation_reason = wal_removed"))
            && stderr.contains("pgdelta pipeline drop"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("reconnecting"),
        "an invalidated slot is not retried: {stderr}"
    );

    // Recovery: a new slot, every table copied again in one replacing commit each.
    cluster.psql(
        DB,
        "UPDATE items SET v = 'a2' WHERE id = 1; INSERT INTO items VALUES (3, 'c')",
    );
    let items = pg.table_path("public", "items");
    let version_before = support::read_delta_meta(&items)["version"]
        .as_i64()
        .unwrap();
    let output = pg.run(&[
        "pipeline",
        "start",
        "shop",
        "--resnapshot",
        "--exit-when-caught-up",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains(" ERROR ") && !stderr.contains(" WARN "),
        "{stderr}"
    );
    let query = "SELECT id::text, v FROM items";
    assert_eq!(delta_as_strings(&items), pg_as_strings(&cluster, DB, query));
    assert_eq!(the_slot(&cluster, "wal_status"), "reserved");
    // The change feed of the replacing commit: the old row out, the copied rows in.
    let cdf = support::read_delta_cdf(&items, version_before + 1);
    let mut changes: Vec<String> = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["_change_type"] != "update_preimage")
        .map(|row| {
            format!(
                "{} {}={}",
                row["_change_type"].as_str().unwrap(),
                row["id"],
                row["v"].as_str().unwrap()
            )
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        ["delete 1=a", "insert 1=a2", "insert 2=b", "insert 3=c"],
        "{cdf}"
    );

    // Streaming goes on from the new slot, exactly once.
    cluster.psql(
        DB,
        "INSERT INTO items VALUES (4, 'd'); DELETE FROM items WHERE id = 2",
    );
    pg.catch_up("shop");
    assert_eq!(delta_as_strings(&items), pg_as_strings(&cluster, DB, query));
    assert_txn_versions_strictly_increase(&items);

    // A re-copy that did not finish (here: marked by hand) is never streamed on.
    let marked = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, deltalake; deltalake.DeltaTable(sys.argv[1]).alter.set_table_properties({'pgdelta.resnapshotPending': 'true'}, raise_if_not_exists=False)",
        ])
        .arg(&items)
        .status()
        .unwrap();
    assert!(marked.success());
    let output = pg.run(&["pipeline", "start", "shop", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not finish copying public.items")
            && stderr.contains("pgdelta pipeline start shop --resnapshot` again"),
        "{stderr}"
    );
}

#[test]
fn changes_only_in_unpublished_tables_do_not_make_the_slot_hold_wal() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE TABLE other (id int, v text);",
    );
    let pg = Pgdelta::new(&cluster, PIPELINE);
    pg.catch_up("shop");
    let mut running = pg.spawn("shop", "run.log");
    let retained = || -> i64 {
        cluster
            .psql(
                DB,
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots",
            )
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("retained WAL of the slot: {e}"))
    };
    write_unpublished_wal(&cluster, 8);
    let written = retained();
    assert!(written > 64 << 20, "{written} bytes of WAL written");
    // restart_lsn moves on at the server's next record of running transactions (a
    // checkpoint writes one) after pgdelta confirmed the WAL it had no changes in.
    let released = wait_for(Duration::from_secs(60), || {
        cluster.psql(DB, "CHECKPOINT");
        std::thread::sleep(Duration::from_millis(500));
        retained() < 16 << 20
    });
    let now = retained();
    assert!(terminate(&mut running).success(), "{}", pg.log("run.log"));
    assert!(
        released,
        "the slot still holds {now} of the {written} bytes of WAL written only to an unpublished table:\n{}",
        pg.log("run.log")
    );
}
