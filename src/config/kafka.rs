//! `[kafka]`, validated: how freshwatch reaches Kafka, and which librdkafka settings it keeps
//! for itself.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw;
use super::ConfigError;

/// The librdkafka setting that paces what freshwatch knows of its partitions.
pub const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

/// librdkafka settings freshwatch sets itself: it commits offsets only after state is safe.
const OWNED_PROPERTIES: [&str; 7] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// `kafka.start`: where a new consumer group starts; after its first run the committed offsets
/// win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained record: every feed's last-seen is learnt from what Kafka holds.
    Earliest,
    /// Only records produced after the group first joins.
    Latest,
}

impl StartPosition {
    /// librdkafka's `auto.offset.reset` value, also how `check-config` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        }
    }
}

impl From<raw::RawStart> for StartPosition {
    fn from(start: raw::RawStart) -> Self {
        match start {
            raw::RawStart::Earliest => StartPosition::Earliest,
            raw::RawStart::Latest => StartPosition::Latest,
        }
    }
}

#[derive(Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub start: StartPosition,
    pub metadata_refresh: Duration,
    pub tail_interval: Duration,
    pub groups_interval: Duration,
    pub retention_refresh: Duration,
    /// `group.instance.id`; `None`: dynamic membership.
    pub instance_id: Option<String>,
    pub properties: BTreeMap<String, String>,
}

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
            .field("retention_refresh", &self.retention_refresh)
            .field("instance_id", &self.instance_id)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Checks `[kafka]`, or one `[[cluster]]`: `prefix` is the key path errors name (`kafka`,
/// `cluster[1]`).
pub(super) fn validate_kafka(raw: raw::RawKafka, prefix: &str) -> Result<KafkaConfig, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    if raw.brokers.trim().is_empty() {
        return Err(ConfigError::invalid(key("brokers"), "must not be empty"));
    }
    if raw.group_id.trim().is_empty() {
        return Err(ConfigError::invalid(key("group_id"), "must not be empty"));
    }
    validate_properties(&raw.properties, prefix)?;
    if raw.tail_interval < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            key("tail_interval"),
            "must be at least 100ms",
        ));
    }
    if raw.metadata_refresh < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            key("metadata_refresh"),
            "must be at least 1s",
        ));
    }
    let instance_id = match raw.instance_id {
        None => host_name(),
        Some(name) if name.trim().is_empty() => None,
        Some(name) if name.len() > 249 => {
            return Err(ConfigError::invalid(
                key("instance_id"),
                "must be at most 249 characters (Kafka's limit for group.instance.id)",
            ))
        }
        Some(name) => Some(name),
    };
    Ok(KafkaConfig {
        brokers: raw.brokers,
        group_id: raw.group_id,
        start: raw.start.into(),
        metadata_refresh: raw.metadata_refresh,
        tail_interval: raw.tail_interval,
        groups_interval: raw.groups_interval,
        retention_refresh: raw.retention_refresh,
        instance_id,
        properties: raw.properties,
    })
}

/// This machine's host name (a pod's name on Kubernetes), if it has one: `HOSTNAME` as the
/// environment gives it, else the kernel's.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| {
            ["/proc/sys/kernel/hostname", "/etc/hostname"]
                .into_iter()
                .find_map(|path| std::fs::read_to_string(path).ok())
        })
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// `kafka.properties`: passed through, except what freshwatch owns and statistics turned off.
fn validate_properties(
    properties: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<(), ConfigError> {
    for owned in OWNED_PROPERTIES {
        if properties.contains_key(owned) {
            return Err(ConfigError::invalid(
                format!("{prefix}.properties.\"{owned}\""),
                format!("is set by freshwatch itself; use {prefix}.brokers, {prefix}.group_id, {prefix}.instance_id or {prefix}.start"),
            ));
        }
    }
    if let Some(value) = properties.get(STATISTICS_INTERVAL) {
        if !matches!(value.parse::<u64>(), Ok(1..)) {
            return Err(ConfigError::invalid(
                format!("{prefix}.properties.\"{STATISTICS_INTERVAL}\""),
                "must be a positive number of milliseconds: freshwatch knows what Kafka holds from librdkafka's statistics, and without them every feed would stay unknown",
            ));
        }
    }
    Ok(())
}
