//! `[metrics]`, validated: how many keys a feed exports per key before only its alerting keys
//! are.

use super::raw;

#[derive(Debug, Clone, Copy)]
pub struct MetricsConfig {
    /// A feed with more keys than this exports per key only the keys that are not `ok`.
    pub max_key_series: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        validate_metrics(raw::RawMetrics::default())
    }
}

/// Any value is valid: 0 exports the per-feed aggregates and the alerting keys only.
pub(super) fn validate_metrics(raw: raw::RawMetrics) -> MetricsConfig {
    MetricsConfig {
        max_key_series: raw.max_key_series,
    }
}
