//! Writing state: changed series then the offsets they cover, the state written back when the
//! store lost it, and opening the store at start (waiting for Redis rather than exiting).

use super::*;
use crate::model::SeriesId;

/// Series written to the state store per write of a flush (see [`Pipeline::write_series`]).
const FLUSH_BATCH: usize = 50_000;

impl Pipeline {
    /// The store answers but lost freshwatch's data (restarted empty, failed over, evicted):
    /// everything in memory is written back, so a later restart still knows every quiet feed
    /// and every promise made: series (last-seen, status, cadence), `watch_started`, the
    /// outboxes, silences and learned hours on every replica; group and volume state, open
    /// roll-ups and the history by the leader (a follower's copy of those may be stale; each
    /// replica compares the marker with the one it saw, so the leader repairs even when a
    /// follower noticed first).
    pub(super) async fn restore_lost_state(&self) {
        self.metrics.state_store_resets.inc();
        let expected_started: Vec<(Arc<str>, String, i64)> = {
            let tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            tracker
                .feeds()
                .iter()
                .flat_map(|feed| {
                    feed.expected_started_ms.iter().map(|(value, &started)| {
                        (
                            feed.name.clone(),
                            String::from_utf8_lossy(value).into_owned(),
                            started,
                        )
                    })
                })
                .collect()
        };
        for (feed, value, started_ms) in expected_started {
            if let Err(error) = self.store.expected_started(&feed, &value, started_ms).await {
                tracing::warn!(feed = %feed, %error, "an expected value's start not written back yet");
            }
        }
        let watch_started: Vec<(Arc<str>, i64)> = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            tracker.mark_all_dirty();
            self.rewrite_volume();
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
        self.silences.write_back().await;
        self.share_hours(true).await;
        if self.leadership.is_leader() {
            self.write_back_rollups().await;
            self.history.write_back(&self.store).await;
            self.write_back_self_alerts().await;
            self.write_back_key_limits().await;
        }
    }

    /// Writes every open roll-up again (the leader's: a follower's may be stale).
    async fn write_back_rollups(&self) {
        let entries: Vec<(String, String)> = {
            let rollups = self.rollups.lock().await;
            rollups
                .feeds()
                .into_iter()
                .filter_map(|feed| {
                    let rollup = rollups.get(&feed)?;
                    Some((feed.to_string(), serde_json::to_string(rollup).ok()?))
                })
                .collect()
        };
        if let Err(error) = self
            .store
            .documents_write(crate::state::Documents::RollUps, entries)
            .await
        {
            tracing::warn!(%error, "roll-ups not written back yet");
        }
    }

    /// Writes changed series, then commits the offsets they cover.
    pub(super) async fn flush(&self) {
        let gate = self.write_gate.lock().await;
        self.flush_holding(gate).await;
    }

