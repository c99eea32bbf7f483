//! Wires the pipeline together and runs it until shutdown.
//!
//! Start: open the state store, restore every series, start the source thread, the evaluation
//! and flush loops, the alert sinks and the HTTP server. Stop (after the shutdown token fires),
//! in order: stop consuming, evaluate and flush state one last time, drain the sinks, stop HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alert::{
    is_notifiable, log_transition, Dispatcher, Notice, SystemAlert, FEED_BLIND, KEY_LIMIT,
    PARTITIONS_UNREAD, SOURCE_DOWN, STATE_LOST, STATE_STORE_DOWN,
};
use crate::clock::SharedClock;
use crate::config::{Config, FeedMode, StateBackend};
use crate::evaluate::Evaluator;
use crate::ha::Leadership;
use crate::http::{HttpState, Readiness};
use crate::knowledge::{Assessment, Knowledge, Sight};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::model::{FeedIndex, Severity};
use crate::source::{Source, SourceError, SourceHandle, TailSource};
use crate::state::{SeriesRecord, StateError, StateStore};
use crate::tracker::Tracker;

/// Why freshwatch could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state store unavailable: {0}")]
    State(#[from] StateError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot listen on {address}: {error}")]
    Bind {
        address: SocketAddr,
        error: std::io::Error,
    },
}

/// Why a started instance stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the {thread} thread stopped while running: {reason}")]
    SourceDied {
        thread: &'static str,
        reason: String,
    },
}

/// A started instance.
#[derive(Debug)]
pub struct Running {
    /// The address the HTTP server actually bound (useful with port 0).
    pub http_address: SocketAddr,
    main: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Running {
    /// Resolves when the instance has stopped: after its shutdown token fired, or on its own
    /// when a part it cannot run without died (then with the reason).
    pub async fn wait(self) -> Result<(), RunError> {
        match self.main.await {
            Ok(result) => result,
            Err(error) => {
                tracing::error!(%error, "freshwatch task failed");
                Ok(())
            }
        }
    }
}

/// The alerts about freshwatch's own sight and memory, and what they remember between ticks.
struct Watch {
    /// Per feed: its name and how long it may be blind before `FreshwatchFeedBlind`.
    feeds: Vec<(Arc<str>, i64)>,
    source_grace_ms: i64,
    state_grace_ms: i64,
    source_alerting: AtomicBool,
    state_alerting: AtomicBool,
    state_down_since_ms: AtomicI64,
    unread_alerting: AtomicBool,
    blind_alerting: Mutex<Vec<bool>>,
    /// Whether any feed or partition is past its bound unseen: the heartbeat stops.
    blind: Arc<AtomicBool>,
    /// The state store was empty at start: `FreshwatchStateLost` once the group shows it had
    /// committed offsets, resolved when every feed had its `critical_after` to show up.
    store_was_empty: bool,
    state_lost_alerting: AtomicBool,
    longest_critical_ms: i64,
    started_ms: i64,
}

/// Watched consumer groups: what the watcher read, and what the API shows.
struct Groups {
    table: Arc<Mutex<crate::groups::GroupsTable>>,
    rules: Vec<crate::groups::GroupRules>,
    views: Arc<Mutex<Vec<crate::groups::TopicView>>>,
    /// A (group, topic) not read for this long is `unknown`.
    stale_after_ms: i64,
}

/// Shared pieces the loops need.
struct Pipeline {
    tracker: Arc<Mutex<Tracker>>,
    evaluator: Mutex<Evaluator>,
    store: StateStore,
    source: SourceHandle,
    dispatcher: Dispatcher,
    metrics: Metrics,
    clock: SharedClock,
    readiness: Arc<Readiness>,
    /// Serialises evaluation (which writes the outbox) and state flushes.
    write_gate: tokio::sync::Mutex<()>,
    /// Only the leader evaluates, writes statuses and sends alerts.
    leadership: Arc<Leadership>,
    /// What freshwatch knows of every partition: whether a feed can be judged now.
    knowledge: Arc<Knowledge>,
    /// The alerts about blindness and state loss.
    watch: Watch,
    groups: Option<Groups>,
    feed_names: Vec<Arc<str>>,
    /// When the evaluation loop last ran, unix ms (the heartbeat's health signal).
    pub last_tick_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Pipeline {
    /// One evaluation tick: judge what may have changed, then notify. Holds the write gate, so
    /// a new status reaches the state store only after its notifications are in the outbox.
    /// Returns whether series wait for knowledge past their crossing (tick again soon).
    async fn evaluate(&self) -> bool {
        let gate = self.write_gate.lock().await;
        let now_ms = self.clock.now_ms();
        self.last_tick_ms.store(now_ms, Ordering::Relaxed);
        // Every replica keeps assessing, so a new leader knows since when feeds are blind.
        let assessment = self.knowledge.assess(now_ms);
        let group_alerts = self.evaluate_groups(now_ms);
        if !self.leadership.is_leader() {
            return false;
        }
        let unreachable_since_ms = self
            .source
            .status
            .unreachable_since_ms
            .load(Ordering::Relaxed);
        let source_down = unreachable_since_ms != 0
            && now_ms - unreachable_since_ms >= self.watch.source_grace_ms;
        let held;
        let (transitions, full_feeds) = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut evaluator = self
                .evaluator
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let full_feeds: Vec<(Arc<str>, usize)> = tracker
                .take_newly_full()
                .into_iter()
                .map(|feed| {
                    let track = tracker.feed(feed);
                    (track.name.clone(), track.max_keys)
                })
                .collect();
            for (index, feed) in assessment.feeds.iter().enumerate() {
                evaluator.set_sight(index as FeedIndex, feed.sight);
            }
            let transitions = evaluator.tick(&mut tracker, now_ms);
            held = evaluator.held() > 0;
            (transitions, full_feeds)
        };
        self.source_down_alert(source_down, now_ms).await;
        self.sight_alerts(&assessment, now_ms).await;
        self.state_lost_alert(now_ms).await;
        for (feed, max_keys) in full_feeds {
            tracing::error!(feed = %feed, max_keys, "feed reached max_keys; records with new split values are refused");
            self.dispatcher.dispatch(Notice::System(SystemAlert {
                alertname: KEY_LIMIT,
                severity: Severity::Warning,
                labels: vec![("feed", feed.to_string())],
                summary: format!(
                    "Feed {feed} reached max_keys ({max_keys}); records with new split values are not tracked"
                ),
                firing: true,
                since_ms: now_ms,
            }))
            .await;
        }
        let mut notified = !group_alerts.is_empty();
        for alert in group_alerts {
            tracing::warn!(alertname = alert.alertname, severity = %alert.severity, firing = alert.firing, summary = %alert.summary, "consumer group alert");
            self.dispatcher.dispatch(Notice::System(alert)).await;
        }
        for transition in transitions {
            self.metrics
                .transitions
                .get_or_create(&OutcomeLabels {
                    outcome: transition.to.as_str(),
                })
                .inc();
            if is_notifiable(&transition) {
                log_transition(&transition);
                self.dispatcher.dispatch(Notice::Changed(transition)).await;
                notified = true;
            } else {
                tracing::debug!(feed = %transition.feed, key = %transition.key, from = %transition.from, to = %transition.to, "status changed");
            }
        }
        // The new statuses follow their notifications into the store at once, not at the next
        // flush: a `kill -9` in between would restore the old status next to a newer page.
        if notified {
            self.flush_holding(gate).await;
        }
        held
    }

