//! Completeness audits (`[[pipeline.audit]]`): did every record of one feed hop reach the next?
//!
//! Each side's records are counted into event-time buckets, and each id goes into the bucket's
//! summary: an invertible Bloom lookup table in which the upstream adds and the downstream takes
//! away. What both sides hold cancels, so a few KiB list the ids that differ, however many
//! records the bucket holds: one left `+1` is missing downstream, one left `-1` arrived once more
//! than it was sent (duplicated).
//!
//! A bucket is judged only once it is *closed*: both feeds known (every partition read to a
//! watermark observed after that moment, [`crate::knowledge`]) past its end plus `grace`.
//! Until then nothing is said of it. A record counted once must never be counted again: each
//! audit keeps, per partition, the next offset it counted, stored with its buckets before the
//! consumer commits, so a `kill -9` replays nothing into them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::AuditConfig;
use crate::model::FeedIndex;

/// Bytes of an id a cell holds: ids up to one byte shorter are listed exactly.
const KEY_BYTES: usize = 20;
/// A cell's size: its key, a check of it, and the wrapping count.
pub const CELL_BYTES: usize = KEY_BYTES + 4;
/// The key's first byte for a canonical UUID text, held as its 16 bytes.
const UUID_MARK: u8 = 0xFE;
/// The key's first byte for a longer id: its first bytes and a hash of the rest.
const LONG_MARK: u8 = 0xFF;
const LONG_PREFIX: usize = KEY_BYTES - 1 - 8;

/// One side of an audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Upstream,
    Downstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cell {
    /// Upstream adds, downstream takes away; wrapping, so only what differs matters.
    count: i16,
    check: u16,
    key: [u8; KEY_BYTES],
}

/// 64-bit FNV-1a and a splitmix finaliser: the same in every process and release, so replicas
/// and restarts build the same cells. For a long id's digest only; cells hash their fixed-size
/// key by words ([`key_digest`]).
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut state = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &byte in bytes {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(state)
}

/// A cell key's digest, three words at a time (the hot path: once per record).
fn key_digest(key: &[u8; KEY_BYTES]) -> u64 {
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        let end = (at + 8).min(KEY_BYTES);
        bytes[..end - at].copy_from_slice(&key[at..end]);
        u64::from_le_bytes(bytes)
    };
    let state = mix(word(0) ^ 0x243f_6a88_85a3_08d3);
    let state = mix(state ^ word(8));
    mix(state ^ word(16))
}

fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// `held ^= key`, by words: a byte loop was the larger part of counting a record.
fn xor_key(held: &mut [u8; KEY_BYTES], key: &[u8; KEY_BYTES]) {
    let (held_words, held_tail) = held.split_at_mut(16);
    let (key_words, key_tail) = key.split_at(16);
    let word = |bytes: &[u8]| u128::from_ne_bytes(bytes.try_into().expect("16 bytes"));
    let tail = |bytes: &[u8]| u32::from_ne_bytes(bytes.try_into().expect("4 bytes"));
    held_words.copy_from_slice(&(word(held_words) ^ word(key_words)).to_ne_bytes());
    held_tail.copy_from_slice(&(tail(held_tail) ^ tail(key_tail)).to_ne_bytes());
}

/// The fixed-size key a cell holds for an id.
fn encode_id(id: &[u8]) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    if id.len() < KEY_BYTES {
        key[0] = id.len() as u8;
        key[1..=id.len()].copy_from_slice(id);
    } else if let Some(uuid) = parse_uuid(id) {
        key[0] = UUID_MARK;
        key[1..17].copy_from_slice(&uuid);
    } else {
        key[0] = LONG_MARK;
        key[1..=LONG_PREFIX].copy_from_slice(&id[..LONG_PREFIX]);
        key[1 + LONG_PREFIX..].copy_from_slice(&hash(id, 7).to_le_bytes());
    }
    key
}

