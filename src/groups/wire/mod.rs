//! A minimal Kafka client of our own for the group watcher's hot path, in safe code: committed
//! offsets (FindCoordinator once per group, then OffsetFetch, many groups per request where the
//! broker speaks v8, else one per request, pipelined on one connection per coordinator) and
//! watermarks (ListOffsets batched per partition leader). librdkafka's admin API reads one group
//! per call and looks its coordinator up again each time once more than eleven groups are read:
//! at thousands of groups that was most of the watcher's CPU (BENCHMARKS.md §5).
//!
//! Plaintext only: with `security.protocol` other than PLAINTEXT, or while this client cannot
//! reach the brokers, the watcher reads through librdkafka instead ([`super::offsets`]).
//! Connections are blocking sockets on the watcher's own thread; brokers are asked in parallel
//! (a scoped thread each) and every answer is awaited at most [`ANSWER_TIMEOUT`].

mod codec;
mod fetch;
pub mod messages;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use fetch::{FirstUnread, FirstUnreadAsk};
use messages::{GroupOffsets, OffsetFetchGroup, Versions};

/// How long an answer (or a connection) is waited for: a broker slower than this is not
/// answering, and what it was asked is unknown this round.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests written ahead of their answers on one connection: enough to hide round trips,
/// few enough that the answers fit the socket buffers.
const PIPELINE: usize = 64;

/// Groups per OffsetFetch v8, and partitions at most: one request stays small.
const GROUPS_PER_FETCH: usize = 100;
const PARTITIONS_PER_FETCH: usize = 10_000;

/// Partitions per ListOffsets.
const PARTITIONS_PER_LIST: usize = 5_000;

