use serde_json::json;

use super::*;

/// A snapshot read captured from a real Debezium 3.6 connector (`big` shortened).
const REAL_SNAPSHOT_READ: &str =
    include_str!("../../../tests/fixtures/debezium/snapshot_read_with_schema.json");

fn parse(key: Option<Value>, value: Option<Value>) -> Result<Option<ChangeEvent>, DebeziumError> {
    parse_with(&mut DebeziumParser::new(), key, value)
}

fn parse_with(
    parser: &mut DebeziumParser,
    key: Option<Value>,
    value: Option<Value>,
) -> Result<Option<ChangeEvent>, DebeziumError> {
    let key = key.map(|k| k.to_string());
    let value = value.map(|v| v.to_string());
    parser.parse(&DebeziumRecord {
        topic: Some("pg.public.orders"),
        partition: Some(3),
        offset: Some(42),
        key: key.as_deref().map(str::as_bytes),
        value: value.as_deref().map(str::as_bytes),
    })
}

fn texts(cells: &[Cell]) -> Vec<Option<&str>> {
    cells.iter().map(Cell::as_text).collect()
}

fn source() -> Value {
    json!({"version": "3.6.3.Final", "connector": "postgresql", "name": "pg",
           "ts_ms": 1700000000123_i64, "ts_us": 1700000000123456_i64, "snapshot": "false",
           "db": "shop", "schema": "public", "table": "orders", "txId": 731, "lsn": 22214512})
}

