//! Learned cadence (`thresholds = "learned"`): the one home of "which thresholds does this
//! series get".
//!
//! What a series learns is how stale it gets while healthy, not how many records it sends.
//! Each record that moves last-seen forward is one sample: its value is the staleness the
//! series reached just before it arrived (arrival time minus the previous last-seen event
//! time, so a steady producer latency is part of the normal), and its weight is the event-time
//! span it closes (the gap since the previous last-seen). The [`Cadence`] is that
//! time-weighted distribution: 20 saturating `u8` counters on a log2 scale of staleness
//! (bucket 0: under 1 s; bucket `i`: `[2^(i-1) s, 2^i s)`; the last also takes everything
//! longer), each counting time in units of `2^min(halvings, 11)` seconds, plus a saturating
//! count of samples (warm-up) and the halvings count: 24 bytes per series, kept beside a
//! learned feed's series (fixed feeds keep none), no allocation of its own.
//!
//! Why time and not records: 300 records a second apart weigh 5 minutes against the
//! 55-minute pause that follows them, so a burst or a 2,000-record backfill cannot pull the
//! thresholds down to the floors, and a long gap that is 1 % of the gaps but 9 % of the time
//! stays in the p99. A weight smaller than a unit is added as one unit with the matching
//! probability (a hash of the record's event time: deterministic), so many short gaps add up.
//!
//! Decay is by time: when a counter would pass 255, or all of them together 510, every counter
//! is halved. Under 11 halvings that only doubles the unit (nothing is forgotten, the scale
//! grows to fit the series); from then on the unit stays at 2,048 s and each halving forgets
//! half of the past, once per 255 units (~6 days) of learned time whatever the record rate. Two
//! summaries merge by a bucket-wise max once the one halved fewer times is halved as often as
//! the other: the same rule converts the unit and catches up the decay; idempotent, and a
//! stored copy taken back after a halving does not undo it.
//!
//! The tracker feeds it facts (a sample, whether the series was alerting, whether the feed was
//! known); [`effective`] turns it and the thresholds in force (the ceilings) into the
//! thresholds a series is judged by:
//! - p99 = the upper edge of the bucket under which the series spent 99 % of its learned time;
//! - warn = clamp(3 × p99, `warn_after_min`, `warn_after`), critical = clamp(6 × p99,
//!   `critical_after_min`, `critical_after`): the configured (or window's) thresholds are
//!   ceilings, so a ten-day silence always pages by `critical_after`; the ceiling wins over a
//!   floor;
//! - until `learn_min_gaps` samples and [`WARM_UP_SPAN_MS`] of time are learned, the ceilings
//!   apply (warm-up): a first burst is not a cadence.
//!
//! A feed with `learn_by_hour = true` also keeps one [`Weekly`]: per hour of the week (on the
//! feed's `learn_timezone` clocks), the staleness each sample of any of its series reached
//! within that hour, weighted by the time it spent there, beside one of the whole samples. A
//! series' gap is then judged by its own p99 scaled by the hour's p99 over the feed's (a power
//! of two, as both are bucket edges), taking the most lenient of the hours the gap has spanned:
//! a stock feed that sends every second by day and every ten minutes by night gets night-time
//! thresholds at night, and the night's last gap is not judged by the day's thresholds when
//! the day's first record is a minute late. A last-seen ahead of now (a producer clock ahead)
//! counts as now's hour. For an unsplit feed the scaled p99 is exactly the hour's. As a gap
//! goes on its thresholds can only loosen, so no hour's start needs every series judged again.
//! One [`Weekly`] per feed, not per series (168 × 24 bytes), keeps memory bounded at 1M keys.
//! An hour still warming up uses the ceilings, like a series in warm-up.
//!
//! On a split feed the feed's hours are the busiest keys' shape; a key in another timezone (or
//! one with no day and night at all) would be judged at its night by the feed's day. So each
//! key of a split `learn_by_hour` feed also keeps its [`OwnHours`]: per hour of the day (24
//! bytes), the log2 size of how stale it got in that hour lately, and a gap is never judged
//! stricter than the key has itself been in the hours it spanned: the p99 a gap is judged by
//! is the larger of the feed-scaled one and the key's own for those hours. An hour of the day
//! the key has not been seen through yet uses the ceilings while the key has learned less than
//! a day, and its plain p99 (as without `learn_by_hour`) after that (a restart: own hours are
//! kept in memory only).

use crate::schedule::{Thresholds, WeekClock, WEEK_HOURS};

const HOUR_MS: i64 = 3_600_000;

/// Histogram buckets: the last one's upper edge is 2^19 s, about six days.
pub const BUCKETS: usize = 20;

/// A series' learned inter-arrival gaps: see the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cadence {
    buckets: [u8; BUCKETS],
    /// Gaps learned, saturating (halving does not lower it: warm-up ends once).
    gaps: u16,
    /// Times the counters were halved (wrapping): the scale the counters are at, so a merge
    /// halves an older copy as often as this one was before taking a bucket-wise max.
    halvings: u16,
}

/// Where a series' effective thresholds come from (`threshold_source` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    /// `thresholds = "fixed"`: the configured ones (or the window's).
    Fixed,
    /// Learned, not yet `learn_min_gaps` gaps: the ceilings.
    WarmUp,
    /// From the series' own gaps, within the floors and ceilings.
    Learned,
    /// Learned, but the rule reached a ceiling (warn or critical), which applies.
    Ceiling,
}

impl ThresholdSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdSource::Fixed => "fixed",
            ThresholdSource::WarmUp => "warm-up",
            ThresholdSource::Learned => "learned",
            ThresholdSource::Ceiling => "ceiling",
        }
    }
}

/// A learned feed's rule, validated (`learn_min_gaps`, `warn_after_min`,
/// `critical_after_min`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learning {
    pub min_gaps: u16,
    /// `learn_min_span`: learned time needed beside `min_gaps` ([`WARM_UP_SPAN_MS`] default).
    pub min_span_ms: i64,
    pub warn_floor_ms: i64,
    pub critical_floor_ms: i64,
    /// `learn_by_hour = true`: the feed's hours, on the `learn_timezone` clocks.
    pub by_hour: Option<WeekClock>,
}

