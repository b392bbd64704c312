//! The replication slot as a [`ChangeSource`]: streams committed transactions, reconnects
//! with backoff when the server goes away, and ends a `--exit-when-caught-up` run at a
//! logical message it wrote itself (or, on PostgreSQL 13, whose pgoutput does not stream
//! messages, or on a standby, which cannot write one, once the server reports it has sent
//! everything past that message or the WAL it had replayed).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{
    backoff_delay, current_wal_lsn, emit_marker, in_recovery, server_version_num, slot_position,
    ChangeStream, ConnectionSettings, PartPolicy, SourceError, StreamItem, MESSAGES_SINCE,
};
use crate::event::{Lsn, Origin, TableName};
use crate::source::{ChangeSource, Progress, SourceItem};

const MARKER_PREFIX: &str = "pgdelta.caught_up";

/// How long [`ChangeSource::close`] waits for the server to confirm the final position.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// What the stream needs to start: which slot and publication, and each table's key.
pub struct SlotSettings {
    pub slot: String,
    pub publication: String,
    /// Key columns per table where they are not the primary key.
    pub keys: HashMap<TableName, Vec<String>>,
    /// Transactions with more changes than this are handed over in parts (0: never).
    pub large_transaction_events: usize,
    pub exit_when_caught_up: bool,
}

/// A replication slot read by one pipeline.
pub struct SlotSource {
    connection: ConnectionSettings,
    settings: SlotSettings,
    client: Client,
    stream: Option<ChangeStream>,
    whole: std::collections::HashSet<u32>,
    /// The token of this run's caught-up marker, and where it was written (once it was).
    marker: Option<(String, Option<Lsn>)>,
    queue: VecDeque<SourceItem>,
    failures: usize,
    retry_at: Option<Instant>,
    /// Delivered but not confirmed yet: the server's idle position must not be confirmed.
    unconfirmed: Option<Lsn>,
    confirmed: Option<Lsn>,
}

impl SlotSource {
    pub fn new(connection: ConnectionSettings, client: Client, settings: SlotSettings) -> Self {
        let marker = settings.exit_when_caught_up.then(|| {
            let token = format!(
                "{}:{}:{}",
                settings.slot,
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            );
            (token, None)
        });
        SlotSource {
            connection,
            settings,
            client,
            stream: None,
            whole: Default::default(),
            marker,
            queue: VecDeque::new(),
            failures: 0,
            retry_at: None,
            unconfirmed: None,
            confirmed: None,
        }
    }

    /// Starts the replication stream at the slot's confirmed position (after the backoff
    /// delay of the last failure) and writes the caught-up marker once.
    async fn connect(&mut self) -> Result<(), SourceError> {
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at.into()).await;
        }
        if self.client.is_closed() {
            self.client = self.connection.connect_without_retry().await?;
        }
        let start = slot_position(&self.client, &self.settings.slot)
            .await?
            .ok_or_else(|| SourceError::SlotMissing {
                slot: self.settings.slot.clone(),
            })?;
        let parts = PartPolicy {
            events_per_part: self.settings.large_transaction_events,
            whole: self.whole.clone(),
        };
        let messages = server_version_num(&self.client).await? >= MESSAGES_SINCE;
        let stream = ChangeStream::start(
            &self.connection,
            &self.settings.slot,
            &self.settings.publication,
            start,
            self.settings.keys.clone(),
            parts,
            messages,
        )
        .await?;
        self.stream = Some(stream);
        if let Some((token, written @ None)) = self.marker.as_mut() {
            // A standby cannot write a marker; the end of what it replayed serves as one.
            let lsn = match in_recovery(&self.client).await? {
                true => current_wal_lsn(&self.client).await?,
                false => emit_marker(&self.client, MARKER_PREFIX, token).await?,
            };
            tracing::info!(target_lsn = %lsn, "will exit once caught up to this position");
            *written = Some(lsn);
        }
        Ok(())
    }

    /// A failure to reach the server: retried after a backoff delay, unless it is permanent
    /// or the configured attempts are used up.
    async fn interrupted(&mut self, error: SourceError) -> Result<SourceItem, SourceError> {
        self.close_stream().await;
        self.failures += 1;
        if !error.is_transient() || self.failures >= self.connection.attempts() {
            return Err(error);
        }
        let delay = backoff_delay(self.failures);
        tracing::warn!(%error, attempt = self.failures, retry_in = ?delay, "source unavailable; reconnecting");
        self.retry_at = Some(Instant::now() + delay);
        Ok(SourceItem::Down(error.to_string()))
    }

    async fn close_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.shutdown().await;
        }
    }

    fn is_our_marker(&self, prefix: &str, content: &str) -> bool {
        prefix == MARKER_PREFIX
            && self
                .marker
                .as_ref()
                .is_some_and(|(token, _)| token == content)
    }

    /// Checks that the server confirmed the final position, giving it a moment.
    async fn wait_for_confirmation(&self) {
        let Some(lsn) = self.confirmed else {
            return;
        };
        let deadline = Instant::now() + CONFIRM_WAIT;
        while Instant::now() < deadline {
            match slot_position(&self.client, &self.settings.slot).await {
                Ok(Some(confirmed)) if confirmed >= lsn => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => return,
            }
        }
        tracing::warn!(%lsn, "the server has not confirmed the final position yet; a restart will skip what Delta already holds");
    }
}

