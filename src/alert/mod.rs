//! Turns status changes into notifications and delivers them to the configured sinks.
//!
//! Each sink runs as its own task with its own queue, so a slow or dead sink never delays
//! another. Transient failures (connection errors, timeouts, 5xx, 429) are retried with
//! exponential backoff and jitter until they succeed or freshwatch shuts down; a notification is
//! never dropped silently: a permanent refusal (other 4xx) is logged and counted as `rejected`.
//!
//! Layout: [`Dispatcher`] (here) routes each notice to the sinks that want it, through each
//! sink's bounded [`inbox`]; [`delivery`] is the notification sink task (outbox, rate limits,
//! repeats) over a `transport` (HTTP kinds) or `email`; `alertmanager` keeps alerts alive in
//! Alertmanager; [`fallback`] copies what a sink could not deliver; `retry` paces retries;
//! [`supervise`] restarts a sink task that died; [`notification`] and [`render`] are what is
//! stored and sent.

mod alertmanager;
pub mod delivery;
mod email;
pub mod fallback;
pub mod inbox;
pub mod notification;
pub mod render;
mod retry;
pub mod supervise;
mod transport;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::clock::{human_duration_ms, rfc3339, SharedClock};
use crate::config::{AlertmanagerConfig, AlertsConfig};
use crate::evaluate::Transition;
use crate::ha::Leadership;
use crate::metrics::Metrics;
use crate::model::{Severity, Status};
use crate::state::StateStore;

pub use alertmanager::{AlertmanagerSender, AlertmanagerSink};
pub use delivery::{Directory, SinkHandle, SinkTask};
pub use notification::Notification;
pub use retry::{classify_response, Backoff, Delivery, MAX_RETRY_AFTER};

/// The words freshwatch's parts share live below them all, in [`crate::model`].
pub use crate::model::SystemAlert;

/// `alertname` of feed staleness alerts.
pub const FEED_STALE: &str = "FeedStale";

/// What the sinks are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A series changed status.
    Changed(Transition),
    /// A series was already alerting when freshwatch started (restored from state): sinks that
    /// keep firing alerts alive (Alertmanager) take it up again; one-shot sinks stay quiet.
    Restored(Transition),
    /// An alert about freshwatch itself (e.g. a feed at its key limit), or about a watched
    /// consumer group.
    System(SystemAlert),
    /// A system or group alert firing since before a restart: Alertmanager takes it up again;
    /// notification sinks only keep reminding of it.
    RestoredSystem(SystemAlert),
    /// Many keys of a feed at once ([`crate::rollup`]): for notification sinks only. Unchanged
    /// severity (`previous == severity`) is a reminder of one firing since before a restart.
    RollUp(crate::rollup::RollUpNotice),
    /// A key's change that a roll-up pages for: for Alertmanager sinks only.
    Absorbed(Box<Notice>),
    /// One alert about freshwatch for many feeds at once (their `FreshwatchFeedBlind`s, which
    /// reach Alertmanager as [`Notice::Absorbed`]): for notification sinks only.
    SystemRollUp(SystemAlert),
}

/// `alertname` of a feed's record rate fallen below its `min_rate` ([`crate::volume`]): about the
/// feed's data like `FeedStale`, so a feed's silence holds it too.
pub use crate::model::alertname::FEED_VOLUME_DROP;

/// `alertname` of the always-firing dead-man's-switch alert.
pub const WATCHDOG: &str = "FreshwatchWatchdog";

/// `alertname` raised when Kafka is unreachable past `source_grace`.
pub const SOURCE_DOWN: &str = "FreshwatchSourceDown";

/// `alertname` raised when the state store fails past `state.down_grace`.
pub const STATE_STORE_DOWN: &str = "FreshwatchStateStoreDown";

/// `alertname` raised when partitions of watched topics are read by no replica past
/// `source_grace`.
pub const PARTITIONS_UNREAD: &str = "FreshwatchPartitionsUnread";

/// `alertname` raised when a feed cannot be judged (`unknown`) past `evaluation.blind_after`.
pub const FEED_BLIND: &str = "FreshwatchFeedBlind";

/// `alertname` raised when the state store was found empty although Kafka says freshwatch ran
/// before: what it knew of quiet feeds is gone.
pub const STATE_LOST: &str = "FreshwatchStateLost";

/// `alertname` raised when a split feed reaches `max_keys`.
pub const KEY_LIMIT: &str = "FreshwatchKeyLimit";

