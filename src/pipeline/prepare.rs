//! Everything before streaming: check the source, open (or create) the Delta tables, set up
//! the source, take the initial snapshot. The same steps for both sources, as far as they go.

#[cfg(feature = "kafka")]
mod kafka;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use deltalake::kernel::{DataType, StructField};
use tokio_postgres::Client;

use super::snapshot;
use super::{
    add_columns, plan_evolution, Evolution, Pipeline, PipelineError, RunOptions, RunSummary,
    TableState, Tables,
};
use crate::config::{Config, PipelineMode, ResolvedPipeline, ResolvedTable, SnapshotMode};
use crate::event::{TableName, TableSchema};
use crate::observe::Observer;
use crate::sink::delta::maintenance::{file_size_setting, table_settings};
use crate::sink::delta::txn::table_app_id;
use crate::sink::delta::types::delta_type;
use crate::sink::delta::{DeltaTableWriter, TableLayout};
use crate::source::postgres::{
    self as pg, ConnectionSettings, SlotSettings, SlotSource, SourceError, SourceTable,
};

/// A pipeline ready to stream, whichever its source.
pub enum Prepared {
    Direct(Box<Pipeline<SlotSource>>),
    #[cfg(feature = "kafka")]
    Kafka(Box<Pipeline<crate::source::kafka::KafkaChangeSource>>),
    /// `snapshot_mode = "initial_only"`: the copy is done, nothing streams.
    Copied,
}

impl Prepared {
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, PipelineError> {
        match self {
            Prepared::Direct(pipeline) => pipeline.run(shutdown).await,
            #[cfg(feature = "kafka")]
            Prepared::Kafka(pipeline) => pipeline.run(shutdown).await,
            Prepared::Copied => {
                tracing::info!("snapshot_mode = initial_only: not streaming");
                Ok(RunSummary::default())
            }
        }
    }
}

/// Checks the source and configuration, then creates what is missing (publication, slot,
/// Delta tables) and copies the tables that need it. Nothing is created when a check fails.
/// A failure is counted and reported to the observer under its kind, as one while running is.
pub async fn prepare(
    config: &Config,
    name: &str,
    options: RunOptions,
    observer: Arc<Observer>,
) -> Result<Prepared, PipelineError> {
    let prepared = prepare_source_and_tables(config, name, options, observer.clone()).await;
    if let Err(error) = &prepared {
        observer.failed(error.error_type(), error);
    }
    prepared
}

/// Refuses a pipeline that needs what this build of pgdelta left out: Kafka mode needs the
/// cargo feature `kafka` (librdkafka), a table on S3, Azure or GCS the store's feature
/// (`s3`, `azure`, `gcs`); all are default ones that `--no-default-features` drops.
pub fn check_built_in(resolved: &ResolvedPipeline) -> Result<(), PipelineError> {
    if resolved.mode == PipelineMode::Kafka && !cfg!(feature = "kafka") {
        return Err(PipelineError::KafkaNotBuiltIn {
            pipeline: resolved.name.clone(),
        });
    }
    for table in &resolved.tables {
        if let Some(feature) = crate::sink::delta::storage::store_not_built_in(&table.path) {
            return Err(PipelineError::StoreNotBuiltIn {
                pipeline: resolved.name.clone(),
                location: table.path.clone(),
                feature,
            });
        }
    }
    Ok(())
}