/// The id as listed: itself, or for a long one its first bytes and a hash ("…#").
fn decode_id(key: &[u8; KEY_BYTES]) -> String {
    match key[0] {
        UUID_MARK => {
            let hex: String = key[1..17]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
        LONG_MARK => {
            let prefix = String::from_utf8_lossy(&key[1..=LONG_PREFIX]);
            let digest: String = key[1 + LONG_PREFIX..]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            format!("{prefix}…#{digest}")
        }
        len => String::from_utf8_lossy(&key[1..=usize::from(len).min(KEY_BYTES - 1)]).into_owned(),
    }
}

fn parse_uuid(id: &[u8]) -> Option<[u8; 16]> {
    // Lower-case hex only, so the listed id is the id that was read.
    if id.len() != 36
        || [8, 13, 18, 23].iter().any(|&dash| id[dash] != b'-')
        || id.iter().any(u8::is_ascii_uppercase)
    {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = id.iter().filter(|&&byte| byte != b'-');
    for byte in &mut out {
        let high = (*digits.next()? as char).to_digit(16)?;
        let low = (*digits.next()? as char).to_digit(16)?;
        *byte = (high * 16 + low) as u8;
    }
    Some(out)
}

/// An invertible Bloom lookup table over ids, in three equal parts (each id has one cell in
/// each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSummary {
    cells: Vec<Cell>,
}

/// What a summary lists: ids left upstream (missing downstream) and downstream (extra), and
/// whether that is all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Differences {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub complete: bool,
}

impl IdSummary {
    /// A summary that lists up to about `max_listed` differing ids.
    pub fn new(max_listed: usize) -> IdSummary {
        IdSummary {
            cells: vec![Cell::default(); cells_for(max_listed)],
        }
    }

    fn part(&self) -> usize {
        self.cells.len() / 3
    }

    fn places(&self, key: &[u8; KEY_BYTES]) -> ([usize; 3], u16) {
        let digest = key_digest(key);
        let part = self.part() as u64;
        let places = [0u64, 1, 2].map(|index| {
            (index * part
                + mix(digest.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15))) % part)
                as usize
        });
        (places, (mix(digest ^ 0x5bd1_e995) >> 48) as u16)
    }

    fn apply(&mut self, key: &[u8; KEY_BYTES], delta: i16) {
        let (places, check) = self.places(key);
        for place in places {
            let cell = &mut self.cells[place];
            cell.count = cell.count.wrapping_add(delta);
            cell.check ^= check;
            xor_key(&mut cell.key, key);
        }
    }

    pub fn add(&mut self, id: &[u8], side: Side) {
        self.add_key(&encode_id(id), side);
    }

    fn add_key(&mut self, key: &[u8; KEY_BYTES], side: Side) {
        let delta = match side {
            Side::Upstream => 1,
            Side::Downstream => -1,
        };
        self.apply(key, delta);
    }

    /// Another replica's counts of the same bucket (its own partitions).
    pub fn merge(&mut self, other: &IdSummary) {
        if other.cells.len() != self.cells.len() {
            return;
        }
        for (cell, theirs) in self.cells.iter_mut().zip(&other.cells) {
            cell.count = cell.count.wrapping_add(theirs.count);
            cell.check ^= theirs.check;
            xor_key(&mut cell.key, &theirs.key);
        }
    }

    /// Peels the cells that hold one id each until none is left.
    pub fn differences(&self) -> Differences {
        let mut cells = self.clone();
        let mut found = Differences::default();
        loop {
            let mut peeled = false;
            for index in 0..cells.cells.len() {
                let cell = cells.cells[index];
                if cell.count != 1 && cell.count != -1 {
                    continue;
                }
                let (places, check) = cells.places(&cell.key);
                if check != cell.check || !places.contains(&index) {
                    continue;
                }
                let id = decode_id(&cell.key);
                if cell.count == 1 {
                    found.missing.push(id);
                } else {
                    found.extra.push(id);
                }
                cells.apply(&cell.key, -cell.count);
                peeled = true;
            }
            if !peeled {
                break;
            }
        }
        found.complete = cells.cells.iter().all(|cell| *cell == Cell::default());
        found.missing.sort();
        found.extra.sort();
        found
    }

    fn to_hex(&self) -> String {
        let mut text = String::with_capacity(self.cells.len() * CELL_BYTES * 2);
        for cell in &self.cells {
            for byte in cell
                .count
                .to_le_bytes()
                .iter()
                .chain(&cell.check.to_le_bytes())
                .chain(&cell.key)
            {
                text.push_str(&format!("{byte:02x}"));
            }
        }
        text
    }

    fn from_hex(text: &str, max_listed: usize) -> Option<IdSummary> {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        if bytes.len() != cells_for(max_listed) * CELL_BYTES {
            return None;
        }
        let cells = bytes
            .chunks_exact(CELL_BYTES)
            .map(|chunk| {
                let mut key = [0u8; KEY_BYTES];
                key.copy_from_slice(&chunk[4..]);
                Cell {
                    count: i16::from_le_bytes([chunk[0], chunk[1]]),
                    check: u16::from_le_bytes([chunk[2], chunk[3]]),
                    key,
                }
            })
            .collect();
        Some(IdSummary { cells })
    }
}

