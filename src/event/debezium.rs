//! Debezium PostgreSQL connector change events (Kafka Connect JSON converter) as [`ChangeEvent`]s.
//!
//! Accepted shapes of a record value:
//! - the Debezium envelope `{"before", "after", "source", "op", "ts_ms"}`, bare or wrapped in
//!   `{"schema", "payload"}` (`value.converter.schemas.enable=true`);
//! - the row flattened by the `ExtractNewRecordState` transform ("unwrap"), bare or wrapped, with
//!   the optional metadata fields it adds (`__op`, `__deleted`, `__lsn`, `__table`, `__schema`,
//!   `__db`, `__txId`, `__source_ts_ms`, ...). Deletes are only seen with
//!   `delete.tombstone.handling.mode=rewrite` (or `rewrite-with-tombstone`), as `__deleted=true`;
//!   without `__op` an unwrapped row is an upsert ([`Operation::Update`]);
//! - a null value (tombstone), a heartbeat or a transaction BEGIN/END marker: no row change,
//!   [`DebeziumParser::parse`] returns `Ok(None)`.
//!
//! Values become [`Cell::Text`] in PostgreSQL's text output (as a session with `DateStyle=ISO`,
//! `TimeZone=UTC`, `bytea_output=hex` renders it), so the Delta writer converts them exactly as in
//! direct mode. Debezium's logical types are decoded by the schema the event carries; when the
//! event has no schema the parser uses the PostgreSQL column types of a table registered with
//! [`DebeziumParser::with_table`], assuming the connector's defaults
//! (`decimal.handling.mode=precise`, `time.precision.mode=adaptive`, `binary.handling.mode=bytes`).
//! With neither, values are rendered from their JSON form (numbers, strings, booleans, arrays):
//! dates, times, decimals and bytes then stay in Debezium's encoding, so register the table or
//! enable schemas for those types.
//!
//! Key columns come from the record key when one is given, else from the registered table.
//! The event's LSN is Debezium's `source.lsn`: the position of the change itself, not of its
//! commit. The timestamp is `source.ts_us`/`ts_ms` (the commit time), else the time of parsing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Cell, ChangeEvent, ColumnSchema, EventMetadata, Lsn, Operation, TableName, TableSchema,
};

/// The string Debezium puts in place of a TOASTed value an update did not touch.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// One Kafka record, or anything else carrying a Debezium key and value.
#[derive(Debug, Clone, Copy, Default)]
pub struct DebeziumRecord<'a> {
    pub topic: Option<&'a str>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Where a bad record was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordLocation {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(topic) = &self.topic {
            write!(f, " (topic {topic}")?;
            if let Some(partition) = self.partition {
                write!(f, ", partition {partition}")?;
            }
            if let Some(offset) = self.offset {
                write!(f, ", offset {offset}")?;
            }
            write!(f, ")")?;
        } else if let Some(offset) = self.offset {
            write!(f, " (offset {offset})")?;
        }
        Ok(())
    }
}

/// A Debezium record pgdelta cannot turn into a change event.
#[derive(Debug, thiserror::Error)]
#[error("bad Debezium record{location}: {problem}")]
pub struct DebeziumError {
    pub location: RecordLocation,
    pub problem: Problem,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error("{part} is not valid JSON: {reason}")]
    InvalidJson { part: &'static str, reason: String },
    #[error("{what} is missing")]
    Missing { what: String },
    #[error("{what} should be {expected}, found {found}")]
    WrongType {
        what: String,
        expected: &'static str,
        found: String,
    },
    #[error("unknown op '{0}': expected one of c, u, d, r, t")]
    UnknownOp(String),
    #[error("column {column}: {reason}")]
    BadValue { column: String, reason: String },
    #[error("table {table} has no column '{column}' (registered schema)")]
    UnknownColumn { table: TableName, column: String },
    #[error("column '{column}' of {table} is missing from the event")]
    MissingColumn { table: TableName, column: String },
}

/// Turns Debezium records into change events; remembers the table schemas it has seen.
#[derive(Debug, Default)]
pub struct DebeziumParser {
    registered: HashMap<TableName, Arc<TableSchema>>,
    inferred: HashMap<TableName, Arc<TableSchema>>,
}

