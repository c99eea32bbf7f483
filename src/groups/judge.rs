//! The verdict on one watched (group, topic): its status, lag, countdown and the alerts it
//! wants, and the words on-call reads. Facts come from the watcher; the rule is here.

use serde::Serialize;

use super::{
    Firing, GroupRules, Retention, RetentionSource, TopicState, LAGGING, LOSS_IMMINENT, MISSING,
};
use crate::clock::{human_duration_ms, rfc3339};
use crate::model::Severity;

/// A (group, topic)'s status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStatus {
    Ok,
    Warning,
    Critical,
    Stalled,
    Unknown,
    /// No committed offset on a partition that holds records, or a commit that vanished.
    NoCommits,
    /// A commit above the high watermark.
    OffsetOutOfRange,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Ok => "ok",
            GroupStatus::Warning => "warning",
            GroupStatus::Critical => "critical",
            GroupStatus::Stalled => "stalled",
            GroupStatus::Unknown => "unknown",
            GroupStatus::NoCommits => "no_commits",
            GroupStatus::OffsetOutOfRange => "offset_out_of_range",
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
            GroupStatus::NoCommits => 5,
            GroupStatus::OffsetOutOfRange => 6,
        }
    }

    pub fn rank(self) -> u8 {
        match self {
            GroupStatus::NoCommits => 6,
            GroupStatus::Critical => 5,
            GroupStatus::OffsetOutOfRange => 4,
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
    /// Records behind, over the partitions with a commit.
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
    /// Records per second committed and produced over the last rounds (`None` before two).
    pub consume_rate: Option<f64>,
    pub produce_rate: Option<f64>,
    /// At the current rates, when the group will have caught up: 0 when it has, `None` when it
    /// is not catching up (or the rates are not known yet).
    pub catchup_eta_seconds: Option<f64>,
    /// When freshwatch first watched it.
    pub first_watched_at: Option<String>,
    /// Partitions that hold records and where the group has no committed offset.
    pub partitions_without_commits: Vec<i32>,
    /// Partitions whose commit vanished after freshwatch saw it: judged from the last one seen.
    pub partitions_vanished: Vec<i32>,
    /// Partitions whose commit lies above the high watermark.
    pub partitions_out_of_range: Vec<i32>,
    /// Partitions whose commit sits below the log start right now.
    pub partitions_lost: Vec<i32>,
    /// Per partition: lag in records and seconds, for the status page.
    pub partitions: Vec<PartitionView>,
    #[serde(skip)]
    pub wants: Firing,
    /// The active silence holding its notifications, and the broken pipeline hop upstream when
    /// that silence is a pipeline's hold (filled by the API from the silences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// The words for `ConsumerGroupMissing`, when it has a cause.
    #[serde(skip)]
    pub missing_cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    /// -1 when the group has none.
    pub committed: i64,
    pub high: i64,
    pub lag_records: i64,
    pub lag_seconds: Option<f64>,
    pub committed_moved_at: String,
    /// When the commit vanished from the broker.
    pub vanished_at: Option<String>,
}

/// Judges one (group, topic) at `now_ms`. What was read before `known_since_ms` is not known:
/// the whole (group, topic) is then `unknown` and its alerts stay as they are; a single
/// partition not read, or a lag in time not known yet, keeps the alert it concerns where it
/// was (never worse, never resolved by not knowing).
pub fn judge(
    group: &str,
    topic: &str,
    state: &TopicState,
    rules: &GroupRules,
    now_ms: i64,
    known_since_ms: i64,
) -> TopicView {
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let known = state.observed_at_ms >= known_since_ms && state.observed_at_ms > 0;
    let (retention, retention_source) = match (rules.retention, state.retention) {
        (Some(ms), _) => (Retention::Time(ms), RetentionSource::Config),
        (None, Some(read)) => read,
        (None, None) => (Retention::Unknown, RetentionSource::Unknown),
    };
    let mut lag_records = 0;
    let mut lag_ms: Option<i64> = Some(0);
    let mut loss_known = true;
    let mut any_behind = false;
    let mut expires_at_ms: Option<i64> = None;
    let mut records_lost = 0;
    let mut without_commits = Vec::new();
    let mut vanished = Vec::new();
    let mut out_of_range = Vec::new();
    let mut partitions_lost = Vec::new();
    let mut lost_range: Option<(i64, i64)> = None;
    let mut last_moved_ms = 0;
    let mut partitions = Vec::new();
    for (&partition, part) in &state.partitions {
        let read = part.read_at_ms >= known_since_ms && part.read_at_ms > 0;
        records_lost += part.lost_records;
        if let Some(range) = part.lost_range_ms {
            lost_range = Some(lost_range.map_or(range, |(start, end): (i64, i64)| {
                (start.min(range.0), end.max(range.1))
            }));
        }
        let behind = part.lag_records();
        let partition_lag_ms = if !part.has_commit() {
            if part.high > part.low {
                without_commits.push(partition);
            }
            (part.high <= part.low).then_some(0)
        } else if part.out_of_range() {
            out_of_range.push(partition);
            None
        } else if behind == 0 {
            Some(0)
        } else {
            part.first_unread_now()
                .map(|(_, timestamp_ms)| now_ms.saturating_sub(timestamp_ms).max(0))
        };
        let partition_lag_ms = partition_lag_ms.filter(|_| read);
        if part.has_commit() {
            last_moved_ms = last_moved_ms.max(part.committed_moved_at_ms);
            if part.vanished_at_ms.is_some() {
                vanished.push(partition);
            }
            if part.low > part.committed {
                partitions_lost.push(partition);
            }
        }
        if behind > 0 {
            any_behind = true;
            lag_records += behind;
            match (retention, part.first_unread_now()) {
                (Retention::Time(keep_ms), Some((_, first_ms))) if read => {
                    let expires = first_ms.saturating_add(keep_ms);
                    expires_at_ms = Some(expires_at_ms.map_or(expires, |known| known.min(expires)));
                }
                (Retention::Time(_), _) => loss_known = false,
                _ => {}
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
            committed_moved_at: rfc3339(part.committed_moved_at_ms),
            vanished_at: part.vanished_at_ms.map(rfc3339),
        });
    }
    // Stalled: behind while no commit has moved for `stall_after`, whatever the member count
    // (Flink and `assign()` consumers commit without membership).
    let stalled = any_behind && now_ms.saturating_sub(last_moved_ms) >= rules.stall_after_ms;
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
    let watched_long_enough = state.first_watched_ms > 0
        && now_ms.saturating_sub(state.first_watched_ms) >= rules.critical_after_ms;
    let (missing, missing_cause) = missing(
        group,
        topic,
        state,
        &vanished,
        &without_commits,
        &out_of_range,
        watched_long_enough,
    );
    let status = if !known {
        GroupStatus::Unknown
    } else if !vanished.is_empty() || !without_commits.is_empty() {
        GroupStatus::NoCommits
    } else if !out_of_range.is_empty() {
        GroupStatus::OffsetOutOfRange
    } else {
        match lag_severity {
            Some(Severity::Critical) => GroupStatus::Critical,
            Some(Severity::Warning) => GroupStatus::Warning,
            None if stalled => GroupStatus::Stalled,
            None if lag_ms.is_none() && any_behind => GroupStatus::Unknown,
            None => GroupStatus::Ok,
        }
    };
    let wants = if known {
        let lagging = match lag_ms {
            Some(_) => lag_severity,
            None => state.firing.lagging,
        };
        let loss = if loss_known {
            loss_severity
        } else {
            state.firing.loss.max(loss_severity)
        };
        Firing {
            // A stall pages as a warning unless the lag is already critical.
            lagging: lagging.max(stalled.then_some(Severity::Warning)),
            loss,
            lost: !partitions_lost.is_empty(),
            missing,
        }
    } else {
        state.firing.clone()
    };
    let rates = state.trend.rates();
    let catchup_eta_seconds = match rates {
        _ if lag_records == 0 && lag_ms == Some(0) => Some(0.0),
        Some((consumed, produced)) if consumed > produced => {
            Some(lag_records as f64 / (consumed - produced))
        }
        _ => None,
    };
    TopicView {
        silenced_by: None,
        held_by: None,
        group: group.to_owned(),
        group_id: state.group_id.clone(),
        topic: topic.to_owned(),
        status,
        lag_seconds: lag_ms.map(seconds),
        lag_records,
        loss_eta_seconds: loss_eta_ms.map(seconds),
        expires_at: expires_at_ms.map(rfc3339),
        expires_at_ms,
        records_lost,
        lost_from: lost_range.map(|(start, _)| rfc3339(start)),
        lost_to: lost_range.map(|(_, end)| rfc3339(end)),
        members: state.members,
        committed_moved_at: (last_moved_ms > 0).then(|| rfc3339(last_moved_ms)),
        retention_seconds: match retention {
            Retention::Time(ms) => Some(seconds(ms)),
            Retention::Forever | Retention::Compacted | Retention::Unknown => None,
        },
        retention_source,
        consume_rate: rates.map(|(consumed, _)| consumed),
        produce_rate: rates.map(|(_, produced)| produced),
        catchup_eta_seconds,
        first_watched_at: (state.first_watched_ms > 0).then(|| rfc3339(state.first_watched_ms)),
        partitions_without_commits: without_commits,
        partitions_vanished: vanished,
        partitions_out_of_range: out_of_range,
        partitions_lost,
        partitions,
        wants,
        missing_cause,
    }
}

/// `ConsumerGroupMissing`'s severity and words: a commit that vanished pages at once; no commit
/// at all once the group had `critical_after` to make one; a commit above the watermark warns.
fn missing(
    group: &str,
    topic: &str,
    state: &TopicState,
    vanished: &[i32],
    without_commits: &[i32],
    out_of_range: &[i32],
    watched_long_enough: bool,
) -> (Option<Severity>, Option<String>) {
    if let Some(partition) = vanished.first() {
        let part = &state.partitions[partition];
        return (
            Some(Severity::Critical),
            Some(format!(
                "Consumer group {group} has no committed offsets on {topic}: committed offsets vanished (last seen: offset {} on partition {partition}, committed by {}, gone since {}; {} partition(s)): deleted, or expired by offsets.retention.minutes while the group was dead. Lag and loss are judged from the last commit seen",
                part.committed,
                rfc3339(part.committed_moved_at_ms),
                rfc3339(part.vanished_at_ms.unwrap_or_default()),
                vanished.len()
            )),
        );
    }
    if !without_commits.is_empty() {
        let cause = format!(
            "Consumer group {group} has no committed offsets on {topic} ({} partition(s) holding records, watched since {}): never committed, deleted, misspelt group_id, or expired by offsets.retention.minutes",
            without_commits.len(),
            rfc3339(state.first_watched_ms)
        );
        return (
            watched_long_enough.then_some(Severity::Critical),
            Some(cause),
        );
    }
    if let Some(partition) = out_of_range.first() {
        let part = &state.partitions[partition];
        return (
            Some(Severity::Warning),
            Some(format!(
                "Consumer group {group} has committed offset {} above the high watermark {} on {topic} partition {partition} ({} partition(s)): the topic was recreated or truncated under it, and its lag cannot be told",
                part.committed,
                part.high,
                out_of_range.len()
            )),
        );
    }
    (None, None)
}

/// A view of what is stored, without judging it: to resolve or re-announce what fires.
pub fn unwatched(group: &str, topic: &str, state: &TopicState) -> TopicView {
    TopicView {
        silenced_by: None,
        held_by: None,
        group: group.to_owned(),
        group_id: state.group_id.clone(),
        topic: topic.to_owned(),
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
        consume_rate: None,
        produce_rate: None,
        catchup_eta_seconds: None,
        first_watched_at: None,
        partitions_without_commits: Vec::new(),
        partitions_vanished: Vec::new(),
        partitions_out_of_range: Vec::new(),
        partitions_lost: Vec::new(),
        partitions: Vec::new(),
        wants: Firing::default(),
        missing_cause: None,
    }
}

/// In words, for pages: what on-call needs to act on.
pub fn summary(view: &TopicView, alertname: &str, firing: bool) -> String {
    let group = &view.group;
    let topic = &view.topic;
    if !firing {
        return match alertname {
            LAGGING => format!("Consumer group {group} is keeping up with {topic} again"),
            MISSING => format!("Consumer group {group} has committed offsets on {topic} again"),
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
                .map(|seconds| human_duration_ms((seconds * 1000.0) as i64));
            let behind = format!("{} records behind", view.lag_records);
            match (view.status, lag) {
                (GroupStatus::Stalled, _) => {
                    let members = match view.members {
                        Some(0) => " and has no active members",
                        _ => "",
                    };
                    format!(
                        "Consumer group {group} has not committed on {topic} since {}{members} while {behind}",
                        view.committed_moved_at.as_deref().unwrap_or("it was first seen")
                    )
                }
                (_, Some(lag)) => {
                    format!("Consumer group {group} is {lag} behind on {topic} ({behind})")
                }
                (_, None) => format!("Consumer group {group} is {behind} on {topic}"),
            }
        }
        MISSING => view.missing_cause.clone().unwrap_or_else(|| {
            format!("Consumer group {group} has no committed offsets on {topic}")
        }),
        LOSS_IMMINENT => {
            let deadline = view
                .expires_at_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|time| time.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "soon".into());
            let eta = view
                .loss_eta_seconds
                .map(|seconds| human_duration_ms((seconds * 1000.0) as i64))
                .unwrap_or_default();
            format!(
                "unread records of {topic} start expiring at {deadline} (in {eta}) for consumer group {group}{}",
                pace(view)
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

/// Whether the group, at its current pace, catches up before unread records expire.
fn pace(view: &TopicView) -> String {
    let (Some(consumed), Some(produced)) = (view.consume_rate, view.produce_rate) else {
        return String::new();
    };
    let rates = format!("consuming {consumed:.1}/s, producing {produced:.1}/s");
    match (view.catchup_eta_seconds, view.loss_eta_seconds) {
        (Some(catchup), Some(loss)) if catchup < loss => format!(
            "; at its current pace ({rates}) it catches up in {}, before then",
            human_duration_ms((catchup * 1000.0) as i64)
        ),
        (Some(catchup), _) => format!(
            "; at its current pace ({rates}) it catches up only in {}, too late",
            human_duration_ms((catchup * 1000.0) as i64)
        ),
        (None, _) => format!("; at its current pace ({rates}) it will not catch up"),
    }
}
