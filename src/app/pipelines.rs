//! Pipelines at run time: a hop behind the first broken hop of a `[[pipeline]]` is held, so one
//! cause pages once. The hold is a silence freshwatch keeps itself (`created_by =
//! "freshwatch"`, id `hold-...`), so it has a silence's guarantees: listed in the API, stored
//! and shared by replicas, written back after state loss; a held hop's alerts reach Alertmanager
//! annotated, and notification sinks not at all; a resolve of what began inside is never sent.
//! When the broken hop recovers, the hold ends after the pipeline's `catchup_grace`: what the
//! held hop still fires then is sent once, as when any silence ends.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::Hop;
use crate::pipelines::{alerting, holds, views, Hold, HopState};
use crate::silence::{Matchers, Silence, MAX_DURATION_MS};

/// `created_by` of the holds.
pub(super) const HOLD_AUTHOR: &str = "freshwatch";

/// The hop a hold silence is about.
fn held_hop(silence: &Silence) -> Option<Hop> {
    if silence.created_by != HOLD_AUTHOR || !silence.id.starts_with("hold-") {
        return None;
    }
    match (&silence.matchers.feed, &silence.matchers.group) {
        (Some(feed), None) => Some(Hop::Feed(Arc::from(feed.as_str()))),
        (None, Some(group)) => Some(Hop::Group(Arc::from(group.as_str()))),
        _ => None,
    }
}

impl Pipeline {
    /// Each hop as it stands: one pass over the series of the feeds that are hops (a feed's
    /// status, its alerting and stale keys), and the groups' last judgement.
    fn hop_states(&self) -> BTreeMap<Hop, HopState> {
        let hops: BTreeSet<&Hop> = self
            .pipelines
            .iter()
            .flat_map(|pipeline| &pipeline.hops)
            .collect();
        let mut states = BTreeMap::new();
        {
            let tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let blind = self
                .watch
                .blind_feeds
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (index, feed) in tracker.feeds().iter().enumerate() {
                let hop = Hop::Feed(feed.name.clone());
                if !hops.contains(&hop) {
                    continue;
                }
                let mut worst = crate::model::Status::Ok;
                let mut stale = 0;
                let mut any = false;
                for series in &feed.series()[feed.hidden()..] {
                    any = true;
                    if series.status.rank() > worst.rank() {
                        worst = series.status;
                    }
                    stale += usize::from(series.status.severity().is_some());
                }
                let blind = blind.is_alerting(index);
                let status = if !any || (blind && stale == 0) {
                    crate::model::Status::Unknown
                } else {
                    worst
                };
                states.insert(
                    hop,
                    HopState {
                        alerting: stale > 0 || blind,
                        status: status.as_str(),
                        keys: Some(feed.keys()),
                        stale_keys: Some(stale),
                        newest_ms: (feed.newest_ms != crate::tracker::NEVER)
                            .then_some(feed.newest_ms),
                        lag_records: None,
                    },
                );
            }
        }
        if let Some(groups) = &self.groups {
            let mut firing = BTreeSet::new();
            {
                let table = groups
                    .table
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                for ((label, _), state) in table.iter() {
                    if state.firing != crate::groups::Firing::default() {
                        firing.insert(label.clone());
                    }
                }
                let blind = groups
                    .blind_alerting
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                firing.extend(blind.keys().cloned());
            }
            let views = groups
                .views
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for hop in &hops {
                let Hop::Group(label) = hop else { continue };
                let mine: Vec<&crate::groups::TopicView> = views
                    .iter()
                    .filter(|view| view.group == label.as_ref())
                    .collect();
                let status = mine
                    .iter()
                    .map(|view| view.status)
                    .max_by_key(|status| group_rank(*status))
                    .map_or("unknown", crate::groups::GroupStatus::as_str);
                states.insert(
                    (*hop).clone(),
                    HopState {
                        alerting: firing.contains(label),
                        status,
                        lag_records: (!mine.is_empty())
                            .then(|| mine.iter().map(|view| view.lag_records).sum()),
                        ..HopState::default()
                    },
                );
            }
        }
        states
    }