/// Learned time a series needs by default (`learn_min_span`), beside `learn_min_gaps` samples,
/// before its own thresholds apply: a first burst of records a second apart is not yet a
/// cadence.
pub const WARM_UP_SPAN_MS: i64 = 30 * 60_000;

/// When a summary (a series', or an hour's) has learned enough to be used: `gaps` samples and
/// `span_ms` of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUp {
    pub gaps: u16,
    pub span_ms: i64,
}

impl WarmUp {
    /// `gaps` samples and the default span.
    pub fn gaps(gaps: u16) -> WarmUp {
        WarmUp {
            gaps,
            span_ms: WARM_UP_SPAN_MS,
        }
    }
}

impl Learning {
    pub fn warm_up(&self) -> WarmUp {
        WarmUp {
            gaps: self.min_gaps,
            span_ms: self.min_span_ms,
        }
    }
}

/// Halvings after which the unit of time stops growing (2^11 s = 2,048 s) and each further
/// halving forgets half of the past instead.
const UNIT_HALVINGS: u16 = 11;

/// Units all counters may hold together before they are halved: so the past fades with the
/// time learned (a halving per ~6 days once the unit stopped growing), not only when one
/// counter fills.
const MAX_UNITS: i64 = 2 * u8::MAX as i64;

/// Upper edge of bucket `index`, ms.
fn bucket_upper_ms(index: usize) -> i64 {
    1_000_i64 << index
}

pub(crate) fn bucket_of(gap_ms: i64) -> usize {
    let seconds = (gap_ms.max(0) / 1_000) as u64;
    let index = (u64::BITS - seconds.leading_zeros()) as usize;
    index.min(BUCKETS - 1)
}

/// A deterministic pseudo-random number from a record's event time (splitmix64): what rounds a
/// weight smaller than a unit.
fn dither(salt: i64) -> u64 {
    let mut z = (salt as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Cadence {
    /// Learns a gap of `gap_ms` closed by a record that arrived at its event time: a sample of
    /// that staleness weighing that time. See [`Cadence::learn_sample`].
    pub fn learn(&mut self, gap_ms: i64, min_gaps: u16) -> bool {
        let salt = gap_ms.wrapping_add(i64::from(self.gaps) << 32);
        self.learn_sample(gap_ms, gap_ms, salt, WarmUp::gaps(min_gaps))
    }

    /// Learns one sample: the staleness `value_ms` the series reached, weighing `weight_ms` of
    /// time (both positive); `salt` (the record's event time) rounds a fraction of a unit.
    /// Returns true when this sample ends the warm-up, so the caller can have the series
    /// judged by its new thresholds at once.
    pub fn learn_sample(
        &mut self,
        value_ms: i64,
        weight_ms: i64,
        salt: i64,
        warm_up: WarmUp,
    ) -> bool {
        debug_assert!(
            weight_ms > 0,
            "gaps of 0 and out-of-order records are not learned"
        );
        let was_warm = self.is_warm(warm_up);
        let bucket = bucket_of(value_ms);
        loop {
            let unit_ms = self.unit_ms();
            let whole = weight_ms.max(0) / unit_ms;
            let fraction_ms = weight_ms.max(0) % unit_ms;
            let rounded_up = dither(salt) % (unit_ms as u64) < fraction_ms as u64;
            let units = whole + i64::from(rounded_up);
            let total = i64::from(self.buckets[bucket]) + units;
            let learned_units: i64 = self.buckets.iter().map(|&count| i64::from(count)).sum();
            if total <= i64::from(u8::MAX) && learned_units + units <= MAX_UNITS {
                self.buckets[bucket] = total as u8;
                break;
            }
            let growing = self.halvings < UNIT_HALVINGS;
            self.halve();
            if !growing {
                // The unit no longer grows: one halving forgets half the past, and a sample
                // longer than 255 units (6 days) saturates its counter.
                let total = i64::from(self.buckets[bucket]) + units;
                self.buckets[bucket] = total.min(i64::from(u8::MAX)) as u8;
                break;
            }
        }
        self.gaps = self.gaps.saturating_add(1);
        !was_warm && self.is_warm(warm_up)
    }

    fn halve(&mut self) {
        for count in &mut self.buckets {
            *count >>= 1;
        }
        self.halvings = self.halvings.wrapping_add(1);
    }

    /// What one count is worth, ms.
    fn unit_ms(&self) -> i64 {
        1_000_i64 << self.halvings.min(UNIT_HALVINGS)
    }

    /// Time learned (decayed), ms.
    pub fn learned_ms(&self) -> i64 {
        let units: i64 = self.buckets.iter().map(|&count| i64::from(count)).sum();
        units * self.unit_ms()
    }

    /// Whether its warm-up is over: `warm_up.gaps` samples and `warm_up.span_ms` learned.
    pub fn is_warm(&self, warm_up: WarmUp) -> bool {
        self.gaps >= warm_up.gaps && self.learned_ms() >= warm_up.span_ms
    }

    /// Gaps learned (saturating at 65,535).
    pub fn gaps(&self) -> u16 {
        self.gaps
    }

    pub fn is_empty(&self) -> bool {
        self.gaps == 0
    }

    /// The upper edge of the bucket holding the 99th percentile gap, ms; `None` with no gap.
    pub fn p99_ms(&self) -> Option<i64> {
        self.p99_bucket().map(bucket_upper_ms)
    }

    /// The bucket holding the 99th percentile gap.
    fn p99_bucket(&self) -> Option<usize> {
        let total: u32 = self.buckets.iter().map(|&count| u32::from(count)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the 99th percentile, rounded up: ceil(0.99 × total).
        let rank = (total * 99).div_ceil(100);
        let mut seen = 0;
        for (index, &count) in self.buckets.iter().enumerate() {
            seen += u32::from(count);
            if seen >= rank {
                return Some(index);
            }
        }
        Some(BUCKETS - 1)
    }

    /// Takes in another copy of the same series' summary (restart, replica): the copy that
    /// was halved fewer times is halved as often as the other, then a bucket-wise max. So a
    /// stored copy taken back after this one halved does not undo the halving (recent behaviour
    /// keeps dominating), and taking the same copy in twice changes nothing. Halvings compare as
    /// serial numbers (RFC 1982): copies are never 32,768 halvings apart.
    pub fn merge(&mut self, other: &Cadence) {
        let ahead = other.halvings.wrapping_sub(self.halvings) as i16;
        let (mine_by, theirs_by) = if ahead > 0 {
            (ahead.unsigned_abs(), 0)
        } else {
            (0, ahead.unsigned_abs())
        };
        let halve = |count: u8, by: u16| count.checked_shr(u32::from(by)).unwrap_or(0);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = halve(*mine, mine_by).max(halve(theirs, theirs_by));
        }
        self.gaps = self.gaps.max(other.gaps);
        if ahead > 0 {
            self.halvings = other.halvings;
        }
    }

    /// As stored: `c3:<gaps>:<halvings>:<40 hex digits, one byte per bucket>`.
    pub fn encode(&self) -> String {
        let mut text = format!("c3:{}:{}:", self.gaps, self.halvings);
        for count in self.buckets {
            text.push_str(&format!("{count:02x}"));
        }
        text
    }

    /// The inverse of [`Cadence::encode`]; `None` when the text is not one. The `c2:` and
    /// `c1:` forms earlier versions wrote counted records, not time: they read as an empty
    /// summary (the series warms up again) rather than as weights they are not.
    pub fn decode(text: &str) -> Option<Cadence> {
        let (gaps, halvings, hex, counted_records) = if let Some(rest) = text.strip_prefix("c3:") {
            let (gaps, rest) = rest.split_once(':')?;
            let (halvings, hex) = rest.split_once(':')?;
            (gaps, halvings.parse().ok()?, hex, false)
        } else if let Some(rest) = text.strip_prefix("c2:") {
            let (gaps, rest) = rest.split_once(':')?;
            let (halvings, hex) = rest.split_once(':')?;
            (gaps, halvings.parse::<u16>().ok()?, hex, true)
        } else {
            let (gaps, hex) = text.strip_prefix("c1:")?.split_once(':')?;
            (gaps, 0, hex, true)
        };
        if hex.len() != 2 * BUCKETS || !hex.is_ascii() {
            return None;
        }
        let mut cadence = Cadence {
            gaps: gaps.parse().ok()?,
            halvings,
            ..Cadence::default()
        };
        for (index, count) in cadence.buckets.iter_mut().enumerate() {
            *count = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).ok()?;
        }
        if counted_records {
            return Some(Cadence::default());
        }
        Some(cadence)
    }
}

/// Hours in a day: a key's own hours are hours of the day.
const DAY_HOURS: usize = 24;

/// Learned time under which a key's hour of the day it has not been seen through is still in
/// warm-up (the ceilings): a new key is not judged at its first night by its first day.
const OWN_HOURS_WARM_UP_MS: i64 = 24 * HOUR_MS;

/// Time a key spends at an hour of the day less stale than its [`OwnHours`] say, per log2 step
/// they come down: a slot lowered by a weekend's silence is back within minutes of the key's
/// records at that hour, and a burst of 300 records a second apart (5 minutes) lowers it one
/// step, which the pause after it takes back.
const OWN_HOURS_STEP_MS: i64 = 5 * 60_000;

/// A key's own hours of the day (split `learn_by_hour` feeds), on the feed's clocks: per hour,
/// 1 + the log2 bucket of how stale its learned samples got in it lately (0: not seen through
/// yet). A staler sample raises it at once; a less stale one lowers it one bucket per
/// [`OWN_HOURS_STEP_MS`] it weighs in that hour (a fraction rounded by its event time), never
/// below the sample's own bucket. 24 bytes per key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnHours {
    reached: [u8; DAY_HOURS],
}