#[test]
fn parses_a_real_snapshot_event_with_schema() {
    let record: Value = serde_json::from_str(REAL_SNAPSHOT_READ).unwrap();
    let key = record["key"].as_str().unwrap();
    let value = record["value"].as_str().unwrap();
    let event = DebeziumParser::new()
        .parse(&DebeziumRecord {
            topic: record["topic"].as_str(),
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
    assert_eq!(event.operation, Operation::Insert);
    assert!(event.metadata.snapshot);
    assert_eq!(event.table(), &TableName::new("public", "all_types"));
    assert_eq!(event.metadata.database, "postgres");
    assert_eq!(event.metadata.tx_id, Some(730));
    assert_eq!(event.metadata.lsn, Lsn(22214088));
    let data = event.data.as_ref().unwrap();
    let by_name = |name: &str| data[event.schema.column_index(name).unwrap()].as_text();
    assert_eq!(by_name("id"), Some("1"));
    assert_eq!(by_name("n102"), Some("12345678.91"));
    assert_eq!(by_name("n"), Some("3.14159265358979323846"));
    assert_eq!(by_name("b"), Some("t"));
    assert_eq!(by_name("d"), Some("2024-02-29"));
    assert_eq!(by_name("tm"), Some("13:45:01.123456"));
    assert_eq!(by_name("ts"), Some("2024-01-02 03:04:05.678901"));
    assert_eq!(by_name("tstz"), Some("2024-01-02 01:04:05.678901+00"));
    assert_eq!(by_name("by"), Some("\\xdeadbeef"));
    assert_eq!(by_name("ia"), Some("{1,2,NULL}"));
    assert_eq!(by_name("ta"), Some("{\"a b\",c}"));
    assert_eq!(by_name("j"), Some("{\"a\": [1, 2]}"));
    assert_eq!(by_name("f8"), Some("1.5"));
    let key_columns: Vec<&str> = event
        .schema
        .key_indexes()
        .iter()
        .map(|&i| event.schema.columns[i].name.as_str())
        .collect();
    assert_eq!(key_columns, vec!["id"]);
    let column = |name: &str| &event.schema.columns[event.schema.column_index(name).unwrap()];
    assert_eq!(column("n102").type_oid, 1700);
    // numeric(10,2): PostgreSQL's type modifier is ((precision << 16) | scale) + 4.
    assert_eq!(column("n102").type_modifier, ((10 << 16) | 2) + 4);
    assert_eq!(column("tstz").type_oid, 1184);
    assert_eq!(column("ia").type_oid, 1007);
    assert_eq!(column("u").type_oid, 2950);
}

#[test]
fn parses_envelope_without_schema_and_key_from_message_key() {
    let value = json!({"before": {"id": 7, "note": null}, "after": {"id": 7, "note": "hi"},
                       "source": source(), "op": "u", "ts_ms": 1});
    let event = parse(Some(json!({"id": 7})), Some(value)).unwrap().unwrap();
    assert_eq!(event.operation, Operation::Update);
    assert!(!event.metadata.snapshot);
    assert_eq!(
        texts(event.data.as_ref().unwrap()),
        vec![Some("7"), Some("hi")]
    );
    assert_eq!(texts(event.before.as_ref().unwrap()), vec![Some("7"), None]);
    assert_eq!(event.schema.key_indexes(), vec![0]);
    assert_eq!(
        event.commit_timestamp,
        DateTime::from_timestamp_micros(1700000000123456).unwrap()
    );
    assert_eq!(event.metadata.lsn, Lsn(22214512));
    assert_eq!(event.metadata.tx_id, Some(731));
}

#[test]
fn deletes_keep_the_before_row_and_tombstones_are_ignored() {
    let value = json!({"before": {"id": 7, "note": null}, "after": null,
                       "source": source(), "op": "d"});
    let event = parse(None, Some(value)).unwrap().unwrap();
    assert_eq!(event.operation, Operation::Delete);
    assert!(event.data.is_none());
    assert_eq!(texts(event.before.as_ref().unwrap()), vec![Some("7"), None]);
    assert!(parse(Some(json!({"id": 7})), None).unwrap().is_none());
    assert!(parse(Some(json!({"id": 7})), Some(Value::Null))
        .unwrap()
        .is_none());
}

#[test]
fn truncate_has_no_rows() {
    let value = json!({"before": null, "after": null, "source": source(), "op": "t"});
    let event = parse(None, Some(value)).unwrap().unwrap();
    assert_eq!(event.operation, Operation::Truncate);
    assert!(event.data.is_none() && event.before.is_none());
}

#[test]
fn unwrapped_rows_use_the_metadata_fields() {
    let value = json!({"id": 7, "note": "x", "__op": "c", "__lsn": 99, "__source_ts_ms": 1000,
                       "__table": "orders", "__schema": "sales", "__db": "shop", "__txId": 5,
                       "__deleted": "false"});
    let event = parse(Some(json!({"id": 7})), Some(value)).unwrap().unwrap();
    assert_eq!(event.operation, Operation::Insert);
    assert_eq!(event.table(), &TableName::new("sales", "orders"));
    let names: Vec<&str> = event
        .schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, vec!["id", "note"]);
    assert_eq!(event.metadata.lsn, Lsn(99));
    assert_eq!(event.metadata.tx_id, Some(5));
    assert_eq!(event.metadata.database, "shop");
    assert_eq!(
        event.commit_timestamp,
        DateTime::from_timestamp_millis(1000).unwrap()
    );

    let deleted = json!({"id": 7, "note": null, "__deleted": "true"});
    let event = parse(None, Some(deleted)).unwrap().unwrap();
    assert_eq!(event.operation, Operation::Delete);
    assert_eq!(event.table(), &TableName::new("public", "orders"));
    assert_eq!(texts(event.before.as_ref().unwrap()), vec![Some("7"), None]);

    let bare = json!({"id": 8, "note": "y"});
    let event = parse(None, Some(bare)).unwrap().unwrap();
    assert_eq!(event.operation, Operation::Update, "no __op means upsert");
}

#[test]
fn unwrapped_rows_with_schema_decode_logical_types() {
    let schema = json!({"type": "struct", "name": "pg.public.orders.Value", "fields": [
        {"field": "id", "type": "int32", "optional": false},
        {"field": "day", "type": "int32", "optional": true, "name": "io.debezium.time.Date"},
        {"field": "price", "type": "bytes", "optional": true,
         "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}},
        {"field": "__op", "type": "string", "optional": true},
        {"field": "__deleted", "type": "string", "optional": true}]});
    let payload = json!({"id": 1, "day": -1, "price": "/w==", "__op": "r", "__deleted": "false"});
    let value = json!({"schema": schema, "payload": payload});
    let event = parse(None, Some(value)).unwrap().unwrap();
    assert!(event.metadata.snapshot);
    assert_eq!(
        texts(event.data.as_ref().unwrap()),
        vec![Some("1"), Some("1969-12-31"), Some("-0.01")]
    );
    assert_eq!(event.schema.columns[0].type_oid, 23);
}

#[test]
fn decodes_time_types() {
    let render = |decoder: Decoder, value: Value| decoder.render(&value).unwrap();
    assert_eq!(render(Decoder::TimeMillis, json!(3_600_500)), "01:00:00.5");
    assert_eq!(render(Decoder::TimeMicros, json!(0)), "00:00:00");
    assert_eq!(
        render(Decoder::TimeMicros, json!(86_400_000_000_i64)),
        "24:00:00"
    );
    assert_eq!(
        render(Decoder::TimeNanos, json!(1_000_001_000_i64)),
        "00:00:01.000001"
    );
    assert_eq!(
        render(Decoder::TimestampMillis, json!(-1)),
        "1969-12-31 23:59:59.999"
    );
    assert_eq!(
        render(Decoder::TimestampNanos, json!(1_500_000_000_i64)),
        "1970-01-01 00:00:01.5"
    );
    assert_eq!(
        render(Decoder::TimestampMicros, json!(-62_167_219_200_000_000_i64)),
        "0001-01-01 00:00:00 BC"
    );
    assert_eq!(render(Decoder::Date, json!(-719_893)), "0002-01-01 BC");
    assert_eq!(
        render(Decoder::ZonedTimestamp, json!("2024-01-02T03:04:05+02:00")),
        "2024-01-02 01:04:05+00"
    );
    assert_eq!(
        render(Decoder::ZonedTimestamp, json!("infinity")),
        "infinity"
    );
    assert_eq!(
        render(Decoder::ZonedTime, json!("13:45:01.5Z")),
        "13:45:01.5+00"
    );
    assert_eq!(
        render(Decoder::ZonedTime, json!("13:45:01+05:30")),
        "13:45:01+05:30"
    );
    assert!(Decoder::TimeMicros.render(&json!(-1)).is_err());
}

#[test]
fn decodes_decimals_of_any_size_and_sign() {
    assert_eq!(render_unscaled(&[0x30, 0x39], 2), "123.45");
    assert_eq!(render_unscaled(&[0xff], 2), "-0.01");
    assert_eq!(render_unscaled(&[0x80], 0), "-128");
    assert_eq!(render_unscaled(&[], 3), "0.000");
    assert_eq!(render_unscaled(&[0x00, 0x80], 0), "128");
    // 10^30 = 0x0c9f2c9cd04674edea40000000
    let big = hex::decode("0c9f2c9cd04674edea40000000").unwrap();
    assert_eq!(render_unscaled(&big, 0), format!("1{}", "0".repeat(30)));
    let variable = json!({"scale": 3, "value": "AeI="}); // 482
    assert_eq!(
        Decoder::VariableScaleDecimal.render(&variable).unwrap(),
        "0.482"
    );
    assert_eq!(
        Decoder::Decimal { scale: 2 }.render(&json!(12.5)).unwrap(),
        "12.5",
        "decimal.handling.mode=double sends numbers"
    );
}

#[test]
fn renders_floats_like_postgres() {
    let f8 = |v: Value| render_float(&v, false).unwrap();
    assert_eq!(f8(json!(1.5)), "1.5");
    assert_eq!(f8(json!(100.0)), "100");
    assert_eq!(f8(json!(1e20)), "1e+20");
    assert_eq!(f8(json!(1.5e-7)), "1.5e-07");
    assert_eq!(f8(json!(0.0001)), "0.0001");
    assert_eq!(f8(json!(123456789012345.0)), "123456789012345");
    assert_eq!(f8(json!(1234567890123456.0)), "1.234567890123456e+15");
    assert_eq!(f8(json!("NaN")), "NaN");
    assert_eq!(render_float(&json!(1.1), true).unwrap(), "1.1");
    assert_eq!(
        render_float(&json!(1234567.0), true).unwrap(),
        "1.234567e+06"
    );
}

#[test]
fn renders_arrays_with_postgres_quoting() {
    let texts = Decoder::Array(Box::new(Decoder::Text));
    let value = json!(["a", "", "NULL", "x\"y", "b\\c", "{}", null, "plain"]);
    assert_eq!(
        texts.render(&value).unwrap(),
        r#"{a,"","NULL","x\"y","b\\c","{}",NULL,plain}"#
    );
    let dates = Decoder::Array(Box::new(Decoder::Date));
    assert_eq!(dates.render(&json!([0])).unwrap(), "{1970-01-01}");
    let stamps = Decoder::Array(Box::new(Decoder::TimestampMicros));
    assert_eq!(
        stamps.render(&json!([0])).unwrap(),
        "{\"1970-01-01 00:00:00\"}"
    );
}

#[test]
fn unavailable_toast_values_become_unchanged_toast() {
    for placeholder in [
        json!(UNAVAILABLE_VALUE),
        json!("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="),
        json!([UNAVAILABLE_VALUE]),
    ] {
        let value = json!({"before": null, "after": {"id": 1, "big": placeholder},
                           "source": source(), "op": "u"});
        let event = parse(None, Some(value)).unwrap().unwrap();
        assert_eq!(event.data.unwrap()[1], Cell::UnchangedToast);
    }
}

#[test]
fn registered_tables_decode_events_without_schema() {
    let column = |name: &str, type_oid, type_modifier, is_key| ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier,
        type_name: None,
        is_key,
    };
    let table = Arc::new(TableSchema {
        table: TableName::new("public", "orders"),
        columns: vec![
            column("id", 20, -1, true),
            column("price", 1700, ((10 << 16) | 2) + 4, false),
            column("day", 1082, -1, false),
            column("at", 1114, -1, false),
            column("at3", 1114, 3, false),
            column("raw", 17, -1, false),
        ],
    });
    let mut parser = DebeziumParser::new().with_table(table.clone());
    let row = json!({"id": 1, "price": "MDk=", "day": 1, "at": 1_000_000, "at3": 1_000,
                     "raw": "AQI="});
    let value = json!({"after": row, "source": source(), "op": "c"});
    let event = parse_with(&mut parser, None, Some(value)).unwrap().unwrap();
    assert!(Arc::ptr_eq(&event.schema, &table));
    assert_eq!(
        texts(event.data.as_ref().unwrap()),
        vec![
            Some("1"),
            Some("123.45"),
            Some("1970-01-02"),
            Some("1970-01-01 00:00:01"),
            Some("1970-01-01 00:00:01"),
            Some("\\x0102")
        ]
    );
    let extra = json!({"after": {"id": 1, "nope": 2}, "source": source(), "op": "c"});
    let err = parse_with(&mut parser, None, Some(extra)).unwrap_err();
    assert!(
        matches!(err.problem, Problem::UnknownColumn { .. }),
        "{err}"
    );
    // A non-key column the event lacks (added after it, or dropped) is null; a key is needed.
    let without_price = json!({"after": {"id": 1}, "source": source(), "op": "c"});
    let event = parse_with(&mut parser, None, Some(without_price))
        .unwrap()
        .unwrap();
    assert_eq!(texts(event.data.as_ref().unwrap())[1], None);
    let without_key = json!({"after": {"price": "AQ=="}, "source": source(), "op": "c"});
    let err = parse_with(&mut parser, None, Some(without_key)).unwrap_err();
    assert!(err.to_string().contains("'id'"), "{err}");
}

#[test]
fn reuses_the_inferred_schema_while_it_is_unchanged() {
    let mut parser = DebeziumParser::new();
    let value = || json!({"after": {"id": 1}, "source": source(), "op": "c"});
    let first = parse_with(&mut parser, None, Some(value()))
        .unwrap()
        .unwrap();
    let second = parse_with(&mut parser, None, Some(value()))
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&first.schema, &second.schema));
}

