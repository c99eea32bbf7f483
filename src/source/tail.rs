//! Tail mode: watch a busy unsplit feed without consuming it.
//!
//! Every `kafka.tail_interval` the tail source reads each partition's high watermark. Only when
//! it moved does it fetch the one newest record (offset `high - 1`) to read its timestamp. The
//! cost is O(partitions) per interval whatever the topic's record rate, so a 1M records/s topic
//! costs next to nothing. It cannot split a feed or read a timestamp from the payload of every
//! record, so only unsplit feeds with `"record"` or `"arrival"` timestamps may use it.
//!
//! On a transactional topic the newest offsets are often commit or abort markers, which no
//! consumer receives: the fetch at `high - 1` then reaches the end of the log with nothing. Only
//! for those partitions a second fetch reads back up to [`READBACK_BOUND`] offsets (never below
//! the log start) and takes the newest data record. With librdkafka's default
//! `isolation.level=read_committed` the high watermark is the last stable offset and aborted
//! records are never returned, so they do not count as fresh; `read_uncommitted` (set in
//! `kafka.properties`) would count them. A window holding no data record refreshes nothing, is
//! counted in `freshwatch_tail_readback_exhausted_total{feed}`, and leaves the partition unknown
//! until a round reads a data record.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{SourceError, SourceStatus};
use crate::clock::SharedClock;
use crate::config::{Config, FeedMode, TimestampRule, TopicMatcher};
use crate::extract::FUTURE_TIMESTAMP_REASON;
use crate::knowledge::{Knowledge, PartitionKey};
use crate::metrics::{FeedLabels, Metrics};
use crate::model::FeedIndex;
use crate::tracker::Tracker;

