//! Consumer groups watched from outside: lag in records and in time, stalls, missing commits,
//! and the data-loss countdown.
//!
//! The seed incident's feeder did not stop producing; it stopped consuming, and retention
//! deleted what it never read. [`watcher`] reads, every `kafka.groups_interval`, each watched
//! group's committed offsets, the partitions' watermarks (both through [`offsets`]: our own
//! [`wire`] client, or librdkafka's [`admin`] API on SASL/TLS), and the one record at each
//! committed offset (only when the commit moved): O(partitions) per round, never O(records), and it never
//! joins the group or commits for it. [`judge`] turns that into a [`TopicView`] per (group,
//! topic), and the app raises `ConsumerGroupLagging`, `ConsumerGroupMissing`,
//! `DataLossImminent`, `DataLost` and `FreshwatchGroupsBlind` from the changes, through the same
//! sinks and outbox as feed alerts.
//!
//! What could not be read is unknown, never zero: a partition without a commit is
//! `no_commits`, a commit that vanished keeps being judged from where it was last seen, and a
//! lag in time that is not known keeps its alerts where they were.

// The one module with `unsafe`: librdkafka's admin calls for many groups at once.
#[allow(unsafe_code)]
pub mod admin;
pub mod judge;
pub mod offsets;
pub mod watcher;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{GroupConfig, GroupMatcher};
use crate::model::{Severity, SystemAlert};

pub use judge::{judge, summary, GroupStatus, PartitionView, TopicView};

/// How long a topic keeps records, and who said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retention {
    /// `retention.ms`, in ms.
    Time(i64),
    /// `retention.ms = -1`: nothing expires by age.
    Forever,
    /// `cleanup.policy=compact` without `delete`: compaction keeps each key's newest record and
    /// deletes nothing unread by age.
    Compacted,
    /// Only size-based retention (or none readable): no time can be given.
    Unknown,
}

/// Where [`Retention`] came from: the API's `retention_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionSource {
    Broker,
    Config,
    /// The topic is compacted only: no countdown.
    Compact,
    Unknown,
}

/// What is known of one partition of a watched group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The group's committed offset; -1 while it never had one. After the broker stopped
    /// reporting it (see `vanished_at_ms`), the last one seen: lag and loss are judged from it.
    pub committed: i64,
    /// When the committed offset last moved (or was first seen), unix ms.
    pub committed_moved_at_ms: i64,
    /// When the broker stopped reporting a commit freshwatch had seen: the group was deleted, or
    /// its offsets expired by `offsets.retention.minutes`.
    #[serde(default)]
    pub vanished_at_ms: Option<i64>,
    pub low: i64,
    pub high: i64,
    /// The first unread data record known: its offset and timestamp. It stands for the
    /// current commit only while its offset is at or past it (see [`Self::first_unread_now`]).
    pub first_unread: Option<(i64, i64)>,
    /// A read from the commit reached this offset without a data record: only transaction
    /// markers (or aborted records) lie below it.
    #[serde(default)]
    pub markers_to: Option<i64>,
    /// Records that expired unread, counted once each.
    pub lost_records: u64,
    /// The log start up to which losses are counted.
    pub lost_counted_to: i64,
    /// The event-time range of what expired unread, when known: from the first unread record
    /// seen before it expired to the oldest record left after.
    pub lost_range_ms: Option<(i64, i64)>,
    /// When the watcher last read this partition's commit and watermarks, unix ms (0: not in
    /// this run).
    #[serde(skip)]
    pub read_at_ms: i64,
}

impl Default for PartitionState {
    /// Nothing read yet: no commit (not offset 0, which would be a commit).
    fn default() -> Self {
        PartitionState {
            committed: -1,
            committed_moved_at_ms: 0,
            vanished_at_ms: None,
            low: 0,
            high: 0,
            first_unread: None,
            markers_to: None,
            lost_records: 0,
            lost_counted_to: 0,
            lost_range_ms: None,
            read_at_ms: 0,
        }
    }
}

impl PartitionState {
    /// Whether the group has (or had, before it vanished) a commit here.
    pub fn has_commit(&self) -> bool {
        self.committed >= 0
    }

    /// A commit above the high watermark: the topic was recreated or truncated under it.
    pub fn out_of_range(&self) -> bool {
        self.has_commit() && self.committed > self.high
    }

