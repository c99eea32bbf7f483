//! Volume drops: the one home of "is this feed (or key) bringing too few records?".
//!
//! Freshness alone misses a feed that still brings a trickle: one record a minute keeps it fresh
//! while 99 % of its volume is gone. Every evaluation tick, the app reports the tracker's record
//! counts (cumulative, per feed and, with `volume_by_key`, per key) to [`VolumeWatch::tick`]; the
//! deltas fill a sliding window of ten buckets, which gives the observed rate. That rate is
//! compared with a threshold:
//! - a fixed `min_rate` (`"100/min"`): the threshold is the rate itself;
//! - `min_rate = "learned"`: `drop_ratio` × the **hour-of-week baseline**, 168 slots per series
//!   (Monday 00:00 on the feed's `learn_timezone` clocks, UTC by default, is slot 0; local, so a
//!   business-hours feed keeps its busy hours across a clock change instead of paging at the
//!   hour that used to be busy), each an exponentially-weighted mean (weight
//!   [`BASELINE_WEIGHT`] for the newest week) of the rates seen in that hour. A slot seen in
//!   fewer than [`MIN_WEEKS`] weeks gives no baseline, so no judgement: a new feed is not paged
//!   in its first two weeks, nor at an hour it has rarely been watched.
//!
//! A rate below its threshold for `volume_for` fires `FeedVolumeDrop` (warning); it resolves as
//! soon as a judged rate is back at or above the threshold. Nothing is judged until the window
//! has been watched in full (after a start or a new key). A firing alert is kept while no
//! judgement is possible (it needs a rate to resolve).
//!
//! Baselines and firing alerts are persisted as [`crate::state::Documents::Volume`] by the
//! leader, and taken up at start and by a new leader.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{MinRate, VolumeConfig};
use crate::model::FeedIndex;
use crate::model::Severity;
use crate::model::SystemAlert;
use crate::schedule::WeekClock;
use crate::tracker::Tracker;

pub mod replicas;
#[cfg(test)]
mod tests;

pub use crate::model::alertname::FEED_VOLUME_DROP;
/// Buckets per sliding window.
pub const BUCKETS: usize = 10;
/// Hours in a week: one baseline slot each.
pub const SLOTS: usize = 168;
/// Weeks a slot must have been seen before it gives a baseline.
pub const MIN_WEEKS: u32 = 2;
/// The newest week's weight in a slot's exponentially-weighted mean.
pub const BASELINE_WEIGHT: f64 = 0.3;
/// An hour counts toward its slot only when watched for at least this long.
const MIN_HOUR_OBSERVED_MS: i64 = 30 * 60 * 1000;
/// A gap between two ticks longer than this (a pause, a restart) is not counted as watched.
const MAX_TICK_GAP_MS: i64 = 5 * 60 * 1000;

/// The clocks of a learned baseline's hours; `None` for a fixed `min_rate`.
fn learned_hours(rules: &VolumeConfig) -> Option<WeekClock> {
    matches!(rules.min_rate, MinRate::Learned { .. }).then_some(rules.hours)
}

/// One hour-of-week slot of a baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Records per second, exponentially weighted over the weeks seen.
    pub mean: f64,
    /// Weeks in which this hour was watched.
    pub weeks: u32,
}

impl Slot {
    fn fold(&mut self, rate: f64) {
        self.mean = if self.weeks == 0 {
            rate
        } else {
            BASELINE_WEIGHT * rate + (1.0 - BASELINE_WEIGHT) * self.mean
        };
        self.weeks = self.weeks.saturating_add(1);
    }

    fn expected(&self) -> Option<f64> {
        (self.weeks >= MIN_WEEKS).then_some(self.mean)
    }
}

/// What is persisted per series: the learned baseline and the open alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Empty for a fixed `min_rate`; else [`SLOTS`] slots.
    pub slots: Vec<Slot>,
    /// When the firing `FeedVolumeDrop` began, unix ms.
    pub firing_since_ms: Option<i64>,
}

/// The records of the hour being watched, folded into its slot when the hour ends.
#[derive(Debug, Clone, Copy)]
struct HourTally {
    hour: i64,
    records: u64,
    observed_ms: i64,
    /// The feed was not known (source down, a backlog being read) at some tick of the hour:
    /// its count is not the hour's rate, so it is not folded into the slot.
    blind: bool,
}

