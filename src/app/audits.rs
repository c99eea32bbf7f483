//! Completeness audits at run time ([`crate::audit`]): each replica counts what it reads and
//! stores its open buckets (and how far it counted) before its consumer commits; the leader
//! closes a bucket once both feeds are known past its end plus `grace`, merges every replica's
//! counts of it, keeps the verdict and pages `RecordsMissing`.

use std::collections::BTreeMap;

use super::*;
use crate::audit::{judge_closed, missing_summary, AuditResults, ClosedBucket, StoredAudit};
use crate::state::Documents;

/// `alertname` of a closed bucket with records missing downstream.
pub const RECORDS_MISSING: &str = "RecordsMissing";

/// Shared with the API: per audit (`pipeline/from/to`), its verdicts.
pub type SharedResults = Arc<Mutex<BTreeMap<String, AuditResults>>>;

pub(super) struct Audits {
    /// This replica's name in the stored documents: stable across restarts (the static
    /// membership's instance id, else the host name), so a restart finds what it counted.
    pub(super) instance: String,
    pub(super) results: SharedResults,
    /// How long a partition that came to this replica waits, its records pending, before it
    /// settles on what the other replicas stored: two of their flushes and a second.
    pub(super) settle_wait_ms: i64,
}

fn document_key(name: &str, instance: &str) -> String {
    format!("{name}@{instance}")
}

/// The buckets one audit closes at a tick: those starting in `from_ms..to_ms`.
struct Closing {
    index: usize,
    from_ms: i64,
    to_ms: i64,
    buckets: Vec<(i64, crate::audit::Bucket)>,
}

/// What the other replicas stored of audit `name`.
fn peer_audits(stored: &[(String, String)], name: &str, instance: &str) -> Vec<StoredAudit> {
    let own = document_key(name, instance);
    stored
        .iter()
        .filter(|(key, _)| {
            *key != own && key.rsplit_once('@').is_some_and(|(audit, _)| audit == name)
        })
        .filter_map(|(_, json)| serde_json::from_str(json).ok())
        .collect()
}

/// The replica's stable name for its audit documents.
pub(super) fn audit_instance(config: &Config) -> String {
    config
        .kafka
        .instance_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(crate::config::host_name)
        .unwrap_or_else(|| "freshwatch".to_owned())
}

