//! Reliability: dropping a pipeline, two processes of one pipeline, two pipelines on one
//! Delta path, and a chaos test (SIGKILLed pgdelta, restarted PostgreSQL, mixed workload).
//!
//! The chaos test runs for `PGDELTA_CHAOS_SECONDS` (default 45) of chaos; see
//! docs/reliability.md for the long form.

#[path = "harness/mod.rs"]
mod harness;
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{
    assert_each_key_inserted_once, assert_txn_versions_strictly_increase, cluster_with_db,
    delta_as_strings, kill9, pg_as_strings, publication_exists, slot_exists, terminate, wait_for,
    wait_until, Pgdelta, DB,
};
use support::PgCluster;

const ITEMS_ROWS: &str = "SELECT id::text, label FROM items";

fn items_pipeline(name: &str, extra: &str) -> String {
    format!(
        "[pipelines.{name}]\ntables = [\"public.items\"]\ndelta_root = \"DELTA_ROOT\"\n\
         batch_size = 200\nbatch_interval_ms = 100\n{extra}\n"
    )
}

fn insert_items(cluster: &PgCluster, from: i64, transactions: i64, rows_each: i64) {
    harness::insert_labelled_rows(cluster, "items", "item", from, transactions, rows_each);
}

fn slot_active(cluster: &PgCluster, slot: &str) -> bool {
    let sql = format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'");
    cluster.psql(DB, &sql).trim() == "t"
}

fn delta_rows(pgdelta: &Pgdelta, pipeline: &str) -> Option<u64> {
    let output = pgdelta.run(&["pipeline", "status", pipeline, "--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    parsed[0]["rows"].as_u64()
}

#[test]
fn drop_removes_slot_and_publication_and_keeps_the_delta_tables() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, &items_pipeline("d", ""));
    pgdelta.catch_up("d");
    insert_items(&cluster, 0, 5, 10);
    pgdelta.catch_up("d");
    pgdelta.run_ok(&["pipeline", "status", "d"]);
    assert!(
        slot_exists(&cluster, "pgdelta_d"),
        "a run must not drop the slot"
    );
    assert!(publication_exists(&cluster, "pgdelta_d"));

    // While a process streams from the slot, the drop must fail and leave everything.
    let mut running = pgdelta.spawn("d", "running.log");
    wait_until("the slot to be active", Duration::from_secs(60), || {
        slot_active(&cluster, "pgdelta_d")
    });
    let refused = pgdelta.run(&["pipeline", "drop", "d"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "drop of an active slot succeeded"
    );
    assert!(stderr.contains("is active"), "unclear refusal: {stderr}");
    assert!(slot_exists(&cluster, "pgdelta_d"));
    assert!(terminate(&mut running).success());

    let out = pgdelta.run_ok(&["pipeline", "drop", "d"]);
    assert!(out.contains("Delta tables kept"), "{out}");
    assert!(!slot_exists(&cluster, "pgdelta_d"));
    assert!(!publication_exists(&cluster, "pgdelta_d"));
    let path = pgdelta.table_path("public", "items");
    assert_eq!(
        delta_as_strings(&path),
        pg_as_strings(&cluster, DB, ITEMS_ROWS)
    );
    let status = pgdelta.status("d");
    assert_eq!(status[0]["rows"], 50);

    // Dropping again is harmless.
    pgdelta.run_ok(&["pipeline", "drop", "d"]);
}

/// PostgreSQL's fast shutdown waits for logical walsenders to have their WAL confirmed; a
/// caught-up, idle pgdelta must not hold it up.
/// SIGTERM while pgdelta waits between reconnect attempts ends it at once, not after the
/// (growing) backoff delay.
#[test]
fn sigterm_during_reconnect_backoff_stops_promptly() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, &items_pipeline("backoff", ""));
    pgdelta.catch_up("backoff");
    let mut running = pgdelta.spawn("backoff", "backoff.log");
    wait_until("the slot to be active", Duration::from_secs(60), || {
        slot_active(&cluster, "pgdelta_backoff")
    });
    cluster.stop_fast();
    wait_until(
        "the sixth reconnect attempt (an 8 s backoff)",
        Duration::from_secs(60),
        || {
            pgdelta
                .log("backoff.log")
                .lines()
                .any(|l| l.contains("reconnecting") && l.contains("attempt=6"))
        },
    );
    let started = Instant::now();
    let status = terminate(&mut running);
    let took = started.elapsed();
    cluster.start_again();
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM during backoff took {took:?}"
    );
    assert!(status.success(), "{}", pgdelta.log("backoff.log"));
}

