//! `thresholds = "learned"`, as scenarios: simulated days driven through the tracker and the
//! evaluator on a manual clock (ticks at every record and at every scheduled look), no sleeping.

use std::time::Duration;

use super::*;
use crate::cadence::{Cadence, ThresholdSource};
use crate::config::{FeedMode, SplitRule, TimestampRule, TopicMatcher};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2025-12-01T00:00:00Z.
const START_MS: i64 = 1_764_547_200_000;

/// `tenants`, split by key, with `warn_after` / `critical_after`; learned (default floors 1m
/// and 5m, warm-up 20 gaps) when `learned`.
fn feed(learned: bool, warn_after_ms: i64, critical_after_ms: i64) -> FeedConfig {
    FeedConfig {
        name: Arc::from("tenants"),
        topics: TopicMatcher::Exact("tenant-updates".into()),
        split: Some(SplitRule::Key),
        timestamp: TimestampRule::Record,
        warn_after: Duration::from_millis(warn_after_ms as u64),
        critical_after: Duration::from_millis(critical_after_ms as u64),
        expected: Vec::new(),
        mode: FeedMode::Consume,
        max_keys: 1_000,
        max_key_bytes: 256,
        hold: Duration::ZERO,
        rollup_after: 20,
        windows: Vec::new(),
        learning: learned.then_some(Learning {
            min_gaps: 20,
            min_span_ms: crate::cadence::WARM_UP_SPAN_MS,
            warn_floor_ms: MINUTE_MS,
            critical_floor_ms: 5 * MINUTE_MS,
            by_hour: None,
        }),
    }
}

/// One feed under simulation: the tracker, the evaluator, and every transition so far.
struct Simulation {
    tracker: Tracker,
    evaluator: Evaluator,
    now_ms: i64,
    transitions: Vec<Transition>,
}

impl Simulation {
    fn new(feed: FeedConfig) -> Simulation {
        let feeds = [feed];
        let mut simulation = Simulation {
            tracker: Tracker::new(&feeds, START_MS),
            evaluator: Evaluator::new(&feeds),
            now_ms: START_MS,
            transitions: Vec::new(),
        };
        simulation.tick(START_MS);
        simulation
    }

    fn tick(&mut self, at_ms: i64) {
        self.now_ms = at_ms;
        let transitions = self.evaluator.tick(&mut self.tracker, at_ms);
        self.transitions.extend(transitions);
    }

    /// Lets time pass to `until_ms`, ticking at every scheduled look on the way.
    fn wait_until(&mut self, until_ms: i64) {
        while let Some(deadline_ms) = self.evaluator.next_deadline() {
            if deadline_ms > until_ms {
                break;
            }
            self.tick(deadline_ms.max(self.now_ms));
        }
        self.tick(until_ms);
    }

    /// `key` sends a record every `period_ms` until `until_ms` (the first one now).
    fn send_every(&mut self, key: &str, period_ms: i64, until_ms: i64) {
        let mut at_ms = self.now_ms;
        while at_ms <= until_ms {
            self.wait_until(at_ms);
            self.tracker.observe(0, key.as_bytes(), at_ms);
            self.tick(at_ms);
            at_ms += period_ms;
        }
    }

    fn id(&self, key: &str) -> SeriesId {
        let index = self
            .tracker
            .feed(0)
            .series()
            .iter()
            .position(|series| series.key() == key)
            .unwrap_or_else(|| panic!("no series {key}"));
        SeriesId {
            feed: 0,
            index: index as u32,
        }
    }

    fn series(&self, key: &str) -> &Series {
        self.tracker.series(self.id(key))
    }

    fn cadence(&self, key: &str) -> Cadence {
        self.tracker.cadence(self.id(key))
    }

    /// The thresholds `key` is judged by now, (warn, critical) ms, and their source.
    fn effective(&self, key: &str) -> ((i64, i64), ThresholdSource) {
        let (thresholds, source) =
            self.evaluator.rules()[0].effective(&self.tracker.learned(self.id(key)), self.now_ms);
        (
            (thresholds.warn_after_ms, thresholds.critical_after_ms),
            source,
        )
    }

    /// (at, to) of the alerts `key` raised (warning, critical, never_seen).
    fn alerts(&self, key: &str) -> Vec<(i64, Status)> {
        self.transitions
            .iter()
            .filter(|transition| transition.key == key && transition.to.severity().is_some())
            .map(|transition| (transition.at_ms, transition.to))
            .collect()
    }
}

