//! Command-line interface. The command names and flags here are a contract with users'
//! scripts: add to them, never rename them.

use std::collections::HashMap;
use std::net::SocketAddr;
mod connector;
mod doctor;
mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use pgdelta::config::{parse_listen, Config};
use pgdelta::event::TableName;
use pgdelta::observe::progress::Progress;
use pgdelta::observe::server::{HttpServer, DEFAULT_LISTEN};
use pgdelta::observe::sink_probe::{probe_targets, spawn_sink_probe};
use pgdelta::observe::slot::spawn_slot_monitor;
use pgdelta::observe::Observer;
use pgdelta::pipeline::status::{pipeline_status, TableStatus};
use pgdelta::pipeline::RunOptions;
use pgdelta::quality::{LogSink, ValidationReport, ValidationSink};

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
    /// Prove a pipeline's Delta tables equal their PostgreSQL sources (exit 0 only when every
    /// requested check passes; 2 when nothing failed but some results are not comparable yet).
    Validate(ValidateArgs),
    /// Check everything a pipeline needs, against the live source and Delta tables: the
    /// connection, server settings and grants, replica identities, the slot, the
    /// publication, the Delta tables. Prints each result with its fix; exit 0 only when none
    /// failed.
    Doctor {
        pipeline: String,
        #[arg(long)]
        json: bool,
    },
    /// The pipeline's Debezium connector (Kafka mode): config, register, status, delete.
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
    /// Maintenance of a pipeline's Delta tables: compaction, VACUUM. Safe while it runs.
    #[command(subcommand)]
    Table(table::TableCommand),
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    pub pipeline: String,
    /// Only this table (schema.table).
    #[arg(long)]
    pub table: Option<String>,
    /// Which check to run.
    #[arg(long, value_enum, default_value = "all")]
    pub check: ValidateCheck,
    /// Lag threshold in seconds (default: the pipeline's validation.max_lag_seconds, else 300).
    #[arg(long)]
    pub max_lag_seconds: Option<f64>,
    /// Lag threshold in WAL bytes (default: validation.max_lag_bytes, else 1 GiB).
    #[arg(long)]
    pub max_lag_bytes: Option<u64>,
    /// Rows per checksum chunk (default: validation.chunk_rows, else 100000).
    #[arg(long)]
    pub chunk_rows: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ValidateCheck {
    Rows,
    Checksum,
    Lag,
    Schema,
    All,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Stream changes into Delta until SIGINT/SIGTERM.
    Start {
        name: String,
        /// Apply everything up to the server's current WAL position, commit, confirm, exit 0.
        #[arg(long)]
        exit_when_caught_up: bool,
        /// Drop the replication slot (e.g. one PostgreSQL invalidated), create a new one and
        /// copy every table again; each Delta table's rows are replaced in one commit.
        #[arg(long)]
        resnapshot: bool,
        /// Serve /metrics and /health on this IP:PORT instead of [http] listen (port 0: any
        /// free port, logged at start).
        #[arg(long, env = "PGDELTA_HTTP_LISTEN", value_name = "IP:PORT")]
        http_listen: Option<String>,
        /// Serve no HTTP endpoints.
        #[arg(long)]
        no_http: bool,
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
            resnapshot,
            http_listen,
            no_http,
        }) => {
            let http = http_address(
                &config,
                http_listen.as_deref(),
                no_http,
                exit_when_caught_up,
            )?;
            let options = RunOptions {
                exit_when_caught_up,
                resnapshot,
            };
            start(&config, &name, options, http).await
        }
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
        Command::Table(command) => table::run(&config, command).await,
        Command::Status { json } => {
            let mut statuses = Vec::new();
            for name in config.pipelines.keys() {
                statuses.extend(pipeline_status(&config.pipeline(name)?).await);
            }
            print_statuses(&statuses, json)
        }
        Command::Validate(args) => validate(&config, args).await,
        Command::Doctor { pipeline, json } => doctor(&config, &pipeline, json).await,
    }
}

async fn doctor(config: &Config, pipeline: &str, json: bool) -> Result<()> {
    let resolved = config.pipeline(pipeline)?;
    let settings = pgdelta::source::postgres::ConnectionSettings::from_config(config)?;
    let findings = doctor::diagnose(&resolved, &settings).await;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&findings)?),
        false => findings.iter().for_each(|finding| println!("{finding}")),
    }
    if !doctor::all_passed(&findings) {
        std::process::exit(1);
    }
    Ok(())
}

