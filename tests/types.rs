//! Type matrix: edge values of each PostgreSQL type go through pgdelta (both the initial
//! snapshot and the replication stream) and come back from an independent Delta reader.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::{read_delta_rows_by_id, PgCluster};

const DB: &str = "cdcdb";

/// One column: its type, the SQL literals of its rows, and what a Delta reader must return
/// (JSON as tests/support/read_delta.py renders it).
struct Case {
    column: &'static str,
    pg_type: &'static str,
    delta_type: &'static str,
    literals: &'static [&'static str],
    expected: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            column: "c_bool",
            pg_type: "boolean",
            delta_type: "boolean",
            literals: &["true", "false", "NULL"],
            expected: json!([true, false, null]),
        },
        Case {
            column: "c_int2",
            pg_type: "smallint",
            delta_type: "short",
            literals: &["-32768", "32767", "0"],
            expected: json!([-32768, 32767, 0]),
        },
        Case {
            column: "c_int4",
            pg_type: "integer",
            delta_type: "integer",
            literals: &["-2147483648", "2147483647", "NULL"],
            expected: json!([-2147483648i64, 2147483647, null]),
        },
        Case {
            column: "c_int8",
            pg_type: "bigint",
            delta_type: "long",
            literals: &["-9223372036854775808", "9223372036854775807", "1"],
            expected: json!([i64::MIN, i64::MAX, 1]),
        },
        Case {
            column: "c_float4",
            pg_type: "real",
            delta_type: "float",
            literals: &["1.5", "'NaN'", "'-Infinity'"],
            expected: json!([1.5, "NaN", "-Infinity"]),
        },
        Case {
            column: "c_float8",
            pg_type: "double precision",
            delta_type: "double",
            literals: &["0.1", "'Infinity'", "1e308"],
            expected: json!([0.1, "Infinity", 1e308]),
        },
        Case {
            column: "c_decimal",
            pg_type: "numeric(10,2)",
            delta_type: "decimal(10,2)",
            literals: &["12345678.91", "-0.01", "'NaN'"],
            expected: json!(["12345678.91", "-0.01", null]),
        },
        Case {
            column: "c_numeric",
            pg_type: "numeric",
            delta_type: "string",
            literals: &[
                "3.14159265358979323846264338327950288419716939937510",
                "'NaN'",
                "'-Infinity'",
            ],
            expected: json!([
                "3.14159265358979323846264338327950288419716939937510",
                "NaN",
                "-Infinity"
            ]),
        },
        Case {
            column: "c_wide",
            pg_type: "numeric(50,10)",
            delta_type: "string",
            literals: &[
                "1234567890123456789012345678901234567890.0123456789",
                "0",
                "NULL",
            ],
            expected: json!([
                "1234567890123456789012345678901234567890.0123456789",
                "0.0000000000",
                null
            ]),
        },
        Case {
            column: "c_text",
            pg_type: "text",
            delta_type: "string",
            literals: &["'héllo 🌍'", "''", "E'tab\\there\\nnewline'"],
            expected: json!(["héllo 🌍", "", "tab\there\nnewline"]),
        },
        Case {
            column: "c_varchar",
            pg_type: "varchar(5)",
            delta_type: "string",
            literals: &["'abc'", "'a''b'", "NULL"],
            expected: json!(["abc", "a'b", null]),
        },
        Case {
            column: "c_char",
            pg_type: "char(3)",
            delta_type: "string",
            literals: &["'a'", "'abc'", "NULL"],
            expected: json!(["a  ", "abc", null]),
        },
        Case {
            column: "c_uuid",
            pg_type: "uuid",
            delta_type: "string",
            literals: &[
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                "NULL",
                "'00000000-0000-0000-0000-000000000000'",
            ],
            expected: json!([
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                null,
                "00000000-0000-0000-0000-000000000000"
            ]),
        },
        Case {
            column: "c_date",
            pg_type: "date",
            delta_type: "date",
            literals: &["'2024-02-29'", "'1900-01-01'", "'9999-12-31'"],
            expected: json!(["2024-02-29", "1900-01-01", "9999-12-31"]),
        },
        Case {
            column: "c_date_inf",
            pg_type: "date",
            delta_type: "date",
            literals: &["'infinity'", "'-infinity'", "'0001-01-01'"],
            expected: json!([null, null, "0001-01-01"]),
        },
        Case {
            column: "c_ts",
            pg_type: "timestamp",
            delta_type: "timestamp_ntz",
            literals: &[
                "'1969-07-20 20:17:40'",
                "'2500-01-01 00:00:00.123456'",
                "'0001-01-01 00:00:00'",
            ],
            expected: json!([
                "1969-07-20 20:17:40",
                "2500-01-01 00:00:00.123456",
                "0001-01-01 00:00:00"
            ]),
        },
        Case {
            column: "c_tstz",
            pg_type: "timestamptz",
            delta_type: "timestamp",
            literals: &[
                "'2024-01-01 12:00:00+05:30'",
                "'1960-06-01 00:00:00.5-08'",
                "NULL",
            ],
            expected: json!([
                "2024-01-01 06:30:00+00:00",
                "1960-06-01 08:00:00.500000+00:00",
                null
            ]),
        },
        Case {
            column: "c_time",
            pg_type: "time",
            delta_type: "string",
            literals: &["'13:45:00.5'", "'00:00:00'", "'24:00:00'"],
            expected: json!(["13:45:00.5", "00:00:00", "24:00:00"]),
        },
        Case {
            column: "c_timetz",
            pg_type: "timetz",
            delta_type: "string",
            literals: &["'13:45:00+02'", "NULL", "'23:59:59.999999-11:30'"],
            expected: json!(["13:45:00+02", null, "23:59:59.999999-11:30"]),
        },
        Case {
            column: "c_interval",
            pg_type: "interval",
            delta_type: "string",
            literals: &["'1 year 2 months 3 days 04:05:06'", "'-1 day'", "'0'"],
            expected: json!(["P1Y2M3DT4H5M6S", "P-1D", "PT0S"]),
        },
        Case {
            column: "c_money",
            pg_type: "money",
            delta_type: "string",
            literals: &["12.34", "-1", "NULL"],
            expected: json!(["$12.34", "-$1.00", null]),
        },
        Case {
            column: "c_inet",
            pg_type: "inet",
            delta_type: "string",
            literals: &["'192.168.0.1/24'", "'::1'", "NULL"],
            expected: json!(["192.168.0.1/24", "::1", null]),
        },
        Case {
            column: "c_cidr",
            pg_type: "cidr",
            delta_type: "string",
            literals: &["'10.0.0.0/8'", "NULL", "'2001:db8::/32'"],
            expected: json!(["10.0.0.0/8", null, "2001:db8::/32"]),
        },
        Case {
            column: "c_mac",
            pg_type: "macaddr",
            delta_type: "string",
            literals: &["'08:00:2b:01:02:03'", "NULL", "'ff:ff:ff:ff:ff:ff'"],
            expected: json!(["08:00:2b:01:02:03", null, "ff:ff:ff:ff:ff:ff"]),
        },
        Case {
            column: "c_json",
            pg_type: "json",
            delta_type: "string",
            literals: &["'{\"a\":  1}'", "'[]'", "'null'"],
            expected: json!(["{\"a\":  1}", "[]", "null"]),
        },
        Case {
            column: "c_jsonb",
            pg_type: "jsonb",
            delta_type: "string",
            literals: &["'{\"b\": [1, 2], \"a\": \"x\"}'", "NULL", "'\"s\"'"],
            expected: json!(["{\"a\": \"x\", \"b\": [1, 2]}", null, "\"s\""]),
        },
        Case {
            column: "c_bytea",
            pg_type: "bytea",
            delta_type: "binary",
            literals: &["'\\xdeadbeef'", "''", "NULL"],
            expected: json!(["deadbeef", "", null]),
        },
        Case {
            column: "c_int_array",
            pg_type: "integer[]",
            delta_type: "array<integer>",
            literals: &["'{1,NULL,3}'", "'{}'", "NULL"],
            expected: json!([[1, null, 3], [], null]),
        },
        Case {
            column: "c_text_array",
            pg_type: "text[]",
            delta_type: "array<string>",
            literals: &["ARRAY['a b', 'c\"d', NULL]", "'{x}'", "NULL"],
            expected: json!([["a b", "c\"d", null], ["x"], null]),
        },
        Case {
            column: "c_date_array",
            pg_type: "date[]",
            delta_type: "array<date>",
            literals: &["'{2024-01-01,NULL}'", "NULL", "'{}'"],
            expected: json!([["2024-01-01", null], null, []]),
        },
        Case {
            column: "c_mood",
            pg_type: "mood",
            delta_type: "string",
            literals: &["'happy'", "'sad'", "NULL"],
            expected: json!(["happy", "sad", null]),
        },
        Case {
            column: "c_posint",
            pg_type: "posint",
            delta_type: "integer",
            literals: &["5", "NULL", "2147483647"],
            expected: json!([5, null, 2147483647]),
        },
        Case {
            column: "c_pair",
            pg_type: "pair",
            delta_type: "string",
            literals: &["ROW(1, 'x y')", "NULL", "ROW(NULL, '')"],
            expected: json!(["(1,\"x y\")", null, "(,\"\")"]),
        },
        Case {
            column: "c_hstore",
            pg_type: "hstore",
            delta_type: "map<string,string>",
            literals: &["'a=>1, b=>NULL'", "NULL", "''"],
            expected: json!([[["a", "1"], ["b", null]], null, []]),
        },
    ]
}

