//! The one CDC event model shared by every source (pgoutput, Debezium) and the sinks.

pub mod debezium;
mod lsn;
mod position;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

pub use crate::config::{quote_ident, ParseTableNameError, TableName};
pub use lsn::{Lsn, ParseLsnError};
pub use position::{Origin, SourceRecord, TopicPartition};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Truncate => "TRUNCATE",
        }
    }
}

/// One column value as the source rendered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cell {
    Null,
    /// The value in PostgreSQL's text output format.
    Text(String),
    /// A TOASTed value the update did not touch: the stored value must be kept.
    UnchangedToast,
}

impl Cell {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A column as the source describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSchema {
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod`: precision/scale for numeric, length for varchar, -1 when none.
    pub type_modifier: i32,
    /// The type's name where the source names it (PostgreSQL's catalog, pgoutput's Type
    /// message): extension types such as `hstore` have no fixed OID.
    pub type_name: Option<String>,
    pub is_key: bool,
}

/// The columns of a table, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub table: TableName,
    pub columns: Vec<ColumnSchema>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn key_indexes(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].is_key)
            .collect()
    }
}

/// Where an event came from in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub database: String,
    /// Commit end position of the transaction that made the change.
    pub lsn: Lsn,
    pub tx_id: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
}

/// One row change (or a truncate) in one table.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub operation: Operation,
    pub schema: Arc<TableSchema>,
    /// The row after the change (INSERT, UPDATE); `None` for DELETE and TRUNCATE.
    pub data: Option<Vec<Cell>>,
    /// The row before the change when known: the old key or, with REPLICA IDENTITY FULL, the
    /// whole old row; for DELETE the key (or whole row) of the deleted row.
    pub before: Option<Vec<Cell>>,
    /// `before` is the whole old row (REPLICA IDENTITY FULL), not only its key.
    pub before_is_whole_row: bool,
    pub commit_timestamp: DateTime<Utc>,
    pub metadata: EventMetadata,
}

impl ChangeEvent {
    pub fn table(&self) -> &TableName {
        &self.schema.table
    }

    /// Key cells of the row this event leaves behind (or removes, for a delete).
    pub fn key_of(&self, key_indexes: &[usize]) -> Option<Vec<Cell>> {
        let row = match self.operation {
            Operation::Insert | Operation::Update => self.data.as_ref(),
            Operation::Delete => self.before.as_ref(),
            Operation::Truncate => None,
        }?;
        Some(key_indexes.iter().map(|&i| row[i].clone()).collect())
    }

    /// For an UPDATE that changed the key: the key the row had before.
    pub fn previous_key(&self, key_indexes: &[usize]) -> Option<Vec<Cell>> {
        if self.operation != Operation::Update {
            return None;
        }
        let before = self.before.as_ref()?;
        let old: Vec<Cell> = key_indexes.iter().map(|&i| before[i].clone()).collect();
        let old_is_known = old.iter().all(|c| matches!(c, Cell::Text(_)));
        (old_is_known && Some(&old) != self.key_of(key_indexes).as_ref()).then_some(old)
    }
}

struct RowJson<'a> {
    schema: &'a TableSchema,
    cells: &'a [Cell],
    only: Option<&'a [usize]>,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let all: Vec<usize> = (0..self.cells.len()).collect();
        let indexes = self.only.unwrap_or(&all);
        let mut map = serializer.serialize_map(Some(indexes.len()))?;
        for &i in indexes {
            let name = &self.schema.columns[i].name;
            match &self.cells[i] {
                Cell::Null => map.serialize_entry(name, &serde_json::Value::Null)?,
                Cell::Text(text) => map.serialize_entry(name, text)?,
                Cell::UnchangedToast => {
                    map.serialize_entry(name, "__debezium_unavailable_value")?
                }
            }
        }
        map.end()
    }
}

impl Serialize for ChangeEvent {
    /// `{"operation","table","data","before","timestamp","metadata","primaryKey"}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn row<'a>(schema: &'a TableSchema, cells: &'a Option<Vec<Cell>>) -> Option<RowJson<'a>> {
            cells.as_ref().map(|cells| RowJson {
                schema,
                cells,
                only: None,
            })
        }
        let key_indexes = self.schema.key_indexes();
        let key_row = match self.operation {
            Operation::Delete => self.before.as_ref(),
            _ => self.data.as_ref(),
        };
        let primary_key = key_row.map(|cells| RowJson {
            schema: &self.schema,
            cells,
            only: Some(&key_indexes),
        });
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("operation", &self.operation)?;
        map.serialize_entry("table", &self.table().to_string())?;
        map.serialize_entry("data", &row(&self.schema, &self.data))?;
        map.serialize_entry("before", &row(&self.schema, &self.before))?;
        map.serialize_entry("timestamp", &self.commit_timestamp)?;
        map.serialize_entry("metadata", &self.metadata)?;
        map.serialize_entry("primaryKey", &primary_key)?;
        map.end()
    }
}

