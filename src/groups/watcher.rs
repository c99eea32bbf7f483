//! The Kafka side of group watching, on a thread of its own: committed offsets (OffsetFetch,
//! pipelined or batched on one connection per coordinator, [`super::offsets`]), member
//! counts (ListGroups and one batched DescribeGroups per broker), watermarks (ListOffsets,
//! batched per partition leader), retention and cleanup policy (DescribeConfigs, every
//! `kafka.retention_refresh`), and the one record at each commit that moved. It reads the
//! watched groups' offsets as an admin: freshwatch never joins them nor commits for them.
//!
//! A group that cannot be read makes only itself unknown; Kafka not answering the metadata or
//! watermark requests makes every group unknown under one cause ([`super::ALL_GROUPS`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::offsets::{OffsetSource, ReadError};
use super::wire::{FirstUnread, GroupAsk};
use tokio_util::sync::CancellationToken;

use super::{GroupReads, GroupsTable, ReadFailure, Retention, RetentionSource, TopicState};
use crate::clock::SharedClock;
use crate::config::{Config, GroupConfig, GroupMatcher};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// After DescribeGroups fails, member counts are not asked for again this long: some brokers
/// (Tansu 0.6) drop the connection on it, and the lag must still be read.
const DESCRIBE_BACKOFF: Duration = Duration::from_secs(600);

/// Records at moved commits read per round, at most: a round stays bounded when many commits
/// move at once; the others are read in the next rounds.
const FIRST_UNREAD_PER_ROUND: usize = 20_000;

/// How long a round waits for those records.
const FIRST_UNREAD_WAIT: Duration = Duration::from_secs(2);

/// A topic's retention as last read, and when.
struct RetentionRead {
    retention: (Retention, RetentionSource),
    read_at: Instant,
}

/// The group-watching thread.
pub struct GroupWatcher {
    groups: Vec<GroupConfig>,
    /// Fetches single records and watermarks; its own group id, never committed.
    fetcher: BaseConsumer<FetcherContext>,
    /// Asks for member counts (DescribeGroups) on a connection of its own: a broker that drops
    /// the connection on it takes nothing else down.
    describer: BaseConsumer,
    describe_broken_until: Option<Instant>,
    admin: AdminClient<DefaultClientContext>,
    /// Every watched group's committed offsets and the watermarks: the own client, or
    /// librdkafka's.
    offsets: OffsetSource,
    /// Brokers in the last metadata: ListGroups and DescribeGroups go to each.
    brokers: u64,
    /// Leader of each partition in the last metadata: ListOffsets goes to each leader once.
    leaders: HashMap<String, Vec<i32>>,
    table: Arc<Mutex<GroupsTable>>,
    reads: Arc<Mutex<GroupReads>>,
    clock: SharedClock,
    interval: Duration,
    metadata_refresh: Duration,
    retention_refresh: Duration,
    retention: HashMap<String, RetentionRead>,
    metrics: crate::metrics::GroupMetrics,
}

/// What one round read of one watched group: (rules, group id, topic, partition → commit).
type Commits = Vec<(usize, String, String, BTreeMap<i32, i64>)>;

impl GroupWatcher {
    /// `None` when no `[[group]]` is configured.
    pub fn new(
        config: &Config,
        table: Arc<Mutex<GroupsTable>>,
        reads: Arc<Mutex<GroupReads>>,
        clock: SharedClock,
        metrics: crate::metrics::GroupMetrics,
    ) -> KafkaResult<Option<GroupWatcher>> {
        if config.groups.is_empty() {
            return Ok(None);
        }
        let mut base = ClientConfig::new();
        for (key, value) in &config.kafka.properties {
            base.set(key, value);
        }
        base.set("bootstrap.servers", &config.kafka.brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "0");
        let fetcher = base
            .clone()
            .set("group.id", format!("{}-groups", config.kafka.group_id))
            .set("auto.offset.reset", "earliest")
            // The end of a partition tells a commit on transaction markers from one not yet read.
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create_with_context(FetcherContext)?;
        let describer = base
            .clone()
            .set("group.id", format!("{}-groups", config.kafka.group_id))
            .create()?;
        let offsets = OffsetSource::new(&base, &format!("{}-groups", config.kafka.group_id));
        let admin = base.create()?;
        Ok(Some(GroupWatcher {
            groups: config.groups.clone(),
            fetcher,
            describer,
            describe_broken_until: None,
            admin,
            offsets,
            brokers: 1,
            leaders: HashMap::new(),
            table,
            reads,
            clock,
            interval: config.kafka.groups_interval,
            metadata_refresh: config.kafka.metadata_refresh,
            retention_refresh: config.kafka.retention_refresh,
            retention: HashMap::new(),
            metrics,
        }))
    }