const SETUP: &str = "CREATE EXTENSION hstore;
    CREATE TYPE mood AS ENUM ('happy', 'sad');
    CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
    CREATE TYPE pair AS (n int, label text);";

fn create_table(cluster: &PgCluster, name: &str, cases: &[Case]) {
    let columns: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {}", c.column, c.pg_type))
        .collect();
    cluster.psql(
        DB,
        &format!(
            "CREATE TABLE {name} (id int PRIMARY KEY, {})",
            columns.join(", ")
        ),
    );
}

fn insert_rows(cluster: &PgCluster, name: &str, cases: &[Case]) {
    let names: Vec<&str> = cases.iter().map(|c| c.column).collect();
    for row in 0..3 {
        let values: Vec<&str> = cases.iter().map(|c| c.literals[row]).collect();
        cluster.psql(
            DB,
            &format!(
                "INSERT INTO {name} (id, {}) VALUES ({}, {})",
                names.join(", "),
                row + 1,
                values.join(", ")
            ),
        );
    }
}

fn run_pipeline(dir: &std::path::Path, cluster: &PgCluster, tables: &str) {
    let config = format!(
        "[source]\nurl = \"{}\"\nsslmode = \"disable\"\n\n[pipelines.types]\ntables = [{tables}]\ndelta_root = \"{}\"\n",
        cluster.url_without_password(DB),
        dir.join("delta").display()
    );
    std::fs::write(dir.join("pgdelta.toml"), config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(dir.join("pgdelta.toml"))
        .args(["pipeline", "start", "types", "--exit-when-caught-up"])
        .env("PGDELTA_SOURCE_PASSWORD", support::PG_PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn check_table(dir: &std::path::Path, name: &str, cases: &[Case]) {
    let table = read_delta_rows_by_id(&dir.join("delta/public").join(name));
    assert_eq!(table.rows.len(), 3, "{name}: {}", table.raw);
    let mut failures = Vec::new();
    for case in cases {
        let index = table.column(case.column);
        let delta_type = &table.types[index];
        if delta_type != case.delta_type {
            failures.push(format!(
                "{} {}: Delta type {delta_type}, expected {}",
                name, case.column, case.delta_type
            ));
        }
        let got: Vec<Value> = table.rows.iter().map(|r| r[index].clone()).collect();
        if Value::Array(got.clone()) != case.expected {
            failures.push(format!(
                "{} {} ({}): got {:?}, expected {}",
                name, case.column, case.pg_type, got, case.expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "type mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_type_round_trips_through_snapshot_and_stream() {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(DB, SETUP);
    let cases = cases();
    create_table(&cluster, "copied", &cases);
    insert_rows(&cluster, "copied", &cases); // before the slot exists: initial snapshot
    create_table(&cluster, "streamed", &cases);
    let dir = tempfile::tempdir().unwrap();
    run_pipeline(
        dir.path(),
        &cluster,
        "\"public.copied\", \"public.streamed\"",
    );
    insert_rows(&cluster, "streamed", &cases); // after: the replication stream
    run_pipeline(
        dir.path(),
        &cluster,
        "\"public.copied\", \"public.streamed\"",
    );
    check_table(dir.path(), "copied", &cases);
    check_table(dir.path(), "streamed", &cases);
}
