use std::sync::Arc;
use std::time::Duration;

use super::*;

const DAY_MS: i64 = 86_400_000;
const NOW_MS: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

fn transition(from: Status, to: Status, last_seen_ms: Option<i64>) -> Transition {
    Transition {
        feed: Arc::from("profiles"),
        key: "acme".into(),
        split: true,
        topic: "cdp.profile-updates".into(),
        from,
        to,
        at_ms: NOW_MS,
        from_since_ms: NOW_MS - 3 * 3_600_000,
        last_seen_ms,
        staleness_ms: last_seen_ms.map(|seen| NOW_MS - seen),
        warn_after_ms: 1_800_000,
        critical_after_ms: 7_200_000,
        records: 12,
    }
}

#[test]
fn dedup_keys_are_stable_distinct_and_short_enough_for_pagerduty() {
    assert_eq!(dedup_key("profiles", "acme"), "freshwatch/profiles/acme");
    assert_eq!(dedup_key("profiles", "acme"), dedup_key("profiles", "acme"));
    assert_ne!(
        dedup_key("profiles", "acme"),
        dedup_key("profiles", "globex")
    );
    let long = "k".repeat(1000);
    let hashed = dedup_key("profiles", &long);
    assert!(hashed.len() <= 255 && hashed.starts_with("freshwatch/profiles/sha256:"));
    assert_eq!(hashed, dedup_key("profiles", &long));
    assert_ne!(hashed, dedup_key("profiles", &"j".repeat(1000)));
}

#[test]
fn summaries_say_what_on_call_needs() {
    let stale = summary(&transition(
        Status::Warning,
        Status::Critical,
        Some(NOW_MS - 10 * DAY_MS),
    ));
    assert_eq!(
        stale,
        "Feed profiles/acme has had no new data for 10d 0h (last seen 2025-11-21T00:00:00.000Z)"
    );
    let never = summary(&transition(Status::Unknown, Status::NeverSeen, None));
    assert!(
        never.contains("profiles/acme has never been seen"),
        "{never}"
    );
    let resolved = summary(&transition(Status::Critical, Status::Ok, Some(NOW_MS)));
    assert!(
        resolved.contains("fresh again (was critical for 3h 0m"),
        "{resolved}"
    );
}

#[test]
fn only_severity_changes_notify_and_a_resolve_carries_the_old_severity() {
    let cases = [
        (Status::Ok, Status::Warning, true),
        (Status::Warning, Status::Critical, true),
        (Status::Critical, Status::NeverSeen, false),
        (Status::Unknown, Status::Ok, false),
        (Status::Critical, Status::Ok, true),
    ];
    for (from, to, notifiable) in cases {
        assert_eq!(
            is_notifiable(&transition(from, to, Some(NOW_MS))),
            notifiable,
            "{from} -> {to}"
        );
    }
    let resolve = transition(Status::Critical, Status::Ok, Some(NOW_MS));
    assert_eq!(notice_severity(&resolve), Some(Severity::Critical));
}

#[test]
fn backoff_grows_caps_honours_retry_after_and_resets() {
    let mut backoff = Backoff::new();
    let first = backoff.next_delay(None);
    assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
    let mut last = first;
    for _ in 0..10 {
        last = backoff.next_delay(None);
    }
    assert!(
        last >= Duration::from_secs(48) && last <= Duration::from_secs(72),
        "{last:?}"
    );
    assert_eq!(
        backoff.next_delay(Some(Duration::from_secs(300))),
        Duration::from_secs(300)
    );
    backoff.reset();
    assert!(backoff.next_delay(None) <= Duration::from_millis(1200));
}

fn webhook(transition: &Transition) -> serde_json::Value {
    render::webhook_body(&Notification::from_transition(transition).expect("notifiable"))
}

