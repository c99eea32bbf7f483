//! Configuration: one TOML file, read once at start.
//!
//! [`load`] reads the file, replaces `${VAR}` from the environment, deserializes the
//! [`raw::RawConfig`] and validates it into the typed [`Config`] the rest of the crate uses. Every
//! error names the key path and the reason, e.g.
//! `feed[2].critical_after: must be greater than warn_after`.

pub mod groups;
pub mod raw;

pub use groups::{GroupConfig, GroupMatcher};

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::extract::json::JsonPointer;
use crate::extract::Extractor;
pub use crate::extract::{SplitRule, TimestampRule};
pub use raw::RawConfig;

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
    pub kafka: KafkaConfig,
    pub state: StateConfig,
    pub http: HttpConfig,
    pub evaluation: EvaluationConfig,
    pub feeds: Vec<FeedConfig>,
    pub alerts: AlertsConfig,
    pub heartbeat: Option<HeartbeatConfig>,
    pub ha: HaConfig,
    pub groups: Vec<GroupConfig>,
}

/// `[ha]`, validated. Used only with Redis state.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub lease: Duration,
    pub reload_interval: Duration,
}

impl std::fmt::Debug for KafkaConfig {
    /// Property values are not shown: `sasl.password`, `ssl.key.password` and their kin live
    /// there.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("metadata_refresh", &self.metadata_refresh)
            .field("tail_interval", &self.tail_interval)
            .field("groups_interval", &self.groups_interval)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AlertmanagerConfig")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("min_severity", &self.min_severity)
            .field("feeds", &self.feeds)
            .field("fallback", &self.fallback)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

/// The librdkafka setting that paces what freshwatch knows of its partitions.
pub const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

impl KafkaConfig {
    /// How often librdkafka reports each partition's high watermark and read position.
    pub fn statistics_interval(&self) -> Duration {
        let millis = self
            .properties
            .get(STATISTICS_INTERVAL)
            .and_then(|value| value.parse().ok())
            .unwrap_or(1000);
        Duration::from_millis(millis)
    }
}

#[derive(Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub start: raw::RawStart,
    pub metadata_refresh: Duration,
    pub tail_interval: Duration,
    pub groups_interval: Duration,
    pub properties: BTreeMap<String, String>,
}

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
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base URL for links in alerts, without a trailing slash.
    pub external_url: String,
}

#[derive(Debug, Clone)]
pub struct EvaluationConfig {
    pub interval: Duration,
    pub max_future_skew: Duration,
    pub source_grace: Duration,
    pub catchup_tolerance: u64,
    /// `None`: each feed's `critical_after`.
    pub blind_after: Option<Duration>,
    pub recovery_grace: Duration,
}

/// Which topics a feed reads.
#[derive(Debug, Clone)]
pub enum TopicMatcher {
    Exact(String),
    Regex(Regex),
}

impl TopicMatcher {
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicMatcher::Exact(name) => name == topic,
            TopicMatcher::Regex(regex) => regex.is_match(topic),
        }
    }

    /// The `topic` label of alerts: the name, or the pattern.
    pub fn describe(&self) -> &str {
        match self {
            TopicMatcher::Exact(name) => name,
            TopicMatcher::Regex(regex) => regex.as_str(),
        }
    }
}

/// One `[[feed]]`, validated.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub name: Arc<str>,
    pub topics: TopicMatcher,
    pub split: Option<SplitRule>,
    pub timestamp: TimestampRule,
    pub warn_after: Duration,
    pub critical_after: Duration,
    pub expected: Vec<String>,
    pub mode: FeedMode,
    /// Most series a split feed tracks (always 1 for an unsplit feed).
    pub max_keys: usize,
    /// Longest split value in bytes.
    pub max_key_bytes: usize,
    /// `for`: how long a threshold must stay crossed before the status changes.
    pub hold: Duration,
}

impl FeedConfig {
    /// The extractor that runs this feed's split and timestamp rules on its records.
    pub fn extractor(&self, max_future_skew_ms: i64) -> Extractor {
        Extractor::new(
            self.split.clone(),
            self.timestamp.clone(),
            self.max_key_bytes,
            max_future_skew_ms,
        )
    }
}