/// `validate`'s reads of Delta tables as progress lines: one live line on a terminal, a log
/// line every 10 s otherwise.
#[derive(Default)]
struct ValidateProgress {
    tables: std::sync::Mutex<HashMap<TableName, Progress>>,
}

impl pgdelta::quality::ReadProgress for ValidateProgress {
    fn advance(&self, table: &TableName, rows: u64, estimated: Option<u64>) {
        let mut tables = self.tables.lock().expect("progress lock");
        tables
            .entry(table.clone())
            .or_insert_with(|| Progress::new(table.clone(), estimated).with_activity("validate"))
            .advance(rows);
    }

    fn finish(&self, table: &TableName) {
        let progress = self.tables.lock().expect("progress lock").remove(table);
        if let Some(progress) = progress {
            progress.finish();
        }
    }
}

async fn validate(config: &Config, args: ValidateArgs) -> Result<()> {
    use pgdelta::quality::{self, Check};
    let mut options = quality::ValidateOptions::from_config(config, &args.pipeline);
    options.table = args.table.as_deref().map(str::parse).transpose()?;
    options.checks = match args.check {
        ValidateCheck::Rows => vec![Check::Rows],
        ValidateCheck::Checksum => vec![Check::Checksum],
        ValidateCheck::Lag => vec![Check::Lag],
        ValidateCheck::Schema => vec![Check::Schema],
        ValidateCheck::All => Check::ALL.to_vec(),
    };
    options.max_lag_seconds = args.max_lag_seconds.unwrap_or(options.max_lag_seconds);
    options.max_lag_bytes = args.max_lag_bytes.unwrap_or(options.max_lag_bytes);
    options.chunk_rows = args.chunk_rows.unwrap_or(options.chunk_rows).max(1);
    let progress = ValidateProgress::default();
    let report = quality::validate_with_progress(config, &args.pipeline, &options, &progress)
        .await
        .with_context(|| format!("cannot validate pipeline {}", args.pipeline))?;
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&report)?),
        false => print!("{}", quality::render_table(&report)),
    }
    let code = report.exit_code();
    if code != 0 {
        use std::io::Write;
        std::io::stdout().flush()?;
        std::process::exit(code);
    }
    Ok(())
}

/// Where to serve the HTTP endpoints: the command line, else `[http] listen`, else the
/// default; `None` when disabled. Runs with `--exit-when-caught-up` serve them only at an
/// address given explicitly, so that cron-style runs never compete for the default port.
fn http_address(
    config: &Config,
    flag: Option<&str>,
    disabled: bool,
    exit_when_caught_up: bool,
) -> Result<Option<SocketAddr>> {
    if disabled || (flag.is_none() && !config.http.enabled) {
        return Ok(None);
    }
    if let Some(text) = flag {
        let addr = parse_listen(text)
            .map_err(|e| anyhow::anyhow!("--http-listen / PGDELTA_HTTP_LISTEN: {e}"))?;
        return Ok(Some(addr));
    }
    let configured = config
        .http
        .listen_addr()
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.path.display()))?;
    match (configured, exit_when_caught_up) {
        (Some(addr), _) => Ok(Some(addr)),
        (None, true) => Ok(None),
        (None, false) => Ok(Some(DEFAULT_LISTEN.parse()?)),
    }
}

const MONITOR_INTERVAL: Duration = Duration::from_secs(10);

async fn start(
    config: &Config,
    name: &str,
    options: RunOptions,
    http: Option<SocketAddr>,
) -> Result<()> {
    let resolved = config.pipeline(name)?;
    let observer = Arc::new(Observer::new(&resolved));
    if let Some(addr) = http {
        let server = HttpServer::bind(addr).await?;
        tracing::info!(addr = %server.local_addr()?, "serving /metrics, /health, /health/live, /health/ready");
        server.spawn(observer.clone());
    }
    let pipeline = pgdelta::pipeline::prepare(config, name, options, observer.clone())
        .await
        .with_context(|| format!("cannot start pipeline {name}"))?;
    if resolved.mode == pgdelta::config::PipelineMode::Direct {
        spawn_slot_monitor(
            pgdelta::source::postgres::ConnectionSettings::from_config(config)?,
            resolved.slot.clone(),
            observer.clone(),
            MONITOR_INTERVAL,
        );
    }
    let targets = probe_targets(
        resolved
            .tables
            .iter()
            .map(|t| (t.path.as_str(), &t.storage)),
    );
    spawn_sink_probe(targets, observer.clone(), MONITOR_INTERVAL);
    let validation = spawn_periodic_validation(config, name, observer);
    let summary = pipeline
        .run(shutdown_signal())
        .await
        .with_context(|| format!("pipeline {name} stopped"))?;
    tracing::info!(
        transactions = summary.transactions,
        events = summary.events,
        delta_commits = summary.delta_commits,
        last_lsn = ?summary.last_lsn.map(|l| l.to_string()),
        "pipeline finished"
    );
    if let Some(task) = validation {
        task.abort();
    }
    Ok(())
}