/// Cells for `max_listed` ids: 1.65 per id (three parts), so a full bucket still peels with
/// high probability and fewer differences almost surely.
pub fn cells_for(max_listed: usize) -> usize {
    3 * (max_listed * 55).div_ceil(100).max(4)
}

/// One event-time bucket of one audit, as this replica counted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub upstream: u64,
    pub downstream: u64,
    pub summary: IdSummary,
}

/// A bucket judged: what `GET /api/v1/pipelines/{name}/audit` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedBucket {
    pub from: String,
    pub to: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub upstream: u64,
    pub downstream: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub missing_ids: Vec<String>,
    /// Whether every differing id is listed (more than `max_listed` may not be).
    pub listed_all: bool,
}

impl Bucket {
    fn new(max_listed: usize) -> Bucket {
        Bucket {
            upstream: 0,
            downstream: 0,
            summary: IdSummary::new(max_listed),
        }
    }

    fn merge(&mut self, other: &Bucket) {
        self.upstream += other.upstream;
        self.downstream += other.downstream;
        self.summary.merge(&other.summary);
    }

    /// Its verdict. Listed, the missing and extra ids are exact; past `max_listed` the counts
    /// fall back on the record counts (at least `upstream - downstream` are missing).
    pub fn judge(&self, config: &AuditConfig, start_ms: i64, end_ms: i64) -> ClosedBucket {
        let found = self.summary.differences();
        let (missing, duplicated) = if found.complete {
            (found.missing.len() as u64, found.extra.len() as u64)
        } else {
            (
                self.upstream
                    .saturating_sub(self.downstream)
                    .max(found.missing.len() as u64),
                self.downstream
                    .saturating_sub(self.upstream)
                    .max(found.extra.len() as u64),
            )
        };
        ClosedBucket {
            from: config.from.to_string(),
            to: config.to.to_string(),
            start_ms,
            end_ms,
            upstream: self.upstream,
            downstream: self.downstream,
            missing,
            duplicated,
            missing_ids: found.missing,
            listed_all: found.complete,
        }
    }
}

/// One audit's open buckets and how far it has counted, in this process.
#[derive(Debug)]
pub struct AuditTrack {
    pub config: AuditConfig,
    pub from: FeedIndex,
    pub to: FeedIndex,
    bucket_ms: i64,
    open: BTreeMap<i64, Bucket>,
    /// Per topic, per partition: how far it is read and counted. A side has one topic or a
    /// few, so a scan that tries the last one first beats hashing the name per record.
    positions: Vec<(Box<str>, Vec<Slot>)>,
    last_topic: usize,
    /// Records of partitions not settled yet, read but not counted.
    pending: Vec<Pending>,
    /// Buckets starting before this are closed: a record for one is late, not counted.
    closed_before_ms: i64,
    /// Records whose bucket had closed when they were read.
    pub late: u64,
    /// Records of either side without the id: counted nowhere, so a relay that drops the
    /// field would otherwise read as one that drops every record.
    pub without_id: u64,
    /// Pending records another replica had counted already, dropped when they settled.
    pub counted_elsewhere: u64,
    dirty: bool,
}

/// Most records kept pending per audit; past this, partitions settle at the next tick without
/// waiting out the previous owner's flush.
pub const MAX_PENDING: usize = 500_000;

/// How far one partition of a side is read and counted here.
///
/// A partition that came to this replica (at start, or moved by a rebalance) may have been
/// read past its committed offset by the replica that had it, which counts that stretch and
/// stores how far at its next flush. Until this replica has loaded that, after the previous
/// owner had time to flush, the partition is unsettled: its records wait, pending, and those
/// below the previous owner's stored position are dropped as counted there.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The next offset to read: lower ones were read here (counted, or pending).
    next: i64,
    /// Records below this are counted, here or by the replica that had the partition.
    counted: i64,
    settled: bool,
    /// When the runtime first saw records of this partition pending, unix ms.
    pending_since_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    topic: usize,
    partition: usize,
    offset: i64,
    start_ms: i64,
    side: Side,
    key: [u8; KEY_BYTES],
}

