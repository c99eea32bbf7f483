//! Configuration: one TOML file, read once at start.
//!
//! [`load`] reads the file, replaces `${VAR}` from the environment, deserializes the
//! [`raw::RawConfig`] and validates it into the typed [`Config`] the rest of the crate uses. Every
//! error names the key path and the reason, e.g.
//! `feed[2].critical_after: must be greater than warn_after`.
//!
//! # Layout
//! - [`raw`]: the file as written (serde, `deny_unknown_fields`); its `///` docs are the README
//!   reference.
//! - `env`: `${VAR}` substitution, before deserializing.
//! - one module per section, each with its typed config and its checks: `kafka`, `state` (with
//!   `[ha]`), `http`, `evaluation`, `feed` (with `window`, its schedules and quiet windows),
//!   `alerts`, `heartbeat`, [`groups`].
//! - `secret`: [`Secret`] and [`redacted_url`], so no log line shows a password or token.
//! - `describe`: what `check-config` prints.
//!
//! `config` reads the extraction rules' types from [`crate::extract`]; nothing in `extract`
//! reads `config`.

mod alerts;
mod cluster;
mod describe;
mod env;
mod evaluation;
mod feed;
pub mod groups;
mod heartbeat;
mod http;
mod kafka;
mod metrics;
mod pipeline;
pub mod raw;
mod secret;
mod state;
pub mod volume;
mod window;

use std::path::{Path, PathBuf};

pub use alerts::{
    glob_matches, AlertmanagerConfig, AlertsConfig, EmailConfig, FeedPattern, SinkConfig, SinkKind,
    SmtpSecurity,
};
pub use cluster::{ClusterConfig, DEFAULT_CLUSTER};
pub use describe::{describe, describe_at};
pub use evaluation::EvaluationConfig;
pub use feed::{FeedConfig, FeedMode, TopicMatcher};
pub use groups::{GroupConfig, GroupMatcher};
pub use heartbeat::HeartbeatConfig;
pub use http::HttpConfig;
pub use kafka::{host_name, KafkaConfig, StartPosition, STATISTICS_INTERVAL};
pub use metrics::MetricsConfig;
pub use pipeline::{AuditConfig, Hop, PipelineConfig};
pub use raw::RawConfig;
pub use secret::{redacted_url, Secret};
pub use state::{HaConfig, StateBackend, StateConfig};
pub use volume::{MinRate, VolumeConfig};
pub use window::window_warnings;

pub use crate::extract::{SplitRule, TimestampRule};

/// Why a config file was refused. The CLI exits 1 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// `${VAR}` names a variable that is not set.
    #[error("{key}: environment variable {variable} is not set")]
    MissingEnv { key: String, variable: String },
    /// A key has the wrong type, is unknown or is missing.
    #[error("{key}: {reason}")]
    Shape { key: String, reason: String },
    /// A value is well-typed but not acceptable.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The first cluster's `[kafka]` (the only one's without `[[cluster]]`); in the view
    /// [`Config::for_cluster`] gives, that cluster's.
    pub kafka: KafkaConfig,
    /// Every cluster, in config order: `[kafka]` alone is one named `default`.
    pub clusters: Vec<ClusterConfig>,
    /// The clusters come from `[[cluster]]` tables: they carry the `cluster` label, and their
    /// shared knowledge its own state store keys. `false`: `[kafka]`, everything as before.
    pub named_clusters: bool,
    /// Per feed (by index), its cluster (an index into `clusters`).
    pub feed_clusters: Vec<usize>,
    /// Per group (by index), its cluster.
    pub group_clusters: Vec<usize>,
    pub state: StateConfig,
    pub http: HttpConfig,
    /// `[metrics]`: what `/metrics` exports per key.
    pub metrics: MetricsConfig,
    pub evaluation: EvaluationConfig,
    pub feeds: Vec<FeedConfig>,
    pub alerts: AlertsConfig,
    pub heartbeat: Option<HeartbeatConfig>,
    pub ha: HaConfig,
    pub groups: Vec<GroupConfig>,
    /// `[[pipeline]]`s: a hop behind a broken one is held.
    pub pipelines: Vec<PipelineConfig>,
    /// The volume rules of the feeds that set `min_rate`.
    pub volume: Vec<VolumeConfig>,
}

/// Reads, substitutes and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Parses config text; `lookup_env` resolves `${VAR}` (injected so tests need not touch the
/// process environment).
pub fn parse(
    text: &str,
    path: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    validate(parse_raw(text, path, lookup_env)?)
}

/// Parses and substitutes config text into the file as written, unchecked beyond its types.
fn parse_raw(
    text: &str,
    path: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<RawConfig, ConfigError> {
    let mut document: toml::Table = toml::from_str(text).map_err(|error| ConfigError::Syntax {
        path: path.to_owned(),
        message: error.to_string().trim_end().replace('\n', " "),
    })?;
    for (key, value) in document.iter_mut() {
        env::substitute_env(value, key.clone(), lookup_env)?;
    }
    serde_path_to_error::deserialize(toml::Value::Table(document)).map_err(|error| {
        let key = error.path().to_string();
        ConfigError::Shape {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            reason: error.into_inner().message().to_owned(),
        }
    })
}

/// Cross-field checks and parsing of the typed values. No IO.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let (clusters, named_clusters) = cluster::validate_clusters(raw.kafka, raw.cluster)?;
    let state = state::validate_state(raw.state)?;
    let http = http::validate_http(raw.http)?;
    let metrics = metrics::validate_metrics(raw.metrics);
    let evaluation = evaluation::validate_evaluation(raw.evaluation)?;
    feed::validate_defaults(&raw.defaults)?;
    if raw.feed.is_empty() && raw.group.is_empty() {
        return Err(ConfigError::invalid(
            "feed",
            "at least one [[feed]] (or [[group]]) is required",
        ));
    }
    let group_clusters = raw
        .group
        .iter()
        .enumerate()
        .map(|(index, group)| {
            cluster::resolve_cluster(
                &format!("group[{index}].cluster"),
                group.cluster.as_deref(),
                &clusters,
                named_clusters,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let feed_clusters = raw
        .feed
        .iter()
        .enumerate()
        .map(|(index, feed)| {
            cluster::resolve_cluster(
                &format!("feed[{index}].cluster"),
                feed.cluster.as_deref(),
                &clusters,
                named_clusters,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let groups = raw
        .group
        .into_iter()
        .enumerate()
        .map(|(index, group)| groups::validate_group(index, group))
        .collect::<Result<Vec<_>, _>>()?;
    let volume = volume::validate_volumes(&raw.feed)?;
    let feeds = feed::validate_feeds(raw.feed, &raw.defaults)?;
    let alerts = alerts::validate_alerts(raw.alerts)?;
    let heartbeat = raw
        .heartbeat
        .map(heartbeat::validate_heartbeat)
        .transpose()?;
    let ha = state::validate_ha(raw.ha)?;
    let pipelines = pipeline::validate_pipelines(raw.pipeline, &feeds, &groups)?;
    let config = Config {
        kafka: clusters[0].kafka.clone(),
        clusters,
        named_clusters,
        feed_clusters,
        group_clusters,
        state,
        http,
        metrics,
        evaluation,
        feeds,
        alerts,
        heartbeat,
        ha,
        groups,
        pipelines,
        volume,
    };
    cluster::check_group_names(&config)?;
    cluster::check_topics_apart(&config)?;
    Ok(config)
}

#[cfg(test)]
mod tests;
