//! Windows through the evaluator, on simulated time: a tick every minute, as the evaluation loop
//! would run them, and records put into the tracker between ticks.

use super::*;
use crate::clock::rfc3339;

const MINUTE_MS: i64 = 60_000;

fn utc_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .timestamp_millis()
}

/// One unsplit feed `orders`, warn after 30m, critical after 2h, with `windows` (TOML) after it.
fn orders(windows: &str) -> Vec<FeedConfig> {
    let text = format!(
        "[kafka]\nbrokers = \"k:9092\"\n[[feed]]\nname = \"orders\"\ntopic = \"orders\"\nwarn_after = \"30m\"\ncritical_after = \"2h\"\n{windows}"
    );
    crate::config::parse(&text, std::path::Path::new("t.toml"), &|_| None)
        .unwrap_or_else(|error| panic!("{error}\n{text}"))
        .feeds
}

/// The evaluation loop on a manual clock: the tracker, the evaluator, and when it last ticked.
struct Watch {
    tracker: Tracker,
    evaluator: Evaluator,
    now_ms: i64,
}

const ORDERS: SeriesId = SeriesId { feed: 0, index: 0 };

impl Watch {
    fn start(feeds: &[FeedConfig], start: &str) -> Watch {
        let now_ms = utc_ms(start);
        let mut watch = Watch {
            tracker: Tracker::new(feeds, now_ms),
            evaluator: Evaluator::new(feeds),
            now_ms,
        };
        watch.evaluator.tick(&mut watch.tracker, now_ms);
        watch
    }

    /// A record with event time now, then a tick.
    fn record(&mut self) -> Vec<String> {
        self.tracker.observe(0, b"", self.now_ms);
        self.changes(self.now_ms)
    }

    /// Ticks every minute up to and including `until`; each status change as "at: from -> to".
    fn run_until(&mut self, until: &str) -> Vec<String> {
        let until_ms = utc_ms(until);
        let mut seen = Vec::new();
        while self.now_ms < until_ms {
            let next_ms = (self.now_ms + MINUTE_MS).min(until_ms);
            seen.extend(self.changes(next_ms));
        }
        seen
    }

    fn changes(&mut self, now_ms: i64) -> Vec<String> {
        self.now_ms = now_ms;
        self.evaluator
            .tick(&mut self.tracker, now_ms)
            .iter()
            .map(|transition| {
                format!(
                    "{}: {} -> {}",
                    rfc3339(transition.at_ms),
                    transition.from,
                    transition.to
                )
            })
            .collect()
    }

    fn status(&self) -> Status {
        self.tracker.series(ORDERS).status
    }
}

const WEEKEND_QUIET: &str = "[[feed.window]]\ndays = \"sat-sun\"\nexpect = \"nothing\"\n";

#[test]
fn a_weekend_quiet_window_holds_the_pages_a_weekday_would_send() {
    let feeds = orders(WEEKEND_QUIET);
    // A weekday: silent from Wednesday 23:45, it warns at 00:15 and pages at 01:45.
    let mut weekday = Watch::start(&feeds, "2025-12-03T22:00:00Z");
    weekday.run_until("2025-12-03T23:45:00Z");
    weekday.record();
    assert_eq!(
        weekday.run_until("2025-12-04T06:00:00Z"),
        [
            "2025-12-04T00:15:00.000Z: ok -> warning",
            "2025-12-04T01:45:00.000Z: warning -> critical"
        ]
    );
    // The same silence from Friday 23:45: the weekend begins before the first crossing, and
    // nothing is said all weekend, though the feed is silent for two days.
    let mut weekend = Watch::start(&feeds, "2025-12-05T22:00:00Z");
    weekend.run_until("2025-12-05T23:45:00Z");
    weekend.record();
    assert_eq!(
        weekend.run_until("2025-12-07T23:59:00Z"),
        Vec::<String>::new()
    );
    assert_eq!(weekend.status(), Status::Ok);
    // A record late on Sunday: its silence counts from there, by the weekday thresholds.
    weekend.record();
    assert_eq!(
        weekend.run_until("2025-12-08T03:00:00Z"),
        [
            "2025-12-08T00:29:00.000Z: ok -> warning",
            "2025-12-08T01:59:00.000Z: warning -> critical"
        ]
    );
}

#[test]
fn a_feed_still_silent_when_a_quiet_window_ends_is_judged_at_the_boundary() {
    let feeds = orders(WEEKEND_QUIET);
    let mut watch = Watch::start(&feeds, "2025-12-05T22:00:00Z");
    watch.run_until("2025-12-05T23:45:00Z");
    watch.record();
    assert!(watch.run_until("2025-12-07T23:59:59.999Z").is_empty());
    assert_eq!(watch.status(), Status::Ok);
    // Monday 00:00: 48 hours stale by the feed's thresholds, critical at once, on the tick of
    // the boundary itself, with no record to trigger it.
    assert_eq!(
        watch.changes(utc_ms("2025-12-08T00:00:00Z")),
        ["2025-12-08T00:00:00.000Z: ok -> critical"]
    );
    assert_eq!(
        watch.evaluator.next_schedule_change(0),
        utc_ms("2025-12-13T00:00:00Z"),
        "the next boundary is Saturday"
    );
}

#[test]
fn an_alert_firing_when_a_quiet_window_begins_stays_and_does_not_worsen_inside_it() {
    let feeds = orders(WEEKEND_QUIET);
    let mut watch = Watch::start(&feeds, "2025-12-05T22:00:00Z");
    watch.record();
    assert_eq!(
        watch.run_until("2025-12-06T12:00:00Z"),
        ["2025-12-05T22:30:00.000Z: ok -> warning"],
        "warning from Friday 22:30; the critical due at Saturday 00:00 is held"
    );
    assert_eq!(watch.status(), Status::Warning);
    // A record inside the window is good news, and good news is told at once.
    assert_eq!(watch.record(), ["2025-12-06T12:00:00.000Z: warning -> ok"]);
}

