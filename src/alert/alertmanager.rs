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

use super::fallback::Fallbacks;
use super::{
    classify_response, summary, Backoff, Delivery, Notice, Notification, SinkContext, SystemAlert,
    FEED_STALE, WATCHDOG,
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
        }
        alert
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
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
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
                    self.apply(notice, self.clock.now_ms());
                }
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
                    let count = self.pending.len();
                    match self.attempt(self.clock.now_ms()).await {
                        Delivery::Accepted => {
                            self.metrics.count_alert(&name, OUTCOME_ACCEPTED);
                            tracing::debug!(sink = %name, alerts = count, "alerts delivered");
                            self.pending.clear();
                            self.accepted().await;
                            backoff.reset();
                        }
                        Delivery::Transient { error, retry_after } => {
                            self.metrics.count_alert(&name, OUTCOME_FAILED);
                            let delay = backoff.next_delay(retry_after);
                            tracing::warn!(sink = %name, %error, alerts = count, retry_in = ?delay, "alert delivery failed, will retry");
                            next_attempt = Instant::now() + delay;
                        }
                        Delivery::Permanent { error } if count > 1 => {
                            tracing::warn!(sink = %name, %error, alerts = count, "alertmanager refused a batch; sending its alerts one by one");
                            let refused = self.isolate(self.clock.now_ms()).await;
                            if refused > 0 {
                                // The refused never will be accepted here: the fallbacks get
                                // what is unaccepted now (the dedup key absorbs repeats).
                                self.fall_back(true).await;
                            }
                            if self.pending.is_empty() {
                                self.unaccepted.clear();
                                backoff.reset();
                            } else {
                                next_attempt = Instant::now() + backoff.next_delay(None);
                            }
                        }
                        Delivery::Permanent { error } => {
                            self.metrics.count_alert(&name, OUTCOME_REJECTED);
                            tracing::error!(sink = %name, %error, alerts = count, "alertmanager rejected alerts; dropping them");
                            self.pending.clear();
                            // They will never be accepted here: the fallbacks get them now.
                            self.fall_back(true).await;
                            self.unaccepted.clear();
                        }
                    }
                }
            }
        }
        while let Ok(notice) = notices.try_recv() {
            self.apply(notice, self.clock.now_ms());
        }
        self.drain(&name).await;
    }

    /// At shutdown: the pending alerts get one bounded last attempt.
    async fn drain(&mut self, name: &str) {
        if self.pending.is_empty() {
            return;
        }
        let attempt = self.attempt(self.clock.now_ms());
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Delivery::Accepted) => self.metrics.count_alert(name, OUTCOME_ACCEPTED),
            _ => {
                tracing::error!(sink = %name, alerts = self.pending.len(), "alerts undelivered at shutdown")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::alert::delivery::tests::{context, embedded_store, sink};
    use crate::alert::tests::transition;
    use crate::alert::Directory;
    use crate::alert::SinkTask;
    use crate::model::Status;

    #[tokio::test]
    async fn changes_alertmanager_does_not_take_go_to_the_fallback_and_their_resolve_follows() {
        let directory_path = tempfile::tempdir().unwrap();
        let store = embedded_store(&directory_path).await;
        let sinks = Directory::default();
        let mut backup_config = sink(100);
        backup_config.name = "oncall-mail".into();
        let (_backup, backup_handle, mut backup) = SinkTask::new(
            backup_config,
            &context(store.clone(), Metrics::default(), sinks.clone()),
        );
        let _ = sinks.set(HashMap::from([("oncall-mail".to_owned(), backup_handle)]));
        let config = AlertmanagerConfig {
            name: "alertmanager-0".into(),
            url: reqwest::Url::parse("http://127.0.0.1:9").unwrap(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            min_severity: Severity::Warning,
            feeds: vec![],
            fallback: vec!["oncall-mail".into()],
            fallback_after: Duration::ZERO,
            system: true,
        };
        let mut sink = AlertmanagerSink::new(
            config,
            false,
            &context(store.clone(), Metrics::default(), sinks.clone()),
        );
        let mut received = || {
            let mut statuses = Vec::new();
            while let Ok(envelope) = backup.try_recv() {
                statuses.push(envelope.notification.status.as_str());
            }
            statuses
        };

        // Alertmanager is down: the page falls back after fallback_after (zero here).
        let page = Transition {
            key: "acme".into(),
            ..transition(Status::Ok, Status::Critical, Some(1))
        };
        sink.apply(Notice::Changed(page.clone()), 0);
        sink.fall_back(false).await;
        assert_eq!(received(), ["critical"]);

        // Alertmanager is back and takes the resolve, which still follows to the fallback.
        sink.config.fallback_after = Duration::from_secs(3600);
        let resolve = Transition {
            from: Status::Critical,
            to: Status::Ok,
            ..page.clone()
        };
        sink.apply(Notice::Changed(resolve), 0);
        sink.accepted().await;
        assert_eq!(received(), ["ok"], "the fallback's incident closes too");
        assert_eq!(sink.fallbacks.open_incidents(), 0);

        // A change Alertmanager takes in time never reaches the fallback.
        sink.apply(Notice::Changed(page), 0);
        sink.fall_back(false).await;
        sink.accepted().await;
        assert!(received().is_empty());
        assert!(sink.unaccepted.is_empty());
    }

    /// An Alertmanager sink at `url` with no routing and no fallback.
    async fn plain_sink(url: &str, directory: &tempfile::TempDir) -> AlertmanagerSink {
        let config = AlertmanagerConfig {
            name: "alertmanager-0".into(),
            url: reqwest::Url::parse(url).unwrap(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            min_severity: Severity::Warning,
            feeds: vec![],
            fallback: vec![],
            fallback_after: Duration::from_secs(120),
            system: true,
        };
        AlertmanagerSink::new(
            config,
            false,
            &context(
                embedded_store(directory).await,
                Metrics::default(),
                Directory::default(),
            ),
        )
    }

    #[tokio::test]
    async fn one_refused_alert_does_not_drop_the_others_of_its_batch() {
        // An Alertmanager that refuses any batch holding an alert labelled `feed="bad"`.
        let received: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
        let kept = received.clone();
        let app = axum::Router::new().route(
            "/api/v2/alerts",
            axum::routing::post(move |axum::Json(batch): axum::Json<Vec<Value>>| {
                let kept = kept.clone();
                async move {
                    if batch.iter().any(|alert| alert["labels"]["feed"] == "bad") {
                        return axum::http::StatusCode::BAD_REQUEST;
                    }
                    kept.lock().unwrap().extend(batch);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let directory = tempfile::tempdir().unwrap();
        let mut sink = plain_sink(&format!("http://{address}"), &directory).await;
        for feed in ["bad", "good"] {
            sink.apply(
                Notice::System(crate::alert::SystemAlert {
                    alertname: crate::alert::FEED_BLIND,
                    severity: Severity::Critical,
                    labels: vec![("feed", feed.into())],
                    summary: String::new(),
                    firing: true,
                    since_ms: 0,
                }),
                0,
            );
        }
        assert!(matches!(sink.attempt(0).await, Delivery::Permanent { .. }));
        assert_eq!(sink.isolate(0).await, 1);
        assert!(sink.pending.is_empty());
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0]["labels"]["feed"], "good");
    }

    #[tokio::test]
    async fn changes_waiting_for_a_long_dead_alertmanager_are_bounded() {
        let directory = tempfile::tempdir().unwrap();
        let mut sink = plain_sink("http://127.0.0.1:9", &directory).await;
        let change =
            Notification::from_transition(&transition(Status::Ok, Status::Critical, Some(0)))
                .unwrap();
        for index in 0..MAX_UNACCEPTED + 5 {
            let fell_back = index % 2 == 1;
            sink.unaccepted
                .push((Instant::now(), change.clone(), fell_back));
        }
        sink.bound_unaccepted();
        assert_eq!(sink.unaccepted.len(), MAX_UNACCEPTED);
        assert!(
            !sink.unaccepted[0].2 && !sink.unaccepted[2].2,
            "the ones already handed to the fallbacks went first"
        );
    }

    #[tokio::test]
    async fn starts_at_and_ends_at_follow_the_sink_clock() {
        const NOW_MS: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z, far from the real now
        let (sender, mut batches) = tokio::sync::mpsc::unbounded_channel::<Vec<Value>>();
        let app = axum::Router::new().route(
            "/api/v2/alerts",
            axum::routing::post(move |axum::Json(batch): axum::Json<Vec<Value>>| {
                let _ = sender.send(batch);
                async { axum::http::StatusCode::OK }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let directory = tempfile::tempdir().unwrap();
        let mut sink_context = context(
            embedded_store(&directory).await,
            Metrics::default(),
            Directory::default(),
        );
        sink_context.clock = Arc::new(crate::clock::ManualClock::new(NOW_MS));
        let config = AlertmanagerConfig {
            name: "alertmanager-0".into(),
            url: reqwest::Url::parse(&format!("http://{address}")).unwrap(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            min_severity: Severity::Warning,
            feeds: vec![],
            fallback: vec![],
            fallback_after: Duration::from_secs(120),
            system: true,
        };
        let sink = AlertmanagerSink::new(config, true, &sink_context);
        let (_notices, receiver) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sink.run(receiver, shutdown.clone()));
        let batch = tokio::time::timeout(Duration::from_secs(10), batches.recv())
            .await
            .expect("the watchdog is sent at once")
            .unwrap();
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(batch[0]["labels"]["alertname"], WATCHDOG);
        assert_eq!(batch[0]["startsAt"], "2020-01-01T00:00:00.000Z");
        assert_eq!(
            batch[0]["endsAt"], "2020-01-01T00:04:00.000Z",
            "four resend intervals after the clock's now"
        );
    }
}
