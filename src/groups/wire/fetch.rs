//! The first unread record at a moved commit, read with Fetch v4 (read_committed) on the own
//! client's connections: the record's offset and timestamp only, from the head of its record
//! batch. librdkafka's consumer did this before, and its broker threads serving every partition
//! it had been given were most of what was left of the watcher's CPU (BENCHMARKS.md §5).
//!
//! Only uncompressed record batches (magic 2) are read: a compressed one, or an older message
//! format, makes the partition [`FirstUnread::Unreadable`] and the watcher asks librdkafka for
//! it. Transaction markers are skipped and aborted transactions left out, as a read_committed
//! consumer does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use super::codec::{Decoder, Encoder};
use super::messages::FETCH;
use super::{Request, WireClient, WireError};

/// Partitions per Fetch request.
const PARTITIONS_PER_FETCH: usize = 1_000;

/// Bytes asked per partition: a record batch's head and its first records. A batch cut at
/// this limit is read as far as its records are whole.
const PARTITION_MAX_BYTES: i32 = 16 << 10;

/// Bytes per answer at most.
const RESPONSE_MAX_BYTES: i32 = 16 << 20;

/// Fetches at most, per partition and round: each skips what it found of markers and aborted
/// transactions; a partition still not read is read in a later round.
const PASSES: usize = 4;

/// What was found at or after one partition's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUnread {
    /// The first data record: its offset and timestamp.
    Record { offset: i64, timestamp_ms: i64 },
    /// Only transaction markers (or aborted records) up to the high watermark, which was
    /// reached at `position`.
    MarkersOnly { position: i64 },
    /// Compressed, an old message format, or no known leader: for librdkafka to read.
    Unreadable,
}

/// One partition to read: topic, partition, its leader, the offset to read from and the high
/// watermark (read_committed) it is read up to.
pub struct FirstUnreadAsk<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub leader: i32,
    pub from: i64,
    pub high: i64,
}

impl WireClient {
    /// What each partition in `asks` holds first at its offset. A partition left out of the
    /// answer could not be read by `deadline` (its leader did not answer, or it needs more
    /// passes): its first unread record stays unknown until a later round.
    pub fn first_unread(
        &mut self,
        asks: &[FirstUnreadAsk<'_>],
        deadline: Instant,
    ) -> HashMap<(String, i32), FirstUnread> {
        let mut found = HashMap::with_capacity(asks.len());
        // Per leader: (ask index, position to fetch from).
        let mut pending: BTreeMap<i32, Vec<(usize, i64)>> = BTreeMap::new();
        for (index, ask) in asks.iter().enumerate() {
            let speaks_fetch = ask.leader >= 0
                && self
                    .connect(ask.leader)
                    .is_ok_and(|connection| connection.versions.fetch.is_some());
            if !speaks_fetch {
                found.insert(
                    (ask.topic.to_owned(), ask.partition),
                    FirstUnread::Unreadable,
                );
            } else {
                pending
                    .entry(ask.leader)
                    .or_default()
                    .push((index, ask.from));
            }
        }
        for _ in 0..PASSES {
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            let mut per_node: BTreeMap<i32, Vec<Request>> = BTreeMap::new();
            let mut plan: BTreeMap<i32, Vec<Vec<(usize, i64)>>> = BTreeMap::new();
            for (node, list) in std::mem::take(&mut pending) {
                let chunks: Vec<Vec<(usize, i64)>> = list
                    .chunks(PARTITIONS_PER_FETCH)
                    .map(<[_]>::to_vec)
                    .collect();
                let requests = chunks
                    .iter()
                    .map(|chunk| Request {
                        api: FETCH,
                        version: 4,
                        body: fetch_request(chunk.iter().map(|&(index, position)| {
                            (asks[index].topic, asks[index].partition, position)
                        })),
                    })
                    .collect();
                self.sent.fetch += chunks.len() as u64;
                per_node.insert(node, requests);
                plan.insert(node, chunks);
            }
            let mut answers = self.exchange_per_node(per_node);
            for (node, chunks) in plan {
                let node_answers = answers.remove(&node).unwrap_or_default();
                for (chunk, answer) in chunks.into_iter().zip(node_answers) {
                    // A leader that fails leaves its partitions unknown this round.
                    let Ok(body) = answer else { continue };
                    let Ok(mut read) = fetch_answer(&body) else {
                        continue;
                    };
                    for (index, position) in chunk {
                        let ask = &asks[index];
                        let key = (ask.topic.to_owned(), ask.partition);
                        let Some(partition) = read.remove(&key) else {
                            continue;
                        };
                        match partition.first_unread(position, ask.high) {
                            Step::Done(outcome) => {
                                found.insert(key, outcome);
                            }
                            Step::From(next) => {
                                pending.entry(node).or_default().push((index, next));
                            }
                            Step::Later => {}
                        }
                    }
                }
            }
        }
        found
    }
}

/// A Fetch v4 for `(topic, partition, offset)`s, read_committed.
fn fetch_request<'a>(partitions: impl Iterator<Item = (&'a str, i32, i64)>) -> Vec<u8> {
    let mut topics: Vec<(&str, Vec<(i32, i64)>)> = Vec::new();
    for (topic, partition, offset) in partitions {
        match topics.last_mut() {
            Some((last, list)) if *last == topic => list.push((partition, offset)),
            _ => topics.push((topic, vec![(partition, offset)])),
        }
    }
    let mut encoder = Encoder::default();
    encoder.i32(-1); // replica id: a client
    encoder.i32(0); // max wait: what is there now
    encoder.i32(1); // min bytes
    encoder.i32(RESPONSE_MAX_BYTES);
    encoder.i8(1); // read_committed
    encoder.array_len(Some(topics.len()));
    for (topic, list) in topics {
        encoder.string(topic);
        encoder.array_len(Some(list.len()));
        for (partition, offset) in list {
            encoder.i32(partition);
            encoder.i64(offset);
            encoder.i32(PARTITION_MAX_BYTES);
        }
    }
    encoder.bytes
}

