//! Reading back what pgdelta wrote: the latest rows and the change data feed.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::physical_plan::collect;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTableError;

use super::storage::open;
use crate::config::StorageOptions;

/// The rows of the latest version, ordered by every column so output is stable.
pub async fn read_rows(
    location: &str,
    storage: &StorageOptions,
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let table = open(location, storage).await?;
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    let order: Vec<String> = (1..=table.snapshot()?.schema().fields().count())
        .map(|i| i.to_string())
        .collect();
    let sql = format!("SELECT * FROM t ORDER BY {}", order.join(", "));
    Ok(ctx.sql(&sql).await?.collect().await?)
}

/// The change data feed from `starting_version` on, with `_change_type`, `_commit_version`
/// and `_commit_timestamp`, in commit order.
pub async fn read_changes(
    location: &str,
    storage: &StorageOptions,
    starting_version: u64,
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let table = open(location, storage).await?;
    let ctx = SessionContext::new();
    let plan = table
        .scan_cdf()
        .with_starting_version(starting_version)
        .build(&ctx.state(), None)
        .await?;
    let batches = collect(plan, ctx.task_ctx()).await?;
    ctx.register_batch("changes", concat_batches(&plan_schema(&batches), &batches)?)?;
    // Within a commit: deletes, inserts, then each update's pre-image before its post-image.
    let sql = "SELECT * FROM changes ORDER BY _commit_version, \
               CASE _change_type WHEN 'delete' THEN 0 WHEN 'insert' THEN 1 \
               WHEN 'update_preimage' THEN 2 ELSE 3 END";
    Ok(ctx.sql(sql).await?.collect().await?)
}

fn plan_schema(batches: &[RecordBatch]) -> SchemaRef {
    batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()))
}
