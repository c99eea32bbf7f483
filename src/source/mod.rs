//! The Kafka source: consumes the feeds' topics and hands each record to the tracker.
//!
//! librdkafka's `BaseConsumer` is polled on a dedicated thread, because its rebalance callbacks
//! are synchronous. Records are applied in batches under one tracker lock. Offsets are never
//! auto-committed: the state flush commits the positions the tracker had when it wrote the state
//! store, so a `kill -9` can replay records but never skip one whose last-seen was not saved.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

mod tail;

pub use tail::TailSource;

use crate::clock::SharedClock;
use crate::config::{raw::RawStart, Config, FeedConfig, FeedMode, TopicMatcher};
use crate::extract::{Extractor, Record, FUTURE_TIMESTAMP_REASON};
use crate::metrics::Metrics;
use crate::model::FeedIndex;
use crate::tracker::{Positions, Tracker};

/// How often the brokers are asked for metadata to tell whether they answer.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// librdkafka settings freshwatch changes unless `kafka.properties` sets them.
const DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    // Statistics carry each partition's high watermark: how catch-up is judged.
    ("statistics.interval.ms", "1000"),
    // librdkafka's default (1s) pauses a partition's fetching for a whole second whenever the
    // local queue is over its threshold: a consumer only slightly slower than the broker then
    // idles most of the time (measured: 5x slower on a backlog, see BENCHMARKS.md).
    ("fetch.queue.backoff.ms", "10"),
];

/// Records applied per tracker lock.
const BATCH_SIZE: usize = 2048;

/// The consumer could not be created or subscribed; permanent (a config problem).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create Kafka consumer: {0}")]
    Create(KafkaError),
    #[error("cannot subscribe to {topics:?}: {error}")]
    Subscribe {
        topics: Vec<String>,
        error: KafkaError,
    },
}

/// What the rest of the process can see of the source.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// Partitions currently assigned to this instance.
    pub assigned_partitions: AtomicUsize,
    /// Whether a rebalance has assigned partitions at least once, or the group is stable.
    pub has_assignment: AtomicBool,
    /// Whether the last contact with the brokers succeeded.
    pub reachable: AtomicBool,
    /// Since when the brokers have not answered, unix ms (0 while they answer).
    pub unreachable_since_ms: std::sync::atomic::AtomicI64,
    /// Per assigned partition: records between what freshwatch has read and the high watermark,
    /// from librdkafka's statistics (no extra requests). `None` until the first statistics.
    pub lag: Mutex<Option<HashMap<(String, i32), i64>>>,
    /// The partitions assigned by the last rebalance.
    pub assignment: Mutex<Vec<(String, i32)>>,
}

impl SourceStatus {
    /// The topics with an assigned partition not read to within `tolerance` records of its high
    /// watermark (or not yet covered by statistics), sorted.
    pub fn topics_behind(&self, tolerance: i64) -> Vec<String> {
        let assignment = self
            .assignment
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let lag = self.lag.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut behind: Vec<String> = assignment
            .iter()
            .filter(|partition| {
                lag.as_ref()
                    .and_then(|lag| lag.get(*partition))
                    .is_none_or(|&records| records > tolerance)
            })
            .map(|(topic, _)| topic.clone())
            .collect();
        behind.sort_unstable();
        behind.dedup();
        behind
    }

    /// Whether every assigned partition of `topic` is read to within `tolerance` records of its
    /// high watermark: only then can a silence be told from a backlog. A partition the
    /// statistics do not cover yet (just assigned, high watermark unknown) is not caught up. A
    /// topic with no partition assigned here is caught up (nothing of it is unread by this
    /// instance).
    pub fn caught_up(&self, topic_matches: &dyn Fn(&str) -> bool, tolerance: i64) -> bool {
        if !self.has_assignment.load(Ordering::Relaxed) {
            return false;
        }
        let assignment = self
            .assignment
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let lag = self.lag.lock().unwrap_or_else(|poison| poison.into_inner());
        let Some(lag) = lag.as_ref() else {
            return false;
        };
        assignment
            .iter()
            .filter(|(topic, _)| topic_matches(topic))
            .all(|partition| {
                lag.get(partition)
                    .is_some_and(|&records| records <= tolerance)
            })
    }
}