/// What went wrong talking to Kafka, with what the user needs to tell where.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("cannot connect to broker {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("broker {address}: {reason}")]
    Io { address: String, reason: String },
    #[error("broker {address} did not answer within {ANSWER_TIMEOUT:?}")]
    Timeout { address: String },
    #[error("malformed answer from Kafka: {0}")]
    Malformed(&'static str),
    #[error("{api} failed: Kafka error {code} ({})", messages::error_name(*code))]
    Broker { api: &'static str, code: i16 },
    #[error("broker {address} speaks no version of {api} this client does")]
    Unsupported { address: String, api: &'static str },
    #[error("broker {node} is not in the metadata")]
    UnknownBroker { node: i32 },
    #[error("no broker known yet")]
    NoBroker,
}

impl WireError {
    /// The group's coordinator moved or is not ready: look it up again.
    fn coordinator_moved(&self) -> bool {
        matches!(self, WireError::Broker { code: 14..=16, .. })
    }
}

/// One group to read: its id and the topics (with their partition counts) it is asked about.
pub struct GroupAsk {
    pub group_id: String,
    pub topics: Vec<(String, i32)>,
}

/// Committed offsets of one group: topic → partition → offset, -1 where the group has none.
pub type Committed = BTreeMap<String, BTreeMap<i32, i64>>;

/// Requests sent, by kind, for the watcher's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub find_coordinator: u64,
    pub offset_fetch: u64,
    pub list_offsets: u64,
    pub fetch: u64,
}

/// The answers of one connection's requests, in order.
type Answers = Vec<Result<Vec<u8>, WireError>>;

/// Offsets to commit for one group: topic → (partition, offset)s.
pub type GroupCommit = (String, Vec<(String, Vec<(i32, i64)>)>);

/// One request: API, version, body.
struct Request {
    api: i16,
    version: i16,
    body: Vec<u8>,
}

/// A connection to one broker, with the versions it speaks.
struct Connection {
    address: String,
    stream: TcpStream,
    versions: Versions,
    correlation: i32,
}

impl Connection {
    fn open(address: &str, client_id: &str) -> Result<Connection, WireError> {
        let connect_error = |reason: String| WireError::Connect {
            address: address.to_owned(),
            reason,
        };
        let resolved = address
            .to_socket_addrs()
            .map_err(|error| connect_error(error.to_string()))?
            .next()
            .ok_or_else(|| connect_error("no address".to_owned()))?;
        let stream = TcpStream::connect_timeout(&resolved, ANSWER_TIMEOUT)
            .map_err(|error| connect_error(error.to_string()))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(ANSWER_TIMEOUT)))
            .and_then(|()| stream.set_write_timeout(Some(ANSWER_TIMEOUT)))
            .map_err(|error| connect_error(error.to_string()))?;
        let mut connection = Connection {
            address: address.to_owned(),
            stream,
            versions: Versions::default(),
            correlation: 0,
        };
        let answer = connection
            .exchange(
                vec![Request {
                    api: messages::API_VERSIONS,
                    version: 0,
                    body: Vec::new(),
                }],
                client_id,
            )
            .remove(0)?;
        connection.versions = Versions::negotiate(&answer)?;
        let missing = [
            (connection.versions.offset_fetch, "OffsetFetch"),
            (connection.versions.find_coordinator, "FindCoordinator"),
            (connection.versions.list_offsets, "ListOffsets"),
        ]
        .into_iter()
        .find(|(version, _)| version.is_none());
        if let Some((_, api)) = missing {
            return Err(WireError::Unsupported {
                address: address.to_owned(),
                api,
            });
        }
        Ok(connection)
    }

    fn io_error(&self, error: &std::io::Error) -> WireError {
        match error.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => WireError::Timeout {
                address: self.address.clone(),
            },
            _ => WireError::Io {
                address: self.address.clone(),
                reason: error.to_string(),
            },
        }
    }

    /// Sends `requests` ([`PIPELINE`] ahead of their answers) and returns each answer's body,
    /// in order. Once the connection fails, the rest fail with it (the caller drops it).
    fn exchange(
        &mut self,
        requests: Vec<Request>,
        client_id: &str,
    ) -> Vec<Result<Vec<u8>, WireError>> {
        let total = requests.len();
        let mut answers: Vec<Result<Vec<u8>, WireError>> = Vec::with_capacity(total);
        let mut expected: std::collections::VecDeque<(i32, bool)> = Default::default();
        let mut pending = requests.into_iter();
        let mut frame = Vec::new();
        let mut failure: Option<WireError> = None;
        while answers.len() < total && failure.is_none() {
            frame.clear();
            // Topped up in bursts: one write for many requests.
            while expected.len() < PIPELINE && (expected.len() <= PIPELINE / 2 || !frame.is_empty())
            {
                let Some(request) = pending.next() else { break };
                self.correlation = self.correlation.wrapping_add(1);
                let flexible = messages::flexible(request.api, request.version);
                let start = frame.len();
                frame.extend_from_slice(&[0; 4]);
                frame.extend_from_slice(&request.api.to_be_bytes());
                frame.extend_from_slice(&request.version.to_be_bytes());
                frame.extend_from_slice(&self.correlation.to_be_bytes());
                frame.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
                frame.extend_from_slice(client_id.as_bytes());
                if flexible {
                    frame.push(0); // no tagged fields
                }
                frame.extend_from_slice(&request.body);
                let size = u32::try_from(frame.len() - start - 4).unwrap_or(u32::MAX);
                frame[start..start + 4].copy_from_slice(&size.to_be_bytes());
                expected.push_back((self.correlation, flexible));
            }
            if !frame.is_empty() {
                if let Err(error) = self.stream.write_all(&frame) {
                    failure = Some(self.io_error(&error));
                    break;
                }
            }
            let Some((correlation, flexible)) = expected.pop_front() else {
                break;
            };
            match self.read_answer(correlation, flexible) {
                Ok(body) => answers.push(Ok(body)),
                Err(error) => failure = Some(error),
            }
        }
        let failure = failure.unwrap_or(WireError::Malformed("answers missing"));
        while answers.len() < total {
            answers.push(Err(failure.clone()));
        }
        answers
    }

    fn read_answer(&mut self, correlation: i32, flexible: bool) -> Result<Vec<u8>, WireError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|error| self.io_error(&error))?;
        let size = usize::try_from(u32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if !(4..=256 << 20).contains(&size) {
            return Err(WireError::Malformed("an answer of impossible size"));
        }
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .map_err(|error| self.io_error(&error))?;
        if body[..4] != correlation.to_be_bytes() {
            return Err(WireError::Malformed("answers out of order"));
        }
        let header = if flexible {
            // The answer header's tagged fields: none is read.
            let mut decoder = codec::Decoder::new(&body[4..]);
            decoder.skip_tags()?;
            size - decoder.remaining()
        } else {
            4
        };
        body.drain(..header);
        Ok(body)
    }
}