/// The sliding window: [`BUCKETS`] buckets of `window / BUCKETS`, aligned to the epoch.
#[derive(Debug, Clone)]
struct RateWindow {
    bucket_ms: i64,
    buckets: [u64; BUCKETS],
    /// The bucket number (`at_ms / bucket_ms`) of the newest bucket.
    current: i64,
}

impl RateWindow {
    fn new(window_ms: i64, now_ms: i64) -> Self {
        let bucket_ms = (window_ms / BUCKETS as i64).max(1);
        RateWindow {
            bucket_ms,
            buckets: [0; BUCKETS],
            current: now_ms.div_euclid(bucket_ms),
        }
    }

    fn advance(&mut self, now_ms: i64) {
        let target = now_ms.div_euclid(self.bucket_ms);
        let steps = (target - self.current).clamp(0, BUCKETS as i64);
        for step in 1..=steps {
            let index = (self.current + step).rem_euclid(BUCKETS as i64) as usize;
            self.buckets[index] = 0;
        }
        self.current = self.current.max(target);
    }

    /// Counts the records of the tick that ends at `now_ms`: they belong to the bucket holding
    /// the instant just before it (a tick on a bucket boundary closes the previous bucket).
    fn add(&mut self, records: u64, now_ms: i64) {
        self.advance(now_ms - 1);
        let index = self.current.rem_euclid(BUCKETS as i64) as usize;
        self.buckets[index] += records;
    }

    /// Records per second over the window's buckets, from `watched_since_ms` at the earliest.
    fn rate(&self, now_ms: i64, watched_since_ms: i64) -> f64 {
        let oldest_start = (self.current - BUCKETS as i64 + 1) * self.bucket_ms;
        let span_ms = now_ms - oldest_start.max(watched_since_ms);
        if span_ms <= 0 {
            return 0.0;
        }
        let records: u64 = self.buckets.iter().sum();
        records as f64 * 1000.0 / span_ms as f64
    }
}

/// One judged series: the feed as a whole, or one of its keys.
#[derive(Debug, Clone)]
struct SeriesVolume {
    /// The cumulative count last reported (`None`: not seen yet, the first report is a start).
    last_records: Option<u64>,
    last_tick_ms: i64,
    watched_since_ms: i64,
    window: RateWindow,
    hour: Option<HourTally>,
    /// A learned baseline's clocks: its hours are local hours ([`WeekClock::local_hours`]).
    clock: Option<WeekClock>,
    stored: Stored,
    below_since_ms: Option<i64>,
    /// Changed since the last flush.
    dirty: bool,
    /// The last judgement, for the API and metrics.
    last: Judgement,
    /// The feed was not known at the last tick: nothing is judged.
    blind: bool,
}

/// What one tick found for a series.
#[derive(Debug, Clone, Copy, Default)]
struct Judgement {
    rate: Option<f64>,
    expected: Option<f64>,
    threshold: Option<f64>,
}

impl SeriesVolume {
    /// `learned`: the clocks of its baseline's hours; `None` for a fixed `min_rate`.
    fn new(learned: Option<WeekClock>, window_ms: i64, now_ms: i64) -> Self {
        SeriesVolume {
            last_records: None,
            last_tick_ms: now_ms,
            watched_since_ms: now_ms,
            window: RateWindow::new(window_ms, now_ms),
            hour: None,
            clock: learned,
            stored: Stored {
                slots: if learned.is_some() {
                    vec![Slot::default(); SLOTS]
                } else {
                    Vec::new()
                },
                firing_since_ms: None,
            },
            below_since_ms: None,
            dirty: false,
            last: Judgement::default(),
            blind: false,
        }
    }

