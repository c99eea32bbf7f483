use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{FeedMode, SplitRule, TimestampRule, TopicMatcher};
use crate::model::{Severity, Status};

const MINUTE: i64 = 60_000;

fn feed(name: &str, split: bool, expected: &[&str]) -> FeedConfig {
    FeedConfig {
        name: Arc::from(name),
        topics: TopicMatcher::Exact(name.to_owned()),
        split: split.then_some(SplitRule::Key),
        timestamp: TimestampRule::Record,
        warn_after: Duration::from_secs(600),
        critical_after: Duration::from_secs(1800),
        expected: expected.iter().map(|value| value.to_string()).collect(),
        mode: FeedMode::Consume,
        max_keys: 1_000,
        max_key_bytes: 256,
        hold: Duration::ZERO,
        rollup_after: 20,
        windows: Vec::new(),
        learning: None,
    }
}

/// One record per listed minute for `key` of `feed`.
fn every_minute(
    keys: &mut KeyTable,
    feed: FeedIndex,
    key: &str,
    minutes: impl IntoIterator<Item = i64>,
) -> Vec<Observation> {
    minutes
        .into_iter()
        .map(|minute| Observation {
            arrival_ms: minute * MINUTE,
            event_ms: minute * MINUTE,
            feed,
            key: keys.intern(feed, key.as_bytes()),
        })
        .collect()
}

fn alert(
    feed: &str,
    key: &str,
    status: Status,
    start_minute: i64,
    end_minute: Option<i64>,
) -> Alert {
    Alert {
        feed: Arc::from(feed),
        key: key.to_owned(),
        severity: status.severity().unwrap(),
        status,
        start_ms: start_minute * MINUTE,
        end_ms: end_minute.map(|minute| minute * MINUTE),
    }
}

const THREE_HOURS: Window = Window {
    start_ms: 0,
    end_ms: 180 * MINUTE,
};

#[test]
fn a_gap_warns_escalates_to_critical_and_resolves_at_the_record_that_ended_it() {
    let feeds = [feed("profiles", true, &[])];
    let mut keys = KeyTable::new(1);
    let mut observations = every_minute(&mut keys, 0, "acme", (1..=60).chain(100..180));
    // globex half a minute off acme: its records must not be the ticks that find acme's gap.
    let globex = every_minute(&mut keys, 0, "globex", 1..180);
    observations.extend(globex.into_iter().map(|observation| Observation {
        arrival_ms: observation.arrival_ms + 30_000,
        event_ms: observation.event_ms + 30_000,
        ..observation
    }));
    // Partitions come in offset order, not event-time order: the replay sorts.
    observations.reverse();

    let alerts = replay(&feeds, &keys, observations, THREE_HOURS);

    assert_eq!(
        alerts,
        vec![
            alert("profiles", "acme", Status::Warning, 70, Some(90)),
            alert("profiles", "acme", Status::Critical, 90, Some(100)),
        ]
    );
}

#[test]
fn an_alert_that_never_resolves_is_still_firing_at_the_end() {
    let feeds = [feed("orders", false, &[])];
    let mut keys = KeyTable::new(1);
    let observations = every_minute(&mut keys, 0, "", 1..=30);

    let alerts = replay(&feeds, &keys, observations, THREE_HOURS);

    assert_eq!(
        alerts,
        vec![
            alert("orders", "", Status::Warning, 40, Some(60)),
            alert("orders", "", Status::Critical, 60, None),
        ]
    );
    let report =
        super::super::Report::new(&feeds, THREE_HOURS, Default::default(), alerts, Vec::new());
    let critical = &report.totals[1];
    assert_eq!(
        (critical.severity, critical.alerts, critical.alerting_ms),
        (Severity::Critical, 1, 120 * MINUTE),
        "a firing alert counts up to the window's end"
    );
}

#[test]
fn an_expected_value_without_records_is_never_seen_from_the_windows_start_plus_critical_after() {
    let feeds = [feed("profiles", true, &["acme", "globex"])];
    let mut keys = KeyTable::new(1);
    let observations = every_minute(&mut keys, 0, "acme", 1..180);

    let alerts = replay(&feeds, &keys, observations, THREE_HOURS);

    assert_eq!(
        alerts,
        vec![alert("profiles", "globex", Status::NeverSeen, 30, None)]
    );
}

#[test]
fn a_record_at_the_very_crossing_prevents_the_alert() {
    let feeds = [feed("orders", false, &[])];
    let mut keys = KeyTable::new(1);
    let observations = every_minute(&mut keys, 0, "", (0..=180).step_by(10));

    let alerts = replay(&feeds, &keys, observations, THREE_HOURS);

    assert_eq!(alerts, vec![], "each record lands exactly at warn_after");
}

#[test]
fn records_older_than_the_window_count_at_its_start_with_their_own_event_time() {
    let feeds = [feed("orders", false, &[])];
    let mut keys = KeyTable::new(1);
    let observations = every_minute(&mut keys, 0, "", [-20]);

    let alerts = replay(&feeds, &keys, observations, THREE_HOURS);

    assert_eq!(
        alerts,
        vec![
            alert("orders", "", Status::Warning, 0, Some(10)),
            alert("orders", "", Status::Critical, 10, None),
        ],
        "20 minutes stale at the start: warning at once, critical 10 minutes later"
    );
}