/// How a feed learns its last-seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FeedMode {
    /// Read every record.
    #[default]
    Consume,
    /// Read only the newest record of a partition whose high watermark moved.
    Tail,
}

#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub alertmanager: Vec<AlertmanagerConfig>,
    /// Notification sinks fed through the durable outbox.
    pub sinks: Vec<SinkConfig>,
    pub watchdog: bool,
}

#[derive(Clone)]
pub struct AlertmanagerConfig {
    pub name: String,
    pub url: reqwest::Url,
    pub resend_interval: Duration,
    pub timeout: Duration,
    pub min_severity: crate::model::Severity,
    /// Feed/key globs; empty accepts every feed.
    pub feeds: Vec<FeedPattern>,
    /// Notification sinks that get what this Alertmanager did not accept in `fallback_after`.
    pub fallback: Vec<String>,
    pub fallback_after: Duration,
    /// Takes system and consumer-group alerts whatever `feeds` says.
    pub system: bool,
}

/// One notification sink: where it delivers and what it accepts.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub min_severity: crate::model::Severity,
    /// Feed/key globs; empty accepts every feed.
    pub feeds: Vec<FeedPattern>,
    pub fallback: Vec<String>,
    pub fallback_after: Duration,
    pub repeat_interval: Duration,
    pub rate_limit: u32,
    pub rate_limit_period: Duration,
    pub timeout: Duration,
    /// Takes system and consumer-group alerts whatever `feeds` says.
    pub system: bool,
}

impl SinkConfig {
    /// Whether this sink wants notices about `feed`/`key` at `severity`.
    pub fn accepts(&self, feed: &str, key: &str, severity: crate::model::Severity) -> bool {
        severity >= self.min_severity
            && (self.feeds.is_empty()
                || self.feeds.iter().any(|pattern| pattern.matches(feed, key)))
    }

    /// Whether this sink wants an alert about freshwatch itself or a consumer group: the pager
    /// must hear that freshwatch is blind, whatever feeds it routes.
    pub fn accepts_system(&self, severity: crate::model::Severity) -> bool {
        self.system && severity >= self.min_severity
    }
}

#[derive(Clone)]
pub enum SinkKind {
    Webhook {
        url: reqwest::Url,
        secret: Option<Secret>,
    },
    PagerDuty {
        url: reqwest::Url,
        routing_key: Secret,
    },
    Slack {
        url: Secret,
    },
    Email(EmailConfig),
}

/// A URL as logs may show it: scheme, host and port; the path and query may carry a token
/// (`/services/T/B/XXXX`, `?token=`), and userinfo a password.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let hidden = !url.path().trim_start_matches('/').is_empty()
        || url.query().is_some()
        || !url.username().is_empty();
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default(),
        if hidden { "/***" } else { "" }
    )
}

impl std::fmt::Debug for SinkKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkKind::Webhook { url, secret } => formatter
                .debug_struct("Webhook")
                .field("url", &redacted_url(url))
                .field("secret", secret)
                .finish(),
            SinkKind::PagerDuty { url, routing_key } => formatter
                .debug_struct("PagerDuty")
                .field("url", &redacted_url(url))
                .field("routing_key", routing_key)
                .finish(),
            SinkKind::Slack { url } => formatter.debug_struct("Slack").field("url", url).finish(),
            SinkKind::Email(email) => formatter.debug_tuple("Email").field(email).finish(),
        }
    }
}

impl SinkKind {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Slack { .. } => "slack",
            SinkKind::Email(_) => "email",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: raw::RawSmtpSecurity,
    pub credentials: Option<(String, Secret)>,
    pub from: String,
    pub to: Vec<String>,
}

/// `"profiles"` (any key of the feed), `"billing/*"`, `"profiles/acme"`: a glob over `feed` or
/// `feed/key`, where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPattern(pub String);

impl FeedPattern {
    pub fn matches(&self, feed: &str, key: &str) -> bool {
        if self.0.contains('/') {
            glob_matches(self.0.as_bytes(), format!("{feed}/{key}").as_bytes())
        } else {
            glob_matches(self.0.as_bytes(), feed.as_bytes())
        }
    }
}

