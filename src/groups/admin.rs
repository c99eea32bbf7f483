//! Committed offsets of many consumer groups through ONE librdkafka client: librdkafka's admin
//! API (`rd_kafka_ListConsumerGroupOffsets`, one group per call) issued many at a time on one
//! queue, then the results drained. It replaces a client per watched group (threads and
//! memory each), which cannot scale to thousands of groups.
//!
//! rdkafka does not wrap these calls, so this is the one module of the crate with `unsafe`
//! code. The API it offers is safe: owned Rust values out, every librdkafka object it creates
//! (options, requests, queue, events) destroyed before it returns.
//!
//! What it costs on the wire, per group: one OffsetFetch to the group's coordinator, and one
//! FindCoordinator before it whenever librdkafka's coordinator cache (eleven entries) does not
//! hold the group, which is every time once more than eleven groups are read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{c_void, CStr, CString};
use std::os::raw::c_char;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;

/// Committed offsets of one group: topic → partition → offset, -1 where the group has none.
pub type Committed = BTreeMap<String, BTreeMap<i32, i64>>;

/// Requests in flight at once: enough to hide round trips, few enough that each request's
/// timeout measures the broker, not a queue of ten thousand in front of it.
const IN_FLIGHT: usize = 500;

/// What the coordinator was asked for one group.
pub struct GroupQuery {
    pub group_id: String,
    pub partitions: TopicPartitionList,
}

/// Which admin call a batch makes.
#[derive(Clone, Copy)]
enum Call {
    List,
    Alter,
}

impl Call {
    fn admin_op(self) -> rd::rd_kafka_admin_op_t {
        match self {
            Call::List => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            Call::Alter => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
        }
    }

    fn event_type(self) -> rd::rd_kafka_event_type_t {
        match self {
            Call::List => rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT,
            Call::Alter => rd::RD_KAFKA_EVENT_ALTERCONSUMERGROUPOFFSETS_RESULT,
        }
    }

    fn error(self, code: RDKafkaErrorCode) -> KafkaError {
        match self {
            Call::List => KafkaError::OffsetFetch(code),
            Call::Alter => KafkaError::AdminOp(code),
        }
    }
}

/// How long librdkafka itself keeps a request: its maximum. A coordinator request that times
/// out inside librdkafka while the coordinator is down aborts the process once the coordinator
/// comes back (librdkafka issues #3663, #4605: `rd_kafka_enq_once_del_source_return: Assertion
/// 'eonce->refcnt > 0'`, in 2.12.1 still). So librdkafka never times them out here: a round
/// stops waiting on its own, a group keeps at most one request pending, and the client is
/// recreated before any request reaches this age.
const LIBRDKAFKA_TIMEOUT: Duration = Duration::from_secs(3600);

/// A request pending this long means a long outage: the client is replaced (destroying a client
/// fails its requests cleanly) before librdkafka's own timeout could fire.
const RECREATE_AFTER: Duration = Duration::from_secs(50 * 60);

/// Reads the committed offsets of many groups, round after round, through one admin client.
pub struct OffsetReader {
    // Declared first, so dropped before the client its queue and options belong to.
    batch: Batch,
    admin: AdminClient<DefaultClientContext>,
    config: ClientConfig,
    sent_before: u64,
}

impl OffsetReader {
    /// An admin client from `config` (brokers and security), with its own result queue.
    pub fn new(config: &ClientConfig) -> Result<OffsetReader, KafkaError> {
        let admin: AdminClient<DefaultClientContext> = config.create()?;
        let batch = Batch::new(admin.inner(), Call::List, LIBRDKAFKA_TIMEOUT)?;
        Ok(OffsetReader {
            batch,
            admin,
            config: config.clone(),
            sent_before: 0,
        })
    }

