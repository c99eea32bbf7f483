//! Volume drops in the pipeline: every tick, on every replica, the tracker's record counts go to
//! [`crate::volume`] (the API and metrics); the leader pages `FeedVolumeDrop` and persists the
//! baselines, and a new leader takes them up.
//!
//! Each replica counts only the records it reads: with Redis, every replica publishes its own
//! counts beside the knowledge it shares and sums everyone's ([`crate::volume::replicas`]), so
//! the leader judges the whole feed.

use std::collections::HashMap;

use super::*;
use crate::state::Documents;
use crate::volume::replicas::{ReplicaCounts, OWN};
use crate::volume::{feed_counts, FeedCounts, VolumeView, VolumeWatch};

/// The feeds with `min_rate`: their judge, and what the API shows.
pub(super) struct Volume {
    pub(super) watch: Mutex<VolumeWatch>,
    pub(super) views: Arc<Mutex<Vec<VolumeView>>>,
    /// Every replica's counts, summed.
    replicas: Mutex<ReplicaCounts>,
    /// This replica's own counts at the last tick, for the others.
    own_counts: Mutex<HashMap<usize, FeedCounts>>,
    /// A replica whose counts are older than this stopped.
    peer_ttl_ms: i64,
}

/// One replica's published counts.
#[derive(serde::Serialize, serde::Deserialize)]
struct PublishedCounts {
    at_ms: i64,
    /// By feed name (replicas may list feeds in another order during a config roll-out).
    feeds: Vec<(String, FeedCounts)>,
}

