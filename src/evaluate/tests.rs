use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{FeedMode, SplitRule, TimestampRule, TopicMatcher};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2025-12-01T00:00:00Z: when freshwatch starts watching in these scenarios.
const START_MS: i64 = 1_764_547_200_000;
const WARN_MS: i64 = 30 * MINUTE_MS;
const CRITICAL_MS: i64 = 2 * HOUR_MS;

/// `profiles` on `cdp.profile-updates`, warn after 30m, critical after 2h; split by key when
/// `split`.
fn feed(split: bool, expected: &[&str]) -> FeedConfig {
    FeedConfig {
        name: Arc::from("profiles"),
        topics: TopicMatcher::Exact("cdp.profile-updates".into()),
        split: split.then_some(SplitRule::Key),
        timestamp: TimestampRule::Record,
        warn_after: Duration::from_millis(WARN_MS as u64),
        critical_after: Duration::from_millis(CRITICAL_MS as u64),
        expected: expected.iter().map(|value| value.to_string()).collect(),
        mode: FeedMode::Consume,
        max_keys: 100_000,
        max_key_bytes: 256,
        hold: Duration::ZERO,
        rollup_after: 20,
        windows: Vec::new(),
        learning: None,
    }
}

fn changes(transitions: &[Transition]) -> Vec<(Status, Status)> {
    transitions
        .iter()
        .map(|transition| (transition.from, transition.to))
        .collect()
}

const UNSPLIT: SeriesId = SeriesId { feed: 0, index: 0 };

#[test]
fn a_feed_whose_only_record_is_ten_days_old_is_critical_on_the_first_tick() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", START_MS - 10 * DAY_MS);

    let transitions = evaluator.tick(&mut tracker, START_MS);

    assert_eq!(changes(&transitions), [(Status::Unknown, Status::Critical)]);
    let page = &transitions[0];
    assert_eq!(page.staleness_ms, Some(10 * DAY_MS));
    assert_eq!(page.last_seen_ms, Some(START_MS - 10 * DAY_MS));
    assert_eq!(page.at_ms, START_MS);
    assert_eq!(&*page.feed, "profiles");
    assert_eq!(page.key, "");
    assert!(!page.split);
    assert_eq!(page.topic, "cdp.profile-updates");
    assert_eq!(
        (page.warn_after_ms, page.critical_after_ms),
        (WARN_MS, CRITICAL_MS)
    );
    assert_eq!(page.records, 1);
    assert_eq!(tracker.series(UNSPLIT).status, Status::Critical);
    assert_eq!(tracker.series(UNSPLIT).status_since_ms, START_MS);

    // It stays critical, and says so only once.
    assert!(evaluator.tick(&mut tracker, START_MS + DAY_MS).is_empty());
}

#[test]
fn a_feed_that_stops_warns_at_warn_after_pages_at_critical_after_and_resolves_on_the_next_record() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", START_MS);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS)),
        [(Status::Unknown, Status::Ok)]
    );

    // The producer dies right after START_MS.
    assert!(
        evaluator
            .tick(&mut tracker, START_MS + WARN_MS - 1)
            .is_empty(),
        "1 ms before warn_after it is still ok"
    );
    let warning = evaluator.tick(&mut tracker, START_MS + WARN_MS);
    assert_eq!(changes(&warning), [(Status::Ok, Status::Warning)]);
    assert_eq!(warning[0].staleness_ms, Some(WARN_MS));

    assert!(
        evaluator
            .tick(&mut tracker, START_MS + CRITICAL_MS - 1)
            .is_empty(),
        "1 ms before critical_after it is still a warning"
    );
    let critical = evaluator.tick(&mut tracker, START_MS + CRITICAL_MS);
    assert_eq!(changes(&critical), [(Status::Warning, Status::Critical)]);
    assert_eq!(critical[0].from_since_ms, START_MS + WARN_MS);

    // Ten days of silence change nothing more: no repeated pages.
    for day in 1..=10 {
        assert!(evaluator
            .tick(&mut tracker, START_MS + day * DAY_MS)
            .is_empty());
    }

    // Data flows again; the next tick resolves without waiting for any deadline.
    let back_ms = START_MS + 10 * DAY_MS + 5 * MINUTE_MS;
    tracker.observe(0, b"", back_ms);
    let resolved = evaluator.tick(&mut tracker, back_ms + 1);
    assert_eq!(changes(&resolved), [(Status::Critical, Status::Ok)]);
    assert_eq!(resolved[0].from_since_ms, START_MS + CRITICAL_MS);
    assert_eq!(
        resolved[0].alert_since_ms,
        START_MS + WARN_MS,
        "the incident began with the warning"
    );
    assert_eq!(resolved[0].last_seen_ms, Some(back_ms));
    assert_eq!(resolved[0].staleness_ms, Some(1));
    assert_eq!(tracker.series(UNSPLIT).status, Status::Ok);
}