/// A committed source transaction: its changes in source order.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub xid: Option<u32>,
    /// End of the commit record: the position to confirm once the transaction is durable.
    pub end_lsn: Lsn,
    pub commit_timestamp: DateTime<Utc>,
    pub events: Vec<ChangeEvent>,
}

/// Largest decimal precision Delta (and Spark) support.
const MAX_DECIMAL_PRECISION: i32 = 38;

/// (precision, scale) of a `numeric(p, s)` type modifier when Delta can hold it as a decimal.
pub fn decimal_precision_scale(type_modifier: i32) -> Option<(u8, u8)> {
    if type_modifier < 4 {
        return None; // unconstrained numeric: any precision, kept as text
    }
    let packed = type_modifier - 4;
    let precision = (packed >> 16) & 0xffff;
    let scale = packed & 0xffff;
    let fits = (1..=MAX_DECIMAL_PRECISION).contains(&precision) && scale <= precision;
    fits.then_some((precision as u8, scale as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers() -> Arc<TableSchema> {
        let column = |name: &str, is_key| ColumnSchema {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            type_name: None,
            is_key,
        };
        Arc::new(TableSchema {
            table: TableName::new("public", "customers"),
            columns: vec![column("id", true), column("name", false)],
        })
    }

    fn event(
        operation: Operation,
        data: Option<Vec<Cell>>,
        before: Option<Vec<Cell>>,
    ) -> ChangeEvent {
        ChangeEvent {
            operation,
            schema: customers(),
            data,
            before,
            before_is_whole_row: false,
            commit_timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            metadata: EventMetadata {
                database: "cdcdb".into(),
                lsn: Lsn(0x16B3748),
                tx_id: Some(42),
                snapshot: false,
            },
        }
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn serializes_to_the_documented_json_shape() {
        let ev = event(Operation::Update, Some(vec![text("1"), text("Ada")]), None);
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["operation"], "UPDATE");
        assert_eq!(json["table"], "public.customers");
        assert_eq!(json["data"]["name"], "Ada");
        assert_eq!(json["before"], serde_json::Value::Null);
        assert_eq!(json["metadata"]["lsn"], "0/16B3748");
        assert_eq!(json["metadata"]["txId"], 42);
        assert_eq!(json["primaryKey"], serde_json::json!({"id": "1"}));
        assert_eq!(json["timestamp"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn finds_the_previous_key_of_a_key_changing_update() {
        let ev = event(
            Operation::Update,
            Some(vec![text("2"), text("Ada")]),
            Some(vec![text("1"), Cell::Null]),
        );
        assert_eq!(ev.key_of(&[0]), Some(vec![text("2")]));
        assert_eq!(ev.previous_key(&[0]), Some(vec![text("1")]));
        let same = event(
            Operation::Update,
            Some(vec![text("1"), text("B")]),
            Some(vec![text("1"), Cell::Null]),
        );
        assert_eq!(same.previous_key(&[0]), None);
    }
}
