//! Reads what Kafka holds for the window, without a trace in the service's consumer group.
//!
//! The consumer has a `group.id` of its own (`freshwatch-backtest-<random>`), is given its
//! partitions with `assign` (it never joins a group) and never commits. Each partition starts at
//! the offset `offsets_for_times` gives for the window's start; a broker that cannot answer that
//! (librdkafka's mock cluster has no ListOffsets by time) gets the partition read from its
//! beginning, records older than the window skipped by their Kafka timestamp. Reading stops at
//! each partition's high watermark as of the start.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::config::{Config, FeedConfig};
use crate::extract::Extractor;
use crate::model::FeedIndex;
use crate::source::KafkaRecord;

use super::replay::{KeyTable, Observation, VolumeRules};
use super::report::ReadSummary;
use super::BacktestError;
use super::Window;

/// How long the brokers get to answer a request before the backtest gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reading may make no progress before the backtest gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything read, ready for the replay.
#[derive(Debug, Default)]
pub struct Collected {
    pub observations: Vec<Observation>,
    pub keys: KeyTable,
    pub summary: ReadSummary,
}

/// One partition still to read, and where it ends.
#[derive(Debug, Clone)]
struct Pending {
    topic: String,
    partition: i32,
    high_watermark: i64,
}

/// Reads every partition of `feeds`' topics over `window`.
pub fn collect(
    config: &Config,
    feeds: &[FeedConfig],
    volume: &VolumeRules,
    window: Window,
) -> Result<Collected, BacktestError> {
    let consumer = create_consumer(config)?;
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|error| BacktestError::Unreachable {
            brokers: config.kafka.brokers.clone(),
            timeout: REQUEST_TIMEOUT,
            error,
        })?;
    let routes = routes(&metadata, feeds);
    let partitions = partitions_with_data(&consumer, &metadata, &routes)?;
    let mut collected = Collected {
        keys: KeyTable::new(feeds.len()),
        ..Collected::default()
    };
    collected.summary.partitions = partitions.len();
    let (assignment, from_beginning, pending) = start_offsets(&consumer, partitions, window);
    collected.summary.partitions_from_beginning = from_beginning;
    if pending.is_empty() {
        return Ok(collected);
    }
    consumer
        .assign(&assignment)
        .map_err(BacktestError::Assign)?;
    let extractors = Extractors::new(config, feeds, volume, routes);
    read_to_high_watermarks(&consumer, pending, &extractors, window, &mut collected)?;
    Ok(collected)
}

/// A consumer that leaves no trace: its own random group, no commits, no offset store.
fn create_consumer(config: &Config) -> Result<BaseConsumer, BacktestError> {
    let mut client_config = ClientConfig::new();
    // The user's properties carry security settings (SASL, TLS); the ones below are ours.
    for (key, value) in &config.kafka.properties {
        client_config.set(key, value);
    }
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    client_config
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", format!("freshwatch-backtest-{random:016x}"))
        .set("client.id", "freshwatch-backtest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    client_config.create().map_err(BacktestError::Create)
}

/// Per topic the metadata lists, the feeds reading it (topics no feed reads left out).
fn routes(
    metadata: &rdkafka::metadata::Metadata,
    feeds: &[FeedConfig],
) -> HashMap<String, Vec<FeedIndex>> {
    let mut routes = HashMap::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none())
    {
        let reading: Vec<FeedIndex> = feeds
            .iter()
            .enumerate()
            .filter(|(_, feed)| feed.topics.matches(topic.name()))
            .map(|(index, _)| index as FeedIndex)
            .collect();
        if !reading.is_empty() {
            routes.insert(topic.name().to_owned(), reading);
        }
    }
    for (index, feed) in feeds.iter().enumerate() {
        if !routes
            .values()
            .any(|reading| reading.contains(&(index as FeedIndex)))
        {
            tracing::warn!(feed = %feed.name, topic = feed.topics.describe(), "no topic of this feed exists; it will be never_seen");
        }
    }
    routes
}