#[test]
fn a_tenant_that_updates_every_six_hours_is_never_paged_when_learned_but_is_when_fixed_at_2h() {
    let mut learned = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    learned.send_every("slow", 6 * HOUR_MS, START_MS + 14 * DAY_MS);
    assert_eq!(learned.alerts("slow"), []);
    assert_eq!(learned.cadence("slow").gaps(), 56);
    // p99 = 32,768 s (6 h falls in [4.6 h, 9.1 h)): 3 × p99 passes the 12 h ceiling.
    assert_eq!(
        learned.effective("slow"),
        ((12 * HOUR_MS, 24 * HOUR_MS), ThresholdSource::Ceiling)
    );

    let mut fixed = Simulation::new(feed(false, HOUR_MS, 2 * HOUR_MS));
    fixed.send_every("slow", 6 * HOUR_MS, START_MS + 14 * DAY_MS);
    assert_eq!(
        fixed.alerts("slow")[..2],
        [
            (START_MS + HOUR_MS, Status::Warning),
            (START_MS + 2 * HOUR_MS, Status::Critical)
        ],
        "the same tenant pages under a fixed 2h every six hours"
    );
    assert_eq!(fixed.alerts("slow").len(), 2 * 56);
}

#[test]
fn a_tenant_that_sends_every_second_pages_within_minutes_of_stopping() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    let stopped_ms = START_MS + HOUR_MS;
    simulation.send_every("chatty", SECOND_MS, stopped_ms);
    // 3 × 2 s and 6 × 2 s are under the floors: 1m and 5m.
    assert_eq!(
        simulation.effective("chatty"),
        ((MINUTE_MS, 5 * MINUTE_MS), ThresholdSource::Learned)
    );
    simulation.wait_until(stopped_ms + DAY_MS);
    assert_eq!(
        simulation.alerts("chatty"),
        [
            (stopped_ms + MINUTE_MS, Status::Warning),
            (stopped_ms + 5 * MINUTE_MS, Status::Critical)
        ],
        "not 12h and 24h, the ceilings"
    );
}

#[test]
fn a_ten_day_silence_pages_at_the_ceiling_however_slow_the_learned_cadence() {
    let mut simulation = Simulation::new(feed(true, 4 * DAY_MS, 8 * DAY_MS));
    let stopped_ms = START_MS + 90 * DAY_MS;
    simulation.send_every("rare", 3 * DAY_MS, stopped_ms);
    // p99 = 2^18 s (about 3 days): the rule says 9 and 18 days, the ceilings say 4 and 8.
    assert_eq!(
        simulation.effective("rare"),
        ((4 * DAY_MS, 8 * DAY_MS), ThresholdSource::Ceiling)
    );
    assert_eq!(simulation.alerts("rare"), []);
    simulation.wait_until(stopped_ms + 10 * DAY_MS);
    assert_eq!(
        simulation.alerts("rare"),
        [
            (stopped_ms + 4 * DAY_MS, Status::Warning),
            (stopped_ms + 8 * DAY_MS, Status::Critical)
        ]
    );
}

#[test]
fn during_warm_up_a_series_is_judged_by_the_ceilings() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    // 19 gaps: one short of learn_min_gaps.
    let stopped_ms = START_MS + 19 * SECOND_MS;
    simulation.send_every("new", SECOND_MS, stopped_ms);
    assert_eq!(simulation.cadence("new").gaps(), 19);
    assert_eq!(
        simulation.effective("new"),
        ((12 * HOUR_MS, 24 * HOUR_MS), ThresholdSource::WarmUp)
    );
    simulation.wait_until(stopped_ms + 2 * DAY_MS);
    assert_eq!(
        simulation.alerts("new"),
        [
            (stopped_ms + 12 * HOUR_MS, Status::Warning),
            (stopped_ms + 24 * HOUR_MS, Status::Critical)
        ]
    );
}