/// Starts `[pipelines.<name>.validation] interval_secs` validation; each report is logged
/// and exported as `cdc_validation_*` metrics.
fn spawn_periodic_validation(
    config: &Config,
    name: &str,
    observer: Arc<Observer>,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = config.pipelines.get(name)?.validation.interval_secs?;
    let options = pgdelta::quality::ValidateOptions::from_config(config, name);
    let (config, name) = (config.clone(), name.to_string());
    Some(tokio::spawn(async move {
        let sink = ObservedValidation(observer);
        let interval = std::time::Duration::from_secs(interval.max(1));
        pgdelta::quality::run_periodic(
            config,
            name,
            interval,
            options,
            &sink,
            std::future::pending(),
        )
        .await
    }))
}

/// Periodic validation reports: logged, and exported by the observer as the
/// `cdc_validation_*` metrics.
struct ObservedValidation(Arc<Observer>);

impl ValidationSink for ObservedValidation {
    fn record(&self, report: &ValidationReport) {
        LogSink.record(report);
        let passed_at = report.passed().then_some(report.started_at);
        self.0.validation_ran(report.mismatches(), passed_at);
    }
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
            true => read_changes(&table.path, &table.storage, from_version).await,
            false => read_rows(&table.path, &table.storage).await,
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
        "{:<16} {:<28} {:>8} {:>14} {:>10} {:>10} {:<20}  DELTA PATH",
        "PIPELINE", "TABLE", "VERSION", "LAST LSN", "ROWS", "COMMIT AGE", "COMMITTED BY"
    );
    for s in statuses {
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:<28} {:>8} {:>14} {:>10} {:>10} {:<20}  {}{}",
            s.pipeline,
            s.table,
            show(s.delta_version.map(|v| v.to_string())),
            show(s.last_applied_lsn.map(|l| l.to_string())),
            show(s.rows.map(|r| r.to_string())),
            show(s.last_commit_age_seconds.map(|age| {
                pgdelta::observe::progress::format_duration(Duration::from_secs_f64(age))
            })),
            show(s.last_committed_by.clone()),
            s.delta_path,
            s.error
                .as_ref()
                .map(|e| format!("  (error: {e})"))
                .unwrap_or_default(),
        );
        for (topic, partitions) in &s.kafka_offsets {
            let next: Vec<String> = partitions
                .iter()
                .map(|(partition, next)| format!("{partition}:{next}"))
                .collect();
            println!("    {topic} next offset by partition: {}", next.join(" "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(http: &str) -> Config {
        let text = format!("[source]\nurl = \"postgres://u@h/db\"\n{http}");
        Config::from_toml(&text, std::path::Path::new("p.toml"), Vec::new()).unwrap()
    }

    #[test]
    fn http_address_prefers_the_flag_then_the_file_then_the_default() {
        let plain = config("");
        let default = Some(DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(http_address(&plain, None, false, false).unwrap(), default);
        let flag = http_address(&plain, Some("127.0.0.1:0"), false, false).unwrap();
        assert_eq!(flag, Some("127.0.0.1:0".parse().unwrap()));
        let file = config("[http]\nlisten = \"127.0.0.1:9999\"\n");
        let from_file = Some("127.0.0.1:9999".parse().unwrap());
        assert_eq!(http_address(&file, None, false, false).unwrap(), from_file);
        assert!(http_address(&plain, Some("nope"), false, false).is_err());
    }

    #[test]
    fn http_can_be_disabled_and_catch_up_runs_serve_only_when_asked() {
        let plain = config("");
        assert_eq!(http_address(&plain, None, true, false).unwrap(), None);
        let off = config("[http]\nenabled = false\n");
        assert_eq!(http_address(&off, None, false, false).unwrap(), None);
        assert_eq!(http_address(&plain, None, false, true).unwrap(), None);
        let flag = http_address(&plain, Some("127.0.0.1:0"), false, true).unwrap();
        assert!(flag.is_some());
    }
}
