//! Volume scenarios on a simulated clock: weeks of minute ticks in milliseconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};

/// Monday 2026-11-23 00:00 UTC.
const MONDAY_MS: i64 = 1_795_392_000_000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const WEEK_MS: i64 = 7 * 24 * HOUR_MS;

fn rule(min_rate: MinRate, by_key: bool, max_keys: usize) -> VolumeConfig {
    VolumeConfig {
        feed: 0,
        min_rate,
        window: Duration::from_secs(600),
        hold: Duration::from_secs(600),
        by_key,
        max_keys,
        hours: WeekClock {
            timezone: chrono_tz::UTC,
        },
    }
}

/// A feed's producer and the watch that judges it, ticked every minute on a manual clock.
struct Scenario {
    clock: ManualClock,
    watch: VolumeWatch,
    /// Cumulative records per key ("" for the feed as a whole when not by key).
    records: Vec<(String, u64)>,
    alerts: Vec<SystemAlert>,
}

impl Scenario {
    fn new(rule: VolumeConfig, keys: &[&str]) -> Self {
        Scenario::starting(rule, keys, MONDAY_MS)
    }

    fn starting(rule: VolumeConfig, keys: &[&str], start_ms: i64) -> Self {
        let clock = ManualClock::new(start_ms);
        let watch = VolumeWatch::new(&[rule], &[Arc::from("profiles")], clock.now_ms());
        Scenario {
            clock,
            watch,
            records: keys.iter().map(|key| (key.to_string(), 0)).collect(),
            alerts: Vec::new(),
        }
    }

    /// Runs for `duration_ms`, each key bringing `per_minute[key]` records a minute.
    fn run(&mut self, duration_ms: i64, per_minute: &[u64]) {
        let until_ms = self.clock.now_ms() + duration_ms;
        while self.clock.now_ms() < until_ms {
            self.clock.advance(Duration::from_millis(MINUTE_MS as u64));
            for ((_, count), rate) in self.records.iter_mut().zip(per_minute) {
                *count += rate;
            }
            let counts = FeedCounts {
                total: self.records.iter().map(|(_, count)| count).sum(),
                keys: self.records.clone(),
                keys_left_out: 0,
            };
            let now_ms = self.clock.now_ms();
            self.alerts
                .extend(self.watch.tick(&HashMap::from([(0, counts)]), true, now_ms));
        }
    }

    fn take_alerts(&mut self) -> Vec<SystemAlert> {
        std::mem::take(&mut self.alerts)
    }

    fn feed_view(&self) -> VolumeView {
        self.watch.views().remove(0)
    }
}

fn assert_close(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a value");
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

fn learned() -> MinRate {
    MinRate::Learned { drop_ratio: 0.2 }
}

#[test]
fn a_business_hours_baseline_in_local_hours_keeps_its_busy_hours_across_a_clock_change() {
    // Monday 2026-02-09 00:00 in New York (05:00 UTC); the clocks spring forward on 2026-03-08.
    const MONDAY_NEW_YORK_MS: i64 = 1_770_613_200_000;
    let business_hours = |timezone: chrono_tz::Tz| {
        let mut scenario = Scenario::starting(
            VolumeConfig {
                hours: WeekClock { timezone },
                ..rule(learned(), false, 1_000)
            },
            &[""],
            MONDAY_NEW_YORK_MS,
        );
        // Five weeks of weekdays busy from 09:00 to 17:00 New York time, a tenth of it outside.
        for hour in 0..5 * 7 * 24 {
            let local = chrono::TimeZone::from_utc_datetime(
                &chrono_tz::America::New_York,
                &chrono::DateTime::from_timestamp_millis(scenario.clock.now_ms())
                    .unwrap()
                    .naive_utc(),
            );
            let weekday = chrono::Datelike::weekday(&local).num_days_from_monday() < 5;
            let busy = weekday && (9..17).contains(&chrono::Timelike::hour(&local));
            scenario.run(HOUR_MS, &[if busy { 400 } else { 40 }]);
            let _ = hour;
        }
        scenario.take_alerts()
    };
    assert_eq!(
        business_hours(chrono_tz::America::New_York),
        [],
        "four weeks before the clock change, one after"
    );
    let utc = business_hours(chrono_tz::UTC);
    assert!(
        !utc.is_empty(),
        "counted in UTC hours, 16:00 New York is a busy hour's slot a week after the change"
    );
}

#[test]
fn a_feed_that_drops_to_a_tenth_of_its_learned_rate_pages_feed_volume_drop() {
    let mut scenario = Scenario::new(rule(learned(), false, 1_000), &[""]);
    scenario.run(2 * WEEK_MS + HOUR_MS, &[400]);
    assert!(
        scenario.take_alerts().is_empty(),
        "a steady feed never pages"
    );
    let view = scenario.feed_view();
    assert_close(view.expected_rate_per_second, 400.0 / 60.0);
    // drop_ratio × the baseline: what `freshwatch_feed_min_rate_per_second` gives Prometheus.
    assert_close(view.threshold_per_second, 0.2 * 400.0 / 60.0);
    assert_eq!(view.status, "ok");

    scenario.run(30 * MINUTE_MS, &[40]);
    let alerts = scenario.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.alertname, "FeedVolumeDrop");
    assert_eq!(alert.severity, Severity::Warning);
    assert!(alert.firing);
    assert_eq!(alert.labels, vec![("feed", "profiles".to_owned())]);
    assert_eq!(
        alert.summary,
        "profiles: 40/min against an expected 400/min (20% of it pages)"
    );
    assert_eq!(scenario.feed_view().status, "firing");

    scenario.run(15 * MINUTE_MS, &[400]);
    let alerts = scenario.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(!alerts[0].firing, "the recovery resolves it");
    assert_eq!(alerts[0].since_ms, alert.since_ms);
}

