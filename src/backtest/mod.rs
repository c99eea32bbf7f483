//! `freshwatch backtest`: what would have paged, judged from what Kafka still holds.
//!
//! The same extraction, tracker and evaluator as the service, on a simulated clock:
//! - [`read`] reads each partition of the configured feeds from `now - since` (or from the
//!   beginning, when the brokers cannot list offsets by time) up to its high watermark as of the
//!   start, with a consumer of its own: a unique `group.id`, partitions assigned, never
//!   committed, so the service's group never sees it.
//! - [`replay`] sorts what was read by arrival (the record timestamp) and drives a [`crate::tracker::Tracker`] and
//!   [`crate::evaluate::Evaluator`] through the window, jumping from deadline to deadline, and
//!   the service's [`crate::volume::VolumeWatch`] at every `evaluation.interval` tick.
//! - [`report`] turns the transitions into alerts and totals, as text or JSON.
//!
//! Nothing here sends a notification, opens the state store or commits an offset.

pub mod read;
pub mod replay;
pub mod report;

use std::time::Duration;

use crate::clock::Clock;
use crate::config::{Config, FeedConfig};

pub use replay::{replay, replay_all, KeyTable, Observation, Replayed, VolumeRules};
pub use report::{Alert, Report, VolumeDrop};

/// The simulated time line, unix ms: from `now - since` to now. Both the replay and the report
/// speak of it, so it lives here, below them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this feed (`--feed`).
    pub feed: Option<String>,
    /// How far back the window reaches (`--since`).
    pub since: Duration,
}

/// Why a backtest could not run. [`BacktestError::UnknownFeed`] is the user's typo (exit 2);
/// every other variant means Kafka could not be read (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("--feed {name}: no such feed (the config has: {known})")]
    UnknownFeed { name: String, known: String },
    /// The selected feeds live on several `[[cluster]]`s; one backtest reads one cluster.
    #[error("the feeds to replay are on several clusters ({clusters}): pick one with --feed")]
    SeveralClusters { clusters: String },
    #[error("cannot create Kafka consumer: {0}")]
    Create(rdkafka::error::KafkaError),
    #[error("Kafka brokers {brokers} did not answer within {timeout:?}: {error}")]
    Unreachable {
        brokers: String,
        timeout: Duration,
        error: rdkafka::error::KafkaError,
    },
    #[error("cannot read the high watermark of {topic}/{partition}: {error}")]
    Watermarks {
        topic: String,
        partition: i32,
        error: rdkafka::error::KafkaError,
    },
    #[error("cannot assign partitions: {0}")]
    Assign(rdkafka::error::KafkaError),
    #[error(
        "reading stalled: {pending} partition(s) gave nothing for {timeout:?}, {topic}/{partition} among them"
    )]
    Stalled {
        pending: usize,
        topic: String,
        partition: i32,
        timeout: Duration,
    },
}

/// Reads the window from Kafka and replays it. `clock` gives "now", the window's end.
pub fn run(config: &Config, options: &Options, clock: &dyn Clock) -> Result<Report, BacktestError> {
    let feeds = selected_feeds(&config.feeds, options.feed.as_deref())?;
    let end_ms = clock.now_ms();
    let since_ms = i64::try_from(options.since.as_millis()).unwrap_or(i64::MAX);
    let window = Window {
        start_ms: end_ms.saturating_sub(since_ms),
        end_ms,
    };
    let volume = volume_rules(config, &feeds);
    // Read from the cluster the feeds are on (the one cluster of a `[kafka]` config).
    let mut clusters: Vec<usize> = config
        .feeds
        .iter()
        .zip(&config.feed_clusters)
        .filter(|(feed, _)| feeds.iter().any(|selected| selected.name == feed.name))
        .map(|(_, &cluster)| cluster)
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    if clusters.len() > 1 {
        let names: Vec<&str> = clusters
            .iter()
            .map(|&cluster| &*config.clusters[cluster].name)
            .collect();
        return Err(BacktestError::SeveralClusters {
            clusters: names.join(", "),
        });
    }
    let cluster_config = config.for_cluster(clusters.first().copied().unwrap_or(0));
    let collected = read::collect(&cluster_config, &feeds, &volume, window)?;
    let replayed = replay_all(
        &feeds,
        &volume,
        &collected.keys,
        collected.observations,
        window,
    );
    Ok(Report::new(
        &feeds,
        window,
        collected.summary,
        replayed.alerts,
        replayed.volume_drops,
    ))
}

/// The volume rules of the `selected` feeds, each pointing at its place among them, judged at
/// the service's `evaluation.interval`.
pub fn volume_rules(config: &Config, selected: &[FeedConfig]) -> VolumeRules {
    let rules = config
        .volume
        .iter()
        .filter_map(|rule| {
            let name = &config.feeds.get(rule.feed)?.name;
            let feed = selected.iter().position(|feed| feed.name == *name)?;
            Some(crate::config::VolumeConfig {
                feed,
                ..rule.clone()
            })
        })
        .collect();
    VolumeRules {
        rules,
        tick_ms: i64::try_from(config.evaluation.interval.as_millis()).unwrap_or(i64::MAX),
    }
}

/// The feeds `--feed` keeps (all of them without it).
fn selected_feeds(
    feeds: &[FeedConfig],
    only: Option<&str>,
) -> Result<Vec<FeedConfig>, BacktestError> {
    let Some(name) = only else {
        return Ok(feeds.to_vec());
    };
    let selected: Vec<FeedConfig> = feeds
        .iter()
        .filter(|feed| &*feed.name == name)
        .cloned()
        .collect();
    if selected.is_empty() {
        let known: Vec<&str> = feeds.iter().map(|feed| &*feed.name).collect();
        return Err(BacktestError::UnknownFeed {
            name: name.to_owned(),
            known: known.join(", "),
        });
    }
    Ok(selected)
}
