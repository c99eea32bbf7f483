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
    is_notifiable, log_transition, Dispatcher, Notice, SystemAlert, KEY_LIMIT, SOURCE_DOWN,
    STATE_STORE_DOWN,
};
use crate::clock::SharedClock;
use crate::config::{Config, FeedMode, StateBackend, TopicMatcher};
use crate::evaluate::Evaluator;
use crate::ha::Leadership;
use crate::http::{HttpState, Readiness};
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

/// A started instance.
#[derive(Debug)]
pub struct Running {
    /// The address the HTTP server actually bound (useful with port 0).
    pub http_address: SocketAddr,
    main: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Resolves when the instance has stopped after its shutdown token fired.
    pub async fn wait(self) {
        if let Err(error) = self.main.await {
            tracing::error!(%error, "freshwatch task failed");
        }
    }
}

/// Whether freshwatch can see: source reachability and catch-up, per feed.
struct Sight {
    feeds: Vec<(TopicMatcher, FeedMode)>,
    source_grace_ms: i64,
    catchup_tolerance: i64,
    state_grace_ms: i64,
    source_alerting: AtomicBool,
    state_alerting: AtomicBool,
    state_down_since_ms: AtomicI64,
    /// Topics other replicas have not caught up on (from Redis): the leader sees only its own
    /// partitions' lag, so their feeds are not judged until those replicas catch up.
    peers_behind: Mutex<Vec<String>>,
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
    /// What decides whether feeds can be judged, and the alerts about it.
    sight: Sight,
    feed_names: Vec<Arc<str>>,
    /// When the evaluation loop last ran, unix ms (the heartbeat's health signal).
    pub last_tick_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Pipeline {
    /// One evaluation tick: judge what may have changed, then notify. Holds the write gate, so
    /// a new status reaches the state store only after its notifications are in the outbox.
    async fn evaluate(&self) {
        let gate = self.write_gate.lock().await;
        self.last_tick_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
        if !self.leadership.is_leader() {
            return;
        }
        let now_ms = self.clock.now_ms();
        let unreachable_since_ms = self
            .source
            .status
            .unreachable_since_ms
            .load(Ordering::Relaxed);
        let source_down = unreachable_since_ms != 0
            && now_ms - unreachable_since_ms >= self.sight.source_grace_ms;
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
            let peers_behind = self
                .sight
                .peers_behind
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (index, (topics, mode)) in self.sight.feeds.iter().enumerate() {
                let blind = source_down
                    || (*mode == FeedMode::Consume
                        && (!self.source.status.caught_up(
                            &|topic| topics.matches(topic),
                            self.sight.catchup_tolerance,
                        ) || peers_behind.iter().any(|topic| topics.matches(topic))));
                evaluator.set_blind(index as FeedIndex, blind);
            }
            drop(peers_behind);
            (evaluator.tick(&mut tracker, now_ms), full_feeds)
        };
        self.source_down_alert(source_down, now_ms).await;
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
        let mut notified = false;
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

    /// Publishes the topics this replica is behind on; the leader also reads every other live
    /// replica's (entries older than three reload intervals belong to replicas that stopped).
    async fn share_catch_up(&self, reload_interval: Duration) -> Result<(), StateError> {
        let Some(redis) = self.store.redis() else {
            return Ok(());
        };
        let now_ms = self.clock.now_ms();
        let instance = self.leadership.instance();
        let behind = self
            .source
            .status
            .topics_behind(self.sight.catchup_tolerance);
        redis.behind_publish(instance, now_ms, &behind).await?;
        if !self.leadership.is_leader() {
            return Ok(());
        }
        let live_since_ms = now_ms - 3 * duration_ms(reload_interval);
        let mut peers_behind = Vec::new();
        for (peer, at_ms, topics) in redis.behind_read().await? {
            if at_ms < live_since_ms {
                // A replica that died without saying so (kill -9).
                redis.behind_forget(&peer).await?;
            } else if peer != instance {
                peers_behind.extend(topics);
            }
        }
        peers_behind.sort_unstable();
        peers_behind.dedup();
        *self
            .sight
            .peers_behind
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = peers_behind;
        Ok(())
    }

    /// On becoming leader: take the persisted statuses as they are (no page is repeated), judge
    /// every series again, and let Alertmanager sinks take up what is firing.
    async fn promote(&self) {
        let _gate = self.write_gate.lock().await;
        if let Err(error) = self.reload(true).await {
            tracing::warn!(%error, "new leader cannot read the shared state; judging from memory");
        }
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
            .sight
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

    /// Raises or resolves `FreshwatchStateStoreDown` as the store fails past its grace or
    /// answers again.
    async fn state_down_alert(&self, failed: bool, now_ms: i64) {
        let since_ms = if failed {
            let _ = self.sight.state_down_since_ms.compare_exchange(
                0,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.sight.state_down_since_ms.load(Ordering::Relaxed)
        } else {
            self.sight.state_down_since_ms.swap(0, Ordering::Relaxed)
        };
        let down = failed && now_ms - since_ms >= self.sight.state_grace_ms;
        if self.sight.state_alerting.swap(down, Ordering::Relaxed) == down {
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

    /// Writes changed series, then commits the offsets they cover.
    async fn flush(&self) {
        let gate = self.write_gate.lock().await;
        self.flush_holding(gate).await;
    }

    async fn flush_holding(&self, gate: tokio::sync::MutexGuard<'_, ()>) {
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
    let (store, watch_started, snapshot) =
        open_state_store(&config, &feed_names, start_ms, &shutdown).await?;
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
    let evaluator = Evaluator::new(&config.feeds);
    let rules: Arc<[_]> = evaluator.rules().to_vec().into();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, tracker.clone(), rules.clone(), clock.clone());
    metrics.state_store_up.set(1);
    for name in &feed_names {
        metrics.declare_feed(name);
    }

    let (source, source_handle) =
        Source::new(&config, tracker.clone(), metrics.clone(), clock.clone())?;
    let tail_source = TailSource::new(
        &config,
        tracker.clone(),
        clock.clone(),
        source_handle.status.clone(),
        metrics.clone(),
    )?;
    let readiness = Arc::new(Readiness::new(source_handle.status.clone()));
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
        sight: Sight {
            feeds: config
                .feeds
                .iter()
                .map(|feed| (feed.topics.clone(), feed.mode))
                .collect(),
            source_grace_ms: duration_ms(config.evaluation.source_grace),
            catchup_tolerance: i64::try_from(config.evaluation.catchup_tolerance)
                .unwrap_or(i64::MAX),
            state_grace_ms: duration_ms(config.state.down_grace),
            source_alerting: AtomicBool::new(false),
            state_alerting: AtomicBool::new(false),
            state_down_since_ms: AtomicI64::new(0),
            peers_behind: Mutex::new(Vec::new()),
        },
        last_tick_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
    });
    if leadership.is_leader() {
        metrics.leader.set(1);
        announce_restored_alerts(&pipeline).await;
    }

    let source_token = source_stop.clone();
    let source_thread = std::thread::Builder::new()
        .name("freshwatch-source".into())
        .spawn(move || source.run(source_token))
        .expect("spawning a thread");
    let tail_thread = tail_source.map(|tail| {
        let tail_token = source_stop.clone();
        std::thread::Builder::new()
            .name("freshwatch-tail".into())
            .spawn(move || tail.run(tail_token))
            .expect("spawning a thread")
    });

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
            clock: clock.clone(),
        };
        loops.spawn(crate::heartbeat::run(
            heartbeat,
            health,
            metrics.clone(),
            loops_stop.clone(),
        ));
    }
    let evaluating = pipeline.clone();
    loops.spawn(every(
        config.evaluation.interval,
        loops_stop.clone(),
        move || {
            let pipeline = evaluating.clone();
            async move { pipeline.evaluate().await }
        },
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
    };
    let http_task = tokio::spawn(crate::http::serve(listener, http_state, http_stop.clone()));
    tracing::info!(address = %http_address, feeds = feed_names.len(), "freshwatch running");

    let main = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        source_stop.cancel();
        let joined = tokio::task::spawn_blocking(move || {
            if let Some(tail_thread) = tail_thread {
                let _ = tail_thread.join();
            }
            source_thread.join()
        });
        match tokio::time::timeout(Duration::from_secs(10), joined).await {
            Ok(Ok(Ok(Err(error)))) => tracing::error!(%error, "source failed"),
            Ok(Ok(Ok(Ok(())))) => {}
            _ => tracing::error!("source thread did not stop in time"),
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
) -> Result<(StateStore, Vec<i64>, crate::state::Snapshot), StartError> {
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = async {
            let store = StateStore::open(&config.state).await?;
            let mut watch_started = Vec::with_capacity(feed_names.len());
            for name in feed_names {
                watch_started.push(store.watch_started(name, start_ms).await?);
            }
            let snapshot = store.load(feed_names).await?;
            Ok::<_, StateError>((store, watch_started, snapshot))
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
                if let Err(error) = pipeline.share_catch_up(interval).await {
                    tracing::debug!(%error, "catch-up state not shared");
                }
            }
        }
    }
    if let Some(redis) = pipeline.store.redis() {
        let _ = redis.behind_forget(pipeline.leadership.instance()).await;
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

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
