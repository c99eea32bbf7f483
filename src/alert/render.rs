//! What each notification sink sends: the webhook body (and its signature), the PagerDuty
//! Events API v2 event, the Slack message and the email. Pure functions, so payload shapes are
//! tested without a server.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::notification::Notification;
use crate::clock::{human_duration_ms, rfc3339};
use crate::model::Severity;

/// Header carrying the webhook body's HMAC-SHA256, as `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Freshwatch-Signature";

/// The generic webhook body (the contract fields first).
pub fn webhook_body(notification: &Notification) -> Value {
    json!({
        "status": if notification.firing { "firing" } else { "resolved" },
        "feed": notification.feed,
        "key": notification.key,
        "severity": notification.severity,
        "last_seen": notification.last_seen_ms.map(rfc3339),
        "staleness_seconds": notification.staleness_ms.map(|millis| millis / 1000),
        "summary": notification.summary,
        "dedup_key": notification.dedup_key,
        "alertname": notification.alertname,
        "feed_status": notification.status,
        "previous_status": notification.previous_status_text(),
        "topic": notification.topic,
        "at": rfc3339(notification.changed_at_ms),
        "warn_after_seconds": notification.warn_after_ms / 1000,
        "critical_after_seconds": notification.critical_after_ms / 1000,
        "repeat": notification.repeat,
    })
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// Cuts `text` to at most `limit` bytes on a character boundary, marking the cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A PagerDuty Events API v2 event.
pub fn pagerduty_event(
    notification: &Notification,
    routing_key: &str,
    source: &str,
    feed_url: &str,
) -> Value {
    if !notification.firing {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": notification.dedup_key,
        });
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notification.dedup_key,
        "payload": {
            "summary": truncate(&notification.summary, 1024),
            "source": source,
            "severity": notification.severity,
            "component": notification.feed,
            "group": notification.topic,
            "class": notification.alertname,
            "custom_details": {
                "key": notification.key,
                "status": notification.status,
                "last_seen": notification.last_seen_ms.map(rfc3339),
                "staleness_seconds": notification.staleness_ms.map(|millis| millis / 1000),
                "warn_after_seconds": notification.warn_after_ms / 1000,
                "critical_after_seconds": notification.critical_after_ms / 1000,
                "records_seen": notification.records,
            },
        },
        "links": [{"href": feed_url, "text": format!("freshwatch: {}", notification.subject())}],
    })
}

/// One readable Slack message, coloured by severity.
/// Slack reads `<...>` as links and mentions (`<!channel>` pings everyone) and `&` as an
/// entity: record-derived text is escaped as Slack asks, so a split value cannot ping a channel.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn slack_message(notification: &Notification) -> Value {
    let (emoji, color) = match (notification.firing, notification.severity) {
        (false, _) => (":white_check_mark:", "#2eb67d"),
        (true, Severity::Critical) => (":rotating_light:", "#e01e5a"),
        (true, _) => (":warning:", "#ecb22e"),
    };
    let headline = if notification.firing {
        format!(
            "{emoji} *{}* {}{}",
            notification.severity.as_str().to_uppercase(),
            notification.subject(),
            if notification.repeat {
                " (still firing)"
            } else {
                ""
            }
        )
    } else {
        format!(
            "{emoji} *RESOLVED* {} (alerting for {}, last {})",
            notification.subject(),
            human_duration_ms(notification.firing_for_ms.unwrap_or_default()),
            notification.previous_status_text()
        )
    };
    json!({
        "text": slack_escape(&format!("{headline}\n{}", notification.summary)),
        "attachments": [{
            "color": color,
            "fields": [
                {"title": "Feed", "value": slack_escape(&notification.feed), "short": true},
                {"title": "Key", "value": if notification.key.is_empty() { "-".to_owned() } else { slack_escape(&notification.key) }, "short": true},
                {"title": "Last seen", "value": notification.last_seen_ms.map(rfc3339).unwrap_or_else(|| "never".into()), "short": true},
                {"title": "Topic", "value": notification.topic, "short": true},
            ],
        }],
    })
}