/// librdkafka callbacks: logging, errors, rebalances. Kept thin.
pub struct SourceContext {
    status: Arc<SourceStatus>,
    metrics: Metrics,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lags = HashMap::new();
        for (topic_name, topic) in &statistics.topics {
            for (&partition, stats) in &topic.partitions {
                if partition < 0 || !stats.desired || stats.hi_offset < 0 {
                    continue;
                }
                let read_up_to = if stats.app_offset >= 0 {
                    stats.app_offset
                } else if stats.committed_offset >= 0 {
                    stats.committed_offset
                } else {
                    stats.lo_offset.max(0)
                };
                let lag = (stats.hi_offset - read_up_to).max(0);
                self.metrics
                    .consumer_lag
                    .get_or_create(&crate::metrics::PartitionLabels {
                        topic: topic_name.clone(),
                        partition: partition.to_string(),
                    })
                    .set(lag);
                lags.insert((topic_name.clone(), partition), lag);
            }
        }
        *self
            .status
            .lag
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(lags);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.status.reachable.store(false, Ordering::Relaxed);
            let _ = self.status.unreachable_since_ms.compare_exchange(
                0,
                chrono::Utc::now().timestamp_millis(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.metrics.source_up.set(0);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assignment: Vec<(String, i32)> = consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|element| (element.topic().to_owned(), element.partition()))
                    .collect()
            })
            .unwrap_or_default();
        let assigned = assignment.len();
        // Lag gauges of partitions that moved to another replica would freeze at their last
        // value; the next statistics fill in the partitions still owned.
        self.metrics.consumer_lag.clear();
        *self
            .status
            .assignment
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = assignment;
        self.status
            .assigned_partitions
            .store(assigned, Ordering::Relaxed);
        self.metrics.assigned_partitions.set(assigned as i64);
        match rebalance {
            Rebalance::Assign(_) => {
                self.status.has_assignment.store(true, Ordering::Relaxed);
                tracing::info!(partitions = assigned, "partitions assigned");
            }
            Rebalance::Revoke(_) => tracing::info!(partitions = assigned, "partitions revoked"),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// A borrowed Kafka message, seen through [`Record`].
struct KafkaRecord<'a, 'b>(&'b BorrowedMessage<'a>);

impl Record for KafkaRecord<'_, '_> {
    fn partition(&self) -> i32 {
        self.0.partition()
    }
    fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }
    fn payload(&self) -> Option<&[u8]> {
        self.0.payload()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        let headers = self.0.headers()?;
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
    }
    fn timestamp_ms(&self) -> Option<i64> {
        self.0.timestamp().to_millis()
    }
}

/// A handle kept by the state flush to commit offsets.
#[derive(Clone)]
pub struct SourceHandle {
    consumer: Arc<BaseConsumer<SourceContext>>,
    pub status: Arc<SourceStatus>,
}

impl std::fmt::Debug for SourceHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SourceHandle")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl SourceHandle {
    /// Commits the positions of the partitions this instance still owns.
    pub fn commit(&self, positions: &Positions) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for element in assignment.elements() {
            let offset = positions
                .get(element.topic())
                .and_then(|offsets| offsets.get(usize::try_from(element.partition()).ok()?))
                .copied()
                .unwrap_or(-1);
            if offset >= 0 {
                // Cannot fail for a fresh list and a valid offset.
                let _ = list.add_partition_offset(
                    element.topic(),
                    element.partition(),
                    Offset::Offset(offset),
                );
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(%error, "offset commit failed; records may be read again after a restart");
        }
    }
}

/// Builds the consumer. Warns about settings that would lose records.
fn create_consumer(
    config: &Config,
    status: Arc<SourceStatus>,
    metrics: Metrics,
) -> Result<BaseConsumer<SourceContext>, SourceError> {
    let mut client_config = ClientConfig::new();
    for (key, value) in &config.kafka.properties {
        client_config.set(key, value);
    }
    client_config
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match config.kafka.start {
                RawStart::Earliest => "earliest",
                RawStart::Latest => "latest",
            },
        );
    if !config.kafka.properties.contains_key("client.id") {
        client_config.set("client.id", "freshwatch");
    }
    // Statistics carry each partition's high watermark: how catch-up is judged.
    for (key, value) in DEFAULT_PROPERTIES {
        if !config.kafka.properties.contains_key(*key) {
            client_config.set(*key, *value);
        }
    }
    if config
        .kafka
        .properties
        .get("isolation.level")
        .map(String::as_str)
        == Some("read_uncommitted")
    {
        tracing::warn!("isolation.level=read_uncommitted: aborted transactions will refresh feeds");
    }
    client_config
        .create_with_context(SourceContext { status, metrics })
        .map_err(SourceError::Create)
}

