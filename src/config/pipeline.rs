//! `[[pipeline]]`: feeds and consumer groups in data-flow order. A hop behind a broken one is
//! held: it pages nothing of its own while the first broken hop pages for the chain.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, FeedConfig, GroupConfig, GroupMatcher};
use crate::extract::json::JsonPointer;
use crate::extract::SplitRule;

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
    /// `[[pipeline.audit]]`: completeness between two feed hops.
    #[serde(default)]
    pub audit: Vec<RawAudit>,
}

fn default_catchup_grace() -> Duration {
    Duration::from_secs(600)
}

/// One `[[pipeline.audit]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub from: String,
    pub to: String,
    /// What identifies a record on both sides: `"key"`, `{ json = "/id" }`, `{ header = "id" }`.
    pub id: super::raw::RawSplitBy,
    #[serde(default = "default_bucket", with = "humantime_serde")]
    pub bucket: Duration,
    #[serde(default = "default_audit_grace", with = "humantime_serde")]
    pub grace: Duration,
    /// How many differing ids a bucket can list; sizes its summary (24 bytes per 0.6 id).
    #[serde(default = "default_max_listed")]
    pub max_listed: usize,
}

fn default_bucket() -> Duration {
    Duration::from_secs(60)
}

fn default_audit_grace() -> Duration {
    Duration::from_secs(300)
}

fn default_max_listed() -> usize {
    100
}

/// A completeness audit between two feed hops of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub pipeline: Arc<str>,
    pub from: Arc<str>,
    pub to: Arc<str>,
    pub id: SplitRule,
    pub bucket: Duration,
    pub grace: Duration,
    pub max_listed: usize,
}

impl AuditConfig {
    /// The label set and document key: `pipeline/from/to`.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.pipeline, self.from, self.to)
    }
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
    pub audits: Vec<AuditConfig>,
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
        let name: Arc<str> = Arc::from(pipeline.name);
        let audits = pipeline
            .audit
            .into_iter()
            .enumerate()
            .map(|(position, audit)| {
                validate_audit(
                    &format!("{key}.audit[{position}]"),
                    &name,
                    &hops,
                    feeds,
                    audit,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        pipelines.push(PipelineConfig {
            name,
            hops,
            catchup_grace: pipeline.catchup_grace,
            audits,
        });
    }
    refuse_cycles(&pipelines)?;
    Ok(pipelines)
}

/// `from` and `to` are feed hops of the pipeline, `from` upstream of `to`; the id is a key, a
/// header or a JSON field; the bucket at least a second; the summary lists at least one id.
fn validate_audit(
    key: &str,
    pipeline: &Arc<str>,
    hops: &[Hop],
    feeds: &[FeedConfig],
    raw: RawAudit,
) -> Result<AuditConfig, ConfigError> {
    let position = |field: &str, name: &str| {
        hops.iter()
            .position(|hop| matches!(hop, Hop::Feed(feed) if **feed == *name))
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.{field}"),
                    format!("{name:?} is not a feed hop of pipeline {pipeline}"),
                )
            })
    };
    let (from, to) = (position("from", &raw.from)?, position("to", &raw.to)?);
    for (field, name) in [("from", &raw.from), ("to", &raw.to)] {
        let tail = feeds
            .iter()
            .any(|feed| *feed.name == **name && feed.mode == super::FeedMode::Tail);
        if tail {
            return Err(ConfigError::invalid(
                format!("{key}.{field}"),
                format!("{name:?} is read in tail mode (its newest record only); an audit needs every record"),
            ));
        }
    }
    if from >= to {
        return Err(ConfigError::invalid(
            format!("{key}.to"),
            format!("{:?} must be downstream of {:?}", raw.to, raw.from),
        ));
    }
    let id = match raw.id {
        super::raw::RawSplitBy::Json(pointer) => JsonPointer::parse(&pointer)
            .map(SplitRule::Json)
            .map_err(|error| ConfigError::invalid(format!("{key}.id.json"), error.to_string()))?,
        super::raw::RawSplitBy::Header(name) if !name.is_empty() => SplitRule::Header(name),
        super::raw::RawSplitBy::Key => SplitRule::Key,
        super::raw::RawSplitBy::Header(_) | super::raw::RawSplitBy::Partition => {
            return Err(ConfigError::invalid(
                format!("{key}.id"),
                "must be \"key\", { header = \"<name>\" } or { json = \"<pointer>\" }",
            ))
        }
    };
    if raw.bucket < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            format!("{key}.bucket"),
            "must be at least 1s",
        ));
    }
    if raw.max_listed == 0 || raw.max_listed > 10_000 {
        return Err(ConfigError::invalid(
            format!("{key}.max_listed"),
            "must be between 1 and 10000",
        ));
    }
    Ok(AuditConfig {
        pipeline: pipeline.clone(),
        from: Arc::from(raw.from),
        to: Arc::from(raw.to),
        id,
        bucket: raw.bucket,
        grace: raw.grace,
        max_listed: raw.max_listed,
    })
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
        for audit in &pipeline.audits {
            let _ = writeln!(
                text,
                "  audit {} -> {} by {} (bucket {}, grace {}, lists up to {} ids)",
                audit.from,
                audit.to,
                super::describe::split_words(&audit.id),
                humantime::format_duration(audit.bucket),
                humantime::format_duration(audit.grace),
                audit.max_listed
            );
        }
    }
    text
}
