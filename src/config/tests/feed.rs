//! `[[feed]]` and `[defaults]`: topics, split and timestamp rules, thresholds, limits.

use super::*;

#[test]
fn feeds_without_thresholds_take_the_configured_defaults() {
    let config = parse_with(
        &format!("{MINIMAL}[defaults]\nwarn_after = \"10m\"\ncritical_after = \"90m\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(config.feeds[0].warn_after, Duration::from_secs(10 * 60));
    assert_eq!(config.feeds[0].critical_after, Duration::from_secs(90 * 60));
}

#[test]
fn flap_control_defaults_to_none_and_a_feed_may_override_the_default() {
    let config = parse_with(MINIMAL, &[]).unwrap();
    assert_eq!(config.feeds[0].hold, Duration::ZERO);

    let config = parse_with(
        &format!(
            "{MINIMAL}[[feed]]\nname = \"b\"\ntopic = \"b\"\nfor = \"2m\"\n[defaults]\nfor = \"5m\"\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(config.feeds[0].hold, Duration::from_secs(5 * 60));
    assert_eq!(config.feeds[1].hold, Duration::from_secs(2 * 60));
    let described = describe(&config);
    assert!(
        described.contains(
            "a: topic=a split_by=none timestamp=record warn_after=1h critical_after=6h for=5m"
        ),
        "{described}"
    );
}

#[test]
fn every_split_by_spelling_parses_to_its_typed_rule() {
    let cases = [
        (
            "split_by = { json = \"/tenant/id\" }",
            SplitRule::Json(pointer("/tenant/id")),
        ),
        (
            "split_by = { header = \"tenant\" }",
            SplitRule::Header("tenant".into()),
        ),
        ("split_by = \"key\"", SplitRule::Key),
        ("split_by = \"partition\"", SplitRule::Partition),
    ];
    for (line, rule) in cases {
        let config = parse_with(&with_feed(&format!("topic = \"a\"\n{line}")), &[])
            .unwrap_or_else(|error| panic!("{line}: {error}"));
        assert_eq!(config.feeds[0].split, Some(rule), "{line}");
    }
}

#[test]
fn every_timestamp_spelling_parses_to_its_typed_rule() {
    let cases = [
        (
            "timestamp = { json = \"/updated_at\" }",
            TimestampRule::Json(pointer("/updated_at")),
        ),
        (
            "timestamp = { header = \"produced_at\" }",
            TimestampRule::Header("produced_at".into()),
        ),
        ("timestamp = \"record\"", TimestampRule::Record),
        ("timestamp = \"arrival\"", TimestampRule::Arrival),
    ];
    for (line, rule) in cases {
        let config = parse_with(&with_feed(&format!("topic = \"a\"\n{line}")), &[])
            .unwrap_or_else(|error| panic!("{line}: {error}"));
        assert_eq!(config.feeds[0].timestamp, rule, "{line}");
    }
}

#[test]
fn an_exact_topic_matches_only_itself() {
    let config = parse_with(&with_feed("topic = \"orders.eu\""), &[]).unwrap();
    let topics = &config.feeds[0].topics;
    assert!(topics.matches("orders.eu"));
    assert!(!topics.matches("orders.eu2"));
    assert!(!topics.matches("orders"));
    assert_eq!(topics.describe(), "orders.eu");
}

#[test]
fn a_topic_regex_matches_topics_by_pattern_and_is_unanchored_unless_anchored() {
    let config = parse_with(
        &format!(
            "{KAFKA}[[feed]]\nname = \"anchored\"\ntopic_regex = \"^orders\\\\..*\"\n[[feed]]\nname = \"loose\"\ntopic_regex = \"profile\"\n"
        ),
        &[],
    )
    .unwrap();
    let anchored = &config.feeds[0].topics;
    assert!(anchored.matches("orders.eu"));
    assert!(anchored.matches("orders.us-east"));
    assert!(!anchored.matches("ordersXeu"), "the dot is escaped");
    assert!(
        !anchored.matches("legacy.orders.eu"),
        "anchored at the start"
    );
    assert_eq!(anchored.describe(), "^orders\\..*");

    let loose = &config.feeds[1].topics;
    assert!(loose.matches("cdp.profile-updates"));
    assert!(!loose.matches("cdp.orders"));
}

#[test]
fn a_critical_threshold_not_above_warn_names_the_feed_index_and_both_values() {
    let text = format!(
        "{KAFKA}[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\n[[feed]]\nname = \"c\"\ntopic = \"c\"\nwarn_after = \"2h\"\ncritical_after = \"1h\"\n"
    );
    let error = error_of(&text);
    assert!(
        error.starts_with("feed[2].critical_after: must be greater than warn_after"),
        "{error}"
    );
    assert_eq!(
        error,
        "feed[2].critical_after: must be greater than warn_after (feed \"c\": warn_after 2h, critical_after 1h)"
    );
}

#[test]
fn equal_thresholds_are_refused_too() {
    let error = error_of(&with_feed(
        "topic = \"a\"\nwarn_after = \"1h\"\ncritical_after = \"60m\"",
    ));
    assert!(
        error.starts_with("feed[0].critical_after: must be greater than warn_after"),
        "{error}"
    );
}

#[test]
fn defaults_with_critical_not_above_warn_are_refused() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[defaults]\nwarn_after = \"6h\"\ncritical_after = \"1h\"\n"
        )),
        "defaults.critical_after: must be greater than warn_after"
    );
}