    /// Every replica, each tick: the pipelines' view and gauges. Returns the hops' states and
    /// the holds they call for (the leader puts them, [`Pipeline::put_holds`]).
    pub(super) fn judge_pipelines(
        &self,
        now_ms: i64,
    ) -> (BTreeMap<Hop, HopState>, BTreeMap<Hop, Hold>) {
        if self.pipelines.is_empty() {
            return (BTreeMap::new(), BTreeMap::new());
        }
        let states = self.hop_states();
        let held = holds(&self.pipelines, &alerting(&states));
        // Held now, or still in the grace after the cause recovered.
        let mut held_by: BTreeMap<Hop, String> = self
            .silences
            .silences
            .list(now_ms)
            .into_iter()
            .filter(|silence| silence.active(now_ms))
            .filter_map(|silence| Some((held_hop(&silence)?, silence.held_by?)))
            .collect();
        held_by.extend(
            held.iter()
                .map(|(hop, hold)| (hop.clone(), hold.cause.to_string())),
        );
        let views = views(&self.pipelines, &states, &held_by, now_ms);
        self.metrics.pipelines.export(&views);
        *self
            .pipeline_views
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = views;
        (states, held)
    }

    /// Puts a hold on every hop behind a broken one, and ends (after `catchup_grace`) the
    /// holds of hops no longer behind one. Before this tick's notifications go out, so a hop
    /// that breaks together with its upstream is held from its first page.
    pub(super) async fn put_holds(&self, held: &BTreeMap<Hop, Hold>, now_ms: i64) {
        if self.pipelines.is_empty() {
            return;
        }
        let open: Vec<(Hop, Silence)> = self
            .silences
            .silences
            .list(now_ms)
            .into_iter()
            .filter(|silence| silence.active(now_ms))
            .filter_map(|silence| Some((held_hop(&silence)?, silence)))
            .collect();
        let mut changed = Vec::new();
        for (hop, hold) in held {
            let until_ms = now_ms.saturating_add(MAX_DURATION_MS);
            match open.iter().find(|(open_hop, _)| open_hop == hop) {
                // Held, and not ending: nothing to do.
                Some((_, silence)) if silence.ends_at_ms - now_ms > hold.grace_ms => {}
                // Held again while its grace ran: the hold goes on.
                Some((_, silence)) => changed.push(Silence {
                    ends_at_ms: until_ms,
                    ..silence.clone()
                }),
                None => {
                    let (feed, group) = match hop {
                        Hop::Feed(name) => (Some(name.to_string()), None),
                        Hop::Group(name) => (None, Some(name.to_string())),
                    };
                    tracing::info!(pipeline = %hold.pipeline, hop = %hop, cause = %hold.cause, "hop held: the pipeline is broken upstream of it");
                    changed.push(Silence {
                        id: format!("hold-{}", crate::silence::new_id()),
                        matchers: Matchers {
                            feed,
                            key: None,
                            group,
                        },
                        starts_at_ms: now_ms,
                        ends_at_ms: until_ms,
                        comment: format!(
                            "held by pipeline {}: broken at {}",
                            hold.pipeline, hold.cause
                        ),
                        created_by: HOLD_AUTHOR.to_owned(),
                        allow_data_loss: false,
                        end_handled: false,
                        held_by: Some(hold.cause.to_string()),
                    });
                }
            }
        }
        for (hop, silence) in open {
            if held.contains_key(&hop) {
                continue;
            }
            let grace_ms = self
                .pipelines
                .iter()
                .filter(|pipeline| pipeline.hops.contains(&hop))
                .map(|pipeline| duration_ms(pipeline.catchup_grace))
                .max()
                .unwrap_or(0);
            let ends_at_ms = now_ms.saturating_add(grace_ms);
            if silence.ends_at_ms > ends_at_ms {
                tracing::info!(hop = %hop, grace_ms, "the pipeline upstream of a held hop recovered; the hold ends after catchup_grace");
                changed.push(Silence {
                    ends_at_ms,
                    ..silence
                });
            }
        }
        for silence in changed {
            if let Err(error) = self.silences.put(silence).await {
                // Held in memory all the same (the book keeps it); written at the next change.
                tracing::warn!(%error, "a pipeline hold not stored");
            }
        }
    }
}

/// How bad a group status looks, for a group hop's worst topic.
fn group_rank(status: crate::groups::GroupStatus) -> u8 {
    use crate::groups::GroupStatus;
    match status {
        GroupStatus::Ok => 0,
        GroupStatus::Unknown => 1,
        GroupStatus::Warning => 2,
        GroupStatus::Stalled | GroupStatus::OffsetOutOfRange => 3,
        GroupStatus::Critical | GroupStatus::NoCommits => 4,
    }
}