/// Stable id of a series' incident on every channel: at most 255 characters (PagerDuty's limit).
pub fn dedup_key(feed: &str, key: &str) -> String {
    let plain = format!("freshwatch/{feed}/{key}");
    if plain.len() <= 255 {
        return plain;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("freshwatch/{feed}/sha256:{hex}")
}

/// `profiles/acme`, or `orders` (unsplit, or a split feed as a whole: the empty key).
pub fn series_name(feed: &str, key: &str, split: bool) -> String {
    if split && !key.is_empty() {
        format!("{feed}/{key}")
    } else {
        feed.to_owned()
    }
}

/// One line a person reads on a phone at 3 a.m., then where the series sits (the pipelines it
/// breaks), if known.
pub fn summary(transition: &Transition) -> String {
    let line = status_line(transition);
    match &transition.context {
        Some(context) => format!("{line}; {context}"),
        None => line,
    }
}

fn status_line(transition: &Transition) -> String {
    let name = series_name(&transition.feed, &transition.key, transition.split);
    match (
        transition.to,
        transition.last_seen_ms,
        transition.staleness_ms,
    ) {
        (Status::NeverSeen, _, _) | (_, None, _) => format!(
            "Feed {name} has never been seen (no record on {} since freshwatch started watching)",
            transition.topic
        ),
        (Status::Ok, Some(last_seen_ms), _) => format!(
            "Feed {name} is fresh again after alerting for {} (last {}; last seen {})",
            human_duration_ms(transition.at_ms - transition.alert_since_ms),
            transition.from,
            rfc3339(last_seen_ms)
        ),
        (_, Some(last_seen_ms), staleness) => format!(
            "Feed {name} has had no new data for {} (last seen {})",
            human_duration_ms(staleness.unwrap_or_default()),
            rfc3339(last_seen_ms)
        ),
    }
}

/// Whether a transition starts, changes or ends an alert at all.
pub fn is_notifiable(transition: &Transition) -> bool {
    transition.from.severity() != transition.to.severity()
}

/// The severity a notification about this transition carries: the new one while firing, the
/// old one when resolving.
pub fn notice_severity(transition: &Transition) -> Option<Severity> {
    transition.to.severity().or(transition.from.severity())
}

/// What every sink task shares with the rest of freshwatch.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// This instance's URL, for links in alerts and PagerDuty's `source`.
    pub external_url: String,
    /// Where notification sinks keep their outbox.
    pub store: StateStore,
    pub metrics: Metrics,
    /// Only the leader delivers.
    pub leadership: Arc<Leadership>,
    /// "Now" for what sinks stamp (`startsAt`, `endsAt`), measure (latency) or read
    /// (`Retry-After` dates), so tests can set it.
    pub clock: SharedClock,
    /// Every notification sink's handle, for fallbacks; filled by [`Dispatcher::start`].
    pub directory: Directory,
    /// How many notices wait in a sink's channel before its overflow path takes over.
    pub queue_capacity: usize,
    /// Active silences: notification sinks hold what they match, Alertmanager annotates it.
    pub silences: Arc<crate::silence::Silences>,
}

impl SinkContext {
    pub fn new(
        external_url: &str,
        store: StateStore,
        leadership: Arc<Leadership>,
        metrics: &Metrics,
        clock: SharedClock,
    ) -> SinkContext {
        SinkContext {
            external_url: external_url.to_owned(),
            store,
            metrics: metrics.clone(),
            leadership,
            clock,
            directory: Directory::default(),
            queue_capacity: inbox::CAPACITY,
            silences: Arc::default(),
        }
    }
}

/// The running sinks.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    alertmanagers: Vec<(AlertmanagerConfig, AlertmanagerSender)>,
    sinks: Vec<SinkHandle>,
    /// Sinks named in some `fallback` list: they get only what falls back to them.
    fallback_only: std::collections::HashSet<String>,
    store: StateStore,
    /// Bumped when the state store lost its data: every sink stores its queue again.
    store_resets: Arc<std::sync::atomic::AtomicU64>,
    silences: Arc<crate::silence::Silences>,
    clock: SharedClock,
    metrics: Metrics,
}

