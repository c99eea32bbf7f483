//! Generic webhook sink: one JSON POST per status change, delivered in order.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    classify_response, dedup_key, is_notifiable, notice_severity, summary, Backoff, Delivery,
    Notice, SystemAlert,
};
use crate::clock::rfc3339;
use crate::config::WebhookConfig;
use crate::evaluate::Transition;
use crate::metrics::{Metrics, OUTCOME_ACCEPTED, OUTCOME_FAILED, OUTCOME_REJECTED};

#[derive(Debug)]
pub struct WebhookSink {
    config: WebhookConfig,
    client: reqwest::Client,
    metrics: Metrics,
    queue: VecDeque<Value>,
}

/// The body of one webhook POST.
pub fn payload(transition: &Transition) -> Value {
    let firing = transition.to.severity().is_some();
    json!({
        "status": if firing { "firing" } else { "resolved" },
        "alertname": super::FEED_STALE,
        "feed": &*transition.feed,
        "key": transition.key,
        "severity": notice_severity(transition).map(|severity| severity.as_str()),
        "last_seen": transition.last_seen_ms.map(rfc3339),
        "staleness_seconds": transition.staleness_ms.map(|millis| millis / 1000),
        "summary": summary(transition),
        "dedup_key": dedup_key(&transition.feed, &transition.key),
        "feed_status": transition.to.as_str(),
        "previous_status": transition.from.as_str(),
        "topic": transition.topic,
        "at": rfc3339(transition.at_ms),
        "warn_after_seconds": transition.warn_after_ms / 1000,
        "critical_after_seconds": transition.critical_after_ms / 1000,
    })
}

/// The body of one webhook POST about freshwatch itself.
pub fn system_payload(alert: &SystemAlert) -> Value {
    let mut body = json!({
        "status": if alert.firing { "firing" } else { "resolved" },
        "alertname": alert.alertname,
        "feed": "",
        "key": "",
        "severity": alert.severity.as_str(),
        "last_seen": null,
        "staleness_seconds": null,
        "summary": alert.summary,
        "dedup_key": alert.dedup_key(),
        "at": rfc3339(alert.since_ms),
    });
    for (name, value) in &alert.labels {
        body[*name] = json!(value);
    }
    body
}

impl WebhookSink {
    pub fn new(config: WebhookConfig, metrics: Metrics) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        WebhookSink {
            config,
            client,
            metrics,
            queue: VecDeque::new(),
        }
    }

    async fn attempt(&self, body: &Value) -> Delivery {
        let result = self
            .client
            .post(self.config.url.clone())
            .json(body)
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
        loop {
            let due = !self.queue.is_empty();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // A status change: queue it behind earlier ones, order is kept.
                notice = notices.recv() => match notice {
                    Some(Notice::Changed(transition)) if is_notifiable(&transition) => {
                        self.queue.push_back(payload(&transition));
                    }
                    Some(Notice::System(alert)) => self.queue.push_back(system_payload(&alert)),
                    Some(_) => {}
                    None => break,
                },
                // Deliver (or retry) the oldest queued notification.
                _ = tokio::time::sleep_until(next_attempt), if due => {
                    let Some(body) = self.queue.front() else { continue };
                    match self.attempt(body).await {
                        Delivery::Accepted => {
                            self.metrics.count_alert(&name, OUTCOME_ACCEPTED);
                            self.queue.pop_front();
                            backoff.reset();
                        }
                        Delivery::Transient { error, retry_after } => {
                            self.metrics.count_alert(&name, OUTCOME_FAILED);
                            let delay = backoff.next_delay(retry_after);
                            tracing::warn!(sink = %name, %error, queued = self.queue.len(), retry_in = ?delay, "webhook delivery failed, will retry");
                            next_attempt = Instant::now() + delay;
                        }
                        Delivery::Permanent { error } => {
                            self.metrics.count_alert(&name, OUTCOME_REJECTED);
                            tracing::error!(sink = %name, %error, notification = %body, "webhook rejected notification; dropping it");
                            self.queue.pop_front();
                        }
                    }
                }
            }
        }
        while let Ok(notice) = notices.try_recv() {
            match notice {
                Notice::Changed(transition) if is_notifiable(&transition) => {
                    self.queue.push_back(payload(&transition));
                }
                Notice::System(alert) => self.queue.push_back(system_payload(&alert)),
                _ => {}
            }
        }
        self.drain(&name).await;
    }

    /// At shutdown: deliver what is queued within a bounded time, then say what was left.
    async fn drain(&mut self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(body) = self.queue.front() {
            if Instant::now() >= deadline {
                break;
            }
            match tokio::time::timeout_at(deadline, self.attempt(body)).await {
                Ok(Delivery::Accepted) => {
                    self.metrics.count_alert(name, OUTCOME_ACCEPTED);
                    self.queue.pop_front();
                }
                _ => break,
            }
        }
        if !self.queue.is_empty() {
            tracing::error!(sink = %name, undelivered = self.queue.len(), "webhook notifications undelivered at shutdown");
        }
    }
}