#[test]
fn malformed_records_name_the_problem_and_the_position() {
    let err = parse(
        None,
        Some(json!({"after": {}, "source": source(), "op": "x"})),
    )
    .unwrap_err();
    assert_eq!(err.problem, Problem::UnknownOp("x".into()));
    let shown = err.to_string();
    assert!(
        shown.contains("topic pg.public.orders, partition 3, offset 42"),
        "{shown}"
    );

    let mut parser = DebeziumParser::new();
    let err = parser
        .parse(&DebeziumRecord {
            value: Some(b"{not json"),
            offset: Some(9),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("value is not valid JSON"), "{err}");
    assert!(err.to_string().contains("offset 9"), "{err}");

    let no_table = json!({"after": {"id": 1}, "source": {"db": "x"}, "op": "c"});
    let err = parse(None, Some(no_table)).unwrap_err();
    assert!(
        err.to_string().contains("source.schema is missing"),
        "{err}"
    );

    let no_after = json!({"after": null, "source": source(), "op": "c"});
    assert!(parse(None, Some(no_after))
        .unwrap_err()
        .to_string()
        .contains("after (op c) is missing"));

    let wrong = json!({"after": {"id": "seven"}, "source": source(), "op": "c"});
    let mut parser = DebeziumParser::new();
    parse_with(
        &mut parser,
        None,
        Some(json!({"after": {"id": 1}, "source": source(), "op": "c"})),
    )
    .unwrap();
    let table = parser.inferred.values().next().unwrap().clone();
    let mut parser = DebeziumParser::new().with_table(table);
    let err = parse_with(&mut parser, None, Some(wrong)).unwrap_err();
    assert!(
        err.to_string()
            .contains("column id: expected a whole number"),
        "{err}"
    );

    let err = parse(Some(json!([1])), Some(json!({"id": 1}))).unwrap_err();
    assert!(
        err.to_string().contains("key payload should be an object"),
        "{err}"
    );
    let err = parse(None, Some(json!({"id": 1, "__deleted": 3}))).unwrap_err();
    assert!(err.to_string().contains("__deleted"), "{err}");
    let err = parse(
        None,
        Some(json!({"after": {"id": 1}, "source": 5, "op": "c"})),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("source should be an object"),
        "{err}"
    );
}

#[test]
fn heartbeats_and_transaction_markers_are_not_changes() {
    let mut parser = DebeziumParser::new();
    let key = br#"{"serverName": "pg"}"#;
    let heartbeat = DebeziumRecord {
        topic: Some("__debezium-heartbeat.pg"),
        key: Some(key),
        value: Some(br#"{"ts_ms": 1700000000000}"#),
        ..Default::default()
    };
    assert!(parser.parse(&heartbeat).unwrap().is_none());
    let with_schema =
        br#"{"schema": {"type": "struct", "name": "io.debezium.connector.common.Heartbeat",
        "fields": [{"field": "ts_ms", "type": "int64"}]}, "payload": {"ts_ms": 1}}"#;
    let renamed_topic = DebeziumRecord {
        topic: Some("heartbeats"),
        value: Some(with_schema),
        ..Default::default()
    };
    assert!(parser.parse(&renamed_topic).unwrap().is_none());
    let end = br#"{"status": "END", "id": "571:53195832", "event_count": 2, "ts_ms": 1,
        "data_collections": [{"data_collection": "public.orders", "event_count": 2}]}"#;
    let marker = DebeziumRecord {
        topic: Some("pg.transaction"),
        value: Some(end),
        ..Default::default()
    };
    assert!(parser.parse(&marker).unwrap().is_none());
}

