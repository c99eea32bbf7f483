//! The replay: records in the order and at the times Kafka accepted them (their record
//! timestamp, `CreateTime` or `LogAppendTime`: the arrival clock) through the service's own
//! tracker and evaluator, on a simulated clock that jumps from one evaluator deadline to the
//! next. Staleness is of event time (the extracted timestamp) against that clock, as the
//! service judges it against its wall clock: a record backfilled with old event times after an
//! outage does not hide the outage, and a constant delivery lag is what the series learns.
//!
//! Boundaries, exactly (no evaluation-interval rounding):
//! - an alert starts at `last_seen + threshold (+ for)`, unless a record arrives at that very
//!   time: deadlines strictly before a record's arrival are judged before it, the rest after;
//! - it ends at the arrival of the record that refreshed the series;
//! - a warning that turns critical ends there and a critical alert starts, as the service pages;
//! - the watch starts at the window's start, so a series with no record within `critical_after`
//!   of it is `never_seen` (critical).
//!
//! Volume (`min_rate`) is judged by the service's own [`VolumeWatch`] at every
//! `evaluation.interval` tick from the window's start, on the counts of the records that
//! arrived before each tick, always as the leader: a `FeedVolumeDrop` starts at the tick that
//! would have paged it and ends at the tick that would have resolved it. Its learned baselines
//! start empty at the window's start, so `min_rate = "learned"` judges only hours seen in
//! [`crate::volume::MIN_WEEKS`] weeks of the window.

use std::collections::HashMap;

use crate::alert::is_notifiable;
use crate::config::{FeedConfig, VolumeConfig};
use crate::evaluate::{Evaluator, Transition};
use crate::knowledge::Sight;
use crate::model::{FeedIndex, SystemAlert};
use crate::tracker::Tracker;
use crate::volume::{feed_counts, FeedCounts, VolumeWatch};

use super::report::{Alert, VolumeDrop};
use super::Window;

/// One record, as little as the replay needs: 24 bytes, the split value interned in a
/// [`KeyTable`]. A window of 10M records costs ~240 MB; records of one partition with the same
/// arrival, event time and series are kept once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// When Kafka accepted it (the record timestamp), unix ms: the replay's clock.
    pub arrival_ms: i64,
    pub event_ms: i64,
    pub feed: FeedIndex,
    pub key: u32,
}

/// Split values seen, per feed, each stored once.
#[derive(Debug, Default)]
pub struct KeyTable {
    feeds: Vec<FeedKeys>,
}

#[derive(Debug, Default)]
struct FeedKeys {
    values: Vec<Box<[u8]>>,
    index: HashMap<Box<[u8]>, u32>,
}

impl KeyTable {
    pub fn new(feed_count: usize) -> Self {
        KeyTable {
            feeds: (0..feed_count).map(|_| FeedKeys::default()).collect(),
        }
    }

    /// The number of `value` in `feed`; only a new value allocates.
    pub fn intern(&mut self, feed: FeedIndex, value: &[u8]) -> u32 {
        let keys = &mut self.feeds[feed as usize];
        if let Some(&number) = keys.index.get(value) {
            return number;
        }
        let number = keys.values.len() as u32;
        keys.values.push(value.into());
        keys.index.insert(value.into(), number);
        number
    }

    pub fn value(&self, feed: FeedIndex, key: u32) -> &[u8] {
        &self.feeds[feed as usize].values[key as usize]
    }
}

/// The volume rules of the replayed feeds (`feed` indexes the replayed feeds) and the
/// service's evaluation interval, at which they are judged.
#[derive(Debug, Clone, Default)]
pub struct VolumeRules {
    pub rules: Vec<VolumeConfig>,
    pub tick_ms: i64,
}

/// What a replay found: freshness alerts and volume drops, each in the order they started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replayed {
    pub alerts: Vec<Alert>,
    pub volume_drops: Vec<VolumeDrop>,
}

/// Replays `observations` (any order) over `window` and returns every alert that would have
/// fired, in the order they started. Volume is not judged: see [`replay_all`].
pub fn replay(
    feeds: &[FeedConfig],
    keys: &KeyTable,
    observations: Vec<Observation>,
    window: Window,
) -> Vec<Alert> {
    replay_all(feeds, &VolumeRules::default(), keys, observations, window).alerts
}

/// Replays `observations` (any order) over `window`: every freshness alert and every
/// `FeedVolumeDrop` (for feeds with a rule in `volume`) that would have fired.
pub fn replay_all(
    feeds: &[FeedConfig],
    volume: &VolumeRules,
    keys: &KeyTable,
    mut observations: Vec<Observation>,
    window: Window,
) -> Replayed {
    observations.sort_unstable_by_key(|observation| (observation.arrival_ms, observation.event_ms));
    let mut replay = Replay::new(feeds, volume, window.start_ms);
    let mut next = 0;
    while next < observations.len() {
        // Records outside the window are applied at its edge, with their own event time.
        let at_ms = observations[next]
            .arrival_ms
            .clamp(window.start_ms, window.end_ms);
        replay.judge_deadlines_before(at_ms);
        replay.judge_volume_before(at_ms);
        while let Some(observation) = observations.get(next).filter(|observation| {
            observation.arrival_ms.clamp(window.start_ms, window.end_ms) == at_ms
        }) {
            let value = keys.value(observation.feed, observation.key);
            replay
                .tracker
                .observe_at(observation.feed, value, observation.event_ms, at_ms);
            next += 1;
        }
        replay.tick(at_ms);
    }
    replay.judge_deadlines_before(window.end_ms);
    replay.tick(window.end_ms);
    replay.judge_volume_before(window.end_ms + 1);
    Replayed {
        alerts: replay.alerts.finish(),
        volume_drops: replay.volume.map(VolumeReplay::finish).unwrap_or_default(),
    }
}

