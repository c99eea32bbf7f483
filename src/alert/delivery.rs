//! One task per notification sink (webhook, PagerDuty, Slack, email), fed from the durable
//! outbox.
//!
//! A notification is in the outbox before the first delivery attempt and leaves it only when the
//! sink accepted it, so a `kill -9` loses nothing: at start the task re-reads its outbox.
//! Delivery is FIFO, except that a dedup key over its rate limit is passed over (never
//! overtaken by a later entry of the same key) and superseded by its newer entry when one is
//! queued. An entry not accepted within `fallback_after` is copied to the fallback sinks once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notification::Notification;
use super::render;
use super::{classify_response, Backoff, Delivery};
use crate::config::{SinkConfig, SinkKind};
use crate::metrics::{Metrics, OUTCOME_ACCEPTED, OUTCOME_FAILED, OUTCOME_REJECTED};
use crate::state::StateStore;

/// A notification for one sink, with its outbox id once stored.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Not to deliver: an alert that was firing before a restart, so `repeat_interval` goes on
    /// reminding on-call about it.
    pub still_firing: bool,
    pub outbox_id: Option<String>,
    pub notification: Notification,
}

/// The way into a sink task.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub config: Arc<SinkConfig>,
    sender: mpsc::UnboundedSender<Envelope>,
}

impl SinkHandle {
    /// Tells the sink an alert was firing before this process started (nothing is sent).
    pub fn still_firing(&self, notification: Notification) {
        let _ = self.sender.send(Envelope {
            still_firing: true,
            outbox_id: None,
            notification,
        });
    }

    /// Stores `notification` in this sink's outbox, then queues it for delivery. If the store
    /// is down it is still queued (in memory) and stored later.
    pub async fn enqueue(&self, store: &StateStore, notification: Notification) {
        let outbox_id = match serde_json::to_string(&notification) {
            Ok(json) => match store.outbox_push(&self.config.name, &json).await {
                Ok(id) => Some(id),
                Err(error) => {
                    tracing::warn!(sink = %self.config.name, %error, "outbox write failed; notification kept in memory");
                    None
                }
            },
            Err(error) => {
                tracing::error!(sink = %self.config.name, %error, "notification not serializable");
                None
            }
        };
        // A closed channel means the sink already stopped; the entry stays in the outbox.
        let _ = self.sender.send(Envelope {
            still_firing: false,
            outbox_id,
            notification,
        });
    }
}

/// Every sink's handle by name, filled once all are started (for fallbacks).
pub type Directory = Arc<OnceLock<HashMap<String, SinkHandle>>>;

/// A sink's fallbacks: where a notification it could not deliver goes too, and which incidents
/// are open there, so that their later notifications (the resolve above all) follow them.
#[derive(Debug, Default)]
pub struct Fallbacks {
    targets: Vec<String>,
    directory: Directory,
    open_keys: HashSet<String>,
}

