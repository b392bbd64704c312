//! Progress of a long read (the initial snapshot, `validate`): rows done of estimated, rate,
//! ETA.
//!
//! On a terminal it keeps one live line on stderr; otherwise it logs a line through
//! `tracing` every `log_every`. Optionally it also feeds the snapshot gauges of an
//! [`Observer`].

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::TableName;
use crate::observe::Observer;

const TERMINAL_REDRAW: Duration = Duration::from_millis(200);
const DEFAULT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Where progress lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressOutput {
    /// Redraw one line on stderr.
    Terminal,
    /// `tracing::info!` lines.
    Log,
}

impl ProgressOutput {
    /// A live line when stderr is a terminal, log lines otherwise.
    pub fn detect() -> ProgressOutput {
        if std::io::stderr().is_terminal() {
            ProgressOutput::Terminal
        } else {
            ProgressOutput::Log
        }
    }
}

/// Reports the progress of copying one table.
pub struct Progress {
    table: TableName,
    estimated: Option<u64>,
    copied: u64,
    started: Instant,
    last_shown: Option<Instant>,
    output: ProgressOutput,
    log_every: Duration,
    observer: Option<Arc<Observer>>,
    /// What the log lines call the work ("snapshot").
    activity: &'static str,
}

impl Progress {
    /// `estimated` is the expected row count (e.g. `pg_class.reltuples`), when known.
    pub fn new(table: TableName, estimated: Option<u64>) -> Progress {
        Progress {
            table,
            estimated,
            copied: 0,
            started: Instant::now(),
            last_shown: None,
            output: ProgressOutput::detect(),
            log_every: DEFAULT_LOG_EVERY,
            observer: None,
            activity: "snapshot",
        }
    }

    /// Also set `postgres_cdc_snapshot_rows_copied/_estimated` for this table.
    pub fn with_observer(mut self, observer: Arc<Observer>) -> Progress {
        observer.set_snapshot_progress(&self.table, 0, self.estimated);
        self.observer = Some(observer);
        self
    }

    pub fn with_output(mut self, output: ProgressOutput) -> Progress {
        self.output = output;
        self
    }

    /// What the log lines call the work, e.g. "validate".
    pub fn with_activity(mut self, activity: &'static str) -> Progress {
        self.activity = activity;
        self
    }

    pub fn with_log_every(mut self, every: Duration) -> Progress {
        self.log_every = every;
        self
    }

    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// `rows` more rows were copied.
    pub fn advance(&mut self, rows: u64) {
        self.copied += rows;
        if let Some(observer) = &self.observer {
            observer.set_snapshot_progress(&self.table, self.copied, self.estimated);
        }
        let interval = match self.output {
            ProgressOutput::Terminal => TERMINAL_REDRAW,
            ProgressOutput::Log => self.log_every,
        };
        let now = Instant::now();
        let due = self
            .last_shown
            .is_none_or(|shown| now.duration_since(shown) >= interval);
        if due {
            self.last_shown = Some(now);
            self.show(false);
        }
    }

    /// The copy is complete: prints the final line.
    pub fn finish(mut self) {
        if self.estimated.is_some_and(|e| e < self.copied) || self.estimated.is_none() {
            self.estimated = Some(self.copied);
        }
        if let Some(observer) = &self.observer {
            observer.set_snapshot_progress(&self.table, self.copied, self.estimated);
        }
        self.show(true);
    }

    fn show(&self, done: bool) {
        let line = format_progress(
            &self.table.to_string(),
            self.copied,
            self.estimated,
            self.started.elapsed(),
        );
        match self.output {
            ProgressOutput::Terminal => {
                let mut stderr = std::io::stderr().lock();
                let end = if done { "\n" } else { "" };
                let _ = write!(stderr, "\r\x1b[2K{line}{end}");
                let _ = stderr.flush();
            }
            ProgressOutput::Log if done => tracing::info!("{} done: {line}", self.activity),
            ProgressOutput::Log => tracing::info!("{}: {line}", self.activity),
        }
    }
}

/// `public.orders: 12,345 of ~100,000 rows (12.3%), 5,432 rows/s, ETA 16s`
pub fn format_progress(
    label: &str,
    copied: u64,
    estimated: Option<u64>,
    elapsed: Duration,
) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        copied as f64 / seconds
    } else {
        0.0
    };
    let mut line = format!("{label}: {} ", group_thousands(copied));
    match estimated {
        Some(total) if total > 0 => {
            let percent = (copied as f64 / total as f64 * 100.0).min(100.0);
            line.push_str(&format!(
                "of ~{} rows ({percent:.1}%)",
                group_thousands(total)
            ));
        }
        _ => line.push_str("rows"),
    }
    line.push_str(&format!(
        ", {} rows/s",
        group_thousands(rate.round() as u64)
    ));
    if let Some(total) = estimated {
        let remaining = total.saturating_sub(copied);
        let eta = match (remaining, rate > 0.0) {
            (0, _) => "ETA 0s".to_string(),
            (_, true) => format!(
                "ETA {}",
                format_duration(Duration::from_secs_f64(remaining as f64 / rate))
            ),
            (_, false) => "ETA unknown".to_string(),
        };
        line.push_str(&format!(", {eta}"));
    }
    line
}

/// `12,345,678`
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `45s`, `3m05s`, `2h03m`
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs_f64().ceil() as u64;
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds:02}s"),
        _ => format!("{hours}h{minutes:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_count_percentage_rate_and_eta() {
        let line = format_progress(
            "public.orders",
            12_345,
            Some(100_000),
            Duration::from_secs(2),
        );
        assert_eq!(
            line,
            "public.orders: 12,345 of ~100,000 rows (12.3%), 6,173 rows/s, ETA 15s"
        );
    }

    #[test]
    fn without_an_estimate_shows_count_and_rate_only() {
        let line = format_progress("public.t", 1_500, None, Duration::from_secs(3));
        assert_eq!(line, "public.t: 1,500 rows, 500 rows/s");
    }

    #[test]
    fn handles_the_start_and_estimates_that_were_too_low() {
        let start = format_progress("t", 0, Some(10), Duration::ZERO);
        assert_eq!(start, "t: 0 of ~10 rows (0.0%), 0 rows/s, ETA unknown");
        let over = format_progress("t", 20, Some(10), Duration::from_secs(1));
        assert_eq!(over, "t: 20 of ~10 rows (100.0%), 20 rows/s, ETA 0s");
    }

    #[test]
    fn groups_thousands_and_formats_durations() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(12_345_678), "12,345,678");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(7_380)), "2h03m");
    }

    #[test]
    fn feeds_the_snapshot_gauges() {
        let config = crate::config::Config::from_toml(
            "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.p]\ntables = [\"public.t\"]\n",
            std::path::Path::new("t.toml"),
            Vec::new(),
        )
        .unwrap();
        let observer = Arc::new(Observer::new(&config.pipeline("p").unwrap()));
        let table: TableName = "public.t".parse().unwrap();
        let mut progress = Progress::new(table, Some(10))
            .with_output(ProgressOutput::Log)
            .with_observer(observer.clone());
        progress.advance(4);
        progress.advance(3);
        assert_eq!(progress.copied(), 7);
        progress.finish();
        let text = observer.encode_metrics();
        assert!(
            text.contains("postgres_cdc_snapshot_rows_copied{pipeline=\"p\",table=\"public.t\"} 7"),
            "{text}"
        );
        assert!(
            text.contains(
                "postgres_cdc_snapshot_rows_estimated{pipeline=\"p\",table=\"public.t\"} 10"
            ),
            "{text}"
        );
    }
}
