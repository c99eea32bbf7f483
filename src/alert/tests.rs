use std::sync::Arc;
use std::time::Duration;

use super::retry::parse_retry_after;
use super::*;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2025-12-04T00:00:00Z, the README webhook example's `at`.
const NOW_MS: i64 = 1_764_806_400_000;

/// `profiles/acme` on `cdp.profile-updates` going `from` → `to` at [`NOW_MS`], having been in
/// `from` for 3 hours.
pub(super) fn transition(from: Status, to: Status, last_seen_ms: Option<i64>) -> Transition {
    Transition {
        feed: Arc::from("profiles"),
        key: "acme".into(),
        split: true,
        topic: "cdp.profile-updates".into(),
        from,
        to,
        at_ms: NOW_MS,
        from_since_ms: NOW_MS - 3 * HOUR_MS,
        alert_since_ms: NOW_MS - 4 * HOUR_MS,
        last_seen_ms,
        staleness_ms: last_seen_ms.map(|seen| NOW_MS - seen),
        warn_after_ms: 30 * MINUTE_MS,
        critical_after_ms: 2 * HOUR_MS,
        records: 12,
        context: None,
    }
}

/// The webhook body a sink would POST for `transition`.
fn webhook_body_of(transition: &Transition) -> serde_json::Value {
    let notification = Notification::from_transition(transition)
        .unwrap_or_else(|| panic!("{} -> {} must notify", transition.from, transition.to));
    render::webhook_body(&notification)
}

#[test]
fn a_dedup_key_is_a_pure_function_of_feed_and_key() {
    assert_eq!(dedup_key("profiles", "acme"), "freshwatch/profiles/acme");
    assert_eq!(dedup_key("profiles", "acme"), dedup_key("profiles", "acme"));
    assert_ne!(
        dedup_key("profiles", "acme"),
        dedup_key("profiles", "globex")
    );
    assert_ne!(dedup_key("profiles", "acme"), dedup_key("orders", "acme"));
    assert_eq!(dedup_key("orders", ""), "freshwatch/orders/");
}

#[test]
fn a_dedup_key_for_a_thousand_character_key_is_hashed_to_fit_255_characters() {
    let long = "k".repeat(1000);
    let hashed = dedup_key("profiles", &long);
    assert!(hashed.len() <= 255, "{} characters", hashed.len());
    assert!(
        hashed.starts_with("freshwatch/profiles/sha256:"),
        "{hashed}"
    );
    assert_eq!(hashed, dedup_key("profiles", &long), "stable");
    assert_ne!(hashed, dedup_key("profiles", &"j".repeat(1000)));
    assert_ne!(hashed, dedup_key("profiles", &"k".repeat(1001)));

    // A multi-byte key is measured in bytes, so it never exceeds 255 characters either.
    let wide = dedup_key("profiles", &"é".repeat(200));
    assert!(wide.chars().count() <= 255 && wide.len() <= 255, "{wide}");
}

#[test]
fn a_dedup_key_stays_plain_up_to_255_characters() {
    let prefix = "freshwatch/profiles/".len();
    let fits = "k".repeat(255 - prefix);
    assert_eq!(
        dedup_key("profiles", &fits),
        format!("freshwatch/profiles/{fits}")
    );
    let over = "k".repeat(256 - prefix);
    assert!(dedup_key("profiles", &over).starts_with("freshwatch/profiles/sha256:"));
}

#[test]
fn the_summary_of_a_ten_day_silence_names_the_series_the_duration_and_the_last_seen_time() {
    let stale = summary(&transition(
        Status::Warning,
        Status::Critical,
        Some(NOW_MS - 10 * DAY_MS),
    ));
    assert!(stale.contains("profiles/acme"), "{stale}");
    assert!(stale.contains("10d"), "{stale}");
    assert!(stale.contains("2025-11-24T00:00:00.000Z"), "{stale}");
    assert_eq!(
        stale,
        "Feed profiles/acme has had no new data for 10d 0h (last seen 2025-11-24T00:00:00.000Z)"
    );
}

