//! Each feed's last status transitions, for the status page (`/feeds/{feed}`).
//!
//! The leader records every notifiable transition where it sends it
//! ([`crate::app`]'s `notify`), keeps the last [`PER_FEED`] per feed in memory (shared with the
//! HTTP side) and writes the feeds that changed to the state store's `history` documents, so a
//! restart or a new leader shows what happened before it. The history is a view for people: a
//! write that fails is logged and retried with the next transition, never waited for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::evaluate::Transition;
use crate::model::Status;
use crate::state::{Documents, StateStore};

/// Transitions kept per feed.
pub const PER_FEED: usize = 50;

/// One status change of one series, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// When the status changed, unix ms.
    pub at_ms: i64,
    pub key: String,
    pub from: String,
    pub to: String,
    /// now − last-seen when it changed; `None` for a series never seen.
    pub staleness_ms: Option<i64>,
}

impl TransitionRecord {
    fn of(transition: &Transition) -> TransitionRecord {
        TransitionRecord {
            at_ms: transition.at_ms,
            key: transition.key.clone(),
            from: transition.from.as_str().to_owned(),
            to: transition.to.as_str().to_owned(),
            staleness_ms: transition.staleness_ms,
        }
    }

    /// The status it changed to, when it still parses.
    pub fn to_status(&self) -> Option<Status> {
        Status::parse(&self.to)
    }
}

/// The last transitions of every feed, oldest first per feed.
#[derive(Debug, Default)]
pub struct History {
    feeds: Mutex<HashMap<Arc<str>, VecDeque<TransitionRecord>>>,
}

impl History {
    /// Appends `transitions` and returns the changed feeds' documents (feed → JSON array).
    pub fn record(&self, transitions: &[Transition]) -> Vec<(String, String)> {
        let mut feeds = self.lock();
        let mut changed: Vec<Arc<str>> = Vec::new();
        for transition in transitions {
            let history = feeds.entry(transition.feed.clone()).or_default();
            history.push_back(TransitionRecord::of(transition));
            while history.len() > PER_FEED {
                history.pop_front();
            }
            if !changed.contains(&transition.feed) {
                changed.push(transition.feed.clone());
            }
        }
        changed
            .into_iter()
            .map(|feed| {
                let json = serde_json::to_string(&feeds[&feed]).unwrap_or_default();
                (feed.to_string(), json)
            })
            .collect()
    }

    /// [`History::record`], then writes the changed feeds to the store (logged on failure).
    pub async fn record_and_store(&self, store: &StateStore, transitions: &[Transition]) {
        let documents = self.record(transitions);
        if let Err(error) = store.documents_write(Documents::History, documents).await {
            tracing::warn!(%error, "transition history not persisted");
        }
    }

    /// The store lost its data: every feed's history is written again.
    pub async fn write_back(&self, store: &StateStore) {
        let documents: Vec<(String, String)> = self
            .lock()
            .iter()
            .filter_map(|(feed, history)| {
                Some((feed.to_string(), serde_json::to_string(history).ok()?))
            })
            .collect();
        if let Err(error) = store.documents_write(Documents::History, documents).await {
            tracing::warn!(%error, "transition history not written back yet");
        }
    }

    /// Replaces the memory with what the store holds for the configured `feeds` (at start and on
    /// becoming leader, whose predecessor wrote since).
    pub async fn load(&self, store: &StateStore, feeds: &[Arc<str>]) {
        let stored = match store.documents_load(Documents::History).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "transition history not read; it starts empty");
                return;
            }
        };
        self.restore(stored, feeds);
    }

    fn restore(&self, stored: Vec<(String, String)>, feeds: &[Arc<str>]) {
        let mut restored = HashMap::new();
        for (name, json) in stored {
            let Some(feed) = feeds.iter().find(|feed| ***feed == *name) else {
                continue;
            };
            match serde_json::from_str::<VecDeque<TransitionRecord>>(&json) {
                Ok(mut history) => {
                    while history.len() > PER_FEED {
                        history.pop_front();
                    }
                    restored.insert(feed.clone(), history);
                }
                Err(error) => {
                    tracing::warn!(%feed, %error, "unreadable transition history ignored")
                }
            }
        }
        *self.lock() = restored;
    }

    /// A feed's transitions, newest first.
    pub fn newest_first(&self, feed: &str) -> Vec<TransitionRecord> {
        self.lock()
            .get(feed)
            .map(|history| history.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, VecDeque<TransitionRecord>>> {
        self.feeds
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(feed: &str, key: &str, to: Status, at_ms: i64) -> Transition {
        Transition {
            feed: Arc::from(feed),
            key: key.to_owned(),
            split: true,
            topic: "topic".into(),
            from: Status::Ok,
            to,
            at_ms,
            from_since_ms: 0,
            alert_since_ms: at_ms,
            last_seen_ms: Some(0),
            staleness_ms: Some(at_ms),
            warn_after_ms: 1,
            critical_after_ms: 2,
            records: 1,
            context: None,
        }
    }

    #[test]
    fn keeps_the_last_fifty_per_feed_and_names_only_changed_feeds() {
        let history = History::default();
        let many: Vec<Transition> = (0..(PER_FEED as i64 + 7))
            .map(|at| transition("profiles", &format!("t{at}"), Status::Warning, at))
            .collect();
        let documents = history.record(&many);
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].0, "profiles");
        let newest = history.newest_first("profiles");
        assert_eq!(newest.len(), PER_FEED);
        assert_eq!(newest[0].at_ms, PER_FEED as i64 + 6);
        assert_eq!(newest[PER_FEED - 1].at_ms, 7);

        let documents = history.record(&[transition("orders", "", Status::Critical, 1)]);
        assert_eq!(
            documents
                .iter()
                .map(|(feed, _)| feed.as_str())
                .collect::<Vec<_>>(),
            ["orders"]
        );
        assert!(history.newest_first("unknown-feed").is_empty());
    }

    #[test]
    fn a_stored_document_restores_for_configured_feeds_only() {
        let written = History::default();
        let mut documents = written.record(&[
            transition("profiles", "a", Status::Critical, 5),
            transition("gone", "b", Status::Warning, 6),
        ]);
        documents.push(("profiles-broken".into(), "not json".into()));
        let feeds: Vec<Arc<str>> = vec![Arc::from("profiles"), Arc::from("profiles-broken")];
        let restored = History::default();
        restored.restore(documents, &feeds);
        assert_eq!(
            restored.newest_first("profiles"),
            written.newest_first("profiles")
        );
        assert_eq!(
            restored.newest_first("profiles")[0].to_status(),
            Some(Status::Critical)
        );
        assert!(restored.newest_first("gone").is_empty());
        assert!(restored.newest_first("profiles-broken").is_empty());
    }
}