    /// Reads every interval until `shutdown` fires.
    pub fn run(mut self, shutdown: CancellationToken) {
        let mut next_refresh = Instant::now();
        let mut group_ids: Vec<(usize, String)> = Vec::new();
        let mut topic_partitions: BTreeMap<String, i32> = BTreeMap::new();
        // Until the first listing, there is nothing to read: its error is the round's.
        let mut unlisted: Option<ReadError> = Some(KafkaError::Canceled.into());
        while !shutdown.is_cancelled() {
            let started = Instant::now();
            if started >= next_refresh {
                match self.refresh(&mut group_ids, &mut topic_partitions) {
                    Ok(()) => {
                        next_refresh = Instant::now() + self.metadata_refresh;
                        unlisted = None;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot list groups or topics; will retry");
                        if unlisted.is_some() {
                            unlisted = Some(error);
                        }
                    }
                }
            }
            let outcome = match &unlisted {
                Some(error) => Err(error.clone()),
                None => self.round(&group_ids, &topic_partitions),
            };
            match outcome {
                Ok(()) => {
                    self.metrics.rounds.inc();
                    self.healed(super::ALL_GROUPS);
                }
                Err(error) => {
                    // What was read before no longer counts: unknown from the first failure,
                    // not once it has aged (as for feeds).
                    for state in self
                        .table
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .values_mut()
                    {
                        state.observed_at_ms = 0;
                    }
                    self.failed(super::ALL_GROUPS, &error);
                    tracing::warn!(%error, "reading consumer groups failed; will retry");
                }
            }
            let took = started.elapsed().as_secs_f64();
            self.metrics.round_seconds.inc_by(took);
            self.metrics.last_round_seconds.set(took);
            let deadline = started + self.interval;
            while !shutdown.is_cancelled() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        tracing::info!("group watcher stopped");
    }

    /// Records that `label` (or every group) could not be read; the first failure's moment
    /// stands until it is read again.
    fn failed(&self, label: &str, error: &ReadError) {
        let now_ms = self.clock.now_ms();
        self.reads
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .entry(Arc::from(label))
            .and_modify(|failure| failure.reason = error.to_string())
            .or_insert_with(|| ReadFailure {
                since_ms: now_ms,
                reason: error.to_string(),
            });
    }

    fn healed(&self, label: &str) {
        self.reads
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(label);
    }

    /// Which group ids are watched (regexes against the broker's group list), which topics exist
    /// and their retention.
    fn refresh(
        &mut self,
        group_ids: &mut Vec<(usize, String)>,
        topic_partitions: &mut BTreeMap<String, i32>,
    ) -> Result<(), ReadError> {
        self.count("metadata", 1);
        let metadata = self.fetcher.fetch_metadata(None, REQUEST_TIMEOUT)?;
        self.offsets.refresh(&metadata);
        *topic_partitions = crate::source::partition_counts(&metadata)
            .into_iter()
            .filter(|(topic, _)| !topic.starts_with("__"))
            .collect();
        self.brokers = (metadata.brokers().len() as u64).max(1);
        self.leaders = metadata
            .topics()
            .iter()
            .filter(|topic| topic_partitions.contains_key(topic.name()))
            .map(|topic| {
                let mut leaders = vec![-1; topic.partitions().len()];
                for partition in topic.partitions() {
                    if let Some(slot) = usize::try_from(partition.id())
                        .ok()
                        .and_then(|id| leaders.get_mut(id))
                    {
                        *slot = partition.leader();
                    }
                }
                (topic.name().to_owned(), leaders)
            })
            .collect();
        let listed: Option<Vec<String>> = if self
            .groups
            .iter()
            .any(|group| matches!(group.matcher, GroupMatcher::Regex(_)))
        {
            self.count("list_groups", 1);
            match self.fetcher.fetch_group_list(None, REQUEST_TIMEOUT) {
                Ok(list) => Some(list.groups().iter().map(|g| g.name().to_owned()).collect()),
                Err(error) => {
                    tracing::warn!(%error, "cannot list consumer groups; group_regex finds none this round");
                    None
                }
            }
        } else {
            None
        };
        group_ids.clear();
        for (index, group) in self.groups.iter().enumerate() {
            match &group.matcher {
                GroupMatcher::Exact(id) => group_ids.push((index, id.clone())),
                GroupMatcher::Regex(regex) => {
                    for id in listed.iter().flatten().filter(|id| regex.is_match(id)) {
                        group_ids.push((index, id.clone()));
                    }
                }
            }
        }
        self.read_retention(topic_partitions.keys().cloned().collect());
        Ok(())
    }

    /// `retention.ms` and `cleanup.policy` per topic from DescribeConfigs, read again every
    /// `retention_refresh`. A broker that does not answer leaves the retention as last read
    /// (unknown at first) and is asked again at the next refresh: a failure is never kept.
    fn read_retention(&mut self, topics: Vec<String>) {
        let wanted: Vec<String> = topics
            .into_iter()
            .filter(|topic| {
                self.retention
                    .get(topic)
                    .is_none_or(|read| read.read_at.elapsed() >= self.retention_refresh)
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let specifiers: Vec<ResourceSpecifier<'_>> = wanted
            .iter()
            .map(|topic| ResourceSpecifier::Topic(topic))
            .collect();
        let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        self.count("describe_configs", 1);
        let results = match runtime.block_on(self.admin.describe_configs(&specifiers, &options)) {
            Ok(results) => results,
            Err(error) => {
                tracing::debug!(%error, "describe configs failed; retention unknown until read");
                return;
            }
        };
        for (topic, result) in wanted.iter().zip(results) {
            let Ok(resource) = result else {
                continue;
            };
            let value = |name: &str| {
                resource
                    .get(name)
                    .and_then(|entry| entry.value.as_deref())
                    .map(str::to_owned)
            };
            let retention = retention_of(
                value("cleanup.policy").as_deref(),
                value("retention.ms").as_deref(),
            );
            self.retention.insert(
                topic.clone(),
                RetentionRead {
                    retention,
                    read_at: Instant::now(),
                },
            );
        }
    }

    fn count(&self, kind: &'static str, requests: u64) {
        self.metrics
            .requests
            .get_or_create(&crate::metrics::KindLabels { kind })
            .inc_by(requests);
    }

    /// Member count of every group the brokers coordinate: ListGroups to each broker, then
    /// one DescribeGroups per broker naming all of its groups. `None` when it cannot be told
    /// (after a failure, for [`DESCRIBE_BACKOFF`]).
    fn members(&mut self) -> Option<HashMap<String, usize>> {
        if self
            .describe_broken_until
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        self.count("list_groups", self.brokers);
        self.count("describe_group", self.brokers);
        match self.describer.fetch_group_list(None, REQUEST_TIMEOUT) {
            Ok(list) => Some(
                list.groups()
                    .iter()
                    .map(|group| (group.name().to_owned(), group.members().len()))
                    .collect(),
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot describe consumer groups; member counts unknown for a while, lag is still read");
                self.describe_broken_until = Some(Instant::now() + DESCRIBE_BACKOFF);
                None
            }
        }
    }

    /// Each watched group's commits; a group that cannot be read is left out and told, alone.
    /// When no group at all can be read, that is one cause for all (Kafka does not answer):
    /// the round fails with it.
    fn read_commits(
        &mut self,
        group_ids: &[(usize, String)],
        topic_partitions: &BTreeMap<String, i32>,
    ) -> Result<(Commits, HashMap<String, Option<usize>>), ReadError> {
        let mut failures: Vec<(Arc<str>, ReadError)> = Vec::new();
        let mut answered = 0;
        let mut commits: Commits = Vec::new();
        let known: BTreeSet<(Arc<str>, String)> = self
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut asked: Vec<(usize, &str)> = Vec::with_capacity(group_ids.len());
        let mut queries: Vec<GroupAsk> = Vec::with_capacity(group_ids.len());
        for (rules, group_id) in group_ids {
            let configured = &self.groups[*rules].topics;
            let topic_count = |topic: &String| {
                let count = topic_partitions.get(topic).copied().unwrap_or(0);
                (count > 0).then(|| (topic.clone(), count))
            };
            let topics: Vec<(String, i32)> = if configured.is_empty() {
                topic_partitions.keys().filter_map(topic_count).collect()
            } else {
                configured.iter().filter_map(topic_count).collect()
            };
            if topics.is_empty() {
                continue;
            }
            asked.push((*rules, group_id));
            queries.push(GroupAsk {
                group_id: group_id.clone(),
                topics,
            });
        }
        let (results, sent) = self.offsets.committed(&queries);
        self.count("offset_fetch", sent.offset_fetch);
        self.count("find_coordinator", sent.find_coordinator);
        drop(queries);
        for ((rules, group_id), result) in asked.into_iter().zip(results) {
            let configured = &self.groups[rules].topics;
            let label = self.groups[rules].label(group_id);
            let committed = match result {
                Ok(committed) => committed,
                Err(error) => {
                    tracing::warn!(%error, group = %label, "cannot read the group's committed offsets; it is unknown until read");
                    self.mark_unread(&label);
                    failures.push((label, error));
                    continue;
                }
            };
            answered += 1;
            self.healed(&label);
            for (topic, partitions) in committed {
                // Without configured topics, only those the group has committed on (or had:
                // a commit that vanished is still watched).
                if configured.is_empty()
                    && partitions.values().all(|&offset| offset < 0)
                    && !known.contains(&(label.clone(), topic.clone()))
                {
                    continue;
                }
                commits.push((rules, group_id.to_owned(), topic, partitions));
            }
        }
        if answered == 0 {
            if let Some((_, error)) = failures.first() {
                return Err(error.clone());
            }
        }
        for (label, error) in failures {
            self.failed(&label, &error);
        }
        // A group the brokers do not list has no members: it is not unknown.
        let members: HashMap<String, Option<usize>> = match self.members() {
            Some(counts) => group_ids
                .iter()
                .map(|(_, id)| (id.clone(), Some(counts.get(id).copied().unwrap_or(0))))
                .collect(),
            None => HashMap::new(),
        };
        Ok((commits, members))
    }

    /// A group whose commits could not be read is unknown from now, not once its reading ages.
    fn mark_unread(&self, label: &Arc<str>) {
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for ((state_label, _), state) in table.iter_mut() {
            if state_label == label {
                state.observed_at_ms = 0;
            }
        }
    }

    /// One pass: commits, watermarks, members, then the records at commits that moved.
    fn round(
        &mut self,
        group_ids: &[(usize, String)],
        topic_partitions: &BTreeMap<String, i32>,
    ) -> Result<(), ReadError> {
        let (commits, members) = self.read_commits(group_ids, topic_partitions)?;
        let watched: BTreeSet<(String, i32)> = commits
            .iter()
            .flat_map(|(_, _, topic, partitions)| {
                partitions
                    .keys()
                    .map(move |&partition| (topic.clone(), partition))
            })
            .collect();
        let (watermarks, list_offsets) =
            self.offsets
                .watermarks(&self.fetcher, &self.leaders, &watched);
        self.count("list_offsets", list_offsets);
        let (lows, highs) = watermarks?;
        let now_ms = self.clock.now_ms();
        let mut to_read: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        {
            let mut table = self
                .table
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (rules, group_id, topic, partitions) in commits {
                let label = self.groups[rules].label(&group_id);
                let state = table
                    .entry((label, topic.clone()))
                    .or_insert_with(|| TopicState {
                        rules,
                        group_id: group_id.clone(),
                        ..TopicState::default()
                    });
                if state.first_watched_ms == 0 {
                    state.first_watched_ms = now_ms;
                    state.dirty = true;
                }
                state.rules = rules;
                state.group_id.clone_from(&group_id);
                state.retention = self.retention.get(&topic).map(|read| read.retention);
                state.members = members.get(&group_id).copied().flatten();
                state.observed_at_ms = now_ms;
                for (partition, committed) in partitions {
                    let key = (topic.clone(), partition);
                    // A partition whose watermarks were not answered keeps its last reading,
                    // and is unknown once that ages.
                    let (Some(&low), Some(&high)) = (lows.get(&key), highs.get(&key)) else {
                        continue;
                    };
                    let part = state.partitions.entry(partition).or_default();
                    let before = part.clone();
                    part.observe(committed, low, high, now_ms);
                    if part.needs_first_unread() {
                        to_read.insert(key, (part.read_from(), high));
                    }
                    if part.committed != before.committed
                        || part.vanished_at_ms != before.vanished_at_ms
                        || part.lost_records != before.lost_records
                        || part.committed_moved_at_ms != before.committed_moved_at_ms
                    {
                        state.dirty = true;
                    }
                }
                let (committed_sum, high_sum) = state
                    .partitions
                    .values()
                    .filter(|part| part.has_commit() && part.vanished_at_ms.is_none())
                    .fold((0, 0), |(committed, high), part| {
                        (committed + part.committed, high + part.high)
                    });
                state.trend.push(now_ms, committed_sum, high_sum);
            }
        }
        if !to_read.is_empty() {
            self.read_first_unread(to_read)?;
        }
        Ok(())
    }

    /// Fetches the first data record at or after each offset (transaction markers are skipped
    /// as a consumer skips them) and hands its timestamp to every group state of that
    /// partition. A partition read to its high watermark without a data record holds only
    /// markers past the commit: the groups there are caught up. At most
    /// [`FIRST_UNREAD_PER_ROUND`] partitions and [`FIRST_UNREAD_WAIT`] per round: the rest
    /// keep their lag in time unknown and are read in the next rounds.
    fn read_first_unread(
        &mut self,
        mut wanted: BTreeMap<(String, i32), (i64, i64)>,
    ) -> KafkaResult<()> {
        if wanted.len() > FIRST_UNREAD_PER_ROUND {
            let rest = wanted
                .keys()
                .nth(FIRST_UNREAD_PER_ROUND)
                .cloned()
                .expect("more than the cap");
            let left = wanted.split_off(&rest);
            self.metrics.first_unread_deferred.inc_by(left.len() as u64);
        }
        let deadline = Instant::now() + FIRST_UNREAD_WAIT;
        let mut found: Vec<((String, i32), i64, i64)> = Vec::new();
        let mut markers_only: Vec<((String, i32), i64)> = Vec::new();
        // The own client's Fetch first; what it cannot read (compressed, no own client) is
        // librdkafka's.
        if let Some((read, requests)) = self.offsets.first_unread(&self.leaders, &wanted, deadline)
        {
            self.count("fetch", requests);
            let mut left: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
            for (key, asked) in wanted {
                match read.get(&key) {
                    Some(FirstUnread::Record {
                        offset,
                        timestamp_ms,
                    }) => found.push((key, *offset, *timestamp_ms)),
                    Some(FirstUnread::MarkersOnly { position }) => {
                        markers_only.push((key, *position));
                    }
                    Some(FirstUnread::Unreadable) => {
                        left.insert(key, asked);
                    }
                    // Its leader did not answer in time: read in a later round.
                    None => {
                        self.metrics.first_unread_deferred.inc();
                    }
                }
            }
            wanted = left;
        }
        if !wanted.is_empty() {
            self.count("fetch", wanted.len() as u64);
            let (by_librdkafka, markers_by_librdkafka) =
                self.librdkafka_first_unread(&wanted, deadline)?;
            found.extend(by_librdkafka);
            markers_only.extend(markers_by_librdkafka);
        }
        let mut found_by_topic: HashMap<&str, Vec<(i32, i64, i64)>> = HashMap::new();
        for ((topic, partition), offset, timestamp_ms) in &found {
            found_by_topic.entry(topic.as_str()).or_default().push((
                *partition,
                *offset,
                *timestamp_ms,
            ));
        }
        let mut markers_by_topic: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
        for ((topic, partition), position) in &markers_only {
            markers_by_topic
                .entry(topic.as_str())
                .or_default()
                .push((*partition, *position));
        }
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for ((_, state_topic), state) in table.iter_mut() {
            for (partition, offset, timestamp_ms) in found_by_topic
                .get(state_topic.as_str())
                .into_iter()
                .flatten()
            {
                if let Some(part) = state.partitions.get_mut(partition) {
                    if part.needs_first_unread() && *offset >= part.read_from() {
                        part.found_first_unread(*offset, *timestamp_ms);
                        state.dirty = true;
                    }
                }
            }
            for (partition, position) in markers_by_topic
                .get(state_topic.as_str())
                .into_iter()
                .flatten()
            {
                if let Some(part) = state.partitions.get_mut(partition) {
                    if part.needs_first_unread() {
                        part.found_only_markers(*position);
                    }
                }
            }
        }
        Ok(())
    }

    /// The first unread records of `wanted` through librdkafka's consumer: found records
    /// ((topic, partition), offset, timestamp) and partitions holding only markers.
    #[allow(clippy::type_complexity)]
    fn librdkafka_first_unread(
        &mut self,
        wanted: &BTreeMap<(String, i32), (i64, i64)>,
        deadline: Instant,
    ) -> KafkaResult<(Vec<((String, i32), i64, i64)>, Vec<((String, i32), i64)>)> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), (offset, _)) in wanted {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        self.fetcher.assign(&list)?;
        let mut pending: BTreeSet<(String, i32)> = wanted.keys().cloned().collect();
        let mut found: Vec<((String, i32), i64, i64)> = Vec::new();
        let mut markers_only: Vec<((String, i32), i64)> = Vec::new();
        // Partitions that reached their end since the positions were last asked for: the event
        // names no topic, and asking for every position at each one would be O(partitions²).
        let mut ended: BTreeSet<i32> = BTreeSet::new();
        while !pending.is_empty() && Instant::now() < deadline {
            let polled = self.fetcher.poll(Duration::from_millis(100));
            let idle = polled.is_none();
            match polled {
                Some(Ok(message)) => {
                    let key = (message.topic().to_owned(), message.partition());
                    if pending.remove(&key) {
                        let timestamp_ms = message.timestamp().to_millis().unwrap_or(0);
                        found.push((key, message.offset(), timestamp_ms));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    ended.insert(partition);
                }
                _ => {}
            }
            if ended.is_empty() || !(idle || ended.len() >= 64) {
                continue;
            }
            // The positions tell which partitions reached the end.
            let positions = self.fetcher.position()?;
            for element in positions.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if !ended.contains(&element.partition()) || !pending.contains(&key) {
                    continue;
                }
                let high = wanted.get(&key).map_or(i64::MAX, |(_, high)| *high);
                if let Offset::Offset(position) = element.offset() {
                    if position >= high {
                        pending.remove(&key);
                        markers_only.push((key, position));
                    }
                }
            }
            ended.clear();
        }
        self.fetcher.unassign()?;
        Ok((found, markers_only))
    }
}

/// A topic's retention from its `cleanup.policy` and `retention.ms`: a compacted topic without
/// `delete` expires nothing by age.
pub fn retention_of(
    cleanup_policy: Option<&str>,
    retention_ms: Option<&str>,
) -> (Retention, RetentionSource) {
    let policies: Vec<&str> = cleanup_policy
        .unwrap_or("delete")
        .split(',')
        .map(str::trim)
        .collect();
    if policies.contains(&"compact") && !policies.contains(&"delete") {
        return (Retention::Compacted, RetentionSource::Compact);
    }
    match retention_ms.and_then(|value| value.parse::<i64>().ok()) {
        Some(ms) if ms < 0 => (Retention::Forever, RetentionSource::Broker),
        Some(ms) => (Retention::Time(ms), RetentionSource::Broker),
        None => (Retention::Unknown, RetentionSource::Unknown),
    }
}

/// The first-unread fetcher's context: the end of a partition is what it asks for (a commit on
/// transaction markers), not an error worth a log line.
pub struct FetcherContext;

impl ClientContext for FetcherContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "group watcher's fetcher error");
        }
    }
}

impl ConsumerContext for FetcherContext {}