#[test]
fn the_summary_of_an_unsplit_feed_names_just_the_feed() {
    let mut orders = transition(Status::Ok, Status::Warning, Some(NOW_MS - 45 * MINUTE_MS));
    orders.feed = Arc::from("orders");
    orders.key = String::new();
    orders.split = false;
    assert_eq!(
        summary(&orders),
        "Feed orders has had no new data for 45m 0s (last seen 2025-12-03T23:15:00.000Z)"
    );
}

#[test]
fn the_summary_of_a_never_seen_series_says_it_has_never_been_seen() {
    let never = summary(&transition(Status::Unknown, Status::NeverSeen, None));
    assert!(
        never.starts_with("Feed profiles/acme has never been seen"),
        "{never}"
    );
    assert!(never.contains("cdp.profile-updates"), "{never}");
}

#[test]
fn the_summary_of_a_resolve_says_fresh_again_and_for_how_long_it_was_stale() {
    let resolved = summary(&transition(Status::Critical, Status::Ok, Some(NOW_MS)));
    assert!(resolved.contains("fresh again"), "{resolved}");
    assert!(
        resolved.contains("after alerting for 4h 0m (last critical"),
        "from the start of the alert (warning), not of its last status: {resolved}"
    );
    assert_eq!(
        resolved,
        "Feed profiles/acme is fresh again after alerting for 4h 0m (last critical; last seen 2025-12-04T00:00:00.000Z)"
    );
}

#[test]
fn only_a_change_of_severity_notifies() {
    let cases = [
        (Status::Ok, Status::Warning, true),
        (Status::Warning, Status::Critical, true),
        (Status::Critical, Status::Ok, true),
        (Status::Warning, Status::Ok, true),
        (Status::Unknown, Status::Critical, true),
        (Status::Unknown, Status::NeverSeen, true),
        (Status::NeverSeen, Status::Ok, true),
        (Status::Critical, Status::NeverSeen, false),
        (Status::Unknown, Status::Ok, false),
        (Status::Critical, Status::Critical, false),
    ];
    for (from, to, notifiable) in cases {
        let change = transition(from, to, Some(NOW_MS - DAY_MS));
        assert_eq!(is_notifiable(&change), notifiable, "{from} -> {to}");
        assert_eq!(
            Notification::from_transition(&change).is_some(),
            notifiable,
            "{from} -> {to}"
        );
    }
}

#[test]
fn a_firing_notice_carries_the_new_severity_and_a_resolve_the_old_one() {
    let severity = |from, to| notice_severity(&transition(from, to, Some(NOW_MS)));
    assert_eq!(
        severity(Status::Ok, Status::Warning),
        Some(Severity::Warning)
    );
    assert_eq!(
        severity(Status::Warning, Status::Critical),
        Some(Severity::Critical)
    );
    assert_eq!(
        severity(Status::Unknown, Status::NeverSeen),
        Some(Severity::Critical)
    );
    assert_eq!(
        severity(Status::Critical, Status::Ok),
        Some(Severity::Critical)
    );
    assert_eq!(
        severity(Status::Warning, Status::Ok),
        Some(Severity::Warning)
    );
    assert_eq!(
        severity(Status::NeverSeen, Status::Ok),
        Some(Severity::Critical)
    );
    assert_eq!(severity(Status::Unknown, Status::Ok), None);
}

#[test]
fn backoff_doubles_from_one_second_with_twenty_percent_jitter() {
    let mut backoff = Backoff::new();
    for base_ms in [1_000u64, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000] {
        let delay = backoff.next_delay(None);
        let low = Duration::from_millis(base_ms * 8 / 10);
        let high = Duration::from_millis(base_ms * 12 / 10);
        assert!(
            low <= delay && delay <= high,
            "{delay:?} outside {low:?}..={high:?}"
        );
    }
}

#[test]
fn backoff_caps_at_sixty_seconds_plus_jitter() {
    let mut backoff = Backoff::new();
    let delays: Vec<Duration> = (0..100).map(|_| backoff.next_delay(None)).collect();
    for delay in &delays[6..] {
        assert!(
            Duration::from_secs(48) <= *delay && *delay <= Duration::from_secs(72),
            "{delay:?}"
        );
    }
    assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(72)));
}

