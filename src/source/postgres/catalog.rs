//! What the source database holds and whether it is ready for CDC; publication and slot setup.

use std::fmt;

use tokio_postgres::Client;

use super::SourceError;
use crate::event::{quote_ident, ColumnSchema, Lsn, TableName};

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    /// `format_type()` output, e.g. `numeric(10,2)`.
    pub type_name: String,
    pub not_null: bool,
}

/// A source table's columns, key and replica identity.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub name: TableName,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    /// `d` default, `f` full, `i` index, `n` nothing.
    pub replica_identity: char,
    /// The planner's row estimate (`pg_class.reltuples`); 0 when never analyzed.
    pub estimated_rows: i64,
}

impl SourceTable {
    /// Columns as the event model describes them, with `key` marking key columns.
    pub fn column_schemas(&self, key: &[String]) -> Vec<ColumnSchema> {
        self.columns
            .iter()
            .map(|c| ColumnSchema {
                name: c.name.clone(),
                type_oid: c.type_oid,
                type_modifier: c.type_modifier,
                type_name: Some(c.type_name.clone()),
                is_key: key.contains(&c.name),
            })
            .collect()
    }
}

fn query_error(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
    let context = context.into();
    move |source| SourceError::Query { context, source }
}

pub async fn introspect_table(
    client: &Client,
    table: &TableName,
) -> Result<SourceTable, SourceError> {
    let context = format!("describe table {table}");
    let relation = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text, greatest(c.reltuples, 0)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(query_error(&context))?
        .ok_or_else(|| SourceError::MissingTable(table.clone()))?;
    let oid: u32 = relation.get(0);
    let replica_identity: String = relation.get(1);
    let estimated_rows: i64 = relation.get(2);
    let columns = client
        .query(
            // A domain is stored as its base type.
            "SELECT a.attname::text, \
                    CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, \
                    CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, \
                    format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(query_error(&context))?
        .into_iter()
        .map(|row| ColumnInfo {
            name: row.get(0),
            type_oid: row.get(1),
            type_modifier: row.get(2),
            type_name: row.get(3),
            not_null: row.get(4),
        })
        .collect();
    let primary_key = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.position",
            &[&oid],
        )
        .await
        .map_err(query_error(&context))?
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    Ok(SourceTable {
        name: table.clone(),
        columns,
        primary_key,
        replica_identity: replica_identity.chars().next().unwrap_or('d'),
        estimated_rows,
    })
}

/// One thing to change before CDC can work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessProblem(pub String);

impl fmt::Display for ReadinessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table and the key columns the configuration gives it (empty: use the primary key).
pub struct TableRequest<'a> {
    pub table: &'a SourceTable,
    pub configured_key: &'a [String],
    pub config_section: String,
}

/// What [`check_readiness`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every problem, one message each, saying what to change.
    pub problems: Vec<ReadinessProblem>,
    /// The server's `max_slot_wal_keep_size` (`-1`: unlimited).
    pub max_slot_wal_keep_size: String,
    /// The server is a standby (in recovery): changes are decoded from the WAL it replays.
    pub standby: bool,
    pub hot_standby_feedback: bool,
}

impl Readiness {
    /// A slot whose consumer stops retains WAL until the disk fills, unless
    /// `max_slot_wal_keep_size` bounds it (PostgreSQL then invalidates the slot instead).
    pub fn wal_retention_is_unbounded(&self) -> bool {
        self.max_slot_wal_keep_size == "-1"
    }
}