/// How long one round waits for the newest records it asked for.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// How many offsets below the high watermark a read-back looks for a data record: enough for a
/// marker per transaction of many recent transactions that wrote elsewhere, small enough to
/// stay one fetch.
pub const READBACK_BOUND: i64 = 64;

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
    highs: HashMap<PartitionKey, i64>,
    /// Partitions whose last read-back found no data record: not known until one is read.
    exhausted: HashSet<PartitionKey>,
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
        // At zero from the start, so rate() and alerts on it work from the first exhaustion.
        for feed in &feeds {
            drop(metrics.tail_readback_exhausted.get_or_create(&FeedLabels {
                feed: feed.name.to_string(),
            }));
        }
        let mut client_config = ClientConfig::new();
        for (key, value) in &config.kafka.properties {
            client_config.set(key, value);
        }
        let consumer = client_config
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", format!("{}-tail", config.kafka.group_id))
            .set("enable.auto.commit", "false")
            // The end of a partition tells a fetch that what it read is all there is.
            .set("enable.partition.eof", "true")
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
            exhausted: HashSet::new(),
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
    /// high watermark did not move, and those whose newest data record was read.
    fn round(&mut self) -> Result<Vec<PartitionKey>, KafkaError> {
        let metadata = self.consumer.fetch_metadata(None, FETCH_TIMEOUT)?;
        self.knowledge
            .observe_metadata(self.clock.now_ms(), super::partition_counts(&metadata));
        let mut known = Vec::new();
        let wanted = self.moved_partitions(&metadata, &mut known)?;
        if wanted.is_empty() {
            return Ok(known);
        }
        let newest = self.fetch_newest(&wanted)?;
        for (key, moved) in wanted {
            match newest.get(&key) {
                Some(Fetched::Data(record)) => {
                    self.exhausted.remove(&key);
                    self.apply(record, &moved);
                    known.push(key);
                }
                Some(Fetched::NoData) => self.readback_exhausted(key, &moved),
                None => {
                    // Not fetched in time: forget the new watermark so the next round tries again
                    // instead of calling the partition known with its newest record unread.
                    tracing::debug!(topic = %key.0, partition = key.1, "tail: newest record not fetched this round");
                    match moved.previous_high {
                        Some(previous) => self.highs.insert(key, previous),
                        None => self.highs.remove(&key),
                    };
                }
            }
        }
        Ok(known)
    }

    /// Reads every matching partition's watermarks. Partitions whose high watermark did not move
    /// go to `known` (unless their last read-back was exhausted); the others are returned.
    fn moved_partitions(
        &mut self,
        metadata: &rdkafka::metadata::Metadata,
        known: &mut Vec<PartitionKey>,
    ) -> Result<HashMap<PartitionKey, Moved>, KafkaError> {
        let mut wanted = HashMap::new();
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
                // Under read_committed this high is the last stable offset: an open
                // transaction's records are not offered yet.
                let (low, high) =
                    self.consumer
                        .fetch_watermarks(topic.name(), partition.id(), FETCH_TIMEOUT)?;
                let key = (topic.name().to_owned(), partition.id());
                let previous_high = self.highs.insert(key.clone(), high);
                let moved = match previous_high {
                    None => high > low,
                    Some(previous) => high > previous,
                };
                if moved {
                    let window = Window { low, high };
                    let feeds = feeds.clone();
                    wanted.insert(
                        key,
                        Moved {
                            window,
                            previous_high,
                            feeds,
                        },
                    );
                } else if !self.exhausted.contains(&key) {
                    known.push(key);
                }
            }
        }
        Ok(wanted)
    }

    /// The newest data record below each partition's high watermark: one fetch at `high - 1`,
    /// and, only for the partitions where that offset held no data record (a transaction marker,
    /// an aborted record), one more from up to [`READBACK_BOUND`] offsets back.
    fn fetch_newest(
        &self,
        wanted: &HashMap<PartitionKey, Moved>,
    ) -> Result<HashMap<PartitionKey, Fetched>, KafkaError> {
        let at_newest = wanted
            .iter()
            .map(|(key, moved)| (key.clone(), moved.window.newest_start()))
            .collect();
        let mut newest = self.fetch(&at_newest)?;
        let read_back: HashMap<PartitionKey, Window> = newest
            .iter()
            .filter(|(_, fetched)| matches!(fetched, Fetched::NoData))
            .filter_map(|(key, _)| {
                let window = wanted[key].window.readback_start()?;
                Some((key.clone(), window))
            })
            .collect();
        if !read_back.is_empty() {
            newest.extend(self.fetch(&read_back)?);
        }
        Ok(newest)
    }

    /// Reads each partition from `window.low` up to `window.high`. A partition is settled by a
    /// record at `high - 1` or later, or by reaching the end of its log (librdkafka skips
    /// control records, so a window of markers ends with nothing); unsettled ones are left out.
    fn fetch(
        &self,
        windows: &HashMap<PartitionKey, Window>,
    ) -> Result<HashMap<PartitionKey, Fetched>, KafkaError> {
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), window) in windows {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(window.low))?;
        }
        self.consumer.assign(&assignment)?;
        let mut reads: HashMap<PartitionKey, PartitionRead> = windows
            .iter()
            .map(|(key, window)| (key.clone(), PartitionRead::new(window.high)))
            .collect();
        let deadline = Instant::now() + FETCH_TIMEOUT;
        while reads.values().any(|read| !read.settled) && Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let key = (message.topic().to_owned(), message.partition());
                    if let Some(read) = reads.get_mut(&key) {
                        read.record(message.offset(), message.timestamp().to_millis());
                    }
                }
                // The event names no topic: the positions tell which partitions reached the end.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.settle_at_end(partition, &mut reads)?
                }
                Some(Err(error)) => tracing::debug!(%error, "tail fetch error"),
            }
        }
        self.consumer.unassign()?;
        Ok(reads
            .into_iter()
            .filter(|(_, read)| read.settled)
            .map(|(key, read)| (key, read.fetched()))
            .collect())
    }

    /// Settles the partitions numbered `partition` whose position reached their high watermark.
    fn settle_at_end(
        &self,
        partition: i32,
        reads: &mut HashMap<PartitionKey, PartitionRead>,
    ) -> Result<(), KafkaError> {
        let positions = self.consumer.position()?;
        for element in positions.elements() {
            if element.partition() != partition {
                continue;
            }
            let key = (element.topic().to_owned(), element.partition());
            if let (Some(read), Offset::Offset(position)) = (reads.get_mut(&key), element.offset())
            {
                read.settled |= position >= read.high;
            }
        }
        Ok(())
    }

    /// Hands the newest data record's time to the tracker for every feed of its topic.
    fn apply(&self, record: &NewestRecord, moved: &Moved) {
        let arrival_ms = self.clock.now_ms();
        let added = moved
            .previous_high
            .map_or(0, |previous| (moved.window.high - previous) as u64);
        let mut tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for &feed in &moved.feeds {
            let Some(tail) = self.feeds.iter().find(|tail| tail.feed == feed) else {
                continue;
            };
            let event_ms = match (tail.use_arrival_time, record.timestamp_ms) {
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
            tracker.observe_many(feed, b"", event_ms, arrival_ms, added);
        }
    }

    /// No data record within the bound: nothing is refreshed and the partition is not known
    /// until a round reads one. Counted every time, logged once per partition.
    fn readback_exhausted(&mut self, key: PartitionKey, moved: &Moved) {
        for &feed in &moved.feeds {
            if let Some(tail) = self.feeds.iter().find(|tail| tail.feed == feed) {
                self.metrics
                    .tail_readback_exhausted
                    .get_or_create(&FeedLabels {
                        feed: tail.name.to_string(),
                    })
                    .inc();
            }
        }
        if self.exhausted.insert(key.clone()) {
            tracing::warn!(
                topic = %key.0,
                partition = key.1,
                high = moved.window.high,
                bound = READBACK_BOUND,
                "tail read-back found no data record; transaction markers or aborted records only"
            );
        }
    }
}

