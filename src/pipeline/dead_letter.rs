//! Changes that cannot be applied, kept with the reason, position and payload in a JSONL
//! file instead of stopping the pipeline (`on_error = "dead_letter"`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::{Cell, Lsn};
use crate::sink::delta::{RowChange, TableChanges};

#[derive(Debug, thiserror::Error)]
#[error("cannot write dead letters to {path}: {source}")]
pub struct DeadLetterError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// One rejected change.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    pub pipeline: &'a str,
    pub table: String,
    /// Commit position of the batch the change came in (direct mode; Kafka mode when the
    /// Debezium event names one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsn: Option<Lsn>,
    /// Kafka mode: the record the change came in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordPosition>,
    pub error: String,
    pub operation: &'static str,
    /// The row as the source rendered it (column -> PostgreSQL text, null for NULL).
    pub payload: serde_json::Value,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// A Kafka record's place.
#[derive(Debug, Clone, Serialize)]
pub struct RecordPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Appends dead letters to a JSONL file, one object per line.
pub struct DeadLetterFile {
    path: PathBuf,
}

impl DeadLetterFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DeadLetterFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, letters: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        let io_error = |source| DeadLetterError {
            path: self.path.clone(),
            source,
        };
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_error)?;
        let mut text = String::new();
        for letter in letters {
            text.push_str(&serde_json::to_string(letter).expect("dead letters serialize"));
            text.push('\n');
        }
        file.write_all(text.as_bytes()).map_err(io_error)?;
        file.sync_data().map_err(io_error)
    }
}

/// The row of `key` in `changes` as JSON, for the dead letter's payload.
pub fn payload_of(changes: &TableChanges, key: &Vec<Cell>) -> serde_json::Value {
    let Some((_, RowChange::Upsert(cells))) = changes.rows().find(|(k, _)| *k == key) else {
        return serde_json::Value::Null;
    };
    let map = changes
        .columns()
        .iter()
        .zip(cells)
        .map(|(name, cell)| {
            let value = match cell {
                Cell::Text(text) => serde_json::Value::String(text.clone()),
                _ => serde_json::Value::Null,
            };
            (name.clone(), value)
        })
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = DeadLetterFile::new(dir.path().join("nested/dead.jsonl"));
        let letter = |error: &str| DeadLetter {
            pipeline: "p",
            table: "public.t".into(),
            lsn: Some(Lsn(42)),
            record: None,
            error: error.into(),
            operation: "upsert",
            payload: serde_json::json!({"id": "1"}),
            recorded_at: chrono::Utc::now(),
        };
        file.append(&[letter("first")]).unwrap();
        file.append(&[letter("second")]).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["error"], "second");
        assert_eq!(lines[0]["lsn"], "0/2A");
    }
}