impl OwnHours {
    /// Takes the staleness `reached_ms` a sample reached by the end of hour of the week
    /// `hour`, weighing `weight_ms` in it.
    fn learn(&mut self, hour: usize, reached_ms: i64, weight_ms: i64, salt: i64) {
        let slot = &mut self.reached[hour % DAY_HOURS];
        let bucket = bucket_of(reached_ms) as u8 + 1;
        if bucket >= *slot {
            *slot = bucket;
            return;
        }
        let weight_ms = weight_ms.max(0);
        let rounded_up = dither(salt.wrapping_add(hour as i64)) % (OWN_HOURS_STEP_MS as u64)
            < (weight_ms % OWN_HOURS_STEP_MS) as u64;
        let steps = weight_ms / OWN_HOURS_STEP_MS + i64::from(rounded_up);
        let lowered = i64::from(*slot) - steps;
        *slot = lowered.max(i64::from(bucket)) as u8;
    }

    /// The p99 a gap from `since_ms` to `at_ms` may be judged by at most as strict as: the
    /// highest the key reached in the hours of the day it spanned; an hour not seen through
    /// counts as `unseen_ms` (`None`: the ceilings apply).
    fn lenient_ms(
        &self,
        clock: WeekClock,
        since_ms: Option<i64>,
        at_ms: i64,
        unseen_ms: Option<i64>,
    ) -> Option<i64> {
        let last = clock.local_hours(at_ms);
        let first = since_ms
            .map_or(last, |since_ms| clock.local_hours(since_ms))
            .min(last);
        let mut most = 0;
        for local_hours in first.max(last - DAY_HOURS as i64 + 1)..=last {
            let hour_ms = match self.reached[local_hours.rem_euclid(DAY_HOURS as i64) as usize] {
                0 => unseen_ms?,
                bucket => bucket_upper_ms(usize::from(bucket) - 1),
            };
            most = most.max(hour_ms);
        }
        Some(most)
    }