/// Checks server settings, privileges and each table's key.
pub async fn check_readiness(
    client: &Client,
    slot: &str,
    slot_failover: bool,
    tables: &[TableRequest<'_>],
) -> Result<Readiness, SourceError> {
    let mut readiness = server_readiness(client, slot, slot_failover).await?;
    for request in tables {
        readiness.problems.extend(table_problems(request));
    }
    Ok(readiness)
}

/// Says at start what a standby source without `hot_standby_feedback` risks.
pub fn warn_when_standby_drops_catalog_rows(readiness: &Readiness, slot: &str) {
    if readiness.standby && !readiness.hot_standby_feedback {
        tracing::warn!(
            slot,
            "the source is a standby with hot_standby_feedback = off: when the primary vacuums \
             catalog rows the slot still needs, PostgreSQL invalidates slot {slot} (a conflict); \
             set hot_standby_feedback = on and primary_slot_name on the standby"
        );
    }
}

/// Says at start what an unlimited `max_slot_wal_keep_size` risks.
pub fn warn_when_wal_retention_is_unbounded(readiness: &Readiness, slot: &str) {
    if readiness.wal_retention_is_unbounded() {
        tracing::warn!(
            slot,
            "max_slot_wal_keep_size is -1 (unlimited): if pgdelta stops for long, replication slot {slot} keeps WAL \
             until the server's disk is full; set max_slot_wal_keep_size (e.g. '50GB') so that PostgreSQL drops the \
             slot's claim instead, and watch postgres_cdc_replication_slot_retained_wal_bytes"
        );
    }
}

async fn server_readiness(
    client: &Client,
    slot: &str,
    slot_failover: bool,
) -> Result<Readiness, SourceError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), \
                    current_setting('max_replication_slots')::int, \
                    (SELECT count(*)::int FROM pg_replication_slots), \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*)::int FROM pg_stat_replication), \
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), \
                    current_setting('server_version_num')::int, current_setting('server_version'), \
                    current_setting('max_slot_wal_keep_size'), pg_is_in_recovery(), \
                    current_setting('hot_standby_feedback')",
            &[&slot],
        )
        .await
        .map_err(query_error("check CDC readiness"))?;
    let wal_level: String = row.get(0);
    let (max_slots, used_slots): (i32, i32) = (row.get(1), row.get(2));
    let (max_senders, used_senders): (i32, i32) = (row.get(3), row.get(4));
    let can_replicate: bool = row.get(5);
    let slot_exists: bool = row.get(6);
    let (version_num, version): (i32, String) = (row.get(7), row.get(8));
    let max_slot_wal_keep_size: String = row.get(9);
    let standby: bool = row.get(10);
    let hot_standby_feedback = row.get::<_, String>(11) == "on";
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(ReadinessProblem(text));
    if let Some(text) = version_problem(version_num, &version) {
        problem(text);
    }
    if slot_failover && version_num < FAILOVER_SINCE {
        problem(format!(
            "failover = true needs PostgreSQL 17 or later (failover slots); this server is \
             {version}: remove the setting"
        ));
    }
    if wal_level != "logical" {
        problem(format!(
            "wal_level is '{wal_level}': set wal_level = logical in postgresql.conf and restart PostgreSQL"
        ));
    }
    if !slot_exists && used_slots >= max_slots {
        problem(format!(
            "all {max_slots} replication slots are in use: raise max_replication_slots or drop an unused slot"
        ));
    }
    if used_senders >= max_senders {
        problem(format!(
            "all {max_senders} WAL senders are in use: raise max_wal_senders"
        ));
    }
    if !can_replicate {
        problem("the connecting role lacks the REPLICATION attribute: ALTER ROLE <user> WITH REPLICATION".into());
    }
    if standby {
        problems.extend(standby_problems(version_num, &version, slot_failover));
    }
    Ok(Readiness {
        problems,
        max_slot_wal_keep_size,
        standby,
        hot_standby_feedback,
    })
}

/// What keeps a standby (a server in recovery) from being the source.
fn standby_problems(version_num: i32, version: &str, slot_failover: bool) -> Vec<ReadinessProblem> {
    let mut problems = Vec::new();
    if version_num < DECODING_ON_STANDBY_SINCE {
        problems.push(ReadinessProblem(format!(
            "this server is a standby (in recovery) and runs PostgreSQL {version}: logical \
             decoding on a standby needs PostgreSQL 16 or later; point pgdelta at the primary"
        )));
    }
    if slot_failover {
        problems.push(ReadinessProblem(
            "failover = true cannot be used on a standby (a standby cannot make failover \
             slots): remove the setting, or point pgdelta at the primary"
                .into(),
        ));
    }
    problems
}

/// The oldest server the replication stream works with (`server_version_num`).
const MIN_SERVER_VERSION: i32 = 130_000;

/// The first server whose pgoutput streams logical messages (the `messages` option); on older
/// ones a caught-up run ends at the server's report that it sent everything past the marker.
pub const MESSAGES_SINCE: i32 = 140_000;

/// The first server with failover slots (synced to standbys).
const FAILOVER_SINCE: i32 = 170_000;

/// The first server that decodes logical changes on a standby.
const DECODING_ON_STANDBY_SINCE: i32 = 160_000;

