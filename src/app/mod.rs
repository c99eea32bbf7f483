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

mod groups;
mod loops;
mod store;
mod watch;

use groups::{restore_groups, Groups};
use loops::{evaluation_loop, every, replica_loop, supervised};
use store::open_state_store;
use watch::Watch;

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
                tracker.merge_shared(
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
    async fn share_knowledge(&self) -> Result<(), StateError> {
        let Some(redis) = self.store.redis() else {
            return Ok(());
        };
        let now_ms = self.clock.now_ms();
        let instance = self.leadership.instance();
        let own = crate::knowledge::encode_reads(&self.knowledge.own_reads(now_ms));
        redis.knowledge_publish(instance, now_ms, &own).await?;
        for (peer, at_ms, reads) in redis.knowledge_read().await? {
            if peer == instance {
                continue;
            }
            match crate::knowledge::decode_reads(&reads) {
                Some(reads) => self.knowledge.observe_peer(&peer, at_ms, reads),
                None => tracing::warn!(%peer, "unreadable knowledge entry of another replica"),
            }
        }
        // Replicas whose report aged past the TTL died without saying so (kill -9).
        for peer in self.knowledge.forget_dead_peers(now_ms) {
            redis.knowledge_forget(&peer).await?;
        }
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
    for (index, feed) in config.feeds.iter().enumerate() {
        for value in &feed.expected {
            match store.expected_started(&feed.name, value, start_ms).await {
                Ok(started) => {
                    tracker.set_expected_started(index as FeedIndex, value.as_bytes(), started)
                }
                Err(error) => {
                    tracing::warn!(feed = %feed.name, %value, %error, "expected value's start not read; the feed's is used")
                }
            }
        }
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
        SinkContext::new(
            &config.http.external_url,
            store.clone(),
            leadership.clone(),
            &metrics,
            clock.clone(),
        ),
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
