//! The human-readable validation table.

use super::{Status, ValidationReport};

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::NotComparable => "NOT COMPARABLE",
        Status::Error => "ERROR",
    }
}

/// One line per check: table, check, status, summary; then an overall verdict.
pub fn render_table(report: &ValidationReport) -> String {
    let mut out = format!("{:<28} {:<9} {:<15} DETAILS\n", "TABLE", "CHECK", "STATUS");
    for result in &report.results {
        out.push_str(&format!(
            "{:<28} {:<9} {:<15} {}\n",
            result.table.as_deref().unwrap_or("(pipeline)"),
            result.check.name(),
            status_word(result.status),
            result.summary
        ));
    }
    let verdict = match report.exit_code() {
        0 => "all checks passed",
        2 => "no differences found, but some results are not comparable yet",
        _ => "validation FAILED",
    };
    out.push_str(&format!("pipeline {}: {verdict}\n", report.pipeline));
    out
}
