//! Start-up: restore state, build the pipeline, start the threads, loops, sinks and HTTP; and
//! the ordered stop that follows the shutdown token.

use super::*;

/// Phase tokens, fired in order after `shutdown`.
#[derive(Default)]
struct Phases {
    source: CancellationToken,
    loops: CancellationToken,
    sinks: CancellationToken,
    lease: CancellationToken,
    http: CancellationToken,
}

/// What runs besides the pipeline, stopped in order by [`Stopping::run`].
struct Stopping {
    phases: Phases,
    pipeline: Arc<Pipeline>,
    threads: Threads,
    loops: JoinSet<()>,
    sink_tasks: JoinSet<()>,
    lease_task: Option<tokio::task::JoinHandle<()>>,
    http_task: tokio::task::JoinHandle<()>,
}

/// The source, tail and group-watcher threads of every cluster.
struct Threads {
    sources: Vec<std::thread::JoinHandle<()>>,
    others: Vec<std::thread::JoinHandle<()>>,
}

/// One cluster's threads, before they start.
struct ClusterParts {
    name: Arc<str>,
    source: Source,
    tail: Option<TailSource>,
    groups: Option<crate::groups::watcher::GroupWatcher>,
}

/// What a reload hands from one instance to the next (see [`super::reload`]).
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Serve on this listener instead of binding `http.listen`: kept across reloads, so
    /// requests queue rather than fail while the pipeline restarts.
    pub listener: Option<std::net::TcpListener>,
    /// The state store already open (an embedded file cannot be opened twice).
    pub store: Option<StateStore>,
    /// Where `POST /-/reload` asks for a reload.
    pub reloads: Option<super::reload::ReloadSender>,
    /// The reload gauges, registered with this instance's metrics.
    pub reload_status: Option<super::reload::ReloadStatus>,
}

/// Restores state, starts every task, and returns once the HTTP server is bound.
pub async fn start(
    config: Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    start_with(config, clock, shutdown, StartOptions::default()).await
}

