//! Collects committed transactions until a batch is due, then hands them to the writers.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::event::{Lsn, TableName, Transaction};
use crate::sink::delta::{ChangeError, TableChanges};

/// Committed transactions not yet written, collapsed per table.
#[derive(Default)]
pub struct Batch {
    pub tables: BTreeMap<TableName, TableChanges>,
    pub transactions: usize,
    pub events: usize,
    /// Commit position of the newest transaction in the batch.
    pub last_lsn: Option<Lsn>,
    pub started: Option<Instant>,
}

impl Batch {
    /// Adds `tx`; `changes_for` returns the change set of a table, or `None` when the table
    /// already holds this transaction (or is not replicated), so its events are skipped.
    pub fn add<F>(&mut self, tx: Transaction, mut changes_for: F) -> Result<(), ChangeError>
    where
        F: FnMut(&TableName, Lsn) -> Option<TableChanges>,
    {
        self.started.get_or_insert_with(Instant::now);
        self.transactions += 1;
        for event in tx.events {
            if !self.tables.contains_key(event.table()) {
                match changes_for(event.table(), tx.end_lsn) {
                    Some(changes) => {
                        self.tables.insert(event.table().clone(), changes);
                    }
                    None => continue,
                }
            }
            let changes = self.tables.get_mut(event.table()).expect("inserted above");
            changes.push(event)?;
            self.events += 1;
        }
        self.last_lsn = Some(tx.end_lsn);
        Ok(())
    }
}