#[test]
fn the_record_that_ends_warm_up_has_the_series_judged_by_its_own_thresholds_at_once() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    // One-second gaps until the one that ends the warm-up (half an hour learned), then
    // silence: scheduled under the ceilings until that record.
    let mut stopped_ms = START_MS;
    while simulation.now_ms == START_MS || simulation.effective("new").1 == ThresholdSource::WarmUp
    {
        simulation.tracker.observe(0, b"new", stopped_ms);
        simulation.tick(stopped_ms);
        stopped_ms += SECOND_MS;
    }
    let stopped_ms = stopped_ms - SECOND_MS;
    assert!(stopped_ms >= START_MS + 29 * MINUTE_MS, "{stopped_ms}");
    simulation.wait_until(stopped_ms + HOUR_MS);
    assert_eq!(
        simulation.alerts("new"),
        [
            (stopped_ms + MINUTE_MS, Status::Warning),
            (stopped_ms + 5 * MINUTE_MS, Status::Critical)
        ]
    );
}

#[test]
fn a_gap_that_ended_in_an_alert_is_not_learned() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    let stopped_ms = START_MS + HOUR_MS;
    simulation.send_every("flaky", SECOND_MS, stopped_ms);
    assert_eq!(simulation.cadence("flaky").gaps(), 3_600);
    // A 20-minute outage pages, and the first record after it resolves the alert.
    simulation.wait_until(stopped_ms + 20 * MINUTE_MS);
    simulation.send_every(
        "flaky",
        SECOND_MS,
        stopped_ms + 20 * MINUTE_MS + 10 * SECOND_MS,
    );
    assert_eq!(simulation.series("flaky").status, Status::Ok);
    assert_eq!(
        simulation.cadence("flaky").gaps(),
        3_610,
        "the 10 gaps after the outage, not the outage (held back until it recurs)"
    );
    // Learned, 20 minutes against an hour would be the p99 and lift the thresholds to an hour.
    assert_eq!(
        simulation.effective("flaky"),
        ((MINUTE_MS, 5 * MINUTE_MS), ThresholdSource::Learned)
    );
}

#[test]
fn a_learned_summary_survives_a_restore_and_a_replica_merge() {
    let mut writer = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    writer.send_every("chatty", SECOND_MS, START_MS + 40 * MINUTE_MS);
    let stored = writer.cadence("chatty");
    let text = stored.encode();

    // kill -9: a new process, a new tracker, the store's copy merged at restore.
    let mut restarted = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    restarted.tracker.restore(
        0,
        b"chatty",
        Some(START_MS + 40 * MINUTE_MS),
        Some((Status::Ok, START_MS)),
    );
    let decoded = crate::cadence::Cadence::decode(&text).expect("stored form");
    restarted.tracker.merge_cadence(0, b"chatty", &decoded);
    restarted.tick(START_MS + 40 * MINUTE_MS);
    assert_eq!(restarted.cadence("chatty"), stored);
    assert_eq!(
        restarted.effective("chatty"),
        ((MINUTE_MS, 5 * MINUTE_MS), ThresholdSource::Learned)
    );

    // A follower reloading the same summary again and again: merged once, not added up.
    let mut follower = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    follower.tick(START_MS + 40 * MINUTE_MS);
    for _ in 0..3 {
        follower
            .tracker
            .merge_shared(0, b"chatty", Some(START_MS + 40 * MINUTE_MS), None);
        follower.tracker.merge_cadence(0, b"chatty", &decoded);
    }
    assert_eq!(follower.cadence("chatty"), stored);
    follower.tick(START_MS + 40 * MINUTE_MS);
    follower.wait_until(START_MS + 40 * MINUTE_MS + 10 * MINUTE_MS);
    assert_eq!(
        follower.alerts("chatty"),
        [
            (START_MS + 41 * MINUTE_MS, Status::Warning),
            (START_MS + 45 * MINUTE_MS, Status::Critical)
        ],
        "the follower judges by the learned thresholds, not the ceilings"
    );
}

/// A stock-ticker feed learned with a warm-up of 6 gaps, by hour (UTC) when `by_hour`: its
/// key `acme` sends every 30 s from 08:00 to 20:00 and every 20 minutes through the night.
fn ticker(by_hour: bool) -> Simulation {
    let mut feed = feed(true, 12 * HOUR_MS, 24 * HOUR_MS);
    feed.learning = feed.learning.map(|learning| Learning {
        min_gaps: 6,
        by_hour: by_hour.then_some(crate::schedule::WeekClock {
            timezone: chrono_tz::UTC,
        }),
        ..learning
    });
    Simulation::new(feed)
}

