//! Silences in the pipeline: every replica takes up the shared set; the leader tells the sinks,
//! when a silence ends, what it held and still fires.

use super::*;
use crate::silence::Silence;

impl Pipeline {
    /// Tells the notification sinks what each silence that ended held and still fires (the
    /// silence is marked handled in the store, so this happens once, restarts included).
    pub(super) async fn silence_ends(&self, now_ms: i64) {
        let active = self.silences.silences.active(now_ms);
        self.metrics.silences_active.set(active as i64);
        for silence in self.silences.silences.ended_unhandled(now_ms) {
            let notices = self.still_firing_under(&silence, now_ms).await;
            tracing::info!(silence = %silence.id, held = notices.len(), "silence ended; sending what it held that still fires");
            for notice in notices {
                self.dispatcher.dispatch(notice).await;
            }
            if let Err(error) = self.silences.mark_end_handled(silence).await {
                tracing::warn!(%error, "a silence's end not recorded; it is handled again");
            }
        }
    }

    /// What `silence` matches that entered its current alerting status while it was active.
    async fn still_firing_under(&self, silence: &Silence, now_ms: i64) -> Vec<Notice> {
        let rollups = self.rollups.lock().await;
        let facts = self.feed_facts();
        let mut notices = Vec::new();
        let series: Vec<crate::evaluate::Transition> = {
            let (tracker, evaluator) = self.table();
            tracker
                .all_ids()
                .filter(|&id| {
                    let series = tracker.series(id);
                    let feed = &tracker.feed(id.feed).name;
                    series.status.severity().is_some()
                        && series.status_since_ms >= silence.starts_at_ms
                        && silence.matches_series(feed, &series.key())
                        && !rollups.is_member(feed, &series.key())
                })
                .map(|id| {
                    let mut transition = evaluator.describe(&tracker, id, now_ms);
                    transition.from = crate::model::Status::Ok;
                    transition
                })
                .collect()
        };
        notices.extend(series.into_iter().map(Notice::Changed));
        for feed in rollups.feeds() {
            let opened_inside = rollups
                .get(&feed)
                .is_some_and(|rollup| rollup.opened_at_ms >= silence.starts_at_ms);
            if opened_inside && silence.matches_series(&feed, "") {
                let facts = facts.get(&feed).cloned().unwrap_or_default();
                notices.extend(rollups.announce(&feed, &facts, now_ms).map(Notice::RollUp));
            }
        }
        notices.extend(
            self.firing_volume()
                .into_iter()
                .filter(|alert| {
                    let label = |wanted: &str| {
                        alert
                            .labels
                            .iter()
                            .find(|(name, _)| *name == wanted)
                            .map_or("", |(_, value)| value.as_str())
                    };
                    alert.since_ms >= silence.starts_at_ms
                        && silence.matches_series(label("feed"), label("key"))
                })
                .map(Notice::System),
        );
        if let Some(groups) = &self.groups {
            let table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            notices.extend(
                crate::groups::firing(&table, now_ms)
                    .into_iter()
                    .filter(|alert| {
                        alert.since_ms >= silence.starts_at_ms
                            && alert.labels.iter().any(|(name, value)| {
                                *name == "group" && silence.matches_group(value)
                            })
                    })
                    .map(Notice::System),
            );
        }
        notices
    }
}