    /// Judges the watched groups (every replica: the API and metrics), and returns the alert
    /// changes when leading.
    fn evaluate_groups(&self, now_ms: i64) -> Vec<SystemAlert> {
        let Some(groups) = &self.groups else {
            return Vec::new();
        };
        let leader = self.leadership.is_leader();
        let (views, alerts) = {
            let mut table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            crate::groups::evaluate(
                &mut table,
                &groups.rules,
                now_ms,
                now_ms - groups.stale_after_ms,
                leader,
            )
        };
        self.metrics.groups.show(&views);
        *groups
            .views
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = views;
        alerts
    }

    /// A new leader takes the group states its predecessor wrote: what is firing, and the
    /// earliest known last move of each commit (a follower that started later saw it later).
    async fn adopt_groups(&self) {
        let Some(groups) = &self.groups else {
            return;
        };
        let stored = match self.store.groups_load().await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "new leader cannot read the group states");
                return;
            }
        };
        let mut table = groups
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for (key, json) in stored {
            let parsed = serde_json::from_str::<(String, String)>(&key)
                .ok()
                .zip(serde_json::from_str::<crate::groups::TopicState>(&json).ok());
            let Some(((label, topic), state)) = parsed else {
                continue;
            };
            match table.get_mut(&(Arc::from(label.as_str()), topic.clone())) {
                Some(own) => own.adopt(state),
                None => {
                    table.insert((Arc::from(label.as_str()), topic), state);
                }
            }
        }
    }

    /// Writes the (group, topic) states that changed: commits' last moves and firing alerts
    /// survive a restart. Only the leader writes: a follower's view of what fires is stale.
    async fn flush_groups(&self) {
        let Some(groups) = &self.groups else {
            return;
        };
        if !self.leadership.is_leader() {
            return;
        }
        let entries: Vec<(String, String)> = {
            let mut table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            table
                .iter_mut()
                .filter_map(|(key, state)| std::mem::take(&mut state.dirty).then_some((key, state)))
                .filter_map(|((label, topic), state)| {
                    let key = serde_json::to_string(&(&**label, topic)).ok()?;
                    Some((key, serde_json::to_string(state).ok()?))
                })
                .collect()
        };
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self.store.groups_write(entries.clone()).await {
            tracing::warn!(%error, "group state not written; will retry");
            let mut table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (key, _) in entries {
                if let Ok((label, topic)) = serde_json::from_str::<(String, String)>(&key) {
                    if let Some(state) = table.get_mut(&(Arc::from(label.as_str()), topic)) {
                        state.dirty = true;
                    }
                }
            }
        }
    }

    /// Merges the shared state: last-seen from every replica (by max); a follower also takes
    /// the leader's statuses, so every replica serves every feed.
    async fn reload(&self, take_statuses: bool) -> Result<(), StateError> {
        let snapshot = self.store.load(&self.feed_names).await?;
        let mut tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for record in snapshot.series {
            if let Some(index) = self.feed_names.iter().position(|name| *name == record.feed) {
                tracker.restore(
                    index as FeedIndex,
                    &record.key,
                    record.last_seen_ms,
                    record.status.filter(|_| take_statuses),
                );
            }
        }
        Ok(())
    }

    /// Publishes what this replica knows of its partitions, and takes in every other live
    /// replica's report (one older than three reload intervals belongs to a replica that
    /// stopped: its entry is removed).
    async fn share_knowledge(&self, reload_interval: Duration) -> Result<(), StateError> {
        let Some(redis) = self.store.redis() else {
            return Ok(());
        };
        let now_ms = self.clock.now_ms();
        let instance = self.leadership.instance();
        let own = crate::knowledge::encode_reads(&self.knowledge.own_reads(now_ms));
        redis.knowledge_publish(instance, now_ms, &own).await?;
        let live_since_ms = now_ms - 3 * duration_ms(reload_interval);
        for (peer, at_ms, reads) in redis.knowledge_read().await? {
            if peer == instance {
                continue;
            }
            if at_ms < live_since_ms {
                // A replica that died without saying so (kill -9).
                redis.knowledge_forget(&peer).await?;
                continue;
            }
            match crate::knowledge::decode_reads(&reads) {
                Some(reads) => self.knowledge.observe_peer(&peer, at_ms, reads),
                None => tracing::warn!(%peer, "unreadable knowledge entry of another replica"),
            }
        }
        self.knowledge.forget_dead_peers(now_ms);
        Ok(())
    }

    /// On becoming leader: take the persisted statuses as they are (no page is repeated), judge
    /// every series again, and let Alertmanager sinks take up what is firing.
    async fn promote(&self) {
        let _gate = self.write_gate.lock().await;
        if let Err(error) = self.reload(true).await {
            tracing::warn!(%error, "new leader cannot read the shared state; judging from memory");
        }
        self.adopt_groups().await;
        {
            let mut evaluator = self
                .evaluator
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for feed in 0..self.feed_names.len() {
                evaluator.rejudge_feed(feed as FeedIndex);
            }
        }
        announce_restored_alerts(self).await;
    }

    /// Raises `FreshwatchSourceDown` once the source has been down past its grace; resolves it
    /// when Kafka answers again.
    async fn source_down_alert(&self, source_down: bool, now_ms: i64) {
        if self
            .watch
            .source_alerting
            .swap(source_down, Ordering::Relaxed)
            == source_down
        {
            return;
        }
        if source_down {
            tracing::error!(
                "kafka unreachable past source_grace: feeds that would turn stale are unknown"
            );
        } else {
            tracing::info!("kafka answers again; feeds are judged once caught up");
        }
        self.dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname: SOURCE_DOWN,
                severity: Severity::Critical,
                labels: vec![],
                summary: "freshwatch cannot reach Kafka: feed staleness is not being judged".into(),
                firing: source_down,
                since_ms: now_ms,
            }))
            .await;
    }

    /// Raises `FreshwatchPartitionsUnread` while partitions stay unread by every replica past
    /// `source_grace`, and `FreshwatchFeedBlind` for each feed unknown past its bound.
    async fn sight_alerts(&self, assessment: &Assessment, now_ms: i64) {
        let overdue: Vec<&(crate::knowledge::PartitionKey, i64)> = assessment
            .unowned
            .iter()
            .filter(|(_, since_ms)| now_ms - since_ms >= self.watch.source_grace_ms)
            .collect();
        let unread = !overdue.is_empty();
        if self.watch.unread_alerting.swap(unread, Ordering::Relaxed) != unread {
            let listed: Vec<String> = overdue
                .iter()
                .take(10)
                .map(|((topic, partition), _)| format!("{topic}/{partition}"))
                .collect();
            let since_ms = overdue.first().map_or(now_ms, |(_, since_ms)| *since_ms);
            if unread {
                tracing::error!(partitions = overdue.len(), first = ?listed, "no freshwatch replica is reading some partitions");
            }
            self.dispatcher
                .dispatch(Notice::System(SystemAlert {
                    alertname: PARTITIONS_UNREAD,
                    severity: Severity::Critical,
                    labels: vec![],
                    summary: format!(
                        "No freshwatch replica is reading {} partition(s) ({}{}): feeds on them cannot be judged, so a silence there would not page",
                        overdue.len(),
                        listed.join(", "),
                        if overdue.len() > listed.len() { ", ..." } else { "" }
                    ),
                    firing: unread,
                    since_ms,
                }))
                .await;
        }
        let mut changes = Vec::new();
        {
            let mut alerting = self
                .watch
                .blind_alerting
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (index, feed) in assessment.feeds.iter().enumerate() {
                let (name, bound_ms) = &self.watch.feeds[index];
                let overdue = feed
                    .blind_since_ms
                    .is_some_and(|since_ms| now_ms - since_ms >= *bound_ms);
                if alerting[index] != overdue {
                    alerting[index] = overdue;
                    changes.push((name.clone(), feed.sight, feed.blind_since_ms, overdue));
                }
            }
            self.watch.blind.store(
                alerting.iter().any(|&blind| blind) || unread,
                Ordering::Relaxed,
            );
        }
        for (feed, sight, since_ms, firing) in changes {
            let reason = match sight {
                Sight::Blind(blindness) => blindness.describe(),
                Sight::Known { .. } => "it can be judged again",
            };
            if firing {
                tracing::error!(feed = %feed, reason, "feed cannot be judged past blind_after");
            }
            self.dispatcher
                .dispatch(Notice::System(SystemAlert {
                    alertname: FEED_BLIND,
                    severity: Severity::Critical,
                    labels: vec![("feed", feed.to_string())],
                    summary: format!(
                        "Feed {feed} cannot be judged ({reason}): a silence would not page"
                    ),
                    firing,
                    since_ms: since_ms.unwrap_or(now_ms),
                }))
                .await;
        }
    }

    /// Raises `FreshwatchStateLost` when the state store was empty at start but the consumer
    /// group had committed offsets: an earlier run's knowledge of quiet feeds is gone, and
    /// feeds silent since before this start would page only as `never_seen`, after their
    /// `critical_after`. Resolved once that much time has passed.
    async fn state_lost_alert(&self, now_ms: i64) {
        if !self.watch.store_was_empty {
            return;
        }
        let lost = self.source.status.group_had_commits.load(Ordering::Relaxed)
            && now_ms - self.watch.started_ms < self.watch.longest_critical_ms;
        if self.watch.state_lost_alerting.swap(lost, Ordering::Relaxed) == lost {
            return;
        }
        if lost {
            tracing::error!("the state store was empty but this consumer group read before: what freshwatch knew of quiet feeds is lost");
        }
        self.dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname: STATE_LOST,
                severity: Severity::Critical,
                labels: vec![],
                summary: "freshwatch's state store was empty at start although its consumer group had read before: feeds that went quiet earlier are not known to be stale and page only as never_seen after their critical_after. Check Redis persistence and maxmemory-policy".into(),
                firing: lost,
                since_ms: self.watch.started_ms,
            }))
            .await;
    }

    /// Raises or resolves `FreshwatchStateStoreDown` as the store fails past its grace or
    /// answers again.
    async fn state_down_alert(&self, failed: bool, now_ms: i64) {
        let since_ms = if failed {
            let _ = self.watch.state_down_since_ms.compare_exchange(
                0,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.watch.state_down_since_ms.load(Ordering::Relaxed)
        } else {
            self.watch.state_down_since_ms.swap(0, Ordering::Relaxed)
        };
        let down = failed && now_ms - since_ms >= self.watch.state_grace_ms;
        if self.watch.state_alerting.swap(down, Ordering::Relaxed) == down {
            return;
        }
        self.dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname: STATE_STORE_DOWN,
                severity: Severity::Critical,
                labels: vec![("store", self.store.kind().to_owned())],
                summary: format!(
                    "freshwatch's {} state store does not answer: state is kept in memory until it returns",
                    self.store.kind()
                ),
                firing: down,
                since_ms,
            }))
            .await;
    }

    /// The store answers but lost freshwatch's data (restarted empty, failed over, evicted):
    /// everything in memory is written back, statuses, outbox and `watch_started` included, so
    /// a later restart still knows every quiet feed.
    async fn restore_lost_state(&self) {
        self.metrics.state_store_resets.inc();
        let watch_started: Vec<(Arc<str>, i64)> = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            tracker.mark_all_dirty();
            if let Some(groups) = &self.groups {
                let mut table = groups
                    .table
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                for state in table.values_mut() {
                    state.dirty = true;
                }
            }
            tracker
                .feeds()
                .iter()
                .map(|feed| (feed.name.clone(), feed.watch_started_ms))
                .collect()
        };
        tracing::error!(
            store = self.store.kind(),
            "the state store lost freshwatch's data; writing everything back from memory"
        );
        for (feed, started_ms) in watch_started {
            if let Err(error) = self.store.watch_started(&feed, started_ms).await {
                tracing::warn!(feed = %feed, %error, "watch_started not written back yet");
            }
        }
        self.dispatcher.outbox_lost();
    }

    /// Writes changed series, then commits the offsets they cover.
    async fn flush(&self) {
        let gate = self.write_gate.lock().await;
        self.flush_holding(gate).await;
    }

    async fn flush_holding(&self, gate: tokio::sync::MutexGuard<'_, ()>) {
        if let Ok(false) = self.store.epoch_ensure(self.clock.now_ms()).await {
            self.restore_lost_state().await;
        }
        self.flush_groups().await;
        let leader = self.leadership.is_leader();
        let fence = (leader && self.store.redis().is_some()).then(|| self.leadership.token());
        let (ids, records, positions) = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let ids = tracker.take_dirty();
            let records: Vec<SeriesRecord> = ids
                .iter()
                .map(|&id| {
                    let series = tracker.series(id);
                    SeriesRecord {
                        feed: tracker.feed(id.feed).name.clone(),
                        key: series.key_bytes().to_vec(),
                        last_seen_ms: series.last_seen(),
                        status: leader.then_some((series.status, series.status_since_ms)),
                    }
                })
                .collect();
            (ids, records, tracker.take_positions())
        };
        let result = if records.is_empty() {
            self.store.ping().await
        } else {
            self.store.write(records, fence).await
        };
        match result {
            Ok(()) => {
                if !ids.is_empty() {
                    self.metrics
                        .state_flushes
                        .get_or_create(&OutcomeLabels { outcome: "ok" })
                        .inc();
                }
                self.metrics.state_store_up.set(1);
                if !self.readiness.state_store_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(store = self.store.kind(), "state store answers again");
                }
                if let Some(positions) = positions {
                    self.source.commit(&positions);
                }
                drop(gate);
                self.state_down_alert(false, self.clock.now_ms()).await;
            }
            Err(error) => {
                self.metrics
                    .state_flushes
                    .get_or_create(&OutcomeLabels { outcome: "failed" })
                    .inc();
                self.metrics.state_store_up.set(0);
                self.readiness
                    .state_store_up
                    .store(false, Ordering::Relaxed);
                tracing::warn!(store = self.store.kind(), %error, pending = ids.len(), "state flush failed; keeping changes in memory");
                {
                    let mut tracker = self
                        .tracker
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner());
                    for id in ids {
                        tracker.mark_dirty(id);
                    }
                    if positions.is_some() {
                        tracker.requeue_positions();
                    }
                }
                drop(gate);
                self.state_down_alert(true, self.clock.now_ms()).await;
            }
        }
    }
}