    pub(super) async fn flush_holding(&self, gate: tokio::sync::MutexGuard<'_, ()>) {
        let checked = self.store.epoch_ensure(self.clock.now_ms()).await;
        if let Ok(epoch) = &checked {
            // Another marker than the one this replica saw: the store lost everything since,
            // even when another replica noticed first and set it again.
            let seen = self.epoch_marker.swap(epoch.marker, Ordering::Relaxed);
            if seen != epoch.marker {
                self.restore_lost_state().await;
                // The lease and the token counter went with the data: no status is written
                // under the old term's token (its fences would refuse every later leader's
                // writes).
                if let Some(redis) = self.store.redis() {
                    crate::ha::retake_after_wipe(redis, &self.leadership, self.lease).await;
                }
            }
        }
        // A store that could not say whether it still holds freshwatch's data is not written
        // (it may have come back empty a moment ago): this flush fails and keeps everything.
        if let Err(error) = checked {
            drop(gate);
            self.flush_failed(error, Vec::new(), false).await;
            return;
        }
        self.flush_groups().await;
        self.flush_volume().await;
        self.share_hours(false).await;
        let leader = self.leadership.is_leader();
        let fence = (leader && self.store.redis().is_some()).then(|| self.leadership.token());
        // Everything read before this moment is in the changes taken now.
        let taken_at_ms = self.clock.now_ms();
        let (ids, positions) = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut positions = tracker.take_positions();
            if let Some(positions) = &mut positions {
                for track in &tracker.audits {
                    track.hold_back_commits(positions);
                }
            }
            (tracker.take_dirty(), positions)
        };
        // The audits' counts up to these positions are stored before they are committed: a
        // record counted is never counted again after a restart.
        if let Err(error) = self.flush_audits().await {
            drop(gate);
            self.flush_failed(error, ids, positions.is_some()).await;
            return;
        }
        let result = if ids.is_empty() {
            self.store.ping().await.map(|()| Default::default())
        } else {
            self.write_series(&ids, leader, fence).await
        };
        match result {
            Ok(outcome) => {
                if let (Some(newest), Some(token)) = (outcome.fenced_by, fence) {
                    self.fenced_off(token, newest);
                }
                self.clusters.observe_flushed(taken_at_ms);
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
                    self.clusters.commit(&positions);
                }
                drop(gate);
                self.state_down_alert(false, self.clock.now_ms()).await;
            }
            Err(error) => {
                drop(gate);
                self.flush_failed(error, ids, positions.is_some()).await;
            }
        }
    }

    /// Writes the series `ids` as they are now, [`FLUSH_BATCH`] at a time: the records and the
    /// store's pipelines of one batch are built only once the previous one is written, so the
    /// first flush after a backlog of a million new keys does not hold a million of them at
    /// once. Any batch failing fails the whole (the positions are committed only after all).
    async fn write_series(
        &self,
        ids: &[SeriesId],
        leader: bool,
        fence: Option<u64>,
    ) -> Result<crate::state::WriteOutcome, StateError> {
        let mut outcome = crate::state::WriteOutcome::default();
        for batch in ids.chunks(FLUSH_BATCH) {
            let records: Vec<SeriesRecord> = {
                let tracker = self
                    .tracker
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                batch
                    .iter()
                    .map(|&id| {
                        let series = tracker.series(id);
                        let cadence = tracker.cadence(id);
                        SeriesRecord {
                            feed: tracker.feed(id.feed).name.clone(),
                            key: series.key_bytes().to_vec(),
                            last_seen_ms: series.last_seen(),
                            status: leader.then_some((series.status, series.status_since_ms)),
                            // It changes only with last-seen, which made the series dirty.
                            cadence: (!cadence.is_empty()).then_some(cadence),
                        }
                    })
                    .collect()
            };
            let written = self.store.write(records, fence).await?;
            outcome.fenced_by = outcome.fenced_by.max(written.fenced_by);
        }
        Ok(outcome)
    }

    /// A flush did not reach the store: the series it took (`ids`) and the positions (when it
    /// took them) are offered again at the next one.
    async fn flush_failed(&self, error: StateError, ids: Vec<SeriesId>, had_positions: bool) {
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
            if had_positions {
                tracker.requeue_positions();
            }
        }
        self.state_down_alert(true, self.clock.now_ms()).await;
    }
}

impl Pipeline {
    /// The store refused this leader's statuses: a leader with token `newest` wrote the feeds
    /// since. Logged and counted together; the replica stands by (see
    /// [`crate::ha::Leadership::fenced_off`]) instead of judging on beside the new leader.
    fn fenced_off(&self, token: u64, newest: u64) {
        self.metrics.state_writes_fenced.inc();
        tracing::error!(
            token,
            newest,
            "status write refused by the fence: a newer leader wrote these feeds; standing by"
        );
        self.leadership.fenced_off(newest);
    }
}

/// Opens the state store and reads what it holds: when each feed was first watched, and every
/// series. Redis that does not answer at start (it may be restarting with everything else after
/// an outage) is waited for, with backoff, rather than exited on: without its state freshwatch
/// would forget every feed that went quiet. An embedded store that cannot be opened is a
/// permanent problem (a path or a second instance on the same file) and fails at once.
pub(super) async fn open_state_store(
    config: &Config,
    feed_names: &[Arc<str>],
    start_ms: i64,
    shutdown: &CancellationToken,
    reuse: Option<StateStore>,
) -> Result<
    (
        StateStore,
        Vec<i64>,
        crate::state::Snapshot,
        crate::state::Epoch,
    ),
    StartError,
> {
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = async {
            let store = match &reuse {
                Some(store) => store.clone(),
                None => StateStore::open(&config.state).await?,
            };
            let epoch = store.epoch_ensure(start_ms).await?;
            let mut watch_started = Vec::with_capacity(feed_names.len());
            for name in feed_names {
                watch_started.push(store.watch_started(name, start_ms).await?);
            }
            let snapshot = store.load(feed_names).await?;
            Ok::<_, StateError>((store, watch_started, snapshot, epoch))
        };
        // An attempt on a Redis that accepts connections but does not answer (SIGSTOP, a
        // partition) waits out its timeouts: shutdown must not wait with it.
        let error = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(StartError::ShutDown),
            attempted = attempt => match attempted {
                Ok(opened) => return Ok(opened),
                Err(error) => error,
            },
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
