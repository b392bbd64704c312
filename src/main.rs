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

/// mimalloc instead of glibc's allocator: decoding allocates per row and per value, and
/// with glibc that was a third of the CPU (10M inserts: 271k against 177k rows/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    give_freed_memory_back_at_once();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime")
        .block_on(run())
}

/// `mi_option_purge_delay` in mimalloc.h (v3, the version libmimalloc-sys 0.1.49 builds),
/// which libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc (v3) returns freed pages to the OS a second later, and batches
/// written while compaction runs beside them kept a 10M-row stream at 600 MB; at once, it
/// peaked at 217–301 MB (240 MB with glibc). `MIMALLOC_PURGE_DELAY` (or its old name
/// `MIMALLOC_RESET_DELAY`) still wins when set.
fn give_freed_memory_back_at_once() {
    let set_by_user = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !set_by_user {
        // SAFETY: sets one of mimalloc's options; any value is valid for this one.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
}

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