    /// The committed offsets of each group in `queries` on the partitions it names, in the
    /// same order. A group whose coordinator does not answer within `wait` (or whose request
    /// of an earlier round is still unanswered), or that answers with an error (for the group
    /// or any of its partitions), is an `Err` of its own; the others are read. A group that
    /// does not exist has no commits: -1 everywhere.
    pub fn read(
        &mut self,
        queries: &[GroupQuery],
        wait: Duration,
    ) -> Vec<Result<Committed, KafkaError>> {
        if self
            .batch
            .oldest_pending()
            .is_some_and(|sent| sent.elapsed() >= RECREATE_AFTER)
        {
            tracing::warn!(
                pending = self.batch.pending.len(),
                "committed-offset requests unanswered for {RECREATE_AFTER:?}; replacing the client"
            );
            match self.recreate() {
                Ok(()) => {}
                Err(error) => return queries.iter().map(|_| Err(error.clone())).collect(),
            }
        }
        self.batch.run(self.admin.inner(), queries, wait)
    }

    /// OffsetFetch requests sent so far (a group still waiting for one is not asked again).
    pub fn sent(&self) -> u64 {
        self.sent_before + self.batch.sent
    }

    fn recreate(&mut self) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self.config.create()?;
        let batch = Batch::new(admin.inner(), Call::List, LIBRDKAFKA_TIMEOUT)?;
        // The old queue and options go first, then the old client.
        self.sent_before += self.batch.sent;
        self.batch = batch;
        self.admin = admin;
        Ok(())
    }
}

/// Commits the offsets in each query for its group, without joining it (OffsetCommit as an
/// admin). For tests and benchmarks only: its requests time out inside librdkafka after
/// `timeout`, which is safe only while the coordinator does not go down and come back.
pub fn commit_offsets<C: ClientContext>(
    client: &Client<C>,
    queries: &[GroupQuery],
    timeout: Duration,
) -> Vec<Result<(), KafkaError>> {
    let mut batch = match Batch::new(client, Call::Alter, timeout) {
        Ok(batch) => batch,
        Err(error) => return queries.iter().map(|_| Err(error.clone())).collect(),
    };
    batch
        .run(client, queries, timeout)
        .into_iter()
        .map(|result| result.map(|_| ()))
        .collect()
}

/// A queue of our own on the client's handle, destroyed when dropped.
struct Queue(*mut rd::rd_kafka_queue_t);

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: the queue came from rd_kafka_queue_new and is destroyed once. Requests still
        // in flight hold their own reference to it; their results are discarded.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

/// Admin options, destroyed when dropped.
struct Options(*mut rd::rd_kafka_AdminOptions_t);

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new, destroyed once; every call copied it.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

/// An event taken from the queue, destroyed when dropped.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: a non-null event from rd_kafka_queue_poll, destroyed once; nothing borrowed
        // from it outlives this value.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// Requests of one kind on one queue, and those not answered yet (from this round or before).
struct Batch {
    queue: Queue,
    options: Options,
    call: Call,
    /// Request id → group id and when it was sent.
    pending: HashMap<usize, (String, Instant)>,
    pending_groups: HashSet<String>,
    next_id: usize,
    /// Requests sent since the batch was made.
    sent: u64,
}

// SAFETY: the queue and options are librdkafka objects safe to use from any thread (librdkafka
// locks them); a Batch is used by one thread at a time (`&mut self`).
unsafe impl Send for Batch {}