#[test]
fn renders_iso_intervals_like_postgres() {
    let render = |iso: &str| render_interval(iso).unwrap();
    assert_eq!(render("P1Y2M3DT4H5M6.5S"), "P1Y2M3DT4H5M6.5S");
    assert_eq!(render("P0Y0M0DT0H0M0S"), "PT0S");
    assert_eq!(render("P0Y0M-1DT2H0M0S"), "P-1DT2H");
    assert_eq!(render("P0Y0M0DT0H-1M-0.000001S"), "PT-1M-0.000001S");
    assert_eq!(render("P0Y14M0DT25H0M0S"), "P1Y2MT25H");
    assert_eq!(render("PT90M"), "PT1H30M");
    assert!(render_interval("1Y").is_err());
    let err = Decoder::Interval.render(&json!(3.6e9)).unwrap_err();
    assert!(err.contains("interval.handling.mode=string"), "{err}");
}

/// Floats as Debezium's JSON converter writes them (Java's `Double.toString` /
/// `Float.toString`), each with the text PostgreSQL prints for the value.
const FLOAT8_TEXTS: &[(&str, &str)] = &[
    // Parsed 1 ulp off by serde_json without `float_roundtrip` (e.g. ...1992).
    ("995691.6416561991", "995691.6416561991"),
    ("441.66130716816645", "441.66130716816645"),
    ("93957.74263991487", "93957.74263991487"),
    ("24704.377299632586", "24704.377299632586"),
    ("91.41638512283501", "91.41638512283501"),
    ("9611116.780863315", "9611116.780863315"),
    ("9.676777951248825E8", "967677795.1248825"),
    ("1.1500438554015557E8", "115004385.54015557"),
    // Extremes and exponents.
    ("1.7976931348623157E308", "1.7976931348623157e+308"),
    ("2.2250738585072014E-308", "2.2250738585072014e-308"),
    ("4.9E-324", "5e-324"),
    ("-1.2345678901234568E17", "-1.2345678901234568e+17"),
    ("0.1", "0.1"),
    ("1.0E-7", "1e-07"),
];

