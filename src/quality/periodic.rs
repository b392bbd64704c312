//! Validation on a timer inside a running pipeline, reporting through a [`ValidationSink`]
//! (the CLI gives one that logs and has the observer export `cdc_validation_mismatches` and
//! `cdc_validation_last_success_timestamp`).

use std::future::Future;
use std::time::Duration;

use super::{validate, ValidateOptions, ValidationReport};
use crate::config::Config;

/// Receives every periodic validation's report.
pub trait ValidationSink: Send + Sync {
    fn record(&self, report: &ValidationReport);
    /// The validation could not run at all (e.g. the source is unreachable).
    fn record_error(&self, pipeline: &str, error: &super::QualityError) {
        tracing::warn!(pipeline, %error, "periodic validation could not run");
    }
}

/// Logs each report: a warning per failed check, an info line when everything passed.
pub struct LogSink;

impl ValidationSink for LogSink {
    fn record(&self, report: &ValidationReport) {
        if report.passed() {
            tracing::info!(pipeline = %report.pipeline, checks = report.results.len(), "validation passed");
            return;
        }
        for result in report
            .results
            .iter()
            .filter(|r| r.status != super::Status::Pass)
        {
            tracing::warn!(
                pipeline = %report.pipeline,
                table = result.table.as_deref().unwrap_or("-"),
                check = result.check.name(),
                status = ?result.status,
                summary = %result.summary,
                "validation"
            );
        }
    }
}

/// Validates `pipeline` every `interval` (first run after one interval) until `shutdown`
/// completes.
pub async fn run_periodic(
    config: Config,
    pipeline: String,
    interval: Duration,
    options: ValidateOptions,
    sink: &dyn ValidationSink,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = &mut shutdown => return,
            outcome = validate(&config, &pipeline, &options) => match outcome {
                Ok(report) => sink.record(&report),
                Err(error) => sink.record_error(&pipeline, &error),
            },
        }
    }
}
