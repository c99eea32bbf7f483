//! Consumer groups watched from outside: lag in records and in time, stalls, and the
//! data-loss countdown.
//!
//! The seed incident's feeder did not stop producing; it stopped consuming, and retention
//! deleted what it never read. [`watcher`] reads, every `kafka.groups_interval`, each watched
//! group's committed offsets, the partitions' watermarks, and the one record at each committed
//! offset (only when the commit moved): O(partitions) per round, never O(records), and it never
//! joins the group or commits for it. [`judge`] turns that into a [`TopicView`] per (group,
//! topic), and the app raises `ConsumerGroupLagging`, `DataLossImminent` and `DataLost` from the
//! changes, through the same sinks and outbox as feed alerts.

pub mod watcher;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::GroupConfig;
use crate::model::Severity;

/// How long a topic keeps records, and who said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retention {
    /// `retention.ms`, in ms.
    Time(i64),
    /// `retention.ms = -1`: nothing expires by age.
    Forever,
    /// Only size-based retention (or none readable): no time can be given.
    Unknown,
}

/// Where [`Retention`] came from: the API's `retention_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionSource {
    Broker,
    Config,
    Unknown,
}

/// What is known of one partition of a watched group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The group's committed offset; -1 while it has none.
    pub committed: i64,
    /// When the committed offset last moved (or was first seen), unix ms.
    pub committed_moved_at_ms: i64,
    pub low: i64,
    pub high: i64,
    /// The first unread record (the one at the committed offset, or the oldest left when that
    /// one expired): its offset and timestamp.
    pub first_unread: Option<(i64, i64)>,
    /// Records that expired unread, counted once each.
    pub lost_records: u64,
    /// The log start up to which losses are counted.
    pub lost_counted_to: i64,
    /// The event-time range of what expired unread, when known: from the first unread record
    /// seen before it expired to the oldest record left after.
    pub lost_range_ms: Option<(i64, i64)>,
}

impl PartitionState {
    pub fn lag_records(&self) -> i64 {
        if self.committed < 0 {
            return 0;
        }
        (self.high - self.committed).max(0)
    }

    /// Takes a new committed offset and watermarks at `now_ms`; counts what expired unread.
    pub fn observe(&mut self, committed: i64, low: i64, high: i64, now_ms: i64) {
        if committed != self.committed || self.committed_moved_at_ms == 0 {
            self.committed_moved_at_ms = now_ms;
        }
        if committed != self.committed {
            self.first_unread = None;
        }
        self.committed = committed;
        self.low = low;
        self.high = high;
        if committed >= 0 && low > committed {
            // Records between the commit and the log start are gone: count each once.
            let from = committed.max(self.lost_counted_to);
            if low > from {
                self.lost_records += (low - from) as u64;
                self.lost_counted_to = low;
            }
        }
    }

    /// The record found at (or after) the committed offset. When it is past the commit, what
    /// lay between expired: the range runs from the first unread record known before to it.
    pub fn found_first_unread(&mut self, offset: i64, timestamp_ms: i64) {
        if offset > self.committed && self.committed >= 0 {
            let since = self
                .first_unread
                .filter(|(known, _)| *known < offset)
                .map(|(_, known_ms)| known_ms);
            if let Some(since_ms) = since {
                let start = self.lost_range_ms.map_or(since_ms, |(start, _)| start);
                self.lost_range_ms = Some((start.min(since_ms), timestamp_ms));
            }
        }
        self.first_unread = Some((offset, timestamp_ms));
    }

    /// Whether the record at the committed offset must be (re)read.
    pub fn needs_first_unread(&self) -> bool {
        self.committed >= 0
            && self.committed < self.high
            && self
                .first_unread
                .is_none_or(|(offset, _)| offset < self.committed.max(self.low))
    }
}

/// Alerts firing for one (group, topic), persisted so a restart neither repeats nor forgets
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub lagging: Option<Severity>,
    pub loss: Option<Severity>,
    pub lost: bool,
}

