//! `[evaluation]`, validated: how often feeds are judged, and when freshwatch admits it cannot
//! judge them.

use std::time::Duration;

use super::raw;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct EvaluationConfig {
    pub interval: Duration,
    pub max_future_skew: Duration,
    pub source_grace: Duration,
    pub catchup_tolerance: u64,
    /// `None`: each feed's `critical_after`.
    pub blind_after: Option<Duration>,
    pub recovery_grace: Duration,
    /// More feeds than this blind for reasons of their own at once page one roll-up.
    pub blind_rollup_after: usize,
}

pub(super) fn validate_evaluation(
    raw: raw::RawEvaluation,
) -> Result<EvaluationConfig, ConfigError> {
    if raw.interval < Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "evaluation.interval",
            "must be at least 10ms",
        ));
    }
    if raw.blind_rollup_after == 0 {
        return Err(ConfigError::invalid(
            "evaluation.blind_rollup_after",
            "must be at least 1 (one blind feed pages on its own)",
        ));
    }
    Ok(EvaluationConfig {
        interval: raw.interval,
        max_future_skew: raw.max_future_skew,
        source_grace: raw.source_grace,
        catchup_tolerance: raw.catchup_tolerance,
        blind_after: raw.blind_after,
        recovery_grace: raw.recovery_grace,
        blind_rollup_after: raw.blind_rollup_after,
    })
}
