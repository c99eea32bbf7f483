//! Where the group watcher's committed offsets and watermarks come from: our own client
//! ([`super::wire`]) when the brokers speak plaintext and it can reach them, librdkafka
//! otherwise (SASL or TLS, which the own client does not speak, or brokers it cannot reach
//! while librdkafka can: tried again at every metadata refresh). Both give the same facts;
//! the own client costs a fraction of the CPU at thousands of groups (BENCHMARKS.md §5).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::admin::{GroupQuery, OffsetReader};
use super::wire::{Committed, FirstUnread, FirstUnreadAsk, GroupAsk, Sent, WireClient, WireError};

/// How long one librdkafka request may take, and a round waits for committed offsets.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Partitions per librdkafka ListOffsets call: librdkafka matches each answered partition
/// against the request's list by a linear search, so one call for every partition is quadratic.
const LIST_OFFSETS_CHUNK: usize = 1_000;

/// Groups librdkafka's coordinator cache holds: beyond, every OffsetFetch costs a lookup.
const LIBRDKAFKA_COORDINATOR_CACHE: usize = 11;

/// Why a group, or a whole round, could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Log starts and high watermarks per (topic, partition).
pub type Watermarks = (HashMap<(String, i32), i64>, HashMap<(String, i32), i64>);

/// The two ways to read, and which one is in use.
pub struct OffsetSource {
    /// `None` when `security.protocol` is not PLAINTEXT.
    wire: Option<WireClient>,
    /// The own client reached a broker at the last refresh.
    wire_usable: bool,
    /// librdkafka's reader, made on first use.
    librdkafka: Option<OffsetReader>,
    config: ClientConfig,
}

impl OffsetSource {
    /// `config` is librdkafka's (brokers and security); the own client is used only when its
    /// `security.protocol` is PLAINTEXT (the default).
    pub fn new(config: &ClientConfig, client_id: &str) -> OffsetSource {
        let plaintext = config
            .get("security.protocol")
            .is_none_or(|protocol| protocol.eq_ignore_ascii_case("plaintext"));
        OffsetSource {
            wire: plaintext.then(|| WireClient::new(client_id)),
            wire_usable: false,
            librdkafka: None,
            config: config.clone(),
        }
    }

    /// Reads through librdkafka only, as with SASL or TLS: how tests reach that path on the
    /// plaintext mock cluster.
    #[cfg(test)]
    pub fn librdkafka_only(config: &ClientConfig) -> OffsetSource {
        OffsetSource {
            wire: None,
            wire_usable: false,
            librdkafka: None,
            config: config.clone(),
        }
    }

    /// Takes the brokers from fresh metadata and decides which client reads until the next
    /// refresh: the own one if it connects to a broker.
    pub fn refresh(&mut self, metadata: &Metadata) {
        let Some(wire) = self.wire.as_mut() else {
            return;
        };
        let brokers: BTreeMap<i32, String> = metadata
            .brokers()
            .iter()
            .map(|broker| {
                let host = broker.host();
                let address = if host.contains(':') {
                    format!("[{host}]:{}", broker.port())
                } else {
                    format!("{host}:{}", broker.port())
                };
                (broker.id(), address)
            })
            .collect();
        wire.set_brokers(brokers);
        let usable = match wire.probe() {
            Ok(()) => true,
            Err(error) => {
                if self.wire_usable || self.librdkafka.is_none() {
                    tracing::warn!(%error, "the group watcher's own Kafka client cannot reach the brokers; reading groups through librdkafka until the next metadata refresh");
                }
                false
            }
        };
        self.wire_usable = usable;
    }

    fn wire(&mut self) -> Option<&mut WireClient> {
        if self.wire_usable {
            self.wire.as_mut()
        } else {
            None
        }
    }