#[test]
fn a_warning_feed_that_gets_a_record_goes_back_to_ok_before_it_ever_pages() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", START_MS);
    evaluator.tick(&mut tracker, START_MS);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + WARN_MS)),
        [(Status::Ok, Status::Warning)]
    );

    tracker.observe(0, b"", START_MS + HOUR_MS);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + HOUR_MS)),
        [(Status::Warning, Status::Ok)]
    );
    // The staleness clock restarted at 1h: warning at 1h30m, critical at 3h, and the first
    // silence's critical deadline (2h) no longer applies.
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + HOUR_MS + WARN_MS)),
        [(Status::Ok, Status::Warning)]
    );
    assert!(evaluator
        .tick(&mut tracker, START_MS + CRITICAL_MS)
        .is_empty());
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + HOUR_MS + CRITICAL_MS)),
        [(Status::Warning, Status::Critical)]
    );
}

#[test]
fn an_expected_value_is_unknown_then_never_seen_then_ok_once_it_appears() {
    let feeds = [feed(true, &["acme", "initech"])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    let initech = SeriesId { feed: 0, index: 1 };
    assert_eq!(tracker.series(initech).key(), "initech");
    tracker.observe(0, b"acme", START_MS);

    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS)),
        [(Status::Unknown, Status::Ok)],
        "only acme has data; initech stays unknown"
    );
    assert_eq!(tracker.series(initech).status, Status::Unknown);

    tracker.observe(0, b"acme", START_MS + CRITICAL_MS - 1);
    evaluator.tick(&mut tracker, START_MS + CRITICAL_MS - 1);
    assert_eq!(
        tracker.series(initech).status,
        Status::Unknown,
        "still within critical_after of watch start"
    );

    let never = evaluator.tick(&mut tracker, START_MS + CRITICAL_MS);
    assert_eq!(changes(&never), [(Status::Unknown, Status::NeverSeen)]);
    assert_eq!(never[0].key, "initech");
    assert!(never[0].split);
    assert_eq!(never[0].last_seen_ms, None);
    assert_eq!(never[0].staleness_ms, None);

    tracker.observe(0, b"acme", START_MS + DAY_MS);
    assert!(
        evaluator.tick(&mut tracker, START_MS + DAY_MS).is_empty(),
        "never_seen is reported once"
    );

    tracker.observe(0, b"initech", START_MS + DAY_MS);
    let appeared = evaluator.tick(&mut tracker, START_MS + DAY_MS);
    assert_eq!(changes(&appeared), [(Status::NeverSeen, Status::Ok)]);
    assert_eq!(appeared[0].key, "initech");
}

#[test]
fn an_unsplit_feed_that_never_gets_a_record_is_never_seen_after_critical_after() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    assert!(evaluator.tick(&mut tracker, START_MS).is_empty());
    assert_eq!(tracker.series(UNSPLIT).status, Status::Unknown);
    assert!(evaluator
        .tick(&mut tracker, START_MS + CRITICAL_MS - 1)
        .is_empty());
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + CRITICAL_MS)),
        [(Status::Unknown, Status::NeverSeen)]
    );
}