    /// Whether every unread offset is a transaction marker: nothing is left to read.
    pub fn only_markers_unread(&self) -> bool {
        self.markers_to.is_some_and(|to| to >= self.high)
    }

    /// Records between the commit and the high watermark; 0 without a commit (see
    /// [`judge`]: such a partition is `no_commits`, never caught up).
    pub fn lag_records(&self) -> i64 {
        if !self.has_commit() || self.out_of_range() || self.only_markers_unread() {
            return 0;
        }
        (self.high - self.committed).max(0)
    }

    /// Takes what the broker reports at `now_ms`: the committed offset (negative: none) and the
    /// watermarks. Counts what expired unread.
    pub fn observe(&mut self, reported: i64, low: i64, high: i64, now_ms: i64) {
        self.read_at_ms = now_ms;
        let committed = if reported >= 0 {
            self.vanished_at_ms = None;
            reported
        } else if self.has_commit() {
            // Seen before, gone now: keep judging from where it was.
            self.vanished_at_ms.get_or_insert(now_ms);
            self.committed
        } else {
            -1
        };
        if committed != self.committed || self.committed_moved_at_ms == 0 {
            self.committed_moved_at_ms = now_ms;
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

    /// Where the first unread record is looked for: the commit, or the log start past it.
    pub fn read_from(&self) -> i64 {
        self.committed.max(self.low)
    }

    /// The record found at (or after) the committed offset. When it lies past the commit
    /// because what was between expired, the lost range runs from the first unread record
    /// known before to it.
    pub fn found_first_unread(&mut self, offset: i64, timestamp_ms: i64) {
        if self.has_commit() && self.low > self.committed && offset > self.committed {
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
        self.markers_to = None;
    }

    /// A read from the commit reached `position` (at or past the high watermark) and found no
    /// data record: the unread offsets are markers only, and the group is caught up.
    pub fn found_only_markers(&mut self, position: i64) {
        self.markers_to = Some(position);
    }

    /// The first unread record for the commit as it stands now; `None` while unknown (the
    /// commit moved past the one known, and the new one is not read yet).
    pub fn first_unread_now(&self) -> Option<(i64, i64)> {
        self.first_unread
            .filter(|(offset, _)| *offset >= self.read_from())
    }

    /// Whether the record at the committed offset must be (re)read.
    pub fn needs_first_unread(&self) -> bool {
        self.has_commit()
            && !self.out_of_range()
            && self.read_from() < self.high
            && !self.only_markers_unread()
            && self.first_unread_now().is_none()
    }
}

/// Alerts firing for one (group, topic), persisted so a restart neither repeats nor forgets
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub lagging: Option<Severity>,
    pub loss: Option<Severity>,
    pub lost: bool,
    /// `ConsumerGroupMissing`: no commits, commits that vanished, or one above the watermark.
    #[serde(default)]
    pub missing: Option<Severity>,
}

/// Per (group, topic): the commit and high-watermark sums of the last rounds, for the consume
/// and produce rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trend {
    samples: VecDeque<(i64, i64, i64)>,
}

/// How far back the rates look.
const TREND_WINDOW_MS: i64 = 5 * 60_000;

impl Trend {
    /// Takes one round's sums of committed offsets and high watermarks over the partitions
    /// that have a commit.
    pub fn push(&mut self, now_ms: i64, committed: i64, high: i64) {
        if let Some(&(last_ms, last_committed, last_high)) = self.samples.back() {
            if now_ms <= last_ms {
                return;
            }
            // A partition gained or lost its commit: the sums are not comparable.
            if committed < last_committed || high < last_high {
                self.samples.clear();
            }
        }
        self.samples.push_back((now_ms, committed, high));
        while self
            .samples
            .front()
            .is_some_and(|&(at_ms, _, _)| now_ms - at_ms > TREND_WINDOW_MS)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Records per second consumed and produced over the window; `None` before two rounds.
    pub fn rates(&self) -> Option<(f64, f64)> {
        let (&(first_ms, first_committed, first_high), &(last_ms, last_committed, last_high)) =
            (self.samples.front()?, self.samples.back()?);
        if last_ms <= first_ms {
            return None;
        }
        let seconds = (last_ms - first_ms) as f64 / 1000.0;
        Some((
            (last_committed - first_committed) as f64 / seconds,
            (last_high - first_high) as f64 / seconds,
        ))
    }
}

/// One watched (group, topic).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicState {
    /// Index of the `[[group]]` that watches it in the config in force; found again from the
    /// group id at every start and reload (see [`rules_for`]), never trusted from the store.
    #[serde(skip)]
    pub rules: usize,
    pub group_id: String,
    /// When freshwatch first watched it, unix ms: `ConsumerGroupMissing` for a group that never
    /// committed counts from here.
    #[serde(default)]
    pub first_watched_ms: i64,
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
    #[serde(skip)]
    pub trend: Trend,
    /// When the watcher last read this topic's offsets, unix ms (0: not this run).
    #[serde(skip)]
    pub observed_at_ms: i64,
    /// Changed since the last state flush.
    #[serde(skip)]
    pub dirty: bool,
}

impl TopicState {
    /// Takes what the previous leader stored: its firing alerts, when it first watched, and for
    /// commits that still stand where it saw them, the earlier moment they last moved. A commit
    /// it saw that this replica never did has vanished since: it is kept, as vanished.
    pub fn adopt(&mut self, stored: TopicState) {
        self.firing = stored.firing;
        if stored.first_watched_ms > 0 {
            self.first_watched_ms = if self.first_watched_ms > 0 {
                self.first_watched_ms.min(stored.first_watched_ms)
            } else {
                stored.first_watched_ms
            };
        }
        self.began_ms = stored.began_ms;
        for (partition, theirs) in stored.partitions {
            match self.partitions.get_mut(&partition) {
                Some(own) if own.committed == theirs.committed => {
                    own.committed_moved_at_ms =
                        own.committed_moved_at_ms.min(theirs.committed_moved_at_ms);
                    own.lost_records = own.lost_records.max(theirs.lost_records);
                    own.lost_range_ms = own.lost_range_ms.or(theirs.lost_range_ms);
                    own.vanished_at_ms = match (own.vanished_at_ms, theirs.vanished_at_ms) {
                        (Some(mine), Some(their)) => Some(mine.min(their)),
                        (mine, their) => mine.or(their),
                    };
                }
                Some(own) if !own.has_commit() && theirs.has_commit() => {
                    let read_at_ms = own.read_at_ms;
                    let (low, high) = (own.low, own.high);
                    *own = theirs;
                    own.vanished_at_ms.get_or_insert(read_at_ms);
                    own.low = low;
                    own.high = high;
                    own.read_at_ms = read_at_ms;
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

/// Why a watched group (or every group: the label `*`) could not be read, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFailure {
    pub since_ms: i64,
    pub reason: String,
}

/// The label under which a failure to read every group at once (Kafka does not answer the
/// metadata or watermark requests) is told: one cause, one page.
pub const ALL_GROUPS: &str = "*";

/// Read failures by group label, written by the watcher, judged by the app.
pub type GroupReads = BTreeMap<Arc<str>, ReadFailure>;

/// The thresholds of a `[[group]]` in ms, and which groups it watches.
#[derive(Debug, Clone)]
pub struct GroupRules {
    pub name: Arc<str>,
    pub matcher: GroupMatcher,
    pub topics: Vec<String>,
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
            name: group.name.clone(),
            matcher: group.matcher.clone(),
            topics: group.topics.clone(),
            warn_after_ms: ms(group.warn_after),
            critical_after_ms: ms(group.critical_after),
            stall_after_ms: ms(group.stall_after),
            retention: group.retention.map(ms),
            loss_warn_before_ms: ms(group.loss_warn_before),
            loss_critical_before_ms: ms(group.loss_critical_before),
        }
    }

    fn watches(&self, label: &str, group_id: &str, topic: &str) -> bool {
        let label_matches = match &self.matcher {
            GroupMatcher::Exact(id) => id == group_id && *self.name == *label,
            GroupMatcher::Regex(regex) => regex.is_match(group_id) && label == group_id,
        };
        label_matches && (self.topics.is_empty() || self.topics.iter().any(|t| t == topic))
    }
}

/// The `[[group]]` that watches (label, group id, topic) in the config in force: state is keyed
/// by what it watches, not by the position of its table, so removing one `[[group]]` leaves the
/// others as they were.
pub fn rules_for(rules: &[GroupRules], label: &str, group_id: &str, topic: &str) -> Option<usize> {
    rules
        .iter()
        .position(|rule| rule.watches(label, group_id, topic))
}

/// The rules by exact group id, and the regex rules apart: [`rules_for`]'s answer without a scan
/// of every `[[group]]` per (group, topic), which made each evaluation tick O(groups²).
struct RulesIndex<'a> {
    rules: &'a [GroupRules],
    exact: std::collections::HashMap<&'a str, Vec<usize>>,
    regexes: Vec<usize>,
}

impl<'a> RulesIndex<'a> {
    fn new(rules: &'a [GroupRules]) -> RulesIndex<'a> {
        let mut exact: std::collections::HashMap<&'a str, Vec<usize>> = Default::default();
        let mut regexes = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            match &rule.matcher {
                GroupMatcher::Exact(id) => exact.entry(id.as_str()).or_default().push(index),
                GroupMatcher::Regex(_) => regexes.push(index),
            }
        }
        RulesIndex {
            rules,
            exact,
            regexes,
        }
    }

