//! Judges series against their thresholds and reports status changes.
//!
//! Deadline-driven: each series' next threshold crossing sits in an ordered set of
//! `(deadline, series)`, as mini-redis keeps its expirations. A tick looks only at deadlines that
//! have passed, series the tracker created since the last tick, and alerting series that just got
//! a record. Records never touch the set: a popped series whose record refreshed it meanwhile is
//! judged still fresh and rescheduled. Repeated pops walk the set's leftmost leaf, so a tick costs
//! O(series that changed) with few cache misses, not O(all series); a binary heap of 1M series
//! paid ~20 cache misses per pop (BENCHMARKS.md, scale).
//!
//! Windows (`[[feed.window]]`) change a feed's thresholds with the time of day, so a series'
//! deadline alone would miss a boundary: each feed also has its next schedule change
//! ([`crate::schedule`]), and when it passes every series of the feed is judged again, O(series
//! of the feed) per boundary.
//!
//! A learned feed (`thresholds = "learned"`) judges each series by its own thresholds, which
//! [`crate::cadence::effective`] derives from the series' learned gaps under the thresholds in
//! force (the ceilings). A record that ends a series' warm-up has it judged again at the next
//! tick; otherwise a changed threshold takes effect at the series' next scheduled look. On a
//! feed that learns by hour (`learn_by_hour`) a gap's thresholds only loosen as it spans more
//! hours, so an alert is not lowered by a more lenient hour, only by a record; an hour's end of
//! warm-up has every series of the feed judged again.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cadence::{self, Learned, Learning, ThresholdSource};
use crate::config::FeedConfig;
use crate::knowledge::Sight;
use crate::model::{SeriesId, Status};
use crate::schedule::{Schedule, Thresholds};
use crate::tracker::{Series, Tracker};

/// A feed's thresholds in milliseconds, plus what alerts need to describe it.
#[derive(Debug, Clone)]
pub struct FeedRules {
    pub name: Arc<str>,
    pub topic: String,
    pub split: bool,
    /// The feed's own thresholds, in force outside its windows; [`FeedRules::in_force`] gives
    /// those in force at a given time.
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    /// `for`: a threshold must stay crossed this long before the status changes.
    pub hold_ms: i64,
    /// The feed's windows.
    pub schedule: Schedule,
    /// `thresholds = "learned"`: the thresholds in force are ceilings of each series' own.
    pub learning: Option<Learning>,
}

impl FeedRules {
    pub fn from_config(feed: &FeedConfig) -> Self {
        FeedRules {
            name: feed.name.clone(),
            topic: feed.topics.describe().to_owned(),
            split: feed.split.is_some(),
            warn_after_ms: duration_ms(feed.warn_after),
            critical_after_ms: duration_ms(feed.critical_after),
            hold_ms: duration_ms(feed.hold),
            schedule: feed.schedule(),
            learning: feed.learning,
        }
    }

    /// The thresholds in force at `at_ms`: the first window containing it, else the feed's own.
    pub fn in_force(&self, at_ms: i64) -> Thresholds {
        self.schedule.in_force(at_ms).thresholds
    }

    /// The thresholds `series` is judged by at `at_ms`, and their source: those in force for a
    /// fixed feed; for a learned one, its own under them ([`crate::cadence::effective`]).
    pub fn effective(&self, learned: &Learned, at_ms: i64) -> (Thresholds, ThresholdSource) {
        cadence::effective(self.learning.as_ref(), self.in_force(at_ms), learned, at_ms)
    }

    fn by_hour(&self) -> bool {
        self.learning
            .is_some_and(|learning| learning.by_hour.is_some())
    }
}

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A series changed status: what the alert sinks need, copied out of the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub feed: Arc<str>,
    pub key: String,
    pub split: bool,
    pub topic: String,
    pub from: Status,
    pub to: Status,
    /// When the status changed, unix ms.
    pub at_ms: i64,
    /// When the previous status was entered, unix ms.
    pub from_since_ms: i64,
    /// When the alert this ends or continues began, unix ms (for "was stale for ...").
    pub alert_since_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub staleness_ms: Option<i64>,
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    pub records: u64,
    /// Where the series sits, said after its summary: the pipelines it breaks and the hops
    /// they hold (see `app::pipelines`).
    pub context: Option<Arc<str>>,
}