/// The end of the WAL this server has: where it inserts, or on a standby what it replayed.
const WAL_END: &str =
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END";

/// Whether the server is a standby (in recovery).
pub async fn in_recovery(client: &Client) -> Result<bool, SourceError> {
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(query_error("ask whether the server is a standby"))?;
    Ok(row.get(0))
}

fn version_problem(version_num: i32, version: &str) -> Option<String> {
    (version_num < MIN_SERVER_VERSION).then(|| {
        format!(
            "PostgreSQL {version} is too old: pgdelta needs PostgreSQL 13 or later (logical \
             replication with pgoutput)"
        )
    })
}

/// The server's `server_version_num` (e.g. 130023 for 13.23).
pub async fn server_version_num(client: &Client) -> Result<i32, SourceError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(query_error("read the server version"))?;
    Ok(row.get(0))
}

fn table_problems(request: &TableRequest<'_>) -> Vec<ReadinessProblem> {
    let table = request.table;
    let mut problems = Vec::new();
    for key in request.configured_key {
        if !table.columns.iter().any(|c| &c.name == key) {
            problems.push(ReadinessProblem(format!(
                "table {}: key column '{key}' in {} does not exist",
                table.name, request.config_section
            )));
        }
    }
    let has_key = !table.primary_key.is_empty() || !request.configured_key.is_empty();
    if !has_key {
        problems.push(ReadinessProblem(format!(
            "table {} has no primary key: add one, or set key = [\"<column>\", ...] in {} \
             (and ALTER TABLE {} REPLICA IDENTITY FULL)",
            table.name,
            request.config_section,
            table.name.quoted()
        )));
    }
    let identity_ok = match table.replica_identity {
        'f' | 'i' => true,
        'd' => !table.primary_key.is_empty(),
        _ => false,
    };
    if !identity_ok {
        problems.push(ReadinessProblem(format!(
            "table {} cannot publish its updates and deletes (REPLICA IDENTITY {}): \
             ALTER TABLE {} REPLICA IDENTITY FULL",
            table.name,
            match table.replica_identity {
                'n' => "NOTHING",
                _ => "DEFAULT without a primary key",
            },
            table.name.quoted()
        )));
    }
    problems
}

/// Creates the publication for `tables`, or adds the missing ones to an existing one.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    tables: &[TableName],
) -> Result<(), SourceError> {
    let Some(sql) = publication_change(client, publication, tables).await? else {
        return Ok(());
    };
    // A standby is read-only; the publication reaches it from the primary through the WAL.
    if in_recovery(client).await? {
        return Err(SourceError::PublicationOnStandby {
            publication: publication.to_string(),
            sql,
        });
    }
    tracing::info!(publication, %sql, "setting up publication");
    client
        .batch_execute(&sql)
        .await
        .map_err(query_error(format!("set up publication {publication}")))
}