    /// Each ask's committed offsets, in order, and the requests that took.
    pub fn committed(&mut self, asks: &[GroupAsk]) -> (Vec<Result<Committed, ReadError>>, Sent) {
        if let Some(wire) = self.wire() {
            let before = wire.sent;
            let results = wire.committed(asks);
            let sent = Sent {
                find_coordinator: wire.sent.find_coordinator - before.find_coordinator,
                offset_fetch: wire.sent.offset_fetch - before.offset_fetch,
                ..Sent::default()
            };
            let results = results
                .into_iter()
                .map(|r| r.map_err(ReadError::from))
                .collect();
            return (results, sent);
        }
        let reader = match self.librdkafka.as_mut() {
            Some(reader) => reader,
            None => match OffsetReader::new(&self.config) {
                Ok(reader) => self.librdkafka.insert(reader),
                Err(error) => {
                    let results = asks.iter().map(|_| Err(error.clone().into())).collect();
                    return (results, Sent::default());
                }
            },
        };
        let mut queries = Vec::with_capacity(asks.len());
        for ask in asks {
            let mut partitions = TopicPartitionList::new();
            for (topic, count) in &ask.topics {
                for partition in 0..*count {
                    partitions.add_partition(topic, partition);
                }
            }
            queries.push(GroupQuery {
                group_id: ask.group_id.clone(),
                partitions,
            });
        }
        let before = reader.sent();
        let read = reader.read(&queries, REQUEST_TIMEOUT);
        let offset_fetch = reader.sent() - before;
        let sent = Sent {
            // librdkafka looks each group's coordinator up again once its cache is outgrown.
            find_coordinator: if queries.len() > LIBRDKAFKA_COORDINATOR_CACHE {
                offset_fetch
            } else {
                0
            },
            offset_fetch,
            ..Sent::default()
        };
        let results = read
            .into_iter()
            .map(|r| r.map_err(ReadError::from))
            .collect();
        (results, sent)
    }

    /// The first unread record of each partition in `wanted` ((topic, partition) → (offset to
    /// read from, high watermark)) through the own client's Fetch, and the Fetch requests that
    /// took; `None` when the own client is not in use (librdkafka's consumer reads them all).
    /// A partition left out is not read this round; [`FirstUnread::Unreadable`] ones are for
    /// librdkafka.
    #[allow(clippy::type_complexity)]
    pub fn first_unread(
        &mut self,
        leaders: &HashMap<String, Vec<i32>>,
        wanted: &BTreeMap<(String, i32), (i64, i64)>,
        deadline: Instant,
    ) -> Option<(HashMap<(String, i32), FirstUnread>, u64)> {
        let wire = self.wire()?;
        let asks: Vec<FirstUnreadAsk<'_>> = wanted
            .iter()
            .map(|((topic, partition), (from, high))| FirstUnreadAsk {
                topic,
                partition: *partition,
                leader: leaders
                    .get(topic)
                    .and_then(|list| list.get(usize::try_from(*partition).ok()?).copied())
                    .unwrap_or(-1),
                from: *from,
                high: *high,
            })
            .collect();
        let before = wire.sent.fetch;
        let found = wire.first_unread(&asks, deadline);
        Some((found, wire.sent.fetch - before))
    }

