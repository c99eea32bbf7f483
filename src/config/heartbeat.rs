//! `[heartbeat]`, validated: the dead-man's-switch ping that stops when freshwatch cannot page.

use std::time::Duration;

use super::alerts::parse_sink_url;
use super::raw;
use super::{ConfigError, Secret};

#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub url: Secret,
    pub interval: Duration,
    pub post: bool,
    pub timeout: Duration,
}

pub(super) fn validate_heartbeat(raw: raw::RawHeartbeat) -> Result<HeartbeatConfig, ConfigError> {
    parse_sink_url("heartbeat.url".into(), &raw.url)?;
    if raw.interval < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "heartbeat.interval",
            "must be at least 1s",
        ));
    }
    Ok(HeartbeatConfig {
        url: Secret::new(raw.url),
        interval: raw.interval,
        post: raw.method == raw::RawHeartbeatMethod::Post,
        timeout: raw.timeout,
    })
}
