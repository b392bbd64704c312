//! Standbys: a pipeline that decodes its changes on a hot standby (PostgreSQL 16+), and a
//! failover slot (17+) that a standby keeps in sync, so that the pipeline goes on from the
//! promoted standby with nothing lost or applied twice.
//!
//! The standby is a copy of the primary's data directory streaming through a physical slot
//! (`PgCluster::start_standby_of`). A major that is not installed is skipped with a note.

mod harness;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::{assert_txn_versions_strictly_increase, kill9, slot_exists, wait_for, Pgdelta, DB};
use support::{
    delta_as_strings, describe_row_differences, installed_or_skipped, pg_as_strings,
    read_delta_cdf, PgCluster,
};

const PIPELINE: &str = r#"
[pipelines.replica]
tables = ["public.items"]
publication = "cdc_pub"
slot = "replica_slot"
delta_root = "DELTA_ROOT"
batch_size = 200
batch_interval_ms = 100
"#;

const ITEMS: &str = "SELECT id::text, label FROM items";

/// A primary with `items` (500 rows) in the publication `cdc_pub`, and its hot standby.
fn primary_and_standby(major: u32, standby_settings: &str) -> (PgCluster, PgCluster) {
    let primary = PgCluster::start_version(major);
    primary.create_database(DB);
    primary.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, label text);
         INSERT INTO items SELECT g, 'before ' || g FROM generate_series(1, 500) g;
         CREATE PUBLICATION cdc_pub FOR TABLE items;",
    );
    let standby = PgCluster::start_standby_of(&primary, "standby_phys", standby_settings);
    primary.wait_replayed_by(&standby);
    (primary, standby)
}

/// Changes on the primary: inserts from `from`, updates and deletes of older rows.
fn change_rows(primary: &PgCluster, from: u32) {
    primary.psql(
        DB,
        &format!(
            "INSERT INTO items SELECT g, 'new ' || g FROM generate_series({from}, {}) g;
             UPDATE items SET label = label || '+' WHERE id % 7 = 0 AND id < {from};
             DELETE FROM items WHERE id % 11 = 0 AND id < {from};",
            from + 299
        ),
    );
}

fn assert_delta_equals(pgdelta: &Pgdelta, source: &PgCluster, when: &str) {
    let delta = delta_as_strings(&pgdelta.table_path("public", "items"));
    let pg = pg_as_strings(source, DB, ITEMS);
    assert!(
        delta == pg,
        "{when}: Delta differs from PostgreSQL: {}",
        describe_row_differences(&delta, &pg)
    );
}

