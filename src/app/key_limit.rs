//! `FreshwatchKeyLimit`: a split feed at `max_keys` refuses records with new split values. The
//! one rule: it fires when the feed refuses its first key, and resolves once the feed is back
//! under its bound (fewer keys than `max_keys`: a reload or restart raised it) or is no longer
//! configured. Which feeds' alerts fire, and since when, is kept in the state store
//! ([`Documents::KeyLimits`], one document per feed), so neither a reload nor a restart pages it
//! again or forgets to resolve it, and a new leader takes it over.

use std::collections::BTreeMap;

use super::*;
use crate::state::Documents;

/// Per feed whose `FreshwatchKeyLimit` fires: since when, unix ms.
#[derive(Debug, Default)]
pub(super) struct KeyLimits {
    firing: Mutex<BTreeMap<String, i64>>,
}

/// One stored document.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredKeyLimit {
    since_ms: i64,
}

impl KeyLimits {
    /// The firing alerts as the store keeps them; none when it cannot be read (a feed that is
    /// still full pages again at its next refused key, rather than never).
    pub(super) async fn load(store: &StateStore) -> KeyLimits {
        let stored = match store.documents_load(Documents::KeyLimits).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "key-limit alerts not read; a feed still full pages again");
                Vec::new()
            }
        };
        let firing = stored
            .into_iter()
            .filter_map(|(feed, json)| {
                let stored: StoredKeyLimit = serde_json::from_str(&json).ok()?;
                Some((feed, stored.since_ms))
            })
            .collect();
        KeyLimits {
            firing: Mutex::new(firing),
        }
    }

    fn firing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.firing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn key_limit_alert(feed: &str, max_keys: usize, firing: bool, since_ms: i64) -> SystemAlert {
    let summary = if firing {
        format!(
            "Feed {feed} reached max_keys ({max_keys}); records with new split values are not tracked"
        )
    } else {
        format!("Feed {feed} is under max_keys ({max_keys}) again")
    };
    SystemAlert {
        alertname: KEY_LIMIT,
        severity: Severity::Warning,
        labels: vec![("feed", feed.to_owned())],
        summary,
        firing,
        since_ms,
    }
}

impl Pipeline {
    /// Raises `FreshwatchKeyLimit` for the feeds that refused their first key (`newly_full`)
    /// unless it fires already, and resolves it for every firing feed back under its bound.
    pub(super) async fn key_limit_alerts(&self, newly_full: Vec<FeedIndex>, now_ms: i64) {
        let mut raised = Vec::new();
        let mut resolved = Vec::new();
        {
            let tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut firing = self.key_limits.firing();
            for feed in newly_full {
                let track = tracker.feed(feed);
                if !firing.contains_key(&*track.name) {
                    firing.insert(track.name.to_string(), now_ms);
                    raised.push(key_limit_alert(&track.name, track.max_keys, true, now_ms));
                }
            }
            firing.retain(|name, since_ms| {
                let track = tracker.feeds().iter().find(|track| *track.name == **name);
                let full = track.is_some_and(|track| track.keys() >= track.max_keys);
                if !full {
                    let max_keys = track.map_or(0, |track| track.max_keys);
                    resolved.push(key_limit_alert(name, max_keys, false, *since_ms));
                }
                full
            });
        }
        let written: Vec<(String, String)> = raised
            .iter()
            .map(|alert| {
                let json = serde_json::to_string(&StoredKeyLimit {
                    since_ms: alert.since_ms,
                })
                .unwrap_or_default();
                (alert.labels[0].1.clone(), json)
            })
            .collect();
        if let Err(error) = self
            .store
            .documents_write(Documents::KeyLimits, written)
            .await
        {
            tracing::warn!(%error, "key-limit alert not persisted; a restart may page it again");
        }
        let removed: Vec<String> = resolved
            .iter()
            .map(|alert| alert.labels[0].1.clone())
            .collect();
        if let Err(error) = self
            .store
            .documents_remove(Documents::KeyLimits, removed)
            .await
        {
            tracing::warn!(%error, "resolved key-limit alert not removed from the store");
        }
        for alert in raised {
            tracing::error!(feed = %alert.labels[0].1, "feed reached max_keys; records with new split values are refused");
            self.dispatcher.dispatch(Notice::System(alert)).await;
        }
        for alert in resolved {
            tracing::info!(feed = %alert.labels[0].1, "feed is under max_keys again");
            self.dispatcher.dispatch(Notice::System(alert)).await;
        }
    }

    /// The key-limit alerts firing now, for sinks that take up what fired before a restart.
    pub(super) fn firing_key_limits(&self) -> Vec<SystemAlert> {
        let tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.key_limits
            .firing()
            .iter()
            .map(|(name, &since_ms)| {
                let max_keys = tracker
                    .feeds()
                    .iter()
                    .find(|track| *track.name == **name)
                    .map_or(0, |track| track.max_keys);
                key_limit_alert(name, max_keys, true, since_ms)
            })
            .collect()
    }

    /// Writes every firing key-limit alert again into a store that lost it.
    pub(super) async fn write_back_key_limits(&self) {
        let entries: Vec<(String, String)> = self
            .key_limits
            .firing()
            .iter()
            .map(|(feed, &since_ms)| {
                let json = serde_json::to_string(&StoredKeyLimit { since_ms }).unwrap_or_default();
                (feed.clone(), json)
            })
            .collect();
        if let Err(error) = self
            .store
            .documents_write(Documents::KeyLimits, entries)
            .await
        {
            tracing::warn!(%error, "key-limit alerts not written back yet");
        }
    }

    /// On becoming leader: the key-limit alerts as the last leader left them.
    pub(super) async fn adopt_key_limits(&self) {
        let adopted = KeyLimits::load(&self.store).await;
        let firing = std::mem::take(&mut *adopted.firing());
        *self.key_limits.firing() = firing;
    }
}
