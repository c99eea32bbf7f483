//! `[[feed]]`, validated: which topics a feed reads, how they split into series, where event
//! time comes from, and the thresholds a series is judged against.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::raw;
use super::window::{self, WindowsAt};
use super::ConfigError;
use crate::cadence::Learning;
use crate::extract::json::JsonPointer;
use crate::extract::{Extractor, SplitRule, TimestampRule};
use crate::schedule::WeekClock;
use crate::schedule::{Schedule, Thresholds, Window};

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
    /// More keys than this changing status in one evaluation reach notification sinks as one
    /// rolled-up notification, so a broken upstream pages once rather than per tenant.
    pub rollup_after: usize,
    /// `[[feed.window]]` (or `[[defaults.window]]`), in config order: the first containing an
    /// instant sets the thresholds in force then.
    pub windows: Vec<Window>,
    /// `thresholds = "learned"`: each series learns its cadence, and the thresholds in force
    /// become ceilings ([`crate::cadence`]). `None`: fixed thresholds.
    pub learning: Option<Learning>,
}

impl FeedConfig {
    /// `learn_by_hour = true`: the clocks its hours of the week are counted on.
    pub fn week_clock(&self) -> Option<WeekClock> {
        self.learning.and_then(|learning| learning.by_hour)
    }

    /// The extractor that runs this feed's split and timestamp rules on its records.
    pub fn extractor(&self, max_future_skew_ms: i64) -> Extractor {
        Extractor::new(
            self.split.clone(),
            self.timestamp.clone(),
            self.max_key_bytes,
            max_future_skew_ms,
        )
    }