#[test]
fn backoff_honours_a_longer_retry_after_but_not_a_shorter_one() {
    let mut backoff = Backoff::new();
    assert_eq!(
        backoff.next_delay(Some(Duration::from_secs(45))),
        Duration::from_secs(45)
    );
    let delay = backoff.next_delay(Some(Duration::from_millis(1)));
    assert!(
        Duration::from_millis(1_600) <= delay && delay <= Duration::from_millis(2_400),
        "a shorter Retry-After does not shorten the backoff: {delay:?}"
    );
    let huge = backoff.next_delay(Some(Duration::from_secs(u64::MAX)));
    assert_eq!(huge, MAX_RETRY_AFTER, "capped");
    assert!(
        std::time::Instant::now().checked_add(huge).is_some(),
        "a deadline can be computed from it"
    );
}

#[test]
fn an_absurd_retry_after_is_honoured_only_up_to_the_longest_backoff() {
    let mut backoff = Backoff::new();
    for asked in [
        Duration::from_secs(99_999_999_999),
        Duration::from_secs(3600),
        Duration::from_secs(61),
    ] {
        let delay = backoff.next_delay(Some(asked));
        assert!(
            delay <= Duration::from_secs(60),
            "Retry-After {asked:?} held the sink {delay:?}: never past the 60 s backoff"
        );
    }
}

#[test]
fn backoff_starts_over_after_a_reset() {
    let mut backoff = Backoff::default();
    for _ in 0..10 {
        backoff.next_delay(None);
    }
    backoff.reset();
    let delay = backoff.next_delay(None);
    assert!(
        Duration::from_millis(800) <= delay && delay <= Duration::from_millis(1_200),
        "{delay:?}"
    );
}

#[test]
fn the_webhook_body_of_a_page_matches_the_readme_example() {
    let body = webhook_body_of(&transition(
        Status::Warning,
        Status::Critical,
        Some(NOW_MS - 10 * DAY_MS),
    ));
    assert_eq!(body["status"], "firing");
    assert_eq!(body["feed"], "profiles");
    assert_eq!(body["key"], "acme");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["last_seen"], "2025-11-24T00:00:00.000Z");
    assert_eq!(body["staleness_seconds"], 864_000);
    assert_eq!(
        body["summary"],
        "Feed profiles/acme has had no new data for 10d 0h (last seen 2025-11-24T00:00:00.000Z)"
    );
    assert_eq!(body["dedup_key"], "freshwatch/profiles/acme");
    assert_eq!(body["feed_status"], "critical");
    assert_eq!(body["previous_status"], "warning");
    assert_eq!(body["topic"], "cdp.profile-updates");
    assert_eq!(body["at"], "2025-12-04T00:00:00.000Z");
    assert_eq!(body["warn_after_seconds"], 1_800);
    assert_eq!(body["critical_after_seconds"], 7_200);
}

#[test]
fn the_webhook_body_of_a_warning_fires_with_warning_severity() {
    let body = webhook_body_of(&transition(
        Status::Ok,
        Status::Warning,
        Some(NOW_MS - 45 * MINUTE_MS),
    ));
    assert_eq!(body["status"], "firing");
    assert_eq!(body["severity"], "warning");
    assert_eq!(body["staleness_seconds"], 45 * 60);
}

#[test]
fn the_webhook_body_of_a_never_seen_series_has_null_last_seen_and_staleness() {
    let body = webhook_body_of(&transition(Status::Unknown, Status::NeverSeen, None));
    assert_eq!(body["status"], "firing");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["feed_status"], "never_seen");
    assert!(body["last_seen"].is_null(), "{body}");
    assert!(body["staleness_seconds"].is_null(), "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("has never been seen"),
        "{body}"
    );
}

#[test]
fn the_webhook_body_of_a_resolve_carries_the_severity_that_ended() {
    let body = webhook_body_of(&transition(Status::Critical, Status::Ok, Some(NOW_MS)));
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["feed_status"], "ok");
    assert_eq!(body["previous_status"], "critical");
    assert_eq!(body["last_seen"], "2025-12-04T00:00:00.000Z");
    assert_eq!(body["staleness_seconds"], 0);
    assert_eq!(body["dedup_key"], "freshwatch/profiles/acme");
    assert!(
        body["summary"].as_str().unwrap().contains("fresh again"),
        "{body}"
    );
}