/// The watcher's client: broker addresses from the metadata, a connection per broker asked,
/// and each group's coordinator, kept until the broker says it moved.
pub struct WireClient {
    client_id: String,
    addresses: BTreeMap<i32, String>,
    connections: HashMap<i32, Connection>,
    coordinators: HashMap<String, i32>,
    pub sent: Sent,
}

impl WireClient {
    pub fn new(client_id: &str) -> WireClient {
        WireClient {
            client_id: client_id.to_owned(),
            addresses: BTreeMap::new(),
            connections: HashMap::new(),
            coordinators: HashMap::new(),
            sent: Sent::default(),
        }
    }

    /// The brokers from the last metadata (node id → `host:port`). A broker whose address
    /// changed is reconnected.
    pub fn set_brokers(&mut self, brokers: BTreeMap<i32, String>) {
        self.connections
            .retain(|node, connection| brokers.get(node) == Some(&connection.address));
        self.coordinators
            .retain(|_, node| brokers.contains_key(node));
        self.addresses = brokers;
    }

    /// Connects to some broker (if none is connected): whether this client can be used.
    pub fn probe(&mut self) -> Result<(), WireError> {
        self.any_node().map(|_| ())
    }

    fn connect(&mut self, node: i32) -> Result<&mut Connection, WireError> {
        if !self.connections.contains_key(&node) {
            let address = self
                .addresses
                .get(&node)
                .ok_or(WireError::UnknownBroker { node })?;
            let connection = Connection::open(address, &self.client_id)?;
            self.connections.insert(node, connection);
        }
        Ok(self.connections.get_mut(&node).expect("just connected"))
    }

