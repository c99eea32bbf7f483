//! Watched consumer groups in the pipeline: judged every tick on every replica (API and
//! metrics), paged and persisted by the leader, adopted by a new leader.

use super::*;
use crate::state::Documents;

/// Watched consumer groups: what the watcher read, and what the API shows.
pub(super) struct Groups {
    pub(super) table: Arc<Mutex<crate::groups::GroupsTable>>,
    pub(super) rules: Vec<crate::groups::GroupRules>,
    pub(super) views: Arc<Mutex<Vec<crate::groups::TopicView>>>,
    /// A (group, topic) not read for this long is `unknown`.
    pub(super) stale_after_ms: i64,
}

impl Pipeline {
    /// Judges the watched groups (every replica: the API and metrics), and returns the alert
    /// changes when leading.
    pub(super) fn evaluate_groups(&self, now_ms: i64) -> Vec<SystemAlert> {
        let Some(groups) = &self.groups else {
            return Vec::new();
        };
        let leader = self.leadership.is_leader();
        let (views, alerts) = {
            let mut table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            crate::groups::evaluate(
                &mut table,
                &groups.rules,
                now_ms,
                now_ms - groups.stale_after_ms,
                leader,
            )
        };
        self.metrics.groups.show(&views);
        *groups
            .views
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = views;
        alerts
    }

    /// A new leader takes the group states its predecessor wrote: what is firing, and the
    /// earliest known last move of each commit (a follower that started later saw it later).
    pub(super) async fn adopt_groups(&self) {
        let Some(groups) = &self.groups else {
            return;
        };
        let stored = match self.store.documents_load(Documents::Groups).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "new leader cannot read the group states");
                return;
            }
        };
        let mut table = groups
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for (key, json) in stored {
            let parsed = serde_json::from_str::<(String, String)>(&key)
                .ok()
                .zip(serde_json::from_str::<crate::groups::TopicState>(&json).ok());
            let Some(((label, topic), state)) = parsed else {
                continue;
            };
            match table.get_mut(&(Arc::from(label.as_str()), topic.clone())) {
                Some(own) => own.adopt(state),
                None => {
                    table.insert((Arc::from(label.as_str()), topic), state);
                }
            }
        }
    }

    /// Writes the (group, topic) states that changed: commits' last moves and firing alerts
    /// survive a restart. Only the leader writes: a follower's view of what fires is stale.
    pub(super) async fn flush_groups(&self) {
        let Some(groups) = &self.groups else {
            return;
        };
        if !self.leadership.is_leader() {
            return;
        }
        let entries: Vec<(String, String)> = {
            let mut table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            table
                .iter_mut()
                .filter_map(|(key, state)| std::mem::take(&mut state.dirty).then_some((key, state)))
                .filter_map(|((label, topic), state)| {
                    let key = serde_json::to_string(&(&**label, topic)).ok()?;
                    Some((key, serde_json::to_string(state).ok()?))
                })
                .collect()
        };
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self
            .store
            .documents_write(Documents::Groups, entries.clone())
            .await
        {
            tracing::warn!(%error, "group state not written; will retry");
            let mut table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (key, _) in entries {
                if let Ok((label, topic)) = serde_json::from_str::<(String, String)>(&key) {
                    if let Some(state) = table.get_mut(&(Arc::from(label.as_str()), topic)) {
                        state.dirty = true;
                    }
                }
            }
        }
    }
}

/// The watched groups' persisted state (commits' last moves, firing alerts); what cannot be
/// read starts empty, and the watcher fills it in.
pub(super) async fn restore_groups(config: &Config, store: &StateStore) -> Groups {
    let mut table = crate::groups::GroupsTable::new();
    match store.documents_load(Documents::Groups).await {
        Ok(entries) => {
            for (key, json) in entries {
                let parsed = serde_json::from_str::<(String, String)>(&key)
                    .ok()
                    .zip(serde_json::from_str::<crate::groups::TopicState>(&json).ok());
                match parsed {
                    Some(((label, topic), state)) if state.rules < config.groups.len() => {
                        table.insert((Arc::from(label.as_str()), topic), state);
                    }
                    Some(_) => {}
                    None => tracing::warn!(%key, "unreadable group state ignored"),
                }
            }
        }
        Err(error) => tracing::warn!(%error, "group state not restored"),
    }
    Groups {
        table: Arc::new(Mutex::new(table)),
        rules: config
            .groups
            .iter()
            .map(crate::groups::GroupRules::from_config)
            .collect(),
        views: Arc::default(),
        stale_after_ms: 3 * duration_ms(config.kafka.groups_interval) + 10_000,
    }
}
