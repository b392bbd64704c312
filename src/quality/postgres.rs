//! The PostgreSQL side of a validation: counts and per-chunk checksums computed in SQL inside
//! one REPEATABLE READ snapshot, the slot's state, and pending changes of an idle slot.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use super::canonical::{pg_expression, pg_row_hash, pg_row_text, KeyOrder};
use super::chunks::{ChunkSum, Chunking, Key};
use super::QualityError;
use crate::event::{quote_ident, Lsn, TableName};
use crate::source::postgres::{current_wal_lsn, ColumnInfo};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn query_error(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> QualityError {
    let context = context.into();
    move |source| QualityError::Query { context, source }
}

/// A source table as validation needs it.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: TableName,
    pub columns: Vec<ColumnInfo>,
    pub key: Vec<String>,
}

impl TableSpec {
    fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn canonical(&self, column: &ColumnInfo) -> String {
        pg_expression(&column.name, column.type_oid, column.type_modifier)
    }

    pub fn key_orders(&self) -> Vec<KeyOrder> {
        self.key
            .iter()
            .map(|k| KeyOrder::for_type(self.column(k).map(|c| c.type_oid).unwrap_or(25)))
            .collect()
    }

    fn key_expressions(&self) -> Vec<String> {
        self.key
            .iter()
            .filter_map(|k| self.column(k))
            .map(|c| self.canonical(c))
            .collect()
    }

    fn order_by(&self) -> String {
        self.key
            .iter()
            .filter_map(|k| self.column(k))
            .zip(self.key_orders())
            .map(|(c, order)| order.order_by(&c.name, &self.canonical(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn row_hash(&self) -> String {
        let expressions: Vec<String> = self.columns.iter().map(|c| self.canonical(c)).collect();
        pg_row_hash(&pg_row_text(&expressions))
    }

    /// Each row's position in key order, key texts (`k0`, `k1`, ...) and hash `h`.
    fn numbered_rows(&self) -> String {
        let keys: Vec<String> = self
            .key_expressions()
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS k{i}"))
            .collect();
        format!(
            "SELECT row_number() OVER (ORDER BY {}) AS rn, {}, {} AS h FROM {}",
            self.order_by(),
            keys.join(", "),
            self.row_hash(),
            self.name.quoted()
        )
    }
}

/// Applies the settings under which values render canonically.
pub async fn prepare_session(client: &Client) -> Result<(), QualityError> {
    client
        .batch_execute(super::canonical::SESSION_SETTINGS)
        .await
        .map_err(query_error("set the session's rendering settings"))
}

/// Starts a read-only REPEATABLE READ snapshot and returns the WAL position it was taken at.
pub async fn begin_snapshot(client: &Client) -> Result<Lsn, QualityError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(query_error("begin a snapshot"))?;
    Ok(current_wal_lsn(client).await?)
}

pub async fn end_snapshot(client: &Client) -> Result<(), QualityError> {
    client
        .batch_execute("COMMIT")
        .await
        .map_err(query_error("end the snapshot"))
}

fn parse_lsn(text: String) -> Result<Lsn, QualityError> {
    text.parse()
        .map_err(|e: crate::event::ParseLsnError| QualityError::Invalid(e.to_string()))
}

pub async fn count_rows(client: &Client, table: &TableName) -> Result<u64, QualityError> {
    let row = client
        .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
        .await
        .map_err(query_error(format!("count the rows of {table}")))?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn key_of(row: &tokio_postgres::Row, start: usize, parts: usize) -> Key {
    (start..start + parts)
        .map(|i| {
            row.get::<_, Option<String>>(i)
                .unwrap_or_else(|| "\\N".into())
        })
        .collect()
}

/// Cuts the table into chunks of `chunk_rows` rows in key order: the boundaries and each
/// chunk's sums, in one ordered pass.
pub async fn chunk_sums(
    client: &Client,
    spec: &TableSpec,
    chunk_rows: u64,
) -> Result<(Chunking, Vec<ChunkSum>), QualityError> {
    let parts = spec.key.len();
    let firsts: Vec<String> = (0..parts)
        .map(|i| format!("max(CASE WHEN (rn - 1) % $1 = 0 THEN k{i} END)"))
        .collect();
    let sql = format!(
        "SELECT ((rn - 1) / $1)::bigint AS chunk, count(*), sum(h)::text, {} FROM ({}) s \
         GROUP BY 1 ORDER BY 1",
        firsts.join(", "),
        spec.numbered_rows()
    );
    let rows = client
        .query(&sql, &[&(chunk_rows as i64)])
        .await
        .map_err(query_error(format!("checksum the rows of {}", spec.name)))?;
    let mut boundaries = Vec::new();
    let mut sums = Vec::new();
    for row in rows {
        let hash_sum: String = row.get(2);
        sums.push(ChunkSum {
            rows: row.get::<_, i64>(1) as u64,
            hash_sum: hash_sum
                .parse()
                .map_err(|_| QualityError::Invalid(format!("checksum sum '{hash_sum}'")))?,
        });
        boundaries.push(key_of(&row, 3, parts));
    }
    Ok((Chunking::new(spec.key_orders(), boundaries), sums))
}

/// Row hashes by key for the rows of `chunks`.
pub async fn chunk_rows(
    client: &Client,
    spec: &TableSpec,
    chunk_rows: u64,
    chunks: &[usize],
) -> Result<HashMap<Key, i64>, QualityError> {
    let keys: Vec<String> = (0..spec.key.len()).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "SELECT h, {} FROM ({}) s WHERE ((rn - 1) / $1) = ANY($2)",
        keys.join(", "),
        spec.numbered_rows()
    );
    let wanted: Vec<i64> = chunks.iter().map(|&c| c as i64).collect();
    let rows = client
        .query(&sql, &[&(chunk_rows as i64), &wanted])
        .await
        .map_err(query_error(format!("read row hashes of {}", spec.name)))?;
    Ok(rows
        .iter()
        .map(|row| (key_of(row, 1, spec.key.len()), row.get::<_, i64>(0)))
        .collect())
}

/// The replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub confirmed_flush: Option<Lsn>,
    /// Process id of the walsender streaming from it, when a pipeline is running.
    pub active_pid: Option<i32>,
}

pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, QualityError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(query_error(format!("read replication slot {slot}")))?;
    let Some(row) = row else { return Ok(None) };
    let confirmed: Option<String> = row.get(0);
    Ok(Some(SlotState {
        confirmed_flush: confirmed.map(parse_lsn).transpose()?,
        active_pid: row.get(1),
    }))
}

/// What the walsender of a running pipeline has sent, and its flush lag in seconds.
pub async fn walsender_progress(
    client: &Client,
    pid: i32,
) -> Result<Option<(Option<Lsn>, f64)>, QualityError> {
    let row = client
        .query_opt(
            "SELECT sent_lsn::text, coalesce(extract(epoch FROM flush_lag), 0)::float8 \
             FROM pg_stat_replication WHERE pid = $1",
            &[&pid],
        )
        .await
        .map_err(query_error("read pg_stat_replication"))?;
    let Some(row) = row else { return Ok(None) };
    let sent: Option<String> = row.get(0);
    Ok(Some((sent.map(parse_lsn).transpose()?, row.get(1))))
}

pub async fn table_oid(client: &Client, table: &TableName) -> Result<u32, QualityError> {
    let row = client
        .query_one("SELECT $1::text::regclass::oid", &[&table.quoted()])
        .await
        .map_err(query_error(format!("look up {table}")))?;
    Ok(row.get(0))
}

/// A committed source transaction the slot has not confirmed yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTransaction {
    pub commit_lsn: Lsn,
    pub commit_micros: i64,
    pub relations: HashSet<u32>,
}