/// `*` matches any run of bytes. Linear backtracking to the last star only: O(pattern × text)
/// at worst, whatever the number of stars (a recursive matcher is exponential in them).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            resume = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = resume {
            p = star + 1;
            t = matched + 1;
            resume = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// `[heartbeat]`, validated.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub url: Secret,
    pub interval: Duration,
    pub post: bool,
    pub timeout: Duration,
}

/// A value that must never reach a log line (it may carry a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
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
    let mut document: toml::Table = toml::from_str(text).map_err(|error| ConfigError::Syntax {
        path: path.to_owned(),
        message: error.to_string().trim_end().replace('\n', " "),
    })?;
    for (key, value) in document.iter_mut() {
        substitute_env(value, key.clone(), lookup_env)?;
    }
    let raw: RawConfig =
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
        })?;
    validate(raw)
}

/// Replaces `${VAR}` in every string value; `$${` stands for a literal `${`.
fn substitute_env(
    value: &mut toml::Value,
    key: String,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => {
            *text = expand_env(text, &key, lookup_env)?;
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_env(item, format!("{key}[{index}]"), lookup_env)?;
            }
        }
        toml::Value::Table(table) => {
            for (child_key, child) in table.iter_mut() {
                substitute_env(child, format!("{key}.{child_key}"), lookup_env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_env(
    text: &str,
    key: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        expanded.push_str(&rest[..position]);
        let after = &rest[position..];
        if let Some(stripped) = after.strip_prefix("$${") {
            expanded.push_str("${");
            rest = stripped;
        } else if let Some(stripped) = after.strip_prefix("${") {
            let Some(end) = stripped.find('}') else {
                return Err(ConfigError::invalid(key, "unterminated ${ in value"));
            };
            let variable = &stripped[..end];
            let valid_name = !variable.is_empty()
                && variable
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            if !valid_name {
                return Err(ConfigError::invalid(
                    key,
                    format!("`${{{variable}}}` is not a valid environment variable reference"),
                ));
            }
            let value = lookup_env(variable).ok_or_else(|| ConfigError::MissingEnv {
                key: key.to_owned(),
                variable: variable.to_owned(),
            })?;
            expanded.push_str(&value);
            rest = &stripped[end + 1..];
        } else {
            expanded.push('$');
            rest = &after[1..];
        }
    }
    expanded.push_str(rest);
    Ok(expanded)
}

/// Cross-field checks and parsing of the typed values. No IO.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let kafka = validate_kafka(raw.kafka)?;
    let state = validate_state(raw.state)?;
    let http = validate_http(raw.http)?;
    if raw.evaluation.interval < Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "evaluation.interval",
            "must be at least 10ms",
        ));
    }
    let evaluation = EvaluationConfig {
        interval: raw.evaluation.interval,
        max_future_skew: raw.evaluation.max_future_skew,
        source_grace: raw.evaluation.source_grace,
        catchup_tolerance: raw.evaluation.catchup_tolerance,
        blind_after: raw.evaluation.blind_after,
        recovery_grace: raw.evaluation.recovery_grace,
    };
    if raw.defaults.critical_after <= raw.defaults.warn_after {
        return Err(ConfigError::invalid(
            "defaults.critical_after",
            "must be greater than warn_after",
        ));
    }
    if raw.feed.is_empty() && raw.group.is_empty() {
        return Err(ConfigError::invalid(
            "feed",
            "at least one [[feed]] (or [[group]]) is required",
        ));
    }
    let groups = raw
        .group
        .into_iter()
        .enumerate()
        .map(|(index, group)| groups::validate_group(index, group))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen_names = HashSet::new();
    let mut feeds = Vec::with_capacity(raw.feed.len());
    for (index, raw_feed) in raw.feed.into_iter().enumerate() {
        let feed = validate_feed(index, raw_feed, &raw.defaults)?;
        if !seen_names.insert(feed.name.clone()) {
            return Err(ConfigError::invalid(
                format!("feed[{index}].name"),
                format!("duplicate feed name {:?}", feed.name),
            ));
        }
        feeds.push(feed);
    }
    let alerts = validate_alerts(raw.alerts)?;
    let heartbeat = match raw.heartbeat {
        None => None,
        Some(heartbeat) => {
            parse_sink_url("heartbeat.url".into(), &heartbeat.url)?;
            if heartbeat.interval < Duration::from_secs(1) {
                return Err(ConfigError::invalid(
                    "heartbeat.interval",
                    "must be at least 1s",
                ));
            }
            Some(HeartbeatConfig {
                url: Secret::new(heartbeat.url),
                interval: heartbeat.interval,
                post: heartbeat.method == raw::RawHeartbeatMethod::Post,
                timeout: heartbeat.timeout,
            })
        }
    };
    if raw.ha.lease < Duration::from_secs(3) {
        return Err(ConfigError::invalid("ha.lease", "must be at least 3s"));
    }
    if raw.ha.reload_interval < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "ha.reload_interval",
            "must be at least 100ms",
        ));
    }
    Ok(Config {
        kafka,
        state,
        http,
        evaluation,
        feeds,
        alerts,
        heartbeat,
        ha: HaConfig {
            lease: raw.ha.lease,
            reload_interval: raw.ha.reload_interval,
        },
        groups,
    })
}

