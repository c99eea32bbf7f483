//! `[state]` and `[ha]`, validated: where feed state survives restarts, and how replicas share
//! one Redis.

use std::path::PathBuf;
use std::time::Duration;

use super::raw;
use super::{ConfigError, Secret};

#[derive(Debug, Clone)]
pub enum StateBackend {
    Redis { url: Secret },
    RedisCluster { nodes: Vec<Secret> },
    Embedded { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub flush_interval: Duration,
    pub key_prefix: String,
    pub down_grace: Duration,
    /// How long a reload waits for the state store before it is refused.
    pub open_timeout: Duration,
}

/// `[ha]`, validated. Used only with Redis state.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub lease: Duration,
    pub reload_interval: Duration,
}

pub(super) fn validate_state(raw: raw::RawState) -> Result<StateConfig, ConfigError> {
    if raw.redis_url.is_some() && !raw.redis_cluster_nodes.is_empty() {
        return Err(ConfigError::invalid(
            "state.redis_cluster_nodes",
            "set either redis_url or redis_cluster_nodes, not both",
        ));
    }
    validate_cluster_nodes(&raw.redis_cluster_nodes)?;
    let backend = state_backend(raw.redis_url, raw.redis_cluster_nodes, raw.path)?;
    if raw.flush_interval < Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "state.flush_interval",
            "must be at least 10ms",
        ));
    }
    if raw.open_timeout < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "state.open_timeout",
            "must be at least 100ms",
        ));
    }
    if raw.key_prefix.is_empty() || raw.key_prefix.contains(['{', '}']) {
        return Err(ConfigError::invalid(
            "state.key_prefix",
            "must be non-empty and contain no braces",
        ));
    }
    Ok(StateConfig {
        backend,
        flush_interval: raw.flush_interval,
        key_prefix: raw.key_prefix,
        down_grace: raw.down_grace,
        open_timeout: raw.open_timeout,
    })
}

/// `state.redis_cluster_nodes`: each a `redis://` or `rediss://` URL.
fn validate_cluster_nodes(nodes: &[String]) -> Result<(), ConfigError> {
    for (index, node) in nodes.iter().enumerate() {
        let parsed = reqwest::Url::parse(node).map_err(|error| {
            ConfigError::invalid(
                format!("state.redis_cluster_nodes[{index}]"),
                format!("not a URL: {error}"),
            )
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(ConfigError::invalid(
                format!("state.redis_cluster_nodes[{index}]"),
                "scheme must be redis:// or rediss://",
            ));
        }
    }
    Ok(())
}

/// Redis Cluster when nodes are listed, else Redis when a URL is set, else the embedded store.
fn state_backend(
    redis_url: Option<String>,
    cluster_nodes: Vec<String>,
    path: PathBuf,
) -> Result<StateBackend, ConfigError> {
    match redis_url {
        None if !cluster_nodes.is_empty() => Ok(StateBackend::RedisCluster {
            nodes: cluster_nodes.into_iter().map(Secret::new).collect(),
        }),
        Some(url) => {
            let parsed = reqwest::Url::parse(&url).map_err(|error| {
                ConfigError::invalid("state.redis_url", format!("not a URL: {error}"))
            })?;
            if !matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                return Err(ConfigError::invalid(
                    "state.redis_url",
                    "scheme must be redis:// or rediss://",
                ));
            }
            Ok(StateBackend::Redis {
                url: Secret::new(url),
            })
        }
        None => {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid("state.path", "must not be empty"));
            }
            Ok(StateBackend::Embedded { path })
        }
    }
}

pub(super) fn validate_ha(raw: raw::RawHa) -> Result<HaConfig, ConfigError> {
    if raw.lease < Duration::from_secs(3) {
        return Err(ConfigError::invalid("ha.lease", "must be at least 3s"));
    }
    if raw.reload_interval < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "ha.reload_interval",
            "must be at least 100ms",
        ));
    }
    Ok(HaConfig {
        lease: raw.lease,
        reload_interval: raw.reload_interval,
    })
}