    /// What hour of the day `hour` reached: its bucket's upper edge, ms (`None`: not seen).
    pub fn reached_ms(&self, hour: usize) -> Option<i64> {
        match self.reached[hour % DAY_HOURS] {
            0 => None,
            bucket => Some(bucket_upper_ms(usize::from(bucket) - 1)),
        }
    }
}

/// A learned feed's gaps by hour of the week (`learn_by_hour`): see the module documentation.
#[derive(Debug, Clone)]
pub struct Weekly {
    clock: WeekClock,
    /// Every gap learned by any series of the feed, whole: what the hours are scaled against.
    all: Cadence,
    /// Per hour of the week, the staleness each gap reached within it.
    hours: Box<[Cadence; WEEK_HOURS]>,
    /// The hour learned into last, `(from, until, hour)`: most gaps begin and end in it and need
    /// no timezone lookup.
    current: Option<(i64, i64, usize)>,
    /// Since [`Weekly::take_news`], some hour ended its warm-up or took a gap in a bucket it had
    /// none in (what can move its p99 up): worth storing now, not in a minute. An O(1) test, as
    /// it runs for every gap learned.
    news: bool,
}

impl PartialEq for Weekly {
    fn eq(&self, other: &Weekly) -> bool {
        self.all == other.all && self.hours == other.hours
    }
}

impl Weekly {
    pub fn new(clock: WeekClock) -> Weekly {
        Weekly {
            clock,
            all: Cadence::default(),
            hours: Box::new([Cadence::default(); WEEK_HOURS]),
            current: None,
            news: false,
        }
    }

    /// Learns a sample from `start_ms` (last-seen) to `end_ms` (arrival) weighing `weight_ms`
    /// (the event-time gap it closes, the time up to `end_ms`): whole into the feed's summary,
    /// and into each hour it spanned (at most a week's) the staleness it reached by that hour's
    /// end, weighted by the part of `weight_ms` spent in that hour. Returns true when this ends
    /// some hour's warm-up, so the caller can have the feed judged again.
    /// A split feed's key also has its `own` hours learned, in the same pass.
    #[allow(clippy::too_many_arguments)]
    pub fn learn(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        weight_ms: i64,
        salt: i64,
        warm_up: WarmUp,
        mut own: Option<&mut OwnHours>,
    ) -> bool {
        self.all
            .learn_sample(end_ms - start_ms, weight_ms, salt, warm_up);
        let weighed_from_ms = end_ms - weight_ms;
        let mut warmed = false;
        let mut from_ms = start_ms;
        for _ in 0..WEEK_HOURS {
            let (hour, until_ms) = self.hour_at(from_ms);
            let reached_ms = end_ms.min(until_ms) - start_ms;
            let hour_weight_ms = end_ms.min(until_ms) - weighed_from_ms.max(until_ms - HOUR_MS);
            if hour_weight_ms > 0 {
                self.news |= self.hours[hour].buckets[bucket_of(reached_ms)] == 0;
                warmed |= self.hours[hour].learn_sample(reached_ms, hour_weight_ms, salt, warm_up);
                if let Some(own) = own.as_deref_mut() {
                    own.learn(hour, reached_ms, hour_weight_ms, salt);
                }
            }
            if end_ms < until_ms {
                break;
            }
            from_ms = until_ms;
        }
        self.news |= warmed;
        warmed
    }

    /// Whether it learned news since the last call (see the field), and forgets it.
    pub fn take_news(&mut self) -> bool {
        std::mem::take(&mut self.news)
    }

    fn hour_at(&mut self, at_ms: i64) -> (usize, i64) {
        match self.current {
            Some((from_ms, until_ms, hour)) if from_ms <= at_ms && at_ms < until_ms => {
                (hour, until_ms)
            }
            _ => {
                let (hour, until_ms) = self.clock.hour(at_ms);
                self.current = Some((until_ms - HOUR_MS, until_ms, hour));
                (hour, until_ms)
            }
        }
    }

    /// How many powers of two a gap that began at `since_ms` (`None`: no record yet) scales a
    /// series' p99 by at `at_ms`: the most of the hours it has spanned ([`Weekly::hour_shift`]).
    /// `None` while any of them warms up.
    pub fn shift(&self, since_ms: Option<i64>, at_ms: i64, warm_up: WarmUp) -> Option<i32> {
        let last = self.clock.local_hours(at_ms);
        // A last-seen ahead of now (a producer clock ahead) is now's hour: no empty range.
        let first = since_ms
            .map_or(last, |since_ms| self.clock.local_hours(since_ms))
            .min(last);
        let all = self.all.p99_bucket()?;
        let mut most = i32::MIN;
        for local_hours in first.max(last - WEEK_HOURS as i64 + 1)..=last {
            let hour = WeekClock::hour_of_week(local_hours);
            most = most.max(self.scale_against(hour, warm_up, all)?);
        }
        Some(most)
    }

    /// Hour `hour`'s p99 bucket less the feed's; `None` while it has fewer than `min_gaps` gaps.
    pub fn hour_shift(&self, hour: usize, warm_up: WarmUp) -> Option<i32> {
        self.scale_against(hour, warm_up, self.all.p99_bucket()?)
    }

    fn scale_against(&self, hour: usize, warm_up: WarmUp, all_bucket: usize) -> Option<i32> {
        let summary = &self.hours[hour];
        if !summary.is_warm(warm_up) {
            return None;
        }
        Some(summary.p99_bucket()? as i32 - all_bucket as i32)
    }

    /// The summary of every gap of the feed, whole: what the hours are scaled against.
    pub fn feed_summary(&self) -> &Cadence {
        &self.all
    }

    /// The summary of hour `hour` of the week.
    pub fn hour(&self, hour: usize) -> &Cadence {
        &self.hours[hour]
    }

    pub fn clock(&self) -> WeekClock {
        self.clock
    }

