//! Batch consumption: records taken from librdkafka a vector at a time
//! (`rd_kafka_consume_batch_queue`), read in place, and destroyed together.
//!
//! rdkafka's `BaseConsumer::poll` hands over one record per call, and each call pays a queue
//! lock, a `clock_gettime`, an `Arc` allocation around the event and a UTF-8 check of the topic
//! name when the record is read. Per record that is a fifth of what freshwatch spends (BENCHMARKS.md
//! §2). rdkafka does not wrap the batch call, so this module holds the crate's second block of
//! `unsafe` (the first is `groups::admin`). What it offers is safe: a [`MessageQueue`] that
//! fills a [`Batch`], whose records borrow the batch and are destroyed with it.
//!
//! Why a queue of our own. The consumer's queue (librdkafka's `rkcg_q`) carries rebalances,
//! commit results, statistics and errors besides records, and `consume_batch_queue` serves those
//! itself, not through rdkafka's event handling: a rebalance would be answered by librdkafka's
//! "unassign everything" fallback and never reach [`super::SourceContext`], and statistics would
//! be dropped. So every assigned partition's fetch queue is forwarded to a [`MessageQueue`] that
//! carries nothing but that partition's records, its consumer errors and librdkafka's version
//! barriers; the consumer's queue keeps every event and is still polled through rdkafka, which
//! calls the rebalance, commit, statistics and error callbacks exactly as before.
//!
//! librdkafka drops a partition's forwarding when the partition stops (a revoke), and does not
//! forward it to the consumer's queue again once an application forwarded it. So the source
//! forwards the assignment after every rebalance and again every [`super::ROUTE_INTERVAL`]: a
//! stop that lands after the forward (librdkafka stops partitions asynchronously) holds the
//! partition's records in its own queue until then, in order; none is lost or reordered, since
//! forwarding moves the queued records over first. Records a partition fetched before its first
//! forward sit in the consumer's queue and are read through `poll`, every one of them before the
//! next batch ([`drain_consumer_queue`]), so each partition's records keep their order.

#![allow(unsafe_code)]

use std::ffi::{c_void, CStr, CString};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;

use crate::extract::Record;

/// Keeps a consumer (so its librdkafka handle) alive for as long as something points into it.
type Owner = Arc<dyn std::any::Any + Send + Sync>;

/// A queue of our own that assigned partitions' records are forwarded to.
pub(crate) struct MessageQueue {
    queue: *mut rd::rd_kafka_queue_t,
    client: *mut rd::rd_kafka_t,
    /// Every partition ever forwarded here: sent back to the consumer's queue on drop.
    forwarded: std::collections::BTreeSet<(String, i32)>,
    _owner: Owner,
}

// SAFETY: librdkafka queues and clients are thread-safe (every queue operation takes the
// queue's lock); the pointers are only used through librdkafka calls.
unsafe impl Send for MessageQueue {}

impl MessageQueue {
    /// A new, empty queue on `consumer`'s client, which it keeps alive.
    pub(crate) fn new<C: ConsumerContext + 'static>(consumer: &Arc<BaseConsumer<C>>) -> Self {
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is live: the queue holds the consumer's `Arc` until it is dropped.
        // `rd_kafka_queue_new` never fails.
        let queue = unsafe { rd::rd_kafka_queue_new(client) };
        MessageQueue {
            queue,
            client,
            forwarded: std::collections::BTreeSet::new(),
            _owner: consumer.clone(),
        }
    }

    /// Forwards each partition's fetch queue here. Forwarding moves what the partition already
    /// queued first, so order is kept. Returns how many partitions were forwarded.
    pub(crate) fn forward_partitions<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> usize {
        let mut forwarded = 0;
        for (topic_name, partition) in partitions {
            if forward(self.client, topic_name, partition, self.queue) {
                self.forwarded.insert((topic_name.to_owned(), partition));
                forwarded += 1;
            }
        }
        forwarded
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        // SAFETY: the queue is live until drop.
        unsafe { rd::rd_kafka_queue_length(self.queue) }
    }

    /// A batch for this queue's records, taking up to `capacity` per call.
    pub(crate) fn batch(&self, capacity: usize) -> Batch {
        Batch {
            messages: Vec::with_capacity(capacity),
            _owner: Some(self._owner.clone()),
        }
    }

    /// Moves up to the batch's capacity of records into `batch` (destroying what it held), waiting
    /// up to `timeout` for the first. One clock read and one lock round per call, not per record.
    pub(crate) fn consume(&self, timeout: Duration, batch: &mut Batch) -> usize {
        batch.clear();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let capacity = batch.messages.capacity();
        // SAFETY: the queue is live; librdkafka writes at most `capacity` message pointers into
        // the vector's spare capacity (it is empty after `clear`) and returns how many (or -1).
        let count = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue,
                timeout_ms,
                batch.messages.as_mut_ptr(),
                capacity,
            )
        };
        let count = usize::try_from(count).unwrap_or(0).min(capacity);
        // SAFETY: librdkafka initialised the first `count` elements, each a message we now own.
        unsafe { batch.messages.set_len(count) };
        count
    }
}