/// [`start`], taking over what a previous instance of this process held.
pub async fn start_with(
    config: Config,
    clock: SharedClock,
    shutdown: CancellationToken,
    options: StartOptions,
) -> Result<Running, StartError> {
    let start_ms = clock.now_ms();
    let feed_names: Vec<Arc<str>> = config.feeds.iter().map(|feed| feed.name.clone()).collect();
    let (store, watch_started, snapshot, epoch) =
        open_state_store(&config, &feed_names, start_ms, &shutdown, options.store).await?;
    let store_was_empty = !epoch.was_there;
    let tracker = restore_tracker(&config, &store, watch_started, snapshot, start_ms).await;
    let tracker = Arc::new(Mutex::new(tracker));
    let audits = audits::restore_audits(&config, &store, &tracker).await;
    let groups = if config.groups.is_empty() {
        None
    } else {
        Some(restore_groups(&config, &store).await)
    };
    let volume = restore_volume(&config, &store, &feed_names, start_ms).await;
    let key_limits = KeyLimits::load(&store).await;
    let self_alerts = watch::SelfAlerts::load(&store).await;
    let evaluator = Evaluator::new(&config.feeds);
    let rules: Arc<[_]> = evaluator.rules().to_vec().into();
    let mut registry = Registry::default();
    let snapshots = Arc::new(crate::snapshot::Snapshots::new(tracker.clone()));
    let metrics = Metrics::register_clustered(
        &mut registry,
        snapshots.clone(),
        rules.clone(),
        clock.clone(),
        config.metrics.max_key_series,
        config.named_clusters,
    );
    metrics.state_store_up.set(1);
    if let Some(redis) = store.redis() {
        metrics
            .state_store_evictable
            .set(i64::from(redis.eviction_risk().await.is_some()));
    }
    for name in &feed_names {
        metrics.declare_feed(name);
    }
    if let Some(status) = &options.reload_status {
        status.register(&mut registry);
    }

    // Per cluster, its own source, tail source, group watcher and knowledge: one that does not
    // answer blinds only its own feeds and groups.
    let mut runs = Vec::with_capacity(config.clusters.len());
    let mut parts = Vec::with_capacity(config.clusters.len());
    let mut ready_parts = Vec::with_capacity(config.clusters.len());
    for (cluster, cluster_config) in config.clusters.iter().enumerate() {
        let view = config.for_cluster(cluster);
        let cluster_metrics = metrics.for_cluster(&cluster_config.name);
        let knowledge = Arc::new(Knowledge::new(
            view.feeds
                .iter()
                .map(|feed| (feed.topics.clone(), feed.mode))
                .collect(),
            knowledge_max_age_ms(&view),
            3 * duration_ms(config.ha.reload_interval),
            duration_ms(config.evaluation.recovery_grace),
        ));
        let (source, source_handle) = Source::new(
            &view,
            tracker.clone(),
            cluster_metrics.clone(),
            clock.clone(),
            knowledge.clone(),
        )?;
        let tail_source = TailSource::new(
            &view,
            tracker.clone(),
            clock.clone(),
            source_handle.status.clone(),
            cluster_metrics.clone(),
            knowledge.clone(),
        )?;
        let group_watcher = crate::groups::watcher::GroupWatcher::new(
            &view,
            groups
                .as_ref()
                .map(|groups| groups.table.clone())
                .unwrap_or_default(),
            groups
                .as_ref()
                .map(|groups| groups.reads.clone())
                .unwrap_or_default(),
            clock.clone(),
            cluster_metrics.groups.clone(),
        )
        .map_err(SourceError::Create)?;
        ready_parts.push(crate::http::ClusterSource {
            name: cluster_config.name.clone(),
            status: source_handle.status.clone(),
            needs_assignment: config
                .cluster_feeds(cluster)
                .any(|feed| config.feeds[feed].mode == FeedMode::Consume),
            needs_tail: tail_source.is_some(),
            feeds: config
                .cluster_feeds(cluster)
                .map(|feed| config.feeds[feed].name.clone())
                .collect(),
            groups: view.groups.iter().map(|group| group.name.clone()).collect(),
        });
        runs.push(ClusterRun {
            name: cluster_config.name.clone(),
            labelled: config.named_clusters,
            source: source_handle,
            knowledge,
        });
        parts.push(ClusterParts {
            name: cluster_config.name.clone(),
            source,
            tail: tail_source,
            groups: group_watcher,
        });
    }
    let readiness = Arc::new(Readiness::for_clusters(ready_parts));
    let bind_error = |error| StartError::Bind {
        address: config.http.listen,
        error,
    };
    let listener = match options.listener {
        Some(listener) => tokio::net::TcpListener::from_std(listener).map_err(bind_error)?,
        None => crate::http::bind(config.http.listen)
            .await
            .map_err(bind_error)?,
    };
    let http_address = listener.local_addr().map_err(|error| StartError::Bind {
        address: config.http.listen,
        error,
    })?;

    let phases = Phases::default();
    let leadership = match store.redis() {
        Some(_) => Leadership::new(crate::ha::instance_name(), false),
        None => Leadership::always(),
    };
    let silences = crate::silence::SilenceBook::new(
        crate::silence::Silences::new(),
        store.clone(),
        clock.clone(),
    );
    if let Err(error) = silences.reload().await {
        tracing::warn!(%error, "silences not read at start; taken up at the next reload");
    }
    let mut sink_tasks = JoinSet::new();
    let mut sink_context = SinkContext::new(
        &config.http.external_url,
        store.clone(),
        leadership.clone(),
        &metrics,
        clock.clone(),
    );
    sink_context.silences = silences.silences.clone();
    let dispatcher = Dispatcher::start(
        &config.alerts,
        sink_context,
        phases.sinks.clone(),
        &mut sink_tasks,
    );

    let history = Arc::new(crate::history::History::default());
    history.load(&store, &feed_names).await;
    let kept_store = store.clone();
    let pipeline = Arc::new(Pipeline {
        tracker: tracker.clone(),
        evaluator: Mutex::new(evaluator),
        store,
        dispatcher,
        metrics: metrics.clone(),
        clock: clock.clone(),
        readiness: readiness.clone(),
        write_gate: tokio::sync::Mutex::new(()),
        leadership: leadership.clone(),
        lease: config.ha.lease,
        feed_names: feed_names.clone(),
        reload_cursors: tokio::sync::Mutex::new(vec![Default::default(); feed_names.len()]),
        silences: silences.clone(),
        rollups: Default::default(),
        rollup_after: config.feeds.iter().map(|feed| feed.rollup_after).collect(),
        clusters: Clusters {
            runs,
            feed_cluster: config.feed_clusters.clone(),
        },
        groups,
        volume,
        key_limits,
        pipelines: config.pipelines.clone(),
        pipeline_views: Arc::default(),
        audits,
        watch: watch_for(&config, store_was_empty, start_ms, self_alerts),
        last_tick_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        history: history.clone(),
        learns_by_hour: learns_by_hour(&config),
        hours_shared_ms: std::sync::atomic::AtomicI64::new(start_ms),
        epoch_marker: AtomicI64::new(epoch.marker),
    });
    if leadership.is_leader() {
        metrics.leader.set(1);
        pipeline.restore_rollups().await;
        announce_restored_alerts(&pipeline).await;
    }

    // A source thread that stops before shutdown (a panic, a refused resubscribe) would leave
    // freshwatch blind while it looks alive: it stops the whole process with exit code 3, so
    // the supervisor (systemd, Kubernetes) starts a fresh one.
    let (died_sender, died) = tokio::sync::mpsc::unbounded_channel::<RunError>();
    let threads = Threads::start(parts, &phases.source, died_sender);
    // The lease is held until the last alerts are out, then released for a follower.
    let lease_task = pipeline.store.redis().map(|redis| {
        tokio::spawn(crate::ha::run_lease(
            redis.clone(),
            leadership.clone(),
            config.ha.lease,
            phases.lease.clone(),
        ))
    });
    let loops = spawn_loops(&pipeline, &config, &phases.loops);

    let http_state = HttpState {
        held_by: pipeline.watch.held_by.clone(),
        reloads: options.reloads,
        silences: silences.clone(),
        access: Arc::new(crate::http::Access {
            admin_token: config.http.admin_token.clone(),
            read_token: config.http.read_token.clone(),
        }),
        snapshots,
        reads: crate::http::ReadGate::new(config.http.max_concurrent_reads),
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
        volume: pipeline
            .volume
            .as_ref()
            .map(|volume| volume.views.clone())
            .unwrap_or_default(),
        pipelines: pipeline.pipeline_views.clone(),
        audit_results: pipeline.audits.results.clone(),
        leadership,
        history,
    };
    let http_task = tokio::spawn(crate::http::serve(
        listener,
        http_state,
        phases.http.clone(),
    ));
    tracing::info!(address = %http_address, feeds = feed_names.len(), "freshwatch running");

    let stopping = Stopping {
        phases,
        pipeline,
        threads,
        loops,
        sink_tasks,
        lease_task,
        http_task,
    };
    let main = tokio::spawn(stopping.run(shutdown, died));
    Ok(Running {
        http_address,
        main,
        store: kept_store,
    })
}