async fn prepare_source_and_tables(
    config: &Config,
    name: &str,
    options: RunOptions,
    observer: Arc<Observer>,
) -> Result<Prepared, PipelineError> {
    let resolved = config.pipeline(name)?;
    check_built_in(&resolved)?;
    let connection = ConnectionSettings::from_config(config)?;
    let client = connection.connect().await?;
    let sources = describe_tables(&client, &resolved).await?;
    let keys = table_keys(&resolved, &sources);
    match resolved.mode {
        PipelineMode::Direct => {
            check_source(&client, &resolved, &sources).await?;
            let mut tables = open_tables(&resolved, &sources, &keys).await?;
            if !options.resnapshot {
                refuse_an_unfinished_resnapshot(&resolved, &tables)?;
            }
            let names: Vec<TableName> = resolved.tables.iter().map(|t| t.name.clone()).collect();
            pg::ensure_publication(&client, &resolved.publication, &names).await?;
            if options.resnapshot {
                start_resnapshot(&client, &resolved.slot, &mut tables).await?;
            }
            take_initial_snapshot(
                &client,
                &connection,
                &resolved,
                &mut tables,
                sources,
                options.resnapshot,
                &observer,
            )
            .await?;
            if resolved.slot_failover {
                ensure_failover_slot(&client, &connection, &resolved.slot).await?;
            }
            if resolved.snapshot_mode == SnapshotMode::InitialOnly {
                return Ok(Prepared::Copied);
            }
            let slot = SlotSettings {
                slot: resolved.slot.clone(),
                publication: resolved.publication.clone(),
                keys,
                large_transaction_events: resolved.large_transaction_events,
                exit_when_caught_up: options.exit_when_caught_up,
            };
            let source = SlotSource::new(connection, client, slot);
            Ok(Prepared::Direct(Box::new(Pipeline::new(
                resolved, tables, source, observer,
            ))))
        }
        PipelineMode::Kafka if options.resnapshot => Err(PipelineError::ResnapshotInKafkaMode {
            pipeline: resolved.name.clone(),
        }),
        #[cfg(feature = "kafka")]
        PipelineMode::Kafka => {
            kafka::prepare(
                config, resolved, connection, &sources, keys, options, observer,
            )
            .await
        }
        // Refused by check_built_in above; the match needs the arm.
        #[cfg(not(feature = "kafka"))]
        PipelineMode::Kafka => Err(PipelineError::KafkaNotBuiltIn {
            pipeline: resolved.name.clone(),
        }),
    }
}

async fn check_source(
    client: &Client,
    resolved: &ResolvedPipeline,
    sources: &[SourceTable],
) -> Result<(), SourceError> {
    let requests: Vec<pg::TableRequest> = resolved
        .tables
        .iter()
        .zip(sources)
        .map(|(table, source)| pg::TableRequest {
            table: source,
            configured_key: &table.key,
            config_section: format!("[pipelines.{}.table.\"{}\"]", resolved.name, table.name),
        })
        .collect();
    let mut readiness =
        pg::check_readiness(client, &resolved.slot, resolved.slot_failover, &requests).await?;
    if readiness.standby {
        tracing::info!(slot = %resolved.slot, "the source is a standby: creating a slot there waits for the primary's next running-transactions record (SELECT pg_log_standby_snapshot() on the primary hurries it)");
        let names: Vec<TableName> = resolved.tables.iter().map(|t| t.name.clone()).collect();
        if let Some(sql) = pg::publication_change(client, &resolved.publication, &names).await? {
            let problem = pg::publication_on_standby_problem(&resolved.publication, &sql);
            readiness.problems.push(problem);
        }
    }
    pg::warn_when_wal_retention_is_unbounded(&readiness, &resolved.slot);
    pg::warn_when_standby_drops_catalog_rows(&readiness, &resolved.slot);
    match readiness.problems.is_empty() {
        true => Ok(()),
        false => Err(SourceError::NotReady(readiness.problems)),
    }
}

