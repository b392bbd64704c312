//! A change whose value Delta cannot hold: `on_error = "fail"` (the default) stops with an
//! error naming table, column and value; `on_error = "dead_letter"` records it and goes on.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{read_delta_rows, PgCluster};

const DB: &str = "cdcdb";

fn run(dir: &Path, cluster: &PgCluster, extra: &str) -> Output {
    let config = format!(
        "[source]\nurl = \"{}\"\nsslmode = \"disable\"\n\n[pipelines.events]\ntables = [\"public.events\"]\ndelta_root = \"{}\"\n{extra}\n",
        cluster.url_without_password(DB),
        dir.join("delta").display()
    );
    std::fs::write(dir.join("pgdelta.toml"), config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(dir.join("pgdelta.toml"))
        .args(["pipeline", "start", "events", "--exit-when-caught-up"])
        .env("PGDELTA_SOURCE_PASSWORD", support::PG_PASSWORD)
        .output()
        .unwrap()
}

fn setup() -> (PgCluster, tempfile::TempDir) {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(
        DB,
        "CREATE TABLE events (id int PRIMARY KEY, happened date)",
    );
    let dir = tempfile::tempdir().unwrap();
    (cluster, dir)
}

// PostgreSQL dates reach year 5874897; Delta (and Spark) dates do not.
const INSERTS: &str = "INSERT INTO events VALUES (1, '2024-01-01');
    INSERT INTO events VALUES (2, '5874897-12-31');
    INSERT INTO events VALUES (3, '2024-01-03');";

#[test]
fn by_default_an_unconvertible_value_stops_the_pipeline_and_names_it() {
    let (cluster, dir) = setup();
    assert!(run(dir.path(), &cluster, "").status.success());
    cluster.psql(DB, INSERTS);
    let output = run(dir.path(), &cluster, "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("public.events")
            && stderr.contains("happened")
            && stderr.contains("5874897-12-31"),
        "{stderr}"
    );
    // Nothing was confirmed: a second run meets the same change again.
    let again = run(dir.path(), &cluster, "");
    assert!(!again.status.success());
}

#[test]
fn with_dead_letter_policy_the_change_is_recorded_and_the_rest_applied() {
    let (cluster, dir) = setup();
    let policy = "on_error = \"dead_letter\"";
    assert!(run(dir.path(), &cluster, policy).status.success());
    cluster.psql(DB, INSERTS);
    let output = run(dir.path(), &cluster, policy);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let rows = read_delta_rows(&dir.path().join("delta/public/events"));
    assert_eq!(
        rows["rows"],
        serde_json::json!([[1, "2024-01-01"], [3, "2024-01-03"]])
    );
    let letters =
        std::fs::read_to_string(dir.path().join("delta/_dead_letters/events.jsonl")).unwrap();
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["table"], "public.events");
    assert_eq!(
        letters[0]["payload"],
        serde_json::json!({"id": "2", "happened": "5874897-12-31"})
    );
    assert!(
        letters[0]["error"].as_str().unwrap().contains("happened"),
        "{}",
        letters[0]
    );
    assert!(letters[0]["lsn"].as_str().unwrap().contains('/'));
}