/// The status a series has at `now_ms`, and when it next could change without a record, by the
/// thresholds in force at `now_ms`. `for` (`hold_ms`) delays each crossing: staleness must pass
/// the threshold by that much. Inside an `expect = "nothing"` window no alert starts or worsens:
/// a series keeps its status until a record makes it better or the window ends (the feed's
/// boundary re-judges it then). A learned feed judges by the series' own thresholds, from
/// `learned` ([`Tracker::learned`]).
pub fn judge(
    series: &Series,
    learned: &Learned,
    watch_started_ms: i64,
    rules: &FeedRules,
    now_ms: i64,
) -> (Status, i64) {
    let (in_force, _) = rules.effective(learned, now_ms);
    let (judged, deadline_ms) = judge_by(series, watch_started_ms, in_force, rules.hold_ms, now_ms);
    if in_force.expect_nothing && judged.severity() > series.status.severity() {
        return (series.status, i64::MAX);
    }
    // Learned by hour, a gap that ran into a more lenient hour is judged more leniently; an
    // alert raised by the stricter hour stands until a record ends the gap.
    let no_record_since = series
        .last_seen()
        .is_none_or(|last_seen_ms| last_seen_ms < series.status_since_ms);
    if rules.by_hour() && judged.severity() < series.status.severity() && no_record_since {
        return (series.status, deadline_ms);
    }
    (judged, deadline_ms)
}

/// Staleness against `thresholds`, whatever the series' status.
fn judge_by(
    series: &Series,
    watch_started_ms: i64,
    thresholds: Thresholds,
    hold_ms: i64,
    now_ms: i64,
) -> (Status, i64) {
    let warn_ms = thresholds.warn_after_ms.saturating_add(hold_ms);
    let critical_ms = thresholds.critical_after_ms.saturating_add(hold_ms);
    match series.last_seen() {
        Some(last_seen_ms) => {
            let staleness_ms = now_ms.saturating_sub(last_seen_ms);
            if staleness_ms >= critical_ms {
                (Status::Critical, i64::MAX)
            } else if staleness_ms >= warn_ms {
                (Status::Warning, last_seen_ms.saturating_add(critical_ms))
            } else {
                (Status::Ok, last_seen_ms.saturating_add(warn_ms))
            }
        }
        None => {
            let never_seen_at = watch_started_ms.saturating_add(critical_ms);
            if now_ms >= never_seen_at {
                (Status::NeverSeen, i64::MAX)
            } else {
                (Status::Unknown, never_seen_at)
            }
        }
    }
}

/// When the threshold of `status` in force at `now_ms` was crossed: the moment from which
/// freshwatch must know that Kafka held nothing newer before it may judge the series so.
pub fn crossed_at(
    series: &Series,
    learned: &Learned,
    watch_started_ms: i64,
    rules: &FeedRules,
    status: Status,
    now_ms: i64,
) -> i64 {
    let (in_force, _) = rules.effective(learned, now_ms);
    let threshold_ms = match status {
        Status::Warning => in_force.warn_after_ms,
        Status::Critical | Status::NeverSeen => in_force.critical_after_ms,
        Status::Ok | Status::Unknown => return i64::MIN,
    }
    .saturating_add(rules.hold_ms);
    series
        .last_seen()
        .unwrap_or(watch_started_ms)
        .saturating_add(threshold_ms)
}

/// Owns the deadline set.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<FeedRules>,
    deadlines: BTreeSet<(i64, SeriesId)>,
    /// While the set is loaded in bulk (a first tick over every restored series), new entries
    /// gather here and go in sorted at once: bulk-built nodes are full, one-by-one inserts in
    /// deadline order leave them half empty (measured: ~20 bytes per series at 1M series).
    bulk_load: Option<Vec<(i64, SeriesId)>>,
    /// Per feed, what [`crate::knowledge`] says can be judged now.
    sights: Vec<Sight>,
    /// Feeds that regained sight: every series is judged again at the next tick.
    regained: Vec<crate::model::FeedIndex>,
    /// Series the last tick held back until Kafka is known past their crossing.
    held: usize,
    /// Per feed, when its windows next change what is in force (unix ms; `i64::MAX`: never,
    /// `i64::MIN`: not computed yet). Passing it re-judges every series of the feed.
    schedule_changes: Vec<i64>,
}