/// The tracker with every persisted series, `watch_started` and expected values' starts.
async fn restore_tracker(
    config: &Config,
    store: &StateStore,
    watch_started: Vec<i64>,
    snapshot: crate::state::Snapshot,
    start_ms: i64,
) -> Tracker {
    let mut tracker = Tracker::new(&config.feeds, start_ms);
    // Nothing is learned until knowledge says a feed is known: a restart's backlog is not.
    for feed in 0..config.feeds.len() {
        tracker.set_known(feed as FeedIndex, false);
    }
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
        if let Some(index) = config
            .feeds
            .iter()
            .position(|feed| feed.name == record.feed)
        {
            tracker.restore(
                index as FeedIndex,
                &record.key,
                record.last_seen_ms,
                record.status,
            );
            if let Some(cadence) = &record.cadence {
                tracker.merge_cadence(index as FeedIndex, &record.key, cadence);
            }
        }
    }
    if learns_by_hour(config) {
        match store.documents_load(crate::state::Documents::Hours).await {
            Ok(stored) => {
                super::hours::take_stored_hours(&mut tracker, stored);
            }
            Err(error) => tracing::warn!(%error, "learned hours not restored; learning again"),
        }
    }
    tracing::info!(store = store.kind(), series = restored, "state restored");
    tracker
}

/// Some feed learns its hours of the week: they are shared through the state store.
fn learns_by_hour(config: &Config) -> bool {
    config.feeds.iter().any(|feed| feed.week_clock().is_some())
}

/// The alerts about freshwatch's own sight, as the state store has them firing.
fn watch_for(
    config: &Config,
    store_was_empty: bool,
    start_ms: i64,
    firing: watch::SelfAlerts,
) -> Watch {
    let watch = Watch {
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
        blind_rollup_after: config.evaluation.blind_rollup_after,
        source_alerting: config
            .clusters
            .iter()
            .map(|_| AtomicBool::new(false))
            .collect(),
        cluster_labels: config
            .clusters
            .iter()
            .map(|cluster| config.named_clusters.then(|| cluster.name.clone()))
            .collect(),
        state_alerting: AtomicBool::new(false),
        state_down_since_ms: AtomicI64::new(0),
        unread_alerting: AtomicBool::new(false),
        blind_feeds: Mutex::new(watch::BlindFeeds::new(config.feeds.len())),
        held_by: crate::knowledge::HeldBy::new(config.feeds.len()),
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
        firing: Default::default(),
    };
    watch.take_up(firing);
    watch
}