impl Simulation {
    /// The ticker's records from `from_ms` to before `until_ms`, both within its days.
    fn trade(&mut self, from_ms: i64, until_ms: i64) {
        let mut at_ms = from_ms;
        while at_ms < until_ms {
            self.wait_until(at_ms);
            self.tracker.observe(0, b"acme", at_ms);
            self.tick(at_ms);
            let hour = (at_ms - START_MS).rem_euclid(DAY_MS) / HOUR_MS;
            at_ms += if (8..20).contains(&hour) {
                30 * SECOND_MS
            } else {
                20 * MINUTE_MS
            };
        }
    }
}

#[test]
fn learned_by_hour_a_feed_busy_by_day_and_rare_at_night_pages_within_minutes_by_day() {
    // Monday of the third week, 10:00: the ticker stops.
    let stopped_ms = START_MS + 14 * DAY_MS + 10 * HOUR_MS;
    let mut by_hour = ticker(true);
    by_hour.trade(START_MS, stopped_ms + 1);
    assert_eq!(by_hour.alerts("acme"), [], "two weeks of nights and days");
    // The feed's p99 is the night's 20 minutes (2.4 % of its gaps), a day hour's is 30 s.
    assert_eq!(by_hour.cadence("acme").p99_ms(), Some(2_048 * SECOND_MS));
    assert_eq!(
        by_hour.effective("acme"),
        ((96 * SECOND_MS, 5 * MINUTE_MS), ThresholdSource::Learned),
        "by day: 3 × 32 s, and the 5m floor over 6 × 32 s"
    );
    by_hour.wait_until(stopped_ms + DAY_MS);
    assert_eq!(
        by_hour.alerts("acme"),
        [
            (stopped_ms + 96 * SECOND_MS, Status::Warning),
            (stopped_ms + 5 * MINUTE_MS, Status::Critical)
        ]
    );

    // Without hours the nights are half the learned time: no night pages, but the day is
    // judged by the night's thresholds, an outage paged only after 1.7 hours.
    let mut whole = ticker(false);
    whole.trade(START_MS, START_MS + 14 * DAY_MS);
    assert_eq!(whole.alerts("acme"), []);
    assert_eq!(
        whole.effective("acme"),
        (
            (3 * 2_048 * SECOND_MS, 6 * 2_048 * SECOND_MS),
            ThresholdSource::Learned
        )
    );
}

#[test]
fn learned_by_hour_a_gap_is_judged_by_the_most_lenient_hour_it_spanned() {
    let monday_ms = START_MS + 14 * DAY_MS;
    let mut simulation = ticker(true);
    // The night's last record at 07:40, the day's first four minutes late.
    simulation.trade(START_MS, monday_ms + 7 * HOUR_MS + 40 * MINUTE_MS + 1);
    simulation.wait_until(monday_ms + 8 * HOUR_MS + 2 * MINUTE_MS);
    assert_eq!(
        simulation.effective("acme"),
        (
            (3 * 2_048 * SECOND_MS, 6 * 2_048 * SECOND_MS),
            ThresholdSource::Learned
        ),
        "08:02: the gap began in the night, and is judged as a night's"
    );
    // Then the day, until the ticker stops at 19:57, three minutes before the night begins.
    let stopped_ms = monday_ms + 19 * HOUR_MS + 57 * MINUTE_MS;
    simulation.trade(monday_ms + 8 * HOUR_MS + 4 * MINUTE_MS, stopped_ms + 1);
    simulation.wait_until(monday_ms + DAY_MS);
    let transitions: Vec<(i64, Status)> = simulation
        .transitions
        .iter()
        .filter(|transition| transition.key == "acme")
        .map(|transition| (transition.at_ms, transition.to))
        .collect();
    assert_eq!(
        transitions[transitions.len() - 2..],
        [
            (stopped_ms + 96 * SECOND_MS, Status::Warning),
            (stopped_ms + 6 * 2_048 * SECOND_MS, Status::Critical)
        ],
        "warned by the day's thresholds; from 20:00 judged as a night's, and not resolved by it"
    );
    assert_eq!(simulation.alerts("acme").len(), 2, "{transitions:?}");
}

