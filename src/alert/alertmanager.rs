//! Alertmanager sink: `POST /api/v2/alerts`.
//!
//! Alertmanager forgets an alert whose `endsAt` passes, so firing alerts are re-sent every
//! `resend_interval` with `endsAt` four intervals ahead (Prometheus' own convention). A change of
//! severity resolves the old alert and fires the new one, since the label sets differ.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fallback::Fallbacks;
use super::inbox::{Inbox, InboxSender, Overflow, Received};
use super::supervise::{Ended, SinkLoop};
use super::{
    classify_response, dedup_key, summary, Backoff, Delivery, Notice, Notification, SinkContext,
    SystemAlert, FEED_STALE, WATCHDOG,
};
use crate::clock::{rfc3339, SharedClock};
use crate::config::AlertmanagerConfig;
use crate::evaluate::Transition;
use crate::ha::Leadership;
use crate::metrics::{Metrics, OUTCOME_ACCEPTED, OUTCOME_FAILED, OUTCOME_REJECTED};
use crate::model::Severity;
use crate::state::StateStore;

/// Identity of one Alertmanager alert: its label set.
type AlertKey = BTreeMap<String, String>;

/// Most changes kept waiting for Alertmanager's acceptance (for `fallback_after`).
const MAX_UNACCEPTED: usize = 10_000;

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
    /// Stamps `startsAt` and `endsAt`, and reads `Retry-After` dates.
    clock: SharedClock,
    /// Alerts currently firing, as last sent.
    firing: BTreeMap<AlertKey, Value>,
    /// Alerts to send at the next attempt (firing or resolved).
    pending: BTreeMap<AlertKey, Value>,
    /// The always-firing watchdog alert, when configured; sent only while leading.
    watchdog: Option<Value>,
    /// Only the leader keeps alerts alive: a deposed leader that went on re-sending would
    /// revive alerts the new leader has resolved.
    leadership: Arc<Leadership>,
    fallbacks: Fallbacks,
    store: StateStore,
    /// Changes not yet accepted by Alertmanager: when they arrived, and whether they already
    /// went to the fallbacks.
    unaccepted: Vec<(Instant, Notification, bool)>,
    /// Alerts a silence matches carry it as the `silenced_by` annotation.
    silences: Arc<crate::silence::Silences>,
}

