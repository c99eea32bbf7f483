//! One task per notification sink (webhook, PagerDuty, Slack, email), fed from the durable
//! outbox.
//!
//! A notification is in the outbox before the first delivery attempt and leaves it only when the
//! sink accepted it, so a `kill -9` loses nothing: at start the task re-reads its outbox.
//! Delivery is FIFO, except that a dedup key over its rate limit is passed over (never
//! overtaken by a later entry of the same key) and superseded by its newer entry when one is
//! queued. An entry not accepted within `fallback_after` is copied to the fallback sinks once.
//!
//! The task's channel is bounded ([`inbox::CAPACITY`]). An entry that finds it full is already
//! in the outbox, so the task takes it up from there ([`OutboxOverflow`]); only an entry the state
//! store could not take is held in memory until the task catches up.
//!
//! What the task holds while it cannot deliver is bounded too: past the sink's `max_queued`
//! only the newest state of each dedup key is kept, in memory and in the outbox ([`bound`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fallback::Fallbacks;
use super::inbox::{self, InboxSender, Received};
use super::notification::Notification;
use super::supervise::{Ended, SinkLoop};
use super::transport::Transport;
use super::{Backoff, Delivery, SinkContext};
use crate::clock::SharedClock;
use crate::config::SinkConfig;
use crate::metrics::{Metrics, OUTCOME_ACCEPTED, OUTCOME_FAILED, OUTCOME_REJECTED};
use crate::model::Severity;
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

/// What a notification sink keeps of entries that found its channel full: only those the
/// outbox does not hold; the others the task re-reads from the outbox.
#[derive(Debug, Default)]
pub struct OutboxOverflow {
    unstored: Vec<Envelope>,
}

impl inbox::Overflow<Envelope> for OutboxOverflow {
    fn keep(&mut self, envelope: Envelope) {
        if envelope.outbox_id.is_none() {
            self.unstored.push(envelope);
        }
    }
}

/// The receiving end of a notification sink's channel.
pub type SinkInbox = inbox::Inbox<Envelope, OutboxOverflow>;

/// The way into a sink task.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub config: Arc<SinkConfig>,
    sender: InboxSender<Envelope, OutboxOverflow>,
}