    /// Log starts and high watermarks of `partitions` (with their leaders), and the
    /// ListOffsets requests that took. A leader that does not answer fails the call.
    pub fn watermarks<C: ConsumerContext>(
        &mut self,
        fetcher: &BaseConsumer<C>,
        leaders: &HashMap<String, Vec<i32>>,
        partitions: &BTreeSet<(String, i32)>,
    ) -> (Result<Watermarks, ReadError>, u64) {
        let leader_of = |topic: &str, partition: i32| -> i32 {
            leaders
                .get(topic)
                .and_then(|leaders| leaders.get(usize::try_from(partition).ok()?).copied())
                .unwrap_or(-1)
        };
        if let Some(wire) = self.wire() {
            let asked: Vec<(&str, i32, i32)> = partitions
                .iter()
                .map(|(topic, partition)| {
                    (topic.as_str(), *partition, leader_of(topic, *partition))
                })
                .collect();
            let before = wire.sent.list_offsets;
            let result = wire.watermarks(&asked).map_err(ReadError::from);
            return (result, wire.sent.list_offsets - before);
        }
        let mut requests = 0;
        let mut read = |which: Offset| -> Result<HashMap<(String, i32), i64>, ReadError> {
            let mut watermarks = HashMap::with_capacity(partitions.len());
            let all: Vec<&(String, i32)> = partitions.iter().collect();
            for chunk in all.chunks(LIST_OFFSETS_CHUNK) {
                let mut list = TopicPartitionList::new();
                for (topic, partition) in chunk {
                    list.add_partition_offset(topic, *partition, which)?;
                }
                // librdkafka sends one ListOffsets per partition leader, naming all its partitions.
                let chunk_leaders: BTreeSet<i32> = chunk
                    .iter()
                    .map(|(topic, partition)| leader_of(topic, *partition))
                    .collect();
                requests += (chunk_leaders.len() as u64).max(1);
                let answered = fetcher.offsets_for_times(list, REQUEST_TIMEOUT)?;
                for element in answered.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        watermarks
                            .insert((element.topic().to_owned(), element.partition()), offset);
                    }
                }
            }
            Ok(watermarks)
        };
        let result = read(Offset::Beginning).and_then(|lows| Ok((lows, read(Offset::End)?)));
        (result, requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::wire::GroupCommit;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    /// The fallback used with SASL or TLS reads the same facts as the own client: each group's
    /// commits (-1 where none), the watermarks, and no Fetch of its own (the watcher's
    /// librdkafka consumer reads the records at moved commits).
    #[test]
    fn the_librdkafka_fallback_reads_commits_and_watermarks_like_the_own_client() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic("orders", 2, 1).expect("a topic");
        let brokers = cluster.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("a producer");
        for _ in 0..4 {
            producer
                .send(BaseRecord::to("orders").partition(1).key("k").payload("{}"))
                .expect("queued");
        }
        producer.flush(Duration::from_secs(10)).expect("flushed");
        let mut committer = WireClient::new("fallback-test");
        committer.set_brokers(BTreeMap::from([(1, brokers.clone())]));
        let commits: Vec<GroupCommit> = (0..20)
            .map(|group| {
                (
                    format!("g-{group}"),
                    vec![("orders".to_owned(), vec![(1, group % 4)])],
                )
            })
            .collect();
        for result in committer.commit(&commits) {
            result.expect("committed");
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &brokers);
        let mut source = OffsetSource::librdkafka_only(&config);
        let asks: Vec<GroupAsk> = (0..20)
            .map(|group| GroupAsk {
                group_id: format!("g-{group}"),
                topics: vec![("orders".to_owned(), 2)],
            })
            .collect();
        let (results, sent) = source.committed(&asks);
        assert_eq!(
            sent.offset_fetch, 20,
            "one ListConsumerGroupOffsets per group"
        );
        for (group, result) in results.iter().enumerate() {
            let read = result.as_ref().expect("read");
            let expected: BTreeMap<i32, i64> = [(0, -1), (1, group as i64 % 4)].into();
            assert_eq!(read["orders"], expected, "g-{group}");
        }
        let fetcher: BaseConsumer = config
            .clone()
            .set("group.id", "fallback-test")
            .create()
            .expect("a consumer");
        let leaders = HashMap::from([("orders".to_owned(), vec![1, 1])]);
        let partitions: BTreeSet<(String, i32)> =
            [("orders".to_owned(), 0), ("orders".to_owned(), 1)].into();
        let (watermarks, _) = source.watermarks(&fetcher, &leaders, &partitions);
        let (lows, highs) = watermarks.expect("watermarks");
        assert_eq!(highs[&("orders".to_owned(), 1)], 4);
        assert_eq!(highs[&("orders".to_owned(), 0)], 0);
        assert_eq!(lows[&("orders".to_owned(), 1)], 0);
        let wanted = BTreeMap::from([(("orders".to_owned(), 1), (1, 4))]);
        assert!(
            source
                .first_unread(&leaders, &wanted, Instant::now() + Duration::from_secs(2))
                .is_none(),
            "records at moved commits are left to librdkafka's consumer"
        );
    }
}