#[test]
fn a_fast_shutdown_with_an_idle_caught_up_pgdelta_is_quick() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, &items_pipeline("idle", ""));
    pgdelta.catch_up("idle");
    let mut running = pgdelta.spawn("idle", "idle.log");
    insert_items(&cluster, 0, 5, 10);
    wait_until("50 rows in Delta", Duration::from_secs(60), || {
        delta_rows(&pgdelta, "idle") == Some(50)
    });
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    stop_fast_patiently(&cluster);
    let took = started.elapsed();
    cluster.start_again();
    terminate(&mut running);
    println!("fast shutdown with an idle pgdelta took {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "fast shutdown took {took:?}"
    );
}

#[test]
fn a_second_process_of_the_same_pipeline_cannot_take_the_active_slot() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE items (id bigint PRIMARY KEY, label text)");
    let pgdelta = Pgdelta::new(&cluster, &items_pipeline("same", ""));
    pgdelta.catch_up("same");

    let mut first = pgdelta.spawn("same", "first.log");
    wait_until("the slot to be active", Duration::from_secs(60), || {
        slot_active(&cluster, "pgdelta_same")
    });
    let mut second = pgdelta.spawn("same", "second.log");
    insert_items(&cluster, 0, 50, 20);
    wait_until(
        "the second process to be refused",
        Duration::from_secs(60),
        || pgdelta.log("second.log").contains("is active for PID"),
    );
    insert_items(&cluster, 1_000, 50, 20);
    wait_until("2000 rows in Delta", Duration::from_secs(60), || {
        delta_rows(&pgdelta, "same") == Some(2_000)
    });
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first process died"
    );

    // The first one goes away: the second takes over the slot (or has given up cleanly).
    assert!(
        terminate(&mut first).success(),
        "{}",
        pgdelta.log("first.log")
    );
    insert_items(&cluster, 2_000, 20, 10);
    let second_took_over = match second.try_wait().unwrap() {
        Some(_) => false,
        None => wait_for(Duration::from_secs(90), || {
            delta_rows(&pgdelta, "same") == Some(2_200)
        }),
    };
    println!(
        "second process took over the slot after the first stopped: {second_took_over}; \
         its end: {}; last error: {}",
        stop_or_exit(&mut second),
        last_error(&pgdelta.log("second.log"))
    );
    assert!(
        second_took_over,
        "the waiting process did not take over:\n{}",
        pgdelta.log("second.log")
    );

    pgdelta.catch_up("same");
    let path = pgdelta.table_path("public", "items");
    assert_eq!(
        delta_as_strings(&path),
        pg_as_strings(&cluster, DB, ITEMS_ROWS)
    );
    assert_txn_versions_strictly_increase(&path);
    assert_each_key_inserted_once(&path, 2_200);
}