/// Opens (or creates) the Delta table of every configured table and brings its columns up
/// to the source's; tables whose columns changed beyond what Delta holds come back stopped.
async fn open_tables(
    resolved: &ResolvedPipeline,
    sources: &[SourceTable],
    keys: &HashMap<TableName, Vec<String>>,
) -> Result<Tables, PipelineError> {
    let mut tables = Tables::default();
    for (table, source) in resolved.tables.iter().zip(sources) {
        let layout = table_layout(&resolved.name, table, source)?;
        let key = keys[&table.name].clone();
        let mut writer = DeltaTableWriter::open_or_create(
            &table.path,
            &table.storage,
            table.name.clone(),
            table_app_id(&resolved.name, &table.name),
            key.clone(),
            layout,
        )
        .await?;
        writer.set_member(&resolved.member);
        writer
            .check_object_store(resolved.unsafe_single_writer)
            .await?;
        let mut state_stopped = None;
        match plan_evolution(&writer, &source_schema(source, &key))? {
            Evolution::Unchanged => {}
            Evolution::AddColumns(fields) => add_columns(&mut writer, fields).await?,
            Evolution::Stop(reason) => state_stopped = Some(reason),
        }
        if table.maintenance.enabled {
            writer.apply_table_settings(&table.maintenance).await?;
        }
        let mut state = TableState::new(writer, table.key.is_empty(), table.maintenance.clone());
        state.stopped = state_stopped;
        tables.insert(state);
    }
    Ok(tables)
}

/// `--resnapshot`: each table records that its rows are to be replaced, then the slot goes
/// (whatever its state; an active one is refused by the server), so that a new one and its
/// snapshot start from the server's current position. The record makes a later start
/// without `--resnapshot` refuse until a copy replaced the table's rows.
async fn start_resnapshot(
    client: &Client,
    slot: &str,
    tables: &mut Tables,
) -> Result<(), PipelineError> {
    let names: Vec<TableName> = tables.names().cloned().collect();
    for name in &names {
        let state = tables.get_mut(name).expect("listed");
        if state.writer.last_applied_lsn().is_some() {
            state.writer.set_resnapshot_pending(true).await?;
        }
    }
    if pg::drop_slot(client, slot).await? {
        tracing::info!(slot, "--resnapshot: dropped the replication slot; a new one is created and every table copied again");
    }
    Ok(())
}

/// `failover = true`: the slot (just created, or older) is a failover slot.
async fn ensure_failover_slot(
    client: &Client,
    settings: &ConnectionSettings,
    slot: &str,
) -> Result<(), PipelineError> {
    let state = pg::slot_state(client, slot).await?;
    if state.and_then(|s| s.failover) != Some(true) {
        pg::snapshot::make_failover_slot(settings, slot).await?;
    }
    Ok(())
}

fn refuse_an_unfinished_resnapshot(
    resolved: &ResolvedPipeline,
    tables: &Tables,
) -> Result<(), PipelineError> {
    let unfinished: Vec<TableName> = tables
        .names()
        .filter(|name| {
            tables
                .get(name)
                .is_some_and(|t| t.writer.resnapshot_pending())
        })
        .cloned()
        .collect();
    match unfinished.is_empty() {
        true => Ok(()),
        false => Err(PipelineError::ResnapshotUnfinished {
            pipeline: resolved.name.clone(),
            tables: unfinished,
        }),
    }
}

