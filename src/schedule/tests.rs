use chrono::TimeZone as _;

use super::*;

const WINDOW_THRESHOLDS: Thresholds = Thresholds {
    warn_after_ms: 5 * MINUTE_MS,
    critical_after_ms: 15 * MINUTE_MS,
    expect_nothing: false,
};
const OWN: Thresholds = Thresholds {
    warn_after_ms: 30 * MINUTE_MS,
    critical_after_ms: 120 * MINUTE_MS,
    expect_nothing: false,
};

fn utc_ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .timestamp_millis()
}

fn window(days: &str, hours: &str, timezone: &str, holidays: &[&str]) -> Window {
    Window {
        days: Days::parse(days).unwrap(),
        hours: Hours::parse(hours).unwrap(),
        timezone: timezone.parse().unwrap(),
        holidays: holidays
            .iter()
            .map(|date| NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap())
            .collect(),
        thresholds: WINDOW_THRESHOLDS,
    }
}

fn schedule(windows: Vec<Window>) -> Schedule {
    Schedule::new(OWN, windows.into())
}

/// The instants of the next `count` changes after `from`, as RFC 3339 UTC.
fn changes_after(schedule: &Schedule, from: &str, count: usize) -> Vec<String> {
    let mut at_ms = utc_ms(from);
    let mut changes = Vec::new();
    for _ in 0..count {
        let change = schedule.next_change(at_ms).expect("a change");
        changes.push(
            chrono::Utc
                .timestamp_millis_opt(change.at_ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        at_ms = change.at_ms;
    }
    changes
}

#[test]
fn days_parse_ranges_lists_and_daily_and_print_back_as_runs() {
    assert_eq!(Days::parse("mon-fri").unwrap().to_string(), "mon-fri");
    assert_eq!(Days::parse("sat-sun").unwrap().to_string(), "sat-sun");
    assert_eq!(
        Days::parse("mon,wed,fri").unwrap().to_string(),
        "mon,wed,fri"
    );
    assert_eq!(Days::parse("daily").unwrap(), Days::DAILY);
    assert_eq!(Days::parse("Monday, tue").unwrap().to_string(), "mon-tue");
    // A range may wrap the weekend.
    assert_eq!(Days::parse("fri-mon").unwrap().to_string(), "mon,fri-sun");
    assert!(Days::parse("sat").unwrap().contains(Weekday::Sat));
    assert!(!Days::parse("sat").unwrap().contains(Weekday::Sun));
    for bad in ["", "funday", "mon-", "mon-fry", "mon;fri"] {
        let error = Days::parse(bad).expect_err(bad);
        assert!(error.contains("unknown day"), "{bad}: {error}");
    }
}

#[test]
fn hours_are_hh_mm_ranges_up_to_24_00_and_never_empty() {
    assert_eq!(
        Hours::parse("08:00-20:00").unwrap().to_string(),
        "08:00-20:00"
    );
    assert_eq!(Hours::parse("00:00-24:00").unwrap(), Hours::ALL_DAY);
    assert!(Hours::parse("22:00-06:00").unwrap().wraps());
    for bad in [
        "8-20",
        "08:00",
        "08:60-09:00",
        "25:00-26:00",
        "8:00-20:00",
        "24:00-06:00",
        "09:00-09:00",
        "24:30-01:00",
    ] {
        assert!(Hours::parse(bad).is_err(), "{bad} must be refused");
    }
}

#[test]
fn a_range_that_wraps_midnight_belongs_to_the_day_it_starts_on() {
    // Friday nights, 22:00 to 06:00 Saturday; Thursday night is not in it.
    let friday_night = window("fri", "22:00-06:00", "UTC", &[]);
    assert!(!friday_night.contains(utc_ms("2025-12-05T21:59:59Z")));
    assert!(friday_night.contains(utc_ms("2025-12-05T22:00:00Z")));
    assert!(friday_night.contains(utc_ms("2025-12-06T05:59:59Z")));
    assert!(!friday_night.contains(utc_ms("2025-12-06T06:00:00Z")));
    assert!(
        !friday_night.contains(utc_ms("2025-12-05T03:00:00Z")),
        "Thursday's night"
    );
    // A holiday on the Friday skips the whole night, Saturday morning included.
    let holiday = window("fri", "22:00-06:00", "UTC", &["2025-12-05"]);
    assert!(!holiday.contains(utc_ms("2025-12-05T23:00:00Z")));
    assert!(!holiday.contains(utc_ms("2025-12-06T03:00:00Z")));
}

#[test]
fn the_first_window_in_config_order_applies() {
    let mut quiet = window("daily", "12:00-13:00", "UTC", &[]);
    quiet.thresholds.expect_nothing = true;
    let business = window("mon-fri", "08:00-20:00", "UTC", &[]);
    let schedule = schedule(vec![quiet, business]);
    let lunch = schedule.in_force(utc_ms("2025-12-01T12:30:00Z"));
    assert_eq!(lunch.window, Some(0));
    assert!(lunch.thresholds.expect_nothing);
    assert_eq!(
        schedule.in_force(utc_ms("2025-12-01T13:00:00Z")).window,
        Some(1)
    );
    let evening = schedule.in_force(utc_ms("2025-12-01T20:00:00Z"));
    assert_eq!((evening.window, evening.thresholds), (None, OWN));
    assert_eq!(
        changes_after(&schedule, "2025-12-01T07:00:00Z", 4),
        [
            "2025-12-01T08:00:00Z",
            "2025-12-01T12:00:00Z",
            "2025-12-01T13:00:00Z",
            "2025-12-01T20:00:00Z"
        ]
    );
}

#[test]
fn business_hours_in_new_york_follow_the_clocks_across_both_dst_changes() {
    let schedule = schedule(vec![window(
        "mon-fri",
        "08:00-20:00",
        "America/New_York",
        &[],
    )]);
    // EST (UTC-5) until Sunday 2025-03-09 02:00, EDT (UTC-4) after: the window moves an hour
    // earlier in UTC from Monday on; the weekend and its DST change are skipped.
    assert_eq!(
        changes_after(&schedule, "2025-03-07T20:00:00Z", 4),
        [
            "2025-03-08T01:00:00Z",
            "2025-03-10T12:00:00Z",
            "2025-03-11T00:00:00Z",
            "2025-03-11T12:00:00Z"
        ]
    );
    // And back on Sunday 2025-11-02.
    assert_eq!(
        changes_after(&schedule, "2025-10-31T20:00:00Z", 2),
        ["2025-11-01T00:00:00Z", "2025-11-03T13:00:00Z"]
    );
    assert_eq!(
        schedule.in_force(utc_ms("2025-11-03T12:30:00Z")).window,
        None,
        "07:30 EST"
    );
}

#[test]
fn a_start_time_the_clocks_skip_begins_when_they_spring_forward() {
    // 02:30 does not exist in New York on 2025-03-09: the clocks go from 02:00 EST (07:00Z)
    // straight to 03:00 EDT, already past the start.
    let schedule = schedule(vec![window("sun", "02:30-04:00", "America/New_York", &[])]);
    assert_eq!(
        changes_after(&schedule, "2025-03-09T05:00:00Z", 2),
        ["2025-03-09T07:00:00Z", "2025-03-09T08:00:00Z"]
    );
}

#[test]
fn an_hour_the_clocks_pass_twice_leaves_and_enters_the_window_again() {
    // 2025-11-02 in New York: 01:30 EDT (05:30Z), clocks fall back at 06:00Z to 01:00 EST,
    // 01:30 EST (06:30Z), 05:00 EST (10:00Z).
    let schedule = schedule(vec![window("sun", "01:30-05:00", "America/New_York", &[])]);
    assert_eq!(
        changes_after(&schedule, "2025-11-02T04:00:00Z", 4),
        [
            "2025-11-02T05:30:00Z",
            "2025-11-02T06:00:00Z",
            "2025-11-02T06:30:00Z",
            "2025-11-02T10:00:00Z"
        ]
    );
}

#[test]
fn holidays_skip_a_day_and_the_next_change_looks_past_them() {
    let schedule = schedule(vec![window(
        "mon-fri",
        "08:00-20:00",
        "UTC",
        &["2025-12-25", "2025-12-26"],
    )]);
    assert_eq!(
        schedule.in_force(utc_ms("2025-12-25T10:00:00Z")).window,
        None
    );
    assert_eq!(
        changes_after(&schedule, "2025-12-24T19:00:00Z", 2),
        ["2025-12-24T20:00:00Z", "2025-12-29T08:00:00Z"]
    );
}

#[test]
fn without_windows_nothing_changes_and_an_always_open_window_is_looked_at_again_much_later() {
    let none = schedule(Vec::new());
    assert_eq!(none.next_change(0), None);
    assert_eq!(none.next_look_ms(0), i64::MAX);
    let always = schedule(vec![window("daily", "00:00-24:00", "Europe/Paris", &[])]);
    let now_ms = utc_ms("2025-12-01T00:00:00Z");
    assert_eq!(always.next_change(now_ms), None);
    assert_eq!(always.next_look_ms(now_ms), now_ms + LOOK_AHEAD_MS);
}