/// Forwards `topic`/`partition`'s fetch queue to `destination`; false for an unknown partition.
/// `client` and `destination` must be live (callers hold the consumer's `Arc`).
fn forward(
    client: *mut rd::rd_kafka_t,
    topic: &str,
    partition: i32,
    destination: *mut rd::rd_kafka_queue_t,
) -> bool {
    let Ok(topic) = CString::new(topic) else {
        return false;
    };
    // SAFETY: `client` is live (the caller's `_owner`), `topic` is a NUL-terminated string that
    // outlives the call. The returned queue is a new reference to the partition's fetch queue
    // (or null for an unknown partition).
    let partition_queue =
        unsafe { rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), partition) };
    if partition_queue.is_null() {
        return false;
    }
    // SAFETY: both queues are live; forwarding takes its own reference to `destination`, and
    // `rd_kafka_queue_destroy` drops only the reference `get_partition` gave us.
    unsafe {
        rd::rd_kafka_queue_forward(partition_queue, destination);
        rd::rd_kafka_queue_destroy(partition_queue);
    }
    true
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // Hand every partition back to the consumer's queue, as librdkafka routes it by itself,
        // before this queue goes: closing the consumer then finds the stock routing (a close
        // with partitions forwarded to a destroyed queue was seen to hang).
        // SAFETY: `client` is live (`_owner`); the consumer queue reference is ours to destroy.
        let consumer_queue = unsafe { rd::rd_kafka_queue_get_consumer(self.client) };
        if !consumer_queue.is_null() {
            for (topic, partition) in &self.forwarded {
                forward(self.client, topic, *partition, consumer_queue);
            }
            // SAFETY: drops only the reference `get_consumer` gave us.
            unsafe { rd::rd_kafka_queue_destroy(consumer_queue) };
        }
        // SAFETY: we own this queue reference. Destroying the owner's reference purges what it
        // holds; partitions still forwarded here keep the queue object alive (disabled) until
        // librdkafka stops them, and drop what they would enqueue.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) }
    }
}

/// The consumer's own queue (librdkafka's `rkcg_q`), seen only for how much waits on it.
/// Records a partition fetched before it was forwarded wait there, ahead of its later records
/// on the [`MessageQueue`].
pub(crate) struct ConsumerQueue {
    queue: *mut rd::rd_kafka_queue_t,
    _owner: Owner,
}

// SAFETY: as for `MessageQueue`: a queue reference used only through librdkafka calls, which
// take the queue's lock.
unsafe impl Send for ConsumerQueue {}

impl ConsumerQueue {
    /// A reference to `consumer`'s queue, keeping the consumer alive.
    pub(crate) fn new<C: ConsumerContext + 'static>(consumer: &Arc<BaseConsumer<C>>) -> Self {
        // SAFETY: the client is live (we hold its `Arc`); the returned reference is ours and
        // destroyed on drop. A consumer always has a queue, so it is never null here.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        ConsumerQueue {
            queue,
            _owner: consumer.clone(),
        }
    }

    /// Events and records waiting on the queue.
    pub(crate) fn len(&self) -> usize {
        if self.queue.is_null() {
            return 0;
        }
        // SAFETY: the queue reference is live until drop.
        unsafe { rd::rd_kafka_queue_length(self.queue) }
    }
}

