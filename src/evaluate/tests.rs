use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::{FeedMode, SplitRule, TimestampRule, TopicMatcher};

const DAY_MS: i64 = 86_400_000;
const START_MS: i64 = 1_764_547_200_000;

fn feed(split: bool, expected: &[&str]) -> FeedConfig {
    FeedConfig {
        name: Arc::from("profiles"),
        topics: TopicMatcher::Exact("cdp.profile-updates".into()),
        split: split.then_some(SplitRule::Key),
        timestamp: TimestampRule::Record,
        warn_after: Duration::from_secs(30 * 60),
        critical_after: Duration::from_secs(2 * 3600),
        expected: expected.iter().map(|value| value.to_string()).collect(),
        mode: FeedMode::Consume,
        max_keys: 100_000,
    }
}

fn statuses(transitions: &[Transition]) -> Vec<(Status, Status)> {
    transitions
        .iter()
        .map(|transition| (transition.from, transition.to))
        .collect()
}

#[test]
fn a_feed_whose_only_record_is_ten_days_old_is_critical_on_the_first_tick() {
    let feeds = [feed(false, &[])];
    let clock = ManualClock::new(START_MS);
    let mut tracker = Tracker::new(&feeds, clock.now_ms());
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", clock.now_ms() - 10 * DAY_MS);
    let transitions = evaluator.tick(&mut tracker, clock.now_ms());
    assert_eq!(
        statuses(&transitions),
        [(Status::Unknown, Status::Critical)]
    );
    assert_eq!(transitions[0].staleness_ms, Some(10 * DAY_MS));
    assert_eq!(transitions[0].last_seen_ms, Some(START_MS - 10 * DAY_MS));
}

#[test]
fn a_feed_that_stops_warns_then_pages_then_resolves_on_the_next_record() {
    let feeds = [feed(false, &[])];
    let clock = ManualClock::new(START_MS);
    let mut tracker = Tracker::new(&feeds, clock.now_ms());
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", clock.now_ms());
    assert_eq!(
        statuses(&evaluator.tick(&mut tracker, clock.now_ms())),
        [(Status::Unknown, Status::Ok)]
    );

    clock.advance(Duration::from_secs(30 * 60) - Duration::from_millis(1));
    assert!(
        evaluator.tick(&mut tracker, clock.now_ms()).is_empty(),
        "1ms before warn_after"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        statuses(&evaluator.tick(&mut tracker, clock.now_ms())),
        [(Status::Ok, Status::Warning)]
    );

    clock.set(START_MS + 2 * 3_600_000 - 1);
    assert!(evaluator.tick(&mut tracker, clock.now_ms()).is_empty());
    clock.set(START_MS + 2 * 3_600_000);
    assert_eq!(
        statuses(&evaluator.tick(&mut tracker, clock.now_ms())),
        [(Status::Warning, Status::Critical)]
    );

    // Ten days of silence change nothing more: no repeated transitions.
    clock.advance(Duration::from_secs(10 * 86_400));
    assert!(evaluator.tick(&mut tracker, clock.now_ms()).is_empty());

    tracker.observe(0, b"", clock.now_ms());
    let resolved = evaluator.tick(&mut tracker, clock.now_ms());
    assert_eq!(statuses(&resolved), [(Status::Critical, Status::Ok)]);
    assert_eq!(resolved[0].from_since_ms, START_MS + 2 * 3_600_000);
}

#[test]
fn an_expected_value_is_unknown_then_never_seen_then_ok_when_it_appears() {
    let feeds = [feed(true, &["initech"])];
    let clock = ManualClock::new(START_MS);
    let mut tracker = Tracker::new(&feeds, clock.now_ms());
    let mut evaluator = Evaluator::new(&feeds);
    assert!(
        evaluator.tick(&mut tracker, clock.now_ms()).is_empty(),
        "unknown at first"
    );
    let initech = SeriesId { feed: 0, index: 0 };
    assert_eq!(tracker.series(initech).status, Status::Unknown);
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        statuses(&evaluator.tick(&mut tracker, clock.now_ms())),
        [(Status::Unknown, Status::NeverSeen)]
    );
    tracker.observe(0, b"initech", clock.now_ms());
    assert_eq!(
        statuses(&evaluator.tick(&mut tracker, clock.now_ms())),
        [(Status::NeverSeen, Status::Ok)]
    );
}

