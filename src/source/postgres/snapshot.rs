//! Consistent initial copies: a slot created with an exported snapshot, and `COPY` of each
//! table under that snapshot, streamed in chunks.

use futures::StreamExt;
use pgwire_replication::ReplicationClient;
use tokio_postgres::Client;

use super::connection::error_text;
use super::{ConnectionSettings, SourceError};
use crate::event::{quote_ident, Lsn, TableName};

/// A replication session holding an exported snapshot; the snapshot stays usable for
/// `SET TRANSACTION SNAPSHOT` until this is dropped.
pub struct ExportedSnapshot {
    _session: ReplicationClient,
    pub name: String,
    /// Transactions committed before this position are in the snapshot; later ones stream.
    pub consistent_point: Lsn,
}

/// A replication session of its own for commands on `slot`, and how its failures read:
/// `what` names the work.
async fn command_session(
    settings: &ConnectionSettings,
    slot: &str,
    what: String,
) -> Result<
    (
        ReplicationClient,
        impl Fn(pgwire_replication::PgWireError) -> SourceError,
    ),
    SourceError,
> {
    let target = settings.describe();
    let failed = move |e: pgwire_replication::PgWireError| SourceError::Replication {
        target: target.clone(),
        message: format!("{what}: {e}"),
    };
    let session = ReplicationClient::connect_gated(settings.replication_config(slot, "unused"))
        .await
        .map_err(&failed)?;
    Ok((session, failed))
}

/// Creates `slot` (or, with `temporary`, a throwaway slot) and exports its snapshot.
pub async fn create_slot_with_snapshot(
    settings: &ConnectionSettings,
    slot: &str,
    temporary: bool,
) -> Result<ExportedSnapshot, SourceError> {
    let what = format!("create replication slot {slot} with an exported snapshot");
    let (mut session, failed) = command_session(settings, slot, what).await?;
    // The unparenthesised form: the only one PostgreSQL 13 and 14 know, and still accepted
    // by 15 to 18 (which added `(SNAPSHOT 'export')`).
    let command = format!(
        "CREATE_REPLICATION_SLOT {} {}LOGICAL pgoutput EXPORT_SNAPSHOT",
        quote_ident(slot),
        if temporary { "TEMPORARY " } else { "" }
    );
    let rows = session.simple_query(&command).await.map_err(failed)?;
    let text = |i: usize| -> String {
        rows.first()
            .and_then(|row| row.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let consistent_point: Lsn =
        text(1)
            .parse()
            .map_err(|e: crate::event::ParseLsnError| SourceError::Replication {
                target: settings.describe(),
                message: e.to_string(),
            })?;
    tracing::info!(slot, temporary, %consistent_point, snapshot = %text(2), "replication slot created with exported snapshot");
    Ok(ExportedSnapshot {
        _session: session,
        name: text(2),
        consistent_point,
    })
}

/// Makes `slot` a failover slot (PostgreSQL 17+: the server syncs it to standbys that set
/// `sync_replication_slots`), through the replication protocol's ALTER_REPLICATION_SLOT.
pub async fn make_failover_slot(
    settings: &ConnectionSettings,
    slot: &str,
) -> Result<(), SourceError> {
    let what = format!("make replication slot {slot} a failover slot");
    let (mut session, failed) = command_session(settings, slot, what).await?;
    let command = format!(
        "ALTER_REPLICATION_SLOT {} (FAILOVER true)",
        quote_ident(slot)
    );
    session.simple_query(&command).await.map_err(failed)?;
    tracing::info!(
        slot,
        "replication slot is a failover slot: standbys with sync_replication_slots keep a copy"
    );
    Ok(())
}

/// Rows of one table, as PostgreSQL text values (`None` = NULL), in chunks.
pub type RowChunk = Vec<Vec<Option<String>>>;

/// Opens a transaction on `client` that sees exactly `snapshot`, with the same text
/// renderings the replication stream uses.
pub async fn begin_snapshot_transaction(
    client: &Client,
    snapshot: &str,
) -> Result<(), SourceError> {
    let sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'; \
         SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL timezone = 'UTC'; SET LOCAL intervalstyle = 'iso_8601'; \
         SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'",
        snapshot.replace('\'', "''")
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| SourceError::Query {
            context: format!("use exported snapshot {snapshot}"),
            source,
        })
}

/// Parses PostgreSQL's COPY text format, which may split rows across data messages.
struct CopyTextParser {
    width: usize,
    partial: Vec<u8>,
    rows: RowChunk,
}

impl CopyTextParser {
    fn new(width: usize) -> Self {
        CopyTextParser {
            width,
            partial: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds `data`; returns the chunks that filled up. An empty `data` flushes the rest.
    fn feed(&mut self, data: &[u8], chunk_rows: usize) -> Result<Vec<RowChunk>, String> {
        let mut full = Vec::new();
        self.partial.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = &self.partial[start..start + end];
            let row = parse_copy_line(line, self.width)?;
            self.rows.push(row);
            start += end + 1;
            if self.rows.len() >= chunk_rows {
                full.push(std::mem::take(&mut self.rows));
            }
        }
        self.partial.drain(..start);
        Ok(full)
    }

    fn finish(&mut self) -> Option<RowChunk> {
        (!self.rows.is_empty()).then(|| std::mem::take(&mut self.rows))
    }
}

/// Streams `columns` of `table` with `COPY ... TO STDOUT` (text format), handing chunks of
/// `chunk_rows` rows to `on_chunk` so a table never sits in memory whole. Returns the row count.
pub async fn copy_all_rows(
    client: &Client,
    table: &TableName,
    columns: &[String],
    chunk_rows: usize,
    mut on_chunk: impl AsyncFnMut(RowChunk) -> Result<(), SourceError>,
) -> Result<u64, SourceError> {
    let column_list = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "COPY (SELECT {column_list} FROM {}) TO STDOUT",
        table.quoted()
    );
    let context = format!("copy table {table}");
    let stream = client
        .copy_out(&sql)
        .await
        .map_err(|source| SourceError::Query {
            context: context.clone(),
            source,
        })?;
    futures::pin_mut!(stream);
    let mut parser = CopyTextParser::new(columns.len());
    let mut copied = 0u64;
    let copy_error = |message: String| SourceError::Replication {
        target: table.to_string(),
        message: format!("{context}: {message}"),
    };
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| copy_error(error_text(&e)))?;
        for chunk in parser.feed(&data, chunk_rows).map_err(copy_error)? {
            copied += chunk.len() as u64;
            on_chunk(chunk).await?;
        }
    }
    if !parser.partial.is_empty() {
        return Err(copy_error(
            "COPY output ended in the middle of a row".into(),
        ));
    }
    if let Some(chunk) = parser.finish() {
        copied += chunk.len() as u64;
        on_chunk(chunk).await?;
    }
    Ok(copied)
}