impl Fallbacks {
    pub fn new(targets: Vec<String>, directory: Directory) -> Fallbacks {
        Fallbacks {
            targets,
            directory,
            open_keys: HashSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether `notification`'s incident is open on the fallbacks.
    pub fn follows(&self, notification: &Notification) -> bool {
        self.open_keys.contains(&notification.dedup_key)
    }

    /// Incidents open on the fallbacks.
    pub fn open_incidents(&self) -> usize {
        self.open_keys.len()
    }

    /// Copies `notification` from `sink` to every fallback (`why` goes to the log).
    pub async fn send(
        &mut self,
        store: &StateStore,
        sink: &str,
        notification: &Notification,
        why: &str,
    ) {
        let Some(directory) = self.directory.get() else {
            return;
        };
        if notification.firing {
            self.open_keys.insert(notification.dedup_key.clone());
        } else {
            self.open_keys.remove(&notification.dedup_key);
        }
        for target in &self.targets {
            if let Some(handle) = directory.get(target) {
                tracing::warn!(sink, fallback = %target, dedup_key = %notification.dedup_key, "notification {why}; sending it to the fallback sink too");
                handle.enqueue(store, notification.clone()).await;
            }
        }
    }
}

struct Queued {
    envelope: Envelope,
    enqueued_at: Instant,
    fell_back: bool,
}

/// Sends one notification; the kind-specific part.
#[derive(Debug)]
struct Sender {
    client: reqwest::Client,
    kind: SinkKind,
    source: String,
    external_url: String,
    smtp: Option<Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String>>,
}

impl Sender {
    fn new(config: &SinkConfig, external_url: &str) -> Sender {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        let smtp = match &config.kind {
            SinkKind::Email(email) => Some(smtp_transport(email, config.timeout)),
            _ => None,
        };
        if let Some(Err(error)) = &smtp {
            tracing::error!(sink = %config.name, %error, "email sink cannot deliver; its notifications go to its fallbacks");
        }
        Sender {
            client,
            kind: config.kind.clone(),
            source: instance_name(external_url),
            external_url: external_url.to_owned(),
            smtp,
        }
    }

    async fn send(&self, notification: &Notification) -> Delivery {
        match &self.kind {
            SinkKind::Webhook { url, secret } => {
                let body = render::webhook_body(notification).to_string();
                let mut request = self
                    .client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(secret) = secret {
                    request = request.header(
                        render::SIGNATURE_HEADER,
                        render::signature(secret.expose(), body.as_bytes()),
                    );
                }
                classify_response(request.body(body).send().await)
            }
            SinkKind::PagerDuty { url, routing_key } => {
                let feed_url = format!("{}/api/v1/feeds/{}", self.external_url, notification.feed);
                let event = render::pagerduty_event(
                    notification,
                    routing_key.expose(),
                    &self.source,
                    &feed_url,
                );
                classify_response(self.client.post(url.clone()).json(&event).send().await)
            }
            SinkKind::Slack { url } => {
                let message = render::slack_message(notification);
                classify_response(self.client.post(url.expose()).json(&message).send().await)
            }
            SinkKind::Email(email) => match &self.smtp {
                Some(Ok(transport)) => send_email(transport, email, notification).await,
                Some(Err(error)) => Delivery::Permanent {
                    error: error.clone(),
                },
                None => Delivery::Permanent {
                    error: "no SMTP transport".into(),
                },
            },
        }
    }

    /// Slack asks for at most about one message per second per webhook, PagerDuty's Events API
    /// for about 120 events a minute per routing key (one sink has one key).
    fn min_spacing(&self) -> Duration {
        match self.kind {
            SinkKind::Slack { .. } => Duration::from_secs(1),
            SinkKind::PagerDuty { .. } => Duration::from_millis(500),
            _ => Duration::ZERO,
        }
    }
}

/// The `source` of PagerDuty events: this instance's host and port.
fn instance_name(external_url: &str) -> String {
    reqwest::Url::parse(external_url)
        .ok()
        .and_then(|url| {
            url.host_str().map(|host| {
                format!(
                    "freshwatch@{host}:{}",
                    url.port_or_known_default().unwrap_or(0)
                )
            })
        })
        .unwrap_or_else(|| "freshwatch".to_owned())
}

fn tls_error(error: lettre::transport::smtp::Error) -> String {
    format!("cannot set up TLS: {error}")
}

fn smtp_transport(
    email: &crate::config::EmailConfig,
    timeout: Duration,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::AsyncSmtpTransport;
    // A TLS setup failure is an error, never a quiet fall back to plaintext credentials.
    let tls = match email.security {
        crate::config::SmtpSecurity::None => Tls::None,
        crate::config::SmtpSecurity::Starttls => {
            Tls::Required(TlsParameters::new(email.smtp_host.clone()).map_err(tls_error)?)
        }
        crate::config::SmtpSecurity::Tls => {
            Tls::Wrapper(TlsParameters::new(email.smtp_host.clone()).map_err(tls_error)?)
        }
    };
    let mut builder =
        AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&email.smtp_host)
            .port(email.smtp_port)
            .tls(tls)
            .timeout(Some(timeout));
    if let Some((user, password)) = &email.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

async fn send_email(
    transport: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    email: &crate::config::EmailConfig,
    notification: &Notification,
) -> Delivery {
    use lettre::AsyncTransport;
    let (subject, body) = render::email(notification);
    let mut builder = lettre::Message::builder().subject(subject);
    match email.from.parse() {
        Ok(from) => builder = builder.from(from),
        Err(error) => {
            return Delivery::Permanent {
                error: format!("from: {error}"),
            }
        }
    }
    for recipient in &email.to {
        match recipient.parse() {
            Ok(to) => builder = builder.to(to),
            Err(error) => {
                return Delivery::Permanent {
                    error: format!("to: {error}"),
                }
            }
        }
    }
    let message = match builder.body(body) {
        Ok(message) => message,
        Err(error) => {
            return Delivery::Permanent {
                error: error.to_string(),
            }
        }
    };
    match transport.send(message).await {
        Ok(_) => Delivery::Accepted,
        Err(error) if error.is_permanent() => Delivery::Permanent {
            error: error.to_string(),
        },
        Err(error) => Delivery::Transient {
            error: error.to_string(),
            retry_after: None,
        },
    }
}

/// The running task of one sink.
pub struct SinkTask {
    config: Arc<SinkConfig>,
    sender: Sender,
    store: StateStore,
    metrics: Metrics,
    directory: Directory,
    queue: VecDeque<Queued>,
    /// Accepted sends per dedup key within the rate-limit window.
    sent: HashMap<String, VecDeque<Instant>>,
    /// Critical alerts accepted and still firing, for `repeat_interval`.
    firing: HashMap<String, (Notification, Instant)>,
    last_send: Option<Instant>,
    /// Only the leader delivers; a new leader takes over the outbox.
    leadership: Arc<crate::ha::Leadership>,
    fallbacks: Fallbacks,
    /// How often the state store lost its data; when it moves, the queue is stored again.
    store_resets: Arc<std::sync::atomic::AtomicU64>,
    store_resets_seen: u64,
}

impl SinkTask {
    /// Creates the task and its handle.
    pub fn new(
        config: SinkConfig,
        external_url: &str,
        store: StateStore,
        metrics: Metrics,
        directory: Directory,
        leadership: Arc<crate::ha::Leadership>,
    ) -> (SinkTask, SinkHandle, mpsc::UnboundedReceiver<Envelope>) {
        let config = Arc::new(config);
        let (sender, receiver) = mpsc::unbounded_channel();
        let fallbacks = Fallbacks::new(config.fallback.clone(), directory.clone());
        let task = SinkTask {
            sender: Sender::new(&config, external_url),
            config: config.clone(),
            store,
            metrics,
            directory,
            queue: VecDeque::new(),
            sent: HashMap::new(),
            firing: HashMap::new(),
            last_send: None,
            leadership,
            fallbacks,
            store_resets: Default::default(),
            store_resets_seen: 0,
        };
        (task, SinkHandle { config, sender }, receiver)
    }

    /// Shares the counter the pipeline bumps when the state store lost its data.
    pub fn watch_store_resets(&mut self, resets: Arc<std::sync::atomic::AtomicU64>) {
        self.store_resets_seen = resets.load(std::sync::atomic::Ordering::Relaxed);
        self.store_resets = resets;
    }

    /// After the store lost its data, every queued entry is unstored: store them all again.
    fn forget_lost_outbox(&mut self) {
        let resets = self.store_resets.load(std::sync::atomic::Ordering::Relaxed);
        if resets == self.store_resets_seen {
            return;
        }
        self.store_resets_seen = resets;
        for queued in &mut self.queue {
            queued.envelope.outbox_id = None;
        }
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    /// Queues an entry. One for a key that fell back goes to the fallbacks at once as well.
    async fn push(&mut self, envelope: Envelope) {
        let follows_fallback = self.fallbacks.follows(&envelope.notification);
        if follows_fallback {
            self.send_to_fallbacks(
                &envelope.notification,
                "is for an incident open on a fallback",
            )
            .await;
        }
        self.queue.push_back(Queued {
            envelope,
            enqueued_at: Instant::now(),
            fell_back: follows_fallback,
        });
        self.publish_pending();
    }

    fn publish_pending(&self) {
        self.metrics
            .outbox_pending
            .get_or_create(&crate::metrics::SinkLabels {
                sink: self.config.name.clone(),
            })
            .set(self.queue.len() as i64);
    }

    /// Re-reads entries a previous run left in the outbox.
    async fn recover(&mut self) {
        match self.store.outbox_list(&self.config.name).await {
            Ok(entries) => {
                let count = entries.len();
                for (id, json) in entries {
                    match serde_json::from_str::<Notification>(&json) {
                        Ok(notification) => {
                            self.push(Envelope {
                                still_firing: false,
                                outbox_id: Some(id),
                                notification,
                            })
                            .await
                        }
                        Err(error) => {
                            tracing::error!(sink = %self.name(), %error, entry = %json, "unreadable outbox entry dropped");
                            let _ = self.store.outbox_remove(&self.config.name, &id).await;
                        }
                    }
                }
                if count > 0 {
                    tracing::info!(sink = %self.name(), pending = count, "undelivered notifications recovered from the outbox");
                }
            }
            Err(error) => {
                tracing::warn!(sink = %self.name(), %error, "cannot read the outbox; will deliver new notifications only")
            }
        }
    }

    fn within_rate(&mut self, dedup_key: &str, now: Instant) -> bool {
        let period = self.config.rate_limit_period;
        let sent = self.sent.entry(dedup_key.to_owned()).or_default();
        while sent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= period)
        {
            sent.pop_front();
        }
        sent.len() < self.config.rate_limit as usize
    }

    /// Forgets send times older than the rate-limit period: one entry per dedup key ever sent
    /// would otherwise grow with every tenant that ever paged.
    fn prune_sent(&mut self, now: Instant) {
        let period = self.config.rate_limit_period;
        self.sent.retain(|_, times| {
            while times
                .front()
                .is_some_and(|at| now.duration_since(*at) >= period)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// Index of the next entry to deliver; supersedes rate-limited entries that have a newer
    /// entry of the same key queued.
    async fn next_eligible(&mut self) -> Option<usize> {
        let now = Instant::now();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut index = 0;
        while index < self.queue.len() {
            let key = self.queue[index].envelope.notification.dedup_key.clone();
            if blocked.contains(&key) {
                index += 1;
                continue;
            }
            if self.within_rate(&key, now) {
                return Some(index);
            }
            let newer_queued = self
                .queue
                .iter()
                .skip(index + 1)
                .any(|later| later.envelope.notification.dedup_key == key);
            if newer_queued {
                let superseded = self.queue.remove(index)?;
                self.metrics.count_suppressed(&self.config.name);
                tracing::info!(sink = %self.name(), dedup_key = %key, "rate limit: notification superseded by a newer one for the same key");
                self.forget(&superseded.envelope).await;
                continue;
            }
            blocked.insert(key);
            index += 1;
        }
        None
    }

    async fn forget(&self, envelope: &Envelope) {
        if let Some(id) = &envelope.outbox_id {
            if let Err(error) = self.store.outbox_remove(&self.config.name, id).await {
                tracing::warn!(sink = %self.name(), %error, "cannot remove a delivered entry from the outbox; it may be sent again after a restart");
            }
        }
    }

    /// Copies entries waiting longer than `fallback_after` to the fallback sinks, once.
    async fn fall_back(&mut self) {
        if self.fallbacks.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for queued in self.queue.iter_mut() {
            if !queued.fell_back
                && now.duration_since(queued.enqueued_at) >= self.config.fallback_after
            {
                queued.fell_back = true;
                due.push(queued.envelope.notification.clone());
            }
        }
        for notification in due {
            self.send_to_fallbacks(&notification, "not accepted in time")
                .await;
        }
    }

    async fn send_to_fallbacks(&mut self, notification: &Notification, why: &str) {
        self.fallbacks
            .send(&self.store, &self.config.name, notification, why)
            .await;
    }

    /// Queues a repeat of every critical alert still firing past `repeat_interval`.
    async fn repeat_firing(&mut self) {
        let now = Instant::now();
        let due: Vec<Notification> = self
            .firing
            .values_mut()
            .filter(|(_, last)| now.duration_since(*last) >= self.config.repeat_interval)
            .map(|(notification, last)| {
                *last = now;
                let mut repeat = notification.clone();
                repeat.repeat = true;
                repeat
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let Some(handle) = self
            .directory
            .get()
            .and_then(|directory| directory.get(&self.config.name))
            .cloned()
        else {
            return;
        };
        for notification in due {
            handle.enqueue(&self.store, notification).await;
        }
    }

    /// Stores entries that could not be stored when they arrived (state store was down). The
    /// outbox replays in id order after a restart, so every entry from the first unstored one on
    /// is stored again in queue order: a resolve stored early must not replay before the trigger
    /// that was queued ahead of it. Old ids are removed only once all are stored; a failure half
    /// way leaves copies, which the dedup key absorbs.
    async fn store_unstored(&mut self) {
        let Some(first) = self
            .queue
            .iter()
            .position(|queued| queued.envelope.outbox_id.is_none())
        else {
            return;
        };
        let mut new_ids = Vec::with_capacity(self.queue.len() - first);
        for queued in self.queue.iter().skip(first) {
            let Ok(json) = serde_json::to_string(&queued.envelope.notification) else {
                return;
            };
            match self.store.outbox_push(&self.config.name, &json).await {
                Ok(id) => new_ids.push(id),
                Err(_) => return,
            }
        }
        let replaced: Vec<Option<String>> = self
            .queue
            .iter_mut()
            .skip(first)
            .zip(new_ids)
            .map(|(queued, id)| queued.envelope.outbox_id.replace(id))
            .collect();
        for old_id in replaced.into_iter().flatten() {
            let _ = self.store.outbox_remove(&self.config.name, &old_id).await;
        }
    }

    /// A critical alert firing since before the restart: reminded of from now on.
    fn remember_firing(&mut self, notification: Notification) {
        if notification.firing && notification.severity == "critical" {
            self.firing
                .entry(notification.dedup_key.clone())
                .or_insert_with(|| (notification, Instant::now()));
        }
    }

    fn accepted(&mut self, notification: &Notification) {
        let now = Instant::now();
        self.sent
            .entry(notification.dedup_key.clone())
            .or_default()
            .push_back(now);
        self.last_send = Some(now);
        let latency_ms = chrono::Utc::now().timestamp_millis() - notification.changed_at_ms;
        self.metrics
            .notification_latency
            .get_or_create(&crate::metrics::SinkLabels {
                sink: self.config.name.clone(),
            })
            .observe(latency_ms.max(0) as f64 / 1000.0);
        if notification.firing && notification.severity == "critical" {
            self.firing
                .entry(notification.dedup_key.clone())
                .or_insert_with(|| (notification.clone(), now));
        } else {
            self.firing.remove(&notification.dedup_key);
        }
    }

    /// Delivers until `shutdown` fires; then one bounded pass over what is left.
    pub async fn run(
        mut self,
        mut receiver: mpsc::UnboundedReceiver<Envelope>,
        shutdown: CancellationToken,
    ) {
        let mut leader_changes = self.leadership.subscribe();
        if self.leadership.is_leader() {
            self.recover().await;
        }
        let mut backoff = Backoff::new();
        let mut next_attempt = Instant::now();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        loop {
            let leader = self.leadership.is_leader();
            let due = leader && !self.queue.is_empty();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // A new leader delivers what the outbox holds, including the old leader's.
                changed = leader_changes.changed() => {
                    if changed.is_ok() && *leader_changes.borrow_and_update() {
                        // What is stored comes back from the outbox; what is only in memory
                        // (written while the store was down) must not be lost on the way.
                        let unstored: Vec<Queued> = self
                            .queue
                            .drain(..)
                            .filter(|queued| queued.envelope.outbox_id.is_none())
                            .collect();
                        self.recover().await;
                        self.queue.extend(unstored);
                        self.publish_pending();
                        next_attempt = Instant::now();
                    }
                }
                // A new notification (already in the outbox).
                envelope = receiver.recv() => match envelope {
                    Some(envelope) if envelope.still_firing => self.remember_firing(envelope.notification),
                    Some(envelope) => self.push(envelope).await,
                    None => break,
                },
                // Fallbacks, repeats, and entries the store could not take earlier.
                _ = housekeeping.tick(), if leader => {
                    self.fall_back().await;
                    self.repeat_firing().await;
                    self.prune_sent(Instant::now());
                    self.forget_lost_outbox();
                    self.store_unstored().await;
                }
                // Deliver the next eligible entry.
                _ = tokio::time::sleep_until(next_attempt), if due => {
                    if let Some(wait) = self.spacing_wait() {
                        next_attempt = Instant::now() + wait;
                        continue;
                    }
                    let Some(index) = self.next_eligible().await else {
                        next_attempt = Instant::now() + Duration::from_secs(1);
                        continue;
                    };
                    let notification = self.queue[index].envelope.notification.clone();
                    match self.sender.send(&notification).await {
                        Delivery::Accepted => {
                            self.metrics.count_alert(&self.config.name, OUTCOME_ACCEPTED);
                            if let Some(queued) = self.queue.remove(index) {
                                self.forget(&queued.envelope).await;
                            }
                            self.accepted(&notification);
                            self.publish_pending();
                            backoff.reset();
                        }
                        Delivery::Transient { error, retry_after } => {
                            self.metrics.count_alert(&self.config.name, OUTCOME_FAILED);
                            let delay = backoff.next_delay(retry_after);
                            tracing::warn!(sink = %self.config.name, %error, queued = self.queue.len(), retry_in = ?delay, "delivery failed, will retry");
                            next_attempt = Instant::now() + delay;
                        }
                        Delivery::Permanent { error } => {
                            self.metrics.count_alert(&self.config.name, OUTCOME_REJECTED);
                            tracing::error!(sink = %self.config.name, %error, dedup_key = %notification.dedup_key, summary = %notification.summary, "sink rejected the notification; dropping it");
                            if let Some(queued) = self.queue.remove(index) {
                                // It will never succeed here: the fallbacks get it now.
                                if !queued.fell_back {
                                    self.send_to_fallbacks(&notification, "was rejected").await;
                                }
                                self.forget(&queued.envelope).await;
                            }
                            self.publish_pending();
                        }
                    }
                }
            }
        }
        while let Ok(envelope) = receiver.try_recv() {
            if !envelope.still_firing {
                self.push(envelope).await;
            }
        }
        if self.leadership.is_leader() {
            self.drain().await;
        }
    }

    fn spacing_wait(&self) -> Option<Duration> {
        let spacing = self.sender.min_spacing();
        let elapsed = self.last_send?.elapsed();
        (elapsed < spacing).then(|| spacing - elapsed)
    }

    /// At shutdown: a bounded attempt at what is queued; the rest stays in the outbox.
    async fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(queued) = self.queue.front() {
            if Instant::now() >= deadline {
                break;
            }
            let notification = queued.envelope.notification.clone();
            match tokio::time::timeout_at(deadline, self.sender.send(&notification)).await {
                Ok(Delivery::Accepted) => {
                    self.metrics
                        .count_alert(&self.config.name, OUTCOME_ACCEPTED);
                    if let Some(queued) = self.queue.pop_front() {
                        self.forget(&queued.envelope).await;
                    }
                }
                _ => break,
            }
        }
        if !self.queue.is_empty() {
            let stored = self
                .queue
                .iter()
                .filter(|queued| queued.envelope.outbox_id.is_some())
                .count();
            tracing::warn!(sink = %self.config.name, undelivered = self.queue.len(), kept_in_outbox = stored, "notifications still pending at shutdown; they go out after the next start");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::SinkKind;
    use crate::model::Severity;

    pub(crate) fn sink(rate_limit: u32) -> SinkConfig {
        SinkConfig {
            name: "hook".into(),
            kind: SinkKind::Webhook {
                url: reqwest::Url::parse("http://127.0.0.1:9/hook").unwrap(),
                secret: None,
            },
            min_severity: Severity::Warning,
            feeds: vec![],
            fallback: vec![],
            fallback_after: Duration::from_secs(120),
            repeat_interval: Duration::from_secs(4 * 3600),
            rate_limit,
            rate_limit_period: Duration::from_secs(3600),
            timeout: Duration::from_secs(1),
            system: true,
        }
    }

    fn notification(key: &str, status: &str, firing: bool) -> Notification {
        Notification {
            firing,
            alertname: "FeedStale".into(),
            feed: "profiles".into(),
            key: key.into(),
            split: true,
            topic: "t".into(),
            severity: "critical".into(),
            status: status.into(),
            previous_status: String::new(),
            summary: String::new(),
            dedup_key: format!("freshwatch/profiles/{key}"),
            last_seen_ms: None,
            staleness_ms: None,
            warn_after_ms: 0,
            critical_after_ms: 0,
            records: 0,
            changed_at_ms: 0,
            firing_for_ms: None,
            repeat: false,
        }
    }

    #[tokio::test]
    async fn a_flapping_key_over_its_rate_is_coalesced_without_blocking_other_keys() {
        let directory = tempfile::tempdir().unwrap();
        let store = StateStore::Embedded(
            crate::state::EmbeddedStore::open(directory.path().to_owned())
                .await
                .unwrap(),
        );
        let metrics = Metrics::default();
        let (mut task, handle, mut receiver) = SinkTask::new(
            sink(1),
            "http://127.0.0.1:9187",
            store.clone(),
            metrics.clone(),
            Directory::default(),
            crate::ha::Leadership::always(),
        );
        // acme already had its one notification this hour.
        task.accepted(&notification("acme", "critical", true));
        for item in [
            notification("acme", "ok", false),
            notification("acme", "critical", true),
            notification("globex", "critical", true),
        ] {
            handle.enqueue(&store, item).await;
        }
        while let Ok(envelope) = receiver.try_recv() {
            task.push(envelope).await;
        }
        assert_eq!(
            store.outbox_list("hook").await.unwrap().len(),
            3,
            "stored before delivery"
        );
        let next = task.next_eligible().await.unwrap();
        assert_eq!(
            task.queue[next].envelope.notification.key, "globex",
            "other keys are not blocked"
        );
        assert_eq!(
            task.queue.len(),
            2,
            "acme's older entry was superseded by its newest"
        );
        assert_eq!(task.queue[0].envelope.notification.status, "critical");
        let suppressed = metrics
            .notifications_suppressed
            .get_or_create(&crate::metrics::SinkLabels {
                sink: "hook".into(),
            })
            .get();
        assert_eq!(suppressed, 1);
        assert_eq!(
            store.outbox_list("hook").await.unwrap().len(),
            2,
            "the superseded entry left the outbox"
        );
    }

    pub(crate) async fn embedded_store(directory: &tempfile::TempDir) -> StateStore {
        StateStore::Embedded(
            crate::state::EmbeddedStore::open(directory.path().to_owned())
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn entries_stored_late_are_stored_again_in_queue_order() {
        let directory = tempfile::tempdir().unwrap();
        let store = embedded_store(&directory).await;
        let (mut task, _handle, _receiver) = SinkTask::new(
            sink(100),
            "http://127.0.0.1:9187",
            store.clone(),
            Metrics::default(),
            Directory::default(),
            crate::ha::Leadership::always(),
        );
        // The trigger arrived while the store was down; the resolve after it was stored.
        task.push(Envelope {
            still_firing: false,
            outbox_id: None,
            notification: notification("acme", "critical", true),
        })
        .await;
        let resolve = notification("acme", "ok", false);
        let resolve_id = store
            .outbox_push("hook", &serde_json::to_string(&resolve).unwrap())
            .await
            .unwrap();
        task.push(Envelope {
            still_firing: false,
            outbox_id: Some(resolve_id.clone()),
            notification: resolve,
        })
        .await;

        task.store_unstored().await;

        let replayed: Vec<String> = store
            .outbox_list("hook")
            .await
            .unwrap()
            .into_iter()
            .map(|(_, json)| serde_json::from_str::<Notification>(&json).unwrap().status)
            .collect();
        assert_eq!(
            replayed,
            ["critical", "ok"],
            "after a restart the trigger replays before its resolve"
        );
        assert!(task
            .queue
            .iter()
            .all(|queued| queued.envelope.outbox_id.is_some()));
        assert_ne!(
            task.queue[1].envelope.outbox_id.as_deref(),
            Some(resolve_id.as_str()),
            "the resolve was stored again behind the trigger"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn send_times_are_forgotten_after_the_rate_limit_period() {
        let directory = tempfile::tempdir().unwrap();
        let (mut task, _handle, _receiver) = SinkTask::new(
            sink(12),
            "http://127.0.0.1:9187",
            embedded_store(&directory).await,
            Metrics::default(),
            Directory::default(),
            crate::ha::Leadership::always(),
        );
        for tenant in 0..1000 {
            task.accepted(&notification(
                &format!("tenant-{tenant}"),
                "critical",
                false,
            ));
        }
        assert_eq!(task.sent.len(), 1000);
        task.prune_sent(Instant::now());
        assert_eq!(task.sent.len(), 1000, "still within the period");
        tokio::time::advance(Duration::from_secs(3601)).await;
        task.prune_sent(Instant::now());
        assert!(
            task.sent.is_empty(),
            "bounded by what paged within the period"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_falls_back_no_earlier_than_fallback_after() {
        let directory = tempfile::tempdir().unwrap();
        let store = embedded_store(&directory).await;
        let sinks = Directory::default();
        // A port nothing listens on: connection refused, a transient error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut primary_config = sink(100);
        primary_config.kind = SinkKind::PagerDuty {
            url: reqwest::Url::parse(&format!("http://127.0.0.1:{port}/v2/enqueue")).unwrap(),
            routing_key: crate::config::Secret::new("R0UT1NG"),
        };
        primary_config.fallback = vec!["backup".into()];
        primary_config.fallback_after = Duration::from_secs(3);
        let mut backup_config = sink(100);
        backup_config.name = "backup".into();
        let (mut primary, primary_handle, _primary_receiver) = SinkTask::new(
            primary_config,
            "http://127.0.0.1:9187",
            store.clone(),
            Metrics::default(),
            sinks.clone(),
            crate::ha::Leadership::always(),
        );
        let (_backup, backup_handle, mut backup_receiver) = SinkTask::new(
            backup_config,
            "http://127.0.0.1:9187",
            store.clone(),
            Metrics::default(),
            sinks.clone(),
            crate::ha::Leadership::always(),
        );
        let _ = sinks.set(HashMap::from([
            ("hook".to_owned(), primary_handle),
            ("backup".to_owned(), backup_handle),
        ]));
        let page = notification("acme", "critical", true);
        let delivery = primary.sender.send(&page).await;
        assert!(
            matches!(delivery, Delivery::Transient { .. }),
            "connection refused is transient: {delivery:?}"
        );
        primary
            .push(Envelope {
                still_firing: false,
                outbox_id: None,
                notification: page,
            })
            .await;
        for _ in 0..3 {
            primary.fall_back().await;
            assert!(
                backup_receiver.try_recv().is_err(),
                "not before fallback_after"
            );
            tokio::time::advance(Duration::from_millis(999)).await;
        }
        primary.fall_back().await;
        assert!(backup_receiver.try_recv().is_err(), "not at 2.997 s");
        tokio::time::advance(Duration::from_millis(3)).await;
        primary.fall_back().await;
        assert_eq!(backup_receiver.try_recv().unwrap().notification.key, "acme");
    }

    #[tokio::test]
    async fn a_resolve_follows_its_trigger_to_the_fallback_and_a_rejected_entry_falls_back_at_once()
    {
        let directory = tempfile::tempdir().unwrap();
        let store = embedded_store(&directory).await;
        let metrics = Metrics::default();
        let sinks = Directory::default();
        let mut primary_config = sink(100);
        primary_config.fallback = vec!["backup".into()];
        primary_config.fallback_after = Duration::ZERO;
        let mut backup_config = sink(100);
        backup_config.name = "backup".into();
        let (mut primary, primary_handle, _primary_receiver) = SinkTask::new(
            primary_config,
            "http://127.0.0.1:9187",
            store.clone(),
            metrics.clone(),
            sinks.clone(),
            crate::ha::Leadership::always(),
        );
        let (_backup, backup_handle, mut backup_receiver) = SinkTask::new(
            backup_config,
            "http://127.0.0.1:9187",
            store.clone(),
            metrics.clone(),
            sinks.clone(),
            crate::ha::Leadership::always(),
        );
        let _ = sinks.set(HashMap::from([
            ("hook".to_owned(), primary_handle),
            ("backup".to_owned(), backup_handle),
        ]));

        primary
            .push(Envelope {
                still_firing: false,
                outbox_id: None,
                notification: notification("acme", "critical", true),
            })
            .await;
        primary.fall_back().await;
        primary
            .push(Envelope {
                still_firing: false,
                outbox_id: None,
                notification: notification("acme", "ok", false),
            })
            .await;
        primary
            .push(Envelope {
                still_firing: false,
                outbox_id: None,
                notification: notification("globex", "critical", true),
            })
            .await;
        let mut at_backup = Vec::new();
        while let Ok(envelope) = backup_receiver.try_recv() {
            at_backup.push((envelope.notification.key, envelope.notification.status));
        }
        assert_eq!(
            at_backup,
            [
                ("acme".to_owned(), "critical".to_owned()),
                ("acme".to_owned(), "ok".to_owned()),
            ],
            "the fallback got acme's trigger and then its resolve, and nothing of globex yet"
        );
        assert_eq!(
            primary.fallbacks.open_incidents(),
            0,
            "acme's incident closed"
        );

        // Rejected outright: the fallback gets it without waiting for fallback_after.
        let rejected = notification("initech", "critical", true);
        primary.send_to_fallbacks(&rejected, "was rejected").await;
        let envelope = backup_receiver.try_recv().unwrap();
        assert_eq!(envelope.notification.key, "initech");
    }

    #[tokio::test]
    async fn an_alert_firing_before_a_restart_is_reminded_of_but_not_sent_again() {
        let directory = tempfile::tempdir().unwrap();
        let store = embedded_store(&directory).await;
        let sinks = Directory::default();
        let mut config = sink(100);
        config.repeat_interval = Duration::ZERO;
        let (mut task, handle, mut receiver) = SinkTask::new(
            config,
            "http://127.0.0.1:9187",
            store.clone(),
            Metrics::default(),
            sinks.clone(),
            crate::ha::Leadership::always(),
        );
        let _ = sinks.set(HashMap::from([("hook".to_owned(), handle.clone())]));
        handle.still_firing(notification("acme", "critical", true));
        let envelope = receiver.try_recv().unwrap();
        assert!(envelope.still_firing);
        task.remember_firing(envelope.notification);
        assert!(task.queue.is_empty(), "nothing is sent again at start");

        task.repeat_firing().await;
        let reminder = receiver.try_recv().expect("repeat_interval reminds");
        assert!(!reminder.still_firing);
        assert!(reminder.notification.repeat);
        assert_eq!(reminder.notification.key, "acme");
        assert_eq!(store.outbox_list("hook").await.unwrap().len(), 1);
    }
}
