//! `pgdelta table optimize|vacuum`: maintenance of a pipeline's Delta tables by hand, while
//! the pipeline runs or not. A commit that loses a race with the pipeline's is tried again on
//! the table's new version; the pipeline's own commits are retried the same way.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use pgdelta::config::{Config, ResolvedTable, MIN_VACUUM_RETENTION_HOURS};
use pgdelta::sink::delta::maintenance::{compact_table, vacuum_table};
use pgdelta::sink::delta::storage;

/// Tries of a maintenance commit that conflicts with another writer's.
const ATTEMPTS: usize = 5;

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Compact small files (OPTIMIZE, `dataChange = false`), Z-ordered by columns if given.
    Optimize {
        pipeline: String,
        /// Only this table (schema.table).
        #[arg(long)]
        table: Option<String>,
        /// Z-order by these columns (comma-separated; default: the table's zorder_by).
        #[arg(long, value_delimiter = ',')]
        zorder_by: Vec<String>,
    },
    /// Delete files no version within the retention references (VACUUM).
    Vacuum {
        pipeline: String,
        /// Only this table (schema.table).
        #[arg(long)]
        table: Option<String>,
        /// Keep files referenced within this many hours (default: maintenance.vacuum_retention_hours, 168).
        #[arg(long)]
        retention_hours: Option<u64>,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept a retention shorter than the safe minimum (24 hours).
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(config: &Config, command: TableCommand) -> Result<()> {
    match command {
        TableCommand::Optimize {
            pipeline,
            table,
            zorder_by,
        } => {
            for table in tables(config, &pipeline, table.as_deref())? {
                let zorder = match zorder_by.is_empty() {
                    true => table.maintenance.zorder_by.clone(),
                    false => zorder_by.clone(),
                };
                optimize(&table, &zorder).await?;
            }
            Ok(())
        }
        TableCommand::Vacuum {
            pipeline,
            table,
            retention_hours,
            dry_run,
            force,
        } => {
            if let Some(hours) = retention_hours.filter(|h| *h < MIN_VACUUM_RETENTION_HOURS) {
                if !force {
                    bail!(
                        "--retention-hours {hours} is shorter than the safe minimum of {MIN_VACUUM_RETENTION_HOURS} hours: \
                         readers and time travel within it may still need the files; add --force to run it anyway"
                    );
                }
            }
            for table in tables(config, &pipeline, table.as_deref())? {
                let retention = retention_hours
                    .map(|h| Duration::from_secs(h * 3600))
                    .unwrap_or(table.maintenance.vacuum_retention);
                vacuum(&table, retention, dry_run, !force).await?;
            }
            Ok(())
        }
    }
}

fn tables(config: &Config, pipeline: &str, only: Option<&str>) -> Result<Vec<ResolvedTable>> {
    let resolved = config.pipeline(pipeline)?;
    let only: Option<pgdelta::event::TableName> = only.map(str::parse).transpose()?;
    let tables: Vec<ResolvedTable> = resolved
        .tables
        .into_iter()
        .filter(|t| only.as_ref().is_none_or(|o| o == &t.name))
        .collect();
    if tables.is_empty() {
        bail!(
            "pipeline {pipeline} has no table {}",
            only.map(|t| t.to_string()).unwrap_or_default()
        );
    }
    Ok(tables)
}

async fn optimize(table: &ResolvedTable, zorder_by: &[String]) -> Result<()> {
    let target = table.maintenance.target_file_size;
    for attempt in 1..=ATTEMPTS {
        let delta = storage::open(&table.path, &table.storage)
            .await
            .with_context(|| {
                format!("cannot open Delta table {} for {}", table.path, table.name)
            })?;
        match compact_table(delta, target, zorder_by).await {
            Ok((after, done)) => {
                println!(
                    "{} ({}): {} files compacted into {}; version {}",
                    table.name,
                    table.path,
                    done.files_removed,
                    done.files_added,
                    after.version().unwrap_or_default()
                );
                return Ok(());
            }
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(table = %table.name, %error, attempt, "OPTIMIZE lost a race with another commit; trying again on the new version");
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot compact {}", table.path))
            }
        }
    }
    unreachable!("the last attempt returns")
}

async fn vacuum(
    table: &ResolvedTable,
    retention: Duration,
    dry_run: bool,
    enforce: bool,
) -> Result<()> {
    let delta = storage::open(&table.path, &table.storage)
        .await
        .with_context(|| format!("cannot open Delta table {} for {}", table.path, table.name))?;
    let (_, deleted) = vacuum_table(delta, retention, dry_run, enforce)
        .await
        .with_context(|| format!("cannot vacuum {}", table.path))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "{} ({}): {verb} {} files older than {} hours",
        table.name,
        table.path,
        deleted.len(),
        retention.as_secs() / 3600
    );
    for file in deleted.iter().filter(|_| dry_run) {
        println!("  {file}");
    }
    Ok(())
}