fn parse_copy_line(line: &[u8], width: usize) -> Result<Vec<Option<String>>, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
    if fields.len() != width {
        return Err(format!(
            "a COPY row has {} fields, expected {width}",
            fields.len()
        ));
    }
    fields.into_iter().map(parse_copy_field).collect()
}

/// One field: `\N` is NULL; backslash escapes as documented for COPY's text format.
fn parse_copy_field(field: &[u8]) -> Result<Option<String>, String> {
    if field == b"\\N" {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] != b'\\' || i + 1 == field.len() {
            out.push(field[i]);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let digits = field[i..]
                    .iter()
                    .take(2)
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count();
                let text = std::str::from_utf8(&field[i..i + digits]).unwrap_or("0");
                out.push(u8::from_str_radix(text, 16).unwrap_or(0));
                i += digits;
            }
            b'0'..=b'7' => {
                let digits = 1 + field[i..]
                    .iter()
                    .take(2)
                    .take_while(|b| (b'0'..=b'7').contains(b))
                    .count();
                let text = std::str::from_utf8(&field[i - 1..i - 1 + digits]).unwrap_or("0");
                out.push(u8::from_str_radix(text, 8).unwrap_or(0));
                i += digits - 1;
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| "a COPY field is not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nulls_and_escapes() {
        let row = parse_copy_line(b"1\t\\N\ta\\tb\\nc\\\\d\t\\101\t\\x42", 5).unwrap();
        assert_eq!(
            row,
            vec![
                Some("1".into()),
                None,
                Some("a\tb\nc\\d".into()),
                Some("A".into()),
                Some("B".into())
            ]
        );
        assert!(parse_copy_line(b"1\t2", 3).is_err());
    }

    #[test]
    fn rows_split_across_messages_are_joined() {
        let mut parser = CopyTextParser::new(2);
        assert!(parser.feed(b"1\tx\n2\t", 10).unwrap().is_empty());
        assert!(parser.feed(b"y\n", 10).unwrap().is_empty());
        let rows = parser.finish().unwrap();
        assert_eq!(rows[1], vec![Some("2".into()), Some("y".into())]);
        let mut parser = CopyTextParser::new(1);
        let chunks = parser.feed(b"a\nb\nc\n", 2).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(parser.finish().unwrap().len(), 1);
    }
}