/// No row was inserted twice: the change feed holds `expected` inserts of distinct keys.
fn assert_inserted_once(pgdelta: &Pgdelta, expected: usize) {
    let cdf = read_delta_cdf(&pgdelta.table_path("public", "items"), 0);
    let mut ids: Vec<i64> = cdf["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["_change_type"] == "insert")
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    let inserts = ids.len();
    ids.dedup();
    assert_eq!(
        inserts,
        ids.len(),
        "a row was inserted twice in the change feed"
    );
    assert_eq!(inserts, expected, "inserts in the change feed");
}

/// Runs `work` while the primary logs its running transactions every half second: a slot
/// created on a standby waits for that record (the primary writes one every 15 s when busy).
fn hurrying_slot_creation<T>(primary: &PgCluster, work: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                primary.psql("postgres", "SELECT pg_log_standby_snapshot()");
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}

#[test]
fn a_pipeline_decodes_its_changes_on_a_standby() {
    for major in [16, 18] {
        if installed_or_skipped(major) {
            decodes_on_a_standby(major);
        }
    }
}

fn decodes_on_a_standby(major: u32) {
    let (primary, standby) = primary_and_standby(major, "");
    let pgdelta = Pgdelta::new(&standby, PIPELINE);

    // Snapshot and slot on the standby; nothing is created on the primary.
    hurrying_slot_creation(&primary, || pgdelta.catch_up("replica"));
    assert_delta_equals(&pgdelta, &primary, &format!("PostgreSQL {major}, snapshot"));
    assert!(
        slot_exists(&standby, "replica_slot"),
        "PostgreSQL {major}: no slot on the standby"
    );
    assert!(
        !slot_exists(&primary, "replica_slot"),
        "PostgreSQL {major}: a slot on the primary"
    );

    // Changes made on the primary reach Delta through the standby's WAL; a caught-up run
    // ends at what the standby had replayed when it started.
    change_rows(&primary, 1_000);
    primary.wait_replayed_by(&standby);
    pgdelta.catch_up("replica");
    assert_delta_equals(&pgdelta, &primary, &format!("PostgreSQL {major}, streamed"));
    assert_inserted_once(&pgdelta, 800);

    // A table the publication lacks: the standby cannot add it, so one error says what to
    // run on the primary.
    primary.psql(DB, "CREATE TABLE extra (id int PRIMARY KEY)");
    primary.wait_replayed_by(&standby);
    pgdelta.configure(&PIPELINE.replace(
        r#"tables = ["public.items"]"#,
        r#"tables = ["public.items", "public.extra"]"#,
    ));
    let output = pgdelta.run(&["pipeline", "start", "replica", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("the source is a standby")
            && stderr.contains(r#"ALTER PUBLICATION "cdc_pub" ADD TABLE "public"."extra""#),
        "PostgreSQL {major}: a missing table on a standby is not one clear error:\n{stderr}"
    );
    assert!(
        !pgdelta.table_path("public", "extra").exists(),
        "PostgreSQL {major}: a Delta table was created although a check failed"
    );
}

#[test]
fn the_pipeline_goes_on_from_a_promoted_standby_through_its_failover_slot() {
    let major = 17;
    if !installed_or_skipped(major) {
        return;
    }
    // The primary holds logical changes back until the standby has their WAL, so the synced
    // slot never confirms more than the standby has.
    let (primary, standby) = primary_and_standby(major, "sync_replication_slots = on");
    primary.psql(
        "postgres",
        "ALTER SYSTEM SET synchronized_standby_slots = 'standby_phys'; SELECT pg_reload_conf();",
    );
    let with_failover = format!("{PIPELINE}failover = true\n");
    let mut pgdelta = Pgdelta::new(&primary, &with_failover);
    pgdelta.catch_up("replica");
    assert_delta_equals(&pgdelta, &primary, "snapshot");

    // Stream on the primary; kill pgdelta mid-stream, so the slot's position trails Delta's.
    let mut run = pgdelta.spawn("replica", "primary.log");
    for round in 0..5 {
        change_rows(&primary, 1_000 + round * 300);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    // The standby's copy of the slot stays temporary until the primary's slot has moved past
    // where the standby started it, which only a running pipeline does: kill it after that.
    let persistent = "SELECT synced AND NOT temporary FROM pg_replication_slots \
                      WHERE slot_name = 'replica_slot'";
    assert!(
        wait_for(Duration::from_secs(90), || standby
            .psql("postgres", persistent)
            .trim()
            == "t"),
        "the standby did not sync the failover slot while the pipeline ran"
    );
    change_rows(&primary, 2_600);
    std::thread::sleep(Duration::from_secs(1));
    kill9(&mut run);
    change_rows(&primary, 3_000); // made after the kill: only the standby's copy has them
    primary.wait_replayed_by(&standby);
    let confirmed = primary.psql(
        "postgres",
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'replica_slot'",
    );
    let synced = format!(
        "SELECT synced AND confirmed_flush_lsn >= '{}' FROM pg_replication_slots \
         WHERE slot_name = 'replica_slot'",
        confirmed.trim()
    );
    assert!(
        wait_for(Duration::from_secs(90), || standby
            .psql("postgres", &synced)
            .trim()
            == "t"),
        "the standby did not sync the failover slot up to the primary's {}",
        confirmed.trim()
    );

    // The primary fails; the standby is promoted and the pipeline pointed at it.
    primary.stop_immediate();
    standby.promote();
    change_rows(&standby, 4_000);
    pgdelta.switch_source(&standby, &with_failover);
    pgdelta.catch_up("replica");

    assert_delta_equals(&pgdelta, &standby, "after the promotion");
    assert_inserted_once(&pgdelta, 500 + 8 * 300);
    assert_txn_versions_strictly_increase(&pgdelta.table_path("public", "items"));
}

#[test]
fn a_standby_before_16_is_refused_before_anything_is_created() {
    let major = 15;
    if !installed_or_skipped(major) {
        return;
    }
    let (_primary, standby) = primary_and_standby(major, "");
    let pgdelta = Pgdelta::new(&standby, PIPELINE);
    let output = pgdelta.run(&["pipeline", "start", "replica", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("logical decoding on a standby needs PostgreSQL 16 or later"),
        "a standby of PostgreSQL 15 is not refused by name:\n{stderr}"
    );
    assert!(!slot_exists(&standby, "replica_slot"));
    assert!(!pgdelta.table_path("public", "items").exists());
}