/// Restores state, starts every task, and returns once the HTTP server is bound.
pub async fn start(
    config: Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let start_ms = clock.now_ms();
    let mut tracker = Tracker::new(&config.feeds, start_ms);
    let feed_names: Vec<Arc<str>> = config.feeds.iter().map(|feed| feed.name.clone()).collect();
    let (store, watch_started, snapshot, store_was_empty) =
        open_state_store(&config, &feed_names, start_ms, &shutdown).await?;
    if let Some(policy) = match store.redis() {
        Some(redis) => redis.eviction_risk().await,
        None => None,
    } {
        tracing::warn!(%policy, "redis may evict freshwatch's keys under memory pressure (maxmemory-policy); use noeviction or a dedicated instance");
    }
    for (index, started) in watch_started.into_iter().enumerate() {
        tracker.set_watch_started(index as FeedIndex, started);
    }
    let restored = snapshot.series.len();
    for record in snapshot.series {
        if let Some(index) = feed_names.iter().position(|name| *name == record.feed) {
            tracker.restore(
                index as FeedIndex,
                &record.key,
                record.last_seen_ms,
                record.status,
            );
        }
    }
    tracing::info!(store = store.kind(), series = restored, "state restored");

    let tracker = Arc::new(Mutex::new(tracker));
    let groups = if config.groups.is_empty() {
        None
    } else {
        Some(restore_groups(&config, &store).await)
    };
    let evaluator = Evaluator::new(&config.feeds);
    let rules: Arc<[_]> = evaluator.rules().to_vec().into();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, tracker.clone(), rules.clone(), clock.clone());
    metrics.state_store_up.set(1);
    if let Some(redis) = store.redis() {
        metrics
            .state_store_evictable
            .set(i64::from(redis.eviction_risk().await.is_some()));
    }
    for name in &feed_names {
        metrics.declare_feed(name);
    }

    let knowledge = Arc::new(Knowledge::new(
        config
            .feeds
            .iter()
            .map(|feed| (feed.topics.clone(), feed.mode))
            .collect(),
        knowledge_max_age_ms(&config),
        3 * duration_ms(config.ha.reload_interval),
        duration_ms(config.evaluation.recovery_grace),
    ));
    let (source, source_handle) = Source::new(
        &config,
        tracker.clone(),
        metrics.clone(),
        clock.clone(),
        knowledge.clone(),
    )?;
    let tail_source = TailSource::new(
        &config,
        tracker.clone(),
        clock.clone(),
        source_handle.status.clone(),
        metrics.clone(),
        knowledge.clone(),
    )?;
    let group_watcher = crate::groups::watcher::GroupWatcher::new(
        &config,
        groups
            .as_ref()
            .map(|groups| groups.table.clone())
            .unwrap_or_default(),
        clock.clone(),
        metrics.groups.clone(),
    )
    .map_err(SourceError::Create)?;
    let readiness = Arc::new(Readiness::new(
        source_handle.status.clone(),
        config
            .feeds
            .iter()
            .any(|feed| feed.mode == FeedMode::Consume),
        tail_source.is_some(),
    ));
    let listener = crate::http::bind(config.http.listen)
        .await
        .map_err(|error| StartError::Bind {
            address: config.http.listen,
            error,
        })?;
    let http_address = listener.local_addr().map_err(|error| StartError::Bind {
        address: config.http.listen,
        error,
    })?;

    // Phase tokens, fired in order after `shutdown`.
    let source_stop = CancellationToken::new();
    let sinks_stop = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let loops_stop = CancellationToken::new();

    let leadership = match store.redis() {
        Some(_) => Leadership::new(crate::ha::instance_name(), false),
        None => Leadership::always(),
    };
    let mut sink_tasks = JoinSet::new();
    let dispatcher = Dispatcher::start(
        &config.alerts,
        &config.http.external_url,
        store.clone(),
        leadership.clone(),
        &metrics,
        sinks_stop.clone(),
        &mut sink_tasks,
    );

    let pipeline = Arc::new(Pipeline {
        tracker: tracker.clone(),
        evaluator: Mutex::new(evaluator),
        store,
        source: source_handle,
        dispatcher,
        metrics: metrics.clone(),
        clock: clock.clone(),
        readiness: readiness.clone(),
        write_gate: tokio::sync::Mutex::new(()),
        leadership: leadership.clone(),
        feed_names: feed_names.clone(),
        knowledge,
        groups,
        watch: Watch {
            feeds: config
                .feeds
                .iter()
                .map(|feed| {
                    let bound = config.evaluation.blind_after.unwrap_or(feed.critical_after);
                    (feed.name.clone(), duration_ms(bound))
                })
                .collect(),
            source_grace_ms: duration_ms(config.evaluation.source_grace),
            state_grace_ms: duration_ms(config.state.down_grace),
            source_alerting: AtomicBool::new(false),
            state_alerting: AtomicBool::new(false),
            state_down_since_ms: AtomicI64::new(0),
            unread_alerting: AtomicBool::new(false),
            blind_alerting: Mutex::new(vec![false; config.feeds.len()]),
            blind: Arc::new(AtomicBool::new(false)),
            store_was_empty,
            state_lost_alerting: AtomicBool::new(false),
            longest_critical_ms: config
                .feeds
                .iter()
                .map(|feed| duration_ms(feed.critical_after))
                .max()
                .unwrap_or(0),
            started_ms: start_ms,
        },
        last_tick_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
    });
    if leadership.is_leader() {
        metrics.leader.set(1);
        announce_restored_alerts(&pipeline).await;
    }

    // A source thread that stops before shutdown (a panic, a refused resubscribe) would leave
    // freshwatch blind while it looks alive: it stops the whole process with exit code 3, so
    // the supervisor (systemd, Kubernetes) starts a fresh one.
    let (died_sender, mut died) = tokio::sync::mpsc::unbounded_channel::<RunError>();
    let source_token = source_stop.clone();
    let source_thread = supervised("freshwatch-source", "source", died_sender.clone(), {
        let source_token = source_token.clone();
        move || source.run(source_token).map_err(|error| error.to_string())
    });
    let tail_thread = tail_source.map(|tail| {
        let tail_token = source_stop.clone();
        supervised("freshwatch-tail", "tail", died_sender.clone(), move || {
            tail.run(tail_token);
            Ok(())
        })
    });
    let group_thread = group_watcher.map(|watcher| {
        let groups_token = source_stop.clone();
        supervised(
            "freshwatch-groups",
            "group watcher",
            died_sender.clone(),
            move || {
                watcher.run(groups_token);
                Ok(())
            },
        )
    });
    drop(died_sender);

    let mut loops = JoinSet::new();
    // The lease is held until the last alerts are out, then released for a follower.
    let lease_stop = CancellationToken::new();
    let lease_task = pipeline.store.redis().map(|redis| {
        tokio::spawn(crate::ha::run_lease(
            redis.clone(),
            leadership.clone(),
            config.ha.lease,
            lease_stop.clone(),
        ))
    });
    if pipeline.store.redis().is_some() {
        loops.spawn(replica_loop(
            pipeline.clone(),
            config.ha.reload_interval,
            loops_stop.clone(),
        ));
    }
    if let Some(heartbeat) = config.heartbeat.clone() {
        let health = crate::heartbeat::Health {
            last_tick_ms: pipeline.last_tick_ms.clone(),
            evaluation_interval: config.evaluation.interval,
            source: pipeline.source.status.clone(),
            blind: pipeline.watch.blind.clone(),
            clock: clock.clone(),
        };
        loops.spawn(crate::heartbeat::run(
            heartbeat,
            health,
            metrics.clone(),
            loops_stop.clone(),
        ));
    }
    loops.spawn(evaluation_loop(
        pipeline.clone(),
        config.evaluation.interval,
        loops_stop.clone(),
    ));
    let flushing = pipeline.clone();
    loops.spawn(every(
        config.state.flush_interval,
        loops_stop.clone(),
        move || {
            let pipeline = flushing.clone();
            async move { pipeline.flush().await }
        },
    ));

    let http_state = HttpState {
        tracker,
        rules,
        clock,
        registry: Arc::new(registry),
        readiness,
        records_consumed: metrics.records_consumed.clone(),
        groups: pipeline
            .groups
            .as_ref()
            .map(|groups| groups.views.clone())
            .unwrap_or_default(),
    };
    let http_task = tokio::spawn(crate::http::serve(listener, http_state, http_stop.clone()));
    tracing::info!(address = %http_address, feeds = feed_names.len(), "freshwatch running");

    let stop_knowledge = pipeline.knowledge.clone();
    let stop_clock = pipeline.clock.clone();
    let main = tokio::spawn(async move {
        let failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some(error) = died.recv() => {
                stop_knowledge.observe_source_failure(stop_clock.now_ms());
                tracing::error!(%error, "stopping: freshwatch cannot watch without it");
                Some(error)
            }
        };
        tracing::info!("shutting down");
        source_stop.cancel();
        let joined = tokio::task::spawn_blocking(move || {
            if let Some(tail_thread) = tail_thread {
                let _ = tail_thread.join();
            }
            if let Some(group_thread) = group_thread {
                let _ = group_thread.join();
            }
            source_thread.join()
        });
        if tokio::time::timeout(Duration::from_secs(10), joined)
            .await
            .is_err()
        {
            tracing::error!("source thread did not stop in time");
        }
        loops_stop.cancel();
        while loops.join_next().await.is_some() {}
        pipeline.evaluate().await;
        pipeline.flush().await;
        sinks_stop.cancel();
        let drain = async { while sink_tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), drain)
            .await
            .is_err()
        {
            tracing::error!("alert sinks did not drain in time");
        }
        lease_stop.cancel();
        if let Some(lease_task) = lease_task {
            let _ = lease_task.await;
        }
        http_stop.cancel();
        let _ = http_task.await;
        tracing::info!("stopped");
        failure.map_or(Ok(()), Err)
    });
    Ok(Running { http_address, main })
}