impl Simulation {
    /// `key` sends a record every `period_ms` of event time until `until_ms`, each arriving at
    /// `arrival(event_ms)` (non-decreasing), the clock ticking at each arrival.
    fn send_arriving(
        &mut self,
        key: &str,
        period_ms: i64,
        until_ms: i64,
        arrival: impl Fn(i64) -> i64,
    ) {
        let mut event_ms = self.now_ms;
        while event_ms <= until_ms {
            let arrival_ms = arrival(event_ms).max(self.now_ms);
            self.wait_until(arrival_ms);
            self.tracker
                .observe_at(0, key.as_bytes(), event_ms, arrival_ms);
            self.tick(arrival_ms);
            event_ms += period_ms;
        }
    }
}

#[test]
fn an_hourly_burst_of_300_records_a_second_apart_pages_nothing_over_a_week() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    for hour in 0..7 * 24 {
        let burst_ms = START_MS + hour * HOUR_MS;
        simulation.wait_until(burst_ms);
        simulation.send_every("exports", SECOND_MS, burst_ms + 299 * SECOND_MS);
    }
    simulation.wait_until(START_MS + 7 * DAY_MS);
    assert_eq!(simulation.alerts("exports"), []);
    // 300 s of one-second gaps against a 55-minute pause: the pause is the p99.
    assert_eq!(
        simulation.cadence("exports").p99_ms(),
        Some(4_096 * SECOND_MS)
    );
}

#[test]
fn a_2000_record_backfill_into_a_six_minute_tenant_pages_nothing_after_it() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    let backfill_ms = START_MS + DAY_MS + 3 * MINUTE_MS;
    simulation.send_every("crm", 6 * MINUTE_MS, backfill_ms - 3 * MINUTE_MS);
    assert_eq!(simulation.alerts("crm"), []);
    // 2,000 records, 100 ms apart, read at once.
    simulation.wait_until(backfill_ms);
    simulation.send_every("crm", 100, backfill_ms + 1_999 * 100);
    assert_eq!(
        simulation.effective("crm"),
        (
            (3 * 512 * SECOND_MS, 6 * 512 * SECOND_MS),
            ThresholdSource::Learned
        ),
        "200 s of backfill against a day of 6-minute gaps: the thresholds hold"
    );
    let resumed_ms = backfill_ms - 3 * MINUTE_MS + 6 * MINUTE_MS;
    simulation.wait_until(resumed_ms);
    simulation.send_every("crm", 6 * MINUTE_MS, resumed_ms + 7 * DAY_MS);
    assert_eq!(simulation.alerts("crm"), []);
    assert_eq!(simulation.cadence("crm").p99_ms(), Some(512 * SECOND_MS));
}

#[test]
fn a_steady_90_s_lag_is_never_paged_once_warm_and_one_growing_to_10_minutes_is() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    let lag_ms = 90 * SECOND_MS;
    let growing_from_ms = START_MS + 2 * DAY_MS;
    simulation.send_arriving("late", 10 * SECOND_MS, growing_from_ms, |event_ms| {
        event_ms + lag_ms
    });
    assert_eq!(simulation.alerts("late"), [], "a steady lag is the normal");
    // 100 s reached before each record: p99 128 s, warn 384 s, critical 768 s.
    assert_eq!(
        simulation.effective("late"),
        ((384 * SECOND_MS, 768 * SECOND_MS), ThresholdSource::Learned)
    );
    // The lag then grows by 20 s a minute, to 10 minutes in under half an hour.
    let grown_ms = growing_from_ms + 30 * MINUTE_MS;
    simulation.send_arriving("late", 10 * SECOND_MS, grown_ms, |event_ms| {
        event_ms + (lag_ms + (event_ms - growing_from_ms) / 3).min(10 * MINUTE_MS)
    });
    let alerts = simulation.alerts("late");
    assert_eq!(
        alerts.first().map(|&(_, status)| status),
        Some(Status::Warning),
        "{alerts:?}"
    );
}

#[test]
fn a_series_whose_long_gaps_are_one_percent_of_its_gaps_never_pages_them() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    let mut at_ms = START_MS;
    let mut gaps = 0;
    while at_ms < START_MS + 28 * DAY_MS {
        simulation.wait_until(at_ms);
        simulation.tracker.observe(0, b"batch", at_ms);
        simulation.tick(at_ms);
        // Every hundredth gap (the first one in its warm-up) is an hour, the others 6 min.
        at_ms += if gaps % 100 == 10 {
            HOUR_MS
        } else {
            6 * MINUTE_MS
        };
        gaps += 1;
    }
    assert!(gaps > 6_000, "{gaps}");
    assert_eq!(simulation.alerts("batch"), []);
}

