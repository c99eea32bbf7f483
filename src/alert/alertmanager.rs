//! Alertmanager sink: `POST /api/v2/alerts`.
//!
//! Alertmanager forgets an alert whose `endsAt` passes, so firing alerts are re-sent every
//! `resend_interval` with `endsAt` four intervals ahead (Prometheus' own convention). A change of
//! severity resolves the old alert and fires the new one, since the label sets differ.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    classify_response, summary, Backoff, Delivery, Notice, SystemAlert, FEED_STALE, WATCHDOG,
};
use crate::clock::rfc3339;
use crate::config::AlertmanagerConfig;
use crate::evaluate::Transition;
use crate::ha::Leadership;
use crate::metrics::{Metrics, OUTCOME_ACCEPTED, OUTCOME_FAILED, OUTCOME_REJECTED};
use crate::model::Severity;

/// Identity of one Alertmanager alert: its label set.
type AlertKey = BTreeMap<String, String>;

fn labels_of(alert: &Value) -> AlertKey {
    alert["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug)]
pub struct AlertmanagerSink {
    config: AlertmanagerConfig,
    endpoint: reqwest::Url,
    client: reqwest::Client,
    external_url: String,
    metrics: Metrics,
    /// Alerts currently firing, as last sent.
    firing: BTreeMap<AlertKey, Value>,
    /// Alerts to send at the next attempt (firing or resolved).
    pending: BTreeMap<AlertKey, Value>,
    /// The always-firing watchdog alert, when configured; sent only while leading.
    watchdog: Option<Value>,
    /// Only the leader keeps alerts alive: a deposed leader that went on re-sending would
    /// revive alerts the new leader has resolved.
    leadership: Arc<Leadership>,
}

impl AlertmanagerSink {
    pub fn new(
        config: AlertmanagerConfig,
        external_url: &str,
        watchdog: bool,
        metrics: Metrics,
        leadership: Arc<Leadership>,
    ) -> Self {
        let mut endpoint = config.url.clone();
        let base = endpoint.path().trim_end_matches('/').to_owned();
        endpoint.set_path(&format!("{base}/api/v2/alerts"));
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        // Always firing while freshwatch evaluates; when it stops being re-sent, Alertmanager
        // resolves it and an external dead-man's switch routed on it pages.
        let watchdog = watchdog.then(|| {
            json!({
                "labels": {"alertname": WATCHDOG, "severity": "none"},
                "annotations": {"summary": "freshwatch is running and evaluating feeds; this alert always fires"},
                "startsAt": rfc3339(chrono::Utc::now().timestamp_millis()),
                "generatorURL": format!("{external_url}/"),
            })
        });
        let mut sink = AlertmanagerSink {
            config,
            endpoint,
            client,
            external_url: external_url.to_owned(),
            metrics,
            firing: BTreeMap::new(),
            pending: BTreeMap::new(),
            watchdog,
            leadership,
        };
        if sink.leadership.is_leader() {
            sink.step_up();
        }
        sink
    }

    /// Leading: the watchdog fires. Restored feed alerts arrive as `Notice::Restored`.
    fn step_up(&mut self) {
        if let Some(alert) = &self.watchdog {
            let key = labels_of(alert);
            self.firing.insert(key.clone(), alert.clone());
            self.pending.insert(key, alert.clone());
        }
    }

    /// No longer leading: stop keeping anything alive; the new leader took over.
    fn step_down(&mut self) {
        self.firing.clear();
        self.pending.clear();
    }

    /// The alert body for a transition's series at `severity`.
    fn alert(&self, transition: &Transition, severity: Severity, starts_at_ms: i64) -> Value {
        let mut labels = serde_json::Map::new();
        labels.insert("alertname".into(), json!(FEED_STALE));
        labels.insert("feed".into(), json!(&*transition.feed));
        if transition.split {
            labels.insert("key".into(), json!(transition.key));
        }
        labels.insert("severity".into(), json!(severity.as_str()));
        let staleness_seconds = transition
            .staleness_ms
            .map(|millis| (millis / 1000).to_string())
            .unwrap_or_default();
        json!({
            "labels": labels,
            "annotations": {
                "summary": summary(transition),
                "last_seen": transition.last_seen_ms.map(rfc3339).unwrap_or_default(),
                "staleness_seconds": staleness_seconds,
                "status": transition.to.as_str(),
                "topic": transition.topic,
            },
            "startsAt": rfc3339(starts_at_ms),
            "generatorURL": format!("{}/api/v1/feeds/{}", self.external_url, transition.feed),
        })
    }

    fn apply_system(&mut self, alert: SystemAlert, now_ms: i64) {
        let mut labels = serde_json::Map::new();
        labels.insert("alertname".into(), json!(alert.alertname));
        for (name, value) in &alert.labels {
            labels.insert((*name).into(), json!(value));
        }
        labels.insert("severity".into(), json!(alert.severity.as_str()));
        let mut body = json!({
            "labels": labels,
            "annotations": {"summary": alert.summary},
            "startsAt": rfc3339(alert.since_ms),
            "generatorURL": format!("{}/", self.external_url),
        });
        let key = labels_of(&body);
        if alert.firing {
            self.firing.insert(key.clone(), body.clone());
        } else {
            self.firing.remove(&key);
            body["endsAt"] = json!(rfc3339(now_ms));
        }
        self.pending.insert(key, body);
    }

    fn apply(&mut self, notice: Notice, now_ms: i64) {
        let (transition, restored) = match notice {
            Notice::Changed(transition) => (transition, false),
            Notice::Restored(transition) => (transition, true),
            Notice::System(alert) => return self.apply_system(alert, now_ms),
        };
        let old = transition.from.severity();
        let new = transition.to.severity();
        if !restored && old != new {
            if let Some(old) = old {
                let mut resolved = self.alert(&transition, old, transition.from_since_ms);
                let key = labels_of(&resolved);
                if let Some(fired) = self.firing.remove(&key) {
                    resolved = fired;
                }
                resolved["endsAt"] = json!(rfc3339(now_ms));
                resolved["annotations"]["summary"] = json!(summary(&transition));
                self.pending.insert(key, resolved);
            }
        }
        if let Some(new) = new {
            if restored || old != Some(new) {
                let starts_at_ms = if restored {
                    transition.from_since_ms
                } else {
                    transition.at_ms
                };
                let alert = self.alert(&transition, new, starts_at_ms);
                let key = labels_of(&alert);
                self.firing.insert(key.clone(), alert.clone());
                self.pending.insert(key, alert);
            }
        }
    }

    /// Queues every firing alert again with a fresh `endsAt`.
    fn queue_resend(&mut self) {
        for (key, alert) in &self.firing {
            self.pending
                .entry(key.clone())
                .or_insert_with(|| alert.clone());
        }
    }

    async fn attempt(&mut self, now_ms: i64) -> Delivery {
        let lifetime_ms = 4 * i64::try_from(self.config.resend_interval.as_millis()).unwrap_or(0);
        let batch: Vec<Value> = self
            .pending
            .iter()
            .map(|(key, alert)| {
                let mut alert = alert.clone();
                if self.firing.contains_key(key) {
                    alert["endsAt"] = json!(rfc3339(now_ms + lifetime_ms));
                }
                alert
            })
            .collect();
        let result = self
            .client
            .post(self.endpoint.clone())
            .json(&batch)
            .send()
            .await;
        classify_response(result)
    }

    pub async fn run(
        mut self,
        mut notices: mpsc::UnboundedReceiver<Notice>,
        shutdown: CancellationToken,
    ) {
        let name = self.config.name.clone();
        let mut backoff = Backoff::new();
        let mut next_attempt = Instant::now();
        let mut next_resend = Instant::now() + self.config.resend_interval;
        let mut leader_changes = self.leadership.subscribe();
        loop {
            let due = !self.pending.is_empty();
            tokio::select! {
                biased;
                // Stop: one last try to deliver what is pending.
                _ = shutdown.cancelled() => break,
                // Won or lost the lease.
                changed = leader_changes.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    if *leader_changes.borrow_and_update() {
                        self.step_up();
                        next_attempt = Instant::now();
                    } else {
                        tracing::info!(sink = %name, "no longer leading: alerts are the new leader's to keep alive");
                        self.step_down();
                    }
                }
                // A status change from the evaluator.
                notice = notices.recv() => {
                    let Some(notice) = notice else { break };
                    self.apply(notice, chrono::Utc::now().timestamp_millis());
                }
                // Keep firing alerts alive in Alertmanager.
                _ = tokio::time::sleep_until(next_resend) => {
                    self.queue_resend();
                    next_resend = Instant::now() + self.config.resend_interval;
                }
                // Deliver (or retry) what is pending.
                _ = tokio::time::sleep_until(next_attempt), if due => {
                    let count = self.pending.len();
                    match self.attempt(chrono::Utc::now().timestamp_millis()).await {
                        Delivery::Accepted => {
                            self.metrics.count_alert(&name, OUTCOME_ACCEPTED);
                            tracing::debug!(sink = %name, alerts = count, "alerts delivered");
                            self.pending.clear();
                            backoff.reset();
                        }
                        Delivery::Transient { error, retry_after } => {
                            self.metrics.count_alert(&name, OUTCOME_FAILED);
                            let delay = backoff.next_delay(retry_after);
                            tracing::warn!(sink = %name, %error, alerts = count, retry_in = ?delay, "alert delivery failed, will retry");
                            next_attempt = Instant::now() + delay;
                        }
                        Delivery::Permanent { error } => {
                            self.metrics.count_alert(&name, OUTCOME_REJECTED);
                            tracing::error!(sink = %name, %error, alerts = count, "alertmanager rejected alerts; dropping them");
                            self.pending.clear();
                        }
                    }
                }
            }
        }
        while let Ok(notice) = notices.try_recv() {
            self.apply(notice, chrono::Utc::now().timestamp_millis());
        }
        self.drain(&name).await;
    }

    /// At shutdown: the pending alerts get one bounded last attempt.
    async fn drain(&mut self, name: &str) {
        if self.pending.is_empty() {
            return;
        }
        let attempt = self.attempt(chrono::Utc::now().timestamp_millis());
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Delivery::Accepted) => self.metrics.count_alert(name, OUTCOME_ACCEPTED),
            _ => {
                tracing::error!(sink = %name, alerts = self.pending.len(), "alerts undelivered at shutdown")
            }
        }
    }
}
