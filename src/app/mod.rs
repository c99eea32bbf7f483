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
    is_notifiable, log_transition, Dispatcher, Notice, SinkContext, SystemAlert, FEED_BLIND,
    KEY_LIMIT, PARTITIONS_UNREAD, SOURCE_DOWN, STATE_LOST, STATE_STORE_DOWN,
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

mod audits;
mod clusters;
mod groups;
mod hours;
mod key_limit;
mod loops;
mod pipelines;
pub mod reload;
mod silences;
mod start;
mod store;
mod volume;
mod watch;

use clusters::{ClusterRun, Clusters};
use groups::{restore_groups, Groups};
use key_limit::KeyLimits;
use loops::{evaluation_loop, every, replica_loop, supervised};
pub use start::{start, start_with, StartOptions};
use store::open_state_store;
use volume::{restore_volume, Volume};
use watch::Watch;

/// How long a stopping pipeline may take once shutdown (SIGTERM) fires before the process
/// exits without it: the whole process ends within 10 s in every state, even when the state
/// store does not answer the last flush.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

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
    /// Shutdown fired before the start was done (while waiting for the state store).
    #[error("shut down while starting")]
    ShutDown,
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
    /// The state store it opened, for the next instance after a reload.
    pub store: StateStore,
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

/// Shared pieces the loops need.
struct Pipeline {
    tracker: Arc<Mutex<Tracker>>,
    evaluator: Mutex<Evaluator>,
    store: StateStore,
    dispatcher: Dispatcher,
    metrics: Metrics,
    clock: SharedClock,
    readiness: Arc<Readiness>,
    /// Serialises evaluation (which writes the outbox) and state flushes.
    write_gate: tokio::sync::Mutex<()>,
    /// Only the leader evaluates, writes statuses and sends alerts.
    leadership: Arc<Leadership>,
    /// `ha.lease`: how long a lease taken again after a wipe is held before renewal.
    lease: Duration,
    /// Each Kafka cluster's source and knowledge (what freshwatch knows of every partition:
    /// whether a feed can be judged now).
    clusters: Clusters,
    /// The alerts about blindness and state loss.
    watch: Watch,
    groups: Option<Groups>,
    /// The feeds with `min_rate`: volume drops.
    volume: Option<Volume>,
    /// The feeds whose `FreshwatchKeyLimit` fires.
    key_limits: KeyLimits,
    /// `[[pipeline]]`s: hops behind a broken one are held.
    pipelines: Vec<crate::config::PipelineConfig>,
    /// `[[pipeline.audit]]`s: this replica's name for them and the verdicts.
    audits: audits::Audits,
    /// Each pipeline as the last tick saw it, shared with the API and the status page.
    pipeline_views: Arc<Mutex<Vec<crate::pipelines::PipelineView>>>,
    feed_names: Vec<Arc<str>>,
    /// Silences, shared with the API and the sinks.
    silences: crate::silence::SilenceBook,
    /// Open roll-ups (one page for many keys of a feed), and each feed's `rollup_after`.
    rollups: tokio::sync::Mutex<crate::rollup::RollUps>,
    rollup_after: Vec<usize>,
    /// Per feed, how far [`Pipeline::reload`] has read the shared state's change log.
    reload_cursors: tokio::sync::Mutex<Vec<crate::state::ChangeCursor>>,
    /// When the evaluation loop last ran, unix ms (the heartbeat's health signal).
    pub last_tick_ms: Arc<std::sync::atomic::AtomicI64>,
    /// Each feed's last transitions, shared with the status page.
    history: Arc<crate::history::History>,
    /// Some feed learns by hour, and when its hours were last shared (unix ms).
    learns_by_hour: bool,
    hours_shared_ms: AtomicI64,
    /// The state store's `freshwatch:epoch` marker as this replica last saw it.
    epoch_marker: AtomicI64,
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
        let assessment = self.clusters.assess(now_ms);
        self.clusters.export(&self.metrics.clusters, &assessment);
        // Every replica learns, so every replica hears what may be learned.
        self.tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .set_sights(&assessment.feeds, now_ms);
        let group_alerts = self.evaluate_groups(now_ms);
        let volume_alerts = self.evaluate_volume(now_ms);
        let leader = self.leadership.is_leader();
        let audit_alerts = self.judge_audits(&assessment, leader, now_ms).await;
        if !leader {
            self.judge_pipelines(now_ms);
            return false;
        }
        let held;
        let (transitions, full_feeds) = {
            let (mut tracker, mut evaluator) = self.table();
            let full_feeds = tracker.take_newly_full();
            for (index, feed) in assessment.feeds.iter().enumerate() {
                evaluator.set_sight(index as FeedIndex, feed.sight);
            }
            let transitions = evaluator.tick(&mut tracker, now_ms);
            held = evaluator.held() > 0;
            (transitions, full_feeds)
        };
        // After the tick: a hop that breaks together with its upstream is held from its first
        // page.
        let (hop_states, pipeline_holds) = self.judge_pipelines(now_ms);
        self.put_holds(&pipeline_holds, now_ms).await;
        self.silence_ends(now_ms).await;
        // Each cluster's own: one that does not answer pages once, for its feeds only.
        for (cluster, run) in self.clusters.runs.iter().enumerate() {
            self.source_down_alert(
                cluster,
                run.source_down(self.watch.source_grace_ms, now_ms),
                self.clusters.held_count(
                    &assessment,
                    cluster,
                    crate::knowledge::Blindness::SourceDown,
                ),
                now_ms,
            )
            .await;
        }
        self.sight_alerts(&assessment, now_ms).await;
        self.state_lost_alert(now_ms).await;
        self.key_limit_alerts(full_feeds, now_ms).await;
        let mut notified = !group_alerts.is_empty() || !volume_alerts.is_empty();
        for alert in audit_alerts {
            tracing::warn!(alertname = alert.alertname, firing = alert.firing, summary = %alert.summary, "pipeline audit alert");
            self.dispatcher.dispatch(Notice::System(alert)).await;
            notified = true;
        }
        for alert in volume_alerts {
            tracing::warn!(alertname = alert.alertname, firing = alert.firing, summary = %alert.summary, "feed volume alert");
            self.dispatcher.dispatch(Notice::System(alert)).await;
        }
        for mut alert in group_alerts {
            let group = alert
                .labels
                .iter()
                .find(|(name, _)| *name == "group")
                .map(|(_, label)| crate::config::Hop::Group(Arc::from(label.as_str())));
            if let Some(context) = group
                .filter(|_| alert.firing)
                .and_then(|hop| crate::pipelines::context(&pipeline_holds, &hop_states, &hop))
            {
                alert.summary = format!("{}; {context}", alert.summary);
            }
            tracing::warn!(alertname = alert.alertname, severity = %alert.severity, firing = alert.firing, summary = %alert.summary, "consumer group alert");
            self.dispatcher.dispatch(Notice::System(alert)).await;
        }
        let mut notifiable = Vec::new();
        for transition in transitions {
            self.metrics
                .transitions
                .get_or_create(&OutcomeLabels {
                    outcome: transition.to.as_str(),
                })
                .inc();
            if is_notifiable(&transition) {
                let mut transition = transition;
                if transition.to.severity() > transition.from.severity() {
                    transition.context = crate::pipelines::context(
                        &pipeline_holds,
                        &hop_states,
                        &crate::config::Hop::Feed(transition.feed.clone()),
                    );
                }
                log_transition(&transition);
                notifiable.push(transition);
            } else {
                tracing::debug!(feed = %transition.feed, key = %transition.key, from = %transition.from, to = %transition.to, "status changed");
            }
        }
        if !notifiable.is_empty() {
            self.notify(notifiable, now_ms).await;
            notified = true;
        }
        // The new statuses follow their notifications into the store at once, not at the next
        // flush: a `kill -9` in between would restore the old status next to a newer page.
        if notified {
            self.flush_holding(gate).await;
        }
        held
    }

    /// Sends one evaluation's notifiable transitions, through the feeds' roll-ups: a roll-up's
    /// members are written to the state store before anything about them is sent.
    async fn notify(&self, transitions: Vec<crate::evaluate::Transition>, now_ms: i64) {
        self.history
            .record_and_store(&self.store, &transitions)
            .await;
        let mut rollups = self.rollups.lock().await;
        let facts = self.feed_facts();
        let routed = rollups.route(
            transitions,
            |feed| facts.get(feed).cloned().unwrap_or_default(),
            now_ms,
        );
        let entries: Vec<(String, String)> = routed
            .changed
            .iter()
            .map(|feed| {
                let rollup = rollups.get(feed).cloned().unwrap_or_default();
                let json = serde_json::to_string(&rollup).unwrap_or_default();
                (feed.to_string(), json)
            })
            .collect();
        drop(rollups);
        if let Err(error) = self
            .store
            .documents_write(crate::state::Documents::RollUps, entries)
            .await
        {
            // Sent anyway: a page is never held back for the store; after a restart in between,
            // a member's recovery may reach a sink as a resolve of a page it did not get.
            tracing::warn!(%error, "roll-up members not persisted");
        }
        for rollup in routed.rollups {
            tracing::warn!(feed = %rollup.feed, members = rollup.members, severity = ?rollup.severity, "feed roll-up: {}", rollup.summary());
            self.dispatcher.dispatch(Notice::RollUp(rollup)).await;
        }
        for transition in routed.absorbed {
            self.dispatcher
                .dispatch(Notice::Absorbed(Box::new(Notice::Changed(transition))))
                .await;
        }
        for transition in routed.individual {
            self.dispatcher.dispatch(Notice::Changed(transition)).await;
        }
    }

    /// The series table and its judge, locked in that order (always, so never a deadlock).
    fn table(
        &self,
    ) -> (
        std::sync::MutexGuard<'_, Tracker>,
        std::sync::MutexGuard<'_, Evaluator>,
    ) {
        let tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let evaluator = self
            .evaluator
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        (tracker, evaluator)
    }

    /// Per feed name, what roll-up routing needs.
    fn feed_facts(&self) -> std::collections::HashMap<Arc<str>, crate::rollup::FeedFacts> {
        let now_ms = self.clock.now_ms();
        let (tracker, evaluator) = self.table();
        tracker
            .feeds()
            .iter()
            .zip(evaluator.rules())
            .zip(&self.rollup_after)
            .map(|((feed, rules), &rollup_after)| {
                // The thresholds in force now (a window's), which a fixed feed's keys share.
                let in_force = rules.in_force(now_ms);
                let facts = crate::rollup::FeedFacts {
                    rollup_after,
                    keys: feed.keys(),
                    topic: rules.topic.clone(),
                    warn_after_ms: in_force.warn_after_ms,
                    critical_after_ms: in_force.critical_after_ms,
                    learned: rules.learning.is_some(),
                };
                (feed.name.clone(), facts)
            })
            .collect()
    }

    /// Takes up the persisted roll-ups (at start, and on becoming leader).
    async fn restore_rollups(&self) {
        let stored = match self
            .store
            .documents_load(crate::state::Documents::RollUps)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "roll-ups not read; members page on their own");
                return;
            }
        };
        let mut rollups = crate::rollup::RollUps::default();
        for (feed, json) in stored {
            let Some(feed) = self.feed_names.iter().find(|name| ***name == *feed) else {
                continue;
            };
            match serde_json::from_str(&json) {
                Ok(rollup) => rollups.restore(feed.clone(), rollup),
                Err(error) => tracing::warn!(%feed, %error, "unreadable roll-up ignored"),
            }
        }
        *self.rollups.lock().await = rollups;
    }

    /// Merges the shared state: last-seen from every replica (by max); a follower also takes
    /// the leader's statuses, so every replica serves every feed. Reads only what was written
    /// since the last reload.
    async fn reload(&self, take_statuses: bool) -> Result<(), StateError> {
        let changed = {
            let mut cursors = self.reload_cursors.lock().await;
            self.store
                .load_changed(&self.feed_names, &mut cursors)
                .await?
        };
        let mut tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for record in changed {
            if let Some(index) = self.feed_names.iter().position(|name| *name == record.feed) {
                tracker.merge_shared(
                    index as FeedIndex,
                    &record.key,
                    record.last_seen_ms,
                    record.status.filter(|_| take_statuses),
                );
                if let Some(cadence) = &record.cadence {
                    tracker.merge_cadence(index as FeedIndex, &record.key, cadence);
                }
            }
        }
        Ok(())
    }

    /// Publishes what this replica knows of its partitions, and takes in every other live
    /// replica's report (one older than three reload intervals belongs to a replica that
    /// stopped: its entry is removed).
    async fn share_knowledge(&self) -> Result<(), StateError> {
        let Some(redis) = self.store.redis() else {
            return Ok(());
        };
        let now_ms = self.clock.now_ms();
        let instance = self.leadership.instance();
        // Per cluster, under its own key: a partition is known by the replicas that read it on
        // that cluster.
        for (cluster, run) in self.clusters.runs.iter().enumerate() {
            let scope = run.store_scope();
            // Read-throughs only as far as flushed: the leader finds those records in the store.
            let own = crate::knowledge::encode_reads(&self.clusters.shared_reads(cluster, now_ms));
            redis
                .knowledge_publish(scope, instance, now_ms, &own)
                .await?;
            for (peer, at_ms, reads) in redis.knowledge_read(scope).await? {
                if peer == instance {
                    continue;
                }
                match crate::knowledge::decode_reads(&reads) {
                    Some(reads) => run.knowledge.observe_peer(&peer, at_ms, reads),
                    None => {
                        tracing::warn!(%peer, "unreadable knowledge entry of another replica")
                    }
                }
            }
            // Replicas whose report aged past the TTL died without saying so (kill -9).
            for peer in run.knowledge.forget_dead_peers(now_ms) {
                redis.knowledge_forget(scope, &peer).await?;
            }
        }
        self.share_volume_counts(instance, now_ms).await
    }

    /// On becoming leader: take the persisted statuses as they are (no page is repeated), judge
    /// every series again, and let Alertmanager sinks take up what is firing.
    async fn promote(&self) {
        let _gate = self.write_gate.lock().await;
        if let Err(error) = self.reload(true).await {
            tracing::warn!(%error, "new leader cannot read the shared state; judging from memory");
        }
        self.adopt_groups().await;
        self.adopt_volume().await;
        self.adopt_key_limits().await;
        self.adopt_self_alerts().await;
        self.restore_rollups().await;
        self.history.load(&self.store, &self.feed_names).await;
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
}