impl DebeziumParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `schema` (e.g. from introspecting the source) for this table's events: its column
    /// order, types and key, and to decode events that carry no schema.
    pub fn with_table(mut self, schema: Arc<TableSchema>) -> Self {
        self.register(schema);
        self
    }

    /// Uses `schema` for its table from now on (e.g. after the source table changed).
    pub fn register(&mut self, schema: Arc<TableSchema>) {
        self.registered.insert(schema.table.clone(), schema);
    }

    /// The change event in `record`, or `None` for a tombstone.
    pub fn parse(
        &mut self,
        record: &DebeziumRecord<'_>,
    ) -> Result<Option<ChangeEvent>, DebeziumError> {
        let located = |problem| DebeziumError {
            location: RecordLocation {
                topic: record.topic.map(str::to_string),
                partition: record.partition,
                offset: record.offset,
            },
            problem,
        };
        self.parse_record(record).map_err(located)
    }

    fn parse_record(
        &mut self,
        record: &DebeziumRecord<'_>,
    ) -> Result<Option<ChangeEvent>, Problem> {
        let Some(value) = parse_json(record.value, "value")? else {
            return Ok(None);
        };
        let key = parse_json(record.key, "key")?
            .map(|key| split_wrapper(key, "key"))
            .transpose()?;
        let (value_schema, payload) = split_wrapper(value, "value")?;
        let Value::Object(payload) = payload else {
            return Err(wrong_type("value payload", "an object", &payload));
        };
        if is_heartbeat_or_transaction_marker(record.topic, value_schema.as_ref(), &payload) {
            return Ok(None);
        }
        let key_names = match &key {
            Some((_, Value::Object(fields))) => Some(fields.keys().cloned().collect::<Vec<_>>()),
            Some((_, other)) => return Err(wrong_type("key payload", "an object", other)),
            None => None,
        };
        let raw = if is_envelope(value_schema.as_ref(), &payload) {
            RawEvent::from_envelope(payload, value_schema)?
        } else {
            RawEvent::from_unwrapped(payload, value_schema, record.topic)?
        };
        self.build(raw, key_names.as_deref()).map(Some)
    }

    fn build(
        &mut self,
        raw: RawEvent,
        key_names: Option<&[String]>,
    ) -> Result<ChangeEvent, Problem> {
        let table = raw.table.clone();
        let (schema, decoders) = match self.registered.get(&table) {
            Some(registered) => (registered.clone(), registered_decoders(registered, &raw)),
            None => self.infer_schema(&raw, key_names),
        };
        let to_cells = |row: &Option<Map<String, Value>>| {
            row.as_ref()
                .map(|row| row_cells(&schema, &decoders, row))
                .transpose()
        };
        let data = to_cells(&raw.after)?;
        let before = to_cells(&raw.before)?;
        Ok(ChangeEvent {
            operation: raw.operation,
            schema,
            data,
            before,
            before_is_whole_row: false,
            commit_timestamp: raw.timestamp.unwrap_or_else(Utc::now),
            metadata: raw.metadata,
        })
    }

    /// The table schema the event itself describes, reusing the previous one when unchanged.
    fn infer_schema(
        &mut self,
        raw: &RawEvent,
        key_names: Option<&[String]>,
    ) -> (Arc<TableSchema>, Vec<Decoder>) {
        let mut columns = Vec::new();
        let mut decoders = Vec::new();
        let sample = raw.after.as_ref().or(raw.before.as_ref());
        for (name, field_schema) in &raw.columns {
            let decoder = match field_schema {
                Some(schema) => Decoder::from_connect(schema),
                None => sample
                    .and_then(|row| row.get(name))
                    .map(Decoder::from_json)
                    .unwrap_or(Decoder::Text),
            };
            let (type_oid, type_modifier) = decoder.pg_type(field_schema.as_ref());
            columns.push(ColumnSchema {
                name: name.clone(),
                type_oid,
                type_modifier,
                type_name: None,
                is_key: key_names.is_some_and(|keys| keys.contains(name)),
            });
            decoders.push(decoder);
        }
        let schema = TableSchema {
            table: raw.table.clone(),
            columns,
        };
        let cached = self.inferred.get(&raw.table).filter(|c| ***c == schema);
        let schema = match cached {
            Some(cached) => cached.clone(),
            None => {
                let schema = Arc::new(schema);
                self.inferred.insert(raw.table.clone(), schema.clone());
                schema
            }
        };
        (schema, decoders)
    }
}

fn parse_json(bytes: Option<&[u8]>, part: &'static str) -> Result<Option<Value>, Problem> {
    let Some(bytes) = bytes else { return Ok(None) };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Problem::InvalidJson {
        part,
        reason: e.to_string(),
    })?;
    Ok((!value.is_null()).then_some(value))
}

/// Splits `{"schema", "payload"}` into its halves; a bare payload has no schema.
fn split_wrapper(
    value: Value,
    part: &'static str,
) -> Result<(Option<ConnectSchema>, Value), Problem> {
    match value {
        Value::Object(mut map)
            if map.len() == 2 && map.contains_key("schema") && map.contains_key("payload") =>
        {
            let payload = map.remove("payload").expect("checked");
            let schema = match map.remove("schema").expect("checked") {
                Value::Null => None,
                schema => {
                    Some(
                        serde_json::from_value(schema).map_err(|e| Problem::InvalidJson {
                            part,
                            reason: format!("schema: {e}"),
                        })?,
                    )
                }
            };
            Ok((schema, payload))
        }
        other => Ok((None, other)),
    }
}

fn wrong_type(what: &str, expected: &'static str, found: &Value) -> Problem {
    let found = match found {
        Value::Null => "null".to_string(),
        Value::Bool(_) => "a boolean".to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", truncated(s)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    };
    Problem::WrongType {
        what: what.to_string(),
        expected,
        found,
    }
}

fn truncated(s: &str) -> String {
    let mut shown: String = s.chars().take(80).collect();
    if shown.len() < s.len() {
        shown.push('…');
    }
    shown
}

/// A Kafka Connect schema as the JSON converter writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ConnectSchema {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, String>,
    #[serde(default)]
    items: Option<Box<ConnectSchema>>,
    #[serde(default)]
    fields: Vec<ConnectField>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ConnectField {
    field: String,
    #[serde(flatten)]
    schema: ConnectSchema,
}

impl ConnectSchema {
    fn field(&self, name: &str) -> Option<&ConnectSchema> {
        self.fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| &f.schema)
    }
}