#[test]
fn a_persisted_watch_start_keeps_the_never_seen_clock_running_across_a_restart() {
    let feeds = [feed(true, &["initech"])];
    let restarted_ms = START_MS + DAY_MS;
    let mut tracker = Tracker::new(&feeds, restarted_ms);
    tracker.set_watch_started(0, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, restarted_ms)),
        [(Status::Unknown, Status::NeverSeen)]
    );
}

#[test]
fn a_late_or_replayed_older_record_changes_neither_last_seen_nor_status() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    let newest_ms = START_MS - 3 * HOUR_MS;
    tracker.observe(0, b"", newest_ms);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS)),
        [(Status::Unknown, Status::Critical)]
    );

    // A replay from the start of the topic: every record older than the newest one seen.
    for age_hours in [5, 4, 24, 3] {
        tracker.observe(0, b"", START_MS - age_hours * HOUR_MS);
    }
    assert!(evaluator.tick(&mut tracker, START_MS + 1).is_empty());
    let series = tracker.series(UNSPLIT);
    assert_eq!(series.last_seen(), Some(newest_ms));
    assert_eq!(series.status, Status::Critical);
    assert_eq!(series.records, 5);
}

#[test]
fn deadlines_are_lazy_and_only_the_series_that_went_quiet_cross_warn_after() {
    const SERIES: u32 = 10_000;
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    for key in 0..SERIES {
        tracker.observe(0, key.to_string().as_bytes(), START_MS);
    }
    let first = evaluator.tick(&mut tracker, START_MS);
    assert_eq!(first.len(), SERIES as usize);
    assert!(first
        .iter()
        .all(|transition| (transition.from, transition.to) == (Status::Unknown, Status::Ok)));

    // Even keys keep flowing, with many records each; odd keys went quiet at START_MS.
    for minute in 1..30 {
        let now_ms = START_MS + minute * MINUTE_MS;
        for key in (0..SERIES).step_by(2) {
            for _ in 0..3 {
                tracker.observe(0, key.to_string().as_bytes(), now_ms);
            }
        }
        assert!(
            evaluator.tick(&mut tracker, now_ms).is_empty(),
            "minute {minute}: no series is due before warn_after"
        );
        assert!(
            evaluator.scheduled() <= 2 * SERIES as usize,
            "minute {minute}: {} deadlines for {SERIES} series",
            evaluator.scheduled()
        );
    }

    let crossing = evaluator.tick(&mut tracker, START_MS + WARN_MS);
    assert_eq!(crossing.len(), SERIES as usize / 2);
    for transition in &crossing {
        assert_eq!(
            (transition.from, transition.to),
            (Status::Ok, Status::Warning)
        );
        let key: u32 = transition.key.parse().unwrap();
        assert_eq!(key % 2, 1, "key {key} kept flowing but turned warning");
    }
    assert!(evaluator.scheduled() <= 2 * SERIES as usize);
}

#[test]
fn a_restored_alert_that_still_holds_does_not_page_again_and_a_fresh_one_resolves() {
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS - 20 * DAY_MS);
    let mut evaluator = Evaluator::new(&feeds);
    let paged_since_ms = START_MS - 9 * DAY_MS;
    for key in [&b"still-stale"[..], b"flowing-again"] {
        tracker.restore(
            0,
            key,
            Some(START_MS - 10 * DAY_MS),
            Some((Status::Critical, paged_since_ms)),
        );
    }
    // Index 0 is the feed's placeholder (a split feed with no expected value).
    let still_stale = SeriesId { feed: 0, index: 1 };
    tracker.observe(0, b"flowing-again", START_MS);

    let transitions = evaluator.tick(&mut tracker, START_MS);

    assert_eq!(changes(&transitions), [(Status::Critical, Status::Ok)]);
    assert_eq!(transitions[0].key, "flowing-again");
    assert_eq!(transitions[0].from_since_ms, paged_since_ms);
    assert_eq!(tracker.series(still_stale).status, Status::Critical);
    assert_eq!(
        tracker.series(still_stale).status_since_ms,
        paged_since_ms,
        "the incident keeps its original start"
    );
    tracker.observe(0, b"flowing-again", START_MS + DAY_MS);
    assert!(
        evaluator.tick(&mut tracker, START_MS + DAY_MS).is_empty(),
        "no second page for still-stale"
    );
}