#[test]
fn a_firing_alert_and_its_resolve_share_one_dedup_key() {
    let firing = webhook_body_of(&transition(
        Status::Ok,
        Status::Warning,
        Some(NOW_MS - HOUR_MS),
    ));
    let resolved = webhook_body_of(&transition(Status::Warning, Status::Ok, Some(NOW_MS)));
    assert_eq!(firing["dedup_key"], resolved["dedup_key"]);
}

#[test]
fn a_critical_only_sink_sees_critical_to_warning_as_the_end_of_its_incident() {
    let for_critical_sink = |from, to| {
        Notification::for_sink(
            &transition(from, to, Some(NOW_MS - HOUR_MS)),
            Severity::Critical,
        )
    };
    assert_eq!(
        for_critical_sink(Status::Ok, Status::Warning),
        None,
        "a warning is below this sink"
    );
    let trigger = for_critical_sink(Status::Warning, Status::Critical).unwrap();
    assert!(trigger.firing);
    assert_eq!(trigger.severity, Severity::Critical);
    let resolve = for_critical_sink(Status::Critical, Status::Warning)
        .expect("critical -> warning resolves the critical-only incident");
    assert!(!resolve.firing);
    assert_eq!(resolve.severity, Severity::Critical);
    assert_eq!(resolve.status.as_str(), "warning");
    assert_eq!(resolve.dedup_key, trigger.dedup_key);
    assert!(
        resolve.summary.contains("no longer critical, now warning"),
        "{}",
        resolve.summary
    );
    assert_eq!(
        for_critical_sink(Status::Warning, Status::Ok),
        None,
        "nothing was open on this sink"
    );

    // A sink that takes warnings sees the same change as a severity change, still firing.
    let downgrade = Notification::for_sink(
        &transition(Status::Critical, Status::Warning, Some(NOW_MS - HOUR_MS)),
        Severity::Warning,
    )
    .unwrap();
    assert!(downgrade.firing);
    assert_eq!(downgrade.severity, Severity::Warning);
}

#[test]
fn an_alertmanager_sink_sees_only_its_severities_and_feeds() {
    let config = |min_severity, feeds: &[&str]| AlertmanagerConfig {
        name: "alertmanager-0".into(),
        url: reqwest::Url::parse("http://127.0.0.1:9093").unwrap(),
        resend_interval: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
        min_severity,
        feeds: feeds
            .iter()
            .map(|pattern| crate::config::FeedPattern((*pattern).into()))
            .collect(),
        fallback: vec![],
        fallback_after: Duration::from_secs(120),
        system: true,
    };
    let changed = |from, to| Notice::Changed(transition(from, to, Some(NOW_MS - HOUR_MS)));
    let critical_only = config(Severity::Critical, &[]);
    assert_eq!(
        for_alertmanager(&changed(Status::Ok, Status::Warning), &critical_only),
        None
    );
    let Some(Notice::Changed(fired)) =
        for_alertmanager(&changed(Status::Warning, Status::Critical), &critical_only)
    else {
        panic!("warning -> critical fires the critical alert");
    };
    assert_eq!((fired.from, fired.to), (Status::Ok, Status::Critical));
    let Some(Notice::Changed(resolved)) =
        for_alertmanager(&changed(Status::Critical, Status::Warning), &critical_only)
    else {
        panic!("critical -> warning resolves the critical alert");
    };
    assert_eq!((resolved.from, resolved.to), (Status::Critical, Status::Ok));

    let everything = config(Severity::Warning, &[]);
    assert_eq!(
        for_alertmanager(&changed(Status::Ok, Status::Warning), &everything),
        Some(changed(Status::Ok, Status::Warning)),
        "unchanged for a sink that takes everything"
    );
    let other_team = config(Severity::Warning, &["billing/*"]);
    assert_eq!(
        for_alertmanager(&changed(Status::Ok, Status::Critical), &other_team),
        None,
        "profiles/acme is not billing's"
    );
    let source_down = Notice::System(SystemAlert {
        alertname: SOURCE_DOWN,
        severity: Severity::Critical,
        labels: vec![],
        summary: String::new(),
        firing: true,
        since_ms: NOW_MS,
    });
    assert!(for_alertmanager(&source_down, &other_team).is_some());
}