/// The parts of one record, before its values are decoded.
struct RawEvent {
    operation: Operation,
    table: TableName,
    /// Column names in event order, with their Connect schema when the event has one.
    columns: Vec<(String, Option<ConnectSchema>)>,
    after: Option<Map<String, Value>>,
    before: Option<Map<String, Value>>,
    timestamp: Option<DateTime<Utc>>,
    metadata: EventMetadata,
}

impl RawEvent {
    fn from_envelope(
        mut payload: Map<String, Value>,
        schema: Option<ConnectSchema>,
    ) -> Result<RawEvent, Problem> {
        let op = match payload.get("op") {
            Some(Value::String(op)) => op.clone(),
            Some(other) => return Err(wrong_type("op", "a string", other)),
            None => return Err(Problem::Missing { what: "op".into() }),
        };
        let (operation, snapshot_op) = match op.as_str() {
            "c" => (Operation::Insert, false),
            "r" => (Operation::Insert, true),
            "u" => (Operation::Update, false),
            "d" => (Operation::Delete, false),
            "t" => (Operation::Truncate, false),
            _ => return Err(Problem::UnknownOp(op)),
        };
        let source = match payload.remove("source") {
            Some(Value::Object(source)) => source,
            None | Some(Value::Null) => {
                return Err(Problem::Missing {
                    what: "source".into(),
                })
            }
            Some(other) => return Err(wrong_type("source", "an object", &other)),
        };
        let field = |name: &str| source.get(name).filter(|v| !v.is_null());
        let table = TableName::new(
            required_str(field("schema"), "source.schema")?,
            required_str(field("table"), "source.table")?,
        );
        let after = optional_row(payload.remove("after"), "after")?;
        let before = optional_row(payload.remove("before"), "before")?;
        if operation != Operation::Truncate {
            let needed = if operation == Operation::Delete {
                ("before", &before)
            } else {
                ("after", &after)
            };
            if needed.1.is_none() {
                return Err(Problem::Missing {
                    what: format!("{} (op {op})", needed.0),
                });
            }
        }
        let row_schema = schema
            .as_ref()
            .and_then(|s| s.field("after").or(s.field("before")));
        let sample = after.as_ref().or(before.as_ref());
        let columns = column_list(row_schema, sample, |_| true);
        let snapshot = snapshot_op || is_snapshot_marker(field("snapshot"));
        Ok(RawEvent {
            operation,
            table,
            columns,
            after: after.filter(|_| operation != Operation::Delete),
            before,
            timestamp: timestamp_of(field("ts_us"), field("ts_ms"), "source")?.or(timestamp_of(
                None,
                payload.get("ts_ms"),
                "ts_ms",
            )?),
            metadata: EventMetadata {
                database: optional_str(field("db"), "source.db")?.unwrap_or_default(),
                lsn: Lsn(optional_u64(field("lsn"), "source.lsn")?.unwrap_or(0)),
                tx_id: optional_tx_id(field("txId"), "source.txId")?,
                snapshot,
            },
        })
    }

    fn from_unwrapped(
        row: Map<String, Value>,
        schema: Option<ConnectSchema>,
        topic: Option<&str>,
    ) -> Result<RawEvent, Problem> {
        let meta = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| row.get(*n).filter(|v| !v.is_null()))
        };
        let table = unwrapped_table(
            optional_str(meta(&["__schema", "__source_schema"]), "__schema")?,
            optional_str(meta(&["__table", "__source_table"]), "__table")?,
            topic,
        )?;
        let deleted = match meta(&["__deleted"]) {
            Some(Value::String(s)) => s == "true",
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("__deleted", "\"true\" or \"false\"", other)),
            None => false,
        };
        let op = optional_str(meta(&["__op"]), "__op")?;
        let (operation, snapshot_op) = match (op.as_deref(), deleted) {
            (_, true) | (Some("d"), _) => (Operation::Delete, false),
            (Some("c"), _) => (Operation::Insert, false),
            (Some("r"), _) => (Operation::Insert, true),
            (Some("u"), _) | (None, _) => (Operation::Update, false),
            (Some("t"), _) => (Operation::Truncate, false),
            (Some(other), _) => return Err(Problem::UnknownOp(other.to_string())),
        };
        let columns = column_list(schema.as_ref(), Some(&row), |name| {
            !is_unwrap_metadata(name)
        });
        let snapshot =
            snapshot_op || is_snapshot_marker(meta(&["__snapshot", "__source_snapshot"]));
        let timestamp = timestamp_of(
            meta(&["__source_ts_us"]),
            meta(&["__source_ts_ms"]),
            "__source_ts_ms",
        )?
        .or(timestamp_of(None, meta(&["__ts_ms"]), "__ts_ms")?);
        let metadata = EventMetadata {
            database: optional_str(meta(&["__db", "__source_db"]), "__db")?.unwrap_or_default(),
            lsn: Lsn(optional_u64(meta(&["__lsn", "__source_lsn"]), "__lsn")?.unwrap_or(0)),
            tx_id: optional_tx_id(meta(&["__txId", "__source_txId"]), "__txId")?,
            snapshot,
        };
        let (after, before) = match operation {
            Operation::Delete => (None, Some(row)),
            Operation::Truncate => (None, None),
            _ => (Some(row), None),
        };
        Ok(RawEvent {
            operation,
            table,
            columns,
            after,
            before,
            timestamp,
            metadata,
        })
    }
}