fn validate_kafka(raw: raw::RawKafka) -> Result<KafkaConfig, ConfigError> {
    if raw.brokers.trim().is_empty() {
        return Err(ConfigError::invalid("kafka.brokers", "must not be empty"));
    }
    if raw.group_id.trim().is_empty() {
        return Err(ConfigError::invalid("kafka.group_id", "must not be empty"));
    }
    // freshwatch owns these: it commits offsets only after state is safe.
    for owned in [
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
    ] {
        if raw.properties.contains_key(owned) {
            return Err(ConfigError::invalid(
                format!("kafka.properties.\"{owned}\""),
                "is set by freshwatch itself; use kafka.brokers, kafka.group_id or kafka.start",
            ));
        }
    }
    if let Some(value) = raw.properties.get(STATISTICS_INTERVAL) {
        if !matches!(value.parse::<u64>(), Ok(1..)) {
            return Err(ConfigError::invalid(
                format!("kafka.properties.\"{STATISTICS_INTERVAL}\""),
                "must be a positive number of milliseconds: freshwatch knows what Kafka holds from librdkafka's statistics, and without them every feed would stay unknown",
            ));
        }
    }
    if raw.tail_interval < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "kafka.tail_interval",
            "must be at least 100ms",
        ));
    }
    if raw.metadata_refresh < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "kafka.metadata_refresh",
            "must be at least 1s",
        ));
    }
    Ok(KafkaConfig {
        brokers: raw.brokers,
        group_id: raw.group_id,
        start: raw.start,
        metadata_refresh: raw.metadata_refresh,
        tail_interval: raw.tail_interval,
        groups_interval: raw.groups_interval,
        properties: raw.properties,
    })
}

fn validate_state(raw: raw::RawState) -> Result<StateConfig, ConfigError> {
    if raw.redis_url.is_some() && !raw.redis_cluster_nodes.is_empty() {
        return Err(ConfigError::invalid(
            "state.redis_cluster_nodes",
            "set either redis_url or redis_cluster_nodes, not both",
        ));
    }
    for (index, node) in raw.redis_cluster_nodes.iter().enumerate() {
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
    let backend = match raw.redis_url {
        None if !raw.redis_cluster_nodes.is_empty() => StateBackend::RedisCluster {
            nodes: raw
                .redis_cluster_nodes
                .into_iter()
                .map(Secret::new)
                .collect(),
        },
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
            StateBackend::Redis {
                url: Secret::new(url),
            }
        }
        None => {
            if raw.path.as_os_str().is_empty() {
                return Err(ConfigError::invalid("state.path", "must not be empty"));
            }
            StateBackend::Embedded { path: raw.path }
        }
    };
    if raw.flush_interval < Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "state.flush_interval",
            "must be at least 10ms",
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
    })
}