impl Evaluator {
    pub fn new(feeds: &[FeedConfig]) -> Self {
        Evaluator {
            rules: feeds.iter().map(FeedRules::from_config).collect(),
            deadlines: BTreeSet::new(),
            bulk_load: None,
            // Until told otherwise (benchmarks, backtests), everything is known.
            sights: vec![
                Sight::Known {
                    through_ms: i64::MAX
                };
                feeds.len()
            ],
            regained: Vec::new(),
            held: 0,
            schedule_changes: vec![i64::MIN; feeds.len()],
        }
    }

    /// How many series the last tick held back, waiting for knowledge that is due within a
    /// statistics interval: the caller ticks again soon rather than a whole interval later.
    pub fn held(&self) -> usize {
        self.held
    }

    /// What freshwatch knows of `feed` now. While blind, a series that would start alerting
    /// turns `unknown` instead, one already alerting stays as it is, and only fresh data changes
    /// anything; when sight returns every series of the feed is judged again. While known only
    /// up to a moment before a crossing, the series keeps its status and is looked at again at
    /// the next tick.
    pub fn set_sight(&mut self, feed: crate::model::FeedIndex, sight: Sight) {
        let was = std::mem::replace(&mut self.sights[feed as usize], sight);
        if matches!(was, Sight::Blind(_)) && matches!(sight, Sight::Known { .. }) {
            self.regained.push(feed);
        }
    }

    /// Judges every series of `feed` again at the next tick (a new leader's first look).
    pub fn rejudge_feed(&mut self, feed: crate::model::FeedIndex) {
        self.regained.push(feed);
    }

    pub fn sight(&self, feed: crate::model::FeedIndex) -> Sight {
        self.sights[feed as usize]
    }

    pub fn rules(&self) -> &[FeedRules] {
        &self.rules
    }

