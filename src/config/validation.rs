//! `[pipelines.<name>.validation]`: periodic validation and lag thresholds.

use serde::Deserialize;

/// `[pipelines.<name>.validation]` in the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Run every check this often inside `pipeline start`; off when absent.
    #[serde(default)]
    pub interval_secs: Option<u64>,
    #[serde(default)]
    pub max_lag_seconds: Option<f64>,
    #[serde(default)]
    pub max_lag_bytes: Option<u64>,
    /// Rows per checksum chunk.
    #[serde(default)]
    pub chunk_rows: Option<u64>,
}