fn validate_http(raw: raw::RawHttp) -> Result<HttpConfig, ConfigError> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        ConfigError::invalid(
            "http.listen",
            format!("{:?} is not an ip:port address", raw.listen),
        )
    })?;
    let external_url = match raw.external_url {
        Some(url) => {
            reqwest::Url::parse(&url).map_err(|error| {
                ConfigError::invalid("http.external_url", format!("not a URL: {error}"))
            })?;
            url.trim_end_matches('/').to_owned()
        }
        None => format!("http://{listen}"),
    };
    Ok(HttpConfig {
        listen,
        external_url,
    })
}

fn is_valid_feed_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

fn validate_feed(
    index: usize,
    raw: raw::RawFeed,
    defaults: &raw::RawDefaults,
) -> Result<FeedConfig, ConfigError> {
    let key = |field: &str| format!("feed[{index}].{field}");
    if !is_valid_feed_name(&raw.name) {
        return Err(ConfigError::invalid(
            key("name"),
            format!(
                "{:?} must be 1-128 letters, digits, '_', '-' or '.'",
                raw.name
            ),
        ));
    }
    let topics = match (raw.topic, raw.topic_regex) {
        (Some(topic), None) if !topic.is_empty() => TopicMatcher::Exact(topic),
        (Some(_), None) => return Err(ConfigError::invalid(key("topic"), "must not be empty")),
        (None, Some(pattern)) => TopicMatcher::Regex(Regex::new(&pattern).map_err(|error| {
            ConfigError::invalid(key("topic_regex"), format!("invalid regex: {error}"))
        })?),
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                key("topic"),
                "set either topic or topic_regex, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                key("topic"),
                "one of topic or topic_regex is required",
            ))
        }
    };
    let split = match raw.split_by {
        None => None,
        Some(raw::RawSplitBy::Json(pointer)) => Some(SplitRule::Json(
            JsonPointer::parse(&pointer)
                .map_err(|error| ConfigError::invalid(key("split_by.json"), error.to_string()))?,
        )),
        Some(raw::RawSplitBy::Header(name)) if name.is_empty() => {
            return Err(ConfigError::invalid(
                key("split_by.header"),
                "must not be empty",
            ))
        }
        Some(raw::RawSplitBy::Header(name)) => Some(SplitRule::Header(name)),
        Some(raw::RawSplitBy::Key) => Some(SplitRule::Key),
        Some(raw::RawSplitBy::Partition) => Some(SplitRule::Partition),
    };
    if matches!(topics, TopicMatcher::Regex(_)) && split == Some(SplitRule::Partition) {
        // Partition 3 of every matching topic would be one series: a dead topic hides behind a
        // live one.
        return Err(ConfigError::invalid(
            key("split_by"),
            "\"partition\" with topic_regex would merge partition N of every matching topic into one series; use one feed per topic, or split by key or a field",
        ));
    }
    let timestamp = match raw.timestamp {
        raw::RawTimestamp::Json(pointer) => TimestampRule::Json(
            JsonPointer::parse(&pointer)
                .map_err(|error| ConfigError::invalid(key("timestamp.json"), error.to_string()))?,
        ),
        raw::RawTimestamp::Header(name) if name.is_empty() => {
            return Err(ConfigError::invalid(
                key("timestamp.header"),
                "must not be empty",
            ))
        }
        raw::RawTimestamp::Header(name) => TimestampRule::Header(name),
        raw::RawTimestamp::Record => TimestampRule::Record,
        raw::RawTimestamp::Arrival => TimestampRule::Arrival,
    };
    let warn_after = raw.warn_after.unwrap_or(defaults.warn_after);
    let critical_after = raw.critical_after.unwrap_or(defaults.critical_after);
    if warn_after.is_zero() {
        return Err(ConfigError::invalid(key("warn_after"), "must be positive"));
    }
    if critical_after <= warn_after {
        return Err(ConfigError::invalid(
            key("critical_after"),
            format!(
                "must be greater than warn_after (feed {:?}: warn_after {}, critical_after {})",
                raw.name,
                humantime::format_duration(warn_after),
                humantime::format_duration(critical_after)
            ),
        ));
    }
    if !raw.expected.is_empty() && split.is_none() {
        return Err(ConfigError::invalid(
            key("expected"),
            "needs split_by: expected lists split values",
        ));
    }
    let mut expected_seen = HashSet::new();
    for (expected_index, value) in raw.expected.iter().enumerate() {
        if !expected_seen.insert(value) {
            return Err(ConfigError::invalid(
                format!("feed[{index}].expected[{expected_index}]"),
                format!("duplicate value {value:?}"),
            ));
        }
        if matches!(split, Some(SplitRule::Partition)) && value.parse::<u32>().is_err() {
            return Err(ConfigError::invalid(
                format!("feed[{index}].expected[{expected_index}]"),
                format!("{value:?} is not a partition number"),
            ));
        }
    }
    let mode = match raw.mode {
        raw::RawMode::Consume => FeedMode::Consume,
        raw::RawMode::Tail => {
            if split.is_some() {
                return Err(ConfigError::invalid(
                    key("mode"),
                    "tail mode reads one record per partition, so it cannot split a feed",
                ));
            }
            if !matches!(timestamp, TimestampRule::Record | TimestampRule::Arrival) {
                return Err(ConfigError::invalid(
                    key("mode"),
                    "tail mode needs timestamp = \"record\" or \"arrival\"",
                ));
            }
            FeedMode::Tail
        }
    };
    if raw.max_key_bytes == 0 {
        return Err(ConfigError::invalid(
            key("max_key_bytes"),
            "must be at least 1",
        ));
    }
    if raw.max_keys == 0 {
        return Err(ConfigError::invalid(key("max_keys"), "must be at least 1"));
    }
    if raw.expected.len() > raw.max_keys {
        return Err(ConfigError::invalid(
            key("max_keys"),
            format!("is lower than the {} expected values", raw.expected.len()),
        ));
    }
    Ok(FeedConfig {
        name: Arc::from(raw.name),
        topics,
        split,
        timestamp,
        warn_after,
        critical_after,
        expected: raw.expected,
        mode,
        max_keys: raw.max_keys,
        max_key_bytes: raw.max_key_bytes,
        hold: raw.hold.unwrap_or(defaults.hold),
    })
}

