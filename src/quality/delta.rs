//! The Delta side of a validation: the latest version, read with DataFusion as a stream so a
//! table of any size is checked in bounded memory.

use std::collections::{HashMap, HashSet};

use deltalake::arrow::array::{Array, Int64Array};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::DataType;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;

use super::canonical::{render, row_hash, row_text};
use super::chunks::{ChunkSum, Chunking, Key};
use super::postgres::TableSpec;
use crate::event::{quote_ident, Lsn};
use crate::sink::delta::position::{open_with_position, recent_commits};

/// One Delta table at the version it was opened at.
pub struct DeltaSide {
    table: DeltaTable,
    /// The commit LSN of the newest source transaction applied (the writer's `txn` version,
    /// or what the recent commits record where higher).
    pub last_lsn: Option<Lsn>,
}

/// Opens the table at `location`; `None` when there is no Delta table there yet.
pub async fn open(
    location: &str,
    storage: &crate::config::StorageOptions,
    app_id: &str,
) -> Result<Option<DeltaSide>, DeltaTableError> {
    let Some(position) = open_with_position(location, storage, app_id).await? else {
        return Ok(None);
    };
    let recent = recent_commits(&position.table).await?;
    Ok(Some(DeltaSide {
        last_lsn: position.newest_lsn(&recent),
        table: position.table,
    }))
}

impl DeltaSide {
    /// Column names and Delta types, in table order.
    pub fn columns(&self) -> Result<Vec<(String, DataType)>, DeltaTableError> {
        Ok(self
            .table
            .snapshot()?
            .schema()
            .fields()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect())
    }

    async fn context(&self) -> Result<SessionContext, DeltaTableError> {
        let ctx = SessionContext::new();
        self.table.update_datafusion_session(&ctx.state())?;
        ctx.register_table("t", self.table.table_provider().await?)?;
        Ok(ctx)
    }

    pub async fn count_rows(&self) -> Result<u64, DeltaTableError> {
        let ctx = self.context().await?;
        let batches = ctx.sql("SELECT count(*) FROM t").await?.collect().await?;
        let count = batches
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().cloned())
            .filter(|a| !a.is_empty())
            .map(|a| a.value(0))
            .unwrap_or(0);
        Ok(count as u64)
    }

    /// Rows in the table's files (deleted rows of files with deletion vectors included): an
    /// estimate for progress lines.
    pub fn estimated_rows(&self) -> Option<u64> {
        let snapshot = self.table.snapshot().ok()?;
        let files = snapshot.log_data();
        files
            .iter()
            .map(|file| file.num_records().map(|n| n as u64))
            .sum()
    }

    /// Calls `visit(key, row_hash)` for every row, rendering the source table's columns
    /// (a column Delta lacks counts as NULL), and `read(rows)` after each batch of rows.
    async fn for_each_row(
        &self,
        spec: &TableSpec,
        mut visit: impl FnMut(Key, i64),
        read: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), DeltaTableError> {
        let present: HashSet<String> = self.columns()?.into_iter().map(|(n, _)| n).collect();
        let selected: Vec<&str> = spec
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| present.contains(*n))
            .collect();
        if selected.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = selected.iter().map(|n| quote_ident(n)).collect();
        let ctx = self.context().await?;
        let sql = format!("SELECT {} FROM t", list.join(", "));
        let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
        let position = |name: &str| selected.iter().position(|s| *s == name);
        let column_positions: Vec<Option<usize>> =
            spec.columns.iter().map(|c| position(&c.name)).collect();
        let key_positions: Vec<Option<usize>> = spec.key.iter().map(|k| position(k)).collect();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                let cell =
                    |p: &Option<usize>| p.and_then(|i| render(batch.column(i).as_ref(), row));
                let values: Vec<Option<String>> = column_positions.iter().map(cell).collect();
                let key: Key = key_positions
                    .iter()
                    .map(|p| cell(p).unwrap_or_else(|| "\\N".into()))
                    .collect();
                visit(key, row_hash(&row_text(&values)));
            }
            read(batch.num_rows() as u64);
        }
        Ok(())
    }

    /// Per-chunk sums, the chunks cut where PostgreSQL cut them; `read(rows)` after each
    /// batch of rows.
    pub async fn chunk_sums(
        &self,
        spec: &TableSpec,
        chunking: &Chunking,
        read: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Vec<ChunkSum>, DeltaTableError> {
        let mut sums = vec![ChunkSum::default(); chunking.chunk_count()];
        self.for_each_row(
            spec,
            |key, hash| sums[chunking.chunk_of(&key)].add(hash),
            read,
        )
        .await?;
        Ok(sums)
    }

    /// Row hashes by key for the rows of `chunks`.
    pub async fn chunk_rows(
        &self,
        spec: &TableSpec,
        chunking: &Chunking,
        chunks: &[usize],
    ) -> Result<HashMap<Key, i64>, DeltaTableError> {
        let mut rows = HashMap::new();
        let collect = |key, hash| {
            if chunks.contains(&chunking.chunk_of(&key)) {
                rows.insert(key, hash);
            }
        };
        self.for_each_row(spec, collect, &mut |_| {}).await?;
        Ok(rows)
    }
}