/// The service's volume judge on the simulated clock: a tick every `evaluation.interval`.
struct VolumeReplay {
    watch: VolumeWatch,
    /// The judged feeds (replayed index) and their `volume_max_keys` when judged by key.
    judged: Vec<(usize, Option<usize>)>,
    tick_ms: i64,
    next_tick_ms: i64,
    drops: Vec<VolumeDrop>,
    open: HashMap<(String, String), usize>,
}

impl VolumeReplay {
    fn new(feeds: &[FeedConfig], volume: &VolumeRules, start_ms: i64) -> Option<Self> {
        if volume.rules.is_empty() {
            return None;
        }
        let names: Vec<std::sync::Arc<str>> = feeds.iter().map(|feed| feed.name.clone()).collect();
        let watch = VolumeWatch::new(&volume.rules, &names, start_ms);
        let judged = watch.judged_feeds().collect();
        Some(VolumeReplay {
            watch,
            judged,
            tick_ms: volume.tick_ms.max(1),
            next_tick_ms: start_ms,
            drops: Vec::new(),
            open: HashMap::new(),
        })
    }

    /// Judges every tick before `before_ms` on the tracker's counts as they stand.
    fn judge_before(&mut self, tracker: &Tracker, before_ms: i64) {
        while self.next_tick_ms < before_ms {
            let now_ms = self.next_tick_ms;
            self.next_tick_ms += self.tick_ms;
            let counts: HashMap<usize, FeedCounts> = self
                .judged
                .iter()
                .map(|&(feed, max_keys)| (feed, feed_counts(tracker, feed, max_keys)))
                .collect();
            for change in self.watch.tick(&counts, true, now_ms) {
                self.apply(&change, now_ms);
            }
        }
    }

    fn apply(&mut self, change: &SystemAlert, now_ms: i64) {
        let label = |name: &str| {
            change
                .labels
                .iter()
                .find(|(label, _)| *label == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        let series = (label("feed"), label("key"));
        if !change.firing {
            if let Some(index) = self.open.remove(&series) {
                self.drops[index].end_ms = Some(now_ms);
            }
            return;
        }
        if self.open.contains_key(&series) {
            return;
        }
        self.open.insert(series.clone(), self.drops.len());
        self.drops.push(VolumeDrop {
            feed: std::sync::Arc::from(series.0.as_str()),
            key: series.1,
            below_since_ms: change.since_ms,
            start_ms: now_ms,
            end_ms: None,
            summary: change.summary.clone(),
        });
    }

    fn finish(self) -> Vec<VolumeDrop> {
        self.drops
    }
}

/// The tracker and evaluator on their simulated clock, and the alerts so far.
struct Replay {
    tracker: Tracker,
    evaluator: Evaluator,
    alerts: AlertLog,
    volume: Option<VolumeReplay>,
}

impl Replay {
    fn new(feeds: &[FeedConfig], volume: &VolumeRules, start_ms: i64) -> Self {
        let mut evaluator = Evaluator::new(feeds);
        // Every partition is read to its end before judging: nothing newer can be unknown.
        for feed in 0..feeds.len() {
            evaluator.set_sight(
                feed as FeedIndex,
                Sight::Known {
                    through_ms: i64::MAX,
                },
            );
        }
        let mut replay = Replay {
            tracker: Tracker::new(feeds, start_ms),
            evaluator,
            alerts: AlertLog::default(),
            volume: VolumeReplay::new(feeds, volume, start_ms),
        };
        replay.tick(start_ms);
        replay
    }

    /// Moves the clock to each deadline before `before_ms` in turn, as the service's ticks would.
    fn judge_deadlines_before(&mut self, before_ms: i64) {
        while let Some(deadline_ms) = self.evaluator.next_deadline() {
            if deadline_ms >= before_ms {
                return;
            }
            self.tick(deadline_ms);
        }
    }

    /// Judges volume at every service tick before `before_ms`.
    fn judge_volume_before(&mut self, before_ms: i64) {
        if let Some(volume) = &mut self.volume {
            volume.judge_before(&self.tracker, before_ms);
        }
    }

    fn tick(&mut self, now_ms: i64) {
        for transition in self.evaluator.tick(&mut self.tracker, now_ms) {
            self.alerts.apply(&transition);
        }
    }
}

/// Alerts started and ended by transitions; at most one open per series.
#[derive(Debug, Default)]
struct AlertLog {
    alerts: Vec<Alert>,
    open: HashMap<(std::sync::Arc<str>, String), usize>,
}

impl AlertLog {
    fn apply(&mut self, transition: &Transition) {
        if !is_notifiable(transition) {
            return;
        }
        let series = (transition.feed.clone(), transition.key.clone());
        if let Some(index) = self.open.remove(&series) {
            self.alerts[index].end_ms = Some(transition.at_ms);
        }
        let Some(severity) = transition.to.severity() else {
            return;
        };
        self.open.insert(series, self.alerts.len());
        self.alerts.push(Alert {
            feed: transition.feed.clone(),
            key: transition.key.clone(),
            severity,
            status: transition.to,
            start_ms: transition.at_ms,
            end_ms: None,
        });
    }

    fn finish(self) -> Vec<Alert> {
        self.alerts
    }
}

#[cfg(test)]
mod tests;