/// Creates the slot if needed and copies the tables that have no pgdelta position yet (every
/// table with `resnapshot`): under the new slot's own snapshot, or, when the slot already
/// exists (an interrupted snapshot, a table added later), under a temporary slot's snapshot.
/// Streaming then skips, per table, every transaction the copy already holds.
async fn take_initial_snapshot(
    client: &Client,
    settings: &ConnectionSettings,
    resolved: &ResolvedPipeline,
    tables: &mut Tables,
    sources: Vec<SourceTable>,
    resnapshot: bool,
    observer: &Arc<Observer>,
) -> Result<(), PipelineError> {
    let slot_exists = pg::slot_position(client, &resolved.slot).await?.is_some();
    let mut jobs = Vec::new();
    if resolved.snapshot_mode != SnapshotMode::Never || resnapshot {
        for source in sources {
            let held = tables
                .get(&source.name)
                .map(|t| t.writer.last_applied_lsn().is_some());
            let replace = match held {
                Some(held) if held && resnapshot => true,
                Some(false) => false,
                _ => continue,
            };
            let state = tables.take(&source.name).expect("a state per table");
            jobs.push(snapshot::CopyJob {
                state,
                source,
                replace,
            });
        }
    }
    if jobs.is_empty() {
        pg::ensure_slot(client, &resolved.slot).await?;
        return Ok(());
    }
    let exported = match slot_exists {
        false => pg::snapshot::create_slot_with_snapshot(settings, &resolved.slot, false).await?,
        true => {
            let temporary = format!("{}_snap_{}", resolved.slot, std::process::id());
            pg::snapshot::create_slot_with_snapshot(settings, &temporary, true).await?
        }
    };
    let names: Vec<String> = jobs.iter().map(|j| j.source.name.to_string()).collect();
    tracing::info!(tables = %names.join(", "), at = %exported.consistent_point, "initial snapshot starting");
    let parallelism = resolved.snapshot_parallelism;
    let copied = snapshot::copy_tables(settings, &exported, jobs, parallelism, observer).await?;
    for state in copied {
        tables.insert(state);
    }
    Ok(())
}

async fn describe_tables(
    client: &Client,
    resolved: &ResolvedPipeline,
) -> Result<Vec<SourceTable>, SourceError> {
    let mut tables = Vec::new();
    for table in &resolved.tables {
        tables.push(pg::introspect_table(client, &table.name).await?);
    }
    Ok(tables)
}

/// Each table's key columns: configured, else the primary key.
fn table_keys(
    resolved: &ResolvedPipeline,
    sources: &[SourceTable],
) -> HashMap<TableName, Vec<String>> {
    resolved
        .tables
        .iter()
        .zip(sources)
        .map(|(table, source)| (table.name.clone(), key_columns(table, source)))
        .collect()
}

fn key_columns(table: &ResolvedTable, source: &SourceTable) -> Vec<String> {
    if table.key.is_empty() {
        source.primary_key.clone()
    } else {
        table.key.clone()
    }
}

fn source_schema(source: &SourceTable, key: &[String]) -> TableSchema {
    TableSchema {
        table: source.name.clone(),
        columns: source.column_schemas(key),
    }
}