impl Drop for ConsumerQueue {
    fn drop(&mut self) {
        if !self.queue.is_null() {
            // SAFETY: drops only the reference `get_consumer` gave us.
            unsafe { rd::rd_kafka_queue_destroy(self.queue) };
        }
    }
}

/// How many polls in a row may find nothing while the consumer's queue still counts something,
/// before the drain gives up for this turn: every poll serves at least one event, so this only
/// bounds a queue that refills with events as fast as it is served.
const MAX_EMPTY_POLLS: usize = 64;

/// Serves the consumer's queue through rdkafka (its callbacks: rebalances, statistics, errors)
/// and hands each record or error on it to `apply`, until the queue is empty. Done before every
/// batch: a partition's records that were fetched before its forward wait here while its later
/// ones wait on the [`MessageQueue`], so reading this queue out first keeps each partition's
/// records in offset order (and librdkafka's application offset, which the statistics' lag is
/// counted from, moving only forward). A `poll` that serves an event returns nothing even when
/// records wait behind it, hence the queue's length, not the first empty poll, ends the drain.
pub(crate) fn drain_consumer_queue<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    waiting: &ConsumerQueue,
    mut apply: impl FnMut(KafkaResult<BorrowedMessage<'_>>),
) -> usize {
    let mut taken = 0;
    let mut empty_polls = 0;
    loop {
        match consumer.poll(Duration::ZERO) {
            Some(result) => {
                apply(result);
                taken += 1;
                empty_polls = 0;
            }
            None if waiting.len() == 0 || empty_polls >= MAX_EMPTY_POLLS => return taken,
            None => empty_polls += 1,
        }
    }
}

/// Records taken in one call, owned until the next [`MessageQueue::consume`] or drop. It keeps
/// the consumer alive: a record destroyed after its client would make the client's destruction
/// wait forever for the partition references records hold.
pub(crate) struct Batch {
    messages: Vec<*mut rd::rd_kafka_message_t>,
    _owner: Option<Owner>,
}

// SAFETY: a message is a heap object librdkafka lets any thread read and destroy.
unsafe impl Send for Batch {}

impl Batch {
    /// A batch that holds nothing and never will (it has no room): a placeholder.
    pub(crate) fn empty() -> Self {
        Batch {
            messages: Vec::new(),
            _owner: None,
        }
    }