    /// Brings every series whose status may have changed up to `now_ms`.
    pub fn tick(&mut self, tracker: &mut Tracker, now_ms: i64) -> Vec<Transition> {
        let mut transitions = Vec::new();
        self.held = 0;
        if self.deadlines.is_empty() {
            self.bulk_load = Some(Vec::new());
        }
        self.schedule_boundaries(now_ms);
        for feed in tracker.take_hours_warmed() {
            if !self.regained.contains(&feed) {
                self.regained.push(feed);
            }
        }
        for feed in std::mem::take(&mut self.regained) {
            let count = tracker.feed(feed).series().len() as u32;
            for index in 0..count {
                self.rejudge(tracker, SeriesId { feed, index }, now_ms, &mut transitions);
            }
        }
        for id in tracker.take_new_series() {
            self.rejudge(tracker, id, now_ms, &mut transitions);
        }
        for id in tracker.take_refreshed() {
            self.rejudge(tracker, id, now_ms, &mut transitions);
        }
        if let Some(mut entries) = self.bulk_load.take() {
            // A series judged twice above keeps only its latest entry.
            entries.retain(|&(deadline_ms, id)| tracker.series(id).deadline_ms == deadline_ms);
            entries.sort_unstable();
            entries.dedup();
            self.deadlines = entries.into_iter().collect();
        }
        while let Some(&(deadline_ms, id)) = self.deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.deadlines.pop_first();
            debug_assert_eq!(tracker.series(id).deadline_ms, deadline_ms);
            tracker.series_mut(id).deadline_ms = i64::MAX; // unscheduled until rejudged
            self.rejudge(tracker, id, now_ms, &mut transitions);
        }
        transitions
    }

    /// Feeds whose windows changed what is in force since the last tick are judged again in
    /// full: a quiet window that ended, or tighter thresholds that began, change series whose
    /// own deadlines lie later (or nowhere).
    fn schedule_boundaries(&mut self, now_ms: i64) {
        for (feed, next_change_ms) in self.schedule_changes.iter_mut().enumerate() {
            if *next_change_ms > now_ms {
                continue;
            }
            // The first tick judges every series anyway.
            if *next_change_ms != i64::MIN {
                self.regained.push(feed as crate::model::FeedIndex);
            }
            *next_change_ms = self.rules[feed].schedule.next_look_ms(now_ms);
        }
    }

    /// When the windows of `feed` next change what is in force, unix ms (`i64::MAX`: never).
    pub fn next_schedule_change(&self, feed: crate::model::FeedIndex) -> i64 {
        self.schedule_changes[feed as usize]
    }

    /// Describes a series as it stands (from = to = its status), for sinks that must take up an
    /// alert that was already firing before a restart.
    pub fn describe(&self, tracker: &Tracker, id: SeriesId, now_ms: i64) -> Transition {
        let rules = &self.rules[id.feed as usize];
        let series = tracker.series(id);
        let (in_force, _) = rules.effective(&tracker.learned(id), now_ms);
        Transition {
            feed: rules.name.clone(),
            key: series.key().into_owned(),
            split: rules.split,
            topic: rules.topic.clone(),
            from: series.status,
            to: series.status,
            at_ms: now_ms,
            from_since_ms: series.status_since_ms,
            alert_since_ms: series.alert_since_ms,
            last_seen_ms: series.last_seen(),
            staleness_ms: series
                .last_seen()
                .map(|last_seen_ms| now_ms.saturating_sub(last_seen_ms).max(0)),
            warn_after_ms: in_force.warn_after_ms,
            critical_after_ms: in_force.critical_after_ms,
            records: series.records,
            context: None,
        }
    }

    /// Number of scheduled series (one entry each).
    pub fn scheduled(&self) -> usize {
        self.deadlines.len()
    }

    /// The earliest scheduled look, a series' deadline or a feed's next change of what is in
    /// force, so a simulated clock (the backtest) can jump to it instead of stepping through
    /// every interval.
    pub fn next_deadline(&self) -> Option<i64> {
        let next_change_ms = self
            .schedule_changes
            .iter()
            .copied()
            .filter(|&change_ms| change_ms != i64::MIN && change_ms != i64::MAX)
            .min();
        let next_series_ms = self.deadlines.first().map(|&(deadline_ms, _)| deadline_ms);
        next_series_ms.into_iter().chain(next_change_ms).min()
    }

    fn rejudge(
        &mut self,
        tracker: &mut Tracker,
        id: SeriesId,
        now_ms: i64,
        transitions: &mut Vec<Transition>,
    ) {
        let rules = &self.rules[id.feed as usize];
        let watch_started_ms = tracker.watch_started(id);
        let learned = tracker.learned(id);
        let series = tracker.series(id);
        let (judged, judged_deadline_ms) = if tracker.retired(id) {
            (Status::Ok, i64::MAX)
        } else {
            judge(series, &learned, watch_started_ms, rules, now_ms)
        };
        let worse = judged.severity() > series.status.severity();
        let (status, next_deadline_ms) = match (self.sights[id.feed as usize], worse) {
            // Better news (fresh data) needs no knowledge of what else Kafka holds.
            (_, false) => (judged, judged_deadline_ms),
            (Sight::Known { through_ms }, true)
                if crossed_at(series, &learned, watch_started_ms, rules, judged, now_ms)
                    <= through_ms =>
            {
                (judged, judged_deadline_ms)
            }
            // Known, but not yet up to the crossing: keep the status, look again next tick.
            (Sight::Known { .. }, true) => {
                self.held += 1;
                (series.status, now_ms.saturating_add(1))
            }
            // Cannot tell: a would-be alert is unknown, a firing one stays as it is.
            (Sight::Blind(_), true) if series.status.severity().is_none() => {
                (Status::Unknown, i64::MAX)
            }
            (Sight::Blind(_), true) => (series.status, i64::MAX),
        };
        if status != series.status {
            // A placeholder that never alerted retires without a word.
            if !(tracker.retired(id) && series.status.severity().is_none()) {
                let mut transition = self.describe(tracker, id, now_ms);
                transition.to = status;
                transitions.push(transition);
            }
            tracker.set_status(id, status, now_ms);
        }
        let series = tracker.series_mut(id);
        if series.deadline_ms != next_deadline_ms {
            // Exactly one entry per scheduled series: the old one goes.
            if series.deadline_ms != i64::MAX {
                self.deadlines.remove(&(series.deadline_ms, id));
            }
            series.deadline_ms = next_deadline_ms;
            if next_deadline_ms != i64::MAX {
                match &mut self.bulk_load {
                    Some(entries) => entries.push((next_deadline_ms, id)),
                    None => {
                        self.deadlines.insert((next_deadline_ms, id));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod learned_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;
