//! Smoke test of the test-support module: a private cluster that survives a
//! clean restart and a crash of the postmaster.

mod support;

use support::{pg_rows_as_json, PgCluster, NULL_MARKER};

fn rows(cluster: &PgCluster) -> Vec<Vec<String>> {
    pg_rows_as_json(cluster, "smoke", "SELECT id, name, note FROM t ORDER BY id")
}

#[test]
fn cluster_survives_restart_and_crash() {
    let pg = PgCluster::start();
    assert_eq!(pg.psql("postgres", "SHOW wal_level").trim(), "logical");
    pg.create_database("smoke");
    pg.psql(
        "smoke",
        "CREATE TABLE t (id int PRIMARY KEY, name text, note text);\n\
         INSERT INTO t VALUES (1, 'one', NULL), (2, E'two\\nlines', 'a|b');",
    );
    let expected = vec![
        vec!["1".to_string(), "one".to_string(), NULL_MARKER.to_string()],
        vec!["2".to_string(), "two\nlines".to_string(), "a|b".to_string()],
    ];
    assert_eq!(rows(&pg), expected);
    let identify = pg.psql_replication("smoke", "IDENTIFY_SYSTEM");
    assert!(
        identify.ends_with("|smoke\n"),
        "IDENTIFY_SYSTEM: {identify}"
    );

    pg.stop_fast();
    pg.start_again();
    assert_eq!(rows(&pg), expected, "after a clean restart");

    pg.kill9_postmaster();
    pg.start_again();
    assert_eq!(rows(&pg), expected, "after a crash");
}
