//! The resolved config as `check-config` prints it: what the user meant, defaults filled in, and
//! no secret (URLs lose their credentials, paths and queries).

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    AlertsConfig, Config, FeedConfig, FeedMode, KafkaConfig, MinRate, SinkConfig, SinkKind,
    SplitRule, StateBackend, StateConfig, TimestampRule, TopicMatcher, VolumeConfig,
};

/// The resolved config as `check-config` prints it, with the thresholds in force now. Secrets
/// stay hidden.
pub fn describe(config: &Config) -> String {
    describe_at(config, chrono::Utc::now().timestamp_millis())
}

/// [`describe`] as of `now_ms` (unix ms): windowed feeds say what is in force then and what
/// changes next.
pub fn describe_at(config: &Config, now_ms: i64) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "config ok");
    if config.named_clusters {
        text.push_str(&describe_clusters(config));
    } else {
        text.push_str(&describe_kafka(&config.kafka));
    }
    text.push_str(&describe_state(&config.state));
    let _ = writeln!(text, "http: {}", config.http.listen);
    let _ = writeln!(
        text,
        "evaluation: every {}, max_future_skew {}",
        human(config.evaluation.interval),
        human(config.evaluation.max_future_skew)
    );
    let _ = writeln!(text, "feeds ({}):", config.feeds.len());
    for (index, feed) in config.feeds.iter().enumerate() {
        text.push_str(&describe_feed(feed));
        text.push_str(&describe_windows(feed, now_ms));
        if let Some(volume) = config.volume.iter().find(|volume| volume.feed == index) {
            text.push_str(&describe_volume(volume));
        }
    }
    text.push_str(&describe_alerts(&config.alerts));
    if let Some(heartbeat) = &config.heartbeat {
        let _ = writeln!(text, "heartbeat: every {}", human(heartbeat.interval));
    }
    text.push_str(&super::groups::describe(&config.groups));
    text.push_str(&super::pipeline::describe(&config.pipelines));
    text
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn describe_kafka(kafka: &KafkaConfig) -> String {
    format!(
        "kafka: brokers={} group_id={} start={} properties={}\n",
        kafka.brokers,
        kafka.group_id,
        kafka.start.as_str(),
        kafka.properties.len()
    )
}

/// One line per `[[cluster]]`: how it is reached, and what is watched on it.
fn describe_clusters(config: &Config) -> String {
    let mut text = format!("clusters ({}):\n", config.clusters.len());
    for (index, cluster) in config.clusters.iter().enumerate() {
        let feeds: Vec<&str> = config
            .cluster_feeds(index)
            .map(|feed| &*config.feeds[feed].name)
            .collect();
        let groups: Vec<&str> = config
            .groups
            .iter()
            .zip(&config.group_clusters)
            .filter(|(_, &on)| on == index)
            .map(|(group, _)| &*group.name)
            .collect();
        let kafka = &cluster.kafka;
        let _ = writeln!(
            text,
            "  {}: brokers={} group_id={} start={} properties={} feeds=[{}] groups=[{}]",
            cluster.name,
            kafka.brokers,
            kafka.group_id,
            kafka.start.as_str(),
            kafka.properties.len(),
            feeds.join(", "),
            groups.join(", ")
        );
    }
    text
}

fn describe_state(state: &StateConfig) -> String {
    match &state.backend {
        StateBackend::Redis { .. } | StateBackend::RedisCluster { .. } => format!(
            "state: redis (key prefix {}), flush every {}\n",
            state.key_prefix,
            human(state.flush_interval)
        ),
        StateBackend::Embedded { path } => format!(
            "state: embedded at {}, flush every {}\n",
            path.display(),
            human(state.flush_interval)
        ),
    }
}

/// One indented line: where the feed reads, how it splits, and when it pages.
fn describe_feed(feed: &FeedConfig) -> String {
    let topics = match &feed.topics {
        TopicMatcher::Exact(name) => format!("topic={name}"),
        TopicMatcher::Regex(regex) => format!("topic_regex={}", regex.as_str()),
    };
    let split = feed
        .split
        .as_ref()
        .map_or_else(|| "none".to_owned(), split_words);
    let timestamp = match &feed.timestamp {
        TimestampRule::Json(pointer) => format!("json {}", pointer.as_str()),
        TimestampRule::Header(name) => format!("header {name}"),
        TimestampRule::Record => "record".to_owned(),
        TimestampRule::Arrival => "arrival".to_owned(),
    };
    let hold = if feed.hold.is_zero() {
        String::new()
    } else {
        format!(" for={}", human(feed.hold))
    };
    // The thresholds above are ceilings of each series' learned ones.
    let learned = match &feed.learning {
        None => String::new(),
        Some(learning) => {
            format!(
                " thresholds=learned learn_min_gaps={} warn_after_min={} critical_after_min={}{}",
                learning.min_gaps,
                human(std::time::Duration::from_millis(
                    learning.warn_floor_ms as u64
                )),
                human(std::time::Duration::from_millis(
                    learning.critical_floor_ms as u64
                )),
                match learning.by_hour {
                    Some(clock) => format!(" learn_by_hour={}", clock.timezone.name()),
                    None => String::new(),
                },
            ) + &if learning.min_span_ms == crate::cadence::WARM_UP_SPAN_MS {
                String::new()
            } else {
                format!(
                    " learn_min_span={}",
                    human(std::time::Duration::from_millis(
                        learning.min_span_ms as u64
                    ))
                )
            }
        }
    };
    let expected = if feed.expected.is_empty() {
        String::new()
    } else {
        format!(" expected=[{}]", feed.expected.join(", "))
    };
    let limits = match (feed.mode, &feed.split) {
        (FeedMode::Tail, _) => " mode=tail".to_owned(),
        (FeedMode::Consume, Some(_)) => format!(" max_keys={}", feed.max_keys),
        (FeedMode::Consume, None) => String::new(),
    };
    format!(
        "  {}: {topics} split_by={split} timestamp={timestamp} warn_after={} critical_after={}{learned}{hold}{expected}{limits}\n",
        feed.name,
        human(feed.warn_after),
        human(feed.critical_after),
    )
}

