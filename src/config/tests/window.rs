//! `[[feed.window]]` and `[[defaults.window]]`: what is accepted, and errors that name the key.

use super::*;

/// One feed `a` (warn 30m, critical 2h) with `windows` (TOML) after it.
fn with_windows(windows: &str) -> String {
    with_feed(&format!(
        "topic = \"a\"\nwarn_after = \"30m\"\ncritical_after = \"2h\"\n{windows}"
    ))
}

#[test]
fn a_window_takes_days_hours_timezone_holidays_and_its_own_thresholds() {
    let config = parse_with(
        &with_windows(
            "[[feed.window]]\ndays = \"mon-fri\"\nhours = \"08:00-20:00\"\ntimezone = \"America/New_York\"\nholidays = [\"2025-12-25\"]\nwarn_after = \"5m\"\n[[feed.window]]\ndays = \"sat-sun\"\nexpect = \"nothing\"\n",
        ),
        &[],
    )
    .unwrap();
    let windows = &config.feeds[0].windows;
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0].days.to_string(), "mon-fri");
    assert_eq!(windows[0].hours.to_string(), "08:00-20:00");
    assert_eq!(windows[0].timezone, chrono_tz::America::New_York);
    assert_eq!(windows[0].holidays.len(), 1);
    assert_eq!(windows[0].thresholds.warn_after_ms, 5 * 60_000);
    assert_eq!(
        windows[0].thresholds.critical_after_ms,
        2 * 3_600_000,
        "the feed's"
    );
    assert!(!windows[0].thresholds.expect_nothing);
    // Defaults: every day, the whole day, UTC.
    assert_eq!(windows[1].days.to_string(), "sat-sun");
    assert_eq!(windows[1].hours, crate::schedule::Hours::ALL_DAY);
    assert_eq!(windows[1].timezone, chrono_tz::UTC);
    assert!(windows[1].thresholds.expect_nothing);
    assert!(parse_with(MINIMAL, &[]).unwrap().feeds[0]
        .windows
        .is_empty());
}

#[test]
fn a_bad_window_is_refused_naming_its_key() {
    let cases = [
        (
            "[[feed.window]]\ndays = \"mon-fry\"\n",
            "feed[0].window[0].days: unknown day \"fry\"",
        ),
        (
            "[[feed.window]]\nhours = \"08:00-20:00\"\n[[feed.window]]\nhours = \"8am-5pm\"\n",
            "feed[0].window[1].hours: \"8am-5pm\" is not a range",
        ),
        (
            "[[feed.window]]\nhours = \"09:00-09:00\"\n",
            "feed[0].window[0].hours: \"09:00-09:00\" starts and ends at the same time",
        ),
        (
            "[[feed.window]]\ntimezone = \"Europe/Pariss\"\n",
            "feed[0].window[0].timezone: unknown timezone \"Europe/Pariss\"",
        ),
        (
            "[[feed.window]]\nholidays = [\"2025-12-25\", \"2025-02-30\"]\n",
            "feed[0].window[0].holidays[1]: \"2025-02-30\" is not a date",
        ),
        (
            "[[feed.window]]\nwarn_after = \"10m\"\ncritical_after = \"10m\"\n",
            "feed[0].window[0].critical_after: critical_after must be greater than warn_after: warn_after 10m, critical_after 10m",
        ),
        (
            "[[feed.window]]\nwarn_after = \"3h\"\n",
            "feed[0].window[0].warn_after: critical_after must be greater than warn_after: warn_after 3h, critical_after 2h",
        ),
        (
            "[[feed.window]]\nexpect = \"nothing\"\nwarn_after = \"3h\"\n",
            "feed[0].window[0].warn_after: an expect = \"nothing\" window raises no alert",
        ),
        (
            "[[feed.window]]\nholidays = [\"2025-12-25\"]\nexpect = \"nothing\"\n",
            "feed[0].window[0].expect: an expect = \"nothing\" window covering every hour of every day mutes the feed for good",
        ),
        (
            "[[feed.window]]\ndays = \"daily\"\nhours = \"00:00-24:00\"\nexpect = \"nothing\"\n",
            "feed[0].window[0].expect: an expect = \"nothing\" window covering every hour",
        ),
    ];
    for (windows, expected) in cases {
        let error = error_of(&with_windows(windows));
        assert!(
            error.starts_with(expected),
            "{windows}\n  gave: {error}\n  want: {expected}"
        );
    }
    // Shape errors come from serde, with the path.
    let error = error_of(&with_windows("[[feed.window]]\nexpect = \"silence\"\n"));
    assert!(
        error.starts_with("feed[0].window[0].expect: unknown variant"),
        "{error}"
    );
    let error = error_of(&with_windows("[[feed.window]]\nday = \"mon\"\n"));
    assert!(error.contains("unknown field `day`"), "{error}");
}

