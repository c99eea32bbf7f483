//! What a backtest prints: each alert that would have fired, and totals per feed and severity.
//!
//! The JSON shape (`--format json`), one document:
//!
//! ```text
//! {
//!   "window": {"start": RFC 3339, "end": RFC 3339, "start_ms": int, "end_ms": int},
//!   "read": {"partitions": int, "partitions_from_beginning": int, "records": int,
//!            "records_before_window": int, "record_errors": int},
//!   "alerts": [{"feed": str, "key": str ("" for an unsplit feed), "severity": "warning"|"critical",
//!               "status": "warning"|"critical"|"never_seen",
//!               "start": RFC 3339, "start_ms": int,
//!               "end": RFC 3339|null, "end_ms": int|null,    (null: still firing at the end)
//!               "still_firing": bool, "duration_ms": int}],  (to the window's end if firing)
//!   "volume_drops": [{"feed": str, "key": str ("" for the feed as a whole),
//!                     "below_since": RFC 3339, "below_since_ms": int,
//!                     "start": RFC 3339, "start_ms": int, (the tick that pages it)
//!                     "end": RFC 3339|null, "end_ms": int|null,
//!                     "still_firing": bool, "duration_ms": int, "summary": str}],
//!   "totals": {"alerts": int, "volume_drops": int, "alerting_ms": int,
//!              "by_feed": [{"feed": str, "severity": str, "alerts": int, "alerting_ms": int}]}
//! }
//! ```
//!
//! Alerts and volume drops are listed by feed (config order), then key, then start; `by_feed` has a row for every
//! feed and both severities, zeros included.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::clock::{human_duration_ms, rfc3339};
use crate::config::FeedConfig;
use crate::model::{Severity, Status};

use super::Window;

/// One alert that would have fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub feed: Arc<str>,
    pub key: String,
    pub severity: Severity,
    /// The status it started with (`never_seen` pages critical too).
    pub status: Status,
    pub start_ms: i64,
    /// `None`: still firing at the window's end.
    pub end_ms: Option<i64>,
}

impl Alert {
    /// How long it fired within the window.
    pub fn duration_ms(&self, window: Window) -> i64 {
        self.end_ms.unwrap_or(window.end_ms) - self.start_ms
    }
}

/// One `FeedVolumeDrop` that would have fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDrop {
    pub feed: Arc<str>,
    /// `""` for the feed as a whole; a split value with `volume_by_key`.
    pub key: String,
    /// When the rate fell below its threshold (the alert's `since`).
    pub below_since_ms: i64,
    /// The tick that would have paged it (`volume_for` after `below_since_ms`).
    pub start_ms: i64,
    /// The tick that would have resolved it; `None`: still firing at the window's end.
    pub end_ms: Option<i64>,
    /// The page's summary: the rate against the expected one.
    pub summary: String,
}

impl VolumeDrop {
    /// How long it fired within the window.
    pub fn duration_ms(&self, window: Window) -> i64 {
        self.end_ms.unwrap_or(window.end_ms) - self.start_ms
    }
}

/// How much was read, for the reader of the report to trust it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub partitions: usize,
    /// Partitions read from their beginning, because the brokers could not find an offset by time.
    pub partitions_from_beginning: usize,
    /// Records read within the window.
    pub records: u64,
    /// Records read and skipped because their Kafka timestamp is before the window.
    pub records_before_window: u64,
    /// Records whose split value or event time could not be extracted (per feed that reads them).
    pub record_errors: u64,
}

/// Alerts and totals over one feed and severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    pub feed: Arc<str>,
    pub severity: Severity,
    pub alerts: usize,
    pub alerting_ms: i64,
}

/// A finished backtest.
#[derive(Debug, Clone)]
pub struct Report {
    pub window: Window,
    pub read: ReadSummary,
    /// By feed (config order), key, start.
    pub alerts: Vec<Alert>,
    pub totals: Vec<Total>,
    /// `FeedVolumeDrop`s, by feed (config order), key, start.
    pub volume_drops: Vec<VolumeDrop>,
}

impl Report {
    pub fn new(
        feeds: &[FeedConfig],
        window: Window,
        read: ReadSummary,
        mut alerts: Vec<Alert>,
        mut volume_drops: Vec<VolumeDrop>,
    ) -> Self {
        let feed_order = |name: &str| feeds.iter().position(|feed| &*feed.name == name);
        alerts.sort_by(|left, right| {
            (feed_order(&left.feed), &left.key, left.start_ms).cmp(&(
                feed_order(&right.feed),
                &right.key,
                right.start_ms,
            ))
        });
        volume_drops.sort_by(|left, right| {
            (feed_order(&left.feed), &left.key, left.start_ms).cmp(&(
                feed_order(&right.feed),
                &right.key,
                right.start_ms,
            ))
        });
        let totals = feeds
            .iter()
            .flat_map(|feed| {
                [Severity::Warning, Severity::Critical]
                    .map(|severity| total(&feed.name, severity, &alerts, window))
            })
            .collect();
        Report {
            window,
            read,
            alerts,
            totals,
            volume_drops,
        }
    }

