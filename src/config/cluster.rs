//! `[[cluster]]`: several Kafka clusters watched by one process.
//!
//! `[kafka]` alone is one cluster named [`DEFAULT_CLUSTER`], unlabelled, exactly as before
//! clusters existed. With `[[cluster]]` tables every feed and group names its cluster, and the
//! `cluster` label tells them apart. Each cluster gets its own source, group watcher and
//! knowledge ([`Config::for_cluster`] is the config each of them sees), so one that does not
//! answer blinds only its own feeds and groups.

use std::collections::HashMap;
use std::sync::Arc;

use super::{kafka, raw, Config, ConfigError, FeedMode, GroupMatcher, TopicMatcher};

/// The name of the one cluster a `[kafka]` table describes.
pub const DEFAULT_CLUSTER: &str = "default";

/// One Kafka cluster, validated.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `cluster` label (when [`Config::named_clusters`]).
    pub name: Arc<str>,
    pub kafka: kafka::KafkaConfig,
}

/// `[kafka]` or `[[cluster]]`, exactly one of them. Returns the clusters and whether they were
/// named by `[[cluster]]` tables.
pub(super) fn validate_clusters(
    kafka_table: Option<raw::RawKafka>,
    cluster_tables: Vec<raw::RawCluster>,
) -> Result<(Vec<ClusterConfig>, bool), ConfigError> {
    match (kafka_table, cluster_tables.is_empty()) {
        (Some(_), false) => Err(ConfigError::invalid(
            "cluster",
            "[kafka] and [[cluster]] tables cannot be used together: [kafka] alone is one cluster named \"default\"; with several clusters, describe each in a [[cluster]] table",
        )),
        (None, true) => Err(ConfigError::Shape {
            key: "(top level)".into(),
            reason: "missing field `kafka` (or `[[cluster]]` tables)".into(),
        }),
        (Some(kafka_table), true) => Ok((
            vec![ClusterConfig {
                name: Arc::from(DEFAULT_CLUSTER),
                kafka: kafka::validate_kafka(kafka_table, "kafka")?,
            }],
            false,
        )),
        (None, false) => {
            let mut clusters: Vec<ClusterConfig> = Vec::with_capacity(cluster_tables.len());
            for (index, table) in cluster_tables.into_iter().enumerate() {
                let prefix = format!("cluster[{index}]");
                let (name, kafka_table) = table.split();
                validate_cluster_name(&prefix, &name)?;
                if clusters.iter().any(|cluster| *cluster.name == *name) {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.name"),
                        format!("duplicate cluster name {name:?}"),
                    ));
                }
                clusters.push(ClusterConfig {
                    name: Arc::from(name.as_str()),
                    kafka: kafka::validate_kafka(kafka_table, &prefix)?,
                });
            }
            Ok((clusters, true))
        }
    }
}

/// A cluster name is a label value and part of state store keys: short and plain.
fn validate_cluster_name(prefix: &str, name: &str) -> Result<(), ConfigError> {
    let key = format!("{prefix}.name");
    if name.is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(ConfigError::invalid(
            key,
            "must be at most 64 letters, digits, `_`, `-` or `.`: it is the `cluster` label and part of state store keys",
        ));
    }
    Ok(())
}

/// The cluster a feed's or group's `cluster` key (at `key`) names, as an index into `clusters`.
pub(super) fn resolve_cluster(
    key: &str,
    named: Option<&str>,
    clusters: &[ClusterConfig],
    named_clusters: bool,
) -> Result<usize, ConfigError> {
    let known = || {
        clusters
            .iter()
            .map(|cluster| format!("{:?}", &*cluster.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        None if named_clusters => Err(ConfigError::invalid(
            key,
            format!(
                "is required with [[cluster]] tables: name the cluster it is on, one of {}",
                known()
            ),
        )),
        None => Ok(0),
        Some(name) => match clusters.iter().position(|cluster| *cluster.name == *name) {
            Some(index) => Ok(index),
            None if named_clusters => Err(ConfigError::invalid(
                key,
                format!("no [[cluster]] is named {name:?}; known: {}", known()),
            )),
            None => Err(ConfigError::invalid(
                key,
                format!(
                    "no cluster is named {name:?}: with [kafka] the one cluster is \"default\""
                ),
            )),
        },
    }
}

/// Names stay labels with one meaning: an exact group's name is unique across clusters (feed
/// names are unique anyway). Only with `[[cluster]]`, so a `[kafka]` config is read as before.
pub(super) fn check_group_names(config: &Config) -> Result<(), ConfigError> {
    if !config.named_clusters {
        return Ok(());
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, group) in config.groups.iter().enumerate() {
        if !matches!(group.matcher, GroupMatcher::Exact(_)) {
            continue;
        }
        if let Some(first) = seen.insert(&group.name, index) {
            return Err(ConfigError::invalid(
                format!("group[{index}].name"),
                format!(
                    "duplicate group name {:?} (group[{first}] on cluster {:?}): names are the `group` label, so give each its own `name`",
                    &*group.name,
                    &*config.clusters[config.group_clusters[first]].name
                ),
            ));
        }
    }
    Ok(())
}

/// One topic name is consumed on one cluster only: the positions freshwatch commits after each
/// flush are kept by topic name, so two clusters' `orders` would commit each other's offsets.
pub(super) fn check_topics_apart(config: &Config) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, feed) in config.feeds.iter().enumerate() {
        let TopicMatcher::Exact(topic) = &feed.topics else {
            continue;
        };
        let cluster = config.feed_clusters[index];
        match seen.get(topic.as_str()) {
            Some(&first) if config.feed_clusters[first] != cluster => {
                return Err(ConfigError::invalid(
                    format!("feed[{index}].topic"),
                    format!(
                        "topic {topic:?} is also read on cluster {:?} (feed {:?}): freshwatch keeps read positions by topic name, so a topic name may be read on one cluster only",
                        &*config.clusters[config.feed_clusters[first]].name,
                        &*config.feeds[first].name
                    ),
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(topic, index);
            }
        }
    }
    Ok(())
}

impl Config {
    /// The config one cluster's source, tail source and group watcher are built from: that
    /// cluster's `[kafka]` and groups, and every feed at its place (feed indexes are the
    /// tracker's), the other clusters' feeds made to read nothing: consume mode on no topic,
    /// which no subscription, tail round or knowledge of partitions takes up.
    pub fn for_cluster(&self, cluster: usize) -> Config {
        let mut view = self.clone();
        view.kafka = self.clusters[cluster].kafka.clone();
        for (index, feed) in view.feeds.iter_mut().enumerate() {
            if self.feed_clusters[index] != cluster {
                feed.topics = TopicMatcher::Exact(String::new());
                feed.mode = FeedMode::Consume;
            }
        }
        view.groups = self
            .groups
            .iter()
            .zip(&self.group_clusters)
            .filter(|(_, &on)| on == cluster)
            .map(|(group, _)| group.clone())
            .collect();
        view.group_clusters = vec![cluster; view.groups.len()];
        view
    }

    /// The feeds (by index) on `cluster`.
    pub fn cluster_feeds(&self, cluster: usize) -> impl Iterator<Item = usize> + '_ {
        self.feed_clusters
            .iter()
            .enumerate()
            .filter(move |(_, &on)| on == cluster)
            .map(|(index, _)| index)
    }
}
