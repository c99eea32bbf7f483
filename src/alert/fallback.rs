//! Fallbacks: where a notification a sink could not deliver goes too.
//!
//! Shared by notification sinks and Alertmanager sinks, so a resolve follows its trigger to the
//! fallback whichever kind of sink failed.

use std::collections::HashSet;

use super::delivery::Directory;
use super::notification::Notification;
use crate::state::StateStore;

/// A sink's fallbacks: where a notification it could not deliver goes too, and which incidents
/// are open there, so that their later notifications (the resolve above all) follow them.
#[derive(Debug, Default)]
pub struct Fallbacks {
    targets: Vec<String>,
    directory: Directory,
    open_keys: HashSet<String>,
}

impl Fallbacks {
    pub fn new(targets: Vec<String>, directory: Directory) -> Fallbacks {
        Fallbacks {
            targets,
            directory,
            open_keys: HashSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether `notification`'s incident is open on the fallbacks.
    pub fn follows(&self, notification: &Notification) -> bool {
        self.open_keys.contains(&notification.dedup_key)
    }

    /// Incidents open on the fallbacks.
    pub fn open_incidents(&self) -> usize {
        self.open_keys.len()
    }

    /// Copies `notification` from `sink` to every fallback (`why` goes to the log).
    pub async fn send(
        &mut self,
        store: &StateStore,
        sink: &str,
        notification: &Notification,
        why: &str,
    ) {
        let Some(directory) = self.directory.get() else {
            return;
        };
        if notification.firing {
            self.open_keys.insert(notification.dedup_key.clone());
        } else {
            self.open_keys.remove(&notification.dedup_key);
        }
        for target in &self.targets {
            if let Some(handle) = directory.get(target) {
                tracing::warn!(sink, fallback = %target, dedup_key = %notification.dedup_key, "notification {why}; sending it to the fallback sink too");
                handle.enqueue(store, notification.clone()).await;
            }
        }
    }
}