/// The Debezium envelope, as opposed to a row flattened by `ExtractNewRecordState`.
fn is_envelope(schema: Option<&ConnectSchema>, payload: &Map<String, Value>) -> bool {
    if let Some(name) = schema.and_then(|s| s.name.as_deref()) {
        return name.ends_with(".Envelope");
    }
    let has = |key: &str| payload.contains_key(key);
    let has_row = has("after") || has("before");
    (has("op") && (has("source") || has_row)) || (has("source") && has_row)
}

/// Debezium's heartbeats (`heartbeat.interval.ms`) and transaction BEGIN/END markers
/// (`provide.transaction.metadata`) carry no row change.
fn is_heartbeat_or_transaction_marker(
    topic: Option<&str>,
    schema: Option<&ConnectSchema>,
    payload: &Map<String, Value>,
) -> bool {
    let schema_name = schema.and_then(|s| s.name.as_deref()).unwrap_or_default();
    if topic.is_some_and(|t| t.starts_with("__debezium-heartbeat"))
        || schema_name == "io.debezium.connector.common.Heartbeat"
        || schema_name.ends_with(".TransactionMetadataValue")
    {
        return true;
    }
    let is_marker_status = matches!(
        payload.get("status").and_then(Value::as_str),
        Some("BEGIN" | "END")
    );
    is_marker_status && payload.contains_key("id") && payload.contains_key("event_count")
}

/// Metadata fields `ExtractNewRecordState` adds (`add.fields`, `add.headers` excluded).
fn is_unwrap_metadata(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("__") else {
        return false;
    };
    const NAMES: &[&str] = &[
        "op",
        "deleted",
        "lsn",
        "table",
        "schema",
        "db",
        "txId",
        "ts_ms",
        "ts_us",
        "ts_ns",
        "snapshot",
        "sequence",
        "name",
        "version",
        "connector",
        "xmin",
    ];
    NAMES.contains(&rest) || rest.starts_with("source_") || rest.starts_with("transaction_")
}

fn unwrapped_table(
    schema: Option<String>,
    table: Option<String>,
    topic: Option<&str>,
) -> Result<TableName, Problem> {
    if let (Some(schema), Some(table)) = (&schema, &table) {
        return Ok(TableName::new(schema, table));
    }
    // Default topic naming: <topic.prefix>.<schema>.<table>.
    let from_topic = topic.and_then(|topic| {
        let mut parts = topic.rsplitn(3, '.');
        let name = parts.next()?;
        let schema = parts.next()?;
        Some(TableName::new(schema, name))
    });
    match (table, from_topic) {
        (Some(table), Some(from_topic)) => Ok(TableName::new(from_topic.schema, table)),
        (None, Some(from_topic)) => Ok(from_topic),
        _ => Err(Problem::Missing {
            what: "table name (no __schema/__table fields and no <prefix>.<schema>.<table> topic)"
                .into(),
        }),
    }
}

fn column_list(
    row_schema: Option<&ConnectSchema>,
    sample: Option<&Map<String, Value>>,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, Option<ConnectSchema>)> {
    match row_schema {
        Some(schema) => schema
            .fields
            .iter()
            .filter(|f| keep(&f.field))
            .map(|f| (f.field.clone(), Some(f.schema.clone())))
            .collect(),
        None => sample
            .into_iter()
            .flat_map(|row| row.keys())
            .filter(|name| keep(name))
            .map(|name| (name.clone(), None))
            .collect(),
    }
}

fn is_snapshot_marker(value: Option<&Value>) -> bool {
    match value {
        Some(Value::String(s)) => !matches!(s.as_str(), "false" | ""),
        Some(Value::Bool(b)) => *b,
        _ => false,
    }
}

fn optional_row(value: Option<Value>, what: &str) -> Result<Option<Map<String, Value>>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(row)) => Ok(Some(row)),
        Some(other) => Err(wrong_type(what, "an object or null", &other)),
    }
}

fn required_str(value: Option<&Value>, what: &str) -> Result<String, Problem> {
    optional_str(value, what)?.ok_or_else(|| Problem::Missing { what: what.into() })
}

fn optional_str(value: Option<&Value>, what: &str) -> Result<Option<String>, Problem> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(what, "a string", other)),
    }
}

fn optional_u64(value: Option<&Value>, what: &str) -> Result<Option<u64>, Problem> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64()),
        Some(other) => Err(wrong_type(what, "a non-negative whole number", other)),
    }
}

fn optional_tx_id(value: Option<&Value>, what: &str) -> Result<Option<u32>, Problem> {
    let Some(id) = optional_u64(value, what)? else {
        return Ok(None);
    };
    // Transaction ids past 2^32 are epoch-qualified (xid8): keep the 32-bit xid like pgoutput.
    Ok(Some((id & 0xFFFF_FFFF) as u32))
}

fn timestamp_of(
    micros: Option<&Value>,
    millis: Option<&Value>,
    what: &str,
) -> Result<Option<DateTime<Utc>>, Problem> {
    let as_i64 = |v: &Value| {
        v.as_i64()
            .ok_or_else(|| wrong_type(what, "a whole number", v))
    };
    let parsed = match (micros, millis) {
        (Some(us), _) => DateTime::from_timestamp_micros(as_i64(us)?),
        (None, Some(ms)) => DateTime::from_timestamp_millis(as_i64(ms)?),
        (None, None) => return Ok(None),
    };
    parsed.map(Some).ok_or_else(|| Problem::BadValue {
        column: what.into(),
        reason: "timestamp out of range".into(),
    })
}

