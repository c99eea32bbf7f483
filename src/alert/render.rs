//! What each notification sink sends: the webhook body (and its signature), the PagerDuty
//! Events API v2 event, the Slack message and the email. Pure functions, so payload shapes are
//! tested without a server.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::notification::Notification;
use crate::clock::{human_duration_ms, rfc3339};

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
        "previous_status": notification.previous_status,
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
pub fn slack_message(notification: &Notification) -> Value {
    let (emoji, color) = match (notification.firing, notification.severity.as_str()) {
        (false, _) => (":white_check_mark:", "#2eb67d"),
        (true, "critical") => (":rotating_light:", "#e01e5a"),
        (true, _) => (":warning:", "#ecb22e"),
    };
    let headline = if notification.firing {
        format!(
            "{emoji} *{}* {}{}",
            notification.severity.to_uppercase(),
            notification.subject(),
            if notification.repeat {
                " (still firing)"
            } else {
                ""
            }
        )
    } else {
        format!(
            "{emoji} *RESOLVED* {} (stale for {})",
            notification.subject(),
            human_duration_ms(notification.firing_for_ms.unwrap_or_default())
        )
    };
    json!({
        "text": format!("{headline}\n{}", notification.summary),
        "attachments": [{
            "color": color,
            "fields": [
                {"title": "Feed", "value": notification.feed, "short": true},
                {"title": "Key", "value": if notification.key.is_empty() { "-" } else { notification.key.as_str() }, "short": true},
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
        notification.previous_status,
        notification.last_seen_ms.map(rfc3339).unwrap_or_else(|| "never".into()),
        human_duration_ms(notification.warn_after_ms),
        human_duration_ms(notification.critical_after_ms),
        notification.dedup_key,
    );
    (subject, body)
}