    /// The thresholds in force at any instant: this feed's own, overridden by its windows.
    pub fn schedule(&self) -> Schedule {
        let own = Thresholds {
            warn_after_ms: window::duration_ms(self.warn_after),
            critical_after_ms: window::duration_ms(self.critical_after),
            expect_nothing: false,
        };
        Schedule::new(own, self.windows.iter().cloned().collect())
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

/// Names the keys of `feed[N]` in errors.
#[derive(Debug, Clone, Copy)]
struct FeedKey(usize);

impl FeedKey {
    fn field(self, field: &str) -> String {
        format!("feed[{}].{field}", self.0)
    }

    /// `feed[N]`, the owner of nested keys such as `feed[N].window[M].hours`.
    fn owner(self) -> String {
        format!("feed[{}]", self.0)
    }
}

/// `[defaults]`: checked once, so an invalid default is reported under its own key.
pub(super) fn validate_defaults(defaults: &raw::RawDefaults) -> Result<(), ConfigError> {
    if defaults.critical_after <= defaults.warn_after {
        return Err(ConfigError::invalid(
            "defaults.critical_after",
            "must be greater than warn_after",
        ));
    }
    if defaults.rollup_after == 0 {
        return Err(ConfigError::invalid(
            "defaults.rollup_after",
            "must be at least 1",
        ));
    }
    if defaults.critical_after_min <= defaults.warn_after_min || defaults.warn_after_min.is_zero() {
        return Err(ConfigError::invalid(
            "defaults.critical_after_min",
            "must be greater than warn_after_min, which must be positive",
        ));
    }
    if !(1..=u32::from(u16::MAX)).contains(&defaults.learn_min_gaps) {
        return Err(ConfigError::invalid(
            "defaults.learn_min_gaps",
            "must be 1 to 65535",
        ));
    }
    window::validate_windows(
        WindowsAt {
            owner: "defaults",
            inherited: false,
        },
        &defaults.window,
        defaults.warn_after,
        defaults.critical_after,
    )?;
    Ok(())
}

/// Every `[[feed]]`, in order; names are unique.
pub(super) fn validate_feeds(
    raw: Vec<raw::RawFeed>,
    defaults: &raw::RawDefaults,
) -> Result<Vec<FeedConfig>, ConfigError> {
    let mut seen_names = HashSet::new();
    let mut feeds = Vec::with_capacity(raw.len());
    for (index, raw_feed) in raw.into_iter().enumerate() {
        let feed = validate_feed(index, raw_feed, defaults)?;
        if !seen_names.insert(feed.name.clone()) {
            return Err(ConfigError::invalid(
                format!("feed[{index}].name"),
                format!("duplicate feed name {:?}", feed.name),
            ));
        }
        feeds.push(feed);
    }
    Ok(feeds)
}

fn validate_feed(
    index: usize,
    raw: raw::RawFeed,
    defaults: &raw::RawDefaults,
) -> Result<FeedConfig, ConfigError> {
    let key = FeedKey(index);
    validate_feed_name(key, &raw.name)?;
    let topics = topic_matcher(key, raw.topic, raw.topic_regex)?;
    let split = raw
        .split_by
        .map(|split_by| split_rule(key, split_by))
        .transpose()?;
    if matches!(topics, TopicMatcher::Regex(_)) && split == Some(SplitRule::Partition) {
        // Partition 3 of every matching topic would be one series: a dead topic hides behind a
        // live one.
        return Err(ConfigError::invalid(
            key.field("split_by"),
            "\"partition\" with topic_regex would merge partition N of every matching topic into one series; use one feed per topic, or split by key or a field",
        ));
    }
    let timestamp = timestamp_rule(key, raw.timestamp)?;
    let warn_after = raw.warn_after.unwrap_or(defaults.warn_after);
    let critical_after = raw.critical_after.unwrap_or(defaults.critical_after);
    validate_thresholds(key, &raw.name, warn_after, critical_after)?;
    validate_expected(key, &raw.expected, split.as_ref())?;
    let mode = feed_mode(key, raw.mode, split.as_ref(), &timestamp)?;
    validate_key_limits(key, raw.max_keys, raw.max_key_bytes, raw.expected.len())?;
    let rollup_after = raw.rollup_after.unwrap_or(defaults.rollup_after);
    if rollup_after == 0 {
        return Err(ConfigError::invalid(
            key.field("rollup_after"),
            "must be at least 1",
        ));
    }
    let owner = key.owner();
    let windows = window::validate_windows(
        WindowsAt {
            owner: &owner,
            inherited: raw.window.is_none(),
        },
        raw.window.as_deref().unwrap_or(&defaults.window),
        warn_after,
        critical_after,
    )?;
    // The hours of the week are counted on one clock for learned cadence and learned volume.
    let counts_hours =
        raw.learn_by_hour == Some(true) || raw.min_rate.as_deref() == Some("learned");
    if raw.learn_timezone.is_some() && !counts_hours {
        return Err(ConfigError::invalid(
            key.field("learn_timezone"),
            "applies only with learn_by_hour = true or min_rate = \"learned\"",
        ));
    }
    let learning = learning(
        key,
        LearningKeys {
            thresholds: raw.thresholds,
            learn_min_gaps: raw.learn_min_gaps,
            learn_min_span: raw.learn_min_span,
            warn_after_min: raw.warn_after_min,
            critical_after_min: raw.critical_after_min,
            learn_by_hour: raw.learn_by_hour,
            learn_timezone: raw.learn_timezone,
        },
        defaults,
        (warn_after, critical_after),
    )?;
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
        rollup_after,
        windows,
        learning,
    })
}

/// A feed's own learning keys, before defaults.
struct LearningKeys {
    thresholds: Option<raw::RawThresholds>,
    learn_min_gaps: Option<u32>,
    learn_min_span: Option<Duration>,
    warn_after_min: Option<Duration>,
    critical_after_min: Option<Duration>,
    learn_by_hour: Option<bool>,
    learn_timezone: Option<String>,
}