    /// Takes the cumulative count at `now_ms`: the delta goes to the window and the hour.
    /// While the feed is not `known`, the delta (a backlog read, or nothing while the source
    /// is down) counts nowhere: the window is watched afresh once known again, and the hour
    /// is not folded into its slot.
    fn observe(&mut self, records: u64, now_ms: i64, known: bool) {
        self.blind = !known;
        if !known {
            self.last_records = Some(records);
            self.last_tick_ms = now_ms;
            self.watched_since_ms = now_ms;
            self.window = RateWindow::new(self.window.bucket_ms * BUCKETS as i64, now_ms);
            if let Some(clock) = self.clock {
                let hour = clock.local_hours(now_ms);
                self.hour = Some(HourTally {
                    hour,
                    records: 0,
                    observed_ms: 0,
                    blind: true,
                });
            }
            return;
        }
        let Some(last_records) = self.last_records else {
            self.last_records = Some(records);
            self.last_tick_ms = now_ms;
            self.watched_since_ms = now_ms;
            self.window = RateWindow::new(self.window.bucket_ms * BUCKETS as i64, now_ms);
            return;
        };
        // A count that went back (a series restored or replaced) starts again from zero.
        let delta = records.checked_sub(last_records).unwrap_or(records);
        self.last_records = Some(records);
        let elapsed_ms = (now_ms - self.last_tick_ms).max(0);
        self.last_tick_ms = now_ms;
        self.window.add(delta, now_ms);
        let Some(clock) = self.clock else {
            return;
        };
        let hour = clock.local_hours(now_ms);
        let tally = self.hour.get_or_insert(HourTally {
            hour,
            records: 0,
            observed_ms: 0,
            blind: false,
        });
        if tally.hour != hour {
            let ended = *tally;
            *tally = HourTally {
                hour,
                records: 0,
                observed_ms: 0,
                blind: false,
            };
            if ended.observed_ms >= MIN_HOUR_OBSERVED_MS && !ended.blind {
                let rate = ended.records as f64 * 1000.0 / ended.observed_ms as f64;
                self.stored.slots[WeekClock::hour_of_week(ended.hour)].fold(rate);
                self.dirty = true;
            }
        }
        tally.records += delta;
        if elapsed_ms <= MAX_TICK_GAP_MS {
            tally.observed_ms += elapsed_ms;
        }
    }

    /// Judges the rate against the rule; returns the alert change, if any. Only the leader
    /// fires and resolves: a follower counts only its own partitions, and takes up the leader's
    /// alerts when promoted.
    fn judge(
        &mut self,
        rules: &VolumeConfig,
        leading: bool,
        now_ms: i64,
        label: &str,
        labels: &[(&'static str, String)],
    ) -> Option<SystemAlert> {
        let window_ms = self.window.bucket_ms * BUCKETS as i64;
        let watched = !self.blind
            && self.last_records.is_some()
            && now_ms - self.watched_since_ms >= window_ms;
        let rate = watched.then(|| self.window.rate(now_ms, self.watched_since_ms));
        let (expected, threshold) = match rules.min_rate {
            MinRate::PerSecond(min) => (Some(min), Some(min)),
            MinRate::Learned { drop_ratio } => {
                let expected = self
                    .clock
                    .and_then(|clock| self.stored.slots.get(clock.hour(now_ms).0)?.expected());
                (expected, expected.map(|mean| mean * drop_ratio))
            }
        };
        self.last = Judgement {
            rate,
            expected,
            threshold,
        };
        let (Some(rate), Some(threshold)) = (rate, threshold) else {
            // No judgement: nothing starts or ends.
            self.below_since_ms = None;
            return None;
        };
        let change = |firing: bool, since_ms: i64| SystemAlert {
            alertname: FEED_VOLUME_DROP,
            severity: Severity::Warning,
            labels: labels.to_vec(),
            summary: summary(label, rate, expected.unwrap_or(threshold), rules.min_rate),
            firing,
            since_ms,
        };
        if rate >= threshold {
            self.below_since_ms = None;
            if !leading {
                return None;
            }
            let since_ms = self.stored.firing_since_ms.take()?;
            self.dirty = true;
            return Some(change(false, since_ms));
        }
        let below_since_ms = *self.below_since_ms.get_or_insert(now_ms);
        let hold_ms = i64::try_from(rules.hold.as_millis()).unwrap_or(i64::MAX);
        if !leading || self.stored.firing_since_ms.is_some() || now_ms - below_since_ms < hold_ms {
            return None;
        }
        self.stored.firing_since_ms = Some(below_since_ms);
        self.dirty = true;
        Some(change(true, below_since_ms))
    }
}

/// "profiles: 12/min against an expected 400/min (20% of it pages)".
pub fn summary(label: &str, rate: f64, expected: f64, min_rate: MinRate) -> String {
    let rule = match min_rate {
        MinRate::PerSecond(_) => "below it pages".to_owned(),
        MinRate::Learned { drop_ratio } => format!("{}% of it pages", (drop_ratio * 100.0).round()),
    };
    format!(
        "{label}: {} against an expected {} ({rule})",
        format_rate(rate),
        format_rate(expected)
    )
}

/// A rate in the unit that reads best: per second from 10/s, per minute from 1/min, else per hour.
pub fn format_rate(per_second: f64) -> String {
    let (value, unit) = if per_second >= 10.0 {
        (per_second, "s")
    } else if per_second * 60.0 >= 1.0 {
        (per_second * 60.0, "min")
    } else {
        (per_second * 3600.0, "h")
    };
    let rounded = if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    format!("{}/{unit}", rounded.trim_end_matches(".0"))
}

/// One feed's volume: the feed as a whole, and its keys with `volume_by_key`.
#[derive(Debug)]
struct FeedVolume {
    rules: VolumeConfig,
    name: Arc<str>,
    total: SeriesVolume,
    keys: HashMap<String, SeriesVolume>,
    /// Keys seen beyond `volume_max_keys`: counted, not judged.
    unjudged_keys: usize,
}

/// One feed's record counts at a tick, as the tracker has them (cumulative since start).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeedCounts {
    pub total: u64,
    /// Per key, only for feeds judged by key.
    pub keys: Vec<(String, u64)>,
    /// Keys the caller left out of `keys` (beyond `volume_max_keys`): counted as not judged.
    pub keys_left_out: usize,
}

/// One row of `GET /api/v1/volume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeView {
    pub feed: String,
    /// Absent for the feed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `"fixed"` or `"learned"`.
    pub mode: String,
    /// Observed records per second over the window; absent until the window was watched in full.
    pub rate_per_second: Option<f64>,
    /// The fixed `min_rate`, or the learned baseline of this hour (absent: too little history).
    pub expected_rate_per_second: Option<f64>,
    /// Below this pages (after `volume_for`).
    pub threshold_per_second: Option<f64>,
    /// `ok`, `below` (not yet for `volume_for`), `firing` or `unjudged`.
    pub status: String,
    /// Keys beyond `volume_max_keys`, not judged (feed rows only).
    #[serde(default)]
    pub unjudged_keys: usize,
}