/// For a feed with windows, one line per window, then what is in force at `now_ms` and the next
/// change (when, and to what). Nothing for a feed without windows.
fn describe_windows(feed: &FeedConfig, now_ms: i64) -> String {
    if feed.windows.is_empty() {
        return String::new();
    }
    let mut text = String::new();
    for (index, window) in feed.windows.iter().enumerate() {
        let holidays = if window.holidays.is_empty() {
            String::new()
        } else {
            format!(" holidays={}", window.holidays.len())
        };
        let _ = writeln!(
            text,
            "    window[{index}]: days={} hours={} timezone={}{holidays} {}",
            window.days,
            window.hours,
            window.timezone.name(),
            describe_in_force(&window.thresholds),
        );
    }
    let schedule = feed.schedule();
    let now = schedule.in_force(now_ms);
    let _ = writeln!(
        text,
        "    in force now: {} {}",
        describe_regime(now.window),
        describe_in_force(&now.thresholds)
    );
    let _ = match schedule.next_change(now_ms) {
        Some(change) => writeln!(
            text,
            "    next change: {} to {} {}",
            crate::clock::rfc3339(change.at_ms),
            describe_regime(change.to.window),
            describe_in_force(&change.to.thresholds)
        ),
        None => writeln!(
            text,
            "    next change: none within {}",
            human(Duration::from_millis(crate::schedule::LOOK_AHEAD_MS as u64))
        ),
    };
    text
}

/// For a feed with `min_rate`, one line: the rate it must keep (fixed, or `drop_ratio` of the
/// learned baseline, which lives in the state store and so is not printed), for how long, over
/// which window, and per key.
fn describe_volume(volume: &VolumeConfig) -> String {
    let min_rate = match volume.min_rate {
        MinRate::PerSecond(per_second) => crate::volume::format_rate(per_second),
        MinRate::Learned { drop_ratio } => {
            format!(
                "learned (hour-of-week baseline, {}) drop_ratio={drop_ratio}",
                volume.hours.timezone.name()
            )
        }
    };
    let by_key = if volume.by_key {
        format!(" volume_by_key=true volume_max_keys={}", volume.max_keys)
    } else {
        String::new()
    };
    format!(
        "    volume: min_rate={min_rate} volume_for={} volume_window={}{by_key}\n",
        human(volume.hold),
        human(volume.window),
    )
}

fn describe_regime(window: Option<usize>) -> String {
    match window {
        Some(index) => format!("window[{index}]"),
        None => "the feed's own".to_owned(),
    }
}

fn describe_in_force(thresholds: &crate::schedule::Thresholds) -> String {
    let millis = |millis: i64| human(Duration::from_millis(millis.max(0) as u64));
    if thresholds.expect_nothing {
        return "expect=nothing (silence is normal: no new alert)".to_owned();
    }
    format!(
        "warn_after={} critical_after={}",
        millis(thresholds.warn_after_ms),
        millis(thresholds.critical_after_ms)
    )
}

fn describe_alerts(alerts: &AlertsConfig) -> String {
    let mut text = format!(
        "alerts: {} alertmanager, {} notification sinks{}\n",
        alerts.alertmanager.len(),
        alerts.sinks.len(),
        if alerts.watchdog { ", watchdog on" } else { "" }
    );
    for sink in &alerts.alertmanager {
        let _ = writeln!(
            text,
            "  {} (alertmanager) -> {}",
            sink.name,
            redact_url(&sink.url)
        );
    }
    for sink in &alerts.sinks {
        text.push_str(&describe_sink(sink));
    }
    text
}

/// One indented line: where the sink delivers, from which severity, and its fallback.
fn describe_sink(sink: &SinkConfig) -> String {
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
    let fallback = if sink.fallback.is_empty() {
        String::new()
    } else {
        format!(
            " fallback=[{}] after {}",
            sink.fallback.join(", "),
            human(sink.fallback_after)
        )
    };
    format!(
        "  {} ({}) -> {target}; min_severity={}{fallback}\n",
        sink.name,
        sink.kind.kind(),
        sink.min_severity,
    )
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

/// A split rule (or an audit's id) as `check-config` prints it.
pub(super) fn split_words(rule: &SplitRule) -> String {
    match rule {
        SplitRule::Json(pointer) => format!("json {}", pointer.as_str()),
        SplitRule::Header(name) => format!("header {name}"),
        SplitRule::Key => "key".to_owned(),
        SplitRule::Partition => "partition".to_owned(),
    }
}