/// `thresholds = "learned"` and its keys: floors under the ceilings, warn under critical. The
/// learning keys on a fixed feed are an error (they would do nothing).
fn learning(
    key: FeedKey,
    raw: LearningKeys,
    defaults: &raw::RawDefaults,
    (warn_after, critical_after): (Duration, Duration),
) -> Result<Option<Learning>, ConfigError> {
    let mode = raw.thresholds.unwrap_or(defaults.thresholds);
    if mode == raw::RawThresholds::Fixed {
        let stray = [
            ("learn_min_gaps", raw.learn_min_gaps.is_some()),
            ("learn_min_span", raw.learn_min_span.is_some()),
            ("warn_after_min", raw.warn_after_min.is_some()),
            ("critical_after_min", raw.critical_after_min.is_some()),
            ("learn_by_hour", raw.learn_by_hour.is_some()),
        ];
        if let Some((field, _)) = stray.into_iter().find(|(_, set)| *set) {
            return Err(ConfigError::invalid(
                key.field(field),
                "applies only with thresholds = \"learned\"",
            ));
        }
        return Ok(None);
    }
    let min_gaps = raw.learn_min_gaps.unwrap_or(defaults.learn_min_gaps);
    let min_gaps = u16::try_from(min_gaps)
        .ok()
        .filter(|&min_gaps| min_gaps >= 1)
        .ok_or_else(|| ConfigError::invalid(key.field("learn_min_gaps"), "must be 1 to 65535"))?;
    let warn_floor = raw.warn_after_min.unwrap_or(defaults.warn_after_min);
    let critical_floor = raw
        .critical_after_min
        .unwrap_or(defaults.critical_after_min);
    if warn_floor.is_zero() || warn_floor > warn_after {
        return Err(ConfigError::invalid(
            key.field("warn_after_min"),
            format!(
                "must be positive and at most warn_after ({})",
                humantime::format_duration(warn_after)
            ),
        ));
    }
    if critical_floor <= warn_floor || critical_floor > critical_after {
        return Err(ConfigError::invalid(
            key.field("critical_after_min"),
            format!(
                "must be greater than warn_after_min and at most critical_after ({})",
                humantime::format_duration(critical_after)
            ),
        ));
    }
    let min_span_ms = raw
        .learn_min_span
        .map_or(crate::cadence::WARM_UP_SPAN_MS, window::duration_ms);
    Ok(Some(Learning {
        min_gaps,
        min_span_ms,
        warn_floor_ms: window::duration_ms(warn_floor),
        critical_floor_ms: window::duration_ms(critical_floor),
        by_hour: by_hour(key, raw.learn_by_hour, raw.learn_timezone)?,
    }))
}

/// `learn_by_hour` and the clocks of its hours (`learn_timezone`, UTC by default).
fn by_hour(
    key: FeedKey,
    learn_by_hour: Option<bool>,
    learn_timezone: Option<String>,
) -> Result<Option<WeekClock>, ConfigError> {
    if learn_by_hour != Some(true) {
        return Ok(None);
    }
    let name = learn_timezone.unwrap_or_else(|| "UTC".to_owned());
    let timezone = window::parse_timezone(key.field("learn_timezone"), &name)?;
    Ok(Some(WeekClock { timezone }))
}

/// The name is the `feed` label and a Redis hash tag: kept to a safe alphabet.
fn validate_feed_name(key: FeedKey, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
    if valid {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key.field("name"),
        format!("{name:?} must be 1-128 letters, digits, '_', '-' or '.'"),
    ))
}

/// Exactly one of `topic` and `topic_regex`.
fn topic_matcher(
    key: FeedKey,
    topic: Option<String>,
    topic_regex: Option<String>,
) -> Result<TopicMatcher, ConfigError> {
    match (topic, topic_regex) {
        (Some(topic), None) if !topic.is_empty() => Ok(TopicMatcher::Exact(topic)),
        (Some(_), None) => Err(ConfigError::invalid(
            key.field("topic"),
            "must not be empty",
        )),
        (None, Some(pattern)) => Regex::new(&pattern)
            .map(TopicMatcher::Regex)
            .map_err(|error| {
                ConfigError::invalid(key.field("topic_regex"), format!("invalid regex: {error}"))
            }),
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            key.field("topic"),
            "set either topic or topic_regex, not both",
        )),
        (None, None) => Err(ConfigError::invalid(
            key.field("topic"),
            "one of topic or topic_regex is required",
        )),
    }
}

fn split_rule(key: FeedKey, split_by: raw::RawSplitBy) -> Result<SplitRule, ConfigError> {
    match split_by {
        raw::RawSplitBy::Json(pointer) => JsonPointer::parse(&pointer)
            .map(SplitRule::Json)
            .map_err(|error| ConfigError::invalid(key.field("split_by.json"), error.to_string())),
        raw::RawSplitBy::Header(name) if name.is_empty() => Err(ConfigError::invalid(
            key.field("split_by.header"),
            "must not be empty",
        )),
        raw::RawSplitBy::Header(name) => Ok(SplitRule::Header(name)),
        raw::RawSplitBy::Key => Ok(SplitRule::Key),
        raw::RawSplitBy::Partition => Ok(SplitRule::Partition),
    }
}

