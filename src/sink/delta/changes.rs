//! Collapses a batch of row changes so each key's last change wins.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;
use indexmap::IndexMap;

use crate::event::{Cell, ChangeEvent, Operation, TableName, TableSchema};

/// What one key ends as after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// The row's final values, aligned with the Delta columns.
    Upsert(Vec<Cell>),
    Delete,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "table {table}: column '{column}' arrived from the source but is not in the Delta table; \
         add it to the Delta table or recreate the table (schema evolution is not enabled)"
    )]
    UnknownColumn { table: TableName, column: String },
    #[error("table {table}: a {operation} at LSN {lsn} has no value for key column '{column}'")]
    MissingKey {
        table: TableName,
        operation: &'static str,
        lsn: crate::event::Lsn,
        column: String,
    },
}

/// The net effect of a batch on one table, keyed by primary key.
#[derive(Debug)]
pub struct TableChanges {
    table: TableName,
    columns: Vec<String>,
    key_positions: Vec<usize>,
    /// Whether the table was truncated; rows then hold only what came after the last truncate.
    pub truncated: bool,
    /// Each key's last change, in the order the keys were first seen.
    rows: IndexMap<Vec<Cell>, RowChange, RandomState>,
    /// The whole row each key had before the batch, where the source sent it (REPLICA
    /// IDENTITY FULL) with the key's first change in the batch.
    old_rows: HashMap<Vec<Cell>, Vec<Cell>, RandomState>,
    /// Per source schema: how its columns feed the Delta columns.
    mappings: Vec<(Arc<TableSchema>, ColumnMapping)>,
    pub events: usize,
    /// Whether every change pushed so far was an INSERT.
    pub only_inserts: bool,
}