/// A restart after a long downtime: the restored warning is judged again and escalates, once.
#[test]
fn a_restored_warning_that_is_now_past_critical_after_escalates_once() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS - DAY_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.restore(
        0,
        b"",
        Some(START_MS - 3 * HOUR_MS),
        Some((Status::Warning, START_MS - 3 * HOUR_MS + WARN_MS)),
    );
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS)),
        [(Status::Warning, Status::Critical)]
    );
    assert!(evaluator.tick(&mut tracker, START_MS + 1).is_empty());
}

#[test]
fn describe_reports_a_series_as_it_stands_with_from_equal_to_to() {
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS - 20 * DAY_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.restore(
        0,
        b"acme",
        Some(START_MS - 10 * DAY_MS),
        Some((Status::Critical, START_MS - 9 * DAY_MS)),
    );
    assert!(evaluator.tick(&mut tracker, START_MS).is_empty());

    let described = evaluator.describe(&tracker, SeriesId { feed: 0, index: 1 }, START_MS);

    assert_eq!(described.from, described.to);
    assert_eq!(described.to, Status::Critical);
    assert_eq!(described.key, "acme");
    assert!(described.split);
    assert_eq!(described.at_ms, START_MS);
    assert_eq!(described.from_since_ms, START_MS - 9 * DAY_MS);
    assert_eq!(described.last_seen_ms, Some(START_MS - 10 * DAY_MS));
    assert_eq!(described.staleness_ms, Some(10 * DAY_MS));
}

#[test]
fn judge_maps_staleness_to_status_and_the_next_deadline() {
    let feeds = [feed(false, &[])];
    let rules = FeedRules::from_config(&feeds[0]);
    let mut tracker = Tracker::new(&feeds, START_MS);
    let never = judge(
        tracker.series(UNSPLIT),
        &Learned::default(),
        START_MS,
        &rules,
        START_MS,
    );
    assert_eq!(never, (Status::Unknown, START_MS + CRITICAL_MS));
    assert_eq!(
        judge(
            tracker.series(UNSPLIT),
            &Learned::default(),
            START_MS,
            &rules,
            START_MS + CRITICAL_MS
        ),
        (Status::NeverSeen, i64::MAX)
    );

    tracker.observe(0, b"", START_MS);
    let series = tracker.series(UNSPLIT);
    let at = |offset_ms: i64| {
        judge(
            series,
            &Learned::default(),
            START_MS,
            &rules,
            START_MS + offset_ms,
        )
    };
    assert_eq!(
        at(-MINUTE_MS),
        (Status::Ok, START_MS + WARN_MS),
        "a future event time is fresh"
    );
    assert_eq!(at(0), (Status::Ok, START_MS + WARN_MS));
    assert_eq!(at(WARN_MS - 1), (Status::Ok, START_MS + WARN_MS));
    assert_eq!(at(WARN_MS), (Status::Warning, START_MS + CRITICAL_MS));
    assert_eq!(
        at(CRITICAL_MS - 1),
        (Status::Warning, START_MS + CRITICAL_MS)
    );
    assert_eq!(at(CRITICAL_MS), (Status::Critical, i64::MAX));
    assert_eq!(at(10 * DAY_MS), (Status::Critical, i64::MAX));
}

