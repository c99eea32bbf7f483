//! `[[pipeline]]`s: hops in data-flow order. What is pure lives here: which hops a broken one
//! holds, what its page says of them, and each pipeline's view (`GET /api/v1/pipelines`, the
//! status page's chains, `freshwatch_hop_delay_seconds`). The holds themselves, silences that
//! freshwatch keeps, are put and ended by the app each evaluation tick.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use crate::clock::rfc3339;
use crate::config::{Hop, PipelineConfig};
use crate::metrics::SecondsGauge;

/// One hop as the last evaluation tick left it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HopState {
    /// It pages now: a key warning, critical or never seen, a group alert, or blind past its
    /// bound. What holds the hops behind it.
    pub alerting: bool,
    /// The worst status of its keys (a feed) or topics (a group).
    pub status: &'static str,
    /// A feed's keys and how many of them page (`None` for a group).
    pub keys: Option<usize>,
    pub stale_keys: Option<usize>,
    /// A feed's newest event time over its keys, unix ms.
    pub newest_ms: Option<i64>,
    /// A group's records behind, summed over its topics.
    pub lag_records: Option<i64>,
}

/// Why a hop is held: the pipeline, its first broken hop, and the grace after it recovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub pipeline: Arc<str>,
    pub cause: Hop,
    pub grace_ms: i64,
}

/// Per held hop, why: the first broken hop upstream of it in the first pipeline that has one.
pub fn holds(pipelines: &[PipelineConfig], alerting: &BTreeSet<Hop>) -> BTreeMap<Hop, Hold> {
    let mut held = BTreeMap::new();
    for pipeline in pipelines {
        let Some(cause) = pipeline.hops.iter().position(|hop| alerting.contains(hop)) else {
            continue;
        };
        for hop in &pipeline.hops[cause + 1..] {
            held.entry(hop.clone()).or_insert_with(|| Hold {
                pipeline: pipeline.name.clone(),
                cause: pipeline.hops[cause].clone(),
                grace_ms: i64::try_from(pipeline.catchup_grace.as_millis()).unwrap_or(i64::MAX),
            });
        }
    }
    held
}

/// The hops that page now.
pub fn alerting(states: &BTreeMap<Hop, HopState>) -> BTreeSet<Hop> {
    states
        .iter()
        .filter(|(_, state)| state.alerting)
        .map(|(hop, _)| hop.clone())
        .collect()
}

/// What on-call reads of a held hop in the cause's page: "cdp (3 of 40 keys stale)".
fn held_words(hop: &Hop, state: Option<&HopState>) -> String {
    let Some(state) = state.filter(|state| state.alerting || state.status != "ok") else {
        return hop.to_string();
    };
    match (state.keys, state.stale_keys) {
        (Some(keys), Some(stale)) if keys > 1 && stale > 0 => {
            format!("{hop} ({stale} of {keys} keys stale)")
        }
        _ => format!("{hop} ({})", state.status),
    }
}

