//! Schema, table and column names with quotes, semicolons, spaces and upper case replicate
//! as they are and inject nothing into the SQL pgdelta sends.
//!
//! Config names are raw (unquoted) `schema.table`, split on the first '.': a schema whose
//! name contains '.' cannot be named, and a table whose name contains '.' is refused.

#[path = "harness/mod.rs"]
mod harness;
mod support;

use harness::{
    cluster_with_db, delta_as_strings, pg_as_strings, publication_exists, slot_exists, Pgdelta, DB,
};

const HOSTILE_TABLE: &str = "x\"; DROP TABLE victims; --";

/// `"Sales Dept"."x""; DROP TABLE victims; --"` (quotes, semicolons, spaces, SQL comment),
/// `"Sales Dept"."Order Items"` with upper-case and quoted column names and a composite key,
/// and `public."MixedCase"` with a reserved-word column.
const SETUP: &str = r#"
CREATE TABLE victims (id int PRIMARY KEY);
INSERT INTO victims VALUES (1);
CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."x""; DROP TABLE victims; --" (
    id int PRIMARY KEY,
    "Note" text
);
CREATE TABLE "Sales Dept"."Order Items" (
    "Region" text,
    "Order""Id" bigint,
    "CustomerName" text,
    "select" numeric(10,2),
    PRIMARY KEY ("Region", "Order""Id")
);
CREATE TABLE public."MixedCase" ("ID" int PRIMARY KEY, "Value" text);
INSERT INTO "Sales Dept"."x""; DROP TABLE victims; --" VALUES (1, 'snapshot row'), (2, 'it''s; -- "quoted"');
INSERT INTO "Sales Dept"."Order Items" VALUES ('eu', 1, 'Ada', 1.50);
INSERT INTO public."MixedCase" VALUES (1, 'one');
"#;

const CHANGES: &str = r#"
INSERT INTO "Sales Dept"."x""; DROP TABLE victims; --" VALUES (3, '"); DROP TABLE victims; --');
UPDATE "Sales Dept"."x""; DROP TABLE victims; --" SET "Note" = 'updated' WHERE id = 1;
DELETE FROM "Sales Dept"."x""; DROP TABLE victims; --" WHERE id = 2;
INSERT INTO "Sales Dept"."Order Items" VALUES ('us', 2, 'Grace', 2.00), ('eu', 3, 'Linus', NULL);
UPDATE "Sales Dept"."Order Items" SET "Order""Id" = 10, "select" = 9.99 WHERE "Region" = 'eu' AND "Order""Id" = 1;
DELETE FROM "Sales Dept"."Order Items" WHERE "Region" = 'us';
INSERT INTO public."MixedCase" VALUES (2, 'two');
UPDATE public."MixedCase" SET "Value" = 'uno' WHERE "ID" = 1;
"#;

/// TOML: names are raw, only TOML's own escaping applies (`\"` inside a basic string).
const PIPELINE: &str = r#"
[pipelines.odd]
tables = ["Sales Dept.x\"; DROP TABLE victims; --", "Sales Dept.Order Items", "public.MixedCase"]
delta_root = "DELTA_ROOT"
batch_interval_ms = 100

[pipelines.odd.table."Sales Dept.Order Items"]
partition_by = ["Region"]
"#;

const HOSTILE_ROWS: &str =
    r#"SELECT id::text, "Note" FROM "Sales Dept"."x""; DROP TABLE victims; --""#;
const ORDER_ROWS: &str = r#"SELECT "Region", "Order""Id"::text, "CustomerName", "select"::text FROM "Sales Dept"."Order Items""#;
const MIXED_ROWS: &str = r#"SELECT "ID"::text, "Value" FROM public."MixedCase""#;

fn assert_all_equal(cluster: &support::PgCluster, pgdelta: &Pgdelta) {
    let checks = [
        (
            pgdelta.table_path("Sales Dept", HOSTILE_TABLE),
            HOSTILE_ROWS,
        ),
        (pgdelta.table_path("Sales Dept", "Order Items"), ORDER_ROWS),
        (pgdelta.table_path("public", "MixedCase"), MIXED_ROWS),
    ];
    for (path, query) in checks {
        assert_eq!(
            delta_as_strings(&path),
            pg_as_strings(cluster, DB, query),
            "{}",
            path.display()
        );
    }
}

