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

#[test]
fn the_webhook_body_has_every_contract_field() {
    let firing = webhook::payload(&transition(
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
    let never = webhook::payload(&transition(Status::Unknown, Status::NeverSeen, None));
    assert!(never["last_seen"].is_null() && never["staleness_seconds"].is_null());
    let resolved = webhook::payload(&transition(Status::Critical, Status::Ok, Some(NOW_MS)));
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["severity"], "critical");
}