/// Every feed's volume rule and state.
#[derive(Debug, Default)]
pub struct VolumeWatch {
    feeds: Vec<FeedVolume>,
    /// Feeds (by config index) not known at the next tick ([`VolumeWatch::set_known`]).
    blind_feeds: Vec<usize>,
}

/// The document key of a series: `["feed", null]` or `["feed", "key"]`.
fn document_key(feed: &str, key: Option<&str>) -> String {
    serde_json::to_string(&(feed, key)).unwrap_or_default()
}

impl VolumeWatch {
    /// `names` are the configured feeds' names, by index.
    pub fn new(rules: &[VolumeConfig], names: &[Arc<str>], now_ms: i64) -> Self {
        let feeds = rules
            .iter()
            .filter_map(|rule| {
                let name = names.get(rule.feed)?.clone();
                let learned = learned_hours(rule);
                Some(FeedVolume {
                    total: SeriesVolume::new(learned, window_ms(rule), now_ms),
                    rules: rule.clone(),
                    name,
                    keys: HashMap::new(),
                    unjudged_keys: 0,
                })
            })
            .collect();
        VolumeWatch {
            feeds,
            blind_feeds: Vec::new(),
        }
    }

    /// What [`crate::knowledge`] says of feed `feed` (config index) for the next ticks: while
    /// it is not known and caught up, its records count toward no rate and no baseline, and
    /// nothing is judged (a source outage is not a volume drop, a backlog not a busy hour).
    pub fn set_known(&mut self, feed: usize, known: bool) {
        self.blind_feeds.retain(|&blind| blind != feed);
        if !known {
            self.blind_feeds.push(feed);
        }
    }

