//! Learned cadence (`thresholds = "learned"`): the one home of "which thresholds does this
//! series get".
//!
//! Each series of a learned feed keeps a [`Cadence`]: a histogram of the gaps between
//! consecutive new last-seen event times, 20 saturating `u8` counters on a log2 scale (bucket
//! 0: under 1 s; bucket `i`: `[2^(i-1) s, 2^i s)`; the last one also takes everything longer),
//! plus a saturating count of gaps learned: 22 bytes per series, kept beside a learned feed's
//! series (fixed feeds keep none), no allocation of its own. When a
//! counter would pass 255 every counter is halved, so recent behaviour dominates. Two summaries
//! merge by a bucket-wise max, which is idempotent: a follower that reloads the same summary
//! every few seconds does not inflate it.
//!
//! The tracker feeds it facts (a gap, and whether the series was alerting when the gap ended);
//! [`effective`] turns it and the thresholds in force (the ceilings) into the thresholds a
//! series is judged by:
//! - p99 = the upper edge of the bucket holding the 99th percentile gap;
//! - warn = clamp(3 × p99, `warn_after_min`, `warn_after`), critical = clamp(6 × p99,
//!   `critical_after_min`, `critical_after`): the configured (or window's) thresholds are
//!   ceilings, so a ten-day silence always pages by `critical_after`; the ceiling wins over a
//!   floor;
//! - until `learn_min_gaps` gaps are learned, the ceilings apply (warm-up).

use crate::schedule::Thresholds;

/// Histogram buckets: the last one's upper edge is 2^19 s, about six days.
pub const BUCKETS: usize = 20;

/// A series' learned inter-arrival gaps: see the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cadence {
    buckets: [u8; BUCKETS],
    /// Gaps learned, saturating (halving does not lower it: warm-up ends once).
    gaps: u16,
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
    pub warn_floor_ms: i64,
    pub critical_floor_ms: i64,
}

/// Upper edge of bucket `index`, ms.
fn bucket_upper_ms(index: usize) -> i64 {
    1_000_i64 << index
}

fn bucket_of(gap_ms: i64) -> usize {
    let seconds = (gap_ms / 1_000) as u64;
    let index = (u64::BITS - seconds.leading_zeros()) as usize;
    index.min(BUCKETS - 1)
}

impl Cadence {
    /// Learns one gap (positive, ms). Returns true when this gap ends the warm-up of
    /// `min_gaps`, so the caller can have the series judged by its new thresholds at once.
    pub fn learn(&mut self, gap_ms: i64, min_gaps: u16) -> bool {
        debug_assert!(
            gap_ms > 0,
            "gaps of 0 and out-of-order records are not learned"
        );
        let bucket = bucket_of(gap_ms);
        if self.buckets[bucket] == u8::MAX {
            for count in &mut self.buckets {
                *count >>= 1;
            }
        }
        self.buckets[bucket] += 1;
        self.gaps = self.gaps.saturating_add(1);
        self.gaps == min_gaps
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
                return Some(bucket_upper_ms(index));
            }
        }
        Some(bucket_upper_ms(BUCKETS - 1))
    }

    /// Takes in another copy of the same series' summary (restart, replica): bucket-wise max.
    pub fn merge(&mut self, other: &Cadence) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = (*mine).max(theirs);
        }
        self.gaps = self.gaps.max(other.gaps);
    }

    /// As stored: `c1:<gaps>:<40 hex digits, one byte per bucket>`.
    pub fn encode(&self) -> String {
        let mut text = format!("c1:{}:", self.gaps);
        for count in self.buckets {
            text.push_str(&format!("{count:02x}"));
        }
        text
    }

    /// The inverse of [`Cadence::encode`]; `None` when the text is not one.
    pub fn decode(text: &str) -> Option<Cadence> {
        let rest = text.strip_prefix("c1:")?;
        let (gaps, hex) = rest.split_once(':')?;
        if hex.len() != 2 * BUCKETS || !hex.is_ascii() {
            return None;
        }
        let mut cadence = Cadence {
            gaps: gaps.parse().ok()?,
            ..Cadence::default()
        };
        for (index, count) in cadence.buckets.iter_mut().enumerate() {
            *count = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).ok()?;
        }
        Some(cadence)
    }
}