/// The server sent everything up to `wal_end` with no transaction open, and that is past
/// the written marker (`pg_logical_emit_message` returns the end of its record): every
/// transaction committed before the marker was delivered. The only sign on PostgreSQL 13.
fn sent_past(marker: &Option<(String, Option<Lsn>)>, wal_end: Lsn) -> bool {
    marker
        .as_ref()
        .and_then(|(_, written)| *written)
        .is_some_and(|marker| wal_end >= marker)
}

#[async_trait::async_trait]
impl ChangeSource for SlotSource {
    type Error = SourceError;

    async fn next(&mut self) -> Result<SourceItem, SourceError> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(item);
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.connect().await {
                    Ok(()) => {
                        self.failures = 0;
                        self.retry_at = None;
                        self.queue.extend([SourceItem::Rewound, SourceItem::Up]);
                        continue;
                    }
                    Err(error) => return self.interrupted(error).await,
                }
            };
            match stream.next().await {
                Ok(StreamItem::Transaction(transaction)) => {
                    self.unconfirmed = Some(transaction.end_lsn);
                    let origin = Origin::Wal(transaction.end_lsn);
                    return Ok(SourceItem::Changes {
                        transaction,
                        origin,
                    });
                }
                Ok(StreamItem::TransactionPart(part)) => {
                    self.unconfirmed = Some(part.final_lsn);
                    return Ok(SourceItem::Part(part));
                }
                Ok(StreamItem::Idle { wal_end }) if sent_past(&self.marker, wal_end) => {
                    tracing::info!(%wal_end, "caught up");
                    return Ok(SourceItem::CaughtUp);
                }
                // Nothing pending: let the server recycle WAL that held no changes for us
                // (and finish a shutdown without waiting on us).
                Ok(StreamItem::Idle { wal_end }) if self.unconfirmed.is_none() => {
                    stream.confirm(wal_end)
                }
                Ok(StreamItem::Idle { .. }) => {}
                Ok(StreamItem::Marker {
                    prefix,
                    content,
                    lsn,
                }) => {
                    if self.is_our_marker(&prefix, &content) {
                        tracing::info!(%lsn, "caught up");
                        return Ok(SourceItem::CaughtUp);
                    }
                }
                Err(error) if error.is_transient() => return self.interrupted(error).await,
                Err(error) => return Err(error),
            }
        }
    }

    fn confirm(&mut self, progress: &Progress) {
        let Some(lsn) = progress.lsn else {
            return;
        };
        if let Some(stream) = &self.stream {
            stream.confirm(lsn);
        }
        self.confirmed = Some(self.confirmed.map_or(lsn, |c| c.max(lsn)));
        if self.unconfirmed.is_some_and(|pending| pending <= lsn) {
            self.unconfirmed = None;
        }
    }

    async fn receive_whole(&mut self, xid: u32) -> Result<(), SourceError> {
        self.whole.insert(xid);
        self.rewind().await
    }

    async fn rewind(&mut self) -> Result<(), SourceError> {
        self.close_stream().await;
        self.unconfirmed = None;
        Ok(())
    }

    async fn close(mut self) {
        // A stopping stream reports the final position before it ends (instead of at the
        // next status interval), so the check below normally passes at once.
        self.close_stream().await;
        self.wait_for_confirmation().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_sent_past_the_marker_only_once_it_reports_the_marker_s_end() {
        let unwritten = Some(("token".to_string(), None));
        assert!(!sent_past(&unwritten, Lsn(u64::MAX)));
        assert!(!sent_past(&None, Lsn(u64::MAX)));
        let written = Some(("token".to_string(), Some(Lsn(100))));
        assert!(!sent_past(&written, Lsn(99)));
        assert!(sent_past(&written, Lsn(100)));
        assert!(sent_past(&written, Lsn(180)));
    }
}