fn victims_still_there(cluster: &support::PgCluster) {
    assert_eq!(cluster.psql(DB, "SELECT count(*) FROM victims").trim(), "1");
}

#[test]
fn hostile_and_mixed_case_names_replicate_and_inject_nothing() {
    let cluster = cluster_with_db();
    cluster.psql(DB, SETUP);
    let pgdelta = Pgdelta::new(&cluster, PIPELINE);

    pgdelta.catch_up("odd"); // snapshot
    assert_all_equal(&cluster, &pgdelta);
    cluster.psql(DB, CHANGES);
    pgdelta.catch_up("odd"); // streamed changes
    assert_all_equal(&cluster, &pgdelta);
    victims_still_there(&cluster);

    let published = cluster.psql(
        DB,
        "SELECT schemaname || '|' || tablename FROM pg_publication_tables \
         WHERE pubname = 'pgdelta_odd' ORDER BY 1",
    );
    assert_eq!(
        published,
        format!("Sales Dept|Order Items\nSales Dept|{HOSTILE_TABLE}\npublic|MixedCase\n")
    );
    let meta = support::read_delta_meta(&pgdelta.table_path("Sales Dept", "Order Items"));
    assert_eq!(meta["partition_columns"], serde_json::json!(["Region"]));

    let status = pgdelta.status("odd");
    let hostile = status
        .iter()
        .find(|s| s["table"] == format!("Sales Dept.{HOSTILE_TABLE}"))
        .unwrap_or_else(|| panic!("no status for the hostile table: {status:?}"));
    assert_eq!(hostile["rows"], 2);

    pgdelta.run_ok(&["pipeline", "drop", "odd"]);
    assert!(!slot_exists(&cluster, "pgdelta_odd"));
    assert!(!publication_exists(&cluster, "pgdelta_odd"));
    victims_still_there(&cluster);
    assert_eq!(
        cluster
            .psql(
                DB,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'Sales Dept'"
            )
            .trim(),
        "2"
    );
}

#[test]
fn a_table_name_with_a_dot_is_refused_with_a_clear_error() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE \"a.b\" (id int PRIMARY KEY)");
    let pgdelta = Pgdelta::new(
        &cluster,
        "[pipelines.dots]\ntables = [\"public.a.b\"]\ndelta_root = \"DELTA_ROOT\"\n",
    );
    let output = pgdelta.run(&["pipeline", "start", "dots", "--exit-when-caught-up"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invalid table name 'public.a.b'"),
        "{stderr}"
    );
    assert!(!slot_exists(&cluster, "pgdelta_dots"));
}

/// The replication protocol's `publication_names` option is a list of SQL identifiers: an
/// unquoted name there is folded to lower case, so a publication created as "Sales Pub"
/// must be passed quoted.
#[test]
fn a_publication_name_with_upper_case_and_a_space_works() {
    let cluster = cluster_with_db();
    cluster.psql(DB, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let pgdelta = Pgdelta::new(
        &cluster,
        "[pipelines.p]\ntables = [\"public.t\"]\ndelta_root = \"DELTA_ROOT\"\n\
         publication = \"Sales Pub\"\n",
    );
    pgdelta.catch_up("p");
    cluster.psql(DB, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    pgdelta.catch_up("p");
    assert!(publication_exists(&cluster, "Sales Pub"));
    assert_eq!(
        delta_as_strings(&pgdelta.table_path("public", "t")),
        pg_as_strings(&cluster, DB, "SELECT id::text, v FROM t")
    );
}

/// A '/' in a name only nests directories under `<delta_root>/<schema>/`; climbing out
/// would need "..", and names with '.' are refused.
#[test]
fn a_table_name_with_a_slash_stays_under_the_delta_root() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE \"a/b\" (id int PRIMARY KEY); INSERT INTO \"a/b\" VALUES (1), (2)",
    );
    let pgdelta = Pgdelta::new(
        &cluster,
        "[pipelines.sl]\ntables = [\"public.a/b\"]\ndelta_root = \"DELTA_ROOT\"\n",
    );
    pgdelta.catch_up("sl");
    let path = pgdelta.delta_root().join("public").join("a").join("b");
    assert_eq!(
        delta_as_strings(&path),
        pg_as_strings(&cluster, DB, "SELECT id::text FROM \"a/b\"")
    );
}