/// The thresholds a series is judged by, and where they come from: see the module
/// documentation. `ceilings` are the thresholds in force (the feed's, or its window's).
pub fn effective(
    learning: Option<&Learning>,
    ceilings: Thresholds,
    cadence: &Cadence,
) -> (Thresholds, ThresholdSource) {
    let Some(learning) = learning else {
        return (ceilings, ThresholdSource::Fixed);
    };
    if cadence.gaps < learning.min_gaps {
        return (ceilings, ThresholdSource::WarmUp);
    }
    let Some(p99_ms) = cadence.p99_ms() else {
        return (ceilings, ThresholdSource::WarmUp);
    };
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
        warn_floor_ms: MINUTE_MS,
        critical_floor_ms: 5 * MINUTE_MS,
    };

    fn ceilings(warn_after_ms: i64, critical_after_ms: i64) -> Thresholds {
        Thresholds {
            warn_after_ms,
            critical_after_ms,
            expect_nothing: false,
        }
    }

    fn learned(gap_ms: i64, times: usize) -> Cadence {
        let mut cadence = Cadence::default();
        for _ in 0..times {
            cadence.learn(gap_ms, LEARNING.min_gaps);
        }
        cadence
    }

    #[test]
    fn gaps_fall_into_log2_buckets_and_p99_is_the_upper_edge() {
        assert_eq!(learned(1, 1).p99_ms(), Some(SECOND_MS));
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
    fn the_99th_percentile_ignores_one_outlier_in_a_hundred_and_two_are_not_outliers() {
        let mut cadence = learned(SECOND_MS, 99);
        cadence.learn(HOUR_MS, 20);
        assert_eq!(cadence.p99_ms(), Some(2 * SECOND_MS));
        cadence.learn(HOUR_MS, 20);
        assert_eq!(cadence.p99_ms(), Some(4_096 * SECOND_MS));
    }

    #[test]
    fn a_saturated_counter_halves_all_so_recent_behaviour_dominates() {
        let mut cadence = learned(HOUR_MS, 200);
        for _ in 0..2_000 {
            cadence.learn(SECOND_MS, 20);
        }
        assert_eq!(
            cadence.p99_ms(),
            Some(2 * SECOND_MS),
            "the old cadence faded"
        );
        assert_eq!(cadence.gaps(), 2_200);
    }

    #[test]
    fn warm_up_ends_once_at_min_gaps() {
        let mut cadence = Cadence::default();
        let ended: Vec<bool> = (0..25).map(|_| cadence.learn(SECOND_MS, 20)).collect();
        assert_eq!(ended.iter().filter(|&&ended| ended).count(), 1);
        assert!(ended[19]);
    }

    #[test]
    fn the_rule_clamps_between_floors_and_ceilings() {
        let wide = ceilings(12 * HOUR_MS, 24 * HOUR_MS);
        let (thresholds, source) = effective(Some(&LEARNING), wide, &learned(SECOND_MS, 19));
        assert_eq!(source, ThresholdSource::WarmUp);
        assert_eq!(thresholds, wide);

        let (thresholds, source) = effective(Some(&LEARNING), wide, &learned(SECOND_MS, 20));
        assert_eq!(source, ThresholdSource::Learned);
        assert_eq!(
            (thresholds.warn_after_ms, thresholds.critical_after_ms),
            (MINUTE_MS, 5 * MINUTE_MS),
            "3 × 2 s and 6 × 2 s are under the floors"
        );

        let (thresholds, source) = effective(Some(&LEARNING), wide, &learned(20 * MINUTE_MS, 20));
        assert_eq!(source, ThresholdSource::Learned);
        assert_eq!(
            (thresholds.warn_after_ms, thresholds.critical_after_ms),
            (3 * 2_048 * SECOND_MS, 6 * 2_048 * SECOND_MS)
        );

        let (thresholds, source) = effective(Some(&LEARNING), wide, &learned(6 * HOUR_MS, 20));
        assert_eq!(source, ThresholdSource::Ceiling);
        assert_eq!(thresholds, wide);

        let (thresholds, source) = effective(None, wide, &learned(SECOND_MS, 50));
        assert_eq!((thresholds, source), (wide, ThresholdSource::Fixed));
    }

    #[test]
    fn a_ceiling_under_the_floors_wins_and_warn_stays_under_critical() {
        let tight = ceilings(30 * SECOND_MS, 2 * MINUTE_MS);
        let (thresholds, _) = effective(Some(&LEARNING), tight, &learned(SECOND_MS, 20));
        assert_eq!(thresholds.critical_after_ms, 2 * MINUTE_MS);
        assert_eq!(thresholds.warn_after_ms, 30 * SECOND_MS);
        let odd = Learning {
            warn_floor_ms: 10 * MINUTE_MS,
            ..LEARNING
        };
        let (thresholds, _) = effective(
            Some(&odd),
            ceilings(HOUR_MS, 2 * HOUR_MS),
            &learned(SECOND_MS, 20),
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
    fn the_stored_form_round_trips_and_rejects_garbage() {
        let cadence = learned(6 * HOUR_MS, 300);
        let text = cadence.encode();
        assert_eq!(text.len(), "c1:300:".len() + 40);
        assert_eq!(Cadence::decode(&text), Some(cadence));
        assert_eq!(Cadence::decode("c1:1:00"), None);
        assert_eq!(Cadence::decode("bogus"), None);
        assert_eq!(Cadence::decode(&text.replace("c1:300", "c1:x")), None);
    }
}