#[test]
fn a_series_paged_by_its_learned_thresholds_learns_its_new_normal_when_the_gap_recurs() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    // Two hours a record a second: thresholds at the floors, 1m and 5m.
    let slowed_ms = START_MS + 2 * HOUR_MS;
    simulation.send_every("tenant", SECOND_MS, slowed_ms);
    // Then every 6 minutes for good: the first two gaps page, the second is learned as the
    // shape recurs, and nothing pages after.
    simulation.send_every("tenant", 6 * MINUTE_MS, slowed_ms + 2 * DAY_MS);
    let alerts = simulation.alerts("tenant");
    assert_eq!(
        alerts,
        [
            (slowed_ms + MINUTE_MS, Status::Warning),
            (slowed_ms + 5 * MINUTE_MS, Status::Critical),
            (slowed_ms + 7 * MINUTE_MS, Status::Warning),
            (slowed_ms + 11 * MINUTE_MS, Status::Critical),
        ]
    );
}

#[test]
fn a_gap_that_ends_while_the_feed_is_unknown_teaches_nothing() {
    let mut simulation = Simulation::new(feed(true, 12 * HOUR_MS, 24 * HOUR_MS));
    let down_ms = START_MS + HOUR_MS;
    simulation.send_every("acme", SECOND_MS, down_ms);
    let before = simulation.cadence("acme");
    // Kafka is down for 50 s (under the 1m floor: no alert); the first record after it is
    // read while still blind.
    let sight = |sight: Sight, blind_since_ms: Option<i64>| crate::knowledge::FeedSight {
        sight,
        blind_since_ms,
    };
    let back_ms = down_ms + 50 * SECOND_MS;
    simulation.tracker.set_sights(
        &[sight(
            Sight::Blind(crate::knowledge::Blindness::SourceDown),
            Some(down_ms),
        )],
        back_ms,
    );
    simulation.tick(down_ms + 50 * SECOND_MS);
    simulation
        .tracker
        .observe(0, b"acme", down_ms + 50 * SECOND_MS);
    assert_eq!(
        simulation.cadence("acme"),
        before,
        "the outage taught nothing"
    );
    simulation.tracker.set_sights(
        &[sight(
            Sight::Known {
                through_ms: i64::MAX,
            },
            None,
        )],
        back_ms,
    );
    simulation.tick(down_ms + 50 * SECOND_MS);
    simulation
        .tracker
        .observe(0, b"acme", down_ms + 50 * SECOND_MS + SECOND_MS);
    assert_eq!(
        simulation.cadence("acme").gaps(),
        before.gaps() + 1,
        "known again: learning again"
    );
}

#[test]
fn learned_by_hour_a_producer_clock_30_s_ahead_still_pages_an_outage_on_time() {
    let mut simulation = ticker(true);
    // Two weeks of the ticker's records, each stamped 30 s ahead of when it arrives; the
    // last arrives at Monday 10:59:50, stamped 11:00:20 (a later hour than now).
    let stopped_ms = START_MS + 14 * DAY_MS + 10 * HOUR_MS + 59 * MINUTE_MS + 50 * SECOND_MS;
    let ahead_ms = 30 * SECOND_MS;
    let mut arrival_ms = START_MS;
    while arrival_ms <= stopped_ms {
        simulation.wait_until(arrival_ms);
        simulation
            .tracker
            .observe_at(0, b"acme", arrival_ms + ahead_ms, arrival_ms);
        simulation.tick(arrival_ms);
        let hour = (arrival_ms - START_MS).rem_euclid(DAY_MS) / HOUR_MS;
        arrival_ms += if (8..20).contains(&hour) {
            10 * SECOND_MS
        } else {
            20 * MINUTE_MS
        };
    }
    let stamped_ms = stopped_ms + ahead_ms;
    simulation.wait_until(stopped_ms + HOUR_MS);
    let (warning_ms, _) = simulation.alerts("acme")[0];
    assert!(
        warning_ms <= stamped_ms + 5 * MINUTE_MS,
        "paged at {} s after the last record, not hours late",
        (warning_ms - stamped_ms) / SECOND_MS
    );
}