#[test]
fn an_unknown_key_inside_a_feed_names_the_feed_and_the_field() {
    let error = error_of(&with_feed("topic = \"a\"\ncolour = \"red\""));
    assert!(
        error.starts_with("feed[0].colour: unknown field `colour`"),
        "{error}"
    );
}

#[test]
fn a_feed_with_both_topic_and_topic_regex_is_refused() {
    assert_eq!(
        error_of(&with_feed("topic = \"a\"\ntopic_regex = \"^a\"")),
        "feed[0].topic: set either topic or topic_regex, not both"
    );
}

#[test]
fn a_feed_with_neither_topic_nor_topic_regex_is_refused() {
    assert_eq!(
        error_of(&with_feed("")),
        "feed[0].topic: one of topic or topic_regex is required"
    );
}

#[test]
fn an_invalid_topic_regex_is_refused_with_the_regex_error() {
    let error = error_of(&with_feed("topic_regex = \"orders.(\""));
    assert!(
        error.starts_with("feed[0].topic_regex: invalid regex: "),
        "{error}"
    );
}

#[test]
fn a_json_pointer_without_a_leading_slash_is_refused() {
    let error = error_of(&with_feed(
        "topic = \"a\"\nsplit_by = { json = \"tenant_id\" }",
    ));
    assert!(error.starts_with("feed[0].split_by.json: "), "{error}");
    assert!(error.contains("tenant_id"), "{error}");

    let error = error_of(&with_feed(
        "topic = \"a\"\ntimestamp = { json = \"updated_at\" }",
    ));
    assert!(error.starts_with("feed[0].timestamp.json: "), "{error}");
}

#[test]
fn expected_values_without_split_by_are_refused() {
    assert_eq!(
        error_of(&with_feed("topic = \"a\"\nexpected = [\"acme\"]")),
        "feed[0].expected: needs split_by: expected lists split values"
    );
}

#[test]
fn duplicate_feed_names_are_refused_at_the_second_one() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[feed]]\nname = \"b\"\ntopic = \"b\"\n[[feed]]\nname = \"a\"\ntopic = \"c\"\n"
        )),
        "feed[2].name: duplicate feed name \"a\""
    );
}