/// One watched (group, topic).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicState {
    /// Index of the `[[group]]` that watches it.
    pub rules: usize,
    pub group_id: String,
    pub partitions: BTreeMap<i32, PartitionState>,
    pub firing: Firing,
    /// When each firing alert began, by alertname, unix ms: its resolve carries it, so a silence
    /// holds the resolve only of an alert that began inside it (one paged before the silence
    /// must be told it ended). Persisted with `firing`; absent in state from older versions.
    #[serde(default)]
    pub began_ms: BTreeMap<String, i64>,
    #[serde(skip)]
    pub retention: Option<(Retention, RetentionSource)>,
    #[serde(skip)]
    pub members: Option<usize>,
    /// When the watcher last read this topic's offsets, unix ms (0: not this run).
    #[serde(skip)]
    pub observed_at_ms: i64,
    /// Changed since the last state flush.
    #[serde(skip)]
    pub dirty: bool,
}

impl TopicState {
    /// Takes what the previous leader stored: its firing alerts, and for commits that still
    /// stand where it saw them, the earlier moment they last moved.
    pub fn adopt(&mut self, stored: TopicState) {
        self.firing = stored.firing;
        self.began_ms = stored.began_ms;
        for (partition, theirs) in stored.partitions {
            match self.partitions.get_mut(&partition) {
                Some(own) if own.committed == theirs.committed => {
                    own.committed_moved_at_ms =
                        own.committed_moved_at_ms.min(theirs.committed_moved_at_ms);
                    own.lost_records = own.lost_records.max(theirs.lost_records);
                    own.lost_range_ms = own.lost_range_ms.or(theirs.lost_range_ms);
                }
                Some(_) => {}
                None => {
                    self.partitions.insert(partition, theirs);
                }
            }
        }
        self.dirty = true;
    }
}

/// The `group` label and topic.
pub type GroupTopic = (Arc<str>, String);

/// Every watched (group, topic), shared by the watcher (writes) and the app (judges).
pub type GroupsTable = BTreeMap<GroupTopic, TopicState>;

/// A (group, topic)'s status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStatus {
    Ok,
    Warning,
    Critical,
    Stalled,
    Unknown,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Ok => "ok",
            GroupStatus::Warning => "warning",
            GroupStatus::Critical => "critical",
            GroupStatus::Stalled => "stalled",
            GroupStatus::Unknown => "unknown",
        }
    }

    /// The `freshwatch_group_status` value.
    pub fn gauge_value(self) -> i64 {
        match self {
            GroupStatus::Ok => 0,
            GroupStatus::Warning => 1,
            GroupStatus::Critical => 2,
            GroupStatus::Stalled => 3,
            GroupStatus::Unknown => 4,
        }
    }

    pub fn rank(self) -> u8 {
        match self {
            GroupStatus::Critical => 4,
            GroupStatus::Warning => 3,
            GroupStatus::Stalled => 2,
            GroupStatus::Unknown => 1,
            GroupStatus::Ok => 0,
        }
    }
}

/// What the API, metrics and alerts show of one (group, topic).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicView {
    pub group: String,
    pub group_id: String,
    pub topic: String,
    pub status: GroupStatus,
    pub lag_seconds: Option<f64>,
    pub lag_records: i64,
    pub loss_eta_seconds: Option<f64>,
    pub expires_at: Option<String>,
    #[serde(skip)]
    pub expires_at_ms: Option<i64>,
    pub records_lost: u64,
    pub lost_from: Option<String>,
    pub lost_to: Option<String>,
    pub members: Option<usize>,
    pub committed_moved_at: Option<String>,
    pub retention_seconds: Option<f64>,
    pub retention_source: RetentionSource,
    /// Partitions whose commit sits below the log start right now.
    pub partitions_lost: Vec<i32>,
    /// Per partition: lag in records and seconds, for the status page.
    pub partitions: Vec<PartitionView>,
    #[serde(skip)]
    pub wants: Firing,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub committed: i64,
    pub high: i64,
    pub lag_records: i64,
    pub lag_seconds: Option<f64>,
    pub committed_moved_at: String,
}

/// The thresholds of a `[[group]]` in ms.
#[derive(Debug, Clone)]
pub struct GroupRules {
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    pub stall_after_ms: i64,
    pub retention: Option<i64>,
    pub loss_warn_before_ms: i64,
    pub loss_critical_before_ms: i64,
}

