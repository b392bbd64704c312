//! Benchmark helper (not part of the product): drains a logical replication slot through
//! pgdelta's own source stack (replication client, pgoutput decoder, transaction assembly)
//! and discards every decoded change. It stops at a caught-up marker written right after the
//! stream starts, like `pgdelta pipeline start --exit-when-caught-up` does, and prints one
//! JSON line: `{"rows":..,"transactions":..,"seconds":..,"start_lsn":..,"end_lsn":..}`.
//!
//! Usage: pgdelta-decode-bench --config pgdelta.toml --pipeline NAME --slot SLOT
//! The connection and publication come from the pipeline; the slot is given separately so
//! the benchmark can read its own copy of the changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use pgdelta::config::Config;
use pgdelta::source::postgres::{self as pg, ChangeStream, ConnectionSettings, StreamItem};

const MARKER_PREFIX: &str = "pgdelta.decode_bench";

#[derive(Parser)]
struct Args {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    pipeline: String,
    /// An existing pgoutput slot to drain (its confirmed position is the start).
    #[arg(long)]
    slot: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let resolved = config.pipeline(&args.pipeline)?;
    let settings = ConnectionSettings::from_config(&config)?;
    let client = settings.connect().await?;
    let Some(start) = pg::slot_position(&client, &args.slot).await? else {
        bail!("replication slot {} does not exist", args.slot);
    };
    let started = Instant::now();
    let mut stream = ChangeStream::start(
        &settings,
        &args.slot,
        &resolved.publication,
        start,
        HashMap::new(),
        pg::PartPolicy {
            events_per_part: resolved.large_transaction_events,
            whole: Default::default(),
        },
        pg::server_version_num(&client).await? >= pg::MESSAGES_SINCE,
    )
    .await
    .context("start the replication stream")?;
    let token = format!(
        "{}:{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    pg::emit_marker(&client, MARKER_PREFIX, &token).await?;
    let (mut rows, mut transactions, mut end_lsn) = (0usize, 0usize, start);
    loop {
        match stream.next().await? {
            StreamItem::Transaction(tx) => {
                transactions += 1;
                rows += tx.events.len();
                end_lsn = tx.end_lsn;
                drop(tx);
            }
            StreamItem::Marker {
                prefix, content, ..
            } if prefix == MARKER_PREFIX && content == token => break,
            StreamItem::TransactionPart(part) => rows += part.events.len(),
            StreamItem::Marker { .. } | StreamItem::Idle { .. } => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stream.confirm(end_lsn);
    stream.shutdown().await;
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "transactions": transactions,
            "seconds": seconds,
            "start_lsn": start.to_string(),
            "end_lsn": end_lsn.to_string(),
        })
    );
    Ok(())
}
