//! `min_rate` and the `volume_*` keys: accepted forms and the errors that name the key.

use std::time::Duration;

use super::*;
use crate::config::{MinRate, VolumeConfig};

#[test]
fn a_fixed_min_rate_takes_the_documented_defaults() {
    let config = parse_with(&with_feed("topic = \"a\"\nmin_rate = \"100/min\""), &[]).unwrap();
    assert_eq!(
        config.volume,
        vec![VolumeConfig {
            feed: 0,
            min_rate: MinRate::PerSecond(100.0 / 60.0),
            window: Duration::from_secs(600),
            hold: Duration::from_secs(600),
            by_key: false,
            max_keys: 1_000,
            hours: crate::schedule::WeekClock {
                timezone: chrono_tz::UTC
            },
        }]
    );
}

#[test]
fn a_learned_rate_by_key_with_its_own_ratio_window_and_hold() {
    let config = parse_with(
        &with_feed(
            "topic = \"a\"\nsplit_by = \"key\"\nmin_rate = \"learned\"\ndrop_ratio = 0.5\nvolume_by_key = true\nvolume_max_keys = 3\nvolume_for = \"5m\"\nvolume_window = \"20m\"",
        ),
        &[],
    )
    .unwrap();
    let volume = &config.volume[0];
    assert_eq!(volume.min_rate, MinRate::Learned { drop_ratio: 0.5 });
    assert_eq!(volume.window, Duration::from_secs(1200));
    assert_eq!(volume.hold, Duration::from_secs(300));
    assert!(volume.by_key);
    assert_eq!(volume.max_keys, 3);
}

#[test]
fn learn_timezone_counts_a_learned_baselines_hours_and_needs_something_learned_by_hour() {
    let config = parse_with(
        &with_feed("topic = \"a\"\nmin_rate = \"learned\"\nlearn_timezone = \"Europe/Berlin\""),
        &[],
    )
    .unwrap();
    assert_eq!(config.volume[0].hours.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(config.feeds[0].learning, None, "fixed thresholds still");
    let error = error_of(&with_feed(
        "topic = \"a\"\nmin_rate = \"60/min\"\nlearn_timezone = \"Europe/Berlin\"",
    ));
    assert!(
        error.contains("feed[0].learn_timezone")
            && error.contains("only with learn_by_hour = true or min_rate = \"learned\""),
        "{error}"
    );
}

#[test]
fn a_feed_without_min_rate_is_not_judged_for_volume() {
    let config = parse_with(MINIMAL, &[]).unwrap();
    assert!(config.volume.is_empty());
}

#[test]
fn volume_errors_name_the_key_and_the_reason() {
    let cases = [
        (
            "min_rate = \"lots\"",
            "feed[0].min_rate: \"lots\" is neither \"learned\" nor a rate such as \"100/min\" (units: s, min, h)",
        ),
        (
            "min_rate = \"5/day\"",
            "feed[0].min_rate: \"5/day\": unknown unit \"day\" (use s, min or h)",
        ),
        (
            "min_rate = \"0/min\"",
            "feed[0].min_rate: \"0/min\": the rate must be positive",
        ),
        (
            "min_rate = \"10/min\"\ndrop_ratio = 0.5",
            "feed[0].drop_ratio: applies only to min_rate = \"learned\"; a fixed min_rate is the threshold itself",
        ),
        (
            "min_rate = \"learned\"\ndrop_ratio = 1.5",
            "feed[0].drop_ratio: 1.5 must be between 0 and 1 (exclusive)",
        ),
        (
            "min_rate = \"learned\"\nvolume_by_key = true",
            "feed[0].volume_by_key: needs split_by: there are no keys to judge",
        ),
        (
            "split_by = \"key\"\nmin_rate = \"learned\"\nvolume_max_keys = 0",
            "feed[0].volume_max_keys: must be at least 1",
        ),
        (
            "min_rate = \"1/s\"\nvolume_window = \"5s\"",
            "feed[0].volume_window: 5s is shorter than 10s",
        ),
        (
            "mode = \"tail\"\nmin_rate = \"1/s\"",
            "feed[0].min_rate: tail mode reads one record per partition, so it cannot count a rate; use mode = \"consume\"",
        ),
        (
            "volume_for = \"5m\"",
            "feed[0].volume_for: needs min_rate (a rate such as \"100/min\", or \"learned\")",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            error_of(&with_feed(&format!("topic = \"a\"\n{body}"))),
            expected,
            "{body}"
        );
    }
}

#[test]
fn check_config_prints_each_volume_rule_under_its_feed() {
    let text = format!(
        "{KAFKA}[[feed]]\nname = \"fixed\"\ntopic = \"fixed\"\nmin_rate = \"400/min\"\n[[feed]]\nname = \"learned\"\ntopic = \"learned\"\nsplit_by = \"key\"\nmin_rate = \"learned\"\ndrop_ratio = 0.5\nvolume_by_key = true\nvolume_max_keys = 3\nvolume_for = \"5m\"\nvolume_window = \"20m\"\n[[feed]]\nname = \"plain\"\ntopic = \"plain\"\n"
    );
    let described = describe(&parse_with(&text, &[]).unwrap());
    let expected = "  fixed: topic=fixed split_by=none timestamp=record warn_after=1h critical_after=6h\n    volume: min_rate=400/min volume_for=10m volume_window=10m\n  learned: topic=learned split_by=key timestamp=record warn_after=1h critical_after=6h max_keys=100000\n    volume: min_rate=learned (hour-of-week baseline, UTC) drop_ratio=0.5 volume_for=5m volume_window=20m volume_by_key=true volume_max_keys=3\n  plain: topic=plain split_by=none timestamp=record warn_after=1h critical_after=6h\n";
    assert!(described.contains(expected), "{described}");
}