impl GroupRules {
    pub fn from_config(group: &GroupConfig) -> Self {
        let ms =
            |duration: std::time::Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        GroupRules {
            warn_after_ms: ms(group.warn_after),
            critical_after_ms: ms(group.critical_after),
            stall_after_ms: ms(group.stall_after),
            retention: group.retention.map(ms),
            loss_warn_before_ms: ms(group.loss_warn_before),
            loss_critical_before_ms: ms(group.loss_critical_before),
        }
    }
}

/// Judges one (group, topic) at `now_ms`. `known`: the watcher read it recently; when not, the
/// status is `unknown` and the alerts stay as they are (never worse, never resolved).
pub fn judge(
    group: &str,
    topic: &str,
    state: &TopicState,
    rules: &GroupRules,
    now_ms: i64,
    known: bool,
) -> TopicView {
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let (retention, retention_source) = match rules.retention {
        Some(ms) => (Retention::Time(ms), RetentionSource::Config),
        None => state
            .retention
            .unwrap_or((Retention::Unknown, RetentionSource::Unknown)),
    };
    let mut lag_records = 0;
    let mut lag_ms: Option<i64> = Some(0);
    let mut stalled = state.members == Some(0);
    let mut any_behind = false;
    let mut expires_at_ms: Option<i64> = None;
    let mut records_lost = 0;
    let mut partitions_lost = Vec::new();
    let mut lost_range: Option<(i64, i64)> = None;
    let mut last_moved_ms = 0;
    let mut partitions = Vec::new();
    for (&partition, part) in &state.partitions {
        let behind = part.lag_records();
        lag_records += behind;
        records_lost += part.lost_records;
        last_moved_ms = last_moved_ms.max(part.committed_moved_at_ms);
        if let Some(range) = part.lost_range_ms {
            lost_range = Some(lost_range.map_or(range, |(start, end): (i64, i64)| {
                (start.min(range.0), end.max(range.1))
            }));
        }
        if part.committed >= 0 && part.low > part.committed {
            partitions_lost.push(partition);
        }
        let partition_lag_ms = if behind == 0 {
            Some(0)
        } else {
            part.first_unread
                .map(|(_, timestamp_ms)| now_ms.saturating_sub(timestamp_ms).max(0))
        };
        if behind > 0 {
            any_behind = true;
            if now_ms.saturating_sub(part.committed_moved_at_ms) >= rules.stall_after_ms {
                stalled = true;
            }
            if let (Retention::Time(keep_ms), Some((_, first_ms))) = (retention, part.first_unread)
            {
                let expires = first_ms.saturating_add(keep_ms);
                expires_at_ms = Some(expires_at_ms.map_or(expires, |known| known.min(expires)));
            }
        }
        lag_ms = match (lag_ms, partition_lag_ms) {
            (Some(worst), Some(this)) => Some(worst.max(this)),
            _ => None,
        };
        partitions.push(PartitionView {
            partition,
            committed: part.committed,
            high: part.high,
            lag_records: behind,
            lag_seconds: partition_lag_ms.map(seconds),
            committed_moved_at: crate::clock::rfc3339(part.committed_moved_at_ms),
        });
    }
    let stalled = stalled && any_behind;
    let lag_severity = lag_ms.and_then(|lag| {
        if lag >= rules.critical_after_ms {
            Some(Severity::Critical)
        } else if lag >= rules.warn_after_ms {
            Some(Severity::Warning)
        } else {
            None
        }
    });
    let loss_eta_ms = expires_at_ms.map(|expires| expires.saturating_sub(now_ms));
    let loss_severity = loss_eta_ms.and_then(|eta| {
        if eta <= rules.loss_critical_before_ms {
            Some(Severity::Critical)
        } else if eta <= rules.loss_warn_before_ms {
            Some(Severity::Warning)
        } else {
            None
        }
    });
    let status = if !known {
        GroupStatus::Unknown
    } else {
        match lag_severity {
            Some(Severity::Critical) => GroupStatus::Critical,
            Some(Severity::Warning) => GroupStatus::Warning,
            None if stalled => GroupStatus::Stalled,
            None => GroupStatus::Ok,
        }
    };
    let wants = if known {
        Firing {
            // A stall pages as a warning unless the lag is already critical.
            lagging: lag_severity.or(stalled.then_some(Severity::Warning)),
            loss: loss_severity,
            lost: !partitions_lost.is_empty(),
        }
    } else {
        state.firing.clone()
    };
    TopicView {
        group: group.to_owned(),
        group_id: state.group_id.clone(),
        topic: topic.to_owned(),
        status,
        lag_seconds: lag_ms.map(seconds),
        lag_records,
        loss_eta_seconds: loss_eta_ms.map(seconds),
        expires_at: expires_at_ms.map(crate::clock::rfc3339),
        expires_at_ms,
        records_lost,
        lost_from: lost_range.map(|(start, _)| crate::clock::rfc3339(start)),
        lost_to: lost_range.map(|(_, end)| crate::clock::rfc3339(end)),
        members: state.members,
        committed_moved_at: (last_moved_ms > 0).then(|| crate::clock::rfc3339(last_moved_ms)),
        retention_seconds: match retention {
            Retention::Time(ms) => Some(seconds(ms)),
            Retention::Forever | Retention::Unknown => None,
        },
        retention_source,
        partitions_lost,
        partitions,
        wants,
    }
}