/// A split feed learned by hour (UTC, warm-up 6 gaps): `keys` sending every 5 minutes from
/// 08:00 to 20:00 of their own day and hourly through their night, each key's day `shift_ms`
/// ahead of UTC; records merged in time order from `from_ms` to `until_ms`.
struct Tenants {
    simulation: Simulation,
    /// (key, shift, next record at).
    keys: Vec<(String, i64, i64)>,
}

impl Tenants {
    fn new(keys: Vec<(String, i64)>) -> Tenants {
        let mut feed = feed(true, 12 * HOUR_MS, 24 * HOUR_MS);
        feed.learning = feed.learning.map(|learning| Learning {
            min_gaps: 6,
            by_hour: Some(crate::schedule::WeekClock {
                timezone: chrono_tz::UTC,
            }),
            ..learning
        });
        Tenants {
            simulation: Simulation::new(feed),
            keys: keys
                .into_iter()
                .enumerate()
                .map(|(index, (key, shift_ms))| (key, shift_ms, START_MS + index as i64 * 1_000))
                .collect(),
        }
    }

    /// Sends every key's records up to `until_ms`, except `stopped`'s from `stopped_at_ms`.
    fn send_until(&mut self, until_ms: i64, stopped: &str, stopped_at_ms: i64) {
        loop {
            let Some(next) = (0..self.keys.len()).min_by_key(|&index| self.keys[index].2) else {
                return;
            };
            let (key, shift_ms, at_ms) = self.keys[next].clone();
            if at_ms > until_ms {
                return;
            }
            self.simulation.wait_until(at_ms);
            if key != stopped || at_ms < stopped_at_ms {
                self.simulation.tracker.observe(0, key.as_bytes(), at_ms);
            }
            self.simulation.tick(at_ms);
            let local_hour = (at_ms - START_MS + shift_ms).rem_euclid(DAY_MS) / HOUR_MS;
            self.keys[next].2 += if (8..20).contains(&local_hour) {
                5 * MINUTE_MS
            } else {
                HOUR_MS
            };
        }
    }
}

#[test]
fn learned_by_hour_a_tenant_nine_hours_off_the_feeds_day_pages_nothing_and_its_outage_still_pages()
{
    // A hundred tenants on UTC's day make the feed's hours; tokyo's day is 9 hours ahead, so
    // its nights fall in the feed's day hours (judged by them: 3 × 512 s, its hourly gaps paged).
    let mut keys: Vec<(String, i64)> = (0..100).map(|index| (format!("utc-{index}"), 0)).collect();
    keys.push(("tokyo".to_owned(), 9 * HOUR_MS));
    let mut tenants = Tenants::new(keys);
    // Monday of the second week, 02:00 UTC, 11:00 in Tokyo: tokyo stops in its busy day.
    let stopped_ms = START_MS + 7 * DAY_MS + 2 * HOUR_MS;
    tenants.send_until(stopped_ms - 1, "", i64::MAX);
    let paged: Vec<&Transition> = tenants
        .simulation
        .transitions
        .iter()
        .filter(|transition| transition.to.severity().is_some())
        .collect();
    assert!(paged.is_empty(), "a week of normal traffic: {paged:?}");
    assert_eq!(
        tenants.simulation.effective("utc-0"),
        (
            (3 * 4_096 * SECOND_MS, 6 * 4_096 * SECOND_MS),
            ThresholdSource::Learned
        ),
        "01:59, a UTC tenant in its night: 3 × and 6 × its p99 (the night's hour)"
    );

    tenants.send_until(stopped_ms + 12 * HOUR_MS, "tokyo", stopped_ms);
    let tokyo = tenants.simulation.alerts("tokyo");
    assert!(!tokyo.is_empty(), "tokyo's outage pages");
    let (warned_ms, _) = tokyo[0];
    assert!(
        warned_ms - stopped_ms <= 4 * HOUR_MS,
        "paged {} min after it stopped",
        (warned_ms - stopped_ms) / MINUTE_MS
    );
    assert!(
        tenants
            .simulation
            .transitions
            .iter()
            .all(|transition| transition.key == "tokyo" || transition.to.severity().is_none()),
        "nobody else pages"
    );
}