/// Two pipelines configured by mistake with the same Delta path for the same source table,
/// started at once: the table records which pipeline created it, so the other is refused.
#[test]
fn two_pipelines_writing_one_delta_path_never_corrupt_it() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE items (id bigint PRIMARY KEY, label text);
         INSERT INTO items SELECT g, 'initial ' || g FROM generate_series(1, 500) g;",
    );
    let shared = "[pipelines.a.table.\"public.items\"]\npath = \"DELTA_ROOT/shared/items\"\n";
    let shared_b = shared.replace("pipelines.a", "pipelines.b");
    let config = format!(
        "{}{shared}\n{}{shared_b}",
        items_pipeline("a", ""),
        items_pipeline("b", "")
    );
    let pgdelta = Pgdelta::new(&cluster, &config);
    let path = pgdelta.delta_root().join("shared").join("items");

    // Both start at once on a table that does not exist yet, and stream a workload.
    let mut a = pgdelta.spawn("a", "a.log");
    let mut b = pgdelta.spawn("b", "b.log");
    for round in 0..20 {
        let from = 1_000 + round * 100;
        cluster.psql(
            DB,
            &format!(
                "INSERT INTO items SELECT g, 'round {round}' FROM generate_series({from}, {}) g;
                 UPDATE items SET label = label || '+' WHERE id % 20 = {};
                 DELETE FROM items WHERE id % 50 = {};",
                from + 99,
                round % 20,
                round % 50
            ),
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_secs(3));
    let a_exit = stop_or_exit(&mut a);
    let b_exit = stop_or_exit(&mut b);
    let (a_log, b_log) = (pgdelta.log("a.log"), pgdelta.log("b.log"));
    println!("pipeline a: {a_exit}; last error: {}", last_error(&a_log));
    println!("pipeline b: {b_exit}; last error: {}", last_error(&b_log));
    let refused = [&a_log, &b_log]
        .iter()
        .filter(|log| log.contains("it was not written by this pipeline"))
        .count();
    assert_eq!(
        refused, 1,
        "exactly one pipeline is refused the shared path"
    );

    // Whatever happened, the table is readable by an independent reader.
    let rows_now = support::read_delta_rows(&path);
    assert!(rows_now["rows"].is_array());
    let appids: std::collections::BTreeSet<String> = harness::txn_actions(&path)
        .into_iter()
        .map(|t| t.app_id)
        .collect();
    println!("appIds in the shared table's log: {appids:?}");
    println!("shared table's log:\n{}", describe_log(&path));

    // A catch-up of one pipeline: readable and equal to PostgreSQL, or a clean refusal.
    let output = pgdelta.run(&["pipeline", "start", "a", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    println!(
        "catch-up of a afterwards: {}; last error: {}",
        output.status,
        last_error(&stderr)
    );
    if output.status.success() {
        assert_same_rows(
            &delta_as_strings(&path),
            &pg_as_strings(&cluster, DB, ITEMS_ROWS),
        );
    } else {
        assert!(
            stderr.contains("not written by this pipeline") || stderr.contains("concurren"),
            "the failure is not a clean refusal:\n{stderr}"
        );
    }
    assert_txn_versions_strictly_increase(&path);
}

/// One line per Delta commit: its version and the kinds of its actions.
fn describe_log(table: &std::path::Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            let kinds: Vec<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v.as_object().and_then(|o| o.keys().next().cloned()))
                .collect();
            format!(
                "  {}: {}",
                file.file_name().unwrap().to_string_lossy(),
                kinds.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Like `assert_eq!`, with a short message for large tables.
fn assert_same_rows(delta: &[Vec<String>], pg: &[Vec<String>]) {
    if delta == pg {
        return;
    }
    let mut keys: Vec<&String> = delta.iter().map(|r| &r[0]).collect();
    let total = keys.len();
    keys.dedup();
    let extra: Vec<&Vec<String>> = delta.iter().filter(|r| !pg.contains(r)).take(5).collect();
    let missing: Vec<&Vec<String>> = pg.iter().filter(|r| !delta.contains(r)).take(5).collect();
    panic!(
        "Delta differs from PostgreSQL: {} rows in Delta ({} duplicate keys), {} in PostgreSQL; \
         e.g. only in Delta: {extra:?}; only in PostgreSQL: {missing:?}",
        total,
        total - keys.len(),
        pg.len()
    );
}

/// SIGTERM when still running (reported as "stopped"), else the exit it already made.
fn stop_or_exit(child: &mut Child) -> String {
    match child.try_wait().unwrap() {
        Some(status) => format!("had exited by itself with {status}"),
        None => format!("still running, then stopped with {}", terminate(child)),
    }
}

fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.starts_with("error") || l.contains(" ERROR "))
        .unwrap_or("(none)")
        .chars()
        .take(600)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Chaos

const CHAOS_TABLES: &str = "
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
CREATE TABLE orders (id bigint PRIMARY KEY, account int NOT NULL, amount numeric(12,2), status text);
CREATE TABLE events (kind text, seq bigint, payload text, PRIMARY KEY (kind, seq));
INSERT INTO accounts SELECT g, 1000, 'start' FROM generate_series(1, 200) g;
";

const CHAOS_PIPELINE: &str = r#"
[pipelines.chaos]
tables = ["public.accounts", "public.orders", "public.events"]
delta_root = "DELTA_ROOT"
batch_size = 3000
batch_interval_ms = 300
"#;

const CHAOS_QUERIES: [(&str, &str); 3] = [
    (
        "accounts",
        "SELECT id::text, balance::text, note FROM accounts",
    ),
    (
        "orders",
        "SELECT id::text, account::text, amount::text, status FROM orders",
    ),
    ("events", "SELECT kind, seq::text, payload FROM events"),
];

/// A small deterministic generator (xorshift64*), so no extra crate is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct WorkloadCounts {
    transactions: AtomicU64,
    big_transactions: AtomicU64,
    failed_batches: AtomicU64,
}

/// One psql run: several transactions, each either small (a few rows over the three
/// tables) or big (thousands of rows in `events`).
fn workload_script(rng: &mut Rng, step: u64, counts: &mut (u64, u64)) -> String {
    let mut sql = String::new();
    for t in 0..4 {
        let n = step * 4 + t;
        if rng.below(12) == 0 {
            let kind = ["click", "view", "buy"][rng.below(3) as usize];
            let body = match rng.below(3) {
                0 => format!(
                    "INSERT INTO events SELECT '{kind}', g, md5(g::text) FROM generate_series({}, {}) g \
                     ON CONFLICT (kind, seq) DO UPDATE SET payload = 'again ' || {n};",
                    n * 10_000,
                    n * 10_000 + 1_999 + rng.below(2_000)
                ),
                1 => format!(
                    "UPDATE events SET payload = 'bulk {n}' WHERE seq % 3 = {};",
                    rng.below(3)
                ),
                _ => format!(
                    "DELETE FROM events WHERE kind = '{kind}' AND seq % 5 = {};",
                    rng.below(5)
                ),
            };
            sql.push_str(&format!("BEGIN; {body} COMMIT;\n"));
            counts.1 += 1;
        } else {
            let a = 1 + rng.below(200);
            let b = 1 + rng.below(200);
            let amount = rng.below(500);
            let order = rng.below(5_000);
            sql.push_str(&format!(
                "BEGIN;
                 UPDATE accounts SET balance = balance - {amount}, note = 'tx {n}' WHERE id = {a};
                 UPDATE accounts SET balance = balance + {amount} WHERE id = {b};
                 INSERT INTO orders VALUES ({order}, {a}, {amount}.{cents}, 'new')
                   ON CONFLICT (id) DO UPDATE SET status = 'changed {n}', amount = orders.amount + 1;
                 DELETE FROM orders WHERE id = {victim};
                 INSERT INTO events VALUES ('small', {n}, NULL) ON CONFLICT DO NOTHING;
                 COMMIT;\n",
                cents = rng.below(100),
                victim = rng.below(5_000),
            ));
        }
        counts.0 += 1;
    }
    sql
}

fn run_workload_psql(port: u16, sql: &str) -> bool {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres dbname={DB} connect_timeout=5");
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            &conninfo,
            "-f",
            "-",
        ])
        .env("PGPASSWORD", support::PG_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(sql.as_bytes());
    }
    child.wait().map(|s| s.success()).unwrap_or(false)
}