impl SinkHandle {
    /// Tells the sink an alert was firing before this process started (nothing is sent).
    pub fn still_firing(&self, notification: Notification) {
        self.sender.send(Envelope {
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
        // Never waits. A full channel: the task takes the entry up from the outbox (or memory);
        // a closed one: the sink already stopped, the entry stays in the outbox.
        self.sender.send(Envelope {
            still_firing: false,
            outbox_id,
            notification,
        });
    }
}

/// An entry is in the outbox before it is sent to the channel, microseconds apart: one taken up
/// from the outbox longer ago than this, and not come through the channel by a housekeeping
/// round (which runs only when the channel is empty), overflowed and never comes.
const TAKEN_ARRIVES_WITHIN: Duration = Duration::from_secs(5);

/// Every sink's handle by name, filled once all are started (for fallbacks).
pub type Directory = Arc<OnceLock<HashMap<String, SinkHandle>>>;

struct Queued {
    envelope: Envelope,
    enqueued_at: Instant,
    fell_back: bool,
}

/// The running task of one sink.
pub struct SinkTask {
    config: Arc<SinkConfig>,
    transport: Transport,
    store: StateStore,
    metrics: Metrics,
    /// Latency is measured from a notification's `changed_at_ms` to now on this clock.
    clock: SharedClock,
    /// A silenced alert is not reminded of (`repeat_interval`).
    silences: Arc<crate::silence::Silences>,
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
    /// Ids taken up from the outbox that may still arrive through the channel: then they are
    /// already queued (or delivered, or superseded) and are skipped. Each with when it was
    /// taken: housekeeping runs only once the channel is empty, so one taken long before cannot
    /// arrive any more and is forgotten ([`TAKEN_ARRIVES_WITHIN`]).
    taken_from_outbox: HashMap<String, Instant>,
    /// Entries overflowed into the outbox, but it could not be read: housekeeping tries again.
    outbox_unread: bool,
    /// Test hook: the next delivery attempt panics.
    #[cfg(test)]
    panic_before_delivery: Arc<std::sync::atomic::AtomicBool>,
}

impl SinkTask {
    /// Creates the task and its handle.
    pub fn new(config: SinkConfig, context: &SinkContext) -> (SinkTask, SinkHandle, SinkInbox) {
        let config = Arc::new(config);
        let overflows = context
            .metrics
            .sink_queue_overflows
            .get_or_create(&crate::metrics::SinkLabels {
                sink: config.name.clone(),
            })
            .clone();
        let (sender, receiver) = inbox::channel(&config.name, context.queue_capacity, overflows);
        let fallbacks = Fallbacks::new(config.fallback.clone(), context.directory.clone());
        let task = SinkTask {
            transport: Transport::new(&config, &context.external_url, context.clock.clone()),
            config: config.clone(),
            store: context.store.clone(),
            metrics: context.metrics.clone(),
            clock: context.clock.clone(),
            silences: context.silences.clone(),
            directory: context.directory.clone(),
            queue: VecDeque::new(),
            sent: HashMap::new(),
            firing: HashMap::new(),
            last_send: None,
            leadership: context.leadership.clone(),
            fallbacks,
            store_resets: Default::default(),
            store_resets_seen: 0,
            taken_from_outbox: HashMap::new(),
            outbox_unread: false,
            #[cfg(test)]
            panic_before_delivery: Default::default(),
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

    /// Past `max_queued`, drops every entry a newer one of its dedup key supersedes, from the
    /// queue and the outbox. The survivor keeps the oldest wait of its key, so a coalesced
    /// resolve falls back when its trigger would have. A dropped entry taken up from the outbox
    /// stays marked taken: should it still come through the channel, it must not be queued
    /// again behind the state that superseded it.
    async fn bound_queue(&mut self) {
        let dropped = bound::superseded_past_bound(&self.queue, self.config.max_queued, |queued| {
            queued.envelope.notification.dedup_key.as_str()
        });
        if dropped.is_empty() {
            return;
        }
        let mut is_dropped = vec![false; self.queue.len()];
        for index in &dropped {
            is_dropped[*index] = true;
        }
        let mut waiting_since: HashMap<String, Instant> = HashMap::new();
        let mut superseded_ids = Vec::with_capacity(dropped.len());
        let before = std::mem::take(&mut self.queue);
        for (queued, dropped) in before.into_iter().zip(is_dropped) {
            if !dropped {
                self.queue.push_back(queued);
                continue;
            }
            let since = waiting_since
                .entry(queued.envelope.notification.dedup_key)
                .or_insert(queued.enqueued_at);
            *since = (*since).min(queued.enqueued_at);
            superseded_ids.extend(queued.envelope.outbox_id);
        }
        for queued in &mut self.queue {
            if let Some(since) = waiting_since.get(&queued.envelope.notification.dedup_key) {
                queued.enqueued_at = queued.enqueued_at.min(*since);
            }
        }
        for id in &superseded_ids {
            if let Err(error) = self.store.outbox_remove(&self.config.name, id).await {
                tracing::warn!(sink = %self.name(), %error, "cannot remove a superseded entry from the outbox; the next start coalesces it again");
            }
        }
        self.metrics
            .sink_queue_coalesced
            .get_or_create(&crate::metrics::SinkLabels {
                sink: self.config.name.clone(),
            })
            .inc_by(dropped.len() as u64);
        tracing::warn!(sink = %self.name(), max_queued = self.config.max_queued, coalesced = dropped.len(), queued = self.queue.len(), "sink holds more than max_queued: only the newest notification of each dedup key is kept");
        self.publish_pending();
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

    /// Takes up outbox entries not queued yet: those a previous run left, or that found the
    /// channel full. They queue behind what is queued, in outbox order. Returns whether the
    /// outbox could be read.
    async fn take_up_outbox(&mut self) -> bool {
        let entries = match self.store.outbox_list(&self.config.name).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(sink = %self.name(), %error, "cannot read the outbox; will try again");
                return false;
            }
        };
        let queued: HashSet<String> = self
            .queue
            .iter()
            .filter_map(|queued| queued.envelope.outbox_id.clone())
            .collect();
        let mut taken = 0;
        for (id, json) in entries {
            if queued.contains(&id) {
                continue;
            }
            match serde_json::from_str::<Notification>(&json) {
                Ok(notification) => {
                    taken += 1;
                    self.taken_from_outbox.insert(id.clone(), Instant::now());
                    let envelope = Envelope {
                        still_firing: false,
                        outbox_id: Some(id),
                        notification,
                    };
                    self.push(envelope).await;
                }
                Err(error) => {
                    tracing::error!(sink = %self.name(), %error, entry = %json, "unreadable outbox entry dropped");
                    let _ = self.store.outbox_remove(&self.config.name, &id).await;
                }
            }
        }
        if taken > 0 {
            tracing::info!(sink = %self.name(), pending = taken, "undelivered notifications recovered from the outbox");
        }
        self.bound_queue().await;
        true
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

    async fn forget(&mut self, envelope: &Envelope) {
        if let Some(id) = &envelope.outbox_id {
            self.taken_from_outbox.remove(id);
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
        let now_ms = self.clock.now_ms();
        let silences = self.silences.clone();
        let silenced = |notification: &Notification| {
            let subject = crate::silence::Subject::Series {
                feed: &notification.feed,
                key: &notification.key,
            };
            notification.alertname == super::FEED_STALE
                && silences.holding(subject, now_ms).is_some()
        };
        let due: Vec<Notification> = self
            .firing
            .values_mut()
            .filter(|(notification, last)| {
                now.duration_since(*last) >= self.config.repeat_interval && !silenced(notification)
            })
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
            self.taken_from_outbox.remove(&old_id);
            let _ = self.store.outbox_remove(&self.config.name, &old_id).await;
        }
    }

    /// A critical alert firing since before the restart: reminded of from now on.
    fn remember_firing(&mut self, notification: Notification) {
        if notification.firing && notification.severity == Severity::Critical {
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
        let latency_ms = self.clock.now_ms() - notification.changed_at_ms;
        self.metrics
            .notification_latency
            .get_or_create(&crate::metrics::SinkLabels {
                sink: self.config.name.clone(),
            })
            .observe(latency_ms.max(0) as f64 / 1000.0);
        if notification.firing && notification.severity == Severity::Critical {
            self.firing
                .entry(notification.dedup_key.clone())
                .or_insert_with(|| (notification.clone(), now));
        } else {
            self.firing.remove(&notification.dedup_key);
        }
    }

    /// Delivers until `shutdown` fires; then one bounded pass over what is left. Run again
    /// after a panic, it keeps what it queued and takes up the outbox again.
    pub async fn run(&mut self, inbox: &mut SinkInbox, shutdown: &CancellationToken) -> Ended {
        let mut leader_changes = self.leadership.subscribe();
        if self.leadership.is_leader() {
            self.outbox_unread = !self.take_up_outbox().await;
        }
        let mut backoff = Backoff::new();
        let mut next_attempt = Instant::now();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let ended = loop {
            let leader = self.leadership.is_leader();
            let due = leader && !self.queue.is_empty();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ended::Shutdown,
                // A new leader delivers what the outbox holds, including the old leader's.
                changed = leader_changes.changed() => {
                    if changed.is_ok() && *leader_changes.borrow_and_update() {
                        self.take_over_outbox().await;
                        next_attempt = Instant::now();
                    }
                }
                // A new notification (already in the outbox), or all that overflowed.
                received = inbox.recv() => match received {
                    Received::Item(envelope) => self.receive(envelope).await,
                    Received::Overflow(envelopes, overflow) => self.take_overflow(envelopes, overflow).await,
                    Received::Closed => break Ended::InboxClosed,
                },
                // Fallbacks, repeats, and entries the store could not take earlier.
                _ = housekeeping.tick(), if leader => self.housekeeping().await,
                // Deliver the next eligible entry.
                _ = tokio::time::sleep_until(next_attempt), if due => {
                    next_attempt = Instant::now() + self.deliver_next(&mut backoff).await;
                }
            }
        };
        match inbox.take_all() {
            (envelopes, Some(overflow)) => self.take_overflow(envelopes, overflow).await,
            (envelopes, None) => {
                for envelope in envelopes {
                    self.receive(envelope).await;
                }
            }
        }
        if self.leadership.is_leader() {
            self.drain().await;
        }
        ended
    }

    /// A new notification, or a reminder of one firing since before a restart.
    async fn receive(&mut self, envelope: Envelope) {
        let already_taken = envelope
            .outbox_id
            .as_ref()
            .is_some_and(|id| self.taken_from_outbox.remove(id).is_some());
        if already_taken {
            return;
        }
        if envelope.still_firing {
            self.remember_firing(envelope.notification);
        } else {
            self.push(envelope).await;
            self.bound_queue().await;
        }
    }

    /// The channel overflowed: what it still held comes first, then what overflowed, from the
    /// outbox (or memory, for what the store could not take).
    async fn take_overflow(&mut self, envelopes: Vec<Envelope>, overflow: OutboxOverflow) {
        for envelope in envelopes {
            self.receive(envelope).await;
        }
        self.outbox_unread = !self.take_up_outbox().await;
        for envelope in overflow.unstored {
            self.receive(envelope).await;
        }
    }

    /// Just became leader: what is stored comes back from the outbox, in its order; what is
    /// only in memory (written while the store was down) must not be lost on the way.
    async fn take_over_outbox(&mut self) {
        let (unstored, stored): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|queued| queued.envelope.outbox_id.is_none());
        if self.take_up_outbox().await {
            let queued: HashSet<&String> = self
                .queue
                .iter()
                .filter_map(|queued| queued.envelope.outbox_id.as_ref())
                .collect();
            self.taken_from_outbox.retain(|id, _| queued.contains(id));
            self.outbox_unread = false;
        } else {
            // Unread: keep what was queued rather than nothing.
            self.queue.extend(stored);
            self.outbox_unread = true;
        }
        self.queue.extend(unstored);
        self.bound_queue().await;
        self.publish_pending();
    }

    /// Once a second while leading.
    async fn housekeeping(&mut self) {
        if self.outbox_unread {
            self.outbox_unread = !self.take_up_outbox().await;
        }
        self.fall_back().await;
        self.repeat_firing().await;
        self.prune_sent(Instant::now());
        self.taken_from_outbox
            .retain(|_, taken_at| taken_at.elapsed() < TAKEN_ARRIVES_WITHIN);
        self.forget_lost_outbox();
        self.store_unstored().await;
    }

    /// One delivery attempt of the next eligible entry; returns how long to wait before the
    /// next one.
    async fn deliver_next(&mut self, backoff: &mut Backoff) -> Duration {
        if let Some(wait) = self.spacing_wait() {
            return wait;
        }
        let Some(index) = self.next_eligible().await else {
            return Duration::from_secs(1);
        };
        let notification = self.queue[index].envelope.notification.clone();
        #[cfg(test)]
        if self
            .panic_before_delivery
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("test hook: the sink task panics before delivering");
        }
        match self.transport.send(&notification).await {
            Delivery::Accepted => {
                self.metrics
                    .count_alert(&self.config.name, OUTCOME_ACCEPTED);
                if let Some(queued) = self.queue.remove(index) {
                    self.forget(&queued.envelope).await;
                }
                self.accepted(&notification);
                self.publish_pending();
                backoff.reset();
                Duration::ZERO
            }
            Delivery::Transient { error, retry_after } => {
                self.metrics.count_alert(&self.config.name, OUTCOME_FAILED);
                let delay = backoff.next_delay(retry_after);
                tracing::warn!(sink = %self.config.name, %error, queued = self.queue.len(), retry_in = ?delay, "delivery failed, will retry");
                delay
            }
            Delivery::Permanent { error } => {
                self.metrics
                    .count_alert(&self.config.name, OUTCOME_REJECTED);
                tracing::error!(sink = %self.config.name, %error, dedup_key = %notification.dedup_key, summary = %notification.summary, "sink rejected the notification; dropping it");
                self.reject(index, &notification).await;
                Duration::ZERO
            }
        }
    }

    /// Drops a refused entry: it will never succeed here, so the fallbacks get it now.
    async fn reject(&mut self, index: usize, notification: &Notification) {
        if let Some(queued) = self.queue.remove(index) {
            if !queued.fell_back {
                self.send_to_fallbacks(notification, "was rejected").await;
            }
            self.forget(&queued.envelope).await;
        }
        self.publish_pending();
    }

    fn spacing_wait(&self) -> Option<Duration> {
        let spacing = self.transport.min_spacing();
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
            match tokio::time::timeout_at(deadline, self.transport.send(&notification)).await {
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

impl SinkLoop for SinkTask {
    type Inbox = SinkInbox;

    fn run<'a>(
        &'a mut self,
        inbox: &'a mut SinkInbox,
        shutdown: &'a CancellationToken,
    ) -> impl std::future::Future<Output = Ended> + Send + 'a {
        SinkTask::run(self, inbox, shutdown)
    }
}

mod bound;
#[cfg(test)]
pub(crate) mod tests;