    /// Destroys every record held.
    pub(crate) fn clear(&mut self) {
        for message in self.messages.drain(..) {
            // SAFETY: each pointer came from `consume_batch_queue`, is owned by this batch alone
            // and is destroyed exactly once (drained from the vector here).
            unsafe { rd::rd_kafka_message_destroy(message) };
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The records in the order librdkafka handed them over (per partition, by offset).
    pub(crate) fn iter(&self) -> impl Iterator<Item = BatchRecord<'_>> + '_ {
        self.messages.iter().map(|&message| BatchRecord {
            // SAFETY: the pointer is non-null and live until the batch is cleared, which needs
            // `&mut self`: the borrow outlives no record.
            message: unsafe { &*message },
            _batch: PhantomData,
        })
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One record of a [`Batch`], read in place: nothing is copied or allocated.
#[derive(Clone, Copy)]
pub(crate) struct BatchRecord<'batch> {
    message: &'batch rd::rd_kafka_message_t,
    _batch: PhantomData<&'batch Batch>,
}

/// The topic object a record belongs to, compared by address: one per topic for the client's
/// life while anything refers to it (see [`TopicHandles`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TopicHandle(*mut rd::rd_kafka_topic_t);

impl<'batch> BatchRecord<'batch> {
    pub(crate) fn topic_handle(&self) -> TopicHandle {
        TopicHandle(self.message.rkt)
    }

    pub(crate) fn partition(&self) -> i32 {
        self.message.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.message.offset
    }

    /// A consumer error carried as a record (librdkafka's fetch errors), with its reason.
    pub(crate) fn error(&self) -> Option<(RDKafkaErrorCode, String)> {
        if self.message.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // An error record's payload is librdkafka's error string.
        let reason = bytes(self.message.payload, self.message.len)
            .map(|reason| String::from_utf8_lossy(reason).into_owned())
            .unwrap_or_default();
        Some((self.message.err.into(), reason))
    }
}

/// The bytes at `pointer`, or `None` for a null pointer (a record without key or payload).
fn bytes<'a>(pointer: *const c_void, len: usize) -> Option<&'a [u8]> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: librdkafka gives a pointer to `len` initialised bytes that live as long as the
    // message; callers bind `'a` to the message's borrow.
    Some(unsafe { std::slice::from_raw_parts(pointer.cast::<u8>(), len) })
}

impl Record for BatchRecord<'_> {
    fn partition(&self) -> i32 {
        self.message.partition
    }

    fn key(&self) -> Option<&[u8]> {
        bytes(self.message.key, self.message.key_len)
    }

    fn payload(&self) -> Option<&[u8]> {
        bytes(self.message.payload, self.message.len)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the message is live; librdkafka parses its headers once and keeps them with
        // the message, writing a pointer to them (or an error) into `headers`.
        let error = unsafe { rd::rd_kafka_message_headers(self.message, &mut headers) };
        if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return None;
        }
        let mut index = 0;
        loop {
            let mut header_name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: `headers` lives as long as the message; out-pointers are valid locals.
            let error = unsafe {
                rd::rd_kafka_header_get_all(headers, index, &mut header_name, &mut value, &mut size)
            };
            if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            // SAFETY: header names are NUL-terminated strings owned by the headers.
            if !header_name.is_null()
                && unsafe { CStr::from_ptr(header_name) }.to_bytes() == name.as_bytes()
            {
                return bytes(value, size);
            }
            index += 1;
        }
    }

    fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live and `kind` a valid out-pointer.
        let timestamp = unsafe { rd::rd_kafka_message_timestamp(self.message, &mut kind) };
        // As rdkafka's `Timestamp::to_millis`: none when not available or -1.
        if kind == rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            || timestamp == -1
        {
            return None;
        }
        Some(timestamp)
    }
}

/// Topic names by topic object, resolved once per topic instead of once per record. Each cached
/// topic is pinned with an application reference (`rd_kafka_topic_new` on the same name), so its
/// address cannot be freed and reused by another topic while it is in the cache.
pub(crate) struct TopicHandles {
    client: *mut rd::rd_kafka_t,
    /// Handle, name, and whether we hold an application reference on it.
    topics: Vec<(TopicHandle, String, bool)>,
    _owner: Owner,
}

// SAFETY: topic objects are reference-counted and thread-safe in librdkafka.
unsafe impl Send for TopicHandles {}

impl TopicHandles {
    /// An empty cache on `consumer`'s client, which it keeps alive.
    pub(crate) fn new<C: ConsumerContext + 'static>(consumer: &Arc<BaseConsumer<C>>) -> Self {
        TopicHandles {
            client: consumer.client().native_ptr(),
            topics: Vec::new(),
            _owner: consumer.clone(),
        }
    }

    /// The index of `handle`'s topic in this cache, resolving and pinning it on first sight.
    /// `None` for a record without a topic object (never for a fetched record).
    pub(crate) fn resolve(&mut self, handle: TopicHandle) -> Option<usize> {
        if let Some(index) = self
            .topics
            .iter()
            .position(|(known, _, _)| *known == handle)
        {
            return Some(index);
        }
        if handle.0.is_null() {
            return None;
        }
        // SAFETY: a record's topic object is live while the record is (the record holds a
        // reference); the name is a NUL-terminated string owned by the topic object.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(handle.0)) };
        let name_owned = name.to_str().ok()?.to_owned();
        // SAFETY: `client` is live (`_owner`); `name` is NUL-terminated. For a known
        // topic librdkafka returns the same object with one more application reference.
        let pinned =
            unsafe { rd::rd_kafka_topic_new(self.client, name.as_ptr(), std::ptr::null_mut()) };
        let pinned_here = pinned == handle.0;
        if !pinned_here && !pinned.is_null() {
            // SAFETY: we own this reference and drop it at once.
            unsafe { rd::rd_kafka_topic_destroy(pinned) };
        }
        // Not pinnable (never with librdkafka 2.x): cached unpinned until the next `clear`.
        self.topics.push((handle, name_owned, pinned_here));
        Some(self.topics.len() - 1)
    }

    pub(crate) fn name(&self, index: usize) -> &str {
        &self.topics[index].1
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// Drops every pin (after a subscription change, say): topics are resolved again.
    pub(crate) fn clear(&mut self) {
        for (handle, _, pinned) in self.topics.drain(..) {
            if pinned {
                // SAFETY: each pinned handle holds exactly one application reference we took in
                // `resolve`; it is dropped once.
                unsafe { rd::rd_kafka_topic_destroy(handle.0) };
            }
        }
    }
}