/// How one column's JSON value becomes PostgreSQL text.
#[derive(Debug, Clone, PartialEq)]
enum Decoder {
    Int,
    Float32,
    Float64,
    Bool,
    Text,
    Bytes,
    Date,
    TimeMillis,
    TimeMicros,
    TimeNanos,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    ZonedTimestamp,
    ZonedTime,
    /// `interval.handling.mode=string`: ISO 8601 `P1Y2M3DT4H5M6.5S`.
    Interval,
    Decimal {
        scale: u32,
    },
    VariableScaleDecimal,
    Array(Box<Decoder>),
    /// A struct Debezium has no scalar form for (e.g. geometry): kept as its JSON text.
    JsonText,
}

impl Decoder {
    fn from_connect(schema: &ConnectSchema) -> Decoder {
        match schema.name.as_deref() {
            Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date") => Decoder::Date,
            Some("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time") => {
                Decoder::TimeMillis
            }
            Some("io.debezium.time.MicroTime") => Decoder::TimeMicros,
            Some("io.debezium.time.NanoTime") => Decoder::TimeNanos,
            Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
                Decoder::TimestampMillis
            }
            Some("io.debezium.time.MicroTimestamp") => Decoder::TimestampMicros,
            Some("io.debezium.time.NanoTimestamp") => Decoder::TimestampNanos,
            Some("io.debezium.time.ZonedTimestamp") => Decoder::ZonedTimestamp,
            Some("io.debezium.time.ZonedTime") => Decoder::ZonedTime,
            Some("io.debezium.time.Interval" | "io.debezium.time.MicroDuration") => {
                Decoder::Interval
            }
            Some("org.apache.kafka.connect.data.Decimal") => Decoder::Decimal {
                scale: schema
                    .parameters
                    .get("scale")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            },
            Some("io.debezium.data.VariableScaleDecimal") => Decoder::VariableScaleDecimal,
            _ => match schema.kind.as_str() {
                "int8" | "int16" | "int32" | "int64" => Decoder::Int,
                "float" | "float32" => Decoder::Float32,
                "double" | "float64" => Decoder::Float64,
                "boolean" => Decoder::Bool,
                "bytes" => Decoder::Bytes,
                "array" => Decoder::Array(Box::new(
                    schema
                        .items
                        .as_deref()
                        .map(Decoder::from_connect)
                        .unwrap_or(Decoder::Text),
                )),
                "struct" | "map" => Decoder::JsonText,
                _ => Decoder::Text,
            },
        }
    }

    /// Without any schema: the JSON form decides.
    fn from_json(value: &Value) -> Decoder {
        match value {
            Value::Bool(_) => Decoder::Bool,
            Value::Number(n) if n.is_f64() => Decoder::Float64,
            Value::Number(_) => Decoder::Int,
            Value::Array(items) => Decoder::Array(Box::new(
                items
                    .iter()
                    .find(|v| !v.is_null())
                    .map(Decoder::from_json)
                    .unwrap_or(Decoder::Text),
            )),
            Value::Object(map) if map.contains_key("scale") && map.contains_key("value") => {
                Decoder::VariableScaleDecimal
            }
            Value::Object(_) => Decoder::JsonText,
            _ => Decoder::Text,
        }
    }

    /// What the connector sends for a PostgreSQL column under its default settings.
    fn from_pg(type_oid: u32, type_modifier: i32) -> Decoder {
        use crate::event::decimal_precision_scale;
        let at_most_millis = (0..=3).contains(&type_modifier);
        match type_oid {
            20 | 21 | 23 | 26 => Decoder::Int,
            700 => Decoder::Float32,
            701 => Decoder::Float64,
            16 => Decoder::Bool,
            17 => Decoder::Bytes,
            1082 => Decoder::Date,
            1083 if at_most_millis => Decoder::TimeMillis,
            1083 => Decoder::TimeMicros,
            1114 if at_most_millis => Decoder::TimestampMillis,
            1114 => Decoder::TimestampMicros,
            1184 => Decoder::ZonedTimestamp,
            1266 => Decoder::ZonedTime,
            1186 => Decoder::Interval,
            1700 => match decimal_precision_scale(type_modifier) {
                Some((_, scale)) => Decoder::Decimal {
                    scale: scale as u32,
                },
                None => Decoder::VariableScaleDecimal,
            },
            other => match pg_array_element(other) {
                Some(element) => Decoder::Array(Box::new(Decoder::from_pg(element, type_modifier))),
                None => Decoder::Text,
            },
        }
    }

    /// The PostgreSQL type a column decoded this way most likely has (text when unsure).
    fn pg_type(&self, schema: Option<&ConnectSchema>) -> (u32, i32) {
        let parameter = |name: &str| schema.and_then(|s| s.parameters.get(name));
        match self {
            Decoder::Int => match schema.map(|s| s.kind.as_str()) {
                Some("int8" | "int16") => (21, -1),
                Some("int32") => (23, -1),
                _ => (20, -1),
            },
            Decoder::Float32 => (700, -1),
            Decoder::Float64 => (701, -1),
            Decoder::Bool => (16, -1),
            Decoder::Bytes => (17, -1),
            Decoder::Date => (1082, -1),
            Decoder::TimeMillis | Decoder::TimeMicros | Decoder::TimeNanos => (1083, -1),
            Decoder::TimestampMillis | Decoder::TimestampMicros | Decoder::TimestampNanos => {
                (1114, -1)
            }
            Decoder::ZonedTimestamp => (1184, -1),
            Decoder::ZonedTime => (1266, -1),
            Decoder::Interval => (1186, -1),
            Decoder::Decimal { scale } => {
                let precision =
                    parameter("connect.decimal.precision").and_then(|p| p.parse::<i32>().ok());
                match precision {
                    Some(p) => (1700, ((p << 16) | *scale as i32) + 4),
                    None => (1700, -1),
                }
            }
            Decoder::VariableScaleDecimal => (1700, -1),
            Decoder::Array(element) => {
                let items = schema.and_then(|s| s.items.as_deref());
                let (element_oid, modifier) = element.pg_type(items);
                (pg_array_of(element_oid), modifier)
            }
            Decoder::JsonText | Decoder::Text => match schema.and_then(|s| s.name.as_deref()) {
                Some("io.debezium.data.Uuid") => (2950, -1),
                Some("io.debezium.data.Json") => (3802, -1),
                _ => (25, -1),
            },
        }
    }

    fn decode(&self, value: &Value) -> Result<Cell, String> {
        if value.is_null() {
            return Ok(Cell::Null);
        }
        if is_unavailable(value) {
            return Ok(Cell::UnchangedToast);
        }
        self.render(value).map(Cell::Text)
    }

    fn render(&self, value: &Value) -> Result<String, String> {
        let expected = |what: &str| format!("expected {what}, found {}", short_json(value));
        let int = || value.as_i64().ok_or_else(|| expected("a whole number"));
        let string = || value.as_str().ok_or_else(|| expected("a string"));
        match self {
            Decoder::Int => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
                _ => Err(expected("a whole number")),
            },
            Decoder::Float32 => render_float(value, true).ok_or_else(|| expected("a number")),
            Decoder::Float64 => render_float(value, false).ok_or_else(|| expected("a number")),
            Decoder::Bool => match value {
                Value::Bool(true) => Ok("t".into()),
                Value::Bool(false) => Ok("f".into()),
                _ => Err(expected("true or false")),
            },
            Decoder::Text => match value {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(expected("a string")),
            },
            Decoder::JsonText => Ok(value.to_string()),
            Decoder::Bytes => Ok(format!("\\x{}", hex::encode(decode_base64(string()?)?))),
            Decoder::Date => render_date(int()?),
            Decoder::TimeMillis => render_time(int()?.checked_mul(1000)),
            Decoder::TimeMicros => render_time(Some(int()?)),
            Decoder::TimeNanos => render_time(Some(int()? / 1000)),
            Decoder::TimestampMillis => render_timestamp(int()?.checked_mul(1000)),
            Decoder::TimestampMicros => render_timestamp(Some(int()?)),
            Decoder::TimestampNanos => render_timestamp(Some(int()?.div_euclid(1000))),
            Decoder::ZonedTimestamp => render_zoned_timestamp(string()?),
            Decoder::ZonedTime => render_zoned_time(string()?),
            Decoder::Interval => match value {
                Value::String(iso) => render_interval(iso),
                _ => Err(format!(
                    "interval as {} (microseconds with 30-day months) cannot be rendered \
                     exactly: set the connector's interval.handling.mode=string",
                    short_json(value)
                )),
            },
            Decoder::Decimal { scale } => match value {
                Value::Number(n) => Ok(n.to_string()),
                _ => Ok(render_unscaled(&decode_base64(string()?)?, *scale)),
            },
            Decoder::VariableScaleDecimal => render_variable_scale(value),
            Decoder::Array(element) => {
                let Value::Array(items) = value else {
                    return Err(expected("an array"));
                };
                render_array(element, items)
            }
        }
    }
}