proptest! {
    /// Whatever the sequence of records and clock moves on one series (with or without `for`),
    /// the incrementally kept status equals a judgement from scratch, and every status change is
    /// reported exactly once.
    #[test]
    fn incremental_judging_matches_judging_from_scratch(
        hold_ms in prop_oneof![Just(0i64), 0..HOUR_MS],
        steps in prop::collection::vec(
            (
                0i64..3 * HOUR_MS,
                prop::option::of(-4 * HOUR_MS..MINUTE_MS),
            ),
            1..60,
        )
    ) {
        let mut held = feed(false, &[]);
        held.hold = Duration::from_millis(hold_ms as u64);
        let feeds = [held];
        let rules = FeedRules::from_config(&feeds[0]);
        let mut tracker = Tracker::new(&feeds, START_MS);
        let mut evaluator = Evaluator::new(&feeds);
        let mut now_ms = START_MS;
        let mut previous = tracker.series(UNSPLIT).status;
        let mut status_changes = 0usize;
        let mut transitions_seen = 0usize;
        for (advance_ms, record) in steps {
            now_ms += advance_ms;
            if let Some(event_offset_ms) = record {
                tracker.observe(0, b"", now_ms + event_offset_ms);
            }
            let transitions = evaluator.tick(&mut tracker, now_ms);
            let (expected, _) = judge(tracker.series(UNSPLIT), &Learned::default(), START_MS, &rules, now_ms);
            let status = tracker.series(UNSPLIT).status;
            prop_assert_eq!(status, expected);
            if status != previous {
                status_changes += 1;
                prop_assert_eq!(changes(&transitions), vec![(previous, status)]);
            } else {
                prop_assert!(transitions.is_empty(), "{:?}", transitions);
            }
            transitions_seen += transitions.len();
            previous = status;
        }
        prop_assert_eq!(transitions_seen, status_changes);
    }
}

#[test]
fn for_holds_a_crossing_until_it_has_lasted_and_a_record_cancels_it() {
    let mut held = feed(false, &[]);
    held.hold = Duration::from_secs(5 * 60);
    let feeds = [held];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", START_MS);
    evaluator.tick(&mut tracker, START_MS);
    let warn_at = START_MS + 30 * 60_000;
    assert!(
        evaluator.tick(&mut tracker, warn_at).is_empty(),
        "crossed, but not for 5m yet"
    );
    tracker.observe(0, b"", warn_at + 60_000); // data returns within the hold: no page at all
    assert!(evaluator
        .tick(&mut tracker, warn_at + 4 * 60_000)
        .is_empty());
    let next_warn = warn_at + 60_000 + 30 * 60_000 + 5 * 60_000;
    assert!(evaluator.tick(&mut tracker, next_warn - 1).is_empty());
    let transitions = evaluator.tick(&mut tracker, next_warn);
    assert_eq!(transitions.len(), 1);
    assert_eq!(
        (transitions[0].from, transitions[0].to),
        (Status::Ok, Status::Warning)
    );
}

#[test]
fn a_crossing_is_judged_only_once_kafka_is_known_to_hold_nothing_newer_at_that_moment() {
    let feeds = [feed(false, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"", START_MS);
    evaluator.set_sight(
        0,
        Sight::Known {
            through_ms: START_MS,
        },
    );
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS)),
        [(Status::Unknown, Status::Ok)]
    );
    let crossing_ms = START_MS + WARN_MS;
    // Known only up to a second before the crossing: no verdict yet, and no `unknown` either.
    evaluator.set_sight(
        0,
        Sight::Known {
            through_ms: crossing_ms - SECOND_MS,
        },
    );
    assert!(evaluator.tick(&mut tracker, crossing_ms + 10).is_empty());
    assert_eq!(tracker.series(UNSPLIT).status, Status::Ok);
    // The next statistics reach past the crossing: warning, at the next tick.
    evaluator.set_sight(
        0,
        Sight::Known {
            through_ms: crossing_ms + 500,
        },
    );
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, crossing_ms + 600)),
        [(Status::Ok, Status::Warning)]
    );
}