impl AlertmanagerSink {
    pub fn new(config: AlertmanagerConfig, watchdog: bool, context: &SinkContext) -> Self {
        let external_url = &context.external_url;
        let mut endpoint = config.url.clone();
        let base = endpoint.path().trim_end_matches('/').to_owned();
        endpoint.set_path(&format!("{base}/api/v2/alerts"));
        let config_fallback = config.fallback.clone();
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
                "startsAt": rfc3339(context.clock.now_ms()),
                "generatorURL": format!("{external_url}/"),
            })
        });
        let mut sink = AlertmanagerSink {
            config,
            endpoint,
            client,
            external_url: external_url.to_owned(),
            metrics: context.metrics.clone(),
            silences: context.silences.clone(),
            clock: context.clock.clone(),
            firing: BTreeMap::new(),
            pending: BTreeMap::new(),
            watchdog,
            leadership: context.leadership.clone(),
            fallbacks: Fallbacks::new(config_fallback, context.directory.clone()),
            store: context.store.clone(),
            unaccepted: Vec::new(),
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
        self.unaccepted.clear();
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
        if !self.fallbacks.is_empty() {
            let notification = match &notice {
                Notice::Changed(transition) => Notification::from_transition(transition),
                Notice::System(alert) => Some(Notification::from_system(alert)),
                Notice::Restored(_) | Notice::RestoredSystem(_) => None,
                // Never sent here (see `for_alertmanager`).
                Notice::RollUp(_) | Notice::Absorbed(_) | Notice::SystemRollUp(_) => None,
            };
            if let Some(notification) = notification {
                self.unaccepted.push((Instant::now(), notification, false));
            }
        }
        let (transition, restored) = match notice {
            Notice::Changed(transition) => (transition, false),
            Notice::Restored(transition) => (transition, true),
            Notice::System(alert) | Notice::RestoredSystem(alert) => {
                return self.apply_system(alert, now_ms)
            }
            Notice::Absorbed(inner) => return self.apply(*inner, now_ms),
            Notice::RollUp(_) | Notice::SystemRollUp(_) => return,
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
                resolved["annotations"]["summary"] = json!(match new {
                    // Not over: the severity changed. Say so rather than "fresh again".
                    Some(new) => format!(
                        "{} to {new}: {}",
                        if new > old { "escalated" } else { "lowered" },
                        summary(&transition)
                    ),
                    None => summary(&transition),
                });
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

    /// Copies changes Alertmanager has not accepted within `fallback_after` (or at all, with
    /// `now_due`) to the fallback sinks, once each; a change of a key that fell back follows it
    /// at once.
    async fn fall_back(&mut self, now_due: bool) {
        let fallback_after = self.config.fallback_after;
        for (arrived, notification, fell_back) in self.unaccepted.iter_mut() {
            let follows = self.fallbacks.follows(notification);
            if *fell_back || !(now_due || follows || arrived.elapsed() >= fallback_after) {
                continue;
            }
            *fell_back = true;
            self.fallbacks
                .send(
                    &self.store,
                    &self.config.name,
                    notification,
                    "was not accepted by alertmanager",
                )
                .await;
        }
    }

    /// Alertmanager took everything pending. A change of a key that fell back still goes to the
    /// fallbacks, so their incident does not stay open.
    async fn accepted(&mut self) {
        let follow_ups = self
            .unaccepted
            .iter()
            .any(|(_, notification, fell_back)| !fell_back && self.fallbacks.follows(notification));
        if follow_ups {
            self.fall_back(false).await;
        }
        self.unaccepted.clear();
    }

    /// While Alertmanager stays down, changes waiting for it pile up: past
    /// [`MAX_UNACCEPTED`], those that already went to the fallbacks are forgotten first, then the
    /// oldest, logged once per trim. The alerts themselves stay in `pending` for Alertmanager;
    /// only the fallback bookkeeping is bounded.
    fn bound_unaccepted(&mut self) {
        let excess = self.unaccepted.len().saturating_sub(MAX_UNACCEPTED);
        if excess == 0 {
            return;
        }
        let mut dropped = 0;
        self.unaccepted.retain(|(_, _, fell_back)| {
            let drop = dropped < excess && *fell_back;
            dropped += usize::from(drop);
            !drop
        });
        if self.unaccepted.len() > MAX_UNACCEPTED {
            let rest = self.unaccepted.len() - MAX_UNACCEPTED;
            self.unaccepted.drain(..rest);
            dropped += rest;
        }
        tracing::warn!(sink = %self.config.name, dropped, "alertmanager unreachable for long: the oldest fallback bookkeeping was trimmed");
    }

    /// Queues every firing alert again with a fresh `endsAt`.
    fn queue_resend(&mut self) {
        for (key, alert) in &self.firing {
            self.pending
                .entry(key.clone())
                .or_insert_with(|| alert.clone());
        }
    }

    /// An alert as sent now: a firing one lives four resend intervals.
    fn outgoing(&self, key: &AlertKey, alert: &Value, now_ms: i64) -> Value {
        let lifetime_ms = 4 * i64::try_from(self.config.resend_interval.as_millis()).unwrap_or(0);
        let mut alert = alert.clone();
        if self.firing.contains_key(key) {
            alert["endsAt"] = json!(rfc3339(now_ms + lifetime_ms));
            if let Some(silence) = self.silence_of(&alert, now_ms) {
                alert["annotations"]["silenced_by"] = json!(silence.describe());
            }
        }
        alert
    }

    /// The active silence matching a firing alert's labels (a feed's series or a group).
    fn silence_of(&self, alert: &Value, now_ms: i64) -> Option<crate::silence::Silence> {
        use crate::silence::Subject;
        let label = |name: &str| alert["labels"][name].as_str();
        let subject = match (label("group"), label("feed")) {
            (Some(group), _) => Subject::Group {
                group,
                data_loss: false,
            },
            (None, Some(feed)) if label("alertname") == Some(FEED_STALE) => Subject::Series {
                feed,
                key: label("key").unwrap_or(""),
            },
            _ => return None,
        };
        self.silences.holding(subject, now_ms)
    }

    async fn post(&self, batch: &[Value]) -> Delivery {
        let result = self
            .client
            .post(self.endpoint.clone())
            .json(batch)
            .send()
            .await;
        classify_response(result, self.clock.now_ms())
    }

    async fn attempt(&mut self, now_ms: i64) -> Delivery {
        let batch: Vec<Value> = self
            .pending
            .iter()
            .map(|(key, alert)| self.outgoing(key, alert, now_ms))
            .collect();
        self.post(&batch).await
    }

    /// Alertmanager refused a batch: one bad alert must not drop the others. Each is sent
    /// alone; the accepted ones leave `pending`, the refused ones are logged and dropped, and
    /// those failing transiently stay. Returns how many were refused.
    async fn isolate(&mut self, now_ms: i64) -> usize {
        let keys: Vec<AlertKey> = self.pending.keys().cloned().collect();
        let mut refused = 0;
        for key in keys {
            let Some(alert) = self.pending.get(&key) else {
                continue;
            };
            let outgoing = self.outgoing(&key, alert, now_ms);
            match self.post(std::slice::from_ref(&outgoing)).await {
                Delivery::Accepted => {
                    self.pending.remove(&key);
                }
                Delivery::Permanent { error } => {
                    refused += 1;
                    self.metrics
                        .count_alert(&self.config.name, OUTCOME_REJECTED);
                    tracing::error!(sink = %self.config.name, %error, alert = %outgoing, "alertmanager refused this alert; dropping it");
                    self.pending.remove(&key);
                }
                Delivery::Transient { .. } => {}
            }
        }
        refused
    }

    /// Keeps alerts alive in Alertmanager until `shutdown` fires; then one bounded last
    /// attempt. Run again after a panic, it keeps the alerts it held and re-sends them.
    pub async fn run(
        &mut self,
        notices: &mut AlertmanagerInbox,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut backoff = Backoff::new();
        let mut next_attempt = Instant::now();
        let mut next_resend = Instant::now() + self.config.resend_interval;
        let mut leader_changes = self.leadership.subscribe();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let ended = loop {
            let due = !self.pending.is_empty();
            tokio::select! {
                biased;
                // Stop: one last try to deliver what is pending.
                _ = shutdown.cancelled() => break Ended::Shutdown,
                // Won or lost the lease.
                changed = leader_changes.changed() => {
                    if changed.is_ok() && self.leading(*leader_changes.borrow_and_update()) {
                        next_attempt = Instant::now();
                    }
                }
                // A status change from the evaluator, or all that overflowed.
                received = notices.recv() => match received {
                    Received::Item(notice) => self.apply(notice, self.clock.now_ms()),
                    Received::Overflow(notices, coalesced) => self.apply_all(notices, coalesced),
                    Received::Closed => break Ended::InboxClosed,
                },
                // Changes Alertmanager has not taken in time go to the fallbacks.
                _ = housekeeping.tick(), if !self.unaccepted.is_empty() => {
                    self.fall_back(false).await;
                    self.bound_unaccepted();
                }
                // Keep firing alerts alive in Alertmanager.
                _ = tokio::time::sleep_until(next_resend) => {
                    self.queue_resend();
                    next_resend = Instant::now() + self.config.resend_interval;
                }
                // Deliver (or retry) what is pending.
                _ = tokio::time::sleep_until(next_attempt), if due => {
                    next_attempt = Instant::now() + self.deliver_pending(&mut backoff).await;
                }
            }
        };
        let (rest, coalesced) = notices.take_all();
        self.apply_all(rest, coalesced.unwrap_or_default());
        self.drain().await;
        ended
    }

    /// Won (`true`) or lost the lease; returns whether to deliver at once.
    fn leading(&mut self, leader: bool) -> bool {
        if leader {
            self.step_up();
        } else {
            tracing::info!(sink = %self.config.name, "no longer leading: alerts are the new leader's to keep alive");
            self.step_down();
        }
        leader
    }

    /// What was still in the channel, then what overflowed, coalesced per alert.
    fn apply_all(&mut self, notices: Vec<Notice>, coalesced: Coalesced) {
        for notice in notices.into_iter().chain(coalesced.into_notices()) {
            self.apply(notice, self.clock.now_ms());
        }
    }

    /// One attempt at what is pending; returns how long to wait before the next one.
    async fn deliver_pending(&mut self, backoff: &mut Backoff) -> Duration {
        let name = self.config.name.clone();
        let count = self.pending.len();
        match self.attempt(self.clock.now_ms()).await {
            Delivery::Accepted => {
                self.metrics.count_alert(&name, OUTCOME_ACCEPTED);
                tracing::debug!(sink = %name, alerts = count, "alerts delivered");
                self.pending.clear();
                self.accepted().await;
                backoff.reset();
                Duration::ZERO
            }
            Delivery::Transient { error, retry_after } => {
                self.metrics.count_alert(&name, OUTCOME_FAILED);
                let delay = backoff.next_delay(retry_after);
                tracing::warn!(sink = %name, %error, alerts = count, retry_in = ?delay, "alert delivery failed, will retry");
                delay
            }
            Delivery::Permanent { error } if count > 1 => {
                tracing::warn!(sink = %name, %error, alerts = count, "alertmanager refused a batch; sending its alerts one by one");
                let refused = self.isolate(self.clock.now_ms()).await;
                if refused > 0 {
                    // The refused never will be accepted here: the fallbacks get what is
                    // unaccepted now (the dedup key absorbs repeats).
                    self.fall_back(true).await;
                }
                if !self.pending.is_empty() {
                    return backoff.next_delay(None);
                }
                self.unaccepted.clear();
                backoff.reset();
                Duration::ZERO
            }
            Delivery::Permanent { error } => {
                self.metrics.count_alert(&name, OUTCOME_REJECTED);
                tracing::error!(sink = %name, %error, alerts = count, "alertmanager rejected alerts; dropping them");
                self.pending.clear();
                // They will never be accepted here: the fallbacks get them now.
                self.fall_back(true).await;
                self.unaccepted.clear();
                Duration::ZERO
            }
        }
    }

    /// At shutdown: the pending alerts get one bounded last attempt.
    async fn drain(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let name = self.config.name.clone();
        let attempt = self.attempt(self.clock.now_ms());
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Delivery::Accepted) => self.metrics.count_alert(&name, OUTCOME_ACCEPTED),
            _ => {
                tracing::error!(sink = %name, alerts = self.pending.len(), "alerts undelivered at shutdown")
            }
        }
    }
}