const BUSINESS_HOURS: &str = "[[feed.window]]\ndays = \"mon-fri\"\nhours = \"08:00-20:00\"\nwarn_after = \"5m\"\ncritical_after = \"15m\"\n";

#[test]
fn a_business_hours_window_with_tighter_thresholds_pages_sooner_inside_it() {
    let feeds = orders(BUSINESS_HOURS);
    let mut watch = Watch::start(&feeds, "2025-12-01T09:00:00Z");
    watch.record();
    assert_eq!(
        watch.run_until("2025-12-01T09:30:00Z"),
        [
            "2025-12-01T09:05:00.000Z: ok -> warning",
            "2025-12-01T09:15:00.000Z: warning -> critical"
        ]
    );
    // Monday 21:00, outside it: the feed's own 30m and 2h.
    watch.run_until("2025-12-01T21:00:00Z");
    assert_eq!(watch.record(), ["2025-12-01T21:00:00.000Z: critical -> ok"]);
    assert_eq!(
        watch.run_until("2025-12-01T23:30:00Z"),
        [
            "2025-12-01T21:30:00.000Z: ok -> warning",
            "2025-12-01T23:00:00.000Z: warning -> critical"
        ]
    );
}

#[test]
fn tighter_thresholds_that_begin_while_a_feed_is_silent_apply_at_the_boundary() {
    let feeds = orders(BUSINESS_HOURS);
    let mut watch = Watch::start(&feeds, "2025-12-02T07:50:00Z");
    watch.record();
    // Ten minutes stale at 08:00: past the window's 5m at once (its own deadline, by the feed's
    // 30m, was 08:20), critical at 08:05 (15m after 07:50).
    assert_eq!(
        watch.run_until("2025-12-02T08:30:00Z"),
        [
            "2025-12-02T08:00:00.000Z: ok -> warning",
            "2025-12-02T08:05:00.000Z: warning -> critical"
        ]
    );
}

#[test]
fn a_holiday_disables_the_window_for_that_date() {
    let feeds = orders(&format!("{BUSINESS_HOURS}holidays = [\"2025-12-25\"]\n"));
    let mut christmas = Watch::start(&feeds, "2025-12-25T10:00:00Z");
    christmas.record();
    assert_eq!(
        christmas.run_until("2025-12-25T11:00:00Z"),
        ["2025-12-25T10:30:00.000Z: ok -> warning"],
        "the feed's 30m, not the window's 5m"
    );
    let mut next_day = Watch::start(&feeds, "2025-12-26T10:00:00Z");
    next_day.record();
    assert_eq!(
        next_day.run_until("2025-12-26T10:10:00Z"),
        ["2025-12-26T10:05:00.000Z: ok -> warning"]
    );
}

#[test]
fn a_window_in_new_york_moves_an_hour_in_utc_when_the_clocks_fall_back() {
    let feeds = orders(&format!(
        "{BUSINESS_HOURS}timezone = \"America/New_York\"\n"
    ));
    // Friday 2025-10-31, EDT: 08:00 is 12:00Z. A record at 11:58Z warns at 12:03Z.
    let mut before = Watch::start(&feeds, "2025-10-31T11:58:00Z");
    before.record();
    assert_eq!(
        before.run_until("2025-10-31T12:10:00Z"),
        ["2025-10-31T12:03:00.000Z: ok -> warning"]
    );
    // Monday 2025-11-03, EST: 08:00 is 13:00Z. The same record at 11:58Z is outside the
    // window (06:58 EST): the feed's 30m apply, and the window starts at 13:00Z.
    let mut after = Watch::start(&feeds, "2025-11-03T11:58:00Z");
    after.record();
    assert_eq!(
        after.evaluator.next_schedule_change(0),
        utc_ms("2025-11-03T13:00:00Z")
    );
    assert_eq!(
        after.run_until("2025-11-03T13:10:00Z"),
        [
            "2025-11-03T12:28:00.000Z: ok -> warning",
            "2025-11-03T13:00:00.000Z: warning -> critical"
        ]
    );
}

#[test]
fn the_rules_in_force_are_the_windows_at_that_time_and_alerts_carry_them() {
    let feeds = orders(BUSINESS_HOURS);
    let rules = FeedRules::from_config(&feeds[0]);
    let inside = rules.in_force(utc_ms("2025-12-01T12:00:00Z"));
    assert_eq!(
        (inside.warn_after_ms, inside.critical_after_ms),
        (5 * MINUTE_MS, 15 * MINUTE_MS)
    );
    let outside = rules.in_force(utc_ms("2025-12-06T12:00:00Z"));
    assert_eq!(
        (outside.warn_after_ms, outside.critical_after_ms),
        (30 * MINUTE_MS, 120 * MINUTE_MS)
    );
    let mut watch = Watch::start(&feeds, "2025-12-01T12:00:00Z");
    watch.record();
    watch.run_until("2025-12-01T12:04:00Z");
    let transitions = watch
        .evaluator
        .tick(&mut watch.tracker, utc_ms("2025-12-01T12:05:00Z"));
    assert_eq!(
        (
            transitions[0].warn_after_ms,
            transitions[0].critical_after_ms
        ),
        (5 * MINUTE_MS, 15 * MINUTE_MS)
    );
}