/// Which feeds read a topic, cached per topic name.
struct Router {
    feeds: Vec<(TopicMatcher, Extractor)>,
    routes: HashMap<String, Vec<FeedIndex>>,
    /// The topic of the previous record and its feeds: consecutive records mostly share a
    /// topic, so most records cost a short compare instead of hashing the name.
    last: (String, Vec<FeedIndex>),
}

impl Router {
    fn new(feeds: &[FeedConfig], max_future_skew_ms: i64) -> Self {
        Router {
            feeds: feeds
                .iter()
                .map(|feed| {
                    // A tail-mode feed is read by the TailSource: it matches no topic here.
                    let topics = match feed.mode {
                        FeedMode::Consume => feed.topics.clone(),
                        FeedMode::Tail => TopicMatcher::Exact(String::new()),
                    };
                    (topics, Extractor::new(feed, max_future_skew_ms))
                })
                .collect(),
            routes: HashMap::new(),
            last: (String::new(), Vec::new()),
        }
    }

    /// Points `last` at `topic`'s feeds.
    fn select(&mut self, topic: &str) {
        if self.last.0 != topic {
            let feeds = &self.feeds;
            let matching = self.routes.entry(topic.to_owned()).or_insert_with(|| {
                feeds
                    .iter()
                    .enumerate()
                    .filter(|(_, (matcher, _))| matcher.matches(topic))
                    .map(|(index, _)| index as FeedIndex)
                    .collect()
            });
            self.last = (topic.to_owned(), matching.clone());
        }
    }

    /// Topics to subscribe to: the exact names plus every known topic a regex matches.
    fn subscription(&self, known_topics: &[String]) -> BTreeSet<String> {
        let mut topics = BTreeSet::new();
        for (matcher, _) in &self.feeds {
            match matcher {
                TopicMatcher::Exact(name) if name.is_empty() => {}
                TopicMatcher::Exact(name) => {
                    topics.insert(name.clone());
                }
                TopicMatcher::Regex(regex) => topics.extend(
                    known_topics
                        .iter()
                        .filter(|topic| regex.is_match(topic))
                        .cloned(),
                ),
            }
        }
        topics
    }

    fn has_regex(&self) -> bool {
        self.feeds
            .iter()
            .any(|(matcher, _)| matches!(matcher, TopicMatcher::Regex(_)))
    }
}

/// Logs at most one line per (feed, reason) per interval, with the count it held back.
struct RateLimitedLog {
    interval: Duration,
    last: HashMap<(FeedIndex, &'static str), (Instant, u64)>,
}

impl RateLimitedLog {
    fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            last: HashMap::new(),
        }
    }

    fn record_error(
        &mut self,
        feed: FeedIndex,
        feed_name: &str,
        error: &crate::extract::RecordError,
        message: &BorrowedMessage<'_>,
    ) {
        let reason = error.reason();
        let now = Instant::now();
        let entry = self
            .last
            .entry((feed, reason))
            .or_insert((now - self.interval, 0));
        if now.duration_since(entry.0) < self.interval {
            entry.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut entry.1);
        entry.0 = now;
        tracing::warn!(
            feed = feed_name,
            reason,
            %error,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            suppressed,
            "record did not refresh its feed"
        );
    }
}

/// The consumer thread's state.
pub struct Source {
    consumer: Arc<BaseConsumer<SourceContext>>,
    router: Router,
    tracker: Arc<Mutex<Tracker>>,
    feed_names: Vec<Arc<str>>,
    metrics: Metrics,
    clock: SharedClock,
    status: Arc<SourceStatus>,
    metadata_refresh: Duration,
    subscribed: BTreeSet<String>,
    errors_log: RateLimitedLog,
}