/// Opens the state store and reads what it holds: when each feed was first watched, and every
/// series. Redis that does not answer at start (it may be restarting with everything else after
/// an outage) is waited for, with backoff, rather than exited on: without its state freshwatch
/// would forget every feed that went quiet. An embedded store that cannot be opened is a
/// permanent problem (a path or a second instance on the same file) and fails at once.
async fn open_state_store(
    config: &Config,
    feed_names: &[Arc<str>],
    start_ms: i64,
    shutdown: &CancellationToken,
) -> Result<(StateStore, Vec<i64>, crate::state::Snapshot, bool), StartError> {
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = async {
            let store = StateStore::open(&config.state).await?;
            let held = store.epoch_ensure(start_ms).await?;
            let mut watch_started = Vec::with_capacity(feed_names.len());
            for name in feed_names {
                watch_started.push(store.watch_started(name, start_ms).await?);
            }
            let snapshot = store.load(feed_names).await?;
            Ok::<_, StateError>((store, watch_started, snapshot, !held))
        };
        let error = match attempt.await {
            Ok(opened) => return Ok(opened),
            Err(error) => error,
        };
        if matches!(config.state.backend, StateBackend::Embedded { .. }) {
            return Err(StartError::State(error));
        }
        tracing::error!(%error, retry_in = ?delay, "state store does not answer at start; waiting for it");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(StartError::State(error)),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// The watched groups' persisted state (commits' last moves, firing alerts); what cannot be
/// read starts empty, and the watcher fills it in.
async fn restore_groups(config: &Config, store: &StateStore) -> Groups {
    let mut table = crate::groups::GroupsTable::new();
    match store.groups_load().await {
        Ok(entries) => {
            for (key, json) in entries {
                let parsed = serde_json::from_str::<(String, String)>(&key)
                    .ok()
                    .zip(serde_json::from_str::<crate::groups::TopicState>(&json).ok());
                match parsed {
                    Some(((label, topic), state)) if state.rules < config.groups.len() => {
                        table.insert((Arc::from(label.as_str()), topic), state);
                    }
                    Some(_) => {}
                    None => tracing::warn!(%key, "unreadable group state ignored"),
                }
            }
        }
        Err(error) => tracing::warn!(%error, "group state not restored"),
    }
    Groups {
        table: Arc::new(Mutex::new(table)),
        rules: config
            .groups
            .iter()
            .map(crate::groups::GroupRules::from_config)
            .collect(),
        views: Arc::default(),
        stale_after_ms: 3 * duration_ms(config.kafka.groups_interval) + 10_000,
    }
}

/// Sinks that keep alerts alive (Alertmanager) must take up alerts that were firing before a
/// restart; one-shot sinks ignore these.
async fn announce_restored_alerts(pipeline: &Pipeline) {
    let now_ms = pipeline.clock.now_ms();
    let restored: Vec<_> = {
        let tracker = pipeline
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let evaluator = pipeline
            .evaluator
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        tracker
            .all_ids()
            .filter(|&id| tracker.series(id).status.severity().is_some())
            .map(|id| evaluator.describe(&tracker, id, now_ms))
            .collect()
    };
    for transition in restored {
        pipeline
            .dispatcher
            .dispatch(Notice::Restored(transition))
            .await;
    }
    let group_alerts = pipeline.groups.as_ref().map(|groups| {
        let table = groups
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        crate::groups::firing(&table, now_ms)
    });
    for alert in group_alerts.into_iter().flatten() {
        pipeline
            .dispatcher
            .dispatch(Notice::RestoredSystem(alert))
            .await;
    }
}

/// Evaluates every `interval`; while series wait for knowledge past their crossing (the next
/// statistics), every 100 ms, so a page waits for that knowledge and not for a whole interval.
async fn evaluation_loop(pipeline: Arc<Pipeline>, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let soon = Duration::from_millis(100).min(interval);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        while pipeline.evaluate().await {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(soon) => {}
            }
        }
    }
}