#[test]
fn a_feed_at_four_fifths_of_its_learned_rate_does_not_page() {
    let mut scenario = Scenario::new(rule(learned(), false, 1_000), &[""]);
    scenario.run(2 * WEEK_MS + HOUR_MS, &[400]);
    scenario.run(3 * HOUR_MS, &[320]);
    assert!(scenario.take_alerts().is_empty());
    assert_eq!(scenario.feed_view().status, "ok");
}

#[test]
fn warm_up_gives_no_judgement_until_two_weeks_of_an_hour_were_seen() {
    let mut scenario = Scenario::new(rule(learned(), false, 1_000), &[""]);
    scenario.run(WEEK_MS + HOUR_MS, &[400]);
    scenario.run(3 * HOUR_MS, &[0]);
    assert!(
        scenario.take_alerts().is_empty(),
        "one week is too little history"
    );
    let view = scenario.feed_view();
    assert_eq!(view.expected_rate_per_second, None);
    assert_eq!(view.status, "unjudged");
}

#[test]
fn a_fixed_min_rate_pages_below_it_after_volume_for_and_resolves_above() {
    let mut scenario = Scenario::new(rule(MinRate::PerSecond(1.0), false, 1_000), &[""]);
    scenario.run(30 * MINUTE_MS, &[120]);
    assert!(scenario.take_alerts().is_empty());
    assert_close(scenario.feed_view().rate_per_second, 2.0);

    // The window drains below 60/min after 5 minutes; `volume_for` holds 10 more.
    scenario.run(14 * MINUTE_MS, &[10]);
    assert!(scenario.take_alerts().is_empty(), "not yet for volume_for");
    assert_eq!(scenario.feed_view().status, "below");
    scenario.run(2 * MINUTE_MS, &[10]);
    let alerts = scenario.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].firing);
    assert_eq!(
        alerts[0].summary,
        "profiles: 10/min against an expected 60/min (below it pages)"
    );

    scenario.run(10 * MINUTE_MS, &[120]);
    let alerts = scenario.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(!alerts[0].firing);
    assert_eq!(scenario.feed_view().status, "ok");
}

#[test]
fn nothing_is_judged_before_the_window_was_watched_in_full() {
    let mut scenario = Scenario::new(rule(MinRate::PerSecond(1.0), false, 1_000), &[""]);
    scenario.run(9 * MINUTE_MS, &[0]);
    assert_eq!(scenario.feed_view().rate_per_second, None);
    assert_eq!(scenario.feed_view().status, "unjudged");
}

#[test]
fn by_key_judges_each_key_up_to_volume_max_keys_and_counts_the_rest() {
    let mut scenario = Scenario::new(
        rule(MinRate::PerSecond(1.0), true, 2),
        &["acme", "globex", "initech"],
    );
    scenario.run(30 * MINUTE_MS, &[120, 120, 120]);
    // Every key drops: the feed (30/min in all) and the two judged keys page; initech is not judged.
    scenario.run(30 * MINUTE_MS, &[10, 10, 10]);
    let alerts = scenario.take_alerts();
    let mut paged: Vec<Vec<(&str, String)>> =
        alerts.iter().map(|alert| alert.labels.clone()).collect();
    paged.sort();
    assert_eq!(
        paged,
        vec![
            vec![("feed", "profiles".to_owned())],
            vec![("feed", "profiles".to_owned()), ("key", "acme".to_owned())],
            vec![
                ("feed", "profiles".to_owned()),
                ("key", "globex".to_owned())
            ],
        ]
    );
    let views = scenario.watch.views();
    assert_eq!(views.len(), 3, "the feed and two keys");
    assert_eq!(views[0].unjudged_keys, 1);
}

