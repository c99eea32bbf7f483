//! Tail mode: watch a busy unsplit feed without consuming it.
//!
//! Every `kafka.tail_interval` the tail source reads each partition's high watermark. Only when
//! it moved does it fetch the one newest record (offset `high - 1`) to read its timestamp. The
//! cost is O(partitions) per interval whatever the topic's record rate, so a 1M records/s topic
//! costs next to nothing. It cannot split a feed or read a timestamp from the payload of every
//! record, so only unsplit feeds with `"record"` or `"arrival"` timestamps may use it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{SourceError, SourceStatus};
use crate::clock::SharedClock;
use crate::config::{Config, FeedMode, TimestampRule, TopicMatcher};
use crate::extract::FUTURE_TIMESTAMP_REASON;
use crate::knowledge::{Knowledge, PartitionKey};
use crate::metrics::Metrics;
use crate::model::FeedIndex;
use crate::tracker::Tracker;

/// How long one round waits for the newest records it asked for.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

struct TailFeed {
    feed: FeedIndex,
    name: Arc<str>,
    topics: TopicMatcher,
    use_arrival_time: bool,
}

/// The tail-mode thread's state.
pub struct TailSource {
    consumer: BaseConsumer<DefaultConsumerContext>,
    feeds: Vec<TailFeed>,
    tracker: Arc<Mutex<Tracker>>,
    clock: SharedClock,
    status: Arc<SourceStatus>,
    interval: Duration,
    /// Last high watermark seen per (topic, partition).
    highs: HashMap<(String, i32), i64>,
    metrics: Metrics,
    max_future_skew_ms: i64,
    knowledge: Arc<Knowledge>,
}

impl TailSource {
    /// `None` when no feed uses tail mode.
    pub fn new(
        config: &Config,
        tracker: Arc<Mutex<Tracker>>,
        clock: SharedClock,
        status: Arc<SourceStatus>,
        metrics: Metrics,
        knowledge: Arc<Knowledge>,
    ) -> Result<Option<TailSource>, SourceError> {
        let feeds: Vec<TailFeed> = config
            .feeds
            .iter()
            .enumerate()
            .filter(|(_, feed)| feed.mode == FeedMode::Tail)
            .map(|(index, feed)| TailFeed {
                feed: index as FeedIndex,
                name: feed.name.clone(),
                topics: feed.topics.clone(),
                use_arrival_time: feed.timestamp == TimestampRule::Arrival,
            })
            .collect();
        if feeds.is_empty() {
            return Ok(None);
        }
        let mut client_config = ClientConfig::new();
        for (key, value) in &config.kafka.properties {
            client_config.set(key, value);
        }
        let consumer = client_config
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", format!("{}-tail", config.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(SourceError::Create)?;
        Ok(Some(TailSource {
            consumer,
            feeds,
            tracker,
            clock,
            status,
            interval: config.kafka.tail_interval,
            highs: HashMap::new(),
            metrics,
            max_future_skew_ms: i64::try_from(config.evaluation.max_future_skew.as_millis())
                .unwrap_or(i64::MAX),
            knowledge,
        }))
    }

    /// Reads watermarks every interval until `shutdown` fires. Runs on its own thread.
    pub fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let started = Instant::now();
            let round_ms = self.clock.now_ms();
            match self.round() {
                Ok(read) => {
                    self.knowledge.observe_tail_round(round_ms, read);
                    self.status.tail_ready.store(true, Ordering::Relaxed);
                }
                Err(error) => {
                    self.knowledge.observe_tail_failure(round_ms);
                    tracing::warn!(%error, "tail round failed; will retry");
                }
            }
            let rest = self.interval.saturating_sub(started.elapsed());
            let deadline = Instant::now() + rest;
            while !shutdown.is_cancelled() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50).min(rest));
            }
        }
        tracing::info!("tail source stopped");
    }

    /// One pass over every tail feed's partitions. Returns the partitions now known: those whose
    /// high watermark did not move, and those whose newest record was read.
    fn round(&mut self) -> Result<Vec<PartitionKey>, rdkafka::error::KafkaError> {
        let metadata = self.consumer.fetch_metadata(None, FETCH_TIMEOUT)?;
        self.knowledge
            .observe_metadata(self.clock.now_ms(), super::partition_counts(&metadata));
        let mut known = Vec::new();
        // (topic, partition) -> (newest offset to read, records since last round, feeds)
        let mut wanted: HashMap<(String, i32), (i64, u64, Vec<FeedIndex>)> = HashMap::new();
        for topic in metadata.topics() {
            let feeds: Vec<FeedIndex> = self
                .feeds
                .iter()
                .filter(|feed| feed.topics.matches(topic.name()))
                .map(|feed| feed.feed)
                .collect();
            if feeds.is_empty() {
                continue;
            }
            for partition in topic.partitions() {
                let (low, high) =
                    self.consumer
                        .fetch_watermarks(topic.name(), partition.id(), FETCH_TIMEOUT)?;
                let key = (topic.name().to_owned(), partition.id());
                let previous = self.highs.insert(key.clone(), high);
                let moved = match previous {
                    None => high > low,
                    Some(previous) => high > previous,
                };
                if moved {
                    let added = previous.map_or(0, |previous| (high - previous) as u64);
                    wanted.insert(key, (high - 1, added, feeds.clone()));
                } else {
                    known.push(key);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(known);
        }
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), (offset, _, _)) in &wanted {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        self.consumer.assign(&assignment)?;
        let deadline = Instant::now() + FETCH_TIMEOUT;
        let mut pending = wanted.len();
        while pending > 0 && Instant::now() < deadline {
            let Some(result) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match result {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "tail fetch error");
                    continue;
                }
            };
            let key = (message.topic().to_owned(), message.partition());
            let Some((offset, added, feeds)) = wanted.remove(&key) else {
                continue;
            };
            if message.offset() < offset {
                wanted.insert(key, (offset, added, feeds));
                continue;
            }
            pending -= 1;
            known.push(key);
            let arrival_ms = self.clock.now_ms();
            let record_ms = message.timestamp().to_millis();
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for feed in feeds {
                let Some(tail) = self.feeds.iter().find(|tail| tail.feed == feed) else {
                    continue;
                };
                let event_ms = match (tail.use_arrival_time, record_ms) {
                    (true, _) | (false, None) => arrival_ms,
                    // A producer clock far ahead must not mask a silence: as in consume mode.
                    (false, Some(record_ms))
                        if record_ms > arrival_ms.saturating_add(self.max_future_skew_ms) =>
                    {
                        self.metrics
                            .count_record_error(&tail.name, FUTURE_TIMESTAMP_REASON);
                        arrival_ms
                    }
                    (false, Some(record_ms)) => record_ms,
                };
                tracker.observe_many(feed, b"", event_ms, added);
            }
        }
        for ((topic, partition), _) in wanted {
            tracing::debug!(%topic, partition, "tail: newest record not fetched this round");
        }
        self.consumer.unassign()?;
        Ok(known)
    }
}
