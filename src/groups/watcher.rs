//! The Kafka side of group watching, on a thread of its own: committed offsets (OffsetFetch,
//! one request per group per round), watermarks (ListOffsets, batched), retention
//! (DescribeConfigs, once per topic per metadata refresh), and the one record at each commit
//! that moved. It reads the watched groups' offsets through a client that carries their
//! `group.id` but never subscribes: freshwatch never joins them nor commits for them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{GroupsTable, Retention, RetentionSource, TopicState};
use crate::clock::SharedClock;
use crate::config::{Config, GroupConfig, GroupMatcher};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The group-watching thread.
pub struct GroupWatcher {
    groups: Vec<GroupConfig>,
    base: ClientConfig,
    /// Fetches single records and watermarks; its own group id, never committed.
    fetcher: BaseConsumer,
    admin: AdminClient<DefaultClientContext>,
    /// One client per watched group id: only to read that group's committed offsets.
    readers: HashMap<String, BaseConsumer>,
    table: Arc<Mutex<GroupsTable>>,
    clock: SharedClock,
    interval: Duration,
    metadata_refresh: Duration,
    retention: HashMap<String, (Retention, RetentionSource)>,
    metrics: crate::metrics::GroupMetrics,
}

impl GroupWatcher {
    /// `None` when no `[[group]]` is configured.
    pub fn new(
        config: &Config,
        table: Arc<Mutex<GroupsTable>>,
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
            .create()?;
        let admin = base.create()?;
        Ok(Some(GroupWatcher {
            groups: config.groups.clone(),
            base,
            fetcher,
            admin,
            readers: HashMap::new(),
            table,
            clock,
            interval: config.kafka.groups_interval,
            metadata_refresh: config.kafka.metadata_refresh,
            retention: HashMap::new(),
            metrics,
        }))
    }

    /// Reads every interval until `shutdown` fires.
    pub fn run(mut self, shutdown: CancellationToken) {
        let mut next_refresh = Instant::now();
        let mut group_ids: Vec<(usize, String)> = Vec::new();
        let mut topic_partitions: BTreeMap<String, i32> = BTreeMap::new();
        while !shutdown.is_cancelled() {
            let started = Instant::now();
            if started >= next_refresh {
                match self.refresh(&mut group_ids, &mut topic_partitions) {
                    Ok(()) => next_refresh = Instant::now() + self.metadata_refresh,
                    Err(error) => {
                        tracing::warn!(%error, "cannot list groups or topics; will retry")
                    }
                }
            }
            match self.round(&group_ids, &topic_partitions) {
                Ok(()) => {
                    self.metrics.rounds.inc();
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
                    tracing::warn!(%error, "reading consumer groups failed; will retry");
                }
            }
            let deadline = started + self.interval;
            while !shutdown.is_cancelled() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        tracing::info!("group watcher stopped");
    }

    /// Which group ids are watched (regexes against the broker's group list), which topics exist
    /// and their retention.
    fn refresh(
        &mut self,
        group_ids: &mut Vec<(usize, String)>,
        topic_partitions: &mut BTreeMap<String, i32>,
    ) -> KafkaResult<()> {
        self.count("metadata", 1);
        let metadata = self.fetcher.fetch_metadata(None, REQUEST_TIMEOUT)?;
        *topic_partitions = crate::source::partition_counts(&metadata)
            .into_iter()
            .filter(|(topic, _)| !topic.starts_with("__"))
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

    /// `retention.ms` per topic from DescribeConfigs; a broker that does not answer it leaves
    /// the retention unknown (a `[[group]] retention` overrides it anyway).
    fn read_retention(&mut self, topics: Vec<String>) {
        let wanted: Vec<String> = topics
            .into_iter()
            .filter(|topic| !self.retention.contains_key(topic))
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
                tracing::debug!(%error, "describe configs failed; retention unknown");
                return;
            }
        };
        for (topic, result) in wanted.iter().zip(results) {
            let retention = match result {
                Ok(resource) => match resource
                    .get("retention.ms")
                    .and_then(|entry| entry.value.as_deref())
                    .and_then(|value| value.parse::<i64>().ok())
                {
                    Some(ms) if ms < 0 => (Retention::Forever, RetentionSource::Broker),
                    Some(ms) => (Retention::Time(ms), RetentionSource::Broker),
                    None => (Retention::Unknown, RetentionSource::Unknown),
                },
                Err(_) => (Retention::Unknown, RetentionSource::Unknown),
            };
            self.retention.insert(topic.clone(), retention);
        }
    }

    fn count(&self, kind: &'static str, requests: u64) {
        self.metrics
            .requests
            .get_or_create(&crate::metrics::KindLabels { kind })
            .inc_by(requests);
    }

    fn reader(&mut self, group_id: &str) -> KafkaResult<&BaseConsumer> {
        if !self.readers.contains_key(group_id) {
            let reader: BaseConsumer = self.base.clone().set("group.id", group_id).create()?;
            self.readers.insert(group_id.to_owned(), reader);
        }
        Ok(&self.readers[group_id])
    }