#[test]
fn baselines_and_firing_alerts_survive_a_restart_through_their_documents() {
    let mut scenario = Scenario::new(rule(learned(), false, 1_000), &[""]);
    scenario.run(2 * WEEK_MS + HOUR_MS, &[400]);
    scenario.run(30 * MINUTE_MS, &[40]);
    assert_eq!(scenario.take_alerts().len(), 1);
    let documents = scenario.watch.take_dirty(false);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].0, r#"["profiles",null]"#);

    let now_ms = scenario.clock.now_ms();
    let mut successor = VolumeWatch::new(
        &[rule(learned(), false, 1_000)],
        &[Arc::from("profiles")],
        now_ms,
    );
    successor.restore(documents, now_ms);
    assert_eq!(successor.firing().len(), 1, "the open alert is taken up");
    scenario.watch = successor;
    scenario.run(15 * MINUTE_MS, &[40]);
    assert!(scenario.take_alerts().is_empty(), "no page repeated");
    let view = scenario.feed_view();
    assert_close(view.expected_rate_per_second, 400.0 / 60.0);
    scenario.run(15 * MINUTE_MS, &[400]);
    let alerts = scenario.take_alerts();
    assert_eq!(alerts.len(), 1);
    assert!(!alerts[0].firing, "the restored alert resolves");
}

#[test]
fn rates_read_in_their_best_unit() {
    assert_eq!(format_rate(400.0 / 60.0), "400/min");
    assert_eq!(format_rate(12.0 / 60.0), "12/min");
    assert_eq!(format_rate(25.0), "25/s");
    assert_eq!(format_rate(3.0 / 3600.0), "3/h");
    assert_eq!(format_rate(1.5 / 60.0), "1.5/min");
}

#[test]
fn a_follower_counts_and_shows_rates_but_never_fires() {
    let mut scenario = Scenario::new(rule(MinRate::PerSecond(1.0), false, 1_000), &[""]);
    scenario.run(30 * MINUTE_MS, &[120]);
    let until_ms = scenario.clock.now_ms() + 30 * MINUTE_MS;
    let mut records = scenario.records[0].1;
    while scenario.clock.now_ms() < until_ms {
        scenario
            .clock
            .advance(Duration::from_millis(MINUTE_MS as u64));
        records += 10;
        let counts = FeedCounts {
            total: records,
            ..FeedCounts::default()
        };
        let alerts = scenario.watch.tick(
            &HashMap::from([(0, counts)]),
            false,
            scenario.clock.now_ms(),
        );
        assert!(alerts.is_empty());
    }
    let view = scenario.feed_view();
    assert_close(view.rate_per_second, 10.0 / 60.0);
    assert_eq!(view.status, "below");
    assert!(scenario.watch.firing().is_empty());
}

#[test]
fn keys_the_tracker_left_out_beyond_the_bound_are_counted_as_unjudged() {
    let mut watch = VolumeWatch::new(
        &[rule(MinRate::PerSecond(1.0), true, 1)],
        &[Arc::from("profiles")],
        MONDAY_MS,
    );
    let counts = FeedCounts {
        total: 10,
        keys: vec![("acme".to_owned(), 10)],
        keys_left_out: 4,
    };
    watch.tick(&HashMap::from([(0, counts)]), true, MONDAY_MS + MINUTE_MS);
    let views = watch.views();
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].unjudged_keys, 4);
}

#[test]
fn a_source_outage_and_its_catch_up_are_neither_judged_nor_folded_into_the_baseline() {
    let mut scenario = Scenario::new(rule(learned(), false, 1_000), &[""]);
    // Two weeks and an hour of 400/min: Monday 01:00 of the third week.
    scenario.run(2 * WEEK_MS + HOUR_MS, &[400]);
    // Kafka is down for half an hour, then its backlog is read in ten minutes, all while the
    // feed is not known.
    scenario.watch.set_known(0, false);
    scenario.run(30 * MINUTE_MS, &[0]);
    scenario.run(10 * MINUTE_MS, &[2_400]);
    assert_eq!(scenario.feed_view().status, "unjudged");
    scenario.watch.set_known(0, true);
    scenario.run(WEEK_MS - 10 * MINUTE_MS, &[400]);
    assert!(
        scenario.take_alerts().is_empty(),
        "an outage is not a volume drop"
    );
    // A week later, at the same hour: its slot did not take the outage nor the backlog in.
    assert_close(scenario.feed_view().expected_rate_per_second, 400.0 / 60.0);
}