/// What one replica stores of one audit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredAudit {
    pub positions: BTreeMap<String, Vec<i64>>,
    pub closed_before_ms: i64,
    /// Per bucket start: `[upstream, downstream, cells as hex]`.
    pub buckets: BTreeMap<i64, (u64, u64, String)>,
    /// The first bucket this replica holds records of that it has not counted yet (a
    /// partition that moved to it, settling): the leader closes nothing from there on.
    #[serde(default)]
    pub pending_from_ms: Option<i64>,
    /// When it was written, unix ms: a replica that died settling leaves its pending mark
    /// behind, and the leader stops waiting for it once the mark is this old.
    #[serde(default)]
    pub written_ms: i64,
}

impl AuditTrack {
    pub fn new(config: AuditConfig, from: FeedIndex, to: FeedIndex) -> AuditTrack {
        AuditTrack {
            bucket_ms: i64::try_from(config.bucket.as_millis()).unwrap_or(i64::MAX),
            config,
            from,
            to,
            open: BTreeMap::new(),
            positions: Vec::new(),
            last_topic: 0,
            pending: Vec::new(),
            counted_elsewhere: 0,
            closed_before_ms: i64::MIN,
            late: 0,
            without_id: 0,
            dirty: false,
        }
    }

    pub fn bucket_ms(&self) -> i64 {
        self.bucket_ms
    }