/// The event's own schema where it has one (it reflects the connector's settings), else what
/// the connector sends for the column's PostgreSQL type by default.
fn registered_decoders(schema: &TableSchema, raw: &RawEvent) -> Vec<Decoder> {
    let connect_schema = |name: &str| {
        raw.columns
            .iter()
            .find(|(column, _)| column == name)
            .and_then(|(_, schema)| schema.as_ref())
    };
    schema
        .columns
        .iter()
        .map(|c| match connect_schema(&c.name) {
            Some(connect) => Decoder::from_connect(connect),
            None => Decoder::from_pg(c.type_oid, c.type_modifier),
        })
        .collect()
}

fn row_cells(
    schema: &TableSchema,
    decoders: &[Decoder],
    row: &Map<String, Value>,
) -> Result<Vec<Cell>, Problem> {
    for name in row.keys() {
        if !is_unwrap_metadata(name) && schema.column_index(name).is_none() {
            return Err(Problem::UnknownColumn {
                table: schema.table.clone(),
                column: name.clone(),
            });
        }
    }
    schema
        .columns
        .iter()
        .zip(decoders)
        .map(|(column, decoder)| {
            // A column the event lacks was added after it or dropped before it: null, as
            // direct mode writes for a dropped column. Keys must be there.
            let Some(value) = row.get(&column.name) else {
                return match column.is_key {
                    true => Err(Problem::MissingColumn {
                        table: schema.table.clone(),
                        column: column.name.clone(),
                    }),
                    false => Ok(Cell::Null),
                };
            };
            decoder.decode(value).map_err(|reason| Problem::BadValue {
                column: column.name.clone(),
                reason,
            })
        })
        .collect()
}