#[cfg(test)]
mod tests;

/// `alertname` of a group behind in time or stalled.
pub const LAGGING: &str = "ConsumerGroupLagging";
/// `alertname` of unread records about to expire.
pub const LOSS_IMMINENT: &str = "DataLossImminent";
/// `alertname` of unread records that expired.
pub const LOST: &str = "DataLost";

/// Judges every watched (group, topic) at `now_ms`. Returns the views, and for `leader` the
/// alert changes (a new severity first resolves the old one, as feed alerts do), updating
/// what is firing. A (group, topic) read less recently than `known_since_ms` is `unknown`.
pub fn evaluate(
    table: &mut GroupsTable,
    rules: &[GroupRules],
    now_ms: i64,
    known_since_ms: i64,
    leader: bool,
) -> (Vec<TopicView>, Vec<crate::alert::SystemAlert>) {
    let mut views = Vec::with_capacity(table.len());
    let mut alerts = Vec::new();
    for ((label, topic), state) in table.iter_mut() {
        let Some(group_rules) = rules.get(state.rules) else {
            continue;
        };
        let known = state.observed_at_ms >= known_since_ms;
        let view = judge(label, topic, state, group_rules, now_ms, known);
        if leader && view.wants != state.firing {
            alerts.extend(changes(&view, &state.firing, now_ms, &mut state.began_ms));
            state.firing = view.wants.clone();
            state.dirty = true;
        }
        views.push(view);
    }
    views.sort_by(|a, b| {
        b.status
            .rank()
            .cmp(&a.status.rank())
            .then_with(|| {
                let lag = |view: &TopicView| view.lag_seconds.unwrap_or(f64::INFINITY);
                lag(b).total_cmp(&lag(a))
            })
            .then_with(|| (&a.group, &a.topic).cmp(&(&b.group, &b.topic)))
    });
    (views, alerts)
}

/// The alerts still firing in `table`, to hand to Alertmanager again after a restart or a
/// change of leader (notification sinks are not paged again).
pub fn firing(table: &GroupsTable, now_ms: i64) -> Vec<crate::alert::SystemAlert> {
    let mut alerts = Vec::new();
    for ((label, topic), state) in table {
        let quiet = Firing::default();
        let view = TopicView {
            group: label.to_string(),
            group_id: state.group_id.clone(),
            topic: topic.clone(),
            status: GroupStatus::Unknown,
            lag_seconds: None,
            lag_records: 0,
            loss_eta_seconds: None,
            expires_at: None,
            expires_at_ms: None,
            records_lost: state
                .partitions
                .values()
                .map(|part| part.lost_records)
                .sum(),
            lost_from: None,
            lost_to: None,
            members: None,
            committed_moved_at: None,
            retention_seconds: None,
            retention_source: RetentionSource::Unknown,
            partitions_lost: Vec::new(),
            partitions: Vec::new(),
            wants: state.firing.clone(),
        };
        // Each as it began (`now` only for state from before the start was recorded).
        let mut began_ms = state.began_ms.clone();
        alerts.extend(changes(&view, &quiet, now_ms, &mut began_ms));
    }
    alerts
}