/// The statement that gives `publication` every one of `tables`, `None` when it has them.
pub async fn publication_change(
    client: &Client,
    publication: &str,
    tables: &[TableName],
) -> Result<Option<String>, SourceError> {
    let quoted = |tables: &[&TableName]| {
        tables
            .iter()
            .map(|t| t.quoted())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (verb, add, missing) = match published_tables(client, publication).await? {
        None => ("CREATE", "FOR", tables.iter().collect()),
        Some(published) => (
            "ALTER",
            "ADD",
            tables
                .iter()
                .filter(|t| !published.contains(t))
                .collect::<Vec<_>>(),
        ),
    };
    Ok((!missing.is_empty()).then(|| {
        format!(
            "{verb} PUBLICATION {} {add} TABLE {}",
            quote_ident(publication),
            quoted(&missing)
        )
    }))
}

/// On a standby, which cannot change the publication: the statement to run on the primary.
pub fn publication_on_standby_problem(publication: &str, sql: &str) -> ReadinessProblem {
    ReadinessProblem(format!(
        "publication {publication} lacks tables of the pipeline and the source is a standby \
         (read-only): run on the primary: {sql}"
    ))
}

/// The tables `publication` holds, `None` when there is no such publication.
pub async fn published_tables(
    client: &Client,
    publication: &str,
) -> Result<Option<Vec<TableName>>, SourceError> {
    let context = format!("read publication {publication}");
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(query_error(&context))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let tables = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(query_error(&context))?
        .into_iter()
        .map(|row| TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect();
    Ok(Some(tables))
}

/// Creates the logical slot with pgoutput if it does not exist; returns its confirmed position.
pub async fn ensure_slot(client: &Client, slot: &str) -> Result<Lsn, SourceError> {
    let context = format!("set up replication slot {slot}");
    if let Some(lsn) = slot_position(client, slot).await? {
        return Ok(lsn);
    }
    tracing::info!(slot, "creating logical replication slot (pgoutput)");
    client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(query_error(&context))?;
    slot_position(client, slot)
        .await?
        .ok_or_else(|| SourceError::SlotMissing {
            slot: slot.to_string(),
        })
}

/// The slot's `confirmed_flush_lsn`, or `None` when there is no such slot. A slot
/// PostgreSQL invalidated is an error: what it held is gone.
pub async fn slot_position(client: &Client, slot: &str) -> Result<Option<Lsn>, SourceError> {
    let Some(state) = slot_state(client, slot).await? else {
        return Ok(None);
    };
    if state.plugin.as_deref() != Some("pgoutput") {
        return Err(SourceError::WrongPlugin {
            slot: slot.to_string(),
            plugin: state.plugin.unwrap_or_default(),
        });
    }
    if let Some(reason) = state.invalidation() {
        return Err(SourceError::SlotInvalidated {
            slot: slot.to_string(),
            reason,
            confirmed: state.confirmed.unwrap_or_default(),
        });
    }
    Ok(Some(state.confirmed.unwrap_or_default()))
}

/// A replication slot as `pg_replication_slots` shows it; the columns that only some
/// versions have are `None` on the others (`wal_status`, `safe_wal_size`: 13+;
/// `conflicting`: 16+; `invalidation_reason`, `failover`: 17+).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotState {
    pub plugin: Option<String>,
    pub confirmed: Option<Lsn>,
    /// Whether a replication connection is reading it now.
    pub active: Option<bool>,
    /// WAL from `restart_lsn` to the current position.
    pub retained_wal_bytes: i64,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// WAL that can still be written before the slot is in danger of being lost.
    pub safe_wal_size: Option<i64>,
    pub conflicting: Option<bool>,
    pub invalidation_reason: Option<String>,
    /// Synced to standbys (17+).
    pub failover: Option<bool>,
}

impl SlotState {
    /// Why PostgreSQL no longer serves the slot's changes, if it does not.
    pub fn invalidation(&self) -> Option<String> {
        if let Some(reason) = &self.invalidation_reason {
            return Some(format!("invalidation_reason = {reason}"));
        }
        if self.wal_status.as_deref() == Some("lost") {
            return Some(
                "wal_status = lost: it fell more than max_slot_wal_keep_size behind".to_string(),
            );
        }
        self.conflicting
            .unwrap_or(false)
            .then(|| "conflicting = true: rows it needed were removed on the primary".to_string())
    }
}

/// The slot `slot`, or `None` when there is no such slot.
pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, SourceError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT plugin::text, confirmed_flush_lsn::text, active, \
                    coalesce(pg_wal_lsn_diff({WAL_END}, restart_lsn), 0)::bigint, \
                    to_jsonb(s) ->> 'wal_status', (to_jsonb(s) ->> 'safe_wal_size')::bigint, \
                    (to_jsonb(s) ->> 'conflicting')::boolean, to_jsonb(s) ->> 'invalidation_reason', \
                    (to_jsonb(s) ->> 'failover')::boolean \
             FROM pg_replication_slots s WHERE slot_name = $1"
            ),
            &[&slot],
        )
        .await
        .map_err(query_error(format!("read replication slot {slot}")))?;
    Ok(row.map(|row| SlotState {
        plugin: row.get(0),
        confirmed: row.get::<_, Option<String>>(1).and_then(|l| l.parse().ok()),
        active: row.get(2),
        retained_wal_bytes: row.get(3),
        wal_status: row.get(4),
        safe_wal_size: row.get(5),
        conflicting: row.get(6),
        invalidation_reason: row.get(7),
        failover: row.get(8),
    }))
}