/// Runs transactions until `stop`; a batch that fails (server restarting) is counted and
/// the next one goes on after a short pause. Committed-or-not is decided by PostgreSQL.
fn workload(port: u16, stop: &AtomicBool, counts: &WorkloadCounts) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut step = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = (0, 0);
        let sql = workload_script(&mut rng, step, &mut batch);
        step += 1;
        if run_workload_psql(port, &sql) {
            counts.transactions.fetch_add(batch.0, Ordering::Relaxed);
            counts
                .big_transactions
                .fetch_add(batch.1, Ordering::Relaxed);
        } else {
            counts.failed_batches.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `pg_ctl stop -m fast` with a long timeout. A fast shutdown waits until every logical
/// walsender has sent all WAL and its client confirmed it, i.e. until pgdelta has written
/// its backlog to Delta: on a loaded machine that can exceed pg_ctl's usual 60 s.
fn stop_fast_patiently(cluster: &PgCluster) {
    let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("bin/pg_ctl"))
                .filter(|p| p.exists())
                .max()
        })
        .unwrap_or_else(|| "pg_ctl".into());
    let started = Instant::now();
    let output = harness::as_postgres_user(&pg_ctl.to_string_lossy())
        .args(["stop", "-w", "-t", "600", "-m", "fast", "-D"])
        .arg(cluster.data_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pg_ctl stop -m fast: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if started.elapsed() > Duration::from_secs(10) {
        println!(
            "fast shutdown took {:?} (waiting for pgdelta to confirm its backlog)",
            started.elapsed()
        );
    }
}

#[derive(Debug, Default)]
struct ChaosCounts {
    pgdelta_kills: u32,
    pgdelta_unexpected_exits: u32,
    pg_fast_restarts: u32,
    pg_immediate_restarts: u32,
}