#[test]
fn feeds_without_windows_of_their_own_take_those_of_defaults() {
    let text = format!(
        "{KAFKA}[defaults]\nwarn_after = \"1h\"\ncritical_after = \"6h\"\n[[defaults.window]]\ndays = \"sat-sun\"\nexpect = \"nothing\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\n[[feed.window]]\nhours = \"08:00-20:00\"\nwarn_after = \"5m\"\n[[feed]]\nname = \"c\"\ntopic = \"c\"\nwindow = []\n"
    );
    let config = parse_with(&text, &[]).unwrap();
    assert!(config.feeds[0].windows[0].thresholds.expect_nothing);
    assert_eq!(config.feeds[1].windows.len(), 1);
    assert!(!config.feeds[1].windows[0].thresholds.expect_nothing);
    assert!(config.feeds[2].windows.is_empty(), "window = [] opts out");

    let bad_default = format!(
        "{KAFKA}[[defaults.window]]\ndays = \"weekend\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
    );
    assert!(
        error_of(&bad_default).starts_with("defaults.window[0].days: unknown day"),
        "{}",
        error_of(&bad_default)
    );
    // A default window's thresholds are checked against each feed that takes it.
    let too_tight = format!("{KAFKA}[[defaults.window]]\nwarn_after = \"3h\"\ncritical_after = \"4h\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\ncritical_after = \"2h\"\nwarn_after = \"1h\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\nwarn_after = \"5h\"\ncritical_after = \"6h\"\n");
    assert!(
        parse_with(&too_tight, &[]).is_ok(),
        "both thresholds are the window's"
    );
    let inherited = format!("{KAFKA}[[defaults.window]]\nwarn_after = \"3h\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\ncritical_after = \"2h\"\nwarn_after = \"1h\"\n");
    let error = error_of(&inherited);
    assert!(
        error.starts_with("feed[0].window[0].warn_after: critical_after must be greater than warn_after (a window from [defaults])"),
        "{error}"
    );
}

#[test]
fn check_config_prints_each_window_what_is_in_force_now_and_the_next_change() {
    let config = parse_with(
        &with_windows(
            "[[feed.window]]\ndays = \"sat-sun\"\nexpect = \"nothing\"\n[[feed.window]]\ndays = \"mon-fri\"\nhours = \"08:00-20:00\"\ntimezone = \"America/New_York\"\nholidays = [\"2025-12-25\"]\nwarn_after = \"5m\"\ncritical_after = \"15m\"\n",
        ),
        &[],
    )
    .unwrap();
    // Monday 2025-12-01 12:00Z is 07:00 in New York: the feed's own, until 08:00 EST.
    let monday_ms = 1_764_590_400_000;
    let described = describe_at(&config, monday_ms);
    let expected = "  a: topic=a split_by=none timestamp=record warn_after=30m critical_after=2h\n    window[0]: days=sat-sun hours=00:00-24:00 timezone=UTC expect=nothing (silence is normal: no new alert)\n    window[1]: days=mon-fri hours=08:00-20:00 timezone=America/New_York holidays=1 warn_after=5m critical_after=15m\n    in force now: the feed's own warn_after=30m critical_after=2h\n    next change: 2025-12-01T13:00:00.000Z to window[1] warn_after=5m critical_after=15m\n";
    assert!(described.contains(expected), "{described}");
    // Friday 23:00Z is 18:00 in New York; at midnight UTC the weekend window (first in order)
    // takes over, two hours before business hours in New York end.
    let friday_evening_ms = monday_ms + 4 * 86_400_000 + 11 * 3_600_000;
    let described = describe_at(&config, friday_evening_ms);
    assert!(
        described.contains("    in force now: window[1] warn_after=5m critical_after=15m\n    next change: 2025-12-06T00:00:00.000Z to window[0] expect=nothing (silence is normal: no new alert)\n"),
        "{described}"
    );
}

#[test]
fn a_quiet_window_over_90_percent_of_the_week_is_warned_about_and_a_weekend_is_not() {
    let warnings = |windows: &str| {
        let config = parse_with(&with_windows(windows), &[]).unwrap();
        crate::config::window_warnings(&config.feeds)
    };
    let most = warnings("[[feed.window]]\nhours = \"01:00-24:00\"\nexpect = \"nothing\"\n");
    assert_eq!(most.len(), 1, "{most:?}");
    assert!(most[0].contains("covers 96 % of the week"), "{most:?}");
    assert_eq!(
        warnings("[[feed.window]]\ndays = \"sat-sun\"\nexpect = \"nothing\"\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        warnings("[[feed.window]]\nhours = \"01:00-24:00\"\nwarn_after = \"1h\"\n"),
        Vec::<String>::new(),
        "only quiet windows mute"
    );
}