/// One partition's part of a Fetch answer.
#[derive(Debug)]
struct FetchedPartition<'a> {
    error: i16,
    /// (producer id, first offset) of each aborted transaction in the range answered.
    aborted: Vec<(i64, i64)>,
    records: &'a [u8],
}

fn fetch_answer(answer: &[u8]) -> Result<HashMap<(String, i32), FetchedPartition<'_>>, WireError> {
    let mut decoder = Decoder::new(answer);
    decoder.i32()?; // throttle
    let mut out = HashMap::new();
    for _ in 0..decoder.array_len()? {
        let topic = decoder.string()?;
        for _ in 0..decoder.array_len()? {
            let partition = decoder.i32()?;
            let error = decoder.i16()?;
            decoder.i64()?; // high watermark
            decoder.i64()?; // last stable offset
            let mut aborted = Vec::new();
            for _ in 0..decoder.array_len()? {
                let producer = decoder.i64()?;
                let first_offset = decoder.i64()?;
                aborted.push((producer, first_offset));
            }
            let records = decoder.nullable_bytes()?.unwrap_or_default();
            out.insert(
                (topic.to_owned(), partition),
                FetchedPartition {
                    error,
                    aborted,
                    records,
                },
            );
        }
    }
    Ok(out)
}

/// What one fetched partition tells.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done(FirstUnread),
    /// Only markers or aborted records so far: fetch again from here.
    From(i64),
    /// Nothing usable this time (an error, or nothing answered).
    Later,
}

/// Size of a record batch's header up to its records (their count included).
const BATCH_HEADER: usize = 61;

