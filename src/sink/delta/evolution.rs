//! How a Delta table must change when the source table's columns change.

use deltalake::kernel::{DataType, StructField};

use super::types::delta_type;
use crate::event::TableSchema;

/// What a new source schema means for the Delta table.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    /// Source columns Delta does not have yet: added as nullable columns.
    pub added: Vec<StructField>,
    /// Delta columns the source no longer has: kept, null from now on.
    pub dropped: Vec<String>,
    /// Columns whose new type Delta cannot hold in the existing column.
    pub incompatible: Vec<String>,
}

impl SchemaChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty() && self.incompatible.is_empty()
    }
}

/// Compares the Delta columns with the source's, by name.
pub fn plan_schema_change(
    delta_columns: &[(String, DataType)],
    source: &TableSchema,
) -> SchemaChange {
    let mut change = SchemaChange {
        added: Vec::new(),
        dropped: Vec::new(),
        incompatible: Vec::new(),
    };
    for column in &source.columns {
        // A type pgdelta does not know (a domain, an enum) says nothing about compatibility:
        // the values are checked as they are converted.
        let known = delta_type(
            column.type_oid,
            column.type_modifier,
            column.type_name.as_deref(),
        );
        let wanted = known.clone().unwrap_or(DataType::STRING);
        match delta_columns.iter().find(|(name, _)| name == &column.name) {
            None => change.added.push(StructField::new(column.name.clone(), wanted, true)),
            Some((_, existing)) if known.is_some() && *existing != wanted => change.incompatible.push(format!(
                "column '{}' changed from {} to {} (PostgreSQL type oid {}), which the Delta column cannot hold",
                column.name,
                type_name(existing),
                type_name(&wanted),
                column.type_oid
            )),
            Some(_) => {}
        }
    }
    for (name, _) in delta_columns {
        if source.column_index(name).is_none() {
            change.dropped.push(name.clone());
        }
    }
    change
}

fn type_name(data_type: &DataType) -> String {
    serde_json::to_value(data_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{data_type:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ColumnSchema, TableName};

    fn source(columns: &[(&str, u32)]) -> TableSchema {
        TableSchema {
            table: TableName::new("public", "t"),
            columns: columns
                .iter()
                .map(|(name, oid)| ColumnSchema {
                    name: name.to_string(),
                    type_oid: *oid,
                    type_modifier: -1,
                    type_name: None,
                    is_key: false,
                })
                .collect(),
        }
    }

    fn delta(columns: &[(&str, DataType)]) -> Vec<(String, DataType)> {
        columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    #[test]
    fn an_hstore_column_added_later_becomes_the_same_map_as_one_present_at_start() {
        let mut schema = source(&[("id", 23), ("tags", 16_385)]);
        schema.columns[1].type_name = Some("hstore".into());
        let change = plan_schema_change(&delta(&[("id", DataType::INTEGER)]), &schema);
        let map = super::super::types::delta_type(16_385, -1, Some("hstore")).unwrap();
        assert_eq!(
            change.added,
            vec![StructField::new("tags", map.clone(), true)]
        );
        let unchanged =
            plan_schema_change(&delta(&[("id", DataType::INTEGER), ("tags", map)]), &schema);
        assert!(unchanged.is_empty(), "{unchanged:?}");
    }

    #[test]
    fn finds_added_dropped_and_incompatible_columns() {
        let existing = delta(&[
            ("id", DataType::INTEGER),
            ("nick", DataType::STRING),
            ("age", DataType::INTEGER),
        ]);
        let change = plan_schema_change(
            &existing,
            &source(&[("id", 23), ("age", 25), ("email", 25)]),
        );
        assert_eq!(
            change.added,
            vec![StructField::new("email", DataType::STRING, true)]
        );
        assert_eq!(change.dropped, vec!["nick"]);
        assert_eq!(change.incompatible.len(), 1);
        assert!(
            change.incompatible[0].contains("'age' changed from integer to string"),
            "{:?}",
            change.incompatible
        );
    }

    #[test]
    fn same_columns_mean_no_change() {
        let existing = delta(&[("id", DataType::INTEGER)]);
        assert!(plan_schema_change(&existing, &source(&[("id", 23)])).is_empty());
    }
}