    /// One pass: commits, watermarks, members, then the records at commits that moved.
    fn round(
        &mut self,
        group_ids: &[(usize, String)],
        topic_partitions: &BTreeMap<String, i32>,
    ) -> KafkaResult<()> {
        // (rules, group id, topic) -> partition -> committed
        let mut commits: Vec<(usize, String, String, BTreeMap<i32, i64>)> = Vec::new();
        let mut members: HashMap<String, Option<usize>> = HashMap::new();
        for (rules, group_id) in group_ids {
            let configured = self.groups[*rules].topics.clone();
            let topics: Vec<&String> = if configured.is_empty() {
                topic_partitions.keys().collect()
            } else {
                configured.iter().collect()
            };
            let mut list = TopicPartitionList::new();
            for topic in &topics {
                for partition in 0..topic_partitions.get(*topic).copied().unwrap_or(0) {
                    list.add_partition(topic, partition);
                }
            }
            if list.count() == 0 {
                continue;
            }
            self.count("offset_fetch", 1);
            let committed = self
                .reader(group_id)?
                .committed_offsets(list, REQUEST_TIMEOUT)?;
            let mut by_topic: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
            for element in committed.elements() {
                let offset = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => -1,
                };
                by_topic
                    .entry(element.topic().to_owned())
                    .or_default()
                    .insert(element.partition(), offset);
            }
            for (topic, partitions) in by_topic {
                // Without configured topics, only those the group has committed on.
                if configured.is_empty() && partitions.values().all(|&offset| offset < 0) {
                    continue;
                }
                commits.push((*rules, group_id.clone(), topic, partitions));
            }
            self.count("describe_group", 1);
            let count = self
                .fetcher
                .fetch_group_list(Some(group_id), REQUEST_TIMEOUT)
                .ok()
                .and_then(|list| list.groups().first().map(|group| group.members().len()));
            members.insert(group_id.clone(), count);
        }
        let watched: BTreeSet<(String, i32)> = commits
            .iter()
            .flat_map(|(_, _, topic, partitions)| {
                partitions
                    .keys()
                    .map(move |&partition| (topic.clone(), partition))
            })
            .collect();
        let lows = self.watermarks(&watched, Offset::Beginning)?;
        let highs = self.watermarks(&watched, Offset::End)?;
        let now_ms = self.clock.now_ms();
        let mut to_read: BTreeMap<(String, i32), i64> = BTreeMap::new();
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
                state.rules = rules;
                state.group_id.clone_from(&group_id);
                state.retention = self.retention.get(&topic).copied();
                state.members = members.get(&group_id).copied().flatten();
                state.observed_at_ms = now_ms;
                for (partition, committed) in partitions {
                    let key = (topic.clone(), partition);
                    let (Some(&low), Some(&high)) = (lows.get(&key), highs.get(&key)) else {
                        continue;
                    };
                    let part = state.partitions.entry(partition).or_default();
                    let before = part.clone();
                    part.observe(committed, low, high, now_ms);
                    if part.needs_first_unread() {
                        to_read.insert(key, committed.max(low));
                    }
                    if *part != before {
                        state.dirty = true;
                    }
                }
            }
        }
        if !to_read.is_empty() {
            self.read_first_unread(to_read)?;
        }
        Ok(())
    }

    /// Watermarks of `partitions` in one batched ListOffsets per broker: `Offset::Beginning`
    /// for the log start, `Offset::End` for the high watermark.
    fn watermarks(
        &self,
        partitions: &BTreeSet<(String, i32)>,
        which: Offset,
    ) -> KafkaResult<HashMap<(String, i32), i64>> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition_offset(topic, *partition, which)?;
        }
        // One ListOffsets per partition leader; a single broker here counts as one.
        self.count("list_offsets", 1);
        let answered = self.fetcher.offsets_for_times(list, REQUEST_TIMEOUT)?;
        Ok(answered
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => {
                    Some(((element.topic().to_owned(), element.partition()), offset))
                }
                _ => None,
            })
            .collect())
    }

    /// Fetches the one record at each offset (or the oldest left, when it expired) and hands
    /// its timestamp to every group state of that partition.
    fn read_first_unread(&mut self, wanted: BTreeMap<(String, i32), i64>) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &wanted {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        self.count("fetch", wanted.len() as u64);
        self.fetcher.assign(&list)?;
        let mut pending: BTreeSet<(String, i32)> = wanted.keys().cloned().collect();
        let mut found: Vec<((String, i32), i64, i64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !pending.is_empty() && Instant::now() < deadline {
            let Some(Ok(message)) = self.fetcher.poll(Duration::from_millis(100)) else {
                continue;
            };
            let key = (message.topic().to_owned(), message.partition());
            if pending.remove(&key) {
                let timestamp_ms = message.timestamp().to_millis().unwrap_or(0);
                found.push((key, message.offset(), timestamp_ms));
            }
        }
        self.fetcher.unassign()?;
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for ((topic, partition), offset, timestamp_ms) in found {
            for ((_, state_topic), state) in table.iter_mut() {
                if *state_topic != topic {
                    continue;
                }
                if let Some(part) = state.partitions.get_mut(&partition) {
                    if part.needs_first_unread() && offset >= part.committed.max(part.low) {
                        part.found_first_unread(offset, timestamp_ms);
                        state.dirty = true;
                    }
                }
            }
        }
        Ok(())
    }
}