/// Sinks that keep alerts alive (Alertmanager) must take up alerts that were firing before a
/// restart; one-shot sinks ignore these.
async fn announce_restored_alerts(pipeline: &Pipeline) {
    let now_ms = pipeline.clock.now_ms();
    let restored: Vec<_> = {
        let (tracker, evaluator) = pipeline.table();
        tracker
            .all_ids()
            .filter(|&id| tracker.series(id).status.severity().is_some())
            .map(|id| evaluator.describe(&tracker, id, now_ms))
            .collect()
    };
    let mut rollups = pipeline.rollups.lock().await;
    let facts = pipeline.feed_facts();
    let alerting: std::collections::HashSet<(&str, &str)> = restored
        .iter()
        .map(|transition: &crate::evaluate::Transition| {
            (&*transition.feed, transition.key.as_str())
        })
        .collect();
    let taken_up = rollups.take_up(
        |feed, key| alerting.contains(&(feed, key)),
        |feed| facts.get(feed).cloned().unwrap_or_default(),
        now_ms,
    );
    let members: Vec<bool> = restored
        .iter()
        .map(|transition| rollups.is_member(&transition.feed, &transition.key))
        .collect();
    let entries: Vec<(String, String)> = taken_up
        .iter()
        .map(|notice| {
            let rollup = rollups.get(&notice.feed).cloned().unwrap_or_default();
            let json = serde_json::to_string(&rollup).unwrap_or_default();
            (notice.feed.to_string(), json)
        })
        .collect();
    drop(rollups);
    if let Err(error) = pipeline
        .store
        .documents_write(crate::state::Documents::RollUps, entries)
        .await
    {
        tracing::warn!(%error, "roll-ups not persisted");
    }
    for notice in taken_up {
        pipeline.dispatcher.dispatch(Notice::RollUp(notice)).await;
    }
    for (transition, member) in restored.into_iter().zip(members) {
        let notice = Notice::Restored(transition);
        let notice = if member {
            Notice::Absorbed(Box::new(notice))
        } else {
            notice
        };
        pipeline.dispatcher.dispatch(notice).await;
    }
    let group_alerts = pipeline.groups.as_ref().map(|groups| {
        let table = groups
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        crate::groups::firing(&table, now_ms)
    });
    let volume_alerts = pipeline.firing_volume();
    let key_limit_alerts = pipeline.firing_key_limits();
    for alert in group_alerts
        .into_iter()
        .flatten()
        .chain(volume_alerts)
        .chain(key_limit_alerts)
    {
        pipeline
            .dispatcher
            .dispatch(Notice::RestoredSystem(alert))
            .await;
    }
    for notice in pipeline.watch.firing.restored() {
        pipeline.dispatcher.dispatch(notice).await;
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