/// What the page of a broken hop says of its pipelines: "pipeline chain broken at up;
/// downstream held: down (3 of 40 keys stale)". `None` when `hop` holds nothing.
pub fn context(
    held: &BTreeMap<Hop, Hold>,
    states: &BTreeMap<Hop, HopState>,
    hop: &Hop,
) -> Option<Arc<str>> {
    let mut by_pipeline: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (held_hop, hold) in held {
        if hold.cause == *hop {
            by_pipeline
                .entry(&hold.pipeline)
                .or_default()
                .push(held_words(held_hop, states.get(held_hop)));
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

/// One pipeline in `GET /api/v1/pipelines` and on the status page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineView {
    pub name: String,
    /// `ok`, or `broken` while a hop pages.
    pub status: &'static str,
    /// The first hop that pages, the one whose page names this pipeline.
    pub broken_at: Option<String>,
    /// End to end: the staleness of the last feed hop's newest record.
    pub freshness_seconds: Option<f64>,
    pub catchup_grace_seconds: f64,
    pub hops: Vec<HopView>,
    /// Between each feed hop and the next feed hop downstream (groups between them skipped).
    pub delays: Vec<DelayView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HopView {
    /// As written in `hops`: a feed's name, or `group:<name>`.
    pub hop: String,
    /// `feed` or `group`.
    pub kind: &'static str,
    pub name: String,
    pub status: &'static str,
    pub alerting: bool,
    /// The broken hop upstream that holds this one's pages (also while its `catchup_grace`
    /// runs).
    pub held_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_keys: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_records: Option<i64>,
}

/// How far the downstream feed's newest event time trails the upstream's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelayView {
    pub from: String,
    pub to: String,
    /// `None` until both feeds have a record.
    pub seconds: Option<f64>,
}

fn seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// Every pipeline as it stands. `held_by`: the hops held now, by the hop that holds them.
pub fn views(
    pipelines: &[PipelineConfig],
    states: &BTreeMap<Hop, HopState>,
    held_by: &BTreeMap<Hop, String>,
    now_ms: i64,
) -> Vec<PipelineView> {
    pipelines
        .iter()
        .map(|pipeline| {
            let hops: Vec<HopView> = pipeline
                .hops
                .iter()
                .map(|hop| {
                    let state = states.get(hop).cloned().unwrap_or(HopState {
                        status: "unknown",
                        ..HopState::default()
                    });
                    let (kind, name) = match hop {
                        Hop::Feed(name) => ("feed", name),
                        Hop::Group(name) => ("group", name),
                    };
                    HopView {
                        hop: hop.to_string(),
                        kind,
                        name: name.to_string(),
                        status: state.status,
                        alerting: state.alerting,
                        held_by: held_by.get(hop).cloned(),
                        keys: state.keys,
                        stale_keys: state.stale_keys,
                        last_seen: state.newest_ms.map(rfc3339),
                        staleness_seconds: state
                            .newest_ms
                            .map(|newest| seconds((now_ms - newest).max(0))),
                        lag_records: state.lag_records,
                    }
                })
                .collect();
            let feeds: Vec<&Hop> = pipeline
                .hops
                .iter()
                .filter(|hop| matches!(hop, Hop::Feed(_)))
                .collect();
            let delays = feeds
                .windows(2)
                .map(|pair| {
                    let newest = |hop: &Hop| states.get(hop).and_then(|state| state.newest_ms);
                    DelayView {
                        from: pair[0].to_string(),
                        to: pair[1].to_string(),
                        seconds: newest(pair[0])
                            .zip(newest(pair[1]))
                            .map(|(up, down)| seconds((up - down).max(0))),
                    }
                })
                .collect();
            let broken_at = hops
                .iter()
                .find(|hop| hop.alerting && hop.held_by.is_none())
                .or_else(|| hops.iter().find(|hop| hop.alerting))
                .map(|hop| hop.hop.clone());
            let freshness_seconds = feeds
                .last()
                .and_then(|hop| states.get(*hop))
                .and_then(|state| state.newest_ms)
                .map(|newest| seconds((now_ms - newest).max(0)));
            PipelineView {
                name: pipeline.name.to_string(),
                status: if broken_at.is_some() { "broken" } else { "ok" },
                broken_at,
                freshness_seconds,
                catchup_grace_seconds: pipeline.catchup_grace.as_secs_f64(),
                hops,
                delays,
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HopDelayLabels {
    pub pipeline: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
}

/// `freshwatch_hop_delay_seconds` and `freshwatch_pipeline_freshness_seconds`: set each
/// evaluation tick; absent while a side has no record yet.
#[derive(Debug, Clone, Default)]
pub struct PipelineMetrics {
    pub hop_delay: Family<HopDelayLabels, SecondsGauge>,
    pub freshness: Family<PipelineLabels, SecondsGauge>,
}

impl PipelineMetrics {
    pub fn export(&self, views: &[PipelineView]) {
        for view in views {
            let labels = PipelineLabels {
                pipeline: view.name.clone(),
            };
            match view.freshness_seconds {
                Some(value) => {
                    self.freshness.get_or_create(&labels).set(value);
                }
                None => {
                    self.freshness.remove(&labels);
                }
            }
            for delay in &view.delays {
                let labels = HopDelayLabels {
                    pipeline: view.name.clone(),
                    from: delay.from.clone(),
                    to: delay.to.clone(),
                };
                match delay.seconds {
                    Some(value) => {
                        self.hop_delay.get_or_create(&labels).set(value);
                    }
                    None => {
                        self.hop_delay.remove(&labels);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn feed(name: &str) -> Hop {
        Hop::Feed(Arc::from(name))
    }

    fn group(name: &str) -> Hop {
        Hop::Group(Arc::from(name))
    }

    fn pipeline(name: &str, hops: &[Hop]) -> PipelineConfig {
        PipelineConfig {
            name: Arc::from(name),
            hops: hops.to_vec(),
            catchup_grace: Duration::from_secs(600),
            audits: Vec::new(),
        }
    }

    fn state(alerting: bool, status: &'static str, newest_ms: Option<i64>) -> HopState {
        HopState {
            alerting,
            status,
            newest_ms,
            ..HopState::default()
        }
    }

    #[test]
    fn hops_behind_the_first_broken_one_are_held_by_it_and_the_ones_before_are_not() {
        let chain = [
            feed("upstream"),
            group("feeder"),
            feed("cdp"),
            feed("exports"),
        ];
        let pipelines = [pipeline("cdp-profiles", &chain)];
        let broken: BTreeSet<Hop> = [group("feeder"), feed("cdp")].into();
        let held = holds(&pipelines, &broken);
        assert_eq!(
            held.keys().cloned().collect::<Vec<_>>(),
            [feed("cdp"), feed("exports")]
        );
        assert_eq!(held[&feed("cdp")].cause, group("feeder"));
        assert_eq!(held[&feed("cdp")].pipeline.as_ref(), "cdp-profiles");
        assert_eq!(held[&feed("cdp")].grace_ms, 600_000);
        let states: BTreeMap<Hop, HopState> = [(
            feed("cdp"),
            HopState {
                alerting: true,
                status: "critical",
                keys: Some(40),
                stale_keys: Some(3),
                ..HopState::default()
            },
        )]
        .into();
        assert_eq!(
            context(&held, &states, &group("feeder")).as_deref(),
            Some(
                "pipeline cdp-profiles broken at group:feeder; downstream held: cdp (3 of 40 keys \
                 stale), exports"
            )
        );
        assert_eq!(context(&held, &states, &feed("cdp")), None);
        assert!(holds(&pipelines, &BTreeSet::new()).is_empty());
        let last_only: BTreeSet<Hop> = [feed("exports")].into();
        assert!(
            holds(&pipelines, &last_only).is_empty(),
            "the last hop broken alone pages as today"
        );
    }

    #[test]
    fn hop_delay_is_how_far_the_next_feed_trails_across_groups_and_freshness_is_the_last_hop() {
        let chain = [feed("a"), group("relay"), feed("b"), feed("c")];
        let pipelines = [pipeline("chain", &chain)];
        let now_ms = 1_000_000;
        let states: BTreeMap<Hop, HopState> = [
            (feed("a"), state(true, "warning", Some(now_ms - 5_000))),
            (group("relay"), state(false, "ok", None)),
            (feed("b"), state(false, "ok", Some(now_ms - 95_000))),
            (feed("c"), state(false, "ok", Some(now_ms - 90_000))),
        ]
        .into();
        let held_by: BTreeMap<Hop, String> = [(feed("b"), "a".to_owned())].into();
        let views = views(&pipelines, &states, &held_by, now_ms);
        let view = &views[0];
        assert_eq!(view.status, "broken");
        assert_eq!(view.broken_at.as_deref(), Some("a"));
        assert_eq!(view.freshness_seconds, Some(90.0));
        let delays: Vec<(&str, &str, Option<f64>)> = view
            .delays
            .iter()
            .map(|delay| (delay.from.as_str(), delay.to.as_str(), delay.seconds))
            .collect();
        // Downstream newer than upstream (a clock ahead) is no delay, not a negative one.
        assert_eq!(delays, [("a", "b", Some(90.0)), ("b", "c", Some(0.0))]);
        assert_eq!(view.hops[1].hop, "group:relay");
        assert_eq!(view.hops[1].kind, "group");
        assert_eq!(view.hops[2].held_by.as_deref(), Some("a"));

        let metrics = PipelineMetrics::default();
        metrics.export(&views);
        let labels = HopDelayLabels {
            pipeline: "chain".into(),
            from: "a".into(),
            to: "b".into(),
        };
        assert_eq!(metrics.hop_delay.get_or_create(&labels).get(), 90.0);

        // A hop never seen has no delay yet, and its gauge goes away.
        let unseen: BTreeMap<Hop, HopState> =
            [(feed("a"), state(false, "ok", Some(now_ms)))].into();
        let views = super::views(&pipelines, &unseen, &BTreeMap::new(), now_ms);
        assert_eq!(views[0].status, "ok");
        assert_eq!(views[0].delays[0].seconds, None);
        assert_eq!(views[0].hops[1].status, "unknown");
        metrics.export(&views);
        assert!(
            !metrics.hop_delay.remove(&labels),
            "the delay gauge is removed once a side has no record"
        );
    }
}