impl SinkLoop for AlertmanagerSink {
    type Inbox = AlertmanagerInbox;

    fn run<'a>(
        &'a mut self,
        inbox: &'a mut AlertmanagerInbox,
        shutdown: &'a CancellationToken,
    ) -> impl std::future::Future<Output = Ended> + Send + 'a {
        AlertmanagerSink::run(self, inbox, shutdown)
    }

    /// The dead run may have left firing alerts unsent: send them all again.
    fn restarting(&mut self) {
        self.queue_resend();
    }
}

/// The sending end of an Alertmanager sink's channel.
pub type AlertmanagerSender = InboxSender<Notice, Coalesced>;

/// The receiving end of an Alertmanager sink's channel.
pub type AlertmanagerInbox = Inbox<Notice, Coalesced>;

/// What an Alertmanager sink keeps of notices that found its channel full. It holds the state
/// of firing alerts, not a log, so notices are coalesced per alert: a series keeps where it came
/// from and where it went last (warning → critical → ok becomes warning → ok, which resolves
/// the warning alert that was sent); a system alert keeps its last notice per severity.
#[derive(Debug, Default)]
pub struct Coalesced {
    by_alert: BTreeMap<String, Notice>,
}

impl Coalesced {
    fn into_notices(self) -> impl Iterator<Item = Notice> {
        self.by_alert.into_values()
    }
}

impl Overflow<Notice> for Coalesced {
    fn keep(&mut self, notice: Notice) {
        let notice = match notice {
            Notice::Absorbed(inner) => *inner,
            notice => notice,
        };
        let key = match &notice {
            Notice::Changed(transition) | Notice::Restored(transition) => {
                dedup_key(&transition.feed, &transition.key)
            }
            Notice::System(alert) | Notice::RestoredSystem(alert) | Notice::SystemRollUp(alert) => {
                format!("{}#{}", alert.dedup_key(), alert.severity)
            }
            Notice::RollUp(rollup) => rollup.dedup_key(),
            Notice::Absorbed(_) => String::new(),
        };
        let merged = match (self.by_alert.remove(&key), notice) {
            (Some(Notice::Changed(first)), Notice::Changed(last)) => Notice::Changed(Transition {
                from: first.from,
                from_since_ms: first.from_since_ms,
                ..last
            }),
            (_, notice) => notice,
        };
        self.by_alert.insert(key, merged);
    }
}

#[cfg(test)]
mod tests;