impl Drop for TopicHandles {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, ClientContext, Statistics};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const TOPIC: &str = "batch-test";

    /// Counts the callbacks that `consume_batch_queue` must not swallow.
    #[derive(Default)]
    struct Counting {
        assigns: AtomicUsize,
        revokes: AtomicUsize,
        statistics: AtomicUsize,
        /// The last statistics' application offset and high watermark, per partition.
        positions: std::sync::Mutex<BTreeMap<i32, (i64, i64)>>,
    }

    struct CountingContext(Arc<Counting>);

    impl ClientContext for CountingContext {
        fn stats(&self, statistics: Statistics) {
            if let Some(topic) = statistics.topics.get(TOPIC) {
                let mut positions = self.0.positions.lock().unwrap();
                for (&partition, stats) in &topic.partitions {
                    if partition >= 0 {
                        positions.insert(partition, (stats.app_offset, stats.hi_offset));
                    }
                }
            }
            self.0.statistics.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl ConsumerContext for CountingContext {
        fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
            match rebalance {
                Rebalance::Assign(_) => self.0.assigns.fetch_add(1, Ordering::Relaxed),
                Rebalance::Revoke(_) => self.0.revokes.fetch_add(1, Ordering::Relaxed),
                Rebalance::Error(_) => 0,
            };
        }
    }

    fn produce(bootstrap: &str, partitions: i32, records: usize) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("producer");
        for index in 0..records {
            let payload = format!("{{\"n\":{index}}}");
            let key = format!("key-{index}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "tenant",
                value: Some(format!("t{}", index % 7).as_bytes()),
            });
            let record = BaseRecord::to(TOPIC)
                .key(&key)
                .payload(&payload)
                .partition((index % partitions as usize) as i32)
                .timestamp(1_700_000_000_000 + index as i64)
                .headers(headers);
            producer.send(record).expect("queued");
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
    }

    fn consumer(bootstrap: &str, counting: &Arc<Counting>) -> Arc<BaseConsumer<CountingContext>> {
        let consumer: BaseConsumer<CountingContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "batch-test")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("statistics.interval.ms", "100")
            .set("session.timeout.ms", "6000")
            .create_with_context(CountingContext(counting.clone()))
            .expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribed");
        Arc::new(consumer)
    }

    /// What one consumer read: offsets per partition, checked records.
    struct Reader {
        consumer: Arc<BaseConsumer<CountingContext>>,
        queue: MessageQueue,
        topics: TopicHandles,
        batch: Batch,
        read: BTreeMap<(i32, i64), ()>,
        /// Offsets in the order they were read, per partition.
        order: BTreeMap<i32, Vec<i64>>,
        batches: usize,
        waiting: ConsumerQueue,
    }

    impl Reader {
        fn new(consumer: Arc<BaseConsumer<CountingContext>>) -> Self {
            let queue = MessageQueue::new(&consumer);
            Reader {
                topics: TopicHandles::new(&consumer),
                batch: queue.batch(64),
                queue,
                read: BTreeMap::new(),
                order: BTreeMap::new(),
                batches: 0,
                waiting: ConsumerQueue::new(&consumer),
                consumer,
            }
        }

        /// One turn of the source's loop: events through rdkafka, then a batch.
        fn turn(&mut self) {
            let assignment: Vec<(String, i32)> = self
                .consumer
                .assignment()
                .map(|list| {
                    list.elements()
                        .iter()
                        .map(|element| (element.topic().to_owned(), element.partition()))
                        .collect()
                })
                .unwrap_or_default();
            self.queue.forward_partitions(
                assignment
                    .iter()
                    .map(|(topic, partition)| (topic.as_str(), *partition)),
            );
            // Fetched before its partition was forwarded: read here, as the source does.
            let (read, order) = (&mut self.read, &mut self.order);
            drain_consumer_queue(&self.consumer, &self.waiting, |result| {
                use rdkafka::Message as _;
                let message = result.expect("a record");
                read.insert((message.partition(), message.offset()), ());
                order
                    .entry(message.partition())
                    .or_default()
                    .push(message.offset());
            });
            let taken = self
                .queue
                .consume(Duration::from_millis(20), &mut self.batch);
            assert_eq!(taken, self.batch.len());
            assert!(taken <= 64, "never more than the batch's capacity");
            if taken > 0 {
                self.batches += 1;
            }
            for record in self.batch.iter() {
                assert!(record.error().is_none());
                let topic = self.topics.resolve(record.topic_handle()).expect("a topic");
                assert_eq!(self.topics.name(topic), TOPIC);
                let index: usize = std::str::from_utf8(record.payload().unwrap())
                    .unwrap()
                    .trim_start_matches("{\"n\":")
                    .trim_end_matches('}')
                    .parse()
                    .unwrap();
                assert_eq!(record.key(), Some(format!("key-{index}").as_bytes()));
                assert_eq!(
                    record.header("tenant"),
                    Some(format!("t{}", index % 7).as_bytes())
                );
                assert_eq!(record.header("absent"), None);
                assert_eq!(
                    record.timestamp_ms(),
                    Some(1_700_000_000_000 + index as i64)
                );
                assert_eq!(Record::partition(&record), record.partition());
                self.read.insert((record.partition(), record.offset()), ());
                self.order
                    .entry(record.partition())
                    .or_default()
                    .push(record.offset());
            }
        }
    }

    #[test]
    fn a_batch_reads_every_record_in_place_and_every_callback_still_fires() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic(TOPIC, 4, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 4, 1000);
        let counting = Arc::new(Counting::default());
        let mut reader = Reader::new(consumer(&bootstrap, &counting));
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader.read.len() < 1000 && Instant::now() < deadline {
            reader.turn();
        }
        assert_eq!(reader.read.len(), 1000, "every record, once");
        assert!(reader.batches < 1000, "records came in batches");
        assert_eq!(reader.topics.len(), 1, "the topic is resolved once");
        assert_eq!(counting.assigns.load(Ordering::Relaxed), 1);
        // Statistics (every 100 ms) arrive between batches, and a commit goes through. (Its
        // result callback does not fire with rdkafka 0.39's plain `poll` either: not asserted.)
        let mut offsets = rdkafka::TopicPartitionList::new();
        offsets
            .add_partition_offset(TOPIC, 0, rdkafka::Offset::Offset(10))
            .expect("an offset");
        reader
            .consumer
            .commit(&offsets, rdkafka::consumer::CommitMode::Async)
            .expect("commit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while counting.statistics.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            reader.turn();
        }
        assert!(counting.statistics.load(Ordering::Relaxed) >= 2);
        let committed = reader
            .consumer
            .committed(Duration::from_secs(10))
            .expect("committed offsets");
        assert_eq!(
            committed
                .find_partition(TOPIC, 0)
                .map(|element| element.offset()),
            Some(rdkafka::Offset::Offset(10))
        );
    }

    #[test]
    fn a_rebalance_between_batches_reaches_the_context_and_no_partition_is_left_unread() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic(TOPIC, 4, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 4, 400);
        let first_counting = Arc::new(Counting::default());
        let mut first = Reader::new(consumer(&bootstrap, &first_counting));
        let deadline = Instant::now() + Duration::from_secs(30);
        while first.read.len() < 400 && Instant::now() < deadline {
            first.turn();
        }
        assert_eq!(first.read.len(), 400);
        // A second member joins: the first is revoked and reassigned between its batches.
        let second_counting = Arc::new(Counting::default());
        let mut second = Reader::new(consumer(&bootstrap, &second_counting));
        let deadline = Instant::now() + Duration::from_secs(30);
        while (first_counting.assigns.load(Ordering::Relaxed) < 2
            || second_counting.assigns.load(Ordering::Relaxed) < 1)
            && Instant::now() < deadline
        {
            first.turn();
            second.turn();
        }
        assert!(
            first_counting.revokes.load(Ordering::Relaxed) >= 1,
            "revoke reached the context"
        );
        assert!(
            first_counting.assigns.load(Ordering::Relaxed) >= 2,
            "reassign reached it"
        );
        assert!(second_counting.assigns.load(Ordering::Relaxed) >= 1);
        // Records produced after the rebalance reach whichever member owns their partition,
        // through the queue each forwarded its new assignment to.
        produce(&bootstrap, 4, 400);
        let deadline = Instant::now() + Duration::from_secs(30);
        let newer = |reader: &Reader| {
            reader
                .read
                .keys()
                .filter(|(_, offset)| *offset >= 100)
                .count()
        };
        while newer(&first) + newer(&second) < 400 && Instant::now() < deadline {
            first.turn();
            second.turn();
        }
        let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
        for (partition, offset) in first.read.keys().chain(second.read.keys()) {
            if *offset >= 100 {
                *owners.entry(*partition).or_default() += 1;
            }
        }
        assert_eq!(owners.values().sum::<usize>(), 400, "{owners:?}");
        assert_eq!(owners.len(), 4, "every partition read after the rebalance");
    }

    #[test]
    fn records_fetched_before_the_forward_are_all_read_before_the_forwarded_ones() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 1, 6000);
        let counting = Arc::new(Counting::default());
        let consumer: BaseConsumer<CountingContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "batch-order")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("statistics.interval.ms", "100")
            .create_with_context(CountingContext(counting.clone()))
            .expect("consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
            .expect("a partition");
        consumer.assign(&assignment).expect("assigned");
        let mut reader = Reader::new(Arc::new(consumer));
        // No turn yet, so nothing polled or forwarded: the fetched records pile up on the consumer's
        // queue, far more than one batch (or one `BATCH_SIZE` of the source) holds.
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader.waiting.len() < 5000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(reader.waiting.len() >= 5000, "{}", reader.waiting.len());
        // Forwarded now: the next records wait on the batch queue, behind none of the older.
        assert_eq!(reader.queue.forward_partitions([(TOPIC, 0)]), 1);
        produce(&bootstrap, 1, 1000);
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader.queue.len() < 1000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(reader.queue.len(), 1000);
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader.read.len() < 7000 && Instant::now() < deadline {
            reader.turn();
        }
        assert_eq!(reader.read.len(), 7000, "every record, once");
        let order = &reader.order[&0];
        assert_eq!(order.len(), 7000);
        assert!(
            order.windows(2).all(|pair| pair[0] < pair[1]),
            "offsets read out of order"
        );
        // librdkafka's application offset (the statistics' lag is counted from it) ends at the
        // high watermark.
        let deadline = Instant::now() + Duration::from_secs(10);
        let caught_up = || counting.positions.lock().unwrap().get(&0) == Some(&(7000, 7000));
        while !caught_up() && Instant::now() < deadline {
            reader.turn();
        }
        assert!(caught_up(), "{:?}", counting.positions.lock().unwrap());
    }

    #[test]
    fn dropping_a_batch_destroys_its_records() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 1, 50);
        let counting = Arc::new(Counting::default());
        let mut reader = Reader::new(consumer(&bootstrap, &counting));
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader.batch.len() == 0 && Instant::now() < deadline {
            reader.turn();
        }
        assert!(reader.batch.len() > 0);
        // Clearing destroys every message once; a second clear finds nothing to destroy.
        reader.batch.clear();
        assert_eq!(reader.batch.len(), 0);
        reader.batch.clear();
        // Dropping the reader drops batch, queue and pins before the consumer's last `Arc`.
        drop(reader);
    }
}
