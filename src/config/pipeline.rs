//! `[[pipeline]]`: feeds and consumer groups in data-flow order. A hop behind a broken one is
//! held: it pages nothing of its own while the first broken hop pages for the chain.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, FeedConfig, GroupConfig, GroupMatcher};

/// One `[[pipeline]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// The `pipeline` label.
    pub name: String,
    /// Feed names, and consumer groups as `"group:<name>"`, upstream first.
    pub hops: Vec<String>,
    /// After the broken hop recovers, how long a held hop may take to recover before it pages
    /// on its own.
    #[serde(default = "default_catchup_grace", with = "humantime_serde")]
    pub catchup_grace: Duration,
}

fn default_catchup_grace() -> Duration {
    Duration::from_secs(600)
}

/// One hop of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hop {
    /// A `[[feed]]`, by name.
    Feed(Arc<str>),
    /// A `[[group]]`, by its `group` label.
    Group(Arc<str>),
}

impl std::fmt::Display for Hop {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hop::Feed(name) => write!(formatter, "{name}"),
            Hop::Group(name) => write!(formatter, "group:{name}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub name: Arc<str>,
    pub hops: Vec<Hop>,
    pub catchup_grace: Duration,
}

/// Checks every `[[pipeline]]`: known hops, at least two, unique names, and no cycle across all
/// of them (a hop cannot be upstream of itself).
pub(super) fn validate_pipelines(
    raw: Vec<RawPipeline>,
    feeds: &[FeedConfig],
    groups: &[GroupConfig],
) -> Result<Vec<PipelineConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut pipelines = Vec::with_capacity(raw.len());
    for (index, pipeline) in raw.into_iter().enumerate() {
        let key = format!("pipeline[{index}]");
        if pipeline.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                "must not be empty",
            ));
        }
        if !names.insert(pipeline.name.clone()) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!("{:?} names another pipeline too", pipeline.name),
            ));
        }
        if pipeline.hops.len() < 2 {
            return Err(ConfigError::invalid(
                format!("{key}.hops"),
                "a pipeline needs at least two hops, upstream first",
            ));
        }
        let hops = pipeline
            .hops
            .iter()
            .enumerate()
            .map(|(position, hop)| {
                resolve_hop(&format!("{key}.hops[{position}]"), hop, feeds, groups)
            })
            .collect::<Result<Vec<_>, _>>()?;
        pipelines.push(PipelineConfig {
            name: Arc::from(pipeline.name),
            hops,
            catchup_grace: pipeline.catchup_grace,
        });
    }
    refuse_cycles(&pipelines)?;
    Ok(pipelines)
}

fn resolve_hop(
    key: &str,
    hop: &str,
    feeds: &[FeedConfig],
    groups: &[GroupConfig],
) -> Result<Hop, ConfigError> {
    if let Some(group) = hop.strip_prefix("group:") {
        let known = groups.iter().any(|config| {
            matches!(config.matcher, GroupMatcher::Exact(_)) && *config.name == *group
        });
        return if known {
            Ok(Hop::Group(Arc::from(group)))
        } else {
            Err(ConfigError::invalid(
                key,
                format!("{hop:?}: no [[group]] with group_id (or name) {group:?}; a group_regex cannot be a hop"),
            ))
        };
    }
    match feeds.iter().find(|feed| *feed.name == *hop) {
        Some(feed) => Ok(Hop::Feed(feed.name.clone())),
        None => Err(ConfigError::invalid(
            key,
            format!("{hop:?}: no [[feed]] named so (a consumer group is written \"group:<name>\")"),
        )),
    }
}

/// Every edge of every pipeline together must leave no hop upstream of itself.
fn refuse_cycles(pipelines: &[PipelineConfig]) -> Result<(), ConfigError> {
    let mut edges: BTreeMap<&Hop, BTreeSet<&Hop>> = BTreeMap::new();
    for pipeline in pipelines {
        for pair in pipeline.hops.windows(2) {
            edges.entry(&pair[0]).or_default().insert(&pair[1]);
        }
    }
    // Depth-first search with three colours: a grey hop met again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        Grey,
        Black,
    }
    fn visit<'a>(
        hop: &'a Hop,
        edges: &BTreeMap<&'a Hop, BTreeSet<&'a Hop>>,
        colours: &mut BTreeMap<&'a Hop, Colour>,
    ) -> Option<&'a Hop> {
        match colours.get(hop) {
            Some(Colour::Grey) => return Some(hop),
            Some(Colour::Black) => return None,
            None => {}
        }
        colours.insert(hop, Colour::Grey);
        for next in edges.get(hop).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, colours) {
                return Some(cycle);
            }
        }
        colours.insert(hop, Colour::Black);
        None
    }
    let mut colours = BTreeMap::new();
    for hop in edges.keys() {
        if let Some(cycle) = visit(hop, &edges, &mut colours) {
            let pipeline = pipelines
                .iter()
                .position(|pipeline| pipeline.hops.contains(cycle))
                .unwrap_or(0);
            return Err(ConfigError::invalid(
                format!("pipeline[{pipeline}].hops"),
                format!("hop {cycle} is upstream of itself (a cycle across the pipelines)"),
            ));
        }
    }
    Ok(())
}

/// `check-config`'s lines: each pipeline's hops in order.
pub fn describe(pipelines: &[PipelineConfig]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for pipeline in pipelines {
        let hops: Vec<String> = pipeline.hops.iter().map(Hop::to_string).collect();
        let _ = writeln!(
            text,
            "pipeline {}: {} (catchup_grace {})",
            pipeline.name,
            hops.join(" -> "),
            humantime::format_duration(pipeline.catchup_grace)
        );
    }
    text
}
