//! Command-line interface. The command names and flags here are a contract with users'
//! scripts: add to them, never rename them.

mod connector;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use pgdelta::config::Config;
use pgdelta::pipeline::status::{pipeline_status, TableStatus};
use pgdelta::pipeline::{Pipeline, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "pgdelta",
    version,
    about = "Stream PostgreSQL changes into Delta Lake tables with Change Data Feed, exactly once"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "PGDELTA_CONFIG",
        default_value = "pgdelta.toml"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run or inspect a pipeline.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Status of every configured pipeline.
    Status {
        /// One JSON object per table, in a list.
        #[arg(long)]
        json: bool,
    },
    /// The pipeline's Debezium connector (Kafka mode): config, register, status, delete.
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Stream changes into Delta until SIGINT/SIGTERM.
    Start {
        name: String,
        /// Apply everything up to the server's current WAL position, commit, confirm, exit 0.
        #[arg(long)]
        exit_when_caught_up: bool,
    },
    /// Per table: Delta path, Delta version, last applied LSN, rows.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove the pipeline's replication slot and publication (Delta tables are kept).
    Drop { name: String },
    /// Print a pipeline's Delta tables (latest rows), or their change data feed.
    Inspect {
        name: String,
        /// Only this table (schema.table).
        #[arg(long)]
        table: Option<String>,
        /// Print the change data feed instead of the latest rows.
        #[arg(long)]
        changes: bool,
        /// First Delta version of the change feed.
        #[arg(long, default_value_t = 0)]
        from_version: u64,
    },
}

pub async fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Pipeline(PipelineCommand::Start {
            name,
            exit_when_caught_up,
        }) => start(&config, &name, exit_when_caught_up).await,
        Command::Pipeline(PipelineCommand::Status { name, json }) => {
            let statuses = pipeline_status(&config.pipeline(&name)?).await;
            print_statuses(&statuses, json)
        }
        Command::Pipeline(PipelineCommand::Drop { name }) => drop_pipeline(&config, &name).await,
        Command::Pipeline(PipelineCommand::Inspect {
            name,
            table,
            changes,
            from_version,
        }) => inspect(&config, &name, table.as_deref(), changes, from_version).await,
        Command::Connector(command) => connector::run(&config, command).await,
        Command::Status { json } => {
            let mut statuses = Vec::new();
            for name in config.pipelines.keys() {
                statuses.extend(pipeline_status(&config.pipeline(name)?).await);
            }
            print_statuses(&statuses, json)
        }
    }
}

async fn start(config: &Config, name: &str, exit_when_caught_up: bool) -> Result<()> {
    let pipeline = Pipeline::prepare(config, name)
        .await
        .with_context(|| format!("cannot start pipeline {name}"))?;
    let options = RunOptions {
        exit_when_caught_up,
    };
    let summary = pipeline
        .run(options, shutdown_signal())
        .await
        .with_context(|| format!("pipeline {name} stopped"))?;
    tracing::info!(
        transactions = summary.transactions,
        events = summary.events,
        delta_commits = summary.delta_commits,
        last_lsn = ?summary.last_lsn.map(|l| l.to_string()),
        "pipeline finished"
    );
    Ok(())
}

async fn drop_pipeline(config: &Config, name: &str) -> Result<()> {
    let resolved = config.pipeline(name)?;
    let settings = pgdelta::source::postgres::ConnectionSettings::from_config(config)?;
    let client = settings.connect().await?;
    pgdelta::source::postgres::drop_slot_and_publication(
        &client,
        &resolved.slot,
        &resolved.publication,
    )
    .await?;
    println!(
        "dropped replication slot {} and publication {} (Delta tables kept)",
        resolved.slot, resolved.publication
    );
    Ok(())
}

async fn inspect(
    config: &Config,
    name: &str,
    only: Option<&str>,
    changes: bool,
    from_version: u64,
) -> Result<()> {
    use pgdelta::sink::delta::reader::{read_changes, read_rows};
    let resolved = config.pipeline(name)?;
    let only: Option<pgdelta::event::TableName> = only.map(str::parse).transpose()?;
    for table in resolved
        .tables
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o == &t.name))
    {
        let batches = match changes {
            true => read_changes(&table.path, from_version).await,
            false => read_rows(&table.path).await,
        }
        .with_context(|| format!("cannot read Delta table {} for {}", table.path, table.name))?;
        let what = if changes { "change data feed" } else { "rows" };
        println!("{} ({}) {what}:", table.name, table.path);
        println!(
            "{}",
            deltalake::arrow::util::pretty::pretty_format_batches(&batches)?
        );
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on Unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn print_statuses(statuses: &[TableStatus], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(statuses)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<28} {:>8} {:>14} {:>10}  DELTA PATH",
        "PIPELINE", "TABLE", "VERSION", "LAST LSN", "ROWS"
    );
    for s in statuses {
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:<28} {:>8} {:>14} {:>10}  {}{}",
            s.pipeline,
            s.table,
            show(s.delta_version.map(|v| v.to_string())),
            show(s.last_applied_lsn.map(|l| l.to_string())),
            show(s.rows.map(|r| r.to_string())),
            s.delta_path,
            s.error
                .as_ref()
                .map(|e| format!("  (error: {e})"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}
