//! Retry pacing and the transient/permanent verdict on one delivery attempt, shared by every
//! sink.

use std::time::Duration;

/// The longest backoff between two attempts, before jitter.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The longest `Retry-After` honoured: no longer than our own longest backoff. One sink queue
/// carries every key, so a receiver that asks for a day (or answers `Retry-After: 99999999999`)
/// would otherwise hold every page behind it for that long; past a minute we try again anyway.
pub const MAX_RETRY_AFTER: Duration = MAX_BACKOFF;

/// Retry pacing for transient failures: 1s doubling to [`MAX_BACKOFF`], with ±20% jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { attempt: 0 }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt; `retry_after` (a 429's or 503's header) wins when
    /// longer, up to [`MAX_RETRY_AFTER`]: a sink cannot hold its queue for longer than our own
    /// backoff would, and the deadline arithmetic cannot overflow.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let retry_after = retry_after.map(|wait| wait.min(MAX_RETRY_AFTER));
        let longest_ms = MAX_BACKOFF.as_millis() as u64;
        let base_ms = 1000u64
            .saturating_mul(1 << self.attempt.min(6))
            .min(longest_ms);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = jitter_fraction();
        let delay = Duration::from_millis((base_ms as f64 * (0.8 + 0.4 * jitter)) as u64);
        match retry_after {
            Some(wait) if wait > delay => wait,
            _ => delay,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// A number in [0, 1) that differs between calls and processes (no rand dependency needed for
/// jitter).
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() % 10_000) as f64 / 10_000.0
}

/// How one delivery attempt went.
#[derive(Debug)]
pub enum Delivery {
    Accepted,
    /// Worth retrying; `retry_after` from a 429 or 503.
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The sink refused the request; retrying will not help.
    Permanent {
        error: String,
    },
}

/// Classifies an HTTP answer the way every sink does; `now_ms` (the sink's clock) reads a
/// `Retry-After` date.
pub fn classify_response(
    result: Result<reqwest::Response, reqwest::Error>,
    now_ms: i64,
) -> Delivery {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            // The URL may carry a secret (a Slack webhook token, `?token=`): never log it.
            return Delivery::Transient {
                error: error.without_url().to_string(),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Delivery::Accepted;
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, now_ms));
    let error = format!("HTTP {status}");
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Delivery::Transient { error, retry_after }
    } else {
        Delivery::Permanent { error }
    }
}

/// `Retry-After` is delay-seconds or an HTTP-date (RFC 9110); a date in the past means now.
pub(super) fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait_ms = at.timestamp_millis() - now_ms;
    Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
}