/// Subject and plain-text body of an email.
pub fn email(notification: &Notification) -> (String, String) {
    let state = if notification.firing {
        format!("FIRING {}", notification.severity)
    } else {
        "RESOLVED".to_owned()
    };
    let subject = format!("[freshwatch] {state}: {}", notification.subject());
    let body = format!(
        "{}\n\nfeed: {}\nkey: {}\ntopic: {}\nstatus: {} (was {})\nlast seen: {}\nthresholds: warn after {}, critical after {}\ndedup key: {}\n",
        notification.summary,
        notification.feed,
        notification.key,
        notification.topic,
        notification.status,
        notification.previous_status_text(),
        notification.last_seen_ms.map(rfc3339).unwrap_or_else(|| "never".into()),
        human_duration_ms(notification.warn_after_ms),
        human_duration_ms(notification.critical_after_ms),
        notification.dedup_key,
    );
    (subject, body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::evaluate::Transition;
    use crate::model::Status;

    const DAY_MS: i64 = 86_400_000;
    const NOW_MS: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

    fn notification(from: Status, to: Status, last_seen_ms: Option<i64>) -> Notification {
        Notification::from_transition(&Transition {
            feed: Arc::from("profiles"),
            key: "acme".into(),
            split: true,
            topic: "cdp.profile-updates".into(),
            from,
            to,
            at_ms: NOW_MS,
            from_since_ms: NOW_MS - 3 * 3_600_000,
            alert_since_ms: NOW_MS - 4 * 3_600_000,
            last_seen_ms,
            staleness_ms: last_seen_ms.map(|seen| NOW_MS - seen),
            warn_after_ms: 1_800_000,
            critical_after_ms: 7_200_000,
            records: 12,
            context: None,
        })
        .expect("notifiable")
    }

    #[test]
    fn the_webhook_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_pagerduty_trigger_has_every_events_v2_field_and_a_bounded_summary() {
        let mut firing = notification(
            Status::Warning,
            Status::Critical,
            Some(NOW_MS - 10 * DAY_MS),
        );
        firing.summary = "é".repeat(2000);
        let event = pagerduty_event(
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
    }

    #[test]
    fn a_pagerduty_resolve_names_only_the_incident() {
        let resolve = pagerduty_event(
            &notification(Status::Critical, Status::Ok, Some(NOW_MS)),
            "R0UT1NG",
            "s",
            "l",
        );
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], "freshwatch/profiles/acme");
        assert!(resolve.get("payload").is_none());
    }

    #[test]
    fn slack_and_email_read_well_firing_and_resolved() {
        let firing = notification(Status::Ok, Status::Critical, Some(NOW_MS - DAY_MS));
        let message = slack_message(&firing);
        assert!(message["text"]
            .as_str()
            .unwrap()
            .starts_with(":rotating_light: *CRITICAL* profiles/acme"));
        assert_eq!(message["attachments"][0]["color"], "#e01e5a");
        let resolved = slack_message(&notification(Status::Critical, Status::Ok, Some(NOW_MS)));
        assert!(
            resolved["text"]
                .as_str()
                .unwrap()
                .contains("*RESOLVED* profiles/acme (alerting for 4h 0m, last critical)"),
            "{resolved}"
        );
        let (subject, body) = email(&firing);
        assert_eq!(subject, "[freshwatch] FIRING critical: profiles/acme");
        assert!(body.contains("dedup key: freshwatch/profiles/acme"));
    }

    #[test]
    fn a_notification_survives_the_outbox_round_trip() {
        let firing = notification(Status::Ok, Status::Warning, Some(NOW_MS));
        let json = serde_json::to_string(&firing).unwrap();
        assert_eq!(serde_json::from_str::<Notification>(&json).unwrap(), firing);
    }

    #[test]
    fn a_split_value_cannot_ping_a_slack_channel() {
        let mut notification = Notification::from_transition(&crate::alert::tests::transition(
            crate::model::Status::Ok,
            crate::model::Status::Critical,
            Some(0),
        ))
        .unwrap();
        notification.key = "<!channel> & <https://evil|click>".into();
        notification.summary = format!("Feed profiles/{} is stale", notification.key);
        let message = slack_message(&notification).to_string();
        assert!(!message.contains("<!channel>"), "{message}");
        assert!(message.contains("&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"));
    }
}