    /// The feeds judged, by config index, with their `volume_max_keys` when judged by key.
    pub fn judged_feeds(&self) -> impl Iterator<Item = (usize, Option<usize>)> + '_ {
        self.feeds.iter().map(|feed| {
            (
                feed.rules.feed,
                feed.rules.by_key.then_some(feed.rules.max_keys),
            )
        })
    }

    /// Takes each feed's counts (by config index) and judges every series; returns the alert
    /// changes (none unless `leading`).
    pub fn tick(
        &mut self,
        counts: &HashMap<usize, FeedCounts>,
        leading: bool,
        now_ms: i64,
    ) -> Vec<SystemAlert> {
        let mut alerts = Vec::new();
        for feed in &mut self.feeds {
            let Some(feed_counts) = counts.get(&feed.rules.feed) else {
                continue;
            };
            let learned = learned_hours(&feed.rules);
            let window = window_ms(&feed.rules);
            let known = !self.blind_feeds.contains(&feed.rules.feed);
            feed.total.observe(feed_counts.total, now_ms, known);
            let feed_labels = [("feed", feed.name.to_string())];
            alerts.extend(
                feed.total
                    .judge(&feed.rules, leading, now_ms, &feed.name, &feed_labels),
            );
            if !feed.rules.by_key {
                continue;
            }
            let mut unjudged = feed_counts.keys_left_out;
            for (key, records) in &feed_counts.keys {
                if !feed.keys.contains_key(key) {
                    if feed.keys.len() >= feed.rules.max_keys {
                        unjudged += 1;
                        continue;
                    }
                    feed.keys
                        .insert(key.clone(), SeriesVolume::new(learned, window, now_ms));
                }
                let Some(series) = feed.keys.get_mut(key) else {
                    continue;
                };
                series.observe(*records, now_ms, known);
                let label = format!("{} {key}", feed.name);
                let labels = [("feed", feed.name.to_string()), ("key", key.clone())];
                alerts.extend(series.judge(&feed.rules, leading, now_ms, &label, &labels));
            }
            if unjudged > feed.unjudged_keys {
                tracing::warn!(feed = %feed.name, unjudged, max_keys = feed.rules.max_keys, "keys beyond volume_max_keys are not judged for volume");
            }
            feed.unjudged_keys = unjudged;
        }
        alerts
    }

    /// The last judgement of every series, for the API and metrics.
    pub fn views(&self) -> Vec<VolumeView> {
        let mut views = Vec::new();
        for feed in &self.feeds {
            let mode = match feed.rules.min_rate {
                MinRate::PerSecond(_) => "fixed",
                MinRate::Learned { .. } => "learned",
            };
            let view = |key: Option<&String>, series: &SeriesVolume, unjudged_keys| VolumeView {
                feed: feed.name.to_string(),
                key: key.cloned(),
                mode: mode.to_owned(),
                rate_per_second: series.last.rate,
                expected_rate_per_second: series.last.expected,
                threshold_per_second: series.last.threshold,
                status: status(series).to_owned(),
                unjudged_keys,
            };
            views.push(view(None, &feed.total, feed.unjudged_keys));
            let mut keys: Vec<_> = feed.keys.iter().collect();
            keys.sort_by(|left, right| left.0.cmp(right.0));
            views.extend(
                keys.into_iter()
                    .map(|(key, series)| view(Some(key), series, 0)),
            );
        }
        views
    }

    /// The alerts firing now (for sinks that must take them up after a restart).
    pub fn firing(&self) -> Vec<SystemAlert> {
        let mut firing = Vec::new();
        for feed in &self.feeds {
            let series = std::iter::once((None, &feed.total))
                .chain(feed.keys.iter().map(|(key, series)| (Some(key), series)));
            for (key, series) in series {
                let Some(since_ms) = series.stored.firing_since_ms else {
                    continue;
                };
                let mut labels = vec![("feed", feed.name.to_string())];
                let mut label = feed.name.to_string();
                if let Some(key) = key {
                    labels.push(("key", key.clone()));
                    label = format!("{label} {key}");
                }
                let summary = match (series.last.rate, series.last.expected) {
                    (Some(rate), Some(expected)) => {
                        summary(&label, rate, expected, feed.rules.min_rate)
                    }
                    // Taken up after a restart, before the window was watched again.
                    _ => format!(
                        "{label}: volume drop still open (rate not measured since the restart)"
                    ),
                };
                firing.push(SystemAlert {
                    alertname: FEED_VOLUME_DROP,
                    severity: Severity::Warning,
                    labels,
                    summary,
                    firing: true,
                    since_ms,
                });
            }
        }
        firing
    }

    /// The persisted documents changed since the last call (`all`: every one).
    pub fn take_dirty(&mut self, all: bool) -> Vec<(String, String)> {
        let mut entries = Vec::new();
        for feed in &mut self.feeds {
            let series = std::iter::once((None, &mut feed.total)).chain(
                feed.keys
                    .iter_mut()
                    .map(|(key, series)| (Some(key.as_str()), series)),
            );
            for (key, series) in series {
                if !(std::mem::take(&mut series.dirty) || all) {
                    continue;
                }
                if let Ok(json) = serde_json::to_string(&series.stored) {
                    entries.push((document_key(&feed.name, key), json));
                }
            }
        }
        entries
    }

    /// Every document is written again at the next flush (the store lost them).
    pub fn mark_all_dirty(&mut self) {
        for feed in &mut self.feeds {
            feed.total.dirty = true;
            for series in feed.keys.values_mut() {
                series.dirty = true;
            }
        }
    }

    /// Marks the written documents dirty again after a failed write.
    pub fn mark_dirty(&mut self, keys: &[String]) {
        for feed in &mut self.feeds {
            if keys.contains(&document_key(&feed.name, None)) {
                feed.total.dirty = true;
            }
            for (key, series) in &mut feed.keys {
                if keys.contains(&document_key(&feed.name, Some(key))) {
                    series.dirty = true;
                }
            }
        }
    }

    /// Takes up persisted documents (at start, and on becoming leader). Unknown feeds and keys
    /// beyond the bound are ignored; a baseline of the wrong shape (the rule changed) is not
    /// taken.
    pub fn restore(&mut self, documents: Vec<(String, String)>, now_ms: i64) {
        for (document, json) in documents {
            let parsed = serde_json::from_str::<(String, Option<String>)>(&document)
                .ok()
                .zip(serde_json::from_str::<Stored>(&json).ok());
            let Some(((feed_name, key), stored)) = parsed else {
                tracing::warn!(%document, "unreadable volume baseline ignored");
                continue;
            };
            let Some(feed) = self.feeds.iter_mut().find(|feed| *feed.name == *feed_name) else {
                continue;
            };
            let learned = learned_hours(&feed.rules);
            let window = window_ms(&feed.rules);
            let series = match key {
                None => &mut feed.total,
                Some(_) if !feed.rules.by_key => continue,
                Some(key) => {
                    if !feed.keys.contains_key(&key) && feed.keys.len() >= feed.rules.max_keys {
                        continue;
                    }
                    feed.keys
                        .entry(key)
                        .or_insert_with(|| SeriesVolume::new(learned, window, now_ms))
                }
            };
            if stored.slots.len() == series.stored.slots.len() {
                series.stored.slots = stored.slots;
            }
            series.stored.firing_since_ms = stored.firing_since_ms;
        }
    }
}

