//! A notification as it is stored in the outbox and rendered by each sink.
//!
//! It carries everything a sink needs, copied at the moment of the status change, so an entry
//! that waited in the outbox through a restart renders exactly as it would have then.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{dedup_key, is_notifiable, summary, SystemAlert, FEED_STALE};
use crate::evaluate::Transition;
use crate::model::{Severity, Status};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `true` opens or updates an incident, `false` resolves it.
    pub firing: bool,
    pub alertname: String,
    pub feed: String,
    pub key: String,
    pub split: bool,
    pub topic: String,
    /// The new severity, or the one that ended on a resolve.
    pub severity: Severity,
    /// The status entered (`critical`, `never_seen`, `ok`, ...).
    pub status: NotificationStatus,
    /// The status left; `None` (stored as `""`) for freshwatch's own alerts.
    #[serde(with = "status_or_empty")]
    pub previous_status: Option<Status>,
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
            severity,
            status: NotificationStatus::Series(transition.to),
            previous_status: Some(transition.from),
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

    /// What a feed's roll-up means to a sink that pages from `min_severity` up, `None` when
    /// nothing. A reminder (`previous == severity`, after a restart) comes back as firing.
    pub fn from_rollup(
        rollup: &crate::rollup::RollUpNotice,
        min_severity: Severity,
    ) -> Option<Notification> {
        let wanted =
            |severity: Option<Severity>| severity.filter(|severity| *severity >= min_severity);
        let (was, now) = (wanted(rollup.previous), wanted(rollup.severity));
        let severity = match (was, now) {
            (None, None) => return None,
            (Some(was), Some(now)) if was == now && rollup.previous != rollup.severity => {
                return None
            }
            (_, Some(severity)) | (Some(severity), None) => severity,
        };
        let firing = now.is_some();
        let status_of = |severity: Option<Severity>| match severity {
            Some(Severity::Critical) => Status::Critical,
            Some(Severity::Warning) => Status::Warning,
            None => Status::Ok,
        };
        Some(Notification {
            firing,
            alertname: FEED_STALE.to_owned(),
            feed: rollup.feed.to_string(),
            key: String::new(),
            split: true,
            topic: rollup.topic.clone(),
            severity,
            status: NotificationStatus::Series(status_of(now)),
            previous_status: Some(status_of(was)),
            summary: rollup.summary(),
            dedup_key: rollup.dedup_key(),
            last_seen_ms: None,
            staleness_ms: None,
            warn_after_ms: rollup.warn_after_ms,
            critical_after_ms: rollup.critical_after_ms,
            records: 0,
            changed_at_ms: rollup.at_ms,
            firing_for_ms: (!firing).then(|| rollup.at_ms - rollup.opened_at_ms),
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
            severity: alert.severity,
            status: if alert.firing {
                NotificationStatus::Firing
            } else {
                NotificationStatus::Resolved
            },
            previous_status: None,
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

    /// The status left as rendered text: empty for freshwatch's own alerts.
    pub fn previous_status_text(&self) -> &'static str {
        self.previous_status.map_or("", Status::as_str)
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

/// What a notification's subject entered: a series' status, or, for freshwatch's own alerts,
/// just firing or resolved. Stored as the strings the outbox has always held (`"never_seen"`,
/// `"firing"`), so entries written by an older version still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    Series(Status),
    Firing,
    Resolved,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Series(status) => status.as_str(),
            NotificationStatus::Firing => "firing",
            NotificationStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationStatus> {
        match text {
            "firing" => Some(NotificationStatus::Firing),
            "resolved" => Some(NotificationStatus::Resolved),
            _ => Status::parse(text).map(NotificationStatus::Series),
        }
    }
}

impl fmt::Display for NotificationStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Serialize for NotificationStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NotificationStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NotificationStatus::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown notification status {text:?}"))
        })
    }
}

/// `previous_status` as stored: a status name, or `""` when there is none.
mod status_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::Status;

    pub fn serialize<S: Serializer>(
        status: &Option<Status>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(status.map_or("", Status::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Status>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        Status::parse(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly as the version with string fields wrote them to the outbox.
    const OLD_FEED_ENTRY: &str = r#"{"firing":true,"alertname":"FeedStale","feed":"profiles","key":"acme","split":true,"topic":"cdp.profile-updates","severity":"critical","status":"never_seen","previous_status":"warning","summary":"Feed profiles/acme has never been seen","dedup_key":"freshwatch/profiles/acme","last_seen_ms":null,"staleness_ms":null,"warn_after_ms":1800000,"critical_after_ms":7200000,"records":0,"changed_at_ms":1764547200000,"firing_for_ms":null,"repeat":false}"#;
    const OLD_SYSTEM_ENTRY: &str = r#"{"firing":false,"alertname":"FreshwatchFeedBlind","feed":"orders","key":"","split":false,"topic":"","severity":"warning","status":"resolved","previous_status":"","summary":"blind","dedup_key":"freshwatch/system/FreshwatchFeedBlind/orders","last_seen_ms":null,"staleness_ms":null,"warn_after_ms":0,"critical_after_ms":0,"records":0,"changed_at_ms":5,"firing_for_ms":null,"repeat":true}"#;

    #[test]
    fn outbox_entries_written_by_the_string_version_still_load_and_store_the_same() {
        let feed: Notification = serde_json::from_str(OLD_FEED_ENTRY).unwrap();
        assert_eq!(feed.severity, Severity::Critical);
        assert_eq!(feed.status, NotificationStatus::Series(Status::NeverSeen));
        assert_eq!(feed.previous_status, Some(Status::Warning));
        let system: Notification = serde_json::from_str(OLD_SYSTEM_ENTRY).unwrap();
        assert_eq!(system.severity, Severity::Warning);
        assert_eq!(system.status, NotificationStatus::Resolved);
        assert_eq!(system.previous_status, None);
        for (entry, loaded) in [(OLD_FEED_ENTRY, feed), (OLD_SYSTEM_ENTRY, system)] {
            assert_eq!(
                serde_json::to_string(&loaded).unwrap(),
                entry,
                "stored byte for byte as before"
            );
        }
    }

    #[test]
    fn every_status_name_round_trips() {
        let statuses = Status::ALL
            .into_iter()
            .map(NotificationStatus::Series)
            .chain([NotificationStatus::Firing, NotificationStatus::Resolved]);
        for status in statuses {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<NotificationStatus>(&json).unwrap(),
                status
            );
        }
        assert!(serde_json::from_str::<NotificationStatus>("\"stale\"").is_err());
    }
}