/// Drops the slot and the publication (on request only).
pub async fn drop_slot_and_publication(
    client: &Client,
    slot: &str,
    publication: &str,
) -> Result<(), SourceError> {
    drop_slot(client, slot).await?;
    let sql = format!("DROP PUBLICATION IF EXISTS {}", quote_ident(publication));
    if in_recovery(client).await? {
        tracing::info!(
            publication,
            "the source is a standby: drop the publication on the primary ({sql})"
        );
        return Ok(());
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(query_error(format!("drop publication {publication}")))
}

/// Drops the replication slot, also one PostgreSQL invalidated; `false` when there was none.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<bool, SourceError> {
    if slot_state(client, slot).await?.is_none() {
        return Ok(false);
    }
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(query_error(format!("drop replication slot {slot}")))?;
    Ok(true)
}

/// The server's current WAL insert position; on a standby, the end of the WAL it replayed.
pub async fn current_wal_lsn(client: &Client) -> Result<Lsn, SourceError> {
    let row = client
        .query_one(&format!("SELECT ({WAL_END})::text"), &[])
        .await
        .map_err(query_error("read the current WAL position"))?;
    let text: String = row.get(0);
    text.parse().map_err(|source| SourceError::BadLsn {
        what: "pg_current_wal_lsn()",
        text: text.clone(),
        source,
    })
}

/// Writes a non-transactional logical message; it reaches the stream after every transaction
/// committed before it, so seeing it means "caught up to here".
pub async fn emit_marker(client: &Client, prefix: &str, content: &str) -> Result<Lsn, SourceError> {
    let row = client
        .query_one(
            "SELECT pg_logical_emit_message(false, $1, $2)::text",
            &[&prefix, &content],
        )
        .await
        .map_err(query_error(
            "write the caught-up marker with pg_logical_emit_message",
        ))?;
    let text: String = row.get(0);
    text.parse().map_err(|source| SourceError::BadLsn {
        what: "pg_logical_emit_message()",
        text: text.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(primary_key: &[&str], identity: char) -> SourceTable {
        SourceTable {
            name: TableName::new("public", "events"),
            columns: vec![ColumnInfo {
                name: "id".into(),
                type_oid: 23,
                type_modifier: -1,
                type_name: "integer".into(),
                not_null: true,
            }],
            primary_key: primary_key.iter().map(|s| s.to_string()).collect(),
            replica_identity: identity,
            estimated_rows: 0,
        }
    }

    fn problems(table: &SourceTable, key: &[String]) -> Vec<ReadinessProblem> {
        table_problems(&TableRequest {
            table,
            configured_key: key,
            config_section: "[pipelines.p.table.\"public.events\"]".into(),
        })
    }

    #[test]
    fn a_standby_source_needs_16_and_no_failover_slot() {
        assert!(standby_problems(160_004, "16.4", false).is_empty());
        let old = standby_problems(150_008, "15.8", false);
        assert_eq!(old.len(), 1);
        assert!(
            old[0].0.contains("needs PostgreSQL 16 or later"),
            "{}",
            old[0]
        );
        let failover = standby_problems(170_000, "17.0", true);
        assert_eq!(failover.len(), 1);
        assert!(failover[0]
            .0
            .contains("failover = true cannot be used on a standby"));
    }

    #[test]
    fn servers_before_13_are_refused_by_name() {
        let refusal = version_problem(120_022, "12.22").unwrap();
        assert!(refusal.contains("PostgreSQL 12.22 is too old"), "{refusal}");
        assert!(refusal.contains("13 or later"), "{refusal}");
        assert_eq!(version_problem(130_023, "13.23"), None);
        assert_eq!(version_problem(140_000, "14.0"), None);
        assert_eq!(version_problem(180_004, "18.4"), None);
    }

    #[test]
    fn a_table_with_a_primary_key_is_ready() {
        assert!(problems(&table(&["id"], 'd'), &[]).is_empty());
    }

    #[test]
    fn replica_identity_full_without_key_needs_configured_key() {
        let t = table(&[], 'f');
        let found = problems(&t, &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].0.contains("has no primary key"), "{}", found[0]);
        assert!(found[0].0.contains("set key ="), "{}", found[0]);
        assert!(problems(&t, &["id".into()]).is_empty());
    }

    #[test]
    fn unknown_key_column_and_identity_nothing_are_reported() {
        let found = problems(&table(&["id"], 'n'), &["nope".into()]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|p| p.0.contains("'nope'")));
        assert!(found
            .iter()
            .any(|p| p.0.contains("REPLICA IDENTITY NOTHING")));
    }
}