/// Runs `work` every `interval` until `stop` fires; a slow run delays the next, never bursts.
async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => work().await,
        }
    }
}

/// With shared state: reloads it every `interval`, and promotes this instance when it wins the
/// lease.
async fn replica_loop(pipeline: Arc<Pipeline>, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leadership = pipeline.leadership.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            // Won (or lost) the lease.
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
                let leader = *leadership.borrow_and_update();
                pipeline.metrics.leader.set(i64::from(leader));
                if leader {
                    pipeline.promote().await;
                }
            }
            // Merge what the other replicas read, and share how far behind each one is.
            _ = ticker.tick() => {
                let take_statuses = !pipeline.leadership.is_leader();
                if let Err(error) = pipeline.reload(take_statuses).await {
                    tracing::debug!(%error, "shared state reload failed");
                }
                if let Err(error) = pipeline.share_knowledge(interval).await {
                    tracing::debug!(%error, "knowledge not shared");
                }
            }
        }
    }
    if let Some(redis) = pipeline.store.redis() {
        let _ = redis.knowledge_forget(pipeline.leadership.instance()).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs `body` on a named thread; if it ends while its stop token has not fired, or panics,
/// says so on `died`. The join handle lets shutdown wait for it.
fn supervised<F>(
    name: &str,
    thread: &'static str,
    died: tokio::sync::mpsc::UnboundedSender<RunError>,
    body: F,
) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let reason = match outcome {
                Ok(Ok(())) => "it returned".to_owned(),
                Ok(Err(error)) => error,
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "it panicked".to_owned()),
            };
            // After shutdown the receiver is gone or no longer read: nothing to report.
            let _ = died.send(RunError::SourceDied { thread, reason });
        })
        .expect("spawning a thread")
}

/// How old the newest knowledge of a partition may be before it counts for nothing: three
/// reports of the slowest reporter (statistics, peers, tail rounds, metadata probes).
fn knowledge_max_age_ms(config: &Config) -> i64 {
    let mut slowest = config
        .kafka
        .statistics_interval()
        .max(crate::source::PROBE_INTERVAL);
    if !matches!(config.state.backend, StateBackend::Embedded { .. }) {
        slowest = slowest.max(config.ha.reload_interval);
    }
    if config.feeds.iter().any(|feed| feed.mode == FeedMode::Tail) {
        slowest = slowest.max(config.kafka.tail_interval);
    }
    3 * duration_ms(slowest) + duration_ms(config.evaluation.interval)
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