fn chaos_seconds() -> u64 {
    std::env::var("PGDELTA_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45)
}

/// Restarts pgdelta when it has exited by itself, counting it.
fn keep_running(pgdelta: &Pgdelta, child: &mut Child, counts: &mut ChaosCounts) {
    if let Some(status) = child.try_wait().unwrap() {
        counts.pgdelta_unexpected_exits += 1;
        let log = pgdelta.log("chaos.log");
        println!("pgdelta exited by itself ({status}): {}", last_error(&log));
        *child = pgdelta.spawn("chaos", "chaos.log");
    }
}

#[test]
fn chaos_kills_and_restarts_end_equal_with_no_transaction_applied_twice() {
    let started = Instant::now();
    let cluster = cluster_with_db();
    cluster.psql(DB, CHAOS_TABLES);
    let pgdelta = Pgdelta::new(&cluster, CHAOS_PIPELINE);
    pgdelta.catch_up("chaos");

    let stop = AtomicBool::new(false);
    let workload_counts = WorkloadCounts::default();
    let mut counts = ChaosCounts::default();
    let chaos_for = Duration::from_secs(chaos_seconds());
    std::thread::scope(|scope| {
        let port = cluster.port();
        let (stop, wc) = (&stop, &workload_counts);
        let load = scope.spawn(move || workload(port, stop, wc));
        // A panic below must still end the workload thread, or the scope never returns.
        let _stop_on_panic = StopOnDrop(stop);
        let mut child = pgdelta.spawn("chaos", "chaos.log");
        let mut rng = Rng(42);
        let chaos_started = Instant::now();
        let mut step = 0u32;
        while chaos_started.elapsed() < chaos_for {
            std::thread::sleep(Duration::from_millis(1_500 + rng.below(2_500)));
            keep_running(&pgdelta, &mut child, &mut counts);
            match step % 4 {
                0 | 2 => {
                    kill9(&mut child);
                    counts.pgdelta_kills += 1;
                    std::thread::sleep(Duration::from_millis(rng.below(1_000)));
                    child = pgdelta.spawn("chaos", "chaos.log");
                }
                1 => {
                    stop_fast_patiently(&cluster);
                    std::thread::sleep(Duration::from_millis(rng.below(1_500)));
                    cluster.start_again();
                    counts.pg_fast_restarts += 1;
                }
                _ => {
                    cluster.stop_immediate();
                    std::thread::sleep(Duration::from_millis(rng.below(1_500)));
                    cluster.start_again();
                    counts.pg_immediate_restarts += 1;
                }
            }
            step += 1;
        }
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        keep_running(&pgdelta, &mut child, &mut counts);
        let exit = terminate(&mut child);
        println!("pgdelta stopped with SIGTERM: {exit}");
    });

    pgdelta.catch_up("chaos");
    let mut delta_rows = 0;
    let mut txn_actions = 0;
    for (table, query) in CHAOS_QUERIES {
        let path = pgdelta.table_path("public", table);
        let expected = pg_as_strings(&cluster, DB, query);
        assert_eq!(
            delta_as_strings(&path),
            expected,
            "{table} differs from PostgreSQL"
        );
        delta_rows += expected.len();
        txn_actions += assert_txn_versions_strictly_increase(&path);
    }
    let versions: Vec<String> = pgdelta
        .status("chaos")
        .iter()
        .map(|s| format!("{}=v{}", s["table"], s["delta_version"]))
        .collect();
    let transactions = workload_counts.transactions.load(Ordering::Relaxed);
    println!(
        "chaos summary: {:?} of chaos, {:?} in all; workload transactions committed={} \
         (big={}), failed psql batches={}; pgdelta SIGKILLs={}, pgdelta exits by itself={}, \
         PostgreSQL restarts fast={} immediate={}; rows in Delta={}, txn actions checked={}, \
         Delta versions: {}",
        chaos_for,
        started.elapsed(),
        transactions,
        workload_counts.big_transactions.load(Ordering::Relaxed),
        workload_counts.failed_batches.load(Ordering::Relaxed),
        counts.pgdelta_kills,
        counts.pgdelta_unexpected_exits,
        counts.pg_fast_restarts,
        counts.pg_immediate_restarts,
        delta_rows,
        txn_actions,
        versions.join(" ")
    );
    assert!(transactions > 0, "the workload committed nothing");
}