impl TableChanges {
    /// `columns` are the Delta table's columns in order; `key` names the key columns.
    pub fn new(table: TableName, columns: Vec<String>, key: &[String]) -> Self {
        let key_positions = key
            .iter()
            .filter_map(|k| columns.iter().position(|c| c == k))
            .collect();
        TableChanges {
            table,
            columns,
            key_positions,
            truncated: false,
            rows: IndexMap::default(),
            old_rows: HashMap::default(),
            mappings: Vec::new(),
            events: 0,
            only_inserts: true,
        }
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn key_positions(&self) -> &[usize] {
        &self.key_positions
    }

    pub fn is_empty(&self) -> bool {
        !self.truncated && self.rows.is_empty()
    }

    /// How many keys have a surviving change.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// The surviving changes in the order their keys were first seen.
    pub fn rows(&self) -> impl Iterator<Item = (&Vec<Cell>, &RowChange)> {
        self.rows.iter()
    }

    /// Drops `key`'s change (one that cannot be applied and went elsewhere).
    pub fn remove(&mut self, key: &Vec<Cell>) -> Option<RowChange> {
        self.rows.shift_remove(key)
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// Adds one change; the event's cells move into the change set.
    pub fn push(&mut self, mut event: ChangeEvent) -> Result<(), ChangeError> {
        self.events += 1;
        self.only_inserts &= event.operation == Operation::Insert;
        if event.operation == Operation::Truncate {
            self.truncated = true;
            self.rows.clear();
            self.old_rows.clear();
            return Ok(());
        }
        let mapping = self.mapping_for(&event.schema)?;
        let whole_old_row = event.before_is_whole_row && mapping.covers_every_column();
        let after = event.data.take().map(|cells| mapping.align(cells));
        let before = event.before.take().map(|cells| mapping.align(cells));
        let event = &event;
        if let Some(old_row) = before.as_ref().filter(|_| whole_old_row) {
            self.remember_old_row(old_row, event);
        }
        match event.operation {
            Operation::Insert | Operation::Update => {
                let after = after.expect("insert and update events carry the new row");
                let key = self.key_of(&after, event)?;
                if let Some(old_row) = &before {
                    let old_key = self.key_of(old_row, event).ok();
                    if let Some(old_key) = old_key.filter(|old| *old != key) {
                        self.record(old_key, RowChange::Delete);
                    }
                }
                let merged = self.fill_unchanged_from_earlier(&key, after);
                self.record(key, RowChange::Upsert(merged));
            }
            Operation::Delete => {
                let old_row = before.expect("delete events carry the old key");
                let key = self.key_of(&old_row, event)?;
                self.record(key, RowChange::Delete);
            }
            Operation::Truncate => unreachable!("handled above"),
        }
        Ok(())
    }

    fn mapping_for(&mut self, schema: &Arc<TableSchema>) -> Result<&ColumnMapping, ChangeError> {
        if let Some(index) = self
            .mappings
            .iter()
            .position(|(s, _)| Arc::ptr_eq(s, schema))
        {
            return Ok(&self.mappings[index].1);
        }
        if let Some(extra) = schema
            .columns
            .iter()
            .find(|c| !self.columns.contains(&c.name))
        {
            return Err(ChangeError::UnknownColumn {
                table: self.table.clone(),
                column: extra.name.clone(),
            });
        }
        let mapping = ColumnMapping::between(schema, &self.columns);
        self.mappings.push((schema.clone(), mapping));
        Ok(&self.mappings.last().expect("just pushed").1)
    }

    fn key_of(&self, row: &[Cell], event: &ChangeEvent) -> Result<Vec<Cell>, ChangeError> {
        self.key_positions
            .iter()
            .map(|&i| match &row[i] {
                Cell::Text(_) => Ok(row[i].clone()),
                _ => Err(ChangeError::MissingKey {
                    table: self.table.clone(),
                    operation: event.operation.as_str(),
                    lsn: event.metadata.lsn,
                    column: self.columns[i].clone(),
                }),
            })
            .collect()
    }

    /// An update that left a TOASTed column untouched carries no value for it; an earlier
    /// change in the same batch may have it.
    fn fill_unchanged_from_earlier(&self, key: &Vec<Cell>, mut row: Vec<Cell>) -> Vec<Cell> {
        if let Some(RowChange::Upsert(earlier)) = self.rows.get(key) {
            for (cell, old) in row.iter_mut().zip(earlier) {
                if *cell == Cell::UnchangedToast {
                    *cell = old.clone();
                }
            }
        }
        row
    }

    /// The row `key` had before the batch, when the source sent it whole.
    pub fn old_row(&self, key: &Vec<Cell>) -> Option<&Vec<Cell>> {
        self.old_rows.get(key)
    }

    /// Keeps a whole old row if it is its key's first change in the batch (a later one
    /// shows a row the batch itself wrote).
    fn remember_old_row(&mut self, old_row: &[Cell], event: &ChangeEvent) {
        let Ok(key) = self.key_of(old_row, event) else {
            return;
        };
        let complete = !old_row.contains(&Cell::UnchangedToast);
        if complete && !self.rows.contains_key(&key) && !self.old_rows.contains_key(&key) {
            self.old_rows.insert(key, old_row.to_vec());
        }
    }

    /// A key seen before keeps its place in the order.
    fn record(&mut self, key: Vec<Cell>, change: RowChange) {
        self.rows.insert(key, change);
    }
}

/// How a source schema's columns feed the Delta columns.
#[derive(Debug)]
enum ColumnMapping {
    /// The same columns in the same order (the common case): rows move over as they are.
    Same,
    /// The source column index feeding each Delta column (`None`: the source has no such
    /// column, so it is NULL).
    Indexed(Vec<Option<usize>>),
}

impl ColumnMapping {
    fn between(schema: &TableSchema, columns: &[String]) -> Self {
        let same = schema.columns.len() == columns.len()
            && schema
                .columns
                .iter()
                .zip(columns)
                .all(|(c, name)| c.name == *name);
        if same {
            return ColumnMapping::Same;
        }
        ColumnMapping::Indexed(
            columns
                .iter()
                .map(|name| schema.column_index(name))
                .collect(),
        )
    }

    fn covers_every_column(&self) -> bool {
        match self {
            ColumnMapping::Same => true,
            ColumnMapping::Indexed(sources) => sources.iter().all(Option::is_some),
        }
    }

    /// A source row's cells in the Delta columns' order.
    fn align(&self, mut cells: Vec<Cell>) -> Vec<Cell> {
        match self {
            ColumnMapping::Same => cells,
            ColumnMapping::Indexed(sources) => sources
                .iter()
                .map(|source| {
                    source.map_or(Cell::Null, |i| std::mem::replace(&mut cells[i], Cell::Null))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ColumnSchema, EventMetadata, Lsn};

    fn schema() -> Arc<TableSchema> {
        let column = |name: &str, is_key| ColumnSchema {
            name: name.into(),
            type_oid: 25,
            type_modifier: -1,
            type_name: None,
            is_key,
        };
        Arc::new(TableSchema {
            table: TableName::new("public", "t"),
            columns: vec![column("id", true), column("v", false)],
        })
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    fn event(op: Operation, data: Option<Vec<Cell>>, before: Option<Vec<Cell>>) -> ChangeEvent {
        ChangeEvent {
            operation: op,
            schema: schema(),
            data,
            before,
            before_is_whole_row: false,
            commit_timestamp: chrono::Utc::now(),
            metadata: EventMetadata {
                database: "db".into(),
                lsn: Lsn(1),
                tx_id: None,
                snapshot: false,
            },
        }
    }

    fn changes() -> TableChanges {
        TableChanges::new(
            TableName::new("public", "t"),
            vec!["id".into(), "v".into()],
            &["id".to_string()],
        )
    }

    #[test]
    fn last_change_per_key_wins() {
        let mut c = changes();
        c.push(event(
            Operation::Insert,
            Some(vec![text("1"), text("a")]),
            None,
        ))
        .unwrap();
        c.push(event(
            Operation::Update,
            Some(vec![text("1"), text("b")]),
            None,
        ))
        .unwrap();
        c.push(event(
            Operation::Insert,
            Some(vec![text("2"), text("x")]),
            None,
        ))
        .unwrap();
        c.push(event(
            Operation::Delete,
            None,
            Some(vec![text("2"), Cell::Null]),
        ))
        .unwrap();
        let rows: Vec<_> = c.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1, &RowChange::Upsert(vec![text("1"), text("b")]));
        assert_eq!(rows[1].1, &RowChange::Delete);
    }

    #[test]
    fn only_inserts_holds_until_another_operation_arrives() {
        let mut c = changes();
        let insert = |id: &str| event(Operation::Insert, Some(vec![text(id), text("a")]), None);
        c.push(insert("1")).unwrap();
        c.push(insert("2")).unwrap();
        assert!(c.only_inserts);
        assert_eq!(c.row_count(), 2);
        c.push(event(
            Operation::Delete,
            None,
            Some(vec![text("1"), Cell::Null]),
        ))
        .unwrap();
        assert!(!c.only_inserts, "a batch with a delete must be MERGEd");
    }

    #[test]
    fn key_change_deletes_the_old_key() {
        let mut c = changes();
        c.push(event(
            Operation::Update,
            Some(vec![text("2"), text("a")]),
            Some(vec![text("1"), Cell::Null]),
        ))
        .unwrap();
        let rows: Vec<_> = c.rows().collect();
        assert_eq!(rows[0], (&vec![text("1")], &RowChange::Delete));
        assert_eq!(rows[1].0, &vec![text("2")]);
    }

    #[test]
    fn unchanged_toast_takes_the_earlier_value_in_the_batch() {
        let mut c = changes();
        c.push(event(
            Operation::Insert,
            Some(vec![text("1"), text("big")]),
            None,
        ))
        .unwrap();
        c.push(event(
            Operation::Update,
            Some(vec![text("1"), Cell::UnchangedToast]),
            None,
        ))
        .unwrap();
        let rows: Vec<_> = c.rows().collect();
        assert_eq!(rows[0].1, &RowChange::Upsert(vec![text("1"), text("big")]));
    }

    #[test]
    fn truncate_forgets_earlier_rows() {
        let mut c = changes();
        c.push(event(
            Operation::Insert,
            Some(vec![text("1"), text("a")]),
            None,
        ))
        .unwrap();
        c.push(event(Operation::Truncate, None, None)).unwrap();
        c.push(event(
            Operation::Insert,
            Some(vec![text("3"), text("c")]),
            None,
        ))
        .unwrap();
        assert!(c.truncated);
        assert_eq!(c.rows().count(), 1);
    }

    #[test]
    fn refuses_unknown_columns_and_missing_keys() {
        let mut c = TableChanges::new(
            TableName::new("public", "t"),
            vec!["id".into()],
            &["id".into()],
        );
        let err = c
            .push(event(
                Operation::Insert,
                Some(vec![text("1"), text("a")]),
                None,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("column 'v'"), "{err}");
        let mut c = changes();
        let err = c
            .push(event(
                Operation::Insert,
                Some(vec![Cell::Null, text("a")]),
                None,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("key column 'id'"), "{err}");
    }

    #[test]
    fn rows_of_a_schema_in_another_column_order_are_aligned_with_the_delta_columns() {
        let mut c = TableChanges::new(
            TableName::new("public", "t"),
            vec!["id".into(), "extra".into(), "v".into()],
            &["id".into()],
        );
        c.push(event(
            Operation::Insert,
            Some(vec![text("1"), text("a")]),
            None,
        ))
        .unwrap();
        let rows: Vec<_> = c.rows().collect();
        assert_eq!(
            rows[0].1,
            &RowChange::Upsert(vec![text("1"), Cell::Null, text("a")])
        );
    }

    #[test]
    fn keys_keep_the_place_of_their_first_change_until_removed() {
        let mut c = changes();
        for (id, v) in [("1", "a"), ("2", "b"), ("1", "c"), ("3", "d")] {
            let row = Some(vec![text(id), text(v)]);
            c.push(event(Operation::Update, row, None)).unwrap();
        }
        let keys =
            |c: &TableChanges| -> Vec<Vec<Cell>> { c.rows().map(|(k, _)| k.clone()).collect() };
        assert_eq!(
            keys(&c),
            [vec![text("1")], vec![text("2")], vec![text("3")]]
        );
        assert_eq!(
            c.remove(&vec![text("2")]),
            Some(RowChange::Upsert(vec![text("2"), text("b")]))
        );
        assert_eq!(keys(&c), [vec![text("1")], vec![text("3")]]);
        assert_eq!(
            c.rows().next().unwrap().1,
            &RowChange::Upsert(vec![text("1"), text("c")])
        );
    }
}