    /// The first rule that watches (label, group id, topic), as [`rules_for`] finds it.
    fn find(&self, label: &str, group_id: &str, topic: &str) -> Option<usize> {
        let watches = |index: &usize| self.rules[*index].watches(label, group_id, topic);
        let first_exact = self
            .exact
            .get(group_id)
            .and_then(|indexes| indexes.iter().copied().find(watches));
        let first_regex = self.regexes.iter().copied().find(watches);
        match (first_exact, first_regex) {
            (Some(exact), Some(regex)) => Some(exact.min(regex)),
            (exact, regex) => exact.or(regex),
        }
    }
}

#[cfg(test)]
mod tests;

pub use crate::model::alertname::{GROUPS_BLIND, LAGGING, LOSS_IMMINENT, LOST, MISSING};

/// Judges every watched (group, topic) at `now_ms`. Returns the views, and for `leader` the
/// alert changes (a new severity first resolves the old one, as feed alerts do), updating
/// what is firing. A (group, topic) read less recently than `known_since_ms` is `unknown`. A
/// (group, topic) that no `[[group]]` watches any more resolves what it had firing, once, and
/// leaves the table; its name is returned so its stored state is removed.
pub fn evaluate(
    table: &mut GroupsTable,
    rules: &[GroupRules],
    now_ms: i64,
    known_since_ms: i64,
    leader: bool,
) -> (Vec<TopicView>, Vec<SystemAlert>, Vec<GroupTopic>) {
    let mut views = Vec::with_capacity(table.len());
    let mut alerts = Vec::new();
    let mut removed = Vec::new();
    let index_of_rules = RulesIndex::new(rules);
    for ((label, topic), state) in table.iter_mut() {
        let Some(index) = index_of_rules.find(label, &state.group_id, topic) else {
            removed.push((label.clone(), topic.clone()));
            continue;
        };
        state.rules = index;
        let view = judge(label, topic, state, &rules[index], now_ms, known_since_ms);
        if leader && view.wants != state.firing {
            alerts.extend(changes(&view, &state.firing, now_ms, &mut state.began_ms));
            state.firing = view.wants.clone();
            state.dirty = true;
        }
        views.push(view);
    }
    for key in &removed {
        if let Some(mut state) = table.remove(key) {
            if leader {
                let view = judge::unwatched(&key.0, &key.1, &state);
                for mut alert in changes(&view, &state.firing, now_ms, &mut state.began_ms) {
                    alert.summary = format!(
                        "Consumer group {} is no longer watched on {} (its [[group]] was removed or changed)",
                        key.0, key.1
                    );
                    alerts.push(alert);
                }
            }
        }
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
    (views, alerts, removed)
}

/// The alerts still firing in `table`, to hand to Alertmanager again after a restart or a
/// change of leader (notification sinks are not paged again).
pub fn firing(table: &GroupsTable, now_ms: i64) -> Vec<SystemAlert> {
    let mut alerts = Vec::new();
    for ((label, topic), state) in table {
        let mut view = judge::unwatched(label, topic, state);
        view.wants = state.firing.clone();
        // Each as it began (`now` only for state from before the start was recorded).
        let mut began_ms = state.began_ms.clone();
        alerts.extend(changes(&view, &Firing::default(), now_ms, &mut began_ms));
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
) -> Vec<SystemAlert> {
    let mut alerts = Vec::new();
    let mut change = |alertname: &'static str, old: Option<Severity>, new: Option<Severity>| {
        if old == new {
            return;
        }
        if let Some(severity) = old {
            let began = began_ms.remove(alertname).unwrap_or(now_ms);
            let mut resolve = alert(view, alertname, severity, false, began);
            if let Some(new) = new {
                // Not over: it changed severity. Say so, not "keeping up again".
                let moved = if new > severity {
                    "escalated"
                } else {
                    "lowered"
                };
                resolve.summary = format!("{moved} to {new}: {}", summary(view, alertname, true));
            }
            alerts.push(resolve);
        }
        if let Some(severity) = new {
            let began = *began_ms.entry(alertname.to_owned()).or_insert(now_ms);
            alerts.push(alert(view, alertname, severity, true, began));
        }
    };
    change(LAGGING, old.lagging, view.wants.lagging);
    change(MISSING, old.missing, view.wants.missing);
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
) -> SystemAlert {
    SystemAlert {
        alertname,
        severity,
        labels: vec![("group", view.group.clone()), ("topic", view.topic.clone())],
        summary: summary(view, alertname, firing),
        firing,
        since_ms: began_ms,
    }
}

/// Which groups are blind past `blind_after_ms`: the `FreshwatchGroupsBlind` alerts to raise
/// or resolve against `alerting` (updated). While `held` (Kafka itself is down and
/// `FreshwatchSourceDown` says so), a failure of every group at once pages nothing of its own.
pub fn blindness(
    reads: &GroupReads,
    alerting: &mut BTreeMap<Arc<str>, ReadFailure>,
    blind_after_ms: i64,
    held: bool,
    now_ms: i64,
) -> Vec<SystemAlert> {
    let mut alerts = Vec::new();
    let overdue: BTreeMap<&Arc<str>, &ReadFailure> = reads
        .iter()
        .filter(|(label, failure)| {
            // Held: not raised while Kafka's own outage pages; one already raised stays.
            let held_back = held && &***label == ALL_GROUPS && !alerting.contains_key(*label);
            now_ms - failure.since_ms >= blind_after_ms && !held_back
        })
        .collect();
    let blind_alert = |label: &str, failure: &ReadFailure, firing: bool| {
        let all = label == ALL_GROUPS;
        let summary = match (firing, all) {
            (true, true) => format!(
                "No watched consumer group can be read since {} ({}): group lag is not being judged, so a consumer that died would not page",
                crate::clock::rfc3339(failure.since_ms),
                failure.reason
            ),
            (true, false) => format!(
                "Consumer group {label} cannot be read since {} ({}): its lag is not being judged, so a consumer that died would not page",
                crate::clock::rfc3339(failure.since_ms),
                failure.reason
            ),
            (false, true) => "Watched consumer groups can be read again".to_owned(),
            (false, false) => format!("Consumer group {label} can be read again"),
        };
        SystemAlert {
            alertname: GROUPS_BLIND,
            severity: Severity::Critical,
            labels: vec![("group", label.to_owned())],
            summary,
            firing,
            since_ms: failure.since_ms,
        }
    };
    alerting.retain(|label, failure| {
        if overdue.contains_key(label) {
            return true;
        }
        alerts.push(blind_alert(label, failure, false));
        false
    });
    for (label, failure) in overdue {
        if !alerting.contains_key(label) {
            alerts.push(blind_alert(label, failure, true));
            alerting.insert(label.clone(), failure.clone());
        }
    }
    alerts
}

/// Sets every group gauge from one judgement: the verdicts flow into the metrics, never back.
pub fn export_metrics(metrics: &crate::metrics::GroupMetrics, views: &[TopicView]) {
    use crate::metrics::{set_or_remove, GroupLabels, GroupTopicLabels};
    for view in views {
        let labels = GroupTopicLabels {
            group: view.group.clone(),
            topic: view.topic.clone(),
        };
        set_or_remove(&metrics.lag_seconds, &labels, view.lag_seconds);
        metrics
            .lag_records
            .get_or_create(&labels)
            .set(view.lag_records);
        set_or_remove(&metrics.loss_eta_seconds, &labels, view.loss_eta_seconds);
        set_or_remove(
            &metrics.catchup_eta_seconds,
            &labels,
            view.catchup_eta_seconds,
        );
        let lost = metrics.records_lost.get_or_create(&labels);
        let counted = lost.get();
        if view.records_lost > counted {
            lost.inc_by(view.records_lost - counted);
        }
        metrics
            .status
            .get_or_create(&labels)
            .set(view.status.gauge_value());
        if let Some(members) = view.members {
            metrics
                .members
                .get_or_create(&GroupLabels {
                    group: view.group.clone(),
                })
                .set(members as i64);
        }
    }
}