#[test]
fn the_webhook_body_has_every_contract_field() {
    let firing = webhook(&transition(
        Status::Warning,
        Status::Critical,
        Some(NOW_MS - DAY_MS),
    ));
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["feed"], "profiles");
    assert_eq!(firing["key"], "acme");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["last_seen"], "2025-11-30T00:00:00.000Z");
    assert_eq!(firing["staleness_seconds"], 86_400);
    assert_eq!(firing["dedup_key"], "freshwatch/profiles/acme");
    assert!(firing["summary"].as_str().unwrap().contains("1d 0h"));
    let never = webhook(&transition(Status::Unknown, Status::NeverSeen, None));
    assert!(never["last_seen"].is_null() && never["staleness_seconds"].is_null());
    let resolved = webhook(&transition(Status::Critical, Status::Ok, Some(NOW_MS)));
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["severity"], "critical");
}

#[test]
fn the_webhook_signature_is_hmac_sha256_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        render::signature("Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn a_pagerduty_event_has_every_events_v2_field() {
    let mut firing = Notification::from_transition(&transition(
        Status::Warning,
        Status::Critical,
        Some(NOW_MS - 10 * DAY_MS),
    ))
    .unwrap();
    firing.summary = "x".repeat(2000);
    let event = render::pagerduty_event(
        &firing,
        "R0UT1NG",
        "freshwatch@host:9187",
        "http://host:9187/api/v1/feeds/profiles",
    );
    assert_eq!(event["routing_key"], "R0UT1NG");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], "freshwatch/profiles/acme");
    let payload = &event["payload"];
    assert!(payload["summary"].as_str().unwrap().len() <= 1024);
    assert_eq!(payload["source"], "freshwatch@host:9187");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["component"], "profiles");
    assert_eq!(payload["group"], "cdp.profile-updates");
    let details = &payload["custom_details"];
    assert_eq!(details["last_seen"], "2025-11-21T00:00:00.000Z");
    assert_eq!(details["staleness_seconds"], 864_000);
    assert_eq!(details["warn_after_seconds"], 1800);
    assert_eq!(details["critical_after_seconds"], 7200);
    assert_eq!(details["records_seen"], 12);
    assert_eq!(
        event["links"][0]["href"],
        "http://host:9187/api/v1/feeds/profiles"
    );
    let resolve = render::pagerduty_event(
        &Notification::from_transition(&transition(Status::Critical, Status::Ok, Some(NOW_MS)))
            .unwrap(),
        "R0UT1NG",
        "s",
        "l",
    );
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], "freshwatch/profiles/acme");
}

#[test]
fn slack_and_email_read_well_for_firing_and_resolved() {
    let firing = Notification::from_transition(&transition(
        Status::Ok,
        Status::Critical,
        Some(NOW_MS - DAY_MS),
    ))
    .unwrap();
    let message = render::slack_message(&firing);
    assert!(message["text"]
        .as_str()
        .unwrap()
        .starts_with(":rotating_light: *CRITICAL* profiles/acme"));
    assert_eq!(message["attachments"][0]["color"], "#e01e5a");
    let resolved =
        Notification::from_transition(&transition(Status::Critical, Status::Ok, Some(NOW_MS)))
            .unwrap();
    let message = render::slack_message(&resolved);
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("*RESOLVED* profiles/acme (stale for 3h 0m)"),
        "{message}"
    );
    let (subject, body) = render::email(&firing);
    assert_eq!(subject, "[freshwatch] FIRING critical: profiles/acme");
    assert!(body.contains("dedup key: freshwatch/profiles/acme"));
}

#[test]
fn notifications_survive_the_outbox_round_trip() {
    let firing =
        Notification::from_transition(&transition(Status::Ok, Status::Warning, Some(NOW_MS)))
            .unwrap();
    let json = serde_json::to_string(&firing).unwrap();
    assert_eq!(serde_json::from_str::<Notification>(&json).unwrap(), firing);
    assert!(
        Notification::from_transition(&transition(Status::Unknown, Status::Ok, Some(NOW_MS)))
            .is_none()
    );
}