/// The alerts that resolve and start going from `old` to what `view` wants. A start records in
/// `began_ms` when it began (`now_ms`, unless already recorded); a resolve carries that moment
/// and forgets it (`now_ms` when it was never recorded).
fn changes(
    view: &TopicView,
    old: &Firing,
    now_ms: i64,
    began_ms: &mut BTreeMap<String, i64>,
) -> Vec<crate::alert::SystemAlert> {
    let mut alerts = Vec::new();
    let mut change = |alertname: &'static str, old: Option<Severity>, new: Option<Severity>| {
        if old == new {
            return;
        }
        if let Some(severity) = old {
            let began = began_ms.remove(alertname).unwrap_or(now_ms);
            alerts.push(alert(view, alertname, severity, false, began));
        }
        if let Some(severity) = new {
            let began = *began_ms.entry(alertname.to_owned()).or_insert(now_ms);
            alerts.push(alert(view, alertname, severity, true, began));
        }
    };
    change(LAGGING, old.lagging, view.wants.lagging);
    change(LOSS_IMMINENT, old.loss, view.wants.loss);
    change(
        LOST,
        old.lost.then_some(Severity::Critical),
        view.wants.lost.then_some(Severity::Critical),
    );
    alerts
}

fn alert(
    view: &TopicView,
    alertname: &'static str,
    severity: Severity,
    firing: bool,
    began_ms: i64,
) -> crate::alert::SystemAlert {
    crate::alert::SystemAlert {
        alertname,
        severity,
        labels: vec![("group", view.group.clone()), ("topic", view.topic.clone())],
        summary: summary(view, alertname, firing),
        firing,
        since_ms: began_ms,
    }
}

/// In words, for pages: what on-call needs to act on.
pub fn summary(view: &TopicView, alertname: &str, firing: bool) -> String {
    let group = &view.group;
    let topic = &view.topic;
    if !firing {
        return match alertname {
            LAGGING => format!("Consumer group {group} is keeping up with {topic} again"),
            LOSS_IMMINENT => {
                format!("Unread records of {topic} are no longer about to expire for consumer group {group}")
            }
            _ => format!("Consumer group {group} reads {topic} from its log start again"),
        };
    }
    match alertname {
        LAGGING => {
            let lag = view
                .lag_seconds
                .map(|seconds| crate::clock::human_duration_ms((seconds * 1000.0) as i64));
            let behind = format!("{} records behind", view.lag_records);
            match (view.status, lag) {
                (GroupStatus::Stalled, _) if view.members == Some(0) => format!(
                    "Consumer group {group} has no active members while {behind} on {topic}"
                ),
                (GroupStatus::Stalled, _) => {
                    format!(
                    "Consumer group {group} has not committed on {topic} since {} while {behind}",
                    view.committed_moved_at.as_deref().unwrap_or("it was first seen")
                )
                }
                (_, Some(lag)) => {
                    format!("Consumer group {group} is {lag} behind on {topic} ({behind})")
                }
                (_, None) => format!("Consumer group {group} is {behind} on {topic}"),
            }
        }
        LOSS_IMMINENT => {
            let deadline = view
                .expires_at_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|time| time.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "soon".into());
            let eta = view
                .loss_eta_seconds
                .map(|seconds| crate::clock::human_duration_ms((seconds * 1000.0) as i64))
                .unwrap_or_default();
            format!(
                "unread records of {topic} start expiring at {deadline} (in {eta}) for consumer group {group}"
            )
        }
        _ => {
            let partitions: Vec<String> = view.partitions_lost.iter().map(i32::to_string).collect();
            let span = match (&view.lost_from, &view.lost_to) {
                (Some(from), Some(to)) => format!(" (event times {from} to {to})"),
                _ => String::new(),
            };
            format!(
                "{} records of {topic} expired unread on partition {} for consumer group {group}{span}",
                view.records_lost,
                partitions.join(", ")
            )
        }
    }
}