fn is_unavailable(value: &Value) -> bool {
    const UNAVAILABLE_BASE64: &str = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==";
    match value {
        Value::String(s) => s == UNAVAILABLE_VALUE || s == UNAVAILABLE_BASE64,
        Value::Array(items) => items.len() == 1 && is_unavailable(&items[0]),
        _ => false,
    }
}

fn short_json(value: &Value) -> String {
    truncated(&value.to_string())
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("invalid base64 {:?}: {e}", truncated(text)))
}

/// PostgreSQL's float output (shortest exact digits, exponent outside 1e-4..1e15 or 1e6 for
/// float4), so the text equals what direct mode reads. The number is the f64 nearest to the
/// digits Debezium wrote (serde_json's `float_roundtrip` parses exactly; without it values
/// such as `995691.6416561991` come out one unit in the last place off); for float4 those
/// digits are Java's `Float.toString`, which rounds to the same f32 through that f64.
fn render_float(value: &Value, single: bool) -> Option<String> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => match s.as_str() {
            "NaN" | "Infinity" | "-Infinity" => return Some(s.clone()),
            _ => return None,
        },
        _ => return None,
    };
    let scientific = if single {
        format!("{:e}", number as f32)
    } else {
        format!("{number:e}")
    };
    let (mantissa, exponent) = scientific.split_once('e')?;
    let exponent: i32 = exponent.parse().ok()?;
    let fixed_limit = if single { 6 } else { 15 };
    if (-4..fixed_limit).contains(&exponent) {
        return Some(if single {
            (number as f32).to_string()
        } else {
            number.to_string()
        });
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    Some(format!("{mantissa}e{sign}{:02}", exponent.abs()))
}

fn render_date(days: i64) -> Result<String, String> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let date = i32::try_from(days)
        .ok()
        .and_then(|d| epoch.checked_add_signed(chrono::Duration::days(d.into())))
        .ok_or_else(|| format!("date {days} days from 1970-01-01 is out of range"))?;
    Ok(format!("{}{}", format_date(date), era_suffix(date)))
}

/// `YYYY-MM-DD`, with PostgreSQL's ` BC` suffix instead of astronomical years <= 0.
fn format_date(date: NaiveDate) -> String {
    let year = date.year();
    let shown = if year <= 0 { 1 - year } else { year };
    format!("{shown:04}-{:02}-{:02}", date.month(), date.day())
}

fn era_suffix(date: NaiveDate) -> &'static str {
    if date.year() <= 0 {
        " BC"
    } else {
        ""
    }
}

/// `.ffffff` without trailing zeros, empty for whole seconds.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    format!(".{micros:06}").trim_end_matches('0').to_string()
}

fn render_time(micros: Option<i64>) -> Result<String, String> {
    const DAY: i64 = 86_400_000_000;
    let micros = micros
        .filter(|m| (0..=DAY).contains(m))
        .ok_or("time of day out of range")?;
    let seconds = micros / 1_000_000;
    Ok(format!(
        "{:02}:{:02}:{:02}{}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        fraction((micros % 1_000_000) as u32)
    ))
}

fn format_timestamp(at: NaiveDateTime) -> String {
    format!(
        "{} {:02}:{:02}:{:02}{}",
        format_date(at.date()),
        at.hour(),
        at.minute(),
        at.second(),
        fraction(at.nanosecond() / 1000)
    )
}

fn render_timestamp(micros: Option<i64>) -> Result<String, String> {
    let at = micros
        .and_then(DateTime::from_timestamp_micros)
        .ok_or("timestamp out of range")?
        .naive_utc();
    Ok(format!("{}{}", format_timestamp(at), era_suffix(at.date())))
}

fn render_zoned_timestamp(text: &str) -> Result<String, String> {
    if matches!(text, "infinity" | "-infinity") {
        return Ok(text.to_string());
    }
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("invalid ISO-8601 timestamp {text:?}: {e}"))?
        .naive_utc();
    Ok(format!(
        "{}+00{}",
        format_timestamp(at),
        era_suffix(at.date())
    ))
}

/// `13:45:01.5Z` or `13:45:01+02:00` -> `13:45:01.5+00` / `13:45:01+02`.
fn render_zoned_time(text: &str) -> Result<String, String> {
    let bad = || format!("invalid ISO-8601 time with offset {text:?}");
    let split = text
        .rfind(['Z', '+', '-'])
        .filter(|&i| i >= 8)
        .ok_or_else(bad)?;
    let (time, offset) = text.split_at(split);
    let offset = match offset {
        "Z" => "+00".to_string(),
        other => other
            .strip_suffix(":00")
            .filter(|o| o.len() == 3)
            .unwrap_or(other)
            .to_string(),
    };
    Ok(format!("{time}{offset}"))
}

/// ISO 8601 `P1Y2M3DT4H5M6.5S` (Debezium's `interval.handling.mode=string`) as PostgreSQL
/// renders it with `IntervalStyle=iso_8601`, normalized the way PostgreSQL stores intervals
/// (months, days, microseconds).
fn render_interval(iso: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid ISO 8601 interval {iso:?}: {why}");
    let rest = iso.strip_prefix('P').ok_or_else(|| bad("no leading P"))?;
    let (date_part, time_part) = rest.split_once('T').unwrap_or((rest, ""));
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    for (number, unit) in interval_fields(date_part).ok_or_else(|| bad("bad date part"))? {
        let whole: i64 = number.parse().map_err(|_| bad("fractional date field"))?;
        match unit {
            'Y' => months += whole * 12,
            'M' => months += whole,
            'W' => days += whole * 7,
            'D' => days += whole,
            _ => return Err(bad("unknown date unit")),
        }
    }
    for (number, unit) in interval_fields(time_part).ok_or_else(|| bad("bad time part"))? {
        let value = parse_micros(number).ok_or_else(|| bad("bad number"))?;
        micros += match unit {
            'H' => value * 3600,
            'M' => value * 60,
            'S' => value,
            _ => return Err(bad("unknown time unit")),
        };
    }
    Ok(format_interval(months, days, micros))
}

