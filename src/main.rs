mod cli;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// pgdelta's own logs at info, others' warnings and errors; but not the delta kernel's
/// "No files in log segment" error (it is how opening a table not created yet goes) nor
/// the MERGE's missing-metric warning, nor the commit's note that it checks for conflicts
/// with another writer (background compaction is one) and its error when it lost that race
/// (pgdelta retries it and says so), which a new user would read as failures.
/// `PGDELTA_LOG=debug` (or any filter) shows them again.
const DEFAULT_LOG: &str = "warn,pgdelta=info,buoyant_kernel::snapshot::builder=off,\
     deltalake_core::operations::merge=error,deltalake_core::kernel::transaction=off";

fn main() -> std::process::ExitCode {
    bound_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime")
        .block_on(run())
}

/// glibc gives threads that allocate at the same time arenas of their own (up to 8 per
/// core); with the runtime's worker and blocking threads, freed memory stays spread over
/// many arenas and the process grew with every Delta commit (a 10M-row stream: 382 MB peak,
/// 285 MB with two arenas). `MALLOC_ARENA_MAX` still wins when set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called before any other thread exists; mallopt only sets a malloc parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}

async fn run() -> std::process::ExitCode {
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
