//! A notification as it is stored in the outbox and rendered by each sink.
//!
//! It carries everything a sink needs, copied at the moment of the status change, so an entry
//! that waited in the outbox through a restart renders exactly as it would have then.

use serde::{Deserialize, Serialize};

use super::{dedup_key, is_notifiable, summary, SystemAlert, FEED_STALE};
use crate::evaluate::Transition;
use crate::model::Severity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `true` opens or updates an incident, `false` resolves it.
    pub firing: bool,
    pub alertname: String,
    pub feed: String,
    pub key: String,
    pub split: bool,
    pub topic: String,
    /// `warning` or `critical`: the new severity, or the one that ended on a resolve.
    pub severity: String,
    /// The status entered (`critical`, `never_seen`, `ok`, ...).
    pub status: String,
    pub previous_status: String,
    pub summary: String,
    pub dedup_key: String,
    pub last_seen_ms: Option<i64>,
    pub staleness_ms: Option<i64>,
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    pub records: u64,
    /// When the status changed, unix ms; latency is measured from here.
    pub changed_at_ms: i64,
    /// On a resolve: how long the alert had been firing.
    pub firing_for_ms: Option<i64>,
    /// A re-notification of a still-firing alert (`repeat_interval`).
    pub repeat: bool,
}

impl Notification {
    /// `None` when the transition does not start, change or end an alert.
    pub fn from_transition(transition: &Transition) -> Option<Notification> {
        Notification::for_sink(transition, Severity::Warning)
    }

    /// What `transition` means to a sink that pages from `min_severity` up, `None` when nothing.
    /// For a critical-only sink, critical → warning ends its incident: it gets a resolve, or its
    /// incident would stay open after the feed recovered through warning.
    pub fn for_sink(transition: &Transition, min_severity: Severity) -> Option<Notification> {
        if !is_notifiable(transition) {
            return None;
        }
        let wanted = |status: crate::model::Status| {
            status
                .severity()
                .filter(|severity| *severity >= min_severity)
        };
        let (was, now) = (wanted(transition.from), wanted(transition.to));
        let firing = now.is_some();
        let severity = match (was, now) {
            (None, None) => return None,
            (_, Some(severity)) | (Some(severity), None) => severity,
        };
        let summary = match (firing, transition.to.severity()) {
            // Resolved for this sink, yet still alerting below its threshold.
            (false, Some(below)) => format!(
                "{} (no longer {}, now {})",
                summary(transition),
                severity.as_str(),
                below.as_str()
            ),
            _ => summary(transition),
        };
        Some(Notification {
            firing,
            alertname: FEED_STALE.to_owned(),
            feed: transition.feed.to_string(),
            key: transition.key.clone(),
            split: transition.split,
            topic: transition.topic.clone(),
            severity: severity.as_str().to_owned(),
            status: transition.to.as_str().to_owned(),
            previous_status: transition.from.as_str().to_owned(),
            summary,
            dedup_key: dedup_key(&transition.feed, &transition.key),
            last_seen_ms: transition.last_seen_ms,
            staleness_ms: transition.staleness_ms,
            warn_after_ms: transition.warn_after_ms,
            critical_after_ms: transition.critical_after_ms,
            records: transition.records,
            changed_at_ms: transition.at_ms,
            firing_for_ms: (!firing).then(|| transition.at_ms - transition.alert_since_ms),
            repeat: false,
        })
    }

    pub fn from_system(alert: &SystemAlert) -> Notification {
        let feed = alert
            .labels
            .iter()
            .find(|(name, _)| *name == "feed")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        Notification {
            firing: alert.firing,
            alertname: alert.alertname.to_owned(),
            feed,
            key: String::new(),
            split: false,
            topic: String::new(),
            severity: alert.severity.as_str().to_owned(),
            status: if alert.firing { "firing" } else { "resolved" }.to_owned(),
            previous_status: String::new(),
            summary: alert.summary.clone(),
            dedup_key: alert.dedup_key(),
            last_seen_ms: None,
            staleness_ms: None,
            warn_after_ms: 0,
            critical_after_ms: 0,
            records: 0,
            changed_at_ms: alert.since_ms,
            firing_for_ms: None,
            repeat: false,
        }
    }

    pub fn severity(&self) -> Severity {
        if self.severity == "critical" {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    /// `profiles/acme`, `orders`, or the alert name for freshwatch's own alerts.
    pub fn subject(&self) -> String {
        match (self.feed.is_empty(), self.split) {
            (true, _) => self.alertname.clone(),
            (false, true) => format!("{}/{}", self.feed, self.key),
            (false, false) => self.feed.clone(),
        }
    }
}
