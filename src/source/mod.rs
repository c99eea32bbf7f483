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
use crate::config::{Config, FeedConfig, FeedMode, TopicMatcher};
use crate::extract::{Extractor, Record, FUTURE_TIMESTAMP_REASON};
use crate::knowledge::{Knowledge, PartitionKey, ReadThrough};
use crate::metrics::Metrics;
use crate::model::FeedIndex;
use crate::tracker::{Positions, Tracker};

/// How often the brokers are asked for metadata to tell whether they answer.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

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
    /// Whether the tail source finished a round (tail-mode feeds only).
    pub tail_ready: AtomicBool,
    /// Whether this process committed offsets yet.
    pub committed_once: AtomicBool,
    /// Whether the group had committed offsets before this process committed any: a run before
    /// this one read these partitions (so an empty state store lost its state).
    pub group_had_commits: AtomicBool,
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

/// librdkafka callbacks: logging, errors, rebalances. Kept thin: they report facts to the
/// status and to [`Knowledge`], which decides.
pub struct SourceContext {
    status: Arc<SourceStatus>,
    metrics: Metrics,
    knowledge: Arc<Knowledge>,
    clock: SharedClock,
    catchup_tolerance: i64,
}

/// How far a partition is read, from one statistics entry: records between the consumer's
/// position and the high watermark. The position is what was handed to freshwatch, or, before
/// any record, where the fetcher stands with nothing queued (a new group at `latest`, or a
/// committed offset retention has since deleted): never the log start, never the commit.
/// `None` while records are fetched but not yet handed over, or nothing is known.
pub fn partition_lag(stats: &rdkafka::statistics::Partition) -> Option<i64> {
    if stats.hi_offset < 0 {
        return None;
    }
    let position = if stats.app_offset >= 0 {
        stats.app_offset
    } else if stats.fetchq_cnt == 0 && stats.next_offset >= 0 {
        stats.next_offset
    } else {
        return None;
    };
    // Nothing below the log start can be read: it is not a backlog.
    Some((stats.hi_offset - position.max(stats.lo_offset)).max(0))
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let at_ms = self.clock.now_ms();
        let brokers_up: Vec<i32> = statistics
            .brokers
            .values()
            .filter(|broker| broker.state == "UP")
            .map(|broker| broker.nodeid)
            .collect();
        let mut lags = HashMap::new();
        let mut reads: Vec<(PartitionKey, ReadThrough)> = Vec::new();
        for (topic_name, topic) in &statistics.topics {
            for (&partition, stats) in &topic.partitions {
                if partition < 0 || !stats.desired {
                    continue;
                }
                if stats.committed_offset >= 0
                    && !self.status.committed_once.load(Ordering::Relaxed)
                {
                    self.status.group_had_commits.store(true, Ordering::Relaxed);
                }
                let key = (topic_name.clone(), partition);
                let lag = partition_lag(stats);
                // Read to the high watermark the partition's leader just reported: known now.
                let caught_up = lag.is_some_and(|lag| lag <= self.catchup_tolerance)
                    && stats.fetch_state == "active"
                    && brokers_up.contains(&stats.leader);
                reads.push((key, caught_up.then_some(at_ms)));
                let Some(lag) = lag else {
                    continue;
                };
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
        self.knowledge.observe_reads(reads);
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
            Some(RDKafkaErrorCode::FencedInstanceId)
        ) {
            tracing::error!(%error, reason, "another consumer of this group uses the same group.instance.id: give each replica its own kafka.instance_id (default: the host name)");
        }
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            mark_unreachable(
                &self.status,
                &self.metrics,
                &self.knowledge,
                self.clock.now_ms(),
            );
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The assignment follows from the rebalance's own list, not from asking librdkafka:
        // during a close the revoke is served from the consumer's drop, where
        // `consumer.assignment()` waits for an answer that never comes (seen hanging a test).
        // Eager rebalances assign and revoke everything; cooperative ones add and take away.
        let mut assignment = self
            .status
            .assignment
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        match rebalance {
            Rebalance::Assign(list) => {
                let held: std::collections::HashSet<(String, i32)> =
                    assignment.iter().cloned().collect();
                for element in list.elements() {
                    let partition = (element.topic().to_owned(), element.partition());
                    if !held.contains(&partition) {
                        assignment.push(partition);
                    }
                }
            }
            Rebalance::Revoke(list) => {
                let elements = list.elements();
                let revoked: std::collections::HashSet<(&str, i32)> = elements
                    .iter()
                    .map(|element| (element.topic(), element.partition()))
                    .collect();
                assignment
                    .retain(|(topic, partition)| !revoked.contains(&(topic.as_str(), *partition)));
            }
            Rebalance::Error(_) => {}
        }
        let assigned = assignment.len();
        // Lag gauges of partitions that moved to another replica would freeze at their last
        // value; the next statistics fill in the partitions still owned.
        self.metrics.consumer_lag.clear();
        self.knowledge
            .observe_assignment(self.clock.now_ms(), &assignment);
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

/// How many partitions each topic has, from a metadata answer (topics in error left out).
pub fn partition_counts(metadata: &rdkafka::metadata::Metadata) -> HashMap<String, i32> {
    metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none())
        .map(|topic| (topic.name().to_owned(), topic.partitions().len() as i32))
        .collect()
}

/// The brokers did not answer: nothing read counts as known from now on, not from the end of
/// the grace.
fn mark_unreachable(status: &SourceStatus, metrics: &Metrics, knowledge: &Knowledge, now_ms: i64) {
    status.reachable.store(false, Ordering::Relaxed);
    let _ = status.unreachable_since_ms.compare_exchange(
        0,
        now_ms,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    metrics.source_up.set(0);
    knowledge.observe_source_failure(now_ms);
}

/// A borrowed Kafka message, seen through [`Record`] (also by the backtest's reader).
pub(crate) struct KafkaRecord<'a, 'b>(pub(crate) &'b BorrowedMessage<'a>);

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
        self.status.committed_once.store(true, Ordering::Relaxed);
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(%error, "offset commit failed; records may be read again after a restart");
        }
    }
}