#[test]
fn retry_after_is_read_as_seconds_or_as_an_http_date() {
    let now = chrono::DateTime::parse_from_rfc3339("2025-12-04T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Thu, 04 Dec 2025 00:00:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Wed, 03 Dec 2025 23:00:00 GMT", now),
        Some(Duration::ZERO),
        "a date in the past: retry now"
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

/// A dispatcher whose sinks write their outboxes to `store` and never deliver (not leading).
fn start_dispatcher(
    config: &AlertsConfig,
    store: &crate::state::StateStore,
) -> (Dispatcher, CancellationToken, tokio::task::JoinSet<()>) {
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let context = SinkContext::new(
        "http://127.0.0.1:9187",
        store.clone(),
        crate::ha::Leadership::new("test".into(), false),
        &Metrics::default(),
        Arc::new(crate::clock::SystemClock),
    );
    let dispatcher = Dispatcher::start(config, context, shutdown.clone(), &mut tasks);
    (dispatcher, shutdown, tasks)
}

#[tokio::test]
async fn a_sink_named_as_a_fallback_gets_nothing_directly_only_what_falls_back_to_it() {
    let directory = tempfile::tempdir().unwrap();
    let store = delivery::tests::embedded_store(&directory).await;
    let mut primary = delivery::tests::sink(100);
    primary.name = "pager".into();
    primary.fallback = vec!["mail".into()];
    let mut mail = delivery::tests::sink(100);
    mail.name = "mail".into();
    let config = AlertsConfig {
        alertmanager: vec![],
        sinks: vec![primary, mail],
        watchdog: false,
    };
    let (dispatcher, shutdown, mut tasks) = start_dispatcher(&config, &store);
    dispatcher
        .dispatch(Notice::Changed(transition(
            Status::Ok,
            Status::Warning,
            Some(NOW_MS - HOUR_MS),
        )))
        .await;
    assert_eq!(store.outbox_list("pager").await.unwrap().len(), 1);
    assert!(
        store.outbox_list("mail").await.unwrap().is_empty(),
        "the fallback hears of it only after the pager's fallback_after"
    );
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}

#[tokio::test]
async fn system_and_group_alerts_reach_a_sink_routed_by_feeds_unless_it_opts_out() {
    let directory = tempfile::tempdir().unwrap();
    let store = delivery::tests::embedded_store(&directory).await;
    let mut pager = delivery::tests::sink(100);
    pager.name = "pager".into();
    pager.min_severity = Severity::Critical;
    pager.feeds = vec![crate::config::FeedPattern("profiles".into())];
    let mut quiet = pager.clone();
    quiet.name = "quiet".into();
    quiet.system = false;
    let config = AlertsConfig {
        alertmanager: vec![],
        sinks: vec![pager, quiet],
        watchdog: false,
    };
    let (dispatcher, shutdown, mut tasks) = start_dispatcher(&config, &store);
    for (alertname, severity) in [
        (FEED_BLIND, Severity::Critical),
        (crate::model::alertname::LOSS_IMMINENT, Severity::Critical),
        (crate::model::alertname::LAGGING, Severity::Warning),
    ] {
        dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname,
                severity,
                labels: vec![("feed", "billing".into())],
                summary: String::new(),
                firing: true,
                since_ms: NOW_MS,
            }))
            .await;
    }
    let delivered: Vec<String> = store
        .outbox_list("pager")
        .await
        .unwrap()
        .into_iter()
        .map(|(_, json)| {
            serde_json::from_str::<serde_json::Value>(&json).unwrap()["alertname"].to_string()
        })
        .collect();
    assert_eq!(
        delivered,
        ["\"FreshwatchFeedBlind\"", "\"DataLossImminent\""],
        "both critical alerts, whatever feeds says; the warning stays below min_severity"
    );
    assert!(store.outbox_list("quiet").await.unwrap().is_empty());
    let am = |system| AlertmanagerConfig {
        name: "alertmanager-0".into(),
        url: reqwest::Url::parse("http://127.0.0.1:9093").unwrap(),
        resend_interval: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
        min_severity: Severity::Warning,
        feeds: vec![crate::config::FeedPattern("profiles".into())],
        fallback: vec![],
        fallback_after: Duration::from_secs(120),
        system,
    };
    let blind = Notice::System(SystemAlert {
        alertname: FEED_BLIND,
        severity: Severity::Critical,
        labels: vec![("feed", "billing".into())],
        summary: String::new(),
        firing: true,
        since_ms: NOW_MS,
    });
    assert!(for_alertmanager(&blind, &am(true)).is_some());
    assert!(for_alertmanager(&blind, &am(false)).is_none());
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}