/// Every partition of the routed topics that holds a record, with its high watermark now.
fn partitions_with_data(
    consumer: &BaseConsumer,
    metadata: &rdkafka::metadata::Metadata,
    routes: &HashMap<String, Vec<FeedIndex>>,
) -> Result<Vec<Pending>, BacktestError> {
    let mut partitions = Vec::new();
    for topic in metadata.topics() {
        if !routes.contains_key(topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic.name(), partition.id(), REQUEST_TIMEOUT)
                .map_err(|error| BacktestError::Watermarks {
                    topic: topic.name().to_owned(),
                    partition: partition.id(),
                    error,
                })?;
            if high > low {
                partitions.push(Pending {
                    topic: topic.name().to_owned(),
                    partition: partition.id(),
                    high_watermark: high,
                });
            }
        }
    }
    Ok(partitions)
}

/// Where a partition starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    At(i64),
    /// Nothing at or after the window's start.
    Nothing,
    /// The brokers could not say.
    Beginning,
}

/// Where each partition starts: the first offset at or after the window's start, or the
/// beginning when the brokers cannot say. Returns the assignment, how many start at the
/// beginning, and the partitions that have anything to read.
fn start_offsets(
    consumer: &BaseConsumer,
    partitions: Vec<Pending>,
    window: Window,
) -> (TopicPartitionList, usize, Vec<Pending>) {
    let in_window = offsets_at(consumer, &partitions, window.start_ms);
    // Every record is at or after 1970: a broker that finds none there in a partition holding
    // records cannot look up by time (librdkafka's mock cluster answers "end" to everything).
    let since_epoch = offsets_at(consumer, &partitions, 0);
    let mut assignment = TopicPartitionList::new();
    let mut from_beginning = 0;
    let mut to_read = Vec::new();
    for pending in partitions {
        let offset = match start_of(&pending, in_window.as_ref(), since_epoch.as_ref()) {
            Start::Nothing => continue,
            Start::At(offset) => Offset::Offset(offset),
            Start::Beginning => {
                from_beginning += 1;
                Offset::Beginning
            }
        };
        // Cannot fail for a fresh list and a valid offset.
        let _ = assignment.add_partition_offset(&pending.topic, pending.partition, offset);
        to_read.push(pending);
    }
    if from_beginning > 0 {
        tracing::warn!(
            partitions = from_beginning,
            "the brokers cannot find offsets by time; reading these partitions from their beginning"
        );
    }
    (assignment, from_beginning, to_read)
}

/// The brokers' answer to "first offset at or after `timestamp_ms`" for every partition.
fn offsets_at(
    consumer: &BaseConsumer,
    partitions: &[Pending],
    timestamp_ms: i64,
) -> Option<TopicPartitionList> {
    let mut query = TopicPartitionList::new();
    for pending in partitions {
        let _ = query.add_partition_offset(
            &pending.topic,
            pending.partition,
            Offset::Offset(timestamp_ms),
        );
    }
    match consumer.offsets_for_times(query, REQUEST_TIMEOUT) {
        Ok(found) => Some(found),
        Err(error) => {
            tracing::debug!(%error, timestamp_ms, "offsets by time refused");
            None
        }
    }
}

fn start_of(
    pending: &Pending,
    in_window: Option<&TopicPartitionList>,
    since_epoch: Option<&TopicPartitionList>,
) -> Start {
    let answer = |found: Option<&TopicPartitionList>| {
        found
            .and_then(|found| found.find_partition(&pending.topic, pending.partition))
            .filter(|element| element.error().is_ok())
            .map(|element| element.offset())
    };
    let supported = matches!(answer(since_epoch), Some(Offset::Offset(_)));
    match answer(in_window) {
        _ if !supported => Start::Beginning,
        Some(Offset::Offset(offset)) if offset < pending.high_watermark => Start::At(offset),
        Some(Offset::Offset(_) | Offset::End) => Start::Nothing,
        _ => Start::Beginning,
    }
}

/// Each routed topic's feeds and their extractors, as the source builds them.
struct Extractors {
    routes: HashMap<String, Vec<FeedIndex>>,
    extractors: Vec<Extractor>,
    /// By feed: its volume is judged, so every record counts (none is kept once for a burst).
    counted: Vec<bool>,
}