/// Builds the consumer. Warns about settings that would lose records.
fn create_consumer(
    config: &Config,
    context: SourceContext,
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
        .set("auto.offset.reset", config.kafka.start.as_str());
    if !config.kafka.properties.contains_key("client.id") {
        client_config.set("client.id", "freshwatch");
    }
    // Static membership: a restarted replica takes its partitions back at once.
    if let Some(instance_id) = &config.kafka.instance_id {
        client_config.set("group.instance.id", instance_id);
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
        .create_with_context(context)
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
                    (topics, feed.extractor(max_future_skew_ms))
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
    knowledge: Arc<Knowledge>,
    metadata_refresh: Duration,
    subscribed: BTreeSet<String>,
    source_grace_ms: i64,
    last_rejoin_ms: i64,
    errors_log: RateLimitedLog,
}

impl Source {
    pub fn new(
        config: &Config,
        tracker: Arc<Mutex<Tracker>>,
        metrics: Metrics,
        clock: SharedClock,
        knowledge: Arc<Knowledge>,
    ) -> Result<(Source, SourceHandle), SourceError> {
        let status = Arc::new(SourceStatus::default());
        let context = SourceContext {
            status: status.clone(),
            metrics: metrics.clone(),
            knowledge: knowledge.clone(),
            clock: clock.clone(),
            catchup_tolerance: i64::try_from(config.evaluation.catchup_tolerance)
                .unwrap_or(i64::MAX),
        };
        let consumer = Arc::new(create_consumer(config, context)?);
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
            knowledge,
            metadata_refresh: config.kafka.metadata_refresh,
            source_grace_ms: i64::try_from(config.evaluation.source_grace.as_millis())
                .unwrap_or(i64::MAX),
            last_rejoin_ms: 0,
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

    /// A metadata request tells whether the brokers answer, even when no records flow, and
    /// which partitions every topic has: one that no replica reads is not known.
    fn probe_brokers(&self) {
        match self.consumer.fetch_metadata(None, Duration::from_secs(3)) {
            Ok(metadata) => {
                self.mark_reachable();
                self.knowledge
                    .observe_metadata(self.clock.now_ms(), partition_counts(&metadata));
            }
            Err(error) => {
                if self.status.reachable.load(Ordering::Relaxed) {
                    tracing::warn!(%error, "kafka brokers do not answer");
                }
                mark_unreachable(
                    &self.status,
                    &self.metrics,
                    &self.knowledge,
                    self.clock.now_ms(),
                );
            }
        }
    }

    fn mark_reachable(&self) {
        if !self.status.reachable.swap(true, Ordering::Relaxed) {
            self.metrics.source_up.set(1);
        }
        self.status.unreachable_since_ms.store(0, Ordering::Relaxed);
        self.knowledge.observe_source_success(self.clock.now_ms());
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
                self.rejoin_if_stuck();
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

    /// Leaves and rejoins the group when this consumer holds nothing while partitions have been
    /// read by no replica past `source_grace`: a real coordinator reassigns a dead member's
    /// partitions once its session expires, but one that never does would leave freshwatch blind
    /// for good. At most once per grace (and 30 s).
    fn rejoin_if_stuck(&mut self) {
        let now_ms = self.clock.now_ms();
        // A join takes seconds: never more often than every 30 s.
        if now_ms.saturating_sub(self.last_rejoin_ms) < self.source_grace_ms.max(30_000)
            || !self
                .knowledge
                .stuck_without_partitions(now_ms, self.source_grace_ms)
        {
            return;
        }
        self.last_rejoin_ms = now_ms;
        tracing::warn!("partitions are read by no replica while this consumer holds none; rejoining the consumer group");
        self.consumer.unsubscribe();
        let topics: Vec<&str> = self.subscribed.iter().map(String::as_str).collect();
        if let Err(error) = self.consumer.subscribe(&topics) {
            tracing::error!(%error, "cannot rejoin the consumer group; will try again");
        }
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
            // An audited feed's record id is read in the same pass as its split and time.
            let extracted = match tracker.audit_sides(feed).first() {
                None => extractor
                    .extract(&record, arrival_ms)
                    .map(|extracted| (extracted, None)),
                Some(&(audit, _)) => extractor
                    .extract_with_id(&record, arrival_ms, &tracker.audits[audit].config.id)
                    .map(|(extracted, id)| (extracted, Some(id))),
            };
            match extracted {
                Ok((extracted, id)) => {
                    tracker.observe_at(
                        feed,
                        extracted.split.as_bytes(),
                        extracted.event_ms,
                        arrival_ms,
                    );
                    if let Some(id) = id {
                        audit(tracker, feed, id, &record, extracted.event_ms, message);
                    }
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

/// Counts a record of an audited feed on its audits' sides. `first_id` is the id of the first
/// audit's rule, read with the split; a record without an id is counted nowhere (but in
/// `freshwatch_audit_records_without_id`).
fn audit(
    tracker: &mut Tracker,
    feed: FeedIndex,
    first_id: Result<crate::extract::SplitValue<'_>, crate::extract::RecordError>,
    record: &KafkaRecord<'_, '_>,
    event_ms: i64,
    message: &BorrowedMessage<'_>,
) {
    let sides = tracker.audit_sides(feed).len();
    let mut first_id = Some(first_id);
    for index in 0..sides {
        let (audit, side) = tracker.audit_sides(feed)[index];
        let track = &mut tracker.audits[audit];
        let id = match first_id.take() {
            Some(id) => id,
            None => crate::extract::value_of(&track.config.id, record),
        };
        let Ok(id) = id else {
            track.without_id += 1;
            continue;
        };
        track.count(
            side,
            event_ms,
            id.as_bytes(),
            message.topic(),
            message.partition(),
            message.offset(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(
        lo: i64,
        hi: i64,
        app: i64,
        next: i64,
        queued: i64,
    ) -> rdkafka::statistics::Partition {
        rdkafka::statistics::Partition {
            lo_offset: lo,
            hi_offset: hi,
            app_offset: app,
            next_offset: next,
            fetchq_cnt: queued,
            committed_offset: -1,
            ..Default::default()
        }
    }

    #[test]
    fn lag_is_counted_from_the_consumers_position_not_from_the_log_start() {
        assert_eq!(
            partition_lag(&partition(0, 500, -1, 500, 0)),
            Some(0),
            "a new group at `latest` on a topic holding 500 records has read everything there is"
        );
        assert_eq!(
            partition_lag(&partition(900, 900, -1, 900, 0)),
            Some(0),
            "a commit retention deleted past: the partition is empty, nothing is unread"
        );
        assert_eq!(
            partition_lag(&partition(900, 1000, -1, 400, 0)),
            Some(100),
            "a position below the log start counts from the log start"
        );
        assert_eq!(partition_lag(&partition(0, 500, 200, 500, 300)), Some(300));
        assert_eq!(
            partition_lag(&partition(0, 500, -1, 500, 300)),
            None,
            "fetched but not handed over yet"
        );
        assert_eq!(partition_lag(&partition(-1, -1, -1, -1, 0)), None);
    }
}