/// `1Y-2M3.5D` -> [("1", 'Y'), ("-2", 'M'), ("3.5", 'D')].
fn interval_fields(part: &str) -> Option<Vec<(&str, char)>> {
    let mut fields = Vec::new();
    let mut start = 0;
    for (i, c) in part.char_indices() {
        if c.is_ascii_alphabetic() {
            let number = &part[start..i];
            if number.is_empty() {
                return None;
            }
            fields.push((number, c));
            start = i + 1;
        }
    }
    (start == part.len()).then_some(fields)
}

/// A decimal number of seconds (or hours, minutes) as whole microseconds of that unit.
fn parse_micros(number: &str) -> Option<i64> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = format!("{fraction:0<6}").parse().ok()?;
    let value = whole.checked_mul(1_000_000)?.checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// PostgreSQL's `EncodeInterval` in the `iso_8601` style, which direct mode's session pins.
fn format_interval(months: i64, days: i64, micros: i64) -> String {
    let (hours, minutes) = (micros / 3_600_000_000, micros / 60_000_000 % 60);
    let (seconds, fraction_micros) = (micros / 1_000_000 % 60, micros % 1_000_000);
    if months == 0 && days == 0 && micros == 0 {
        return "PT0S".into();
    }
    let part = |value: i64, unit: char| match value {
        0 => String::new(),
        _ => format!("{value}{unit}"),
    };
    let mut out = format!(
        "P{}{}{}",
        part(months / 12, 'Y'),
        part(months % 12, 'M'),
        part(days, 'D')
    );
    if micros != 0 {
        out.push('T');
    }
    out.push_str(&part(hours, 'H'));
    out.push_str(&part(minutes, 'M'));
    if seconds != 0 || fraction_micros != 0 {
        if seconds < 0 || fraction_micros < 0 {
            out.push('-');
        }
        out.push_str(&format!(
            "{}{}S",
            seconds.abs(),
            fraction(fraction_micros.unsigned_abs() as u32)
        ));
    }
    out
}

fn render_variable_scale(value: &Value) -> Result<String, String> {
    let bad = || {
        format!(
            "expected {{\"scale\": n, \"value\": base64}}, found {}",
            short_json(value)
        )
    };
    let scale = value
        .get("scale")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(bad)?;
    let digits = value.get("value").and_then(Value::as_str).ok_or_else(bad)?;
    Ok(render_unscaled(&decode_base64(digits)?, scale))
}

/// A big-endian two's-complement unscaled integer of any length, as a decimal with `scale`.
fn render_unscaled(bytes: &[u8], scale: u32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = if negative {
        twos_complement_negate(bytes)
    } else {
        bytes.to_vec()
    };
    let mut digits = Vec::new(); // least significant first
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in magnitude.iter_mut() {
            let current = (remainder << 8) | *byte as u32;
            *byte = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    let scale = scale as usize;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (whole, fractional) = digits.split_at(digits.len() - scale);
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(whole).expect("ASCII digits"));
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(fractional).expect("ASCII digits"));
    }
    text
}

fn twos_complement_negate(bytes: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = bytes.iter().map(|b| !b).collect();
    for byte in out.iter_mut().rev() {
        let (sum, overflow) = byte.overflowing_add(1);
        *byte = sum;
        if !overflow {
            break;
        }
    }
    out
}

/// A one-dimensional PostgreSQL array literal, quoting elements as `array_out` does.
fn render_array(element: &Decoder, items: &[Value]) -> Result<String, String> {
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        if item.is_null() {
            parts.push("NULL".to_string());
            continue;
        }
        let text = element.render(item)?;
        parts.push(quote_array_element(&text));
    }
    Ok(format!("{{{}}}", parts.join(",")))
}

fn quote_array_element(text: &str) -> String {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !needs_quotes {
        return text.to_string();
    }
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// Element type of the array types Debezium sends as JSON arrays.
fn pg_array_element(type_oid: u32) -> Option<u32> {
    ARRAY_TYPES
        .iter()
        .find(|(array, _)| *array == type_oid)
        .map(|(_, element)| *element)
}

fn pg_array_of(element_oid: u32) -> u32 {
    ARRAY_TYPES
        .iter()
        .find(|(_, element)| *element == element_oid)
        .map(|(array, _)| *array)
        .unwrap_or(1009)
}

/// (array type, element type) OIDs.
const ARRAY_TYPES: &[(u32, u32)] = &[
    (1000, 16),
    (1001, 17),
    (1005, 21),
    (1007, 23),
    (1016, 20),
    (1021, 700),
    (1022, 701),
    (1182, 1082),
    (1183, 1083),
    (1115, 1114),
    (1185, 1184),
    (1231, 1700),
    (1009, 25),
    (1015, 1043),
    (2951, 2950),
    (3807, 3802),
    (199, 114),
];

#[cfg(test)]
mod tests;