    /// A broker to ask what any broker can answer: one already connected, else the first
    /// that connects.
    fn any_node(&mut self) -> Result<i32, WireError> {
        if let Some(node) = self.connections.keys().min() {
            return Ok(*node);
        }
        let mut last = WireError::NoBroker;
        let nodes: Vec<i32> = self.addresses.keys().copied().collect();
        for node in nodes {
            match self.connect(node) {
                Ok(_) => return Ok(node),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Runs each broker's requests on its connection, brokers in parallel. A broker that
    /// cannot be reached fails all of its requests; a broken connection is dropped.
    fn exchange_per_node(
        &mut self,
        per_node: BTreeMap<i32, Vec<Request>>,
    ) -> BTreeMap<i32, Vec<Result<Vec<u8>, WireError>>> {
        let mut answers = BTreeMap::new();
        let mut work: Vec<(i32, Connection, Vec<Request>)> = Vec::new();
        for (node, requests) in per_node {
            match self.connect(node) {
                Ok(_) => {
                    let connection = self.connections.remove(&node).expect("connected");
                    work.push((node, connection, requests));
                }
                Err(error) => {
                    answers.insert(node, requests.iter().map(|_| Err(error.clone())).collect());
                }
            }
        }
        let client_id = self.client_id.as_str();
        let done: Vec<(i32, Connection, Answers)> = if work.len() == 1 {
            let (node, mut connection, requests) = work.pop().expect("one");
            let results = connection.exchange(requests, client_id);
            vec![(node, connection, results)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .into_iter()
                    .map(|(node, mut connection, requests)| {
                        scope.spawn(move || {
                            let results = connection.exchange(requests, client_id);
                            (node, connection, results)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|handle| handle.join().ok())
                    .collect()
            })
        };
        for (node, connection, results) in done {
            let broken = results.iter().any(|result| {
                matches!(
                    result,
                    Err(WireError::Io { .. } | WireError::Timeout { .. } | WireError::Malformed(_))
                )
            });
            if broken {
                // Its coordinators may have moved with it: looked up again next time.
                self.coordinators
                    .retain(|_, coordinator| *coordinator != node);
            } else {
                self.connections.insert(node, connection);
            }
            answers.insert(node, results);
        }
        answers
    }

    /// Looks up the coordinators of the groups in `groups` not yet known, pipelined on one
    /// connection; a group whose lookup fails gets that error.
    fn find_coordinators(&mut self, groups: &[&str]) -> HashMap<String, WireError> {
        let mut failed = HashMap::new();
        let unknown: Vec<&str> = groups
            .iter()
            .copied()
            .filter(|group| !self.coordinators.contains_key(*group))
            .collect();
        if unknown.is_empty() {
            return failed;
        }
        let node = match self.any_node() {
            Ok(node) => node,
            Err(error) => {
                for group in unknown {
                    failed.insert(group.to_owned(), error.clone());
                }
                return failed;
            }
        };
        let version = self.connections[&node]
            .versions
            .find_coordinator
            .unwrap_or(0);
        let requests = unknown
            .iter()
            .map(|group| Request {
                api: messages::FIND_COORDINATOR,
                version,
                body: messages::find_coordinator_request(version, group),
            })
            .collect();
        self.sent.find_coordinator += unknown.len() as u64;
        let answers = self
            .exchange_per_node(BTreeMap::from([(node, requests)]))
            .remove(&node)
            .unwrap_or_default();
        for (group, answer) in unknown.iter().zip(answers) {
            match answer.and_then(|body| messages::find_coordinator_answer(version, &body)) {
                Ok(coordinator) => {
                    self.coordinators
                        .insert((*group).to_owned(), coordinator.node_id);
                }
                Err(error) => {
                    failed.insert((*group).to_owned(), error);
                }
            }
        }
        failed
    }

    /// The committed offsets of each group in `asks`, in order. A group whose coordinator
    /// cannot be found or read, or that answers with an error (for itself or any partition),
    /// is an `Err` of its own; a group that does not exist has no commits: -1 everywhere. A
    /// group asked twice is read once (with the first ask's topics).
    pub fn committed(&mut self, asks: &[GroupAsk]) -> Vec<Result<Committed, WireError>> {
        let mut first_ask: HashMap<&str, usize> = HashMap::new();
        for (index, ask) in asks.iter().enumerate() {
            first_ask.entry(ask.group_id.as_str()).or_insert(index);
        }
        let mut results: HashMap<&str, Result<Committed, WireError>> = HashMap::new();
        let mut to_read: Vec<usize> = first_ask.values().copied().collect();
        to_read.sort_unstable();
        // A coordinator that moved is looked up and asked once more in the same round.
        for attempt in 0..2 {
            let groups: Vec<&str> = to_read.iter().map(|&i| asks[i].group_id.as_str()).collect();
            for (group, error) in self.find_coordinators(&groups) {
                let index = first_ask[group.as_str()];
                results.insert(asks[index].group_id.as_str(), Err(error));
            }
            let readable: Vec<usize> = to_read
                .iter()
                .copied()
                .filter(|&i| self.coordinators.contains_key(&asks[i].group_id))
                .collect();
            let read = self.fetch_offsets(asks, &readable);
            to_read.clear();
            for (index, result) in read {
                let group = asks[index].group_id.as_str();
                if let Err(error) = &result {
                    if error.coordinator_moved() {
                        self.coordinators.remove(group);
                        if attempt == 0 {
                            to_read.push(index);
                            continue;
                        }
                    }
                }
                results.insert(group, result);
            }
            if to_read.is_empty() {
                break;
            }
        }
        asks.iter()
            .map(|ask| {
                results
                    .get(ask.group_id.as_str())
                    .cloned()
                    .unwrap_or(Err(WireError::NoBroker))
            })
            .collect()
    }

    /// OffsetFetch for the asks at `indexes`, whose coordinators are known.
    fn fetch_offsets(
        &mut self,
        asks: &[GroupAsk],
        indexes: &[usize],
    ) -> Vec<(usize, Result<Committed, WireError>)> {
        let mut by_node: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for &index in indexes {
            let node = self.coordinators[&asks[index].group_id];
            by_node.entry(node).or_default().push(index);
        }
        let mut out = Vec::with_capacity(indexes.len());
        let mut per_node: BTreeMap<i32, Vec<Request>> = BTreeMap::new();
        // Per node, per request: its version and the asks it names.
        let mut plan: BTreeMap<i32, Vec<(i16, Vec<usize>)>> = BTreeMap::new();
        for (node, members) in by_node {
            let version = match self.connect(node) {
                Ok(connection) => connection.versions.offset_fetch.unwrap_or(1),
                Err(error) => {
                    self.coordinators
                        .retain(|_, coordinator| *coordinator != node);
                    out.extend(members.into_iter().map(|index| (index, Err(error.clone()))));
                    continue;
                }
            };
            let mut batches: Vec<Vec<usize>> = Vec::new();
            let mut partitions = 0usize;
            for index in members {
                let size: usize = asks[index]
                    .topics
                    .iter()
                    .map(|(_, count)| usize::try_from(*count).unwrap_or(0))
                    .sum();
                let full = batches.last().is_none_or(|batch| {
                    version < 8
                        || batch.len() >= GROUPS_PER_FETCH
                        || partitions + size > PARTITIONS_PER_FETCH
                });
                if full {
                    batches.push(Vec::new());
                    partitions = 0;
                }
                partitions += size;
                batches.last_mut().expect("pushed").push(index);
            }
            let requests = batches
                .iter()
                .map(|batch| {
                    let groups: Vec<OffsetFetchGroup<'_>> = batch
                        .iter()
                        .map(|&index| OffsetFetchGroup {
                            group_id: &asks[index].group_id,
                            topics: &asks[index].topics,
                        })
                        .collect();
                    Request {
                        api: messages::OFFSET_FETCH,
                        version,
                        body: messages::offset_fetch_request(version, &groups),
                    }
                })
                .collect::<Vec<_>>();
            self.sent.offset_fetch += requests.len() as u64;
            per_node.insert(node, requests);
            plan.insert(
                node,
                batches.into_iter().map(|batch| (version, batch)).collect(),
            );
        }
        let answers = self.exchange_per_node(per_node);
        for (node, batches) in plan {
            let node_answers = answers.get(&node).cloned().unwrap_or_default();
            for ((version, batch), answer) in batches.into_iter().zip(node_answers) {
                let asked = asks[batch[0]].group_id.as_str();
                let decoded =
                    answer.and_then(|body| messages::offset_fetch_answer(version, asked, &body));
                match decoded {
                    Ok(groups) => {
                        let mut by_group: HashMap<String, GroupOffsets> = groups
                            .into_iter()
                            .map(|group| (group.group_id.clone(), group))
                            .collect();
                        for index in batch {
                            let result = match by_group.remove(&asks[index].group_id) {
                                Some(group) => committed_of(&asks[index], group),
                                None => Err(WireError::Malformed("a group left unanswered")),
                            };
                            out.push((index, result));
                        }
                    }
                    Err(error) => {
                        out.extend(batch.into_iter().map(|index| (index, Err(error.clone()))));
                    }
                }
            }
        }
        out
    }

    /// Log start (`EARLIEST`) and high watermark (`LATEST`, read_committed) of `partitions`,
    /// asked of each leader ([`PARTITIONS_PER_LIST`] a request). A partition without a known
    /// leader, or answered with an error, is left out; a leader that cannot be reached fails
    /// the whole call, as one cause.
    #[allow(clippy::type_complexity)]
    pub fn watermarks(
        &mut self,
        partitions: &[(&str, i32, i32)],
    ) -> Result<(HashMap<(String, i32), i64>, HashMap<(String, i32), i64>), WireError> {
        let mut by_leader: BTreeMap<i32, Vec<(&str, i32)>> = BTreeMap::new();
        for &(topic, partition, leader) in partitions {
            if leader >= 0 {
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((topic, partition));
            }
        }
        let mut per_node: BTreeMap<i32, Vec<Request>> = BTreeMap::new();
        let mut versions: BTreeMap<i32, i16> = BTreeMap::new();
        for (node, list) in by_leader {
            let version = self.connect(node)?.versions.list_offsets.unwrap_or(1);
            versions.insert(node, version);
            let mut requests = Vec::new();
            for chunk in list.chunks(PARTITIONS_PER_LIST) {
                let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
                for &(topic, partition) in chunk {
                    match topics.last_mut() {
                        Some((last, indexes)) if *last == topic => indexes.push(partition),
                        _ => topics.push((topic, vec![partition])),
                    }
                }
                for timestamp in [messages::EARLIEST, messages::LATEST] {
                    requests.push(Request {
                        api: messages::LIST_OFFSETS,
                        version,
                        body: messages::list_offsets_request(version, &topics, timestamp),
                    });
                }
            }
            self.sent.list_offsets += requests.len() as u64;
            per_node.insert(node, requests);
        }
        let mut lows = HashMap::with_capacity(partitions.len());
        let mut highs = HashMap::with_capacity(partitions.len());
        for (node, answers) in self.exchange_per_node(per_node) {
            let version = versions[&node];
            for (position, answer) in answers.into_iter().enumerate() {
                let into = if position % 2 == 0 {
                    &mut lows
                } else {
                    &mut highs
                };
                messages::list_offsets_answer(version, &answer?, into)?;
            }
        }
        Ok((lows, highs))
    }

    /// Commits offsets for each group as an outsider (OffsetCommit, generation -1): what
    /// benchmarks and tests use to set up thousands of groups fast. Not used by the watcher.
    pub fn commit(&mut self, commits: &[GroupCommit]) -> Vec<Result<(), WireError>> {
        let groups: Vec<&str> = commits.iter().map(|(group, _)| group.as_str()).collect();
        let failed = self.find_coordinators(&groups);
        let mut per_node: BTreeMap<i32, Vec<Request>> = BTreeMap::new();
        let mut plan: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        let mut results: Vec<Result<(), WireError>> = vec![Ok(()); commits.len()];
        for (index, (group, offsets)) in commits.iter().enumerate() {
            if let Some(error) = failed.get(group) {
                results[index] = Err(error.clone());
                continue;
            }
            let node = self.coordinators[group];
            let version = match self.connect(node) {
                Ok(connection) => connection.versions.offset_commit.unwrap_or(2),
                Err(error) => {
                    results[index] = Err(error);
                    continue;
                }
            };
            per_node.entry(node).or_default().push(Request {
                api: messages::OFFSET_COMMIT,
                version,
                body: messages::offset_commit_request(version, group, offsets),
            });
            plan.entry(node).or_default().push(index);
        }
        let answers = self.exchange_per_node(per_node);
        for (node, indexes) in plan {
            let version = self
                .connections
                .get(&node)
                .and_then(|c| c.versions.offset_commit);
            for (index, answer) in indexes.into_iter().zip(answers[&node].iter()) {
                results[index] = answer
                    .clone()
                    .and_then(|body| messages::offset_commit_answer(version.unwrap_or(2), &body));
            }
        }
        results
    }
}

/// One group's answer as committed offsets on the partitions it was asked about; any error
/// makes the whole group unread (unknown is not "no commit").
fn committed_of(ask: &GroupAsk, group: GroupOffsets) -> Result<Committed, WireError> {
    if group.error != 0 {
        return Err(WireError::Broker {
            api: "OffsetFetch",
            code: group.error,
        });
    }
    let mut committed = Committed::new();
    for (topic, partitions) in &ask.topics {
        let entry = committed.entry(topic.clone()).or_default();
        for partition in 0..*partitions {
            entry.insert(partition, -1);
        }
    }
    for (topic, partitions) in group.topics {
        let Some(entry) = committed.get_mut(&topic) else {
            continue;
        };
        for (partition, offset, code) in partitions {
            if code != 0 {
                return Err(WireError::Broker {
                    api: "OffsetFetch",
                    code,
                });
            }
            if let Some(slot) = entry.get_mut(&partition) {
                *slot = offset.max(-1);
            }
        }
    }
    Ok(committed)
}

#[cfg(test)]
mod tests;