impl Extractors {
    fn new(
        config: &Config,
        feeds: &[FeedConfig],
        volume: &VolumeRules,
        routes: HashMap<String, Vec<FeedIndex>>,
    ) -> Self {
        let max_future_skew_ms =
            i64::try_from(config.evaluation.max_future_skew.as_millis()).unwrap_or(i64::MAX);
        Extractors {
            routes,
            counted: (0..feeds.len())
                .map(|feed| volume.rules.iter().any(|rule| rule.feed == feed))
                .collect(),
            extractors: feeds
                .iter()
                .map(|feed| feed.extractor(max_future_skew_ms))
                .collect(),
        }
    }

    /// Adds what `message` says of each feed reading its topic.
    fn apply(&self, message: &BorrowedMessage<'_>, window: Window, collected: &mut Collected) {
        let kafka_ms = message.timestamp().to_millis();
        if kafka_ms.is_some_and(|kafka_ms| kafka_ms < window.start_ms) {
            collected.summary.records_before_window += 1;
            return;
        }
        collected.summary.records += 1;
        let Some(feeds) = self.routes.get(message.topic()) else {
            return;
        };
        // The record's own timestamp stands for its arrival: the closest the log keeps.
        let arrival_ms = kafka_ms.unwrap_or(window.end_ms);
        let record = KafkaRecord(message);
        for &feed in feeds {
            let Ok(extracted) = self.extractors[feed as usize].extract(&record, arrival_ms) else {
                collected.summary.record_errors += 1;
                continue;
            };
            let observation = Observation {
                arrival_ms,
                event_ms: extracted.event_ms,
                feed,
                key: collected.keys.intern(feed, extracted.split.as_bytes()),
            };
            // A burst of one series at one instant is kept once, unless its volume is judged.
            if self.counted[feed as usize] || collected.observations.last() != Some(&observation) {
                collected.observations.push(observation);
            }
        }
    }
}

/// Polls until every partition is read up to its high watermark as of the start.
fn read_to_high_watermarks(
    consumer: &BaseConsumer,
    pending: Vec<Pending>,
    extractors: &Extractors,
    window: Window,
    collected: &mut Collected,
) -> Result<(), BacktestError> {
    let mut pending: HashMap<(String, i32), i64> = pending
        .into_iter()
        .map(|pending| ((pending.topic, pending.partition), pending.high_watermark))
        .collect();
    let mut last_progress = Instant::now();
    while !pending.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let key = (message.topic().to_owned(), message.partition());
                let Some(&high_watermark) = pending.get(&key) else {
                    continue; // read already, or newer than the start
                };
                if message.offset() < high_watermark {
                    extractors.apply(&message, window, collected);
                    last_progress = Instant::now();
                }
                if message.offset() + 1 >= high_watermark {
                    pending.remove(&key);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                remove_read_partitions(consumer, &mut pending);
            }
            Some(Err(error)) => tracing::warn!(%error, "kafka poll error"),
        }
        if last_progress.elapsed() > STALL_TIMEOUT && !pending.is_empty() {
            return Err(stalled(&pending));
        }
    }
    Ok(())
}

/// Drops the partitions whose position reached their high watermark: transaction markers take
/// offsets that no message shows.
fn remove_read_partitions(consumer: &BaseConsumer, pending: &mut HashMap<(String, i32), i64>) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for element in positions.elements() {
        let Offset::Offset(position) = element.offset() else {
            continue;
        };
        let key = (element.topic().to_owned(), element.partition());
        if pending.get(&key).is_some_and(|&high| position >= high) {
            pending.remove(&key);
        }
    }
}

fn stalled(pending: &HashMap<(String, i32), i64>) -> BacktestError {
    let (topic, partition) = pending.keys().min().cloned().unwrap_or((String::new(), -1));
    BacktestError::Stalled {
        pending: pending.len(),
        topic,
        partition,
        timeout: STALL_TIMEOUT,
    }
}
