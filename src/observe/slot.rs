//! Watches how much WAL the server keeps for the pipeline's replication slot.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::observe::Observer;
use crate::source::postgres::{slot_state, ConnectionSettings};

/// Every `every`, sets `postgres_cdc_replication_slot_retained_wal_bytes`, `..._safe_wal_size_bytes`
/// and `..._wal_status` from `pg_replication_slots`, on a connection of its own. Failures are logged at debug level
/// (the replication stream reports the source's health) and retried on the next tick.
pub fn spawn_slot_monitor(
    settings: ConnectionSettings,
    slot: String,
    observer: Arc<Observer>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client: Option<Client> = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if client.as_ref().is_none_or(Client::is_closed) {
                client = settings.connect_once().await.ok();
            }
            let Some(connected) = &client else { continue };
            match slot_state(connected, &slot).await {
                Ok(Some(state)) => observer.set_slot_wal(&slot, &state),
                Ok(None) => tracing::debug!(%slot, "replication slot not found"),
                Err(error) => {
                    tracing::debug!(%error, "cannot read the slot's retained WAL");
                    client = None;
                }
            }
        }
    })
}