/// The Delta columns for a source table: same names and order, every column nullable.
fn table_layout(
    pipeline: &str,
    table: &ResolvedTable,
    source: &SourceTable,
) -> Result<TableLayout, PipelineError> {
    let columns = source
        .columns
        .iter()
        .map(|column| {
            let data_type = delta_type(column.type_oid, column.type_modifier, Some(&column.type_name)).unwrap_or_else(|| {
                tracing::warn!(table = %source.name, column = %column.name, pg_type = %column.type_name,
                    "type has no Delta counterpart; stored as its PostgreSQL text form");
                DataType::STRING
            });
            StructField::new(column.name.clone(), data_type, true)
        })
        .collect();
    if let Some(column) = table
        .partition_by
        .iter()
        .find(|p| !source.columns.iter().any(|c| &c.name == *p))
    {
        return Err(PipelineError::NoPartitionColumn {
            pipeline: pipeline.to_string(),
            table: table.name.clone(),
            column: column.clone(),
        });
    }
    let maintenance = &table.maintenance;
    let properties = match maintenance.enabled {
        true => table_settings(maintenance),
        false => [file_size_setting(maintenance)].into(),
    };
    Ok(TableLayout {
        columns,
        partition_by: table.partition_by.clone(),
        properties,
        write_mode: table.write_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prepares pipeline `shop` of the config `text`, which must fail; the error and the
    /// pipeline's metrics.
    async fn failed_prepare(text: &str) -> (PipelineError, Arc<Observer>) {
        let config = Config::from_toml(text, std::path::Path::new("t.toml"), Vec::new()).unwrap();
        let observer = Arc::new(Observer::new(&config.pipeline("shop").unwrap()));
        match prepare(&config, "shop", RunOptions::default(), observer.clone()).await {
            Err(error) => (error, observer),
            Ok(_) => panic!("prepared pipeline shop"),
        }
    }

    #[tokio::test]
    async fn a_failure_before_streaming_is_counted_under_its_kind() {
        // Nothing listens on port 1: the one connection attempt is refused.
        let text = "[source]\nurl = \"postgres://u@127.0.0.1:1/db\"\nconnect_attempts = 1\n[pipelines.shop]\ntables = [\"public.a\"]\n";
        let (error, observer) = failed_prepare(text).await;
        assert!(matches!(error, PipelineError::Source(_)), "{error}");
        let metrics = observer.encode_metrics();
        assert!(
            metrics.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"source\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"setup\"} 0"),
            "{metrics}"
        );
        let reason = observer.readiness().unwrap_err();
        assert!(reason.contains("127.0.0.1"), "{reason}");
    }

    #[test]
    fn tables_are_created_with_the_target_file_size_even_without_maintenance() {
        let layout = |maintenance: &str| {
            let text = format!(
                "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.shop]\ntables = [\"public.a\"]\n[pipelines.shop.maintenance]\n{maintenance}\n"
            );
            let config = Config::from_toml(&text, std::path::Path::new("t.toml"), Vec::new());
            let resolved = config.unwrap().pipeline("shop").unwrap();
            let source = SourceTable {
                name: TableName::new("public", "a"),
                columns: vec![pg::ColumnInfo {
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1,
                    type_name: "integer".into(),
                    not_null: true,
                }],
                primary_key: vec!["id".into()],
                replica_identity: 'd',
                estimated_rows: 0,
            };
            table_layout("shop", &resolved.tables[0], &source)
                .unwrap()
                .properties
        };
        let on = layout("target_file_size_mb = 4");
        assert_eq!(on["delta.targetFileSize"], (4 << 20).to_string());
        assert_eq!(on["delta.checkpointInterval"], "100");
        let off = layout("enabled = false");
        assert_eq!(off["delta.targetFileSize"], (8 << 20).to_string());
        assert!(!off.contains_key("delta.checkpointInterval"));
    }

    #[cfg(not(feature = "s3"))]
    #[tokio::test]
    async fn a_table_on_s3_in_a_build_without_s3_is_refused_before_connecting() {
        let text = "[source]\nurl = \"postgres://u@127.0.0.1:1/db\"\nconnect_attempts = 1\n[pipelines.shop]\ntables = [\"public.a\"]\ndelta_root = \"s3://lake/shop\"\n";
        let (error, _) = failed_prepare(text).await;
        assert!(
            matches!(&error, PipelineError::StoreNotBuiltIn { feature: "s3", .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("s3://lake/shop/public/a"), "{message}");
        assert!(message.contains("`s3` cargo feature"), "{message}");
    }

    #[cfg(not(feature = "kafka"))]
    #[tokio::test]
    async fn kafka_mode_in_a_build_without_kafka_is_refused_before_connecting() {
        // Nothing listens on port 1: reaching PostgreSQL would fail differently.
        let text = "[source]\nurl = \"postgres://u@127.0.0.1:1/db\"\nconnect_attempts = 1\n[pipelines.shop]\nmode = \"kafka\"\ntables = [\"public.a\"]\n[pipelines.shop.kafka]\nbootstrap_servers = \"b:9092\"\n";
        let (error, observer) = failed_prepare(text).await;
        assert!(
            matches!(&error, PipelineError::KafkaNotBuiltIn { pipeline } if pipeline == "shop"),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("pipeline shop"), "{message}");
        assert!(message.contains("`kafka` cargo feature"), "{message}");
        assert!(message.contains("`cargo build`"), "{message}");
        let metrics = observer.encode_metrics();
        assert!(
            metrics.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"setup\"} 1"),
            "{metrics}"
        );
    }
}