#[test]
fn a_late_or_replayed_record_changes_nothing() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", START_MS - 3 * 3_600_000);
    evaluator.tick(&mut tracker, START_MS);
    tracker.observe(0, b"", START_MS - 5 * 3_600_000);
    assert!(evaluator.tick(&mut tracker, START_MS + 1).is_empty());
    let series = tracker.series(SeriesId { feed: 0, index: 0 });
    assert_eq!(series.status, Status::Critical);
    assert_eq!(series.last_seen(), Some(START_MS - 3 * 3_600_000));
}

#[test]
fn deadlines_are_lazy_and_only_silent_series_cross() {
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    for key in 0..10_000u32 {
        tracker.observe(0, &key.to_be_bytes(), START_MS);
    }
    assert_eq!(
        evaluator.tick(&mut tracker, START_MS).len(),
        10_000,
        "unknown -> ok"
    );
    // Half of them keep flowing, many records each.
    for round in 1..=5 {
        for key in (0..10_000u32).step_by(2) {
            tracker.observe(0, &key.to_be_bytes(), START_MS + round * 60_000);
        }
        assert!(evaluator
            .tick(&mut tracker, START_MS + round * 60_000)
            .is_empty());
    }
    assert!(
        evaluator.scheduled() <= 20_000,
        "{} scheduled",
        evaluator.scheduled()
    );
    let crossing = evaluator.tick(&mut tracker, START_MS + 30 * 60_000);
    assert_eq!(crossing.len(), 5_000);
    assert!(crossing
        .iter()
        .all(|transition| transition.to == Status::Warning));
}

#[test]
fn a_restored_alert_that_still_holds_does_not_page_again_and_a_fresh_one_resolves() {
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS - DAY_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.restore(
        0,
        b"still-stale",
        Some(START_MS - 10 * DAY_MS),
        Some((Status::Critical, START_MS - 9 * DAY_MS)),
    );
    tracker.restore(
        0,
        b"flowing-again",
        Some(START_MS - 10 * DAY_MS),
        Some((Status::Critical, START_MS - 9 * DAY_MS)),
    );
    tracker.observe(0, b"flowing-again", START_MS);
    let transitions = evaluator.tick(&mut tracker, START_MS);
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    assert_eq!(transitions[0].key, "flowing-again");
    assert_eq!(
        (transitions[0].from, transitions[0].to),
        (Status::Critical, Status::Ok)
    );
    let described = evaluator.describe(&tracker, SeriesId { feed: 0, index: 0 }, START_MS);
    assert_eq!(described.from, described.to);
    assert_eq!(described.from_since_ms, START_MS - 9 * DAY_MS);
}

proptest! {
    /// Whatever the sequence of records and clock moves, the incremental status equals a
    /// from-scratch judgement, and every change is reported exactly once.
    #[test]
    fn incremental_judging_matches_judging_from_scratch(
        steps in prop::collection::vec((0i64..3 * 3_600_000, prop::option::of(-4 * 3_600_000i64..60_000)), 1..40)
    ) {
        let feeds = [feed(false, &[])];
        let mut tracker = Tracker::new(&feeds, START_MS);
        let mut evaluator = Evaluator::new(&feeds);
        let id = SeriesId { feed: 0, index: 0 };
        let rules = FeedRules::from_config(&feeds[0]);
        let mut now = START_MS;
        let mut previous = tracker.series(id).status;
        for (advance, record) in steps {
            now += advance;
            if let Some(offset) = record {
                tracker.observe(0, b"", now + offset);
            }
            let transitions = evaluator.tick(&mut tracker, now);
            let (expected, _) = judge(tracker.series(id), START_MS, &rules, now);
            prop_assert_eq!(tracker.series(id).status, expected);
            prop_assert_eq!(transitions.len(), usize::from(expected != previous));
            previous = expected;
        }
    }
}