/// A feed's cumulative record counts: the sum over its series, and per key when judged by key,
/// for the first `max_keys` keys (in the order the tracker first saw them) only, so a tick never
/// copies more keys than are judged. The placeholder of a split feed, which no record can reach,
/// is left out.
pub fn feed_counts(tracker: &Tracker, feed: usize, max_keys: Option<usize>) -> FeedCounts {
    let track = tracker.feed(feed as FeedIndex);
    let total = track.records;
    let Some(max_keys) = max_keys else {
        return FeedCounts {
            total,
            ..FeedCounts::default()
        };
    };
    let keys: Vec<(String, u64)> = track.series()[track.hidden()..]
        .iter()
        .filter(|series| !series.key_bytes().is_empty())
        .take(max_keys)
        .map(|series| (series.key().into_owned(), series.records))
        .collect();
    FeedCounts {
        total,
        keys_left_out: track.keys() - keys.len(),
        keys,
    }
}

fn window_ms(rules: &VolumeConfig) -> i64 {
    i64::try_from(rules.window.as_millis()).unwrap_or(i64::MAX)
}

fn status(series: &SeriesVolume) -> &'static str {
    if series.stored.firing_since_ms.is_some() {
        return "firing";
    }
    match (series.last.rate, series.last.threshold) {
        (Some(rate), Some(threshold)) if rate < threshold => "below",
        (Some(_), Some(_)) => "ok",
        _ => "unjudged",
    }
}

/// Sets every volume gauge from one judgement: the verdicts flow into the metrics, never back.
pub fn export_metrics(metrics: &crate::metrics::VolumeMetrics, views: &[VolumeView]) {
    for view in views {
        let mut labels: crate::metrics::VolumeLabels = vec![("feed", view.feed.clone())];
        if let Some(key) = &view.key {
            labels.push(("key", key.clone()));
        }
        for (family, value) in [
            (&metrics.rate, view.rate_per_second),
            (&metrics.expected_rate, view.expected_rate_per_second),
            (&metrics.min_rate, view.threshold_per_second),
        ] {
            match value {
                Some(value) => {
                    family.get_or_create(&labels).set(value);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }
}
