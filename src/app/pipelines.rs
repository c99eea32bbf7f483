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
use crate::silence::{Matchers, Silence, MAX_DURATION_MS};

/// `created_by` of the holds.
pub(super) const HOLD_AUTHOR: &str = "freshwatch";

/// Why a hop is held: the pipeline, its first broken hop, and the grace after it recovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) pipeline: Arc<str>,
    pub(super) cause: Hop,
    pub(super) grace_ms: i64,
}

/// Per held hop, why: the first broken hop upstream of it in the first pipeline that has one.
pub(super) fn holds(
    pipelines: &[crate::config::PipelineConfig],
    alerting: &BTreeSet<Hop>,
) -> BTreeMap<Hop, Hold> {
    let mut held = BTreeMap::new();
    for pipeline in pipelines {
        let Some(cause) = pipeline.hops.iter().position(|hop| alerting.contains(hop)) else {
            continue;
        };
        for hop in &pipeline.hops[cause + 1..] {
            held.entry(hop.clone()).or_insert_with(|| Hold {
                pipeline: pipeline.name.clone(),
                cause: pipeline.hops[cause].clone(),
                grace_ms: duration_ms(pipeline.catchup_grace),
            });
        }
    }
    held
}

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
    /// The hops alerting now: a feed with a key warning, critical or never seen, or blind past
    /// its bound; a group with any alert firing, or blind past its bound.
    fn alerting_hops(&self) -> BTreeSet<Hop> {
        let hops: BTreeSet<&Hop> = self
            .pipelines
            .iter()
            .flat_map(|pipeline| &pipeline.hops)
            .collect();
        let mut alerting = BTreeSet::new();
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
                let stale = feed
                    .series()
                    .iter()
                    .any(|series| series.status.severity().is_some());
                if stale || blind.is_alerting(index) {
                    alerting.insert(hop);
                }
            }
        }
        if let Some(groups) = &self.groups {
            let table = groups
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for ((label, _), state) in table.iter() {
                if state.firing != crate::groups::Firing::default() {
                    alerting.insert(Hop::Group(label.clone()));
                }
            }
            let blind = groups
                .blind_alerting
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            alerting.extend(blind.keys().map(|label| Hop::Group(label.clone())));
        }
        alerting
    }

    /// Puts a hold on every hop behind a broken one, and ends (after `catchup_grace`) the
    /// holds of hops no longer behind one. Before this tick's notifications go out, so a hop
    /// that breaks together with its upstream is held from its first page.
    /// Returns the holds, for [`context`].
    pub(super) async fn pipeline_holds(&self, now_ms: i64) -> BTreeMap<Hop, Hold> {
        if self.pipelines.is_empty() {
            return BTreeMap::new();
        }
        let held = holds(&self.pipelines, &self.alerting_hops());
        let open: Vec<(Hop, Silence)> = self
            .silences
            .silences
            .list(now_ms)
            .into_iter()
            .filter(|silence| silence.active(now_ms))
            .filter_map(|silence| Some((held_hop(&silence)?, silence)))
            .collect();
        let mut changed = Vec::new();
        for (hop, hold) in &held {
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
        held
    }
}

/// What the page of a broken hop says of its pipelines: "pipeline chain broken at up;
/// downstream held: down". `None` when `hop` holds nothing.
pub(super) fn context(held: &BTreeMap<Hop, Hold>, hop: &Hop) -> Option<Arc<str>> {
    let mut by_pipeline: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (held_hop, hold) in held {
        if hold.cause == *hop {
            by_pipeline
                .entry(&hold.pipeline)
                .or_default()
                .push(held_hop.to_string());
        }
    }
    if by_pipeline.is_empty() {
        return None;
    }
    let parts: Vec<String> = by_pipeline
        .into_iter()
        .map(|(pipeline, held)| {
            format!(
                "pipeline {pipeline} broken at {hop}; downstream held: {}",
                held.join(", ")
            )
        })
        .collect();
    Some(Arc::from(parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;

    fn feed(name: &str) -> Hop {
        Hop::Feed(Arc::from(name))
    }

    fn pipeline(name: &str, hops: &[Hop]) -> PipelineConfig {
        PipelineConfig {
            name: Arc::from(name),
            hops: hops.to_vec(),
            catchup_grace: Duration::from_secs(600),
        }
    }

    #[test]
    fn hops_behind_the_first_broken_one_are_held_by_it_and_the_ones_before_are_not() {
        let chain = [
            feed("upstream"),
            Hop::Group(Arc::from("feeder")),
            feed("cdp"),
            feed("exports"),
        ];
        let pipelines = [pipeline("cdp-profiles", &chain)];
        let broken: BTreeSet<Hop> = [Hop::Group(Arc::from("feeder")), feed("cdp")].into();
        let held = holds(&pipelines, &broken);
        assert_eq!(
            held.keys().cloned().collect::<Vec<_>>(),
            [feed("cdp"), feed("exports")]
        );
        assert_eq!(held[&feed("cdp")].cause, Hop::Group(Arc::from("feeder")));
        assert_eq!(held[&feed("cdp")].pipeline.as_ref(), "cdp-profiles");
        assert_eq!(held[&feed("cdp")].grace_ms, 600_000);
        assert_eq!(
            context(&held, &Hop::Group(Arc::from("feeder"))).as_deref(),
            Some("pipeline cdp-profiles broken at group:feeder; downstream held: cdp, exports")
        );
        assert_eq!(context(&held, &feed("cdp")), None);
        assert!(holds(&pipelines, &BTreeSet::new()).is_empty());
        let last_only: BTreeSet<Hop> = [feed("exports")].into();
        assert!(
            holds(&pipelines, &last_only).is_empty(),
            "the last hop broken alone pages as today"
        );
    }
}