    /// Takes in another copy (restart, replica): bucket-wise max, as [`Cadence::merge`].
    pub fn merge(&mut self, other: &Weekly) {
        self.all.merge(&other.all);
        for (mine, theirs) in self.hours.iter_mut().zip(other.hours.iter()) {
            mine.merge(theirs);
        }
    }

    /// As stored: `w1,` then the feed's summary and the 168 hours', each as
    /// [`Cadence::encode`], comma-separated.
    pub fn encode(&self) -> String {
        let mut text = String::from("w1");
        for cadence in std::iter::once(&self.all).chain(self.hours.iter()) {
            text.push(',');
            text.push_str(&cadence.encode());
        }
        text
    }

    /// The inverse of [`Weekly::encode`], on `clock`; `None` when the text is not one.
    pub fn decode(text: &str, clock: WeekClock) -> Option<Weekly> {
        let mut parts = text.split(',');
        if parts.next()? != "w1" {
            return None;
        }
        let mut weekly = Weekly::new(clock);
        weekly.all = Cadence::decode(parts.next()?)?;
        for hour in weekly.hours.iter_mut() {
            *hour = Cadence::decode(parts.next()?)?;
        }
        parts.next().is_none().then_some(weekly)
    }
}

/// What a series of a learned feed is judged by: its own cadence and, on a `learn_by_hour`
/// feed, the feed's hours and the series' last-seen (where its gap began).
#[derive(Debug, Clone, Copy, Default)]
pub struct Learned<'a> {
    pub cadence: Cadence,
    pub hours: Option<&'a Weekly>,
    /// A split `learn_by_hour` feed's key: its own hours of the day.
    pub own_hours: Option<&'a OwnHours>,
    pub since_ms: Option<i64>,
}