    pub fn to_json(&self) -> Value {
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|alert| {
                json!({
                    "feed": &*alert.feed,
                    "key": alert.key,
                    "severity": alert.severity,
                    "status": alert.status.as_str(),
                    "start": rfc3339(alert.start_ms),
                    "start_ms": alert.start_ms,
                    "end": alert.end_ms.map(rfc3339),
                    "end_ms": alert.end_ms,
                    "still_firing": alert.end_ms.is_none(),
                    "duration_ms": alert.duration_ms(self.window),
                })
            })
            .collect();
        let by_feed: Vec<Value> = self
            .totals
            .iter()
            .map(|total| {
                json!({
                    "feed": &*total.feed,
                    "severity": total.severity,
                    "alerts": total.alerts,
                    "alerting_ms": total.alerting_ms,
                })
            })
            .collect();
        let volume_drops: Vec<Value> = self
            .volume_drops
            .iter()
            .map(|drop| {
                json!({
                    "feed": &*drop.feed,
                    "key": drop.key,
                    "below_since": rfc3339(drop.below_since_ms),
                    "below_since_ms": drop.below_since_ms,
                    "start": rfc3339(drop.start_ms),
                    "start_ms": drop.start_ms,
                    "end": drop.end_ms.map(rfc3339),
                    "end_ms": drop.end_ms,
                    "still_firing": drop.end_ms.is_none(),
                    "duration_ms": drop.duration_ms(self.window),
                    "summary": drop.summary,
                })
            })
            .collect();
        json!({
            "window": {
                "start": rfc3339(self.window.start_ms),
                "end": rfc3339(self.window.end_ms),
                "start_ms": self.window.start_ms,
                "end_ms": self.window.end_ms,
            },
            "read": {
                "partitions": self.read.partitions,
                "partitions_from_beginning": self.read.partitions_from_beginning,
                "records": self.read.records,
                "records_before_window": self.read.records_before_window,
                "record_errors": self.read.record_errors,
            },
            "alerts": alerts,
            "volume_drops": volume_drops,
            "totals": {
                "alerts": self.alerts.len(),
                "volume_drops": self.volume_drops.len(),
                "alerting_ms": self.totals.iter().map(|total| total.alerting_ms).sum::<i64>(),
                "by_feed": by_feed,
            },
        })
    }

    /// The report for a person: one line per alert, then the totals.
    pub fn render_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "backtest {} .. {}: {} records from {} partitions{}",
            rfc3339(self.window.start_ms),
            rfc3339(self.window.end_ms),
            self.read.records,
            self.read.partitions,
            self.beginning_note(),
        );
        if self.read.record_errors > 0 {
            let _ = writeln!(
                text,
                "{} records had no usable split value or event time and were skipped",
                self.read.record_errors
            );
        }
        let _ = writeln!(text);
        if self.alerts.is_empty() {
            let _ = writeln!(text, "no alert would have fired");
        }
        for alert in &self.alerts {
            let _ = writeln!(text, "{}", self.alert_line(alert));
        }
        if !self.volume_drops.is_empty() {
            let _ = writeln!(text, "\nvolume drops (FeedVolumeDrop, warning)");
        }
        for drop in &self.volume_drops {
            let series = if drop.key.is_empty() {
                drop.feed.to_string()
            } else {
                format!("{}/{}", drop.feed, drop.key)
            };
            let end = match drop.end_ms {
                Some(end_ms) => rfc3339(end_ms),
                None => "still firing at the end".to_owned(),
            };
            let _ = writeln!(
                text,
                "{series:<32} {} -> {end} ({}): {}",
                rfc3339(drop.start_ms),
                human_duration_ms(drop.duration_ms(self.window)),
                drop.summary
            );
        }
        let _ = writeln!(text, "\ntotals");
        for total in &self.totals {
            let _ = writeln!(
                text,
                "  {:<24} {:<8} {:>4} alerts  {} alerting",
                &*total.feed,
                total.severity.as_str(),
                total.alerts,
                human_duration_ms(total.alerting_ms)
            );
        }
        text
    }

    fn beginning_note(&self) -> String {
        if self.read.partitions_from_beginning == 0 {
            return String::new();
        }
        format!(
            " ({} read from the beginning: the brokers could not find offsets by time)",
            self.read.partitions_from_beginning
        )
    }

    fn alert_line(&self, alert: &Alert) -> String {
        let series = if alert.key.is_empty() {
            alert.feed.to_string()
        } else {
            format!("{}/{}", alert.feed, alert.key)
        };
        let end = match alert.end_ms {
            Some(end_ms) => rfc3339(end_ms),
            None => "still firing at the end".to_owned(),
        };
        format!(
            "{series:<32} {:<8} {} -> {end} ({}{})",
            alert.severity.as_str(),
            rfc3339(alert.start_ms),
            human_duration_ms(alert.duration_ms(self.window)),
            if alert.status == Status::NeverSeen {
                ", never seen"
            } else {
                ""
            },
        )
    }
}

fn total(feed: &Arc<str>, severity: Severity, alerts: &[Alert], window: Window) -> Total {
    let matching = alerts
        .iter()
        .filter(|alert| alert.feed == *feed && alert.severity == severity);
    Total {
        feed: feed.clone(),
        severity,
        alerts: matching.clone().count(),
        alerting_ms: matching.map(|alert| alert.duration_ms(window)).sum(),
    }
}
