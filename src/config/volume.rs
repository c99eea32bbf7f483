//! A feed's volume rule (`min_rate` and its `volume_*` and `drop_ratio` keys), validated: how
//! many records a feed (or each of its keys) must keep bringing, judged by [`crate::volume`].

use std::time::Duration;

use super::raw::{RawFeed, RawMode};
use super::ConfigError;
use crate::schedule::WeekClock;

/// Default `drop_ratio`: a learned rate below a fifth of its baseline pages.
pub const DEFAULT_DROP_RATIO: f64 = 0.2;
/// Default `volume_for`.
pub const DEFAULT_VOLUME_FOR: Duration = Duration::from_secs(600);
/// Default `volume_window`: the rate is the count over the last ten minutes.
pub const DEFAULT_VOLUME_WINDOW: Duration = Duration::from_secs(600);
/// Default `volume_max_keys`.
pub const DEFAULT_VOLUME_MAX_KEYS: usize = 1_000;
/// The shortest `volume_window`: one second per bucket.
const MIN_VOLUME_WINDOW: Duration = Duration::from_secs(10);

/// What rate a feed must keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinRate {
    /// A fixed rate, records per second: below it pages.
    PerSecond(f64),
    /// Below `drop_ratio` of the learned hour-of-week baseline pages.
    Learned { drop_ratio: f64 },
}

/// One feed's volume rule.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    /// Index of the feed in [`super::Config::feeds`].
    pub feed: usize,
    pub min_rate: MinRate,
    /// The rate is the count over this sliding window (ten buckets).
    pub window: Duration,
    /// How long the rate must stay below the threshold before `FeedVolumeDrop` pages.
    pub hold: Duration,
    /// Judge each split value too, not only the feed.
    pub by_key: bool,
    /// With `by_key`: most keys judged; later keys are counted, not judged.
    pub max_keys: usize,
    /// The clocks a learned baseline's hours of the week are counted on (`learn_timezone`).
    pub hours: WeekClock,
}

/// The volume rules of every feed that sets `min_rate`, in feed order.
pub(super) fn validate_volumes(feeds: &[RawFeed]) -> Result<Vec<VolumeConfig>, ConfigError> {
    let mut volumes = Vec::new();
    for (index, feed) in feeds.iter().enumerate() {
        if let Some(volume) = validate_volume(index, feed)? {
            volumes.push(volume);
        }
    }
    Ok(volumes)
}

fn validate_volume(index: usize, feed: &RawFeed) -> Result<Option<VolumeConfig>, ConfigError> {
    let field = |name: &str| format!("feed[{index}].{name}");
    let Some(min_rate_text) = &feed.min_rate else {
        let stray = [
            ("drop_ratio", feed.drop_ratio.is_some()),
            ("volume_by_key", feed.volume_by_key.is_some()),
            ("volume_max_keys", feed.volume_max_keys.is_some()),
            ("volume_for", feed.volume_for.is_some()),
            ("volume_window", feed.volume_window.is_some()),
        ];
        if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(ConfigError::invalid(
                field(name),
                "needs min_rate (a rate such as \"100/min\", or \"learned\")",
            ));
        }
        return Ok(None);
    };
    let min_rate = parse_min_rate(min_rate_text)
        .map_err(|reason| ConfigError::invalid(field("min_rate"), reason))?;
    let min_rate =
        match (min_rate, feed.drop_ratio) {
            (MinRate::PerSecond(_), Some(_)) => return Err(ConfigError::invalid(
                field("drop_ratio"),
                "applies only to min_rate = \"learned\"; a fixed min_rate is the threshold itself",
            )),
            (MinRate::Learned { .. }, Some(ratio)) if !(ratio > 0.0 && ratio < 1.0) => {
                return Err(ConfigError::invalid(
                    field("drop_ratio"),
                    format!("{ratio} must be between 0 and 1 (exclusive)"),
                ))
            }
            (MinRate::Learned { .. }, Some(ratio)) => MinRate::Learned { drop_ratio: ratio },
            (rate, None) => rate,
        };
    if feed.mode == RawMode::Tail {
        return Err(ConfigError::invalid(
            field("min_rate"),
            "tail mode reads one record per partition, so it cannot count a rate; use mode = \"consume\"",
        ));
    }
    let by_key = feed.volume_by_key.unwrap_or(false);
    if by_key && feed.split_by.is_none() {
        return Err(ConfigError::invalid(
            field("volume_by_key"),
            "needs split_by: there are no keys to judge",
        ));
    }
    let max_keys = feed.volume_max_keys.unwrap_or(DEFAULT_VOLUME_MAX_KEYS);
    if max_keys == 0 {
        return Err(ConfigError::invalid(
            field("volume_max_keys"),
            "must be at least 1",
        ));
    }
    let window = feed.volume_window.unwrap_or(DEFAULT_VOLUME_WINDOW);
    if window < MIN_VOLUME_WINDOW {
        return Err(ConfigError::invalid(
            field("volume_window"),
            format!(
                "{} is shorter than {}",
                humantime::format_duration(window),
                humantime::format_duration(MIN_VOLUME_WINDOW)
            ),
        ));
    }
    let timezone = match &feed.learn_timezone {
        Some(name) => super::window::parse_timezone(field("learn_timezone"), name)?,
        None => chrono_tz::UTC,
    };
    Ok(Some(VolumeConfig {
        feed: index,
        min_rate,
        window,
        hold: feed.volume_for.unwrap_or(DEFAULT_VOLUME_FOR),
        by_key,
        max_keys,
        hours: WeekClock { timezone },
    }))
}

/// `"learned"`, or `"<number>/s"`, `"/min"`, `"/h"` (a positive number).
fn parse_min_rate(text: &str) -> Result<MinRate, String> {
    if text == "learned" {
        return Ok(MinRate::Learned {
            drop_ratio: DEFAULT_DROP_RATIO,
        });
    }
    let Some((count, unit)) = text.split_once('/') else {
        return Err(format!(
            "{text:?} is neither \"learned\" nor a rate such as \"100/min\" (units: s, min, h)"
        ));
    };
    let seconds = match unit.trim() {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use s, min or h)"
            ))
        }
    };
    let count: f64 = count
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {:?} is not a number", count.trim()))?;
    if !(count.is_finite() && count > 0.0) {
        return Err(format!("{text:?}: the rate must be positive"));
    }
    Ok(MinRate::PerSecond(count / seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_unit() {
        assert_eq!(parse_min_rate("60/min"), Ok(MinRate::PerSecond(1.0)));
        assert_eq!(parse_min_rate("2/s"), Ok(MinRate::PerSecond(2.0)));
        assert_eq!(parse_min_rate("3600/h"), Ok(MinRate::PerSecond(1.0)));
        assert_eq!(
            parse_min_rate("learned"),
            Ok(MinRate::Learned { drop_ratio: 0.2 })
        );
        assert!(parse_min_rate("0/min").is_err());
        assert!(parse_min_rate("10/day").is_err());
        assert!(parse_min_rate("many").is_err());
    }
}