const FLOAT4_TEXTS: &[(&str, &str)] = &[
    ("0.14285715", "0.14285715"),
    ("995691.6", "995691.6"),
    ("3.4028235E38", "3.4028235e+38"),
    ("1.17549435E-38", "1.1754944e-38"),
    ("1.4E-45", "1e-45"),
    ("-1.6777216E7", "-1.6777216e+07"),
    ("1234567.0", "1.234567e+06"),
    ("0.001", "0.001"),
];

/// A `{"schema", "payload"}` insert of `public.orders (id int8, f8 float8, f4 float4)`; the
/// numbers are spliced in as text, so they reach the parser as the digits Debezium wrote.
fn float_record(f8: &str, f4: &str) -> String {
    let field = |name: &str, kind: &str| json!({"type": kind, "optional": true, "field": name});
    let row = json!({"type": "struct", "optional": true, "name": "pg.public.orders.Value",
                     "fields": [field("id", "int64"), field("f8", "double"), field("f4", "float")]});
    let mut before = row.clone();
    before["field"] = json!("before");
    let mut after = row;
    after["field"] = json!("after");
    let schema = json!({"type": "struct", "optional": false, "name": "pg.public.orders.Envelope",
                        "fields": [before, after]});
    format!(
        r#"{{"schema": {schema}, "payload": {{"before": null, "after": {{"id": 1, "f8": {f8}, "f4": {f4}}}, "source": {}, "op": "c"}}}}"#,
        source()
    )
}