/// The thresholds a series is judged by at `at_ms`, and where they come from: see the module
/// documentation. `ceilings` are the thresholds in force (the feed's, or its window's).
pub fn effective(
    learning: Option<&Learning>,
    ceilings: Thresholds,
    learned: &Learned,
    at_ms: i64,
) -> (Thresholds, ThresholdSource) {
    let Some(learning) = learning else {
        return (ceilings, ThresholdSource::Fixed);
    };
    let cadence = &learned.cadence;
    if !cadence.is_warm(learning.warm_up()) {
        return (ceilings, ThresholdSource::WarmUp);
    }
    let Some(p99_ms) = cadence.p99_ms() else {
        return (ceilings, ThresholdSource::WarmUp);
    };
    let shift = learned
        .hours
        .map(|hours| hours.shift(learned.since_ms, at_ms, learning.warm_up()));
    let scaled_p99_ms = match shift {
        None => p99_ms,
        Some(None) => return (ceilings, ThresholdSource::WarmUp),
        // Bucket edges are powers of two: the scale is a shift (at most 19 either way).
        // Clamped, so no clock can make a shift that overflows.
        Some(Some(shift)) if shift >= 0 => p99_ms.saturating_mul(1 << shift.min(BUCKETS as i32)),
        Some(Some(shift)) => (p99_ms >> shift.saturating_neg().min(BUCKETS as i32)).max(1),
    };
    // A key of a split feed is never judged stricter than it has itself been at these hours.
    let own_p99_ms = match (learned.own_hours, learned.hours) {
        (Some(own), Some(hours)) => {
            let unseen_ms = (cadence.learned_ms() >= OWN_HOURS_WARM_UP_MS).then_some(p99_ms);
            match own.lenient_ms(hours.clock(), learned.since_ms, at_ms, unseen_ms) {
                Some(own_ms) => own_ms,
                None => return (ceilings, ThresholdSource::WarmUp),
            }
        }
        _ => 0,
    };
    let p99_ms = scaled_p99_ms.max(own_p99_ms);
    // The ceiling wins over a floor: a window may set a ceiling under the floor.
    let clamp = |value: i64, floor: i64, ceiling: i64| value.max(floor).min(ceiling);
    let learned_warn_ms = p99_ms.saturating_mul(3);
    let learned_critical_ms = p99_ms.saturating_mul(6);
    let critical_after_ms = clamp(
        learned_critical_ms,
        learning.critical_floor_ms,
        ceilings.critical_after_ms,
    );
    // warn < critical, always (the ceilings are validated so; this keeps it for floors).
    let warn_after_ms = clamp(
        learned_warn_ms,
        learning.warn_floor_ms,
        ceilings.warn_after_ms,
    )
    .min(critical_after_ms - 1);
    let at_ceiling = learned_warn_ms >= ceilings.warn_after_ms
        || learned_critical_ms >= ceilings.critical_after_ms;
    let source = if at_ceiling {
        ThresholdSource::Ceiling
    } else {
        ThresholdSource::Learned
    };
    let thresholds = Thresholds {
        warn_after_ms,
        critical_after_ms,
        expect_nothing: ceilings.expect_nothing,
    };
    (thresholds, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_MS: i64 = 1_000;
    const MINUTE_MS: i64 = 60 * SECOND_MS;
    const HOUR_MS: i64 = 60 * MINUTE_MS;

    const LEARNING: Learning = Learning {
        min_gaps: 20,
        min_span_ms: WARM_UP_SPAN_MS,
        warn_floor_ms: MINUTE_MS,
        critical_floor_ms: 5 * MINUTE_MS,
        by_hour: None,
    };

    /// [`effective`] for a series of a feed that does not learn by hour.
    fn judged(
        learning: Option<&Learning>,
        ceilings: Thresholds,
        cadence: &Cadence,
    ) -> (Thresholds, ThresholdSource) {
        let learned = Learned {
            cadence: *cadence,
            hours: None,
            own_hours: None,
            since_ms: None,
        };
        effective(learning, ceilings, &learned, 0)
    }

    fn ceilings(warn_after_ms: i64, critical_after_ms: i64) -> Thresholds {
        Thresholds {
            warn_after_ms,
            critical_after_ms,
            expect_nothing: false,
        }
    }

    fn learned(gap_ms: i64, times: usize) -> Cadence {
        let mut cadence = Cadence::default();
        learn_times(&mut cadence, gap_ms, times);
        cadence
    }

    /// Learns `times` gaps of `gap_ms`, each with its own salt (as records' event times).
    fn learn_times(cadence: &mut Cadence, gap_ms: i64, times: usize) {
        static SALT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        for _ in 0..times {
            let salt = SALT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cadence.learn_sample(gap_ms, gap_ms, salt, LEARNING.warm_up());
        }
    }

    #[test]
    fn gaps_fall_into_log2_buckets_and_p99_is_the_upper_edge() {
        let mut tiny = Cadence::default();
        tiny.learn_sample(1, SECOND_MS, 0, WarmUp::gaps(20));
        assert_eq!(tiny.p99_ms(), Some(SECOND_MS));
        assert_eq!(learned(SECOND_MS, 1).p99_ms(), Some(2 * SECOND_MS));
        assert_eq!(learned(90 * SECOND_MS, 1).p99_ms(), Some(128 * SECOND_MS));
        assert_eq!(learned(6 * HOUR_MS, 1).p99_ms(), Some(32_768 * SECOND_MS));
        assert_eq!(
            learned(100 * 24 * HOUR_MS, 1).p99_ms(),
            Some(524_288 * SECOND_MS),
            "the last bucket takes everything longer"
        );
        assert_eq!(Cadence::default().p99_ms(), None);
    }

    #[test]
    fn the_99th_percentile_is_of_time_not_of_gaps() {
        // 1,000 minute gaps: a 5-minute gap is 0.5 % of the time, five are 2.5 %.
        let mut cadence = learned(60 * SECOND_MS, 1_000);
        cadence.learn(5 * MINUTE_MS, 20);
        assert_eq!(cadence.p99_ms(), Some(64 * SECOND_MS));
        for _ in 0..4 {
            cadence.learn(5 * MINUTE_MS, 20);
        }
        assert_eq!(cadence.p99_ms(), Some(512 * SECOND_MS));
        // 300 one-second gaps weigh 5 minutes against one 55-minute pause.
        let mut burst = learned(SECOND_MS, 300);
        burst.learn(55 * MINUTE_MS, 20);
        assert_eq!(burst.p99_ms(), Some(4_096 * SECOND_MS));
    }

    #[test]
    fn a_burst_does_not_erase_rare_long_gaps_but_time_does_fade_the_past() {
        let hourly = learned(HOUR_MS, 200);
        let mut burst = hourly;
        learn_times(&mut burst, 100, 2_000);
        assert_eq!(
            burst.p99_ms(),
            Some(4_096 * SECOND_MS),
            "a backfill weighs 200 s"
        );
        let mut sped_up = hourly;
        // 60 days of 10-second gaps: the hourly past (200 hours) fades.
        learn_times(&mut sped_up, 10 * SECOND_MS, 60 * 8_640);
        assert_eq!(
            sped_up.p99_ms(),
            Some(16 * SECOND_MS),
            "the old cadence faded"
        );
        assert_eq!(sped_up.gaps(), u16::MAX, "the count saturates");
    }

    #[test]
    fn warm_up_ends_once_at_min_gaps_and_half_an_hour_learned() {
        let mut cadence = Cadence::default();
        let ended: Vec<bool> = (0..40).map(|_| cadence.learn(64 * SECOND_MS, 20)).collect();
        assert_eq!(ended.iter().filter(|&&ended| ended).count(), 1);
        assert!(ended[28], "29 × 64 s is the first past 30 minutes");
        let mut burst = learned(SECOND_MS, 300);
        assert!(
            !burst.is_warm(WarmUp::gaps(20)),
            "300 gaps, 5 minutes: still warming up"
        );
        assert!(burst.learn(55 * MINUTE_MS, 20), "the hour's pause ends it");
    }

    #[test]
    fn the_rule_clamps_between_floors_and_ceilings() {
        let wide = ceilings(12 * HOUR_MS, 24 * HOUR_MS);
        let (thresholds, source) = judged(Some(&LEARNING), wide, &learned(SECOND_MS, 19));
        assert_eq!(source, ThresholdSource::WarmUp);
        assert_eq!(thresholds, wide);

        let (thresholds, source) = judged(Some(&LEARNING), wide, &learned(SECOND_MS, 2_000));
        assert_eq!(source, ThresholdSource::Learned);
        assert_eq!(
            (thresholds.warn_after_ms, thresholds.critical_after_ms),
            (MINUTE_MS, 5 * MINUTE_MS),
            "3 × 2 s and 6 × 2 s are under the floors"
        );

        let (thresholds, source) = judged(Some(&LEARNING), wide, &learned(20 * MINUTE_MS, 20));
        assert_eq!(source, ThresholdSource::Learned);
        assert_eq!(
            (thresholds.warn_after_ms, thresholds.critical_after_ms),
            (3 * 2_048 * SECOND_MS, 6 * 2_048 * SECOND_MS)
        );

        let (thresholds, source) = judged(Some(&LEARNING), wide, &learned(6 * HOUR_MS, 20));
        assert_eq!(source, ThresholdSource::Ceiling);
        assert_eq!(thresholds, wide);

        let (thresholds, source) = judged(None, wide, &learned(SECOND_MS, 50));
        assert_eq!((thresholds, source), (wide, ThresholdSource::Fixed));
    }

    #[test]
    fn a_ceiling_under_the_floors_wins_and_warn_stays_under_critical() {
        let tight = ceilings(30 * SECOND_MS, 2 * MINUTE_MS);
        let (thresholds, _) = judged(Some(&LEARNING), tight, &learned(SECOND_MS, 2_000));
        assert_eq!(thresholds.critical_after_ms, 2 * MINUTE_MS);
        assert_eq!(thresholds.warn_after_ms, 30 * SECOND_MS);
        let odd = Learning {
            warn_floor_ms: 10 * MINUTE_MS,
            ..LEARNING
        };
        let (thresholds, _) = judged(
            Some(&odd),
            ceilings(HOUR_MS, 2 * HOUR_MS),
            &learned(SECOND_MS, 2_000),
        );
        assert!(thresholds.warn_after_ms < thresholds.critical_after_ms);
    }

    #[test]
    fn merging_is_a_bucket_wise_max_and_idempotent() {
        let mut mine = learned(SECOND_MS, 30);
        let theirs = learned(HOUR_MS, 5);
        mine.merge(&theirs);
        let once = mine;
        mine.merge(&theirs);
        assert_eq!(mine, once, "reloading the same summary changes nothing");
        assert_eq!(mine.gaps(), 30);
        assert_eq!(mine.p99_ms(), Some(4_096 * SECOND_MS));
    }

    #[test]
    fn a_stored_copy_taken_back_after_a_halving_does_not_undo_it() {
        // A series that sent hourly, stored, then sped up to a record every 10 s for 60 days.
        let stored = learned(HOUR_MS, 100);
        let mut live = stored;
        for day in 0..60 {
            learn_times(&mut live, 10 * SECOND_MS, 8_640);
            // Its own stored copy comes back (a reload, a restart) again and again.
            live.merge(&stored);
            assert!(day < 59 || live.p99_ms() == Some(16 * SECOND_MS));
        }
        assert_eq!(
            live.p99_ms(),
            Some(16 * SECOND_MS),
            "the hourly past faded as if never stored"
        );
        let mut back = stored;
        back.merge(&live);
        assert_eq!(back, live, "the newer copy wins whichever side merges");

        // Copies at the same scale: a plain bucket-wise max.
        let (mut one, mut two) = (Cadence::default(), Cadence::default());
        one.buckets[1] = 30;
        two.buckets[12] = 5;
        one.merge(&two);
        assert_eq!((one.buckets[1], one.buckets[12]), (30, 5));
        // Halvings wrap as serial numbers.
        let (mut old, mut new) = (Cadence::default(), Cadence::default());
        old.halvings = u16::MAX;
        old.buckets[3] = 200;
        new.halvings = 1;
        new.buckets[3] = 10;
        old.merge(&new);
        assert_eq!(
            (old.halvings, old.buckets[3]),
            (1, 50),
            "two halvings ahead"
        );
    }

    #[test]
    fn the_stored_form_round_trips_and_rejects_garbage() {
        let cadence = learned(6 * HOUR_MS, 300);
        let text = cadence.encode();
        let head = format!("c3:300:{}:", cadence.halvings);
        assert!(text.starts_with(&head), "{text}");
        assert_eq!(text.len(), head.len() + 40, "{text}");
        assert_eq!(Cadence::decode(&text), Some(cadence));
        assert_eq!(Cadence::decode("c3:1:0:00"), None);
        assert_eq!(Cadence::decode("bogus"), None);
        assert_eq!(Cadence::decode(&text.replace("c3:300", "c3:x")), None);
        assert_eq!(Cadence::decode(&text.replace(&head, "c3:300:y:")), None);
        // Earlier versions' forms counted records, not time: read as nothing learned yet.
        let hex = &text[head.len()..];
        assert_eq!(
            Cadence::decode(&format!("c2:300:1:{hex}")),
            Some(Cadence::default())
        );
        assert_eq!(
            Cadence::decode(&format!("c1:300:{hex}")),
            Some(Cadence::default())
        );
        assert_eq!(Cadence::decode("c2:300:1:00"), None);
    }

    impl Weekly {
        /// A gap closed by a record that arrived at its event time.
        fn learn_gap(&mut self, start_ms: i64, end_ms: i64, min_gaps: u16) -> bool {
            self.learn(
                start_ms,
                end_ms,
                end_ms - start_ms,
                end_ms,
                WarmUp::gaps(min_gaps),
                None,
            )
        }
    }

    /// 2025-12-01T00:00:00Z, a Monday.
    const MONDAY_MS: i64 = 1_764_547_200_000;

    fn utc() -> WeekClock {
        WeekClock {
            timezone: chrono_tz::UTC,
        }
    }

    #[test]
    fn a_gap_teaches_each_hour_it_spanned_the_staleness_it_reached_there() {
        let mut weekly = Weekly::new(utc());
        // Monday 21:50 to Tuesday 00:10.
        let start_ms = MONDAY_MS + 21 * HOUR_MS + 50 * MINUTE_MS;
        weekly.learn_gap(start_ms, start_ms + 140 * MINUTE_MS, 20);
        let reached: Vec<(usize, Option<i64>)> = (0..WEEK_HOURS)
            .filter(|&hour| !weekly.hour(hour).is_empty())
            .map(|hour| (hour, weekly.hour(hour).p99_ms()))
            .collect();
        assert_eq!(
            reached,
            [
                // 10 min, 70 min, 130 min, then the whole 140 min in Tuesday's first hour.
                (21, Some(1_024 * SECOND_MS)),
                (22, Some(8_192 * SECOND_MS)),
                (23, Some(8_192 * SECOND_MS)),
                (24, Some(16_384 * SECOND_MS)),
            ]
        );
        assert_eq!(weekly.all.gaps(), 1, "the feed's summary takes it once");
        assert_eq!(weekly.all.p99_ms(), Some(16_384 * SECOND_MS));

        let mut long = Weekly::new(utc());
        long.learn_gap(MONDAY_MS, MONDAY_MS + 30 * 24 * HOUR_MS, 20);
        assert!(
            (0..WEEK_HOURS).all(|hour| long.hour(hour).gaps() == 1),
            "a gap longer than a week teaches every hour once"
        );
    }

    #[test]
    fn an_hour_scales_a_series_only_once_it_has_min_gaps() {
        let mut weekly = Weekly::new(utc());
        let ten_am = MONDAY_MS + 10 * HOUR_MS;
        let mut at_ms = ten_am;
        for _ in 0..19 {
            weekly.learn_gap(at_ms, at_ms + 2 * MINUTE_MS, 20);
            at_ms += 2 * MINUTE_MS;
        }
        assert_eq!(
            weekly.shift(None, ten_am, WarmUp::gaps(20)),
            None,
            "19 gaps: warming up"
        );
        assert!(
            weekly.learn_gap(at_ms, at_ms + 2 * MINUTE_MS, 20),
            "the 20th ends it (40 minutes learned)"
        );
        assert_eq!(weekly.shift(None, ten_am, WarmUp::gaps(20)), Some(0));
        assert_eq!(
            weekly.shift(None, ten_am + HOUR_MS, WarmUp::gaps(20)),
            None,
            "11:00 has none"
        );
        // A night of 20-minute gaps at 02:00 makes the feed's p99 that of the night.
        let night_ms = MONDAY_MS + 2 * HOUR_MS;
        for gap in 0..20 {
            let start_ms = night_ms + gap * MINUTE_MS / 20;
            weekly.learn_gap(start_ms, start_ms + 20 * MINUTE_MS, 20);
        }
        assert_eq!(weekly.all.p99_ms(), Some(2_048 * SECOND_MS));
        assert_eq!(
            weekly.shift(Some(ten_am), ten_am, WarmUp::gaps(20)),
            Some(-4),
            "128 s against 2,048 s"
        );
        assert_eq!(weekly.shift(None, night_ms, WarmUp::gaps(20)), Some(0));
        assert_eq!(
            weekly.shift(Some(night_ms), ten_am, WarmUp::gaps(20)),
            None,
            "a gap from 02:00 spans hours still warming up"
        );
        assert_eq!(
            weekly.shift(Some(ten_am + 30 * SECOND_MS), ten_am, WarmUp::gaps(20)),
            Some(-4),
            "a last-seen ahead of now (a producer clock ahead) is now's hour"
        );
        assert_eq!(
            weekly.shift(
                Some(ten_am + HOUR_MS + 1),
                ten_am + HOUR_MS - 1,
                WarmUp::gaps(20)
            ),
            Some(-4),
            "even when it is in the next hour: no empty range"
        );
        // A gap is judged by the most lenient hour it spanned: 10:00's day into 11:00's night.
        for gap in 0..20 {
            let start_ms = ten_am + HOUR_MS + gap * SECOND_MS;
            weekly.learn_gap(start_ms, start_ms + 20 * MINUTE_MS, 20);
        }
        assert_eq!(
            weekly.shift(Some(ten_am), ten_am + HOUR_MS, WarmUp::gaps(20)),
            Some(0)
        );
        assert_eq!(
            weekly.shift(Some(ten_am + HOUR_MS), ten_am + HOUR_MS, WarmUp::gaps(20)),
            Some(0)
        );
        assert_eq!(
            weekly.shift(Some(ten_am), ten_am + HOUR_MS - 1, WarmUp::gaps(20)),
            Some(-4)
        );

        let ceilings = ceilings(12 * HOUR_MS, 24 * HOUR_MS);
        let at = |at_ms: i64| {
            let learned = Learned {
                cadence: weekly.all,
                hours: Some(&weekly),
                own_hours: None,
                since_ms: Some(at_ms),
            };
            let (thresholds, source) = effective(Some(&LEARNING), ceilings, &learned, at_ms);
            (
                thresholds.warn_after_ms,
                thresholds.critical_after_ms,
                source,
            )
        };
        assert_eq!(
            at(ten_am),
            (384 * SECOND_MS, 768 * SECOND_MS, ThresholdSource::Learned),
            "by day: 3 × 128 s and 6 × 128 s"
        );
        assert_eq!(
            at(night_ms),
            (
                3 * 2_048 * SECOND_MS,
                6 * 2_048 * SECOND_MS,
                ThresholdSource::Learned
            )
        );
        assert_eq!(
            at(ten_am + 2 * HOUR_MS),
            (12 * HOUR_MS, 24 * HOUR_MS, ThresholdSource::WarmUp)
        );
    }

    #[test]
    fn hours_are_counted_on_the_local_clocks_across_a_clock_change() {
        let new_york = WeekClock {
            timezone: chrono_tz::America::New_York,
        };
        // Monday 2025-12-01 00:00 in New York is 05:00 UTC.
        assert_eq!(
            new_york.hour(MONDAY_MS + 5 * HOUR_MS),
            (0, MONDAY_MS + 6 * HOUR_MS)
        );
        assert_eq!(new_york.hour(MONDAY_MS + 5 * HOUR_MS - 1).0, 167);
        // Monday 09:00 before (2026-03-02, UTC−5) and after (2026-03-09, UTC−4) the clocks
        // sprang forward on 2026-03-08: the same hour of the week.
        let before_ms = 1_772_460_000_000; // 2026-03-02T14:00:00Z
        let after_ms = 1_773_061_200_000; // 2026-03-09T13:00:00Z
        assert_eq!(new_york.hour(before_ms).0, 9);
        assert_eq!(new_york.hour(after_ms).0, 9);
        assert_eq!(utc().hour(after_ms).0, 13);
    }

    #[test]
    fn hours_merge_by_max_and_round_trip_through_their_stored_form() {
        let mut mine = Weekly::new(utc());
        mine.learn_gap(MONDAY_MS, MONDAY_MS + SECOND_MS, 20);
        let mut theirs = Weekly::new(utc());
        theirs.learn_gap(MONDAY_MS + 3 * HOUR_MS, MONDAY_MS + 4 * HOUR_MS + 1, 20);
        mine.merge(&theirs);
        let once = mine.clone();
        mine.merge(&theirs);
        assert_eq!(mine, once, "idempotent");
        assert_eq!(mine.hour(0).gaps(), 1);
        assert_eq!(mine.hour(4).gaps(), 1);

        let text = mine.encode();
        assert_eq!(Weekly::decode(&text, utc()), Some(mine));
        assert_eq!(Weekly::decode("w1,c2:0:0:00", utc()), None);
        assert_eq!(Weekly::decode(&format!("{text},c2:1:0:00"), utc()), None);
        assert_eq!(Weekly::decode(&text.replacen("w1", "w2", 1), utc()), None);
    }
}