impl Dispatcher {
    /// Starts one supervised task per configured sink; they stop when `shutdown` fires, after a
    /// bounded last delivery attempt (notification sinks keep the rest in their outbox).
    pub fn start(
        config: &AlertsConfig,
        context: SinkContext,
        shutdown: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Dispatcher {
        let store_resets = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut alertmanagers = Vec::new();
        for sink in &config.alertmanager {
            context.metrics.declare_sink(&sink.name);
            let overflows = sink_counter(&context.metrics.sink_queue_overflows, &sink.name);
            let (sender, receiver) = inbox::channel(&sink.name, context.queue_capacity, overflows);
            let task = AlertmanagerSink::new(sink.clone(), config.watchdog, &context);
            tasks.spawn(supervised(&sink.name, task, receiver, &context, &shutdown));
            alertmanagers.push((sink.clone(), sender));
        }
        let mut sinks = Vec::new();
        let mut by_name = std::collections::HashMap::new();
        for sink in &config.sinks {
            context.metrics.declare_sink(&sink.name);
            let (mut task, handle, receiver) = SinkTask::new(sink.clone(), &context);
            task.watch_store_resets(store_resets.clone());
            tasks.spawn(supervised(&sink.name, task, receiver, &context, &shutdown));
            by_name.insert(sink.name.clone(), handle.clone());
            sinks.push(handle);
        }
        let _ = context.directory.set(by_name);
        let fallback_only = config
            .sinks
            .iter()
            .flat_map(|sink| &sink.fallback)
            .chain(config.alertmanager.iter().flat_map(|sink| &sink.fallback))
            .cloned()
            .collect();
        Dispatcher {
            alertmanagers,
            sinks,
            fallback_only,
            store: context.store,
            store_resets,
            silences: context.silences,
            clock: context.clock,
            metrics: context.metrics,
        }
    }

    /// The state store lost every outbox: each sink writes what it still holds again.
    pub fn outbox_lost(&self) {
        self.store_resets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Hands a notice to every sink that wants it. Returns once each notification sink has it in
    /// its outbox (or in memory, if the state store is down).
    pub async fn dispatch(&self, notice: Notice) {
        for (config, sink) in &self.alertmanagers {
            if let Some(notice) = for_alertmanager(&notice, config) {
                // Never waits: a full channel coalesces per alert; a closed one means the sink
                // task already stopped for shutdown.
                sink.send(notice);
            }
        }
        if let Some(silence) = self.held_by(&notice) {
            self.metrics.notifications_silenced.inc();
            tracing::info!(silence = %silence.id, notice = ?notice_subject(&notice), "notification held by a silence");
            return;
        }
        for sink in &self.sinks {
            if self.fallback_only.contains(&sink.config.name) {
                // Reached only through a failing sink's fallbacks, after its `fallback_after`.
                continue;
            }
            let min_severity = sink.config.min_severity;
            let (notification, already_paged) = match &notice {
                Notice::Absorbed(_) => continue,
                Notice::RollUp(rollup) => (
                    Notification::from_rollup(rollup, min_severity),
                    rollup.previous == rollup.severity,
                ),
                Notice::Changed(transition) => {
                    (Notification::for_sink(transition, min_severity), false)
                }
                Notice::System(alert) | Notice::SystemRollUp(alert) => {
                    (Some(Notification::from_system(alert)), false)
                }
                Notice::RestoredSystem(alert) => (Some(Notification::from_system(alert)), true),
                // Paged before the restart: not sent again, only reminded of.
                Notice::Restored(transition) => {
                    let as_new = Transition {
                        from: Status::Ok,
                        ..transition.clone()
                    };
                    (Notification::for_sink(&as_new, min_severity), true)
                }
            };
            let Some(notification) = notification else {
                continue;
            };
            let wanted = match &notice {
                Notice::System(_) | Notice::RestoredSystem(_) | Notice::SystemRollUp(_) => {
                    sink.config.accepts_system(notification.severity)
                }
                Notice::Changed(_) | Notice::Restored(_) | Notice::RollUp(_) => sink
                    .config
                    .accepts(&notification.feed, &notification.key, notification.severity),
                Notice::Absorbed(_) => false,
            };
            if !wanted {
                continue;
            }
            if already_paged {
                sink.still_firing(notification);
            } else {
                sink.enqueue(&self.store, notification).await;
            }
        }
    }
}

impl Dispatcher {
    /// The active silence that holds this notice from the notification sinks, if any: what
    /// starts or worsens an alert, and what ends one that began inside the silence.
    fn held_by(&self, notice: &Notice) -> Option<crate::silence::Silence> {
        use crate::silence::Subject;
        let now_ms = self.clock.now_ms();
        let (subject, worse, began_ms) = match notice {
            Notice::Changed(transition) => (
                Subject::Series {
                    feed: &transition.feed,
                    key: &transition.key,
                },
                transition.to.severity() > transition.from.severity(),
                transition.alert_since_ms,
            ),
            Notice::RollUp(rollup) if rollup.previous != rollup.severity => (
                Subject::Series {
                    feed: &rollup.feed,
                    key: "",
                },
                rollup.severity > rollup.previous,
                rollup.opened_at_ms,
            ),
            // A feed's silence holds its volume drops as it holds its staleness.
            Notice::System(alert) if alert.alertname == FEED_VOLUME_DROP => {
                let label = |wanted: &str| {
                    alert
                        .labels
                        .iter()
                        .find(|(name, _)| *name == wanted)
                        .map(|(_, value)| value.as_str())
                };
                (
                    Subject::Series {
                        feed: label("feed")?,
                        key: label("key").unwrap_or(""),
                    },
                    alert.firing,
                    alert.since_ms,
                )
            }
            Notice::System(alert) => {
                let group = alert
                    .labels
                    .iter()
                    .find(|(name, _)| *name == "group")
                    .map(|(_, value)| value.as_str())?;
                let data_loss = alert.alertname == crate::model::alertname::LOST
                    || (alert.alertname == crate::model::alertname::LOSS_IMMINENT
                        && alert.severity == Severity::Critical);
                // `since_ms` is when the alert began, on its resolve too.
                (
                    Subject::Group { group, data_loss },
                    alert.firing,
                    alert.since_ms,
                )
            }
            // Reminders of what was paged before a restart, and what only Alertmanager gets.
            Notice::Restored(_)
            | Notice::RestoredSystem(_)
            | Notice::RollUp(_)
            | Notice::SystemRollUp(_)
            | Notice::Absorbed(_) => return None,
        };
        let silence = self.silences.holding(subject, now_ms)?;
        (worse || began_ms >= silence.starts_at_ms).then_some(silence)
    }
}

/// What a notice is about, for logs.
fn notice_subject(notice: &Notice) -> String {
    match notice {
        Notice::Changed(transition) | Notice::Restored(transition) => {
            series_name(&transition.feed, &transition.key, transition.split)
        }
        Notice::System(alert) | Notice::RestoredSystem(alert) | Notice::SystemRollUp(alert) => {
            alert.dedup_key()
        }
        Notice::RollUp(rollup) => rollup.dedup_key(),
        Notice::Absorbed(inner) => notice_subject(inner),
    }
}

/// `sink`'s own series of a per-sink counter family.
fn sink_counter(
    family: &prometheus_client::metrics::family::Family<crate::metrics::SinkLabels, Counter>,
    sink: &str,
) -> Counter {
    family
        .get_or_create(&crate::metrics::SinkLabels {
            sink: sink.to_owned(),
        })
        .clone()
}

/// `task` under its supervisor, restarted whenever it dies before `shutdown`.
fn supervised<T: supervise::SinkLoop>(
    sink: &str,
    task: T,
    inbox: T::Inbox,
    context: &SinkContext,
    shutdown: &CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + use<T> {
    let restarts = sink_counter(&context.metrics.sink_task_restarts, sink);
    supervise::supervise(sink.to_owned(), task, inbox, shutdown.clone(), restarts)
}

/// What `notice` means to an Alertmanager sink that takes `min_severity` and up of `feeds`: a
/// status below its threshold reads as `ok` there, so critical → warning resolves its critical
/// alert. `None` when the sink wants nothing of it.
fn for_alertmanager(notice: &Notice, config: &AlertmanagerConfig) -> Option<Notice> {
    let wanted_feed = |feed: &str, key: &str| {
        config.feeds.is_empty()
            || config
                .feeds
                .iter()
                .any(|pattern| pattern.matches(feed, key))
    };
    let seen = |status: Status| match status.severity() {
        Some(severity) if severity < config.min_severity => Status::Ok,
        _ => status,
    };
    match notice {
        // Alertmanager groups many keys itself: it gets each key, and no roll-up.
        Notice::RollUp(_) | Notice::SystemRollUp(_) => None,
        Notice::Absorbed(inner) => for_alertmanager(inner, config),
        // Blindness, state loss and consumer groups reach every sink that takes system alerts.
        Notice::System(alert) | Notice::RestoredSystem(alert) => {
            let wanted = config.system && alert.severity >= config.min_severity;
            wanted.then(|| notice.clone())
        }
        Notice::Changed(transition) | Notice::Restored(transition) => {
            if !wanted_feed(&transition.feed, &transition.key) {
                return None;
            }
            let view = Transition {
                from: seen(transition.from),
                to: seen(transition.to),
                ..transition.clone()
            };
            match notice {
                Notice::Changed(_) if view.from.severity() != view.to.severity() => {
                    Some(Notice::Changed(view))
                }
                Notice::Restored(_) if view.to.severity().is_some() => Some(Notice::Restored(view)),
                _ => None,
            }
        }
    }
}

/// Logs a transition: the log line a person greps for.
pub fn log_transition(transition: &Transition) {
    let name = series_name(&transition.feed, &transition.key, transition.split);
    let staleness = transition.staleness_ms.map(human_duration_ms);
    match transition.to {
        Status::Critical | Status::NeverSeen => tracing::error!(
            series = %name, from = %transition.from, to = %transition.to,
            staleness = staleness.as_deref().unwrap_or("never seen"),
            "feed critical: {}", summary(transition)
        ),
        Status::Warning => tracing::warn!(
            series = %name, from = %transition.from, to = %transition.to,
            staleness = staleness.as_deref().unwrap_or("never seen"),
            "feed warning: {}", summary(transition)
        ),
        Status::Ok | Status::Unknown => tracing::info!(
            series = %name, from = %transition.from, to = %transition.to,
            "feed status changed: {}", summary(transition)
        ),
    }
}

#[cfg(test)]
mod tests;