impl FetchedPartition<'_> {
    /// The first data record at or after `from`, skipping control batches and aborted
    /// transactions as a read_committed consumer does.
    fn first_unread(&self, from: i64, high: i64) -> Step {
        if self.error != 0 {
            return Step::Later;
        }
        let mut aborted = self.aborted.clone();
        aborted.sort_unstable_by_key(|(_, first_offset)| std::cmp::Reverse(*first_offset));
        let mut aborting: HashSet<i64> = HashSet::new();
        let mut rest = self.records;
        let mut position = from;
        while rest.len() >= BATCH_HEADER {
            let Ok(batch) = Batch::read(rest) else {
                return Step::Later;
            };
            if batch.magic != 2 {
                return Step::Done(FirstUnread::Unreadable);
            }
            let whole = batch.length.min(rest.len());
            let body = &rest[BATCH_HEADER..whole];
            let complete = batch.length <= rest.len();
            rest = &rest[whole..];
            while let Some(&(producer, first_offset)) = aborted.last() {
                if first_offset > batch.last_offset() {
                    break;
                }
                aborting.insert(producer);
                aborted.pop();
            }
            if batch.is_control() {
                if complete && batch.control_type(body) == Some(ABORT_MARKER) {
                    aborting.remove(&batch.producer_id);
                }
            } else if !(batch.is_transactional() && aborting.contains(&batch.producer_id))
                && batch.last_offset() >= position
            {
                if batch.compression() != 0 {
                    return Step::Done(FirstUnread::Unreadable);
                }
                if let Some((offset, timestamp_ms)) = batch.first_record_from(body, position) {
                    return Step::Done(FirstUnread::Record {
                        offset,
                        timestamp_ms,
                    });
                }
            }
            if !complete {
                break;
            }
            position = position.max(batch.last_offset() + 1);
        }
        if position >= high {
            Step::Done(FirstUnread::MarkersOnly { position })
        } else if position > from {
            Step::From(position)
        } else {
            Step::Later
        }
    }
}

/// A control record's type: an aborted transaction's marker.
const ABORT_MARKER: i16 = 0;

/// A record batch's header (magic 2).
struct Batch {
    base_offset: i64,
    /// From the start of the batch, header included.
    length: usize,
    magic: i8,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
}

impl Batch {
    fn read(bytes: &[u8]) -> Result<Batch, WireError> {
        let mut decoder = Decoder::new(bytes);
        let base_offset = decoder.i64()?;
        let batch_length = decoder.i32()?;
        decoder.i32()?; // partition leader epoch
        let magic = decoder.i8()?;
        decoder.i32()?; // crc
        let attributes = decoder.i16()?;
        let last_offset_delta = decoder.i32()?;
        let base_timestamp = decoder.i64()?;
        let max_timestamp = decoder.i64()?;
        let producer_id = decoder.i64()?;
        let length = usize::try_from(batch_length)
            .map_err(|_| WireError::Malformed("a record batch of negative length"))?
            + 12;
        if length < BATCH_HEADER && magic == 2 {
            return Err(WireError::Malformed(
                "a record batch shorter than its header",
            ));
        }
        Ok(Batch {
            base_offset,
            length,
            magic,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
        })
    }

    fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    fn log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// The records of an uncompressed batch, as far as they are whole: (offset, timestamp).
    fn first_record_from(&self, body: &[u8], from: i64) -> Option<(i64, i64)> {
        let mut decoder = Decoder::new(body);
        while decoder.remaining() > 0 {
            let length = usize::try_from(decoder.varint().ok()?).ok()?;
            let record = decoder.bytes(length).ok()?;
            let mut fields = Decoder::new(record);
            fields.i8().ok()?; // attributes
            let timestamp_delta = fields.varint().ok()?;
            let offset_delta = fields.varint().ok()?;
            let offset = self.base_offset + offset_delta;
            if offset < from {
                continue;
            }
            let timestamp_ms = if self.log_append_time() {
                self.max_timestamp
            } else {
                self.base_timestamp + timestamp_delta
            };
            return Some((offset, timestamp_ms));
        }
        None
    }