impl Volume {
    fn watch(&self) -> std::sync::MutexGuard<'_, VolumeWatch> {
        self.watch
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Pipeline {
    /// Counts and judges the feeds with `min_rate` (every replica: the API and metrics), and
    /// returns the alert changes when leading.
    pub(super) fn evaluate_volume(&self, now_ms: i64) -> Vec<SystemAlert> {
        let Some(volume) = &self.volume else {
            return Vec::new();
        };
        let mut watch = volume.watch();
        let judged: Vec<(usize, Option<usize>)> = watch.judged_feeds().collect();
        let counts: HashMap<usize, FeedCounts> = {
            let tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            // The same rule as learned thresholds (the tick fed this assessment to the
            // tracker): counted only while known, or behind for a moment after being known.
            for &(feed, _) in &judged {
                watch.set_known(feed, tracker.known(feed as FeedIndex));
            }
            judged
                .into_iter()
                .map(|(feed, max_keys)| (feed, feed_counts(&tracker, feed, max_keys)))
                .collect()
        };
        let summed = {
            let mut replicas = volume
                .replicas
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            replicas.take(OWN, &counts);
            replicas.summed(&counts)
        };
        *volume
            .own_counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = counts;
        // With the store down the peers' counts stop arriving: the sum would be this replica's
        // share, a drop that is not one. The verdict stays where it was until they report again.
        if self.clusters.peers_unknown(now_ms) {
            return Vec::new();
        }
        let alerts = watch.tick(&summed, self.leadership.is_leader(), now_ms);
        let views = watch.views();
        drop(watch);
        crate::volume::export_metrics(&self.metrics.volume, &views);
        *volume
            .views
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = views;
        alerts
    }

    /// Writes the baselines and alerts that changed. Only the leader writes: a follower's counts
    /// cover only its own partitions.
    pub(super) async fn flush_volume(&self) {
        let Some(volume) = &self.volume else {
            return;
        };
        if !self.leadership.is_leader() {
            return;
        }
        let entries = volume.watch().take_dirty(false);
        if entries.is_empty() {
            return;
        }
        let keys: Vec<String> = entries.iter().map(|(key, _)| key.clone()).collect();
        if let Err(error) = self.store.documents_write(Documents::Volume, entries).await {
            tracing::warn!(%error, "volume baselines not written; will retry");
            volume.watch().mark_dirty(&keys);
        }
    }

    /// Takes up the persisted baselines and alerts (on becoming leader).
    pub(super) async fn adopt_volume(&self) {
        let Some(volume) = &self.volume else {
            return;
        };
        match self.store.documents_load(Documents::Volume).await {
            Ok(stored) => volume.watch().restore(stored, self.clock.now_ms()),
            Err(error) => tracing::warn!(%error, "new leader cannot read the volume baselines"),
        }
    }

    /// Publishes this replica's own counts and takes in every other live replica's (with Redis,
    /// every `ha.reload_interval`, beside the knowledge it shares).
    pub(super) async fn share_volume_counts(
        &self,
        instance: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let Some(volume) = &self.volume else {
            return Ok(());
        };
        let own = {
            let own_counts = volume
                .own_counts
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let feeds = own_counts
                .iter()
                .filter_map(|(&feed, counts)| {
                    Some((self.feed_names.get(feed)?.to_string(), counts.clone()))
                })
                .collect();
            serde_json::to_string(&PublishedCounts {
                at_ms: now_ms,
                feeds,
            })
            .unwrap_or_default()
        };
        self.store
            .documents_write(Documents::VolumeCounts, vec![(instance.to_owned(), own)])
            .await?;
        let published_counts = self.store.documents_load(Documents::VolumeCounts).await?;
        let mut stopped = Vec::new();
        {
            let mut replicas = volume
                .replicas
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (peer, json) in published_counts {
                if peer == instance {
                    continue;
                }
                let Ok(published) = serde_json::from_str::<PublishedCounts>(&json) else {
                    tracing::warn!(%peer, "unreadable volume counts of another replica");
                    continue;
                };
                if published.at_ms < now_ms - volume.peer_ttl_ms {
                    replicas.forget(&peer);
                    stopped.push(peer);
                    continue;
                }
                let counts: HashMap<usize, FeedCounts> = published
                    .feeds
                    .into_iter()
                    .filter_map(|(name, counts)| {
                        let feed = self.feed_names.iter().position(|known| **known == *name)?;
                        Some((feed, counts))
                    })
                    .collect();
                replicas.take(&peer, &counts);
            }
        }
        self.store
            .documents_remove(Documents::VolumeCounts, stopped)
            .await
    }

    /// The store lost its data: every baseline is written again.
    pub(super) fn rewrite_volume(&self) {
        if let Some(volume) = &self.volume {
            volume.watch().mark_all_dirty();
        }
    }

    /// The `FeedVolumeDrop` alerts firing now.
    pub(super) fn firing_volume(&self) -> Vec<SystemAlert> {
        self.volume
            .as_ref()
            .map(|volume| volume.watch().firing())
            .unwrap_or_default()
    }
}

/// The volume judge, with the baselines and alerts the state store kept.
pub(super) async fn restore_volume(
    config: &Config,
    store: &StateStore,
    feed_names: &[Arc<str>],
    now_ms: i64,
) -> Option<Volume> {
    if config.volume.is_empty() {
        return None;
    }
    let mut watch = VolumeWatch::new(&config.volume, feed_names, now_ms);
    match store.documents_load(Documents::Volume).await {
        Ok(stored) => watch.restore(stored, now_ms),
        Err(error) => tracing::warn!(%error, "volume baselines not restored; learning again"),
    }
    Some(Volume {
        watch: Mutex::new(watch),
        views: Arc::default(),
        replicas: Mutex::default(),
        own_counts: Mutex::default(),
        peer_ttl_ms: knowledge_max_age_ms(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feeds_counts_are_its_series_records_with_the_keys_past_the_bound_left_out() {
        let config = crate::config::parse(
            "[kafka]\nbrokers = \"k:9092\"\n[[feed]]\nname = \"p\"\ntopic = \"p\"\nsplit_by = \"key\"\nexpected = [\"zeta\"]\n",
            std::path::Path::new("t.toml"),
            &|_| None,
        )
        .unwrap();
        let mut tracker = Tracker::new(&config.feeds, 0);
        for (key, records) in [("acme", 3), ("globex", 5), ("initech", 7)] {
            tracker.observe_many(0, key.as_bytes(), 1_000, 1_000, records);
        }
        let summed: u64 = tracker.feed(0).series().iter().map(|s| s.records).sum();
        let counts = feed_counts(&tracker, 0, Some(2));
        assert_eq!(counts.total, summed);
        assert_eq!(counts.total, 15);
        assert_eq!(
            counts.keys,
            [("zeta".to_owned(), 0), ("acme".to_owned(), 3)],
            "first seen first, the expected value included"
        );
        assert_eq!(counts.keys_left_out, 2);
        assert_eq!(feed_counts(&tracker, 0, None).keys, []);
    }
}