#[test]
fn feed_names_outside_letters_digits_and_punctuation_are_refused() {
    for name in ["a b", "tenant/acme", "", "profiles{x}"] {
        let error = error_of(&format!(
            "{KAFKA}[[feed]]\nname = \"{name}\"\ntopic = \"a\"\n"
        ));
        assert_eq!(
            error,
            format!("feed[0].name: {name:?} must be 1-128 letters, digits, '_', '-' or '.'")
        );
    }
    let config = parse_with(
        &format!("{KAFKA}[[feed]]\nname = \"cdp.profile-updates_v2\"\ntopic = \"a\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(&*config.feeds[0].name, "cdp.profile-updates_v2");
}

#[test]
fn partition_split_with_a_topic_regex_is_refused() {
    let message = error_of(&format!(
        "{KAFKA}[[feed]]\nname = \"orders\"\ntopic_regex = \"^orders\\\\..*\"\nsplit_by = \"partition\"\n"
    ));
    assert!(
        message.starts_with("feed[0].split_by: \"partition\" with topic_regex"),
        "{message}"
    );
}

#[test]
fn rollup_after_defaults_to_20_and_the_defaults_or_a_feed_may_override_it() {
    let config = parse_with(MINIMAL, &[]).unwrap();
    assert_eq!(config.feeds[0].rollup_after, 20);

    let config = parse_with(&with_feed("topic = \"a\"\nrollup_after = 5"), &[]).unwrap();
    assert_eq!(config.feeds[0].rollup_after, 5);

    let config = parse_with(
        &format!(
            "{KAFKA}[defaults]\nrollup_after = 50\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\nrollup_after = 1\n"
        ),
        &[],
    )
    .unwrap();
    let rollups: Vec<usize> = config.feeds.iter().map(|feed| feed.rollup_after).collect();
    assert_eq!(rollups, [50, 1], "the default, then the feed's own");
}

#[test]
fn a_rollup_after_below_1_is_refused_naming_the_key() {
    assert_eq!(
        error_of(&with_feed("topic = \"a\"\nrollup_after = 0")),
        "feed[0].rollup_after: must be at least 1"
    );
    assert_eq!(
        error_of(&format!("{MINIMAL}[defaults]\nrollup_after = 0\n")),
        "defaults.rollup_after: must be at least 1"
    );
    let negative = error_of(&with_feed("topic = \"a\"\nrollup_after = -1"));
    assert!(negative.starts_with("feed[0].rollup_after: "), "{negative}");
}

#[test]
fn learned_thresholds_take_their_floors_and_warm_up_from_defaults_or_the_feed() {
    let config = parse_with(
        &format!(
            "{MINIMAL}warn_after = \"12h\"\ncritical_after = \"24h\"\nthresholds = \"learned\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\nthresholds = \"learned\"\nlearn_min_gaps = 5\nwarn_after_min = \"2m\"\ncritical_after_min = \"10m\"\n[[feed]]\nname = \"c\"\ntopic = \"c\"\n"
        ),
        &[],
    )
    .unwrap();
    let minute_ms = 60_000;
    assert_eq!(
        config.feeds[0].learning,
        Some(crate::cadence::Learning {
            min_gaps: 20,
            min_span_ms: crate::cadence::WARM_UP_SPAN_MS,
            warn_floor_ms: minute_ms,
            critical_floor_ms: 5 * minute_ms,
            by_hour: None,
        })
    );
    assert_eq!(
        config.feeds[1].learning,
        Some(crate::cadence::Learning {
            min_gaps: 5,
            min_span_ms: crate::cadence::WARM_UP_SPAN_MS,
            warn_floor_ms: 2 * minute_ms,
            critical_floor_ms: 10 * minute_ms,
            by_hour: None,
        })
    );
    assert_eq!(config.feeds[2].learning, None, "fixed by default");
    let described = describe(&config);
    assert!(
        described.contains("b: topic=b split_by=none timestamp=record warn_after=1h critical_after=6h thresholds=learned learn_min_gaps=5 warn_after_min=2m critical_after_min=10m"),
        "{described}"
    );

    let config = parse_with(
        &format!("{MINIMAL}[defaults]\nthresholds = \"learned\"\nlearn_min_gaps = 7\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        config.feeds[0].learning.map(|learning| learning.min_gaps),
        Some(7)
    );
}

#[test]
fn learning_by_hour_counts_hours_on_the_named_clocks_utc_by_default() {
    let config = parse_with(
        &format!(
            "{MINIMAL}thresholds = \"learned\"\nlearn_by_hour = true\nlearn_timezone = \"America/New_York\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\nthresholds = \"learned\"\nlearn_by_hour = true\n"
        ),
        &[],
    )
    .unwrap();
    let clocks: Vec<_> = config
        .feeds
        .iter()
        .map(|feed| feed.learning.and_then(|learning| learning.by_hour))
        .collect();
    assert_eq!(
        clocks,
        [
            Some(crate::schedule::WeekClock {
                timezone: chrono_tz::America::New_York
            }),
            Some(crate::schedule::WeekClock {
                timezone: chrono_tz::UTC
            }),
        ]
    );
    let described = describe(&config);
    assert!(
        described.contains("critical_after_min=5m learn_by_hour=America/New_York"),
        "{described}"
    );
}

#[test]
fn learned_threshold_keys_are_checked_and_refused_on_a_fixed_feed() {
    for (body, key, reason) in [
        (
            "learn_min_gaps = 5",
            "feed[0].learn_min_gaps",
            "only with thresholds = \"learned\"",
        ),
        (
            "thresholds = \"learned\"\nlearn_min_gaps = 0",
            "feed[0].learn_min_gaps",
            "1 to 65535",
        ),
        (
            "thresholds = \"learned\"\nwarn_after_min = \"2h\"",
            "feed[0].warn_after_min",
            "at most warn_after",
        ),
        (
            "thresholds = \"learned\"\nwarn_after_min = \"10m\"\ncritical_after_min = \"10m\"",
            "feed[0].critical_after_min",
            "greater than warn_after_min",
        ),
        (
            "thresholds = \"sometimes\"",
            "thresholds",
            "unknown variant",
        ),
        (
            "learn_by_hour = true",
            "feed[0].learn_by_hour",
            "only with thresholds = \"learned\"",
        ),
        (
            "thresholds = \"learned\"\nlearn_timezone = \"Europe/Berlin\"",
            "feed[0].learn_timezone",
            "only with learn_by_hour = true or min_rate = \"learned\"",
        ),
        (
            "thresholds = \"learned\"\nlearn_by_hour = true\nlearn_timezone = \"Mars/Olympus\"",
            "feed[0].learn_timezone",
            "unknown timezone \"Mars/Olympus\"",
        ),
    ] {
        let error = error_of(&with_feed(&format!("topic = \"a\"\n{body}")));
        assert!(error.contains(key), "{body}: {error}");
        assert!(error.contains(reason), "{body}: {error}");
    }
    let error = error_of(&format!(
        "{MINIMAL}[defaults]\nwarn_after_min = \"5m\"\ncritical_after_min = \"1m\"\n"
    ));
    assert!(error.contains("defaults.critical_after_min"), "{error}");
}