impl Batch {
    fn new<C: ClientContext>(
        client: &Client<C>,
        call: Call,
        librdkafka_timeout: Duration,
    ) -> Result<Batch, KafkaError> {
        let handle = client.native_ptr();
        // SAFETY: `handle` is the live rd_kafka_t of `client`; the queue is destroyed by
        // `Queue`'s drop, before the client (see `OffsetReader`).
        let queue = Queue(unsafe { rd::rd_kafka_queue_new(handle) });
        // SAFETY: as above; the options are destroyed by `Options`'s drop.
        let options = Options(unsafe { rd::rd_kafka_AdminOptions_new(handle, call.admin_op()) });
        if queue.0.is_null() || options.0.is_null() {
            return Err(call.error(RDKafkaErrorCode::Fail));
        }
        let timeout_ms = i32::try_from(librdkafka_timeout.as_millis()).unwrap_or(i32::MAX);
        let mut errstr = [0 as c_char; 256];
        // SAFETY: valid options, and `errstr` is writable for its whole length.
        let code = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(call.error(code.into()));
        }
        Ok(Batch {
            queue,
            options,
            call,
            pending: HashMap::new(),
            pending_groups: HashSet::new(),
            next_id: 0,
            sent: 0,
        })
    }

    fn oldest_pending(&self) -> Option<Instant> {
        self.pending.values().map(|(_, sent)| *sent).min()
    }

    /// Sends every query (at most [`IN_FLIGHT`] of them unanswered at once) and takes the
    /// answers until each is in or `wait` has passed since the last one was sent.
    fn run<C: ClientContext>(
        &mut self,
        client: &Client<C>,
        queries: &[GroupQuery],
        wait: Duration,
    ) -> Vec<Result<Committed, KafkaError>> {
        let call = self.call;
        let mut results: Vec<Option<Result<Committed, KafkaError>>> = vec![None; queries.len()];
        // A group may be asked for twice (an exact id and a regex): one request, both answered.
        let mut indexes_of: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, query) in queries.iter().enumerate() {
            indexes_of
                .entry(query.group_id.as_str())
                .or_default()
                .push(index);
        }
        let handle = client.native_ptr();
        let mut next = 0;
        // Sent this round and not answered: the window.
        let mut outstanding = 0;
        // Queries without a result whose group has a request pending (this round's or older).
        let mut awaited = 0;
        let first_id = self.next_id;
        let mut last_issued = Instant::now();
        loop {
            while next < queries.len() && outstanding < IN_FLIGHT {
                let query = &queries[next];
                // Still waiting for its last request: not asked twice.
                if self.pending_groups.contains(&query.group_id) {
                    awaited += 1;
                } else {
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1);
                    match issue(handle, call, &self.options, &self.queue, id, query) {
                        Ok(()) => {
                            outstanding += 1;
                            awaited += 1;
                            self.sent += 1;
                            self.pending
                                .insert(id, (query.group_id.clone(), Instant::now()));
                            self.pending_groups.insert(query.group_id.clone());
                        }
                        Err(error) => results[next] = Some(Err(error)),
                    }
                    last_issued = Instant::now();
                }
                next += 1;
            }
            if next >= queries.len() && awaited == 0 {
                break;
            }
            if last_issued.elapsed() > wait {
                break;
            }
            // SAFETY: the queue is live; a non-null event is owned by `Event` and destroyed.
            let raw = unsafe { rd::rd_kafka_queue_poll(self.queue.0, 100) };
            if raw.is_null() {
                continue;
            }
            let event = Event(raw);
            let Some((id, result)) = parse(call, &event) else {
                continue;
            };
            let Some((group_id, _)) = self.pending.remove(&id) else {
                continue;
            };
            self.pending_groups.remove(&group_id);
            if id >= first_id {
                outstanding -= 1;
            }
            // An answer to an earlier round's request is as fresh as that request: taken too.
            for &index in indexes_of.get(group_id.as_str()).into_iter().flatten() {
                if results[index].is_none() && index < next {
                    awaited -= 1;
                    results[index] = Some(result.clone());
                }
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(call.error(RDKafkaErrorCode::OperationTimedOut)))
            })
            .collect()
    }
}