impl Source {
    pub fn new(
        config: &Config,
        tracker: Arc<Mutex<Tracker>>,
        metrics: Metrics,
        clock: SharedClock,
    ) -> Result<(Source, SourceHandle), SourceError> {
        let status = Arc::new(SourceStatus::default());
        let consumer = Arc::new(create_consumer(config, status.clone(), metrics.clone())?);
        let max_future_skew_ms =
            i64::try_from(config.evaluation.max_future_skew.as_millis()).unwrap_or(i64::MAX);
        let source = Source {
            consumer: consumer.clone(),
            router: Router::new(&config.feeds, max_future_skew_ms),
            tracker,
            feed_names: config.feeds.iter().map(|feed| feed.name.clone()).collect(),
            metrics,
            clock,
            status: status.clone(),
            metadata_refresh: config.kafka.metadata_refresh,
            subscribed: BTreeSet::new(),
            errors_log: RateLimitedLog::new(Duration::from_secs(10)),
        };
        Ok((source, SourceHandle { consumer, status }))
    }

    fn refresh_subscription(&mut self) -> Result<(), SourceError> {
        let known_topics = if self.router.has_regex() {
            match self.consumer.fetch_metadata(None, Duration::from_secs(5)) {
                Ok(metadata) => {
                    self.mark_reachable();
                    metadata
                        .topics()
                        .iter()
                        .map(|topic| topic.name().to_owned())
                        .collect()
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read topic metadata; keeping the current subscription");
                    return Ok(());
                }
            }
        } else {
            Vec::new()
        };
        let wanted = self.router.subscription(&known_topics);
        if wanted == self.subscribed || wanted.is_empty() {
            return Ok(());
        }
        let topics: Vec<&str> = wanted.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|error| SourceError::Subscribe {
                topics: wanted.iter().cloned().collect(),
                error,
            })?;
        tracing::info!(topics = ?topics, "subscribed");
        self.subscribed = wanted;
        Ok(())
    }

    /// A metadata request tells whether the brokers answer, even when no records flow.
    fn probe_brokers(&self) {
        match self.consumer.fetch_metadata(None, Duration::from_secs(3)) {
            Ok(_) => self.mark_reachable(),
            Err(error) => {
                if self.status.reachable.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "kafka brokers do not answer");
                }
                let _ = self.status.unreachable_since_ms.compare_exchange(
                    0,
                    self.clock.now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                self.metrics.source_up.set(0);
            }
        }
    }

    fn mark_reachable(&self) {
        if !self.status.reachable.swap(true, Ordering::Relaxed) {
            self.metrics.source_up.set(1);
        }
        self.status.unreachable_since_ms.store(0, Ordering::Relaxed);
    }

    /// Polls until `shutdown` fires. Runs on its own thread.
    pub fn run(mut self, shutdown: CancellationToken) -> Result<(), SourceError> {
        self.refresh_subscription()?;
        let mut next_refresh = Instant::now() + self.metadata_refresh;
        let mut next_probe = Instant::now();
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_refresh {
                // The first subscription was accepted, so a later refusal is passing (a
                // broker or ACL hiccup): keep consuming what we have and try again later.
                if let Err(error) = self.refresh_subscription() {
                    tracing::error!(%error, "cannot update the subscription; keeping the current one");
                }
                next_refresh = Instant::now() + self.metadata_refresh;
            }
            if Instant::now() >= next_probe {
                self.probe_brokers();
                next_probe = Instant::now() + PROBE_INTERVAL;
            }
            let consumer = self.consumer.clone();
            let Some(first) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            self.apply_batch(&consumer, first);
        }
        tracing::info!("source stopped");
        Ok(())
    }

    /// Applies `first` and whatever else is already fetched, under one tracker lock.
    fn apply_batch(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        first: rdkafka::error::KafkaResult<BorrowedMessage<'_>>,
    ) {
        let arrival_ms = self.clock.now_ms();
        let tracker_handle = self.tracker.clone();
        let mut tracker = tracker_handle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut next = Some(first);
        let mut applied = 0u64;
        while let Some(result) = next.take() {
            match result {
                Ok(message) => {
                    self.apply(&mut tracker, &message, arrival_ms);
                    applied += 1;
                }
                Err(error) => self.poll_error(error),
            }
            if applied < BATCH_SIZE as u64 {
                next = consumer.poll(Duration::ZERO);
            }
        }
        drop(tracker);
        if applied > 0 {
            self.mark_reachable();
            self.metrics.records_consumed.inc_by(applied);
        }
    }

    fn apply(&mut self, tracker: &mut Tracker, message: &BorrowedMessage<'_>, arrival_ms: i64) {
        let record = KafkaRecord(message);
        let topic = message.topic();
        let Source {
            router,
            metrics,
            feed_names,
            errors_log,
            ..
        } = self;
        router.select(topic);
        for &feed in &router.last.1 {
            let extractor = &router.feeds[feed as usize].1;
            match extractor.extract(&record, arrival_ms) {
                Ok(extracted) => {
                    tracker.observe(feed, extracted.split.as_bytes(), extracted.event_ms);
                    if extracted.clamped_future {
                        metrics.count_record_error(
                            &feed_names[feed as usize],
                            FUTURE_TIMESTAMP_REASON,
                        );
                    }
                }
                Err(error) => {
                    metrics.count_record_error(&feed_names[feed as usize], error.reason());
                    errors_log.record_error(feed, &feed_names[feed as usize], &error, message);
                }
            }
        }
        tracker.advance_position(topic, message.partition(), message.offset() + 1);
    }

    fn poll_error(&self, error: KafkaError) {
        match error {
            KafkaError::PartitionEOF(_) => {}
            error => tracing::warn!(%error, "kafka poll error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(assignment: &[(&str, i32)], lag: Option<&[((&str, i32), i64)]>) -> SourceStatus {
        let status = SourceStatus::default();
        status.has_assignment.store(true, Ordering::Relaxed);
        *status.assignment.lock().unwrap() = assignment
            .iter()
            .map(|(topic, partition)| ((*topic).to_owned(), *partition))
            .collect();
        *status.lag.lock().unwrap() = lag.map(|lag| {
            lag.iter()
                .map(|((topic, partition), records)| (((*topic).to_owned(), *partition), *records))
                .collect()
        });
        status
    }

    #[test]
    fn the_topics_behind_are_those_with_a_partition_unread_or_without_statistics() {
        let assigned = [("orders", 0), ("orders", 1), ("profiles", 0), ("quiet", 0)];
        let read = [(("orders", 0), 0), (("orders", 1), 500), (("quiet", 0), 2)];
        assert_eq!(
            status(&assigned, Some(&read)).topics_behind(100),
            ["orders", "profiles"],
            "orders/1 is 500 behind; profiles/0 has no statistics yet"
        );
        assert_eq!(
            status(&assigned, None).topics_behind(100),
            ["orders", "profiles", "quiet"]
        );
    }

    #[test]
    fn a_feed_is_caught_up_only_when_every_assigned_partition_is_read_to_its_high_watermark() {
        let orders = |topic: &str| topic == "orders";
        let assigned = [("orders", 0), ("orders", 1), ("other", 0)];
        assert!(
            !status(&assigned, None).caught_up(&orders, 0),
            "no statistics yet"
        );
        assert!(
            !status(&assigned, Some(&[])).caught_up(&orders, 0),
            "statistics from before the assignment cover none of its partitions"
        );
        assert!(
            !status(&assigned, Some(&[(("orders", 0), 0)])).caught_up(&orders, 0),
            "partition 1 has no high watermark yet"
        );
        let read = [(("orders", 0), 0), (("orders", 1), 3), (("other", 0), 900)];
        assert!(!status(&assigned, Some(&read)).caught_up(&orders, 2));
        assert!(
            status(&assigned, Some(&read)).caught_up(&orders, 3),
            "within tolerance; another topic's backlog does not matter"
        );
        assert!(
            status(&[("other", 0)], Some(&read)).caught_up(&orders, 0),
            "no partition of the topic is assigned here"
        );
        let unassigned = SourceStatus::default();
        assert!(
            !unassigned.caught_up(&orders, 1000),
            "before any assignment"
        );
    }
}
