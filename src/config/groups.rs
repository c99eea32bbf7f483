//! `[[group]]`: consumer groups watched from outside (lag in time, stalls, the data-loss
//! countdown). freshwatch reads their committed offsets; it never joins them or commits for them.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::ConfigError;

/// One `[[group]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// The `group` label; default: the group id. With `group_regex` each matched group is
    /// reported under its own id.
    pub name: Option<String>,
    /// The `[[cluster]]` the group commits on: required with `[[cluster]]` tables, not allowed
    /// with `[kafka]`.
    pub cluster: Option<String>,
    /// The consumer group to watch.
    pub group_id: Option<String>,
    /// Or every group whose id matches (Rust regex, unanchored unless anchored).
    pub group_regex: Option<String>,
    /// Topics to watch; default: every topic the group has committed offsets on.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Lag in time at which the group turns `warning`.
    #[serde(default = "default_warn_after", with = "humantime_serde")]
    pub warn_after: Duration,
    /// Lag in time at which it turns `critical`; must be greater than `warn_after`.
    #[serde(default = "default_critical_after", with = "humantime_serde")]
    pub critical_after: Duration,
    /// Committed offsets not moving this long while behind: `stalled`.
    #[serde(default = "default_stall_after", with = "humantime_serde")]
    pub stall_after: Duration,
    /// How long the broker keeps records; default: the topic's `retention.ms`, read from the
    /// broker (DescribeConfigs).
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// `DataLossImminent` warning while unread records would expire within this.
    #[serde(default = "default_loss_warn_before", with = "humantime_serde")]
    pub loss_warn_before: Duration,
    /// `DataLossImminent` critical while unread records would expire within this.
    #[serde(default = "default_loss_critical_before", with = "humantime_serde")]
    pub loss_critical_before: Duration,
}

fn default_warn_after() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_critical_after() -> Duration {
    Duration::from_secs(3600)
}
fn default_stall_after() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_loss_warn_before() -> Duration {
    Duration::from_secs(3 * 86_400)
}
fn default_loss_critical_before() -> Duration {
    Duration::from_secs(86_400)
}

/// Which groups a `[[group]]` watches.
#[derive(Debug, Clone)]
pub enum GroupMatcher {
    Exact(String),
    Regex(Regex),
}

impl GroupMatcher {
    pub fn matches(&self, group_id: &str) -> bool {
        match self {
            GroupMatcher::Exact(id) => id == group_id,
            GroupMatcher::Regex(regex) => regex.is_match(group_id),
        }
    }
}

/// A `[[group]]`, validated.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The label of an exact group (default its id); for a regex, what check-config shows.
    pub name: Arc<str>,
    pub matcher: GroupMatcher,
    /// Empty: every topic the group has committed offsets on.
    pub topics: Vec<String>,
    pub warn_after: Duration,
    pub critical_after: Duration,
    pub stall_after: Duration,
    pub retention: Option<Duration>,
    pub loss_warn_before: Duration,
    pub loss_critical_before: Duration,
}

impl GroupConfig {
    /// The `group` label for a watched group id.
    pub fn label(&self, group_id: &str) -> Arc<str> {
        match self.matcher {
            GroupMatcher::Exact(_) => self.name.clone(),
            GroupMatcher::Regex(_) => Arc::from(group_id),
        }
    }
}

/// Checks one `[[group]]`: exactly one of `group_id` / `group_regex`, ordered thresholds.
pub fn validate_group(index: usize, raw: RawGroup) -> Result<GroupConfig, ConfigError> {
    let key = |field: &str| format!("group[{index}].{field}");
    let matcher = match (raw.group_id, raw.group_regex) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                key("group_regex"),
                "set either group_id or group_regex, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                key("group_id"),
                "one of group_id or group_regex is required",
            ))
        }
        (Some(id), None) if id.trim().is_empty() => {
            return Err(ConfigError::invalid(key("group_id"), "must not be empty"))
        }
        (Some(id), None) => GroupMatcher::Exact(id),
        (None, Some(pattern)) => GroupMatcher::Regex(Regex::new(&pattern).map_err(|error| {
            ConfigError::invalid(key("group_regex"), format!("invalid regex: {error}"))
        })?),
    };
    let name: Arc<str> = match (&raw.name, &matcher) {
        (Some(name), _) if name.trim().is_empty() => {
            return Err(ConfigError::invalid(key("name"), "must not be empty"))
        }
        (Some(name), _) => Arc::from(name.as_str()),
        (None, GroupMatcher::Exact(id)) => Arc::from(id.as_str()),
        (None, GroupMatcher::Regex(regex)) => Arc::from(regex.as_str()),
    };
    if raw.critical_after <= raw.warn_after {
        return Err(ConfigError::invalid(
            key("critical_after"),
            "must be greater than warn_after",
        ));
    }
    if raw.loss_warn_before <= raw.loss_critical_before {
        return Err(ConfigError::invalid(
            key("loss_warn_before"),
            "must be greater than loss_critical_before",
        ));
    }
    if raw.stall_after.is_zero() {
        return Err(ConfigError::invalid(key("stall_after"), "must be positive"));
    }
    if raw.retention.is_some_and(|retention| retention.is_zero()) {
        return Err(ConfigError::invalid(key("retention"), "must be positive"));
    }
    Ok(GroupConfig {
        name,
        matcher,
        topics: raw.topics,
        warn_after: raw.warn_after,
        critical_after: raw.critical_after,
        stall_after: raw.stall_after,
        retention: raw.retention,
        loss_warn_before: raw.loss_warn_before,
        loss_critical_before: raw.loss_critical_before,
    })
}

/// The `[[group]]` lines of `check-config`.
pub fn describe(groups: &[GroupConfig]) -> String {
    use std::fmt::Write as _;
    let human = |duration: Duration| humantime::format_duration(duration).to_string();
    let mut text = String::new();
    if groups.is_empty() {
        return text;
    }
    let _ = writeln!(text, "groups: {}", groups.len());
    for group in groups {
        let watched = match &group.matcher {
            GroupMatcher::Exact(id) => format!("group_id={id}"),
            GroupMatcher::Regex(regex) => format!("group_regex={}", regex.as_str()),
        };
        let topics = if group.topics.is_empty() {
            "every topic it commits on".to_owned()
        } else {
            group.topics.join(", ")
        };
        let retention = group
            .retention
            .map_or_else(|| "from the broker".to_owned(), human);
        let _ = writeln!(
            text,
            "  {} ({watched}) topics: {topics}; lag warn={} critical={}; stall={}; retention {retention}, loss warn<{} critical<{}",
            group.name,
            human(group.warn_after),
            human(group.critical_after),
            human(group.stall_after),
            human(group.loss_warn_before),
            human(group.loss_critical_before),
        );
    }
    text
}