/// Sends one group's request; its result comes back on `queue` with `id` as its opaque.
fn issue(
    handle: *mut rd::rd_kafka_t,
    call: Call,
    options: &Options,
    queue: &Queue,
    id: usize,
    query: &GroupQuery,
) -> Result<(), KafkaError> {
    let group_id = CString::new(query.group_id.as_str())
        .map_err(|_| call.error(RDKafkaErrorCode::InvalidGroupId))?;
    // SAFETY: live options; the opaque is an integer carried back, never dereferenced. The call
    // below copies the options, so setting it again for the next group changes nothing here.
    unsafe { rd::rd_kafka_AdminOptions_set_opaque(options.0, id as *mut c_void) };
    match call {
        Call::List => {
            // SAFETY: both pointers are valid for the call; the request copies the group id
            // and the partition list, and is destroyed below after the call copied it too.
            unsafe {
                let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(
                    group_id.as_ptr(),
                    query.partitions.ptr(),
                );
                if request.is_null() {
                    return Err(call.error(RDKafkaErrorCode::InvalidRequest));
                }
                rd::rd_kafka_ListConsumerGroupOffsets(handle, &mut request, 1, options.0, queue.0);
                rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
            }
        }
        Call::Alter => {
            // SAFETY: as for List.
            unsafe {
                let mut request = rd::rd_kafka_AlterConsumerGroupOffsets_new(
                    group_id.as_ptr(),
                    query.partitions.ptr(),
                );
                if request.is_null() {
                    return Err(call.error(RDKafkaErrorCode::InvalidRequest));
                }
                rd::rd_kafka_AlterConsumerGroupOffsets(handle, &mut request, 1, options.0, queue.0);
                rd::rd_kafka_AlterConsumerGroupOffsets_destroy(request);
            }
        }
    }
    Ok(())
}