#[test]
fn a_feed_still_silent_when_its_quiet_window_ends_pages_at_the_boundary_not_at_the_next_record() {
    let text = "[kafka]\nbrokers = \"k:9092\"\n[[feed]]\nname = \"batch\"\ntopic = \"batch\"\nwarn_after = \"10m\"\ncritical_after = \"30m\"\n[[feed.window]]\ndays = \"daily\"\nhours = \"00:00-06:00\"\nexpect = \"nothing\"\n";
    let feeds = crate::config::parse(text, std::path::Path::new("t.toml"), &|_| None)
        .unwrap()
        .feeds;
    let mut keys = KeyTable::new(1);
    // 1970-01-01 from 00:01 to 00:05, then nothing until 08:00; quiet until 06:00.
    let observations = every_minute(&mut keys, 0, "", 1..=5);
    let window = Window {
        start_ms: 0,
        end_ms: 480 * MINUTE,
    };
    assert_eq!(
        replay(&feeds, &keys, observations, window),
        [alert("batch", "", Status::Critical, 360, None)],
        "the replay's clock stops at the window's end, not only at deadlines and records"
    );
}

#[test]
fn an_outage_backfilled_with_its_event_times_after_it_is_still_reported() {
    let feeds = [feed("orders", false, &[])];
    let mut keys = KeyTable::new(1);
    // Every minute, but minutes 61 to 99 were held back and written at minute 100 (their
    // CreateTime, the arrival clock), each with its own event time inside the outage.
    let on_time = every_minute(&mut keys, 0, "", (1..=60).chain(100..180));
    let backfilled = every_minute(&mut keys, 0, "", 61..100)
        .into_iter()
        .map(|observation| Observation {
            arrival_ms: 100 * MINUTE,
            ..observation
        });
    let observations = on_time.into_iter().chain(backfilled).collect();

    let alerts = replay(&feeds, &keys, observations, THREE_HOURS);

    assert_eq!(
        alerts,
        vec![
            alert("orders", "", Status::Warning, 70, Some(90)),
            alert("orders", "", Status::Critical, 90, Some(100)),
        ],
        "judged on the arrival clock, the backfill does not hide the outage"
    );
}

#[test]
fn a_steady_delivery_lag_is_learned_as_normal_in_the_replay() {
    let mut learned = feed("orders", false, &[]);
    learned.warn_after = Duration::from_secs(12 * 3_600);
    learned.critical_after = Duration::from_secs(24 * 3_600);
    learned.learning = Some(crate::cadence::Learning {
        min_gaps: 20,
        min_span_ms: crate::cadence::WARM_UP_SPAN_MS,
        warn_floor_ms: MINUTE,
        critical_floor_ms: 5 * MINUTE,
        by_hour: None,
    });
    let feeds = [learned];
    let mut keys = KeyTable::new(1);
    // A record every 10 s, each accepted by Kafka 90 s after its event time.
    let observations: Vec<Observation> = (0..6 * 360)
        .map(|tick| Observation {
            arrival_ms: tick * 10_000 + 90_000,
            event_ms: tick * 10_000,
            feed: 0,
            key: keys.intern(0, b""),
        })
        .collect();
    let window = Window {
        start_ms: 0,
        end_ms: 6 * 60 * MINUTE + 90_000,
    };

    let alerts = replay(&feeds, &keys, observations, window);

    assert_eq!(alerts, vec![], "90 s behind, steadily: normal once learned");
}

/// `orders` with a fixed `min_rate` of 10/min over a 10-minute window, paging after 5 minutes
/// below it, judged every 10 s (`evaluation.interval`).
fn volume_rules() -> VolumeRules {
    VolumeRules {
        rules: vec![crate::config::VolumeConfig {
            feed: 0,
            min_rate: crate::config::MinRate::PerSecond(10.0 / 60.0),
            window: Duration::from_secs(600),
            hold: Duration::from_secs(300),
            by_key: false,
            max_keys: 1_000,
            hours: crate::schedule::WeekClock {
                timezone: chrono_tz::UTC,
            },
        }],
        tick_ms: 10_000,
    }
}

/// `per_minute` records a minute of `orders`, two seconds apart, over `minutes`.
fn records_per_minute(
    keys: &mut KeyTable,
    per_minute: i64,
    minutes: std::ops::Range<i64>,
) -> Vec<Observation> {
    let key = keys.intern(0, b"");
    minutes
        .flat_map(|minute| (0..per_minute).map(move |record| minute * MINUTE + record * 2_000))
        .map(|at_ms| Observation {
            arrival_ms: at_ms,
            event_ms: at_ms,
            feed: 0,
            key,
        })
        .collect()
}

#[test]
fn a_feed_that_stays_fresh_while_its_volume_drops_is_reported_as_a_volume_drop() {
    let feeds = [feed("orders", false, &[])];
    let mut keys = KeyTable::new(1);
    // 30 a minute, then one a minute for an hour (fresh all along), then 30 again.
    let mut observations = records_per_minute(&mut keys, 30, 0..60);
    observations.extend(records_per_minute(&mut keys, 1, 60..120));
    observations.extend(records_per_minute(&mut keys, 30, 120..180));

    let replayed = replay_all(&feeds, &volume_rules(), &keys, observations, THREE_HOURS);

    assert_eq!(replayed.alerts, vec![], "fresh all along");
    let drops: Vec<(&str, &str, i64, i64, Option<i64>)> = replayed
        .volume_drops
        .iter()
        .map(|drop| {
            (
                &*drop.feed,
                drop.key.as_str(),
                drop.below_since_ms,
                drop.start_ms,
                drop.end_ms,
            )
        })
        .collect();
    // The 10-minute rate falls under 100 records at 66:40 (20 × 30 + 6.7 × 1, over 10 minutes),
    // pages 5 minutes later, and is back over it at 123:10, the first tick past 3.1 minutes of
    // 30 a minute: the service's ticks, every 10 s from the start.
    assert_eq!(
        drops,
        vec![(
            "orders",
            "",
            66 * MINUTE + 40_000,
            71 * MINUTE + 40_000,
            Some(123 * MINUTE + 10_000)
        )]
    );
}
