mod cli;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// pgdelta's own logs at info, others' warnings and errors; but not the delta kernel's
/// "No files in log segment" error (it is how opening a table not created yet goes) nor
/// the MERGE's missing-metric warning, nor the commit's note that it checks for conflicts
/// with another writer (background compaction is one), which a new user would read as failures.
/// `PGDELTA_LOG=debug` (or any filter) shows them again.
const DEFAULT_LOG: &str = "warn,pgdelta=info,buoyant_kernel::snapshot::builder=off,\
     deltalake_core::operations::merge=error,deltalake_core::kernel::transaction=error";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGDELTA_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once (many messages already include their cause).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