fn parse_sink_url(key: String, url: &str) -> Result<reqwest::Url, ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| ConfigError::invalid(key.clone(), format!("not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(key, "scheme must be http or https"));
    }
    Ok(parsed)
}

fn validate_alerts(raw: raw::RawAlerts) -> Result<AlertsConfig, ConfigError> {
    let mut names = HashSet::new();
    let mut check_name = |key: String, name: &str| {
        if names.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(ConfigError::invalid(
                key,
                format!("duplicate sink name {name:?}"),
            ))
        }
    };
    let mut alerts = AlertsConfig {
        watchdog: raw.watchdog,
        ..AlertsConfig::default()
    };
    for (index, sink) in raw.alertmanager.into_iter().enumerate() {
        let name = sink.name.unwrap_or_else(|| format!("alertmanager-{index}"));
        check_name(format!("alerts.alertmanager[{index}].name"), &name)?;
        if sink.resend_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                format!("alerts.alertmanager[{index}].resend_interval"),
                "must be at least 1s",
            ));
        }
        alerts.alertmanager.push(AlertmanagerConfig {
            name,
            url: parse_sink_url(format!("alerts.alertmanager[{index}].url"), &sink.url)?,
            resend_interval: sink.resend_interval,
            timeout: sink.timeout,
            min_severity: sink.min_severity.severity(),
            feeds: sink.feeds.into_iter().map(FeedPattern).collect(),
            fallback: sink.fallback,
            fallback_after: sink.fallback_after,
            system: sink.system,
        });
    }
    let mut sinks: Vec<(String, raw::RawRouting, SinkKind)> = Vec::new();
    for (index, sink) in raw.webhook.iter().enumerate() {
        let key = format!("alerts.webhook[{index}]");
        let kind = SinkKind::Webhook {
            url: parse_sink_url(format!("{key}.url"), &sink.url)?,
            secret: sink.secret.clone().map(Secret::new),
        };
        sinks.push((key, sink.routing(), kind));
    }
    for (index, sink) in raw.pagerduty.iter().enumerate() {
        let key = format!("alerts.pagerduty[{index}]");
        if sink.routing_key.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.routing_key"),
                "must not be empty",
            ));
        }
        let kind = SinkKind::PagerDuty {
            url: parse_sink_url(format!("{key}.url"), &sink.url)?,
            routing_key: Secret::new(sink.routing_key.clone()),
        };
        sinks.push((key, sink.routing(), kind));
    }
    for (index, sink) in raw.slack.iter().enumerate() {
        let key = format!("alerts.slack[{index}]");
        parse_sink_url(format!("{key}.url"), &sink.url)?;
        let kind = SinkKind::Slack {
            url: Secret::new(sink.url.clone()),
        };
        sinks.push((key, sink.routing(), kind));
    }
    for (index, sink) in raw.email.iter().enumerate() {
        let key = format!("alerts.email[{index}]");
        if sink.to.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.to"),
                "needs at least one recipient",
            ));
        }
        for (field, address) in
            std::iter::once(("from", &sink.from)).chain(sink.to.iter().map(|to| ("to", to)))
        {
            if address.parse::<lettre::Address>().is_err() {
                return Err(ConfigError::invalid(
                    format!("{key}.{field}"),
                    format!("{address:?} is not an email address"),
                ));
            }
        }
        let credentials = match (&sink.username, &sink.password) {
            (Some(user), Some(password)) => Some((user.clone(), Secret::new(password.clone()))),
            (None, None) => None,
            _ => {
                return Err(ConfigError::invalid(
                    format!("{key}.username"),
                    "username and password go together",
                ))
            }
        };
        if credentials.is_some() && sink.security == raw::RawSmtpSecurity::None {
            return Err(ConfigError::invalid(
                format!("{key}.security"),
                "username and password need security = \"starttls\" or \"tls\": freshwatch never sends credentials in plain text",
            ));
        }
        let kind = SinkKind::Email(EmailConfig {
            smtp_host: sink.smtp_host.clone(),
            smtp_port: sink.smtp_port,
            security: sink.security,
            credentials,
            from: sink.from.clone(),
            to: sink.to.clone(),
        });
        sinks.push((key, sink.routing(), kind));
    }
    let mut per_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (key, routing, kind) in sinks {
        let counter = per_kind.entry(kind.kind()).or_default();
        let name = routing
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{counter}", kind.kind()));
        *counter += 1;
        check_name(format!("{key}.name"), &name)?;
        if routing.rate_limit == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.rate_limit"),
                "must be at least 1",
            ));
        }
        alerts.sinks.push(SinkConfig {
            name,
            kind,
            min_severity: routing.min_severity.severity(),
            feeds: routing.feeds.into_iter().map(FeedPattern).collect(),
            fallback: routing.fallback,
            fallback_after: routing.fallback_after,
            repeat_interval: routing.repeat_interval,
            rate_limit: routing.rate_limit,
            rate_limit_period: routing.rate_limit_period,
            timeout: routing.timeout,
            system: routing.system,
        });
    }
    let sink_names: HashSet<&str> = alerts.sinks.iter().map(|sink| sink.name.as_str()).collect();
    for (index, sink) in alerts.alertmanager.iter().enumerate() {
        for target in &sink.fallback {
            if !sink_names.contains(target.as_str()) {
                return Err(ConfigError::invalid(
                    format!("alerts.alertmanager[{index}].fallback"),
                    format!("{target:?} is not a webhook, pagerduty, slack or email sink"),
                ));
            }
        }
    }
    for sink in &alerts.sinks {
        for target in &sink.fallback {
            if target == &sink.name || !sink_names.contains(target.as_str()) {
                return Err(ConfigError::invalid(
                    format!("alerts sink {:?} fallback", sink.name),
                    format!("{target:?} is not another webhook, pagerduty, slack or email sink"),
                ));
            }
        }
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests;

/// The resolved config as `check-config` prints it. Secrets stay hidden.
pub fn describe(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let human = |duration: Duration| humantime::format_duration(duration).to_string();
    let _ = writeln!(text, "config ok");
    let _ = writeln!(
        text,
        "kafka: brokers={} group_id={} start={} properties={}",
        config.kafka.brokers,
        config.kafka.group_id,
        match config.kafka.start {
            raw::RawStart::Earliest => "earliest",
            raw::RawStart::Latest => "latest",
        },
        config.kafka.properties.len()
    );
    let _ = match &config.state.backend {
        StateBackend::Redis { .. } | StateBackend::RedisCluster { .. } => writeln!(
            text,
            "state: redis (key prefix {}), flush every {}",
            config.state.key_prefix,
            human(config.state.flush_interval)
        ),
        StateBackend::Embedded { path } => writeln!(
            text,
            "state: embedded at {}, flush every {}",
            path.display(),
            human(config.state.flush_interval)
        ),
    };
    let _ = writeln!(text, "http: {}", config.http.listen);
    let _ = writeln!(
        text,
        "evaluation: every {}, max_future_skew {}",
        human(config.evaluation.interval),
        human(config.evaluation.max_future_skew)
    );
    let _ = writeln!(text, "feeds ({}):", config.feeds.len());
    for feed in &config.feeds {
        let topics = match &feed.topics {
            TopicMatcher::Exact(name) => format!("topic={name}"),
            TopicMatcher::Regex(regex) => format!("topic_regex={}", regex.as_str()),
        };
        let split = match &feed.split {
            None => "none".to_owned(),
            Some(SplitRule::Json(pointer)) => format!("json {}", pointer.as_str()),
            Some(SplitRule::Header(name)) => format!("header {name}"),
            Some(SplitRule::Key) => "key".to_owned(),
            Some(SplitRule::Partition) => "partition".to_owned(),
        };
        let timestamp = match &feed.timestamp {
            TimestampRule::Json(pointer) => format!("json {}", pointer.as_str()),
            TimestampRule::Header(name) => format!("header {name}"),
            TimestampRule::Record => "record".to_owned(),
            TimestampRule::Arrival => "arrival".to_owned(),
        };
        let _ = writeln!(
            text,
            "  {}: {topics} split_by={split} timestamp={timestamp} warn_after={} critical_after={}{}{}{}",
            feed.name,
            human(feed.warn_after),
            human(feed.critical_after),
            if feed.hold.is_zero() {
                String::new()
            } else {
                format!(" for={}", human(feed.hold))
            },
            if feed.expected.is_empty() {
                String::new()
            } else {
                format!(" expected=[{}]", feed.expected.join(", "))
            },
            match (feed.mode, &feed.split) {
                (FeedMode::Tail, _) => " mode=tail".to_owned(),
                (FeedMode::Consume, Some(_)) => format!(" max_keys={}", feed.max_keys),
                (FeedMode::Consume, None) => String::new(),
            }
        );
    }
    let _ = writeln!(
        text,
        "alerts: {} alertmanager, {} notification sinks{}",
        config.alerts.alertmanager.len(),
        config.alerts.sinks.len(),
        if config.alerts.watchdog {
            ", watchdog on"
        } else {
            ""
        }
    );
    for sink in &config.alerts.alertmanager {
        let _ = writeln!(
            text,
            "  {} (alertmanager) -> {}",
            sink.name,
            redact_url(&sink.url)
        );
    }
    for sink in &config.alerts.sinks {
        let target = match &sink.kind {
            SinkKind::Webhook { url, .. } | SinkKind::PagerDuty { url, .. } => redact_url(url),
            SinkKind::Slack { .. } => "slack webhook".to_owned(),
            SinkKind::Email(email) => format!(
                "smtp {}:{} to {}",
                email.smtp_host,
                email.smtp_port,
                email.to.join(", ")
            ),
        };
        let _ = writeln!(
            text,
            "  {} ({}) -> {target}; min_severity={}{}",
            sink.name,
            sink.kind.kind(),
            sink.min_severity,
            if sink.fallback.is_empty() {
                String::new()
            } else {
                format!(
                    " fallback=[{}] after {}",
                    sink.fallback.join(", "),
                    human(sink.fallback_after)
                )
            }
        );
    }
    if let Some(heartbeat) = &config.heartbeat {
        let _ = writeln!(text, "heartbeat: every {}", human(heartbeat.interval));
    }
    text.push_str(&groups::describe(&config.groups));
    text
}

/// A URL without its credentials, path or query (which may carry tokens).
fn redact_url(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default()
    )
}