    /// The type of a control batch's marker (its first record's key).
    fn control_type(&self, body: &[u8]) -> Option<i16> {
        let mut decoder = Decoder::new(body);
        let length = usize::try_from(decoder.varint().ok()?).ok()?;
        let mut fields = Decoder::new(decoder.bytes(length).ok()?);
        fields.i8().ok()?; // attributes
        fields.varint().ok()?; // timestamp delta
        fields.varint().ok()?; // offset delta
        let key_length = usize::try_from(fields.varint().ok()?).ok()?;
        let mut key = Decoder::new(fields.bytes(key_length).ok()?);
        key.i16().ok()?; // version
        key.i16().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An uncompressed record batch of `records` (offset delta, timestamp delta).
    fn batch(
        base_offset: i64,
        attributes: i16,
        producer_id: i64,
        records: &[(i64, i64)],
    ) -> Vec<u8> {
        let mut body = Encoder::default();
        body.i32(records.len() as i32);
        for &(offset_delta, timestamp_delta) in records {
            let mut record = Encoder::default();
            record.i8(0);
            record.varint(timestamp_delta);
            record.varint(offset_delta);
            if attributes & 0x20 != 0 {
                // A control record's key: version 0, type 0 (abort).
                record.varint(4);
                record.i16(0);
                record.i16(0);
            } else {
                record.varint(-1); // no key
            }
            record.varint(2);
            record.bytes.extend_from_slice(b"{}");
            record.varint(0); // headers
            body.varint(record.bytes.len() as i64);
            body.bytes.extend_from_slice(&record.bytes);
        }
        let last_delta = records.last().map_or(0, |(delta, _)| *delta) as i32;
        let mut out = Encoder::default();
        out.i64(base_offset);
        // The length counts from the leader epoch; the body holds the record count too.
        out.i32((BATCH_HEADER - 16 + body.bytes.len()) as i32);
        out.i32(0); // leader epoch
        out.i8(2);
        out.i32(0); // crc: not checked
        out.i16(attributes);
        out.i32(last_delta);
        out.i64(1_000);
        out.i64(1_000 + records.last().map_or(0, |(_, ts)| *ts));
        out.i64(producer_id);
        out.i16(0);
        out.i32(0);
        out.bytes.extend_from_slice(&body.bytes);
        out.bytes
    }

    fn partition(records: &[u8], aborted: Vec<(i64, i64)>) -> FetchedPartition<'_> {
        FetchedPartition {
            error: 0,
            aborted,
            records,
        }
    }

    #[test]
    fn the_record_at_a_commit_inside_a_batch_is_found_with_its_own_timestamp() {
        let records = batch(10, 0, -1, &[(0, 0), (1, 5), (2, 9)]);
        assert_eq!(
            partition(&records, vec![]).first_unread(11, 13),
            Step::Done(FirstUnread::Record {
                offset: 11,
                timestamp_ms: 1_005
            })
        );
    }

    #[test]
    fn markers_and_aborted_records_are_skipped_as_a_read_committed_consumer_does() {
        let mut records = batch(10, 0x10, 7, &[(0, 0), (1, 1)]); // aborted transaction
        records.extend(batch(12, 0x30, 7, &[(0, 2)])); // its abort marker
        records.extend(batch(13, 0, -1, &[(0, 3)]));
        assert_eq!(
            partition(&records, vec![(7, 10)]).first_unread(10, 14),
            Step::Done(FirstUnread::Record {
                offset: 13,
                timestamp_ms: 1_003
            })
        );
        // Without the aborted transaction's entry, its records are data.
        assert_eq!(
            partition(&records, vec![]).first_unread(10, 14),
            Step::Done(FirstUnread::Record {
                offset: 10,
                timestamp_ms: 1_000
            })
        );
    }

    #[test]
    fn only_markers_up_to_the_high_watermark_is_told_with_the_position() {
        let records = batch(5, 0x30, 7, &[(0, 0)]);
        assert_eq!(
            partition(&records, vec![]).first_unread(5, 6),
            Step::Done(FirstUnread::MarkersOnly { position: 6 })
        );
        assert_eq!(
            partition(&records, vec![]).first_unread(5, 9),
            Step::From(6)
        );
    }

    #[test]
    fn a_compressed_batch_is_left_to_librdkafka() {
        let records = batch(0, 0x01, -1, &[(0, 0)]);
        assert_eq!(
            partition(&records, vec![]).first_unread(0, 1),
            Step::Done(FirstUnread::Unreadable)
        );
    }

    #[test]
    fn a_batch_cut_by_the_size_limit_gives_its_whole_records() {
        let records = batch(0, 0, -1, &[(0, 0), (1, 1), (2, 2)]);
        let cut = &records[..records.len() - 3];
        assert_eq!(
            partition(cut, vec![]).first_unread(1, 3),
            Step::Done(FirstUnread::Record {
                offset: 1,
                timestamp_ms: 1_001
            })
        );
        assert_eq!(partition(cut, vec![]).first_unread(2, 3), Step::Later);
    }
}