fn float_cells(parser: &mut DebeziumParser, value: &str) -> Vec<Option<String>> {
    let event = parser
        .parse(&DebeziumRecord {
            topic: Some("pg.public.orders"),
            value: Some(value.as_bytes()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
    let cells = event.data.unwrap();
    cells
        .iter()
        .map(|c| c.as_text().map(String::from))
        .collect()
}

#[test]
fn floats_arrive_exactly_as_postgres_prints_them() {
    let mut parser = DebeziumParser::new();
    for (i, &(f8, expected8)) in FLOAT8_TEXTS.iter().enumerate() {
        let (f4, expected4) = FLOAT4_TEXTS[i % FLOAT4_TEXTS.len()];
        let cells = float_cells(&mut parser, &float_record(f8, f4));
        assert_eq!(cells[1].as_deref(), Some(expected8), "float8 {f8}");
        assert_eq!(cells[2].as_deref(), Some(expected4), "float4 {f4}");
        // The text parses back to the very value Debezium sent.
        let sent: f64 = f8.parse().unwrap();
        let stored: f64 = expected8.parse().unwrap();
        assert_eq!(stored.to_bits(), sent.to_bits(), "float8 {f8}");
        let sent: f32 = f4.parse().unwrap();
        let stored: f32 = expected4.parse().unwrap();
        assert_eq!(stored.to_bits(), sent.to_bits(), "float4 {f4}");
    }
}

#[test]
fn floats_of_registered_tables_arrive_exactly() {
    let column = |name: &str, type_oid, is_key| ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier: -1,
        type_name: None,
        is_key,
    };
    let table = Arc::new(TableSchema {
        table: TableName::new("public", "orders"),
        columns: vec![
            column("id", 20, true),
            column("f8", 701, false),
            column("f4", 700, false),
        ],
    });
    let mut parser = DebeziumParser::new().with_table(table);
    for &(f8, expected8) in FLOAT8_TEXTS {
        for &(f4, expected4) in FLOAT4_TEXTS {
            let value = format!(
                r#"{{"before": null, "after": {{"id": 1, "f8": {f8}, "f4": {f4}}}, "source": {}, "op": "c"}}"#,
                source()
            );
            let cells = float_cells(&mut parser, &value);
            assert_eq!(cells[1].as_deref(), Some(expected8), "float8 {f8}");
            assert_eq!(cells[2].as_deref(), Some(expected4), "float4 {f4}");
        }
    }
}

#[test]
fn whole_numbers_beyond_2_pow_53_arrive_exactly() {
    for text in [
        "9007199254740993",
        "-9007199254740993",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Decoder::Int.render(&value).unwrap(), text);
        assert_eq!(Decoder::Text.render(&value).unwrap(), text);
    }
}