#[test]
fn while_blind_a_would_be_alert_is_unknown_a_firing_one_stays_and_neither_gets_worse() {
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    tracker.observe(0, b"quiet", START_MS - WARN_MS);
    tracker.observe(0, b"live", START_MS);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS)),
        [
            (Status::Unknown, Status::Warning),
            (Status::Unknown, Status::Ok)
        ]
    );
    evaluator.set_sight(0, Sight::Blind(crate::knowledge::Blindness::Unowned));
    // Both cross a threshold while blind: neither pages, neither resolves.
    let transitions = evaluator.tick(&mut tracker, START_MS + CRITICAL_MS);
    assert_eq!(changes(&transitions), [(Status::Ok, Status::Unknown)]);
    assert_eq!(transitions[0].key, "live");
    let quiet = SeriesId { feed: 0, index: 1 };
    assert_eq!(
        tracker.series(quiet).status,
        Status::Warning,
        "not critical"
    );
    // A fresh record is news enough on its own.
    tracker.observe(0, b"quiet", START_MS + CRITICAL_MS);
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + CRITICAL_MS + 1)),
        [(Status::Warning, Status::Ok)]
    );
    // Sight returns: live is judged (critical: silent since START_MS).
    evaluator.set_sight(
        0,
        Sight::Known {
            through_ms: START_MS + CRITICAL_MS + 2,
        },
    );
    assert_eq!(
        changes(&evaluator.tick(&mut tracker, START_MS + CRITICAL_MS + 2)),
        [(Status::Unknown, Status::Critical)]
    );
}

#[test]
fn a_value_added_to_expected_later_gets_its_own_never_seen_clock() {
    let feeds = [feed(true, &["acme", "newco"])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    tracker.set_watch_started(0, START_MS - 3 * DAY_MS);
    // `newco` was added to the config just now; `acme` has been expected for three days.
    tracker.set_expected_started(0, b"newco", START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    let transitions = evaluator.tick(&mut tracker, START_MS + HOUR_MS);
    assert_eq!(
        changes(&transitions),
        [(Status::Unknown, Status::NeverSeen)]
    );
    assert_eq!(transitions[0].key, "acme");
    let transitions = evaluator.tick(&mut tracker, START_MS + CRITICAL_MS);
    assert_eq!(
        changes(&transitions),
        [(Status::Unknown, Status::NeverSeen)]
    );
    assert_eq!(transitions[0].key, "newco");
}

#[test]
fn a_split_feed_with_no_record_at_all_is_never_seen_as_a_whole_until_its_first_key() {
    let feeds = [feed(true, &[])];
    let mut tracker = Tracker::new(&feeds, START_MS);
    let mut evaluator = Evaluator::new(&feeds);
    evaluator.tick(&mut tracker, START_MS);
    let transitions = evaluator.tick(&mut tracker, START_MS + CRITICAL_MS);
    assert_eq!(
        changes(&transitions),
        [(Status::Unknown, Status::NeverSeen)]
    );
    assert_eq!(transitions[0].key, "", "the feed as a whole");
    assert_eq!(
        crate::alert::summary(&transitions[0]),
        "Feed profiles has never been seen (no record on cdp.profile-updates since freshwatch started watching)"
    );

    tracker.observe(0, b"acme", START_MS + CRITICAL_MS);
    let transitions = evaluator.tick(&mut tracker, START_MS + CRITICAL_MS + 1);
    let mut seen = changes(&transitions);
    seen.sort_by_key(|(from, to)| (from.rank(), to.rank()));
    assert_eq!(
        seen,
        [
            (Status::Unknown, Status::Ok),
            (Status::NeverSeen, Status::Ok)
        ],
        "acme is new and ok; the feed as a whole resolves"
    );
    // Retired: never judged again, however long the feed is quiet.
    let later = evaluator.tick(&mut tracker, START_MS + 10 * DAY_MS);
    assert!(later.iter().all(|transition| transition.key == "acme"));
}
