//! Replication slots that cannot silently hurt the source: a slot PostgreSQL invalidated is
//! one clear error (never a retry loop), and a quiet source (changes only in tables the
//! pipeline does not publish) does not make the slot hold WAL without bound.

mod support;

mod harness;

use std::time::Duration;

use harness::{cluster_with_db, terminate, wait_for, Pgdelta, DB};

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
fn a_slot_postgres_invalidated_is_one_clear_error_naming_it() {
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
        )) && stderr.contains("wal_status = lost")
            && stderr.contains("pgdelta pipeline drop"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("reconnecting"),
        "an invalidated slot is not retried: {stderr}"
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