    pub fn grace_ms(&self) -> i64 {
        i64::try_from(self.config.grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Counts one record read at `offset`; `false` when it was read before (again after a
    /// restart) or its bucket has closed. A record of an unsettled partition waits, pending.
    pub fn count(
        &mut self,
        side: Side,
        event_ms: i64,
        id: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> bool {
        let Ok(partition) = usize::try_from(partition) else {
            return false;
        };
        let start_ms = event_ms.div_euclid(self.bucket_ms) * self.bucket_ms;
        let slots = self.positions_of(topic);
        if slots.len() <= partition {
            slots.resize(partition + 1, Slot::default());
        }
        let slot = &mut slots[partition];
        if offset < slot.next {
            return false;
        }
        slot.next = offset + 1;
        if !slot.settled {
            let topic = self.last_topic;
            self.pending.push(Pending {
                topic,
                partition,
                offset,
                start_ms,
                side,
                key: encode_id(id),
            });
            // Stored, so the leader waits for it before closing its bucket.
            self.dirty = true;
            return true;
        }
        slot.counted = offset + 1;
        self.dirty = true;
        self.add_to_bucket(start_ms, &encode_id(id), side)
    }

    fn add_to_bucket(&mut self, start_ms: i64, key: &[u8; KEY_BYTES], side: Side) -> bool {
        if start_ms < self.closed_before_ms {
            self.late += 1;
            return false;
        }
        let max_listed = self.config.max_listed;
        let bucket = self
            .open
            .entry(start_ms)
            .or_insert_with(|| Bucket::new(max_listed));
        match side {
            Side::Upstream => bucket.upstream += 1,
            Side::Downstream => bucket.downstream += 1,
        }
        bucket.summary.add_key(key, side);
        true
    }

    /// Partitions this replica no longer reads are unsettled: when one comes back, another
    /// replica may have read it meanwhile. `assigned` is the consumer's assignment.
    pub fn unsettle_unassigned(&mut self, assigned: &std::collections::HashSet<(&str, i32)>) {
        for (topic, slots) in &mut self.positions {
            for (partition, slot) in slots.iter_mut().enumerate() {
                let held = i32::try_from(partition)
                    .is_ok_and(|partition| assigned.contains(&(&**topic, partition)));
                if !held {
                    slot.settled = false;
                    slot.pending_since_ms = None;
                }
            }
        }
    }

    /// Whether pending records are due to settle at `now_ms`: their partition has waited
    /// `wait_ms` since it was first seen pending (stamped here), or too many are pending.
    pub fn settle_due(&mut self, now_ms: i64, wait_ms: i64) -> bool {
        for pending in &self.pending {
            let slot = &mut self.positions[pending.topic].1[pending.partition];
            slot.pending_since_ms.get_or_insert(now_ms);
        }
        self.pending.len() >= MAX_PENDING
            || self.positions.iter().any(|(_, slots)| {
                slots.iter().any(|slot| {
                    slot.pending_since_ms
                        .is_some_and(|since_ms| now_ms.saturating_sub(since_ms) >= wait_ms)
                })
            })
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Settles the partitions due (see [`AuditTrack::settle_due`]) on what the other replicas
    /// stored: a pending record below the furthest any of them counted was counted there and
    /// is dropped; the rest are counted now.
    pub fn settle(&mut self, peers: &[StoredAudit], now_ms: i64, wait_ms: i64) {
        let forced = self.pending.len() >= MAX_PENDING;
        for (topic, slots) in &mut self.positions {
            for (partition, slot) in slots.iter_mut().enumerate() {
                let due = slot
                    .pending_since_ms
                    .is_some_and(|since_ms| forced || now_ms.saturating_sub(since_ms) >= wait_ms);
                if !due {
                    continue;
                }
                let elsewhere = peers
                    .iter()
                    .filter_map(|peer| peer.positions.get(&**topic)?.get(partition).copied())
                    .max()
                    .unwrap_or(0);
                slot.counted = slot.counted.max(elsewhere);
                slot.next = slot.next.max(slot.counted);
                slot.settled = true;
                slot.pending_since_ms = None;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        self.dirty = true;
        for record in pending {
            let slot = &mut self.positions[record.topic].1[record.partition];
            if !slot.settled {
                self.pending.push(record);
            } else if record.offset < slot.counted {
                self.counted_elsewhere += 1;
            } else {
                slot.counted = record.offset + 1;
                self.dirty = true;
                self.add_to_bucket(record.start_ms, &record.key, record.side);
            }
        }
    }

    /// Holds the consumer's commit of an unsettled partition below its first pending record:
    /// pending records are not stored, so after a restart they must be read again.
    pub fn hold_back_commits(&self, positions: &mut crate::tracker::Positions) {
        for record in &self.pending {
            let topic = &*self.positions[record.topic].0;
            if let Some(offset) = positions
                .get_mut(topic)
                .and_then(|offsets| offsets.get_mut(record.partition))
            {
                *offset = (*offset).min(record.offset);
            }
        }
    }

    #[inline]
    fn positions_of(&mut self, topic: &str) -> &mut Vec<Slot> {
        let last_matches =
            matches!(self.positions.get(self.last_topic), Some((held, _)) if **held == *topic);
        if !last_matches {
            self.last_topic = match self.positions.iter().position(|(held, _)| **held == *topic) {
                Some(index) => index,
                None => {
                    self.positions.push((Box::from(topic), Vec::new()));
                    self.positions.len() - 1
                }
            };
        }
        &mut self.positions[self.last_topic].1
    }

    pub fn open_buckets(&self) -> usize {
        self.open.len()
    }

    /// The buckets whose end plus `grace` is at or before `known_through_ms` (both sides known
    /// that far), oldest first; they are dropped here.
    pub fn take_closable(&mut self, known_through_ms: i64) -> Vec<(i64, Bucket)> {
        let horizon_ms = known_through_ms.saturating_sub(self.grace_ms());
        let mut closed = Vec::new();
        while let Some((&start_ms, _)) = self.open.first_key_value() {
            if start_ms.saturating_add(self.bucket_ms) > horizon_ms {
                break;
            }
            if let Some(bucket) = self.open.remove(&start_ms) {
                closed.push((start_ms, bucket));
            }
        }
        self.close_before(horizon_ms.div_euclid(self.bucket_ms) * self.bucket_ms);
        closed
    }

    /// Buckets before `start_ms` are closed (by this replica or the leader): dropped, and
    /// records for them are late from now on.
    pub fn close_before(&mut self, start_ms: i64) {
        if start_ms <= self.closed_before_ms {
            return;
        }
        self.closed_before_ms = start_ms;
        self.open = self.open.split_off(&start_ms);
        self.dirty = true;
    }

    pub fn closed_before_ms(&self) -> i64 {
        self.closed_before_ms
    }

    /// What to store, when something changed since the last call.
    pub fn take_dirty(&mut self) -> Option<StoredAudit> {
        // While records are pending, every flush says so: the leader waits only for a replica
        // that is still writing.
        if !std::mem::take(&mut self.dirty) && self.pending.is_empty() {
            return None;
        }
        Some(self.stored())
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn stored(&self) -> StoredAudit {
        StoredAudit {
            positions: self
                .positions
                .iter()
                .map(|(topic, slots)| {
                    let counted = slots.iter().map(|slot| slot.counted).collect();
                    (topic.to_string(), counted)
                })
                .collect(),
            closed_before_ms: self.closed_before_ms,
            pending_from_ms: self.pending.iter().map(|record| record.start_ms).min(),
            written_ms: 0,
            buckets: self
                .open
                .iter()
                .map(|(&start, bucket)| {
                    (
                        start,
                        (bucket.upstream, bucket.downstream, bucket.summary.to_hex()),
                    )
                })
                .collect(),
        }
    }

    /// Buckets taken for closing that could not be judged yet: open again.
    pub fn reopen(&mut self, buckets: Vec<(i64, Bucket)>, closed_before_ms: i64) {
        for (start, bucket) in buckets {
            self.open
                .entry(start)
                .and_modify(|open| open.merge(&bucket))
                .or_insert(bucket);
        }
        self.closed_before_ms = self.closed_before_ms.min(closed_before_ms);
        self.dirty = true;
    }

    /// Takes up what a replica stored: its positions always (nothing counted anywhere is
    /// counted again); its buckets and closing point only when it is this one (`own`), before
    /// a restart: another replica's buckets stay its own, merged when they close.
    pub fn restore(&mut self, stored: &StoredAudit, own: bool) {
        for (topic, positions) in &stored.positions {
            let held = self.positions_of(topic);
            if held.len() < positions.len() {
                held.resize(positions.len(), Slot::default());
            }
            for (held, &stored) in held.iter_mut().zip(positions) {
                held.counted = held.counted.max(stored);
                held.next = held.next.max(stored);
            }
        }
        if !own {
            return;
        }
        self.closed_before_ms = self.closed_before_ms.max(stored.closed_before_ms);
        for (start, bucket) in buckets_of(stored, self.config.max_listed) {
            if start >= self.closed_before_ms {
                self.open
                    .entry(start)
                    .and_modify(|open| open.merge(&bucket))
                    .or_insert(bucket);
            }
        }
    }
}

/// The buckets of a stored audit (another replica's, or this one's before a restart).
pub fn buckets_of(stored: &StoredAudit, max_listed: usize) -> Vec<(i64, Bucket)> {
    stored
        .buckets
        .iter()
        .filter_map(|(&start, (upstream, downstream, cells))| {
            Some((
                start,
                Bucket {
                    upstream: *upstream,
                    downstream: *downstream,
                    summary: IdSummary::from_hex(cells, max_listed)?,
                },
            ))
        })
        .collect()
}

/// Merges the buckets closing here with the same buckets of other replicas, and judges them.
pub fn judge_closed(
    config: &AuditConfig,
    bucket_ms: i64,
    closing: Vec<(i64, Bucket)>,
    peers: &[StoredAudit],
    range: std::ops::Range<i64>,
) -> Vec<ClosedBucket> {
    let mut merged: BTreeMap<i64, Bucket> = closing.into_iter().collect();
    for peer in peers {
        // A peer's bucket outside the range was judged before (a follower keeps its buckets
        // a bucket longer), or is not closed yet.
        for (start, bucket) in buckets_of(peer, config.max_listed) {
            if !range.contains(&start) {
                continue;
            }
            merged
                .entry(start)
                .and_modify(|open| open.merge(&bucket))
                .or_insert(bucket);
        }
    }
    merged
        .into_iter()
        .map(|(start, bucket)| bucket.judge(config, start, start.saturating_add(bucket_ms)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::SplitRule;
    use std::sync::Arc;
    use std::time::Duration;

    fn config(max_listed: usize) -> AuditConfig {
        AuditConfig {
            pipeline: Arc::from("orders"),
            from: Arc::from("raw"),
            to: Arc::from("enriched"),
            id: SplitRule::Key,
            bucket: Duration::from_secs(60),
            grace: Duration::from_secs(300),
            max_listed,
        }
    }

    /// Settles everything pending, as the runtime does once a previous owner had time to flush.
    fn settle(track: &mut AuditTrack, peers: &[StoredAudit]) {
        assert!(track.settle_due(0, 0) || !track.has_pending());
        track.settle(peers, 0, 0);
        assert!(!track.has_pending());
    }

    #[test]
    fn a_bucket_lists_every_missing_id_and_counts_duplicates_among_a_hundred_thousand() {
        let config = config(250);
        let mut track = AuditTrack::new(config.clone(), 0, 1);
        let dropped: Vec<u32> = (0..137).map(|index| 311 + index * 701).collect();
        let mut offset = [0i64; 2];
        for index in 0..100_000u32 {
            let id = format!("order-{index}");
            track.count(Side::Upstream, 5_000, id.as_bytes(), "raw", 0, offset[0]);
            offset[0] += 1;
            if dropped.contains(&index) {
                continue;
            }
            let copies = if index % 997 == 5 { 2 } else { 1 };
            for _ in 0..copies {
                track.count(
                    Side::Downstream,
                    5_000,
                    id.as_bytes(),
                    "enriched",
                    0,
                    offset[1],
                );
                offset[1] += 1;
            }
        }
        settle(&mut track, &[]);
        let closing = track.take_closable(60_000 + 300_000);
        let judged = judge_closed(&config, 60_000, closing, &[], i64::MIN..i64::MAX);
        assert_eq!(judged.len(), 1);
        let bucket = &judged[0];
        assert_eq!(bucket.upstream, 100_000);
        assert_eq!(bucket.missing, 137);
        assert_eq!(
            bucket.duplicated,
            (0..100_000)
                .filter(|i| i % 997 == 5 && !dropped.contains(i))
                .count() as u64
        );
        assert!(bucket.listed_all);
        let mut expected: Vec<String> = dropped
            .iter()
            .map(|index| format!("order-{index}"))
            .collect();
        expected.sort();
        assert_eq!(bucket.missing_ids, expected);
        assert!(
            cells_for(100) * CELL_BYTES <= 4096,
            "the default summary fits in 4 KiB: {} bytes",
            cells_for(100) * CELL_BYTES
        );
    }

    #[test]
    fn a_record_read_again_after_a_restart_is_not_counted_twice_and_a_bucket_closes_only_when_known(
    ) {
        let config = config(100);
        let mut track = AuditTrack::new(config.clone(), 0, 1);
        for offset in 0..10 {
            track.count(
                Side::Upstream,
                1_000,
                format!("id-{offset}").as_bytes(),
                "raw",
                3,
                offset,
            );
        }
        settle(&mut track, &[]);
        let stored = track.take_dirty().expect("counted");
        assert!(track.take_dirty().is_none());
        let mut restarted = AuditTrack::new(config.clone(), 0, 1);
        restarted.restore(&stored, true);
        // The consumer resumes from an older commit: offsets 5..10 are read again.
        for offset in 5..12 {
            restarted.count(
                Side::Upstream,
                1_000,
                format!("id-{offset}").as_bytes(),
                "raw",
                3,
                offset,
            );
        }
        for offset in 0..12 {
            restarted.count(
                Side::Downstream,
                1_000,
                format!("id-{offset}").as_bytes(),
                "enriched",
                0,
                offset,
            );
        }
        settle(&mut restarted, &[]);
        // Known only up to the bucket's end plus part of its grace: still open.
        assert!(restarted.take_closable(60_000 + 299_999).is_empty());
        let closing = restarted.take_closable(60_000 + 300_000);
        let judged = judge_closed(&config, 60_000, closing, &[], i64::MIN..i64::MAX);
        assert_eq!((judged[0].upstream, judged[0].downstream), (12, 12));
        assert_eq!((judged[0].missing, judged[0].duplicated), (0, 0));
        // Closed: a record of it now is late, and counted nowhere.
        assert!(!restarted.count(Side::Downstream, 2_000, b"late", "enriched", 0, 12));
        assert_eq!(restarted.late, 1);
        assert_eq!(restarted.open_buckets(), 0);
    }

    #[test]
    fn replicas_summaries_merge_and_long_ids_and_uuids_are_listed() {
        let config = config(20);
        let mut here = AuditTrack::new(config.clone(), 0, 1);
        let mut there = AuditTrack::new(config.clone(), 0, 1);
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let long = "a-very-long-order-identifier-0001";
        for (offset, id) in ["a", uuid, long, "b"].iter().enumerate() {
            here.count(Side::Upstream, 0, id.as_bytes(), "raw", 0, offset as i64);
        }
        // The other replica reads the downstream partition: "a" and "b" arrived.
        there.count(Side::Downstream, 0, b"a", "enriched", 1, 0);
        there.count(Side::Downstream, 0, b"b", "enriched", 1, 1);
        settle(&mut here, &[]);
        settle(&mut there, &[]);
        let peer = there.stored();
        let judged = judge_closed(
            &config,
            60_000,
            here.take_closable(i64::MAX / 2),
            &[peer],
            i64::MIN..i64::MAX,
        );
        assert_eq!(judged[0].missing, 2);
        assert_eq!(judged[0].missing_ids[0], uuid);
        assert!(
            judged[0].missing_ids[1].starts_with("a-very-long…#"),
            "{:?}",
            judged[0].missing_ids
        );
    }

    /// A partition moves from one live replica to another: the new owner starts at the old
    /// one's last commit, below what the old one read (and counts at its next flush). The
    /// stretch between is counted once, by the old owner, and a record the old owner never
    /// read is counted by the new one.
    #[test]
    fn a_partition_that_moves_between_live_replicas_is_counted_once() {
        let config = config(100);
        let mut old = AuditTrack::new(config.clone(), 0, 1);
        let mut new = AuditTrack::new(config.clone(), 0, 1);
        let id = |offset: i64| format!("id-{offset}");
        for offset in 0..100 {
            old.count(
                Side::Upstream,
                1_000,
                id(offset).as_bytes(),
                "raw",
                0,
                offset,
            );
        }
        settle(&mut old, &[]);
        let committed = old.stored().positions["raw"][0];
        assert_eq!(committed, 100);
        // Read on past the commit before the rebalance took the partition away.
        for offset in 100..150 {
            old.count(
                Side::Upstream,
                1_000,
                id(offset).as_bytes(),
                "raw",
                0,
                offset,
            );
        }
        // The new owner starts at the commit, and reads on while the old one flushes.
        let assigned = std::collections::HashSet::from([("raw", 0)]);
        new.unsettle_unassigned(&assigned);
        for offset in 100..200 {
            assert!(new.count(
                Side::Upstream,
                1_000,
                id(offset).as_bytes(),
                "raw",
                0,
                offset
            ));
        }
        old.unsettle_unassigned(&std::collections::HashSet::new());
        let flushed = old.stored();
        // Nothing is settled before the previous owner had time to flush.
        assert!(!new.settle_due(10_000, 3_000));
        assert!(new.settle_due(13_000, 3_000));
        let mut commits = crate::tracker::Positions::default();
        commits.insert("raw".to_owned(), vec![200]);
        new.hold_back_commits(&mut commits);
        assert_eq!(
            commits["raw"],
            [100],
            "pending records are not committed past"
        );
        new.settle(std::slice::from_ref(&flushed), 13_000, 3_000);
        assert_eq!(new.counted_elsewhere, 50);
        assert_eq!(new.stored().positions["raw"][0], 200);
        let closing = old.take_closable(i64::MAX / 2);
        let judged = judge_closed(
            &config,
            60_000,
            closing,
            &[new.stored()],
            i64::MIN..i64::MAX,
        );
        assert_eq!(
            judged[0].upstream, 200,
            "every record once: {:?}",
            judged[0]
        );
        assert_eq!(judged[0].missing, 200, "no downstream was read");
    }
}

/// What the leader keeps of one audit's verdicts (stored, so they survive restarts): the last
/// closed buckets and the open `RecordsMissing`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditResults {
    pub closed: std::collections::VecDeque<ClosedBucket>,
    /// Since when `RecordsMissing` fires, and what it said.
    pub firing: Option<(i64, String)>,
}

/// Closed buckets kept per audit: a day of one-minute buckets.
pub const KEPT_CLOSED: usize = 1440;

impl AuditResults {
    pub fn push(&mut self, bucket: ClosedBucket) {
        self.closed.push_back(bucket);
        while self.closed.len() > KEPT_CLOSED {
            self.closed.pop_front();
        }
    }
}

/// The words of `RecordsMissing` for a bucket: the count, the bucket, and up to 100 ids.
pub fn missing_summary(pipeline: &str, bucket: &ClosedBucket) -> String {
    let shown: Vec<&str> = bucket
        .missing_ids
        .iter()
        .take(100)
        .map(String::as_str)
        .collect();
    let more = if bucket.missing as usize > shown.len() {
        format!(" (and {} more)", bucket.missing as usize - shown.len())
    } else {
        String::new()
    };
    format!(
        "pipeline {pipeline}: {} of {} records of {} missing from {} in {} to {}; ids: {}{more}",
        bucket.missing,
        bucket.upstream,
        bucket.from,
        bucket.to,
        crate::clock::rfc3339(bucket.start_ms),
        crate::clock::rfc3339(bucket.end_ms),
        shown.join(", ")
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
pub struct AuditLabels {
    pub pipeline: String,
    pub from: String,
    pub to: String,
}

/// `freshwatch_audit_*`.
#[derive(Debug, Clone, Default)]
pub struct AuditMetrics {
    pub missing: prometheus_client::metrics::family::Family<
        AuditLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    pub duplicated: prometheus_client::metrics::family::Family<
        AuditLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    pub open_buckets: prometheus_client::metrics::family::Family<
        AuditLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    pub late: prometheus_client::metrics::family::Family<
        AuditLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    pub without_id: prometheus_client::metrics::family::Family<
        AuditLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
}

impl AuditConfig {
    pub fn labels(&self) -> AuditLabels {
        AuditLabels {
            pipeline: self.pipeline.to_string(),
            from: self.from.to_string(),
            to: self.to.to_string(),
        }
    }
}
