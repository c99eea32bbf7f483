//! Watched consumer groups in the pipeline: judged every tick on every replica (API and
//! metrics), paged and persisted by the leader, adopted by a new leader.

use std::collections::BTreeMap;

use super::*;
use crate::state::Documents;

/// Watched consumer groups: what the watcher read, and what the API shows.
pub(super) struct Groups {
    pub(super) table: Arc<Mutex<crate::groups::GroupsTable>>,
    pub(super) rules: Vec<crate::groups::GroupRules>,
    pub(super) views: Arc<Mutex<Vec<crate::groups::TopicView>>>,
    /// A (group, topic) not read for this long is `unknown`.
    pub(super) stale_after_ms: i64,
    /// Groups the watcher cannot read, and since when.
    pub(super) reads: Arc<Mutex<crate::groups::GroupReads>>,
    /// The `FreshwatchGroupsBlind` alerts firing.
    pub(super) blind_alerting: Mutex<BTreeMap<Arc<str>, crate::groups::ReadFailure>>,
    /// How long a group may be unreadable before `FreshwatchGroupsBlind`.
    pub(super) blind_after_ms: i64,
    /// Set while a group is blind past its bound: the heartbeat stops.
    pub(super) blind: Arc<AtomicBool>,
    /// Stored states to remove at the next flush: no `[[group]]` watches them any more.
    pub(super) forgotten: Mutex<Vec<String>>,
}

impl Pipeline {
    /// Judges the watched groups (every replica: the API and metrics), and returns the alert
    /// changes when leading.
    pub(super) fn evaluate_groups(&self, now_ms: i64) -> Vec<SystemAlert> {
        let Some(groups) = &self.groups else {
            return Vec::new();
        };
        let leader = self.leadership.is_leader();
        let (views, mut alerts, removed) = {
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
        if !removed.is_empty() {
            for (label, topic) in &removed {
                self.metrics.groups.forget(label, topic);
            }
            self.forget_groups(removed);
        }
        {
            let reads = groups
                .reads
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut alerting = groups
                .blind_alerting
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let source_down = self
                .watch
                .source_alerting
                .iter()
                .any(|alerting| alerting.load(Ordering::Relaxed));
            let blind = crate::groups::blindness(
                &reads,
                &mut alerting,
                groups.blind_after_ms,
                source_down,
                now_ms,
            );
            groups.blind.store(!alerting.is_empty(), Ordering::Relaxed);
            if leader {
                alerts.extend(blind);
            } else {
                // A follower pages nothing; it only keeps the heartbeat honest.
                alerting.clear();
            }
        }
        crate::groups::export_metrics(&self.metrics.groups, &views);
        *groups
            .views
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = views;
        alerts
    }

    /// Marks the stored state of (group, topic)s no `[[group]]` watches any more for removal at
    /// the next flush; their alerts were resolved once by the judgement that found them.
    fn forget_groups(&self, removed: Vec<crate::groups::GroupTopic>) {
        let Some(groups) = &self.groups else {
            return;
        };
        groups
            .forgotten
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend(
                removed
                    .iter()
                    .filter_map(|(label, topic)| serde_json::to_string(&(&**label, topic)).ok()),
            );
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
        let forgotten = std::mem::take(
            &mut *groups
                .forgotten
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        if !forgotten.is_empty() {
            if let Err(error) = self
                .store
                .documents_remove(Documents::Groups, forgotten.clone())
                .await
            {
                tracing::warn!(%error, "state of groups no longer watched not removed; will retry");
                groups
                    .forgotten
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .extend(forgotten);
            }
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
                    // Kept even when no `[[group]]` watches it now: the first judgement resolves
                    // what it had firing and forgets it.
                    Some(((label, topic), state)) => {
                        table.insert((Arc::from(label.as_str()), topic), state);
                    }
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
        reads: Arc::default(),
        blind_alerting: Mutex::default(),
        blind_after_ms: duration_ms(
            config.evaluation.blind_after.unwrap_or(
                config
                    .groups
                    .iter()
                    .map(|group| group.critical_after)
                    .min()
                    .unwrap_or_default(),
            ),
        ),
        blind: Arc::default(),
        forgotten: Mutex::default(),
    }
}