/// At start, before anything is read: this replica's own buckets, and from every replica's
/// document how far it counted, so nothing counted anywhere is counted again; and the leader's
/// verdicts.
pub(super) async fn restore_audits(
    config: &Config,
    store: &StateStore,
    tracker: &Mutex<Tracker>,
) -> Audits {
    let instance = audit_instance(config);
    let results: SharedResults = Arc::default();
    let settle_wait_ms =
        i64::try_from(config.state.flush_interval.as_millis() * 2).unwrap_or(i64::MAX / 2) + 1_000;
    if config
        .pipelines
        .iter()
        .all(|pipeline| pipeline.audits.is_empty())
    {
        return Audits {
            instance,
            results,
            settle_wait_ms,
        };
    }
    let stored = match store.documents_load(Documents::Audits).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, "stored audits not loaded");
            Vec::new()
        }
    };
    match store.documents_load(Documents::AuditResults).await {
        Ok(entries) => {
            let mut held = results.lock().unwrap_or_else(|poison| poison.into_inner());
            for (name, json) in entries {
                if let Ok(stored) = serde_json::from_str::<AuditResults>(&json) {
                    held.insert(name, stored);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "stored audit verdicts not loaded"),
    }
    let mut tracker = tracker.lock().unwrap_or_else(|poison| poison.into_inner());
    tracker.set_audits(&config.pipelines);
    for (key, json) in stored {
        let Some((name, owner)) = key.rsplit_once('@') else {
            continue;
        };
        let Ok(stored) = serde_json::from_str::<StoredAudit>(&json) else {
            tracing::warn!(document = %key, "a stored audit could not be read; skipped");
            continue;
        };
        if let Some(track) = tracker
            .audits
            .iter_mut()
            .find(|track| track.config.name() == name)
        {
            track.restore(&stored, owner == instance);
        }
    }
    drop(tracker);
    Audits {
        instance,
        results,
        settle_wait_ms,
    }
}

impl Pipeline {
    /// Writes the audits that changed. Part of a flush, before the consumer commits: a failure
    /// fails the flush, and the audits stay dirty.
    pub(super) async fn flush_audits(&self) -> Result<(), crate::state::StateError> {
        let now_ms = self.clock.now_ms();
        let entries: Vec<(String, String)> = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            tracker
                .audits
                .iter_mut()
                .filter_map(|track| {
                    let mut stored = track.take_dirty()?;
                    stored.written_ms = now_ms;
                    Some((
                        document_key(&track.config.name(), &self.audits.instance),
                        serde_json::to_string(&stored).unwrap_or_default(),
                    ))
                })
                .collect()
        };
        if entries.is_empty() {
            return Ok(());
        }
        let result = self.store.documents_write(Documents::Audits, entries).await;
        if result.is_err() {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for track in &mut tracker.audits {
                track.mark_dirty();
            }
        }
        result
    }

    /// Partitions this replica no longer reads are unsettled; records of ones that came to it
    /// wait until the replica that read them before has had time to flush how far it counted,
    /// then settle on every other replica's stored positions ([`crate::audit::AuditTrack::settle`]).
    async fn settle_audits(&self) {
        let now_ms = self.clock.now_ms();
        let wait_ms = self.audits.settle_wait_ms;
        let due = {
            let assignment = self.clusters.assignment();
            let assigned: std::collections::HashSet<(&str, i32)> = assignment
                .iter()
                .map(|(topic, partition)| (topic.as_str(), *partition))
                .collect();
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut due = false;
            for track in &mut tracker.audits {
                track.unsettle_unassigned(&assigned);
                due |= track.settle_due(now_ms, wait_ms);
            }
            due
        };
        if !due {
            return;
        }
        let stored = match self.store.documents_load(Documents::Audits).await {
            Ok(entries) => entries,
            Err(error) => {
                // Settled without the other replicas' positions, a moved partition could be
                // counted twice: its records stay pending until the store answers.
                tracing::warn!(%error, "other replicas' audit positions not loaded; records stay pending");
                return;
            }
        };
        let mut tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for track in &mut tracker.audits {
            let name = track.config.name();
            let peers = peer_audits(&stored, &name, &self.audits.instance);
            let before = track.counted_elsewhere;
            track.settle(&peers, now_ms, wait_ms);
            if track.counted_elsewhere > before {
                tracing::info!(audit = %name, records = track.counted_elsewhere - before, "records of a partition that moved here were counted by the replica that had it");
            }
        }
    }

    /// Each tick: closes the buckets both feeds are known past; the leader judges them (every
    /// replica's counts merged) and returns `RecordsMissing` changes. A follower keeps its
    /// buckets a bucket longer, so the leader finds them when it closes.
    pub(super) async fn judge_audits(
        &self,
        assessment: &crate::knowledge::Assessment,
        leader: bool,
        now_ms: i64,
    ) -> Vec<SystemAlert> {
        let through = |feed: FeedIndex| match assessment.feeds.get(feed as usize)?.sight {
            Sight::Known { through_ms } => Some(through_ms),
            Sight::Blind(_) => None,
        };
        self.settle_audits().await;
        let closing: Vec<Closing> = {
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut closing = Vec::new();
            for (index, track) in tracker.audits.iter_mut().enumerate() {
                let labels = track.config.labels();
                self.metrics
                    .audits
                    .open_buckets
                    .get_or_create(&labels)
                    .set(track.open_buckets() as i64);
                self.metrics
                    .audits
                    .late
                    .get_or_create(&labels)
                    .set(i64::try_from(track.late).unwrap_or(i64::MAX));
                self.metrics
                    .audits
                    .without_id
                    .get_or_create(&labels)
                    .set(i64::try_from(track.without_id).unwrap_or(i64::MAX));
                // Pending records may belong to any open bucket.
                if track.has_pending() {
                    continue;
                }
                let Some(known_ms) = through(track.from)
                    .zip(through(track.to))
                    .map(|(a, b)| a.min(b))
                else {
                    continue;
                };
                let known_ms = if leader {
                    known_ms
                } else {
                    known_ms.saturating_sub(track.bucket_ms())
                };
                let from_ms = track.closed_before_ms();
                let buckets = track.take_closable(known_ms);
                let to_ms = track.closed_before_ms();
                // Another replica may hold buckets of the range this one read nothing of.
                if to_ms > from_ms {
                    closing.push(Closing {
                        index,
                        from_ms,
                        to_ms,
                        buckets,
                    });
                }
            }
            closing
        };
        if closing.is_empty() || !leader {
            return Vec::new();
        }
        let peers = match self.store.documents_load(Documents::Audits).await {
            Ok(entries) => entries,
            Err(error) => {
                // Judged on this replica's counts alone would page what another replica read;
                // judged once the store answers instead.
                tracing::warn!(%error, "audit buckets of other replicas not loaded; closing later");
                self.reopen(closing);
                return Vec::new();
            }
        };
        let mut alerts = Vec::new();
        let mut later = Vec::new();
        for closing in closing {
            let (config, bucket_ms) = {
                let tracker = self
                    .tracker
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                let track = &tracker.audits[closing.index];
                (track.config.clone(), track.bucket_ms())
            };
            let name = config.name();
            let others = peer_audits(&peers, &name, &self.audits.instance);
            // A replica still settling a partition that moved to it holds records of these
            // buckets it has not counted yet.
            let settling = |peer: &StoredAudit| {
                peer.pending_from_ms
                    .is_some_and(|from_ms| from_ms < closing.to_ms)
                    && now_ms.saturating_sub(peer.written_ms) <= 2 * self.audits.settle_wait_ms
            };
            if others.iter().any(settling) {
                later.push(closing);
                continue;
            }
            let judged = judge_closed(
                &config,
                bucket_ms,
                closing.buckets,
                &others,
                closing.from_ms..closing.to_ms,
            );
            alerts.extend(self.record_verdicts(&config, judged, now_ms).await);
        }
        self.reopen(later);
        alerts
    }

    fn reopen(&self, closing: Vec<Closing>) {
        let mut tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for closing in closing {
            tracker.audits[closing.index].reopen(closing.buckets, closing.from_ms);
        }
    }

    /// Keeps and stores the verdicts, counts them, and says what `RecordsMissing` does: it
    /// fires with the first bucket that misses records, and resolves only with a complete
    /// bucket that began after it fired (the hop delivers everything again), never with an
    /// older bucket closed in the same breath.
    async fn record_verdicts(
        &self,
        config: &crate::config::AuditConfig,
        judged: Vec<ClosedBucket>,
        now_ms: i64,
    ) -> Vec<SystemAlert> {
        let labels = config.labels();
        let name = config.name();
        let mut alerts = Vec::new();
        let stored = {
            let mut results = self
                .audits
                .results
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let results = results.entry(name.clone()).or_default();
            for bucket in judged {
                self.metrics
                    .audits
                    .missing
                    .get_or_create(&labels)
                    .inc_by(bucket.missing);
                self.metrics
                    .audits
                    .duplicated
                    .get_or_create(&labels)
                    .inc_by(bucket.duplicated);
                let alert = |firing: bool, since_ms: i64, summary: String| SystemAlert {
                    alertname: RECORDS_MISSING,
                    severity: Severity::Critical,
                    labels: vec![
                        ("pipeline", config.pipeline.to_string()),
                        ("from", config.from.to_string()),
                        ("to", config.to.to_string()),
                    ],
                    summary,
                    firing,
                    since_ms,
                };
                if bucket.missing > 0 {
                    let summary = missing_summary(&config.pipeline, &bucket);
                    tracing::error!(pipeline = %config.pipeline, from = %config.from, to = %config.to, missing = bucket.missing, "records missing: {summary}");
                    if results.firing.is_none() {
                        results.firing = Some((now_ms, summary.clone()));
                        alerts.push(alert(true, now_ms, summary));
                    }
                } else if bucket.listed_all && bucket.upstream > 0 {
                    let since_ms = results.firing.as_ref().map(|(since_ms, _)| *since_ms);
                    if let Some(since_ms) = since_ms.filter(|&since_ms| bucket.start_ms >= since_ms)
                    {
                        results.firing = None;
                        alerts.push(alert(
                            false,
                            since_ms,
                            format!(
                                "pipeline {}: every record of {} reached {} again ({} records in {} to {})",
                                config.pipeline,
                                config.from,
                                config.to,
                                bucket.upstream,
                                crate::clock::rfc3339(bucket.start_ms),
                                crate::clock::rfc3339(bucket.end_ms)
                            ),
                        ));
                    }
                }
                if bucket.duplicated > 0 {
                    tracing::warn!(pipeline = %config.pipeline, from = %config.from, to = %config.to, duplicated = bucket.duplicated, start = %crate::clock::rfc3339(bucket.start_ms), "records duplicated downstream");
                }
                results.push(bucket);
            }
            serde_json::to_string(&*results).unwrap_or_default()
        };
        if let Err(error) = self
            .store
            .documents_write(Documents::AuditResults, vec![(name, stored)])
            .await
        {
            // Kept in memory and sent; written with the next verdict.
            tracing::warn!(%error, "audit verdicts not stored");
        }
        alerts
    }
}