#[tokio::test]
async fn a_failed_delivery_never_carries_its_url_into_the_log() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/services/T000/B000/XOXB-SECRET?token=SECRET");
    let result = reqwest::Client::new().post(&url).send().await;
    let Delivery::Transient { error, .. } = classify_response(result, 0) else {
        panic!("a refused connection is transient");
    };
    assert!(!error.contains("SECRET"), "{error}");
    assert!(!error.contains("/services/"), "{error}");
}

/// A silence of `matchers` from an hour ago for two hours.
fn silence_from_an_hour_ago(
    id: &str,
    matchers: crate::silence::Matchers,
    now_ms: i64,
) -> crate::silence::Silence {
    crate::silence::Silence {
        id: id.into(),
        matchers,
        starts_at_ms: now_ms - HOUR_MS,
        ends_at_ms: now_ms + HOUR_MS,
        comment: "migration".into(),
        created_by: String::new(),
        allow_data_loss: false,
        end_handled: false,
        held_by: None,
    }
}

#[tokio::test]
async fn a_feeds_silence_holds_its_volume_drop_and_a_groups_holds_only_resolves_that_began_inside()
{
    let directory = tempfile::tempdir().unwrap();
    let store = delivery::tests::embedded_store(&directory).await;
    let mut pager = delivery::tests::sink(100);
    pager.name = "pager".into();
    let config = AlertsConfig {
        alertmanager: vec![],
        sinks: vec![pager],
        watchdog: false,
    };
    let (dispatcher, shutdown, mut tasks) = start_dispatcher(&config, &store);
    let now_ms = chrono::Utc::now().timestamp_millis();
    dispatcher.silences.insert(silence_from_an_hour_ago(
        "feed",
        crate::silence::Matchers {
            feed: Some("profiles".into()),
            ..Default::default()
        },
        now_ms,
    ));
    dispatcher.silences.insert(silence_from_an_hour_ago(
        "group",
        crate::silence::Matchers {
            group: Some("cdp".into()),
            ..Default::default()
        },
        now_ms,
    ));
    let volume_drop = |feed: &str| {
        Notice::System(SystemAlert {
            alertname: FEED_VOLUME_DROP,
            severity: Severity::Warning,
            labels: vec![("feed", feed.into())],
            summary: String::new(),
            firing: true,
            since_ms: now_ms - 10 * 60_000,
        })
    };
    let lagging_resolved = |topic: &str, began_ms: i64| {
        Notice::System(SystemAlert {
            alertname: crate::groups::LAGGING,
            severity: Severity::Warning,
            labels: vec![("group", "cdp".into()), ("topic", topic.into())],
            summary: String::new(),
            firing: false,
            since_ms: began_ms,
        })
    };
    for notice in [
        volume_drop("profiles"),
        volume_drop("billing"),
        lagging_resolved("paged-before", now_ms - 2 * HOUR_MS),
        lagging_resolved("began-inside", now_ms - 30 * 60_000),
    ] {
        dispatcher.dispatch(notice).await;
    }
    let delivered: Vec<String> = store
        .outbox_list("pager")
        .await
        .unwrap()
        .into_iter()
        .map(|(_, json)| {
            let notification: Notification = serde_json::from_str(&json).unwrap();
            notification.dedup_key
        })
        .collect();
    assert_eq!(
        delivered,
        [
            "freshwatch/system/FeedVolumeDrop/billing",
            "freshwatch/system/ConsumerGroupLagging/cdp/paged-before",
        ],
        "profiles' drop is held by its feed's silence; the resolve of a group alert paged before \
         the silence goes out, that of one which began inside is held"
    );
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}