fn timestamp_rule(
    key: FeedKey,
    timestamp: raw::RawTimestamp,
) -> Result<TimestampRule, ConfigError> {
    match timestamp {
        raw::RawTimestamp::Json(pointer) => JsonPointer::parse(&pointer)
            .map(TimestampRule::Json)
            .map_err(|error| ConfigError::invalid(key.field("timestamp.json"), error.to_string())),
        raw::RawTimestamp::Header(name) if name.is_empty() => Err(ConfigError::invalid(
            key.field("timestamp.header"),
            "must not be empty",
        )),
        raw::RawTimestamp::Header(name) => Ok(TimestampRule::Header(name)),
        raw::RawTimestamp::Record => Ok(TimestampRule::Record),
        raw::RawTimestamp::Arrival => Ok(TimestampRule::Arrival),
    }
}

/// The error names the feed and both values: either may come from `[defaults]`.
fn validate_thresholds(
    key: FeedKey,
    name: &str,
    warn_after: Duration,
    critical_after: Duration,
) -> Result<(), ConfigError> {
    if warn_after.is_zero() {
        return Err(ConfigError::invalid(
            key.field("warn_after"),
            "must be positive",
        ));
    }
    if critical_after <= warn_after {
        return Err(ConfigError::invalid(
            key.field("critical_after"),
            format!(
                "must be greater than warn_after (feed {:?}: warn_after {}, critical_after {})",
                name,
                humantime::format_duration(warn_after),
                humantime::format_duration(critical_after)
            ),
        ));
    }
    Ok(())
}

/// `expected` lists distinct split values, so it needs a split (and partition numbers for a
/// partition split).
fn validate_expected(
    key: FeedKey,
    expected: &[String],
    split: Option<&SplitRule>,
) -> Result<(), ConfigError> {
    if !expected.is_empty() && split.is_none() {
        return Err(ConfigError::invalid(
            key.field("expected"),
            "needs split_by: expected lists split values",
        ));
    }
    let mut expected_seen = HashSet::new();
    for (expected_index, value) in expected.iter().enumerate() {
        let value_key = || key.field(&format!("expected[{expected_index}]"));
        if !expected_seen.insert(value) {
            return Err(ConfigError::invalid(
                value_key(),
                format!("duplicate value {value:?}"),
            ));
        }
        if matches!(split, Some(SplitRule::Partition)) && value.parse::<u32>().is_err() {
            return Err(ConfigError::invalid(
                value_key(),
                format!("{value:?} is not a partition number"),
            ));
        }
    }
    Ok(())
}

/// Tail mode reads one record per partition: it can neither split nor read event time from it.
fn feed_mode(
    key: FeedKey,
    mode: raw::RawMode,
    split: Option<&SplitRule>,
    timestamp: &TimestampRule,
) -> Result<FeedMode, ConfigError> {
    match mode {
        raw::RawMode::Consume => Ok(FeedMode::Consume),
        raw::RawMode::Tail if split.is_some() => Err(ConfigError::invalid(
            key.field("mode"),
            "tail mode reads one record per partition, so it cannot split a feed",
        )),
        raw::RawMode::Tail
            if !matches!(timestamp, TimestampRule::Record | TimestampRule::Arrival) =>
        {
            Err(ConfigError::invalid(
                key.field("mode"),
                "tail mode needs timestamp = \"record\" or \"arrival\"",
            ))
        }
        raw::RawMode::Tail => Ok(FeedMode::Tail),
    }
}

/// The bounds on a split feed's series: how many, how long, and room for every expected value.
fn validate_key_limits(
    key: FeedKey,
    max_keys: usize,
    max_key_bytes: usize,
    expected_count: usize,
) -> Result<(), ConfigError> {
    if max_key_bytes == 0 {
        return Err(ConfigError::invalid(
            key.field("max_key_bytes"),
            "must be at least 1",
        ));
    }
    if max_keys == 0 {
        return Err(ConfigError::invalid(
            key.field("max_keys"),
            "must be at least 1",
        ));
    }
    if expected_count > max_keys {
        return Err(ConfigError::invalid(
            key.field("max_keys"),
            format!("is lower than the {expected_count} expected values"),
        ));
    }
    Ok(())
}