/// The request id an event answers and what it says, copied out of the event.
fn parse(call: Call, event: &Event) -> Option<(usize, Result<Committed, KafkaError>)> {
    // SAFETY: `event` is a live event; what is read from it is copied before it is dropped.
    unsafe {
        if rd::rd_kafka_event_type(event.0) != call.event_type() {
            return None;
        }
        let index = rd::rd_kafka_event_opaque(event.0) as usize;
        let code = rd::rd_kafka_event_error(event.0);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Some((index, Err(call.error(code.into()))));
        }
        let mut count = 0usize;
        let groups = match call {
            Call::List => rd::rd_kafka_ListConsumerGroupOffsets_result_groups(
                rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.0),
                &mut count,
            ),
            Call::Alter => rd::rd_kafka_AlterConsumerGroupOffsets_result_groups(
                rd::rd_kafka_event_AlterConsumerGroupOffsets_result(event.0),
                &mut count,
            ),
        };
        if groups.is_null() || count == 0 {
            return Some((index, Err(call.error(RDKafkaErrorCode::BadMessage))));
        }
        // One group per call.
        let group = *groups;
        let error = rd::rd_kafka_group_result_error(group);
        if !error.is_null() {
            return Some((
                index,
                Err(call.error(rd::rd_kafka_error_code(error).into())),
            ));
        }
        let partitions = rd::rd_kafka_group_result_partitions(group);
        let mut committed = Committed::new();
        if !partitions.is_null() {
            let elements = std::slice::from_raw_parts(
                (*partitions).elems,
                usize::try_from((*partitions).cnt).unwrap_or(0),
            );
            for element in elements {
                if element.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    // Unknown is not "no commit": the whole group is unread this time.
                    return Some((index, Err(call.error(element.err.into()))));
                }
                if element.topic.is_null() {
                    continue;
                }
                let topic = CStr::from_ptr(element.topic).to_string_lossy().into_owned();
                committed
                    .entry(topic)
                    .or_default()
                    .insert(element.partition, element.offset.max(-1));
            }
        }
        Some((index, Ok(committed)))
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;

    fn config(brokers: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        config
    }

    fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
        config(brokers).create().expect("an admin client")
    }

    fn query(group_id: &str, topic: &str, offsets: &[(i32, Option<i64>)]) -> GroupQuery {
        let mut partitions = TopicPartitionList::new();
        for (partition, offset) in offsets {
            match offset {
                Some(offset) => partitions
                    .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .expect("a partition"),
                None => {
                    partitions.add_partition(topic, *partition);
                }
            }
        }
        GroupQuery {
            group_id: group_id.to_owned(),
            partitions,
        }
    }

    #[test]
    fn many_groups_are_read_through_one_client_with_none_for_no_commit_and_a_missing_group() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic("orders", 3, 1).expect("a topic");
        let admin = admin(&cluster.bootstrap_servers());
        // More groups than are in flight at once, so the window refills.
        let groups = IN_FLIGHT + 100;
        let commits: Vec<GroupQuery> = (0..groups)
            .map(|group| {
                let offset = i64::try_from(group).expect("small");
                query(
                    &format!("g-{group}"),
                    "orders",
                    &[(0, Some(offset)), (2, Some(offset + 1))],
                )
            })
            .collect();
        for result in commit_offsets(admin.inner(), &commits, Duration::from_secs(10)) {
            result.expect("committed");
        }
        let mut reads: Vec<GroupQuery> = (0..groups)
            .map(|group| {
                query(
                    &format!("g-{group}"),
                    "orders",
                    &[(0, None), (1, None), (2, None)],
                )
            })
            .collect();
        reads.push(query("never-existed", "orders", &[(0, None)]));
        let mut reader =
            OffsetReader::new(&config(&cluster.bootstrap_servers())).expect("a reader");
        let results = reader.read(&reads, Duration::from_secs(10));
        assert_eq!(results.len(), groups + 1);
        for (group, result) in results.iter().take(groups).enumerate() {
            let committed = result.as_ref().expect("read");
            let offset = i64::try_from(group).expect("small");
            let expected: BTreeMap<i32, i64> = [(0, offset), (1, -1), (2, offset + 1)].into();
            assert_eq!(committed["orders"], expected, "group g-{group}");
        }
        let missing = results[groups]
            .as_ref()
            .expect("a group that does not exist reads");
        assert_eq!(missing["orders"], BTreeMap::from([(0, -1)]));
    }

    #[test]
    fn a_group_the_coordinator_refuses_fails_alone_and_a_silent_broker_times_out() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic("orders", 1, 1).expect("a topic");
        let admin = admin(&cluster.bootstrap_servers());
        let commit = [query("refused", "orders", &[(0, Some(5))])];
        commit_offsets(admin.inner(), &commit, Duration::from_secs(10))
            .remove(0)
            .expect("committed");
        let read = || [query("refused", "orders", &[(0, None)])];
        let mut reader =
            OffsetReader::new(&config(&cluster.bootstrap_servers())).expect("a reader");
        // Warm: the coordinator is known, so the one error goes to the OffsetFetch below.
        reader
            .read(&read(), Duration::from_secs(10))
            .remove(0)
            .expect("read");
        cluster.request_errors(
            RDKafkaApiKey::OffsetFetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
        );
        let refused = reader.read(&read(), Duration::from_secs(10)).remove(0);
        assert!(
            matches!(
                refused,
                Err(KafkaError::OffsetFetch(
                    RDKafkaErrorCode::GroupAuthorizationFailed
                ))
            ),
            "{refused:?}"
        );
        let again = reader.read(&read(), Duration::from_secs(10)).remove(0);
        assert_eq!(again.expect("read again")["orders"][&0], 5);

        cluster
            .broker_round_trip_time(1, Duration::from_secs(3))
            .expect("a slow broker");
        let started = Instant::now();
        let silent = reader.read(&read(), Duration::from_millis(500)).remove(0);
        assert!(silent.is_err(), "{silent:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // The request still pending is not sent again; its late answer is taken next round.
        std::thread::sleep(Duration::from_secs(6));
        let late = reader.read(&read(), Duration::from_millis(500)).remove(0);
        assert_eq!(late.expect("the late answer")["orders"][&0], 5);
    }
}