/// The evaluation, flush, replica and heartbeat loops.
fn spawn_loops(pipeline: &Arc<Pipeline>, config: &Config, stop: &CancellationToken) -> JoinSet<()> {
    let mut loops = JoinSet::new();
    if pipeline.store.redis().is_some() {
        loops.spawn(replica_loop(
            pipeline.clone(),
            config.ha.reload_interval,
            stop.clone(),
        ));
    }
    if let Some(heartbeat) = config.heartbeat.clone() {
        let health = crate::heartbeat::Health {
            last_tick_ms: pipeline.last_tick_ms.clone(),
            evaluation_interval: config.evaluation.interval,
            sources: pipeline
                .clusters
                .runs
                .iter()
                .map(|run| run.source.status.clone())
                .collect(),
            blind: pipeline.watch.blind.clone(),
            groups_blind: pipeline
                .groups
                .as_ref()
                .map(|groups| groups.blind.clone())
                .unwrap_or_default(),
            clock: pipeline.clock.clone(),
        };
        loops.spawn(crate::heartbeat::run(
            heartbeat,
            health,
            pipeline.metrics.clone(),
            stop.clone(),
        ));
    }
    loops.spawn(evaluation_loop(
        pipeline.clone(),
        config.evaluation.interval,
        stop.clone(),
    ));
    let flushing = pipeline.clone();
    loops.spawn(every(
        config.state.flush_interval,
        stop.clone(),
        move || {
            let pipeline = flushing.clone();
            async move { pipeline.flush().await }
        },
    ));
    loops
}

impl Threads {
    /// Each cluster's threads, named after it when there are several.
    fn start(
        parts: Vec<ClusterParts>,
        stop: &CancellationToken,
        died: tokio::sync::mpsc::UnboundedSender<RunError>,
    ) -> Threads {
        let several = parts.len() > 1;
        let thread_name = |base: &str, cluster: &str| {
            if several {
                format!("{base}-{cluster}")
            } else {
                base.to_owned()
            }
        };
        let mut threads = Threads {
            sources: Vec::new(),
            others: Vec::new(),
        };
        for part in parts {
            let source = part.source;
            let source_token = stop.clone();
            threads.sources.push(supervised(
                &thread_name("freshwatch-source", &part.name),
                "source",
                died.clone(),
                move || source.run(source_token).map_err(|error| error.to_string()),
            ));
            if let Some(tail) = part.tail {
                let tail_token = stop.clone();
                threads.others.push(supervised(
                    &thread_name("freshwatch-tail", &part.name),
                    "tail",
                    died.clone(),
                    move || {
                        tail.run(tail_token);
                        Ok(())
                    },
                ));
            }
            if let Some(watcher) = part.groups {
                let groups_token = stop.clone();
                threads.others.push(supervised(
                    &thread_name("freshwatch-groups", &part.name),
                    "group watcher",
                    died.clone(),
                    move || {
                        watcher.run(groups_token);
                        Ok(())
                    },
                ));
            }
        }
        threads
    }

    fn join(self) {
        for thread in self.others {
            let _ = thread.join();
        }
        for thread in self.sources {
            let _ = thread.join();
        }
    }
}

impl Stopping {
    /// Waits for shutdown (or a thread it cannot run without), then stops in order: consuming,
    /// the loops, one last evaluation and flush, the sinks (bounded), the lease, HTTP.
    async fn run(
        self,
        shutdown: CancellationToken,
        mut died: tokio::sync::mpsc::UnboundedReceiver<RunError>,
    ) -> Result<(), RunError> {
        let Stopping {
            phases,
            pipeline,
            threads,
            mut loops,
            mut sink_tasks,
            lease_task,
            http_task,
        } = self;
        let failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some(error) = died.recv() => {
                pipeline.clusters.observe_source_failure(pipeline.clock.now_ms());
                tracing::error!(%error, "stopping: freshwatch cannot watch without it");
                Some(error)
            }
        };
        tracing::info!("shutting down");
        phases.source.cancel();
        let joined = tokio::task::spawn_blocking(move || threads.join());
        if tokio::time::timeout(Duration::from_secs(10), joined)
            .await
            .is_err()
        {
            tracing::error!("source thread did not stop in time");
        }
        phases.loops.cancel();
        while loops.join_next().await.is_some() {}
        pipeline.evaluate().await;
        pipeline.flush().await;
        pipeline.share_hours(true).await;
        phases.sinks.cancel();
        let drain = async { while sink_tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), drain)
            .await
            .is_err()
        {
            tracing::error!("alert sinks did not drain in time");
        }
        phases.lease.cancel();
        if let Some(lease_task) = lease_task {
            let _ = lease_task.await;
        }
        phases.http.cancel();
        let _ = http_task.await;
        tracing::info!("stopped");
        failure.map_or(Ok(()), Err)
    }
}