/// Offsets `[low, high)` of one partition to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    low: i64,
    high: i64,
}

impl Window {
    /// Only the newest offset: the common case, one record per partition.
    fn newest_start(self) -> Window {
        Window {
            low: self.high - 1,
            high: self.high,
        }
    }

    /// Up to [`READBACK_BOUND`] offsets back, never below the log start; `None` when the newest
    /// offset was all there was to read.
    fn readback_start(self) -> Option<Window> {
        let low = self.low.max(self.high - READBACK_BOUND);
        (low < self.high - 1).then_some(Window {
            low,
            high: self.high,
        })
    }
}

/// A partition whose high watermark moved since the last round.
struct Moved {
    /// From the log start to the new high watermark.
    window: Window,
    previous_high: Option<i64>,
    feeds: Vec<FeedIndex>,
}

/// The newest data record fetched from a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NewestRecord {
    offset: i64,
    timestamp_ms: Option<i64>,
}

/// What one fetch learned of a partition it read to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Data(NewestRecord),
    /// Read to the high watermark and no data record in the window: markers or aborted records.
    NoData,
}

/// One partition's progress within a fetch.
#[derive(Debug)]
struct PartitionRead {
    high: i64,
    newest: Option<NewestRecord>,
    settled: bool,
}

impl PartitionRead {
    fn new(high: i64) -> Self {
        PartitionRead {
            high,
            newest: None,
            settled: false,
        }
    }

    /// A data record: the newest so far wins. One at `high - 1` or later (produced since the
    /// watermark was read) is as new as this round can know.
    fn record(&mut self, offset: i64, timestamp_ms: Option<i64>) {
        if self.newest.is_none_or(|newest| offset > newest.offset) {
            self.newest = Some(NewestRecord {
                offset,
                timestamp_ms,
            });
        }
        self.settled |= offset >= self.high - 1;
    }

    fn fetched(&self) -> Fetched {
        self.newest.map_or(Fetched::NoData, Fetched::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_back_stays_within_the_bound_and_above_the_log_start() {
        let busy = Window {
            low: 0,
            high: 1_000,
        };
        assert_eq!(
            busy.newest_start(),
            Window {
                low: 999,
                high: 1_000
            }
        );
        assert_eq!(
            busy.readback_start(),
            Some(Window {
                low: 1_000 - READBACK_BOUND,
                high: 1_000
            })
        );
        let short = Window { low: 5, high: 8 };
        assert_eq!(short.readback_start(), Some(Window { low: 5, high: 8 }));
        let one_offset = Window { low: 7, high: 8 };
        assert_eq!(
            one_offset.readback_start(),
            None,
            "the newest offset was all there was"
        );
    }

    #[test]
    fn a_fetch_keeps_the_newest_data_record_and_settles_at_the_newest_offset() {
        let mut read = PartitionRead::new(10);
        read.record(4, Some(40));
        read.record(3, Some(30));
        assert!(!read.settled, "records up to offset 9 may still come");
        assert_eq!(
            read.fetched(),
            Fetched::Data(NewestRecord {
                offset: 4,
                timestamp_ms: Some(40)
            })
        );
        read.record(9, Some(90));
        assert!(read.settled);
        assert_eq!(PartitionRead::new(10).fetched(), Fetched::NoData);
    }
}