/// The transactions waiting in an idle slot (at most `limit` changes are decoded; `true`
/// when the limit was hit). Peeking consumes nothing, but needs the slot unused: never
/// call this while a pipeline streams from it.
pub async fn pending_transactions(
    client: &Client,
    slot: &str,
    publication: &str,
    limit: i32,
) -> Result<(Vec<PendingTransaction>, bool), QualityError> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
             'proto_version', '1', 'publication_names', $3)",
            &[&slot, &limit, &quote_ident(publication)],
        )
        .await
        .map_err(query_error(format!(
            "peek at pending changes of slot {slot}"
        )))?;
    let hit_limit = rows.len() >= limit as usize;
    let messages: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
    Ok((parse_pending(&messages), hit_limit))
}

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_i64(bytes: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Groups pgoutput (protocol 1) messages into transactions with the relations they change.
pub fn parse_pending(messages: &[Vec<u8>]) -> Vec<PendingTransaction> {
    let mut done = Vec::new();
    let mut current: Option<PendingTransaction> = None;
    for message in messages {
        match message.first() {
            Some(b'B') => {
                current = Some(PendingTransaction {
                    commit_lsn: Lsn(be_i64(message, 1).unwrap_or(0) as u64),
                    commit_micros: be_i64(message, 9).unwrap_or(0) + PG_EPOCH_MICROS,
                    relations: HashSet::new(),
                });
            }
            Some(b'I' | b'U' | b'D') => {
                if let (Some(tx), Some(relid)) = (current.as_mut(), be_i32(message, 1)) {
                    tx.relations.insert(relid as u32);
                }
            }
            Some(b'T') => {
                let count = be_i32(message, 1).unwrap_or(0).max(0) as usize;
                if let Some(tx) = current.as_mut() {
                    for i in 0..count {
                        if let Some(relid) = be_i32(message, 6 + 4 * i) {
                            tx.relations.insert(relid as u32);
                        }
                    }
                }
            }
            Some(b'C') => {
                if let Some(tx) = current.take() {
                    if !tx.relations.is_empty() {
                        done.push(tx);
                    }
                }
            }
            _ => {}
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(lsn: i64, micros: i64) -> Vec<u8> {
        let mut m = vec![b'B'];
        m.extend(lsn.to_be_bytes());
        m.extend(micros.to_be_bytes());
        m.extend(7i32.to_be_bytes());
        m
    }

    #[test]
    fn groups_pending_changes_by_transaction() {
        let mut insert = vec![b'I'];
        insert.extend(16384i32.to_be_bytes());
        insert.push(b'N');
        let mut truncate = vec![b'T'];
        truncate.extend(2i32.to_be_bytes());
        truncate.push(0);
        truncate.extend(1i32.to_be_bytes());
        truncate.extend(2i32.to_be_bytes());
        let commit = vec![b'C', 0];
        let messages = vec![
            begin(100, 5),
            insert,
            commit.clone(),
            begin(200, 6),
            commit.clone(), // empty: not pending
            begin(300, 7),
            truncate,
            commit,
        ];
        let pending = parse_pending(&messages);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].commit_lsn, Lsn(100));
        assert_eq!(pending[0].commit_micros, 5 + PG_EPOCH_MICROS);
        assert_eq!(pending[0].relations, HashSet::from([16384]));
        assert_eq!(pending[1].relations, HashSet::from([1, 2]));
    }
}
