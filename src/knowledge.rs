//! Whether freshwatch knows that Kafka held nothing newer: the one home of "can this feed be
//! judged stale now?".
//!
//! The rule: a feed may be judged stale at time T only if, for every partition of its topics,
//! some live replica has read up to a high watermark observed at or after T. The parts that see
//! Kafka report facts here and decide nothing:
//! - the consumer thread: metadata (which partitions exist), its assignment, and per partition
//!   from librdkafka's statistics whether it is read to the high watermark, and when;
//! - the tail thread: per partition, when it last read the newest record;
//! - the other replicas, through the state store: their partitions and what they know of them
//!   (a replica says it read a partition through T only once what it read up to T is flushed to
//!   the store, where the leader reads it);
//! - whether the state store answers: while it does not (and until every peer had the time to
//!   report again), a partition no live report covers is unknown because the store is down, not
//!   unread by every replica;
//! - any failed fetch or metadata request, which voids this instance's knowledge at once.
//!
//! [`Knowledge::assess`] turns the facts into a [`Sight`] per feed. The evaluator judges a
//! crossing at T only under `Known { through_ms >= T }`; while `Blind` a series that would start
//! alerting is `unknown`, one already alerting stays as it is. Restarts, rebalances, outages,
//! slow consumers and other replicas' backlogs are all facts fed to this same rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{FeedMode, TopicMatcher};

/// A partition: topic and number.
pub type PartitionKey = (String, i32);

/// What one reader knows of one partition: read to the high watermark as of this unix ms, or
/// not (behind, no statistics yet, fetch not active).
pub type ReadThrough = Option<i64>;

/// Why a feed cannot be judged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blindness {
    /// No metadata yet: which partitions exist is not known.
    Starting,
    /// The brokers did not answer this instance's last fetch or metadata request.
    SourceDown,
    /// A partition is assigned to no live replica (a rebalance, or a dead member's session not
    /// expired yet).
    Unowned,
    /// A partition's owner has not read it to its high watermark (a backlog).
    Behind,
    /// What is known is too old to trust (statistics or peer reports stopped arriving).
    Stale,
    /// The state store does not answer: what the other replicas read is not known.
    StoreDown,
}

impl Blindness {
    pub fn as_str(self) -> &'static str {
        match self {
            Blindness::Starting => "starting",
            Blindness::SourceDown => "source_down",
            Blindness::Unowned => "partitions_unowned",
            Blindness::Behind => "backlog",
            Blindness::Stale => "stale_knowledge",
            Blindness::StoreDown => "state_store_down",
        }
    }

    /// In words, for logs and alert summaries.
    pub fn describe(self) -> &'static str {
        match self {
            Blindness::Starting => {
                "freshwatch is starting: it has not read the topic metadata or joined its consumer group yet"
            }
            Blindness::SourceDown => {
                "the Kafka brokers do not answer freshwatch, or just came back (recovery_grace)"
            }
            Blindness::Unowned => "no freshwatch replica is reading some of its partitions",
            Blindness::Behind => "freshwatch has not read its partitions to the end yet",
            Blindness::Stale => "freshwatch's knowledge of its partitions stopped being updated",
            Blindness::StoreDown => {
                "the state store does not answer, so what the other freshwatch replicas read is not known"
            }
        }
    }

    /// Which of two reasons a feed reports: the one on-call can least wait out.
    fn weight(self) -> u8 {
        match self {
            Blindness::Behind => 0,
            Blindness::Stale => 1,
            Blindness::StoreDown => 2,
            Blindness::Starting => 3,
            Blindness::SourceDown => 4,
            Blindness::Unowned => 5,
        }
    }
}

/// Whether a feed can be judged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Every partition was read to its high watermark as of `through_ms`: a crossing at or before
    /// it may be judged.
    Known {
        through_ms: i64,
    },
    Blind(Blindness),
}

impl Sight {
    /// Whether blindness past its bound pages `FreshwatchFeedBlind`: not when the cause pages
    /// on its own (the state store down is `FreshwatchStateStoreDown`), so one cause pages once.
    pub fn pages_when_blind(self) -> bool {
        self != Sight::Blind(Blindness::StoreDown)
    }
}

/// A feed's sight and, while blind, since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSight {
    pub sight: Sight,
    pub blind_since_ms: Option<i64>,
}

/// How long a feed that was known may read `behind` (a statistics snapshot taken just after
/// new records arrived) and still learn: longer, it is a backlog, not a moment.
pub const LEARN_THROUGH_BEHIND_MS: i64 = 30_000;

impl FeedSight {
    /// Whether records read now may teach learned thresholds ([`crate::cadence`]): when the
    /// feed is known, or was (`was_learning`) and has read `behind` for under
    /// [`LEARN_THROUGH_BEHIND_MS`]. Not while starting, with the source down, or while a
    /// backlog is read (a restart's catch-up starts blind and stays so): an outage or a
    /// backlog is not a cadence.
    pub fn learns(&self, was_learning: bool, now_ms: i64) -> bool {
        match self.sight {
            Sight::Known { .. } => true,
            Sight::Blind(Blindness::Behind) => {
                was_learning
                    && self.blind_since_ms.is_some_and(|since_ms| {
                        now_ms.saturating_sub(since_ms) < LEARN_THROUGH_BEHIND_MS
                    })
            }
            Sight::Blind(_) => false,
        }
    }
}

/// Everything [`Knowledge::assess`] concludes at one moment.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    pub feeds: Vec<FeedSight>,
    /// Partitions of watched topics no live replica reads, with since when, oldest first.
    pub unowned: Vec<(PartitionKey, i64)>,
}

/// What another replica reported, and when.
#[derive(Debug, Clone)]
struct PeerReport {
    at_ms: i64,
    partitions: HashMap<PartitionKey, ReadThrough>,
}

#[derive(Debug, Default)]
struct Facts {
    /// Partition count per topic from the latest metadata, and when it was read.
    topics: Option<(i64, HashMap<String, i32>)>,
    /// Per feed, its topics and their partition counts: matched once per metadata change, not
    /// once per tick.
    feed_topics: Vec<Vec<(String, i32)>>,
    /// This instance's consumed partitions.
    own: HashMap<PartitionKey, ReadThrough>,
    /// Whether this instance's consumer finished joining its group once: before that, a
    /// partition nobody reads is still being handed out.
    joined: bool,
    /// When the last rebalance gave this instance its partitions.
    assigned_at_ms: i64,
    /// Since when this instance's consumer has failed to reach the brokers.
    source_failed_since_ms: Option<i64>,
    /// When it last answered again after failing.
    source_recovered_at_ms: Option<i64>,
    /// Tail-mode partitions: when their newest record was last read.
    tail: HashMap<PartitionKey, i64>,
    tail_failed_since_ms: Option<i64>,
    tail_recovered_at_ms: Option<i64>,
    peers: HashMap<String, PeerReport>,
    /// Since when the state store, through which the replicas share, has failed.
    store_failed_since_ms: Option<i64>,
    /// When it last answered again after failing.
    store_recovered_at_ms: Option<i64>,
    /// When the last successful flush took the changes it wrote: everything read before it is
    /// in the store.
    flushed_at_ms: Option<i64>,
    unowned_since_ms: HashMap<PartitionKey, i64>,
    blind_since_ms: Vec<Option<i64>>,
}

/// The knowledge of one instance. Cheap to feed (a short lock per fact); assessed once per
/// evaluation tick, in O(feeds × partitions).
#[derive(Debug)]
pub struct Knowledge {
    feeds: Vec<(TopicMatcher, FeedMode)>,
    /// Knowledge older than this is no knowledge.
    max_age_ms: i64,
    /// A peer report older than this belongs to a replica that stopped.
    peer_ttl_ms: i64,
    /// After an outage, how long before reads count again: producers deliver what they queued.
    recovery_grace_ms: i64,
    facts: Mutex<Facts>,
}

impl Knowledge {
    pub fn new(
        feeds: Vec<(TopicMatcher, FeedMode)>,
        max_age_ms: i64,
        peer_ttl_ms: i64,
        recovery_grace_ms: i64,
    ) -> Self {
        let facts = Facts {
            blind_since_ms: vec![None; feeds.len()],
            ..Facts::default()
        };
        Knowledge {
            feeds,
            max_age_ms,
            peer_ttl_ms,
            recovery_grace_ms,
            facts: Mutex::new(facts),
        }
    }

    fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.facts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The partitions every topic has, from a successful metadata request.
    pub fn observe_metadata(&self, at_ms: i64, topics: HashMap<String, i32>) {
        let mut facts = self.facts();
        let changed = facts
            .topics
            .as_ref()
            .is_none_or(|(_, known)| *known != topics);
        if changed {
            facts.feed_topics = self
                .feeds
                .iter()
                .map(|(matcher, _)| {
                    let mut matching: Vec<(String, i32)> = topics
                        .iter()
                        .filter(|(topic, _)| matcher.matches(topic))
                        .map(|(topic, &count)| (topic.clone(), count))
                        .collect();
                    matching.sort_unstable();
                    matching
                })
                .collect();
        }
        facts.topics = Some((at_ms, topics));
    }

    /// A rebalance gave this instance these partitions (and took the others) at `at_ms`.
    pub fn observe_assignment(&self, at_ms: i64, partitions: &[PartitionKey]) {
        let mut facts = self.facts();
        facts.joined = true;
        facts.assigned_at_ms = at_ms;
        let previous = std::mem::take(&mut facts.own);
        facts.own = partitions
            .iter()
            .map(|key| (key.clone(), previous.get(key).copied().flatten()))
            .collect();
    }

    /// Statistics: for each assigned partition, whether it is read to its high watermark.
    /// Partitions not assigned (any more) are ignored.
    pub fn observe_reads(&self, reads: impl IntoIterator<Item = (PartitionKey, ReadThrough)>) {
        let mut facts = self.facts();
        for (key, through) in reads {
            if let Some(known) = facts.own.get_mut(&key) {
                *known = through;
            }
        }
    }

    /// A fetch or metadata request failed: nothing this consumer read counts until it answers.
    pub fn observe_source_failure(&self, at_ms: i64) {
        let mut facts = self.facts();
        facts.source_failed_since_ms.get_or_insert(at_ms);
        for known in facts.own.values_mut() {
            *known = None;
        }
    }

    /// The brokers answer (again). After an outage, reads count only once the recovery grace
    /// has passed: producers were blocked too, and deliver what they queued.
    pub fn observe_source_success(&self, at_ms: i64) {
        let mut facts = self.facts();
        if facts.source_failed_since_ms.take().is_some() {
            facts.source_recovered_at_ms = Some(at_ms);
        }
    }

    /// One tail round: the partitions whose newest record was read (or that had nothing new).
    pub fn observe_tail_round(&self, at_ms: i64, read: impl IntoIterator<Item = PartitionKey>) {
        let mut facts = self.facts();
        if facts.tail_failed_since_ms.take().is_some() {
            facts.tail_recovered_at_ms = Some(at_ms);
        }
        for key in read {
            facts.tail.insert(key, at_ms);
        }
    }

    pub fn observe_tail_failure(&self, at_ms: i64) {
        let mut facts = self.facts();
        facts.tail_failed_since_ms.get_or_insert(at_ms);
        facts.tail.clear();
    }

    /// What this instance knows of its consumed partitions at `now_ms`, for the other replicas.
    pub fn own_reads(&self, now_ms: i64) -> Vec<(PartitionKey, ReadThrough)> {
        let facts = self.facts();
        let failed = self.source_blind(&facts, now_ms);
        let mut reads: Vec<_> = facts
            .own
            .iter()
            .map(|(key, through)| (key.clone(), through.filter(|_| !failed)))
            .collect();
        reads.sort_unstable();
        reads
    }

    /// What this instance may tell the other replicas at `now_ms`: [`Knowledge::own_reads`],
    /// each read-through capped at the last flush, so a leader that judges a crossing from this
    /// report finds every record this replica read before it in the store. Nothing is "read
    /// through" before a first flush.
    pub fn shared_reads(&self, now_ms: i64) -> Vec<(PartitionKey, ReadThrough)> {
        let flushed_at_ms = self.facts().flushed_at_ms;
        self.own_reads(now_ms)
            .into_iter()
            .map(|(key, through)| {
                let flushed = through
                    .zip(flushed_at_ms)
                    .map(|(read, flushed)| read.min(flushed));
                (key, flushed)
            })
            .collect()
    }

    /// A flush succeeded: what was read before `taken_at_ms` (when it took the changes) is in
    /// the store.
    pub fn observe_flushed(&self, taken_at_ms: i64) {
        let mut facts = self.facts();
        facts.flushed_at_ms = facts.flushed_at_ms.max(Some(taken_at_ms));
    }

    /// Sharing through the state store failed: the other replicas' reports stop arriving.
    pub fn observe_store_failure(&self, at_ms: i64) {
        self.facts().store_failed_since_ms.get_or_insert(at_ms);
    }

    /// Sharing through the state store works (again).
    pub fn observe_store_success(&self, at_ms: i64) {
        let mut facts = self.facts();
        if facts.store_failed_since_ms.take().is_some() {
            facts.store_recovered_at_ms = Some(at_ms);
        }
    }

    /// Whether the store is down, or back for less than a peer TTL (the peers report again).
    fn store_blind(&self, facts: &Facts, now_ms: i64) -> bool {
        facts.store_failed_since_ms.is_some()
            || facts
                .store_recovered_at_ms
                .is_some_and(|at_ms| now_ms < at_ms.saturating_add(self.peer_ttl_ms))
    }

    /// Whether what other replicas read is unknown at `now_ms`: there are peers, and the store
    /// they report through does not answer (or just came back). A sum over replicas (record
    /// rates) is then this replica's share only, and must not be judged.
    pub fn peers_unknown(&self, now_ms: i64) -> bool {
        let facts = self.facts();
        !facts.peers.is_empty() && self.store_blind(&facts, now_ms)
    }

    /// Another replica's report (its own `shared_reads`, published at `at_ms`).
    pub fn observe_peer(
        &self,
        instance: &str,
        at_ms: i64,
        reads: Vec<(PartitionKey, ReadThrough)>,
    ) {
        self.facts().peers.insert(
            instance.to_owned(),
            PeerReport {
                at_ms,
                partitions: reads.into_iter().collect(),
            },
        );
    }

    /// Replicas whose report is older than the peer TTL at `now_ms`: they stopped (`kill -9`).
    /// None while the store is down or just back: a report that aged while nobody could publish
    /// says nothing of its replica.
    pub fn forget_dead_peers(&self, now_ms: i64) -> Vec<String> {
        let live_since_ms = now_ms.saturating_sub(self.peer_ttl_ms);
        let mut facts = self.facts();
        if self.store_blind(&facts, now_ms) {
            return Vec::new();
        }
        let dead: Vec<String> = facts
            .peers
            .iter()
            .filter(|(_, report)| report.at_ms < live_since_ms)
            .map(|(instance, _)| instance.clone())
            .collect();
        for instance in &dead {
            facts.peers.remove(instance);
        }
        dead
    }

    /// Whether this instance's consumer is down, or recovering from being down, at `now_ms`.
    fn source_blind(&self, facts: &Facts, now_ms: i64) -> bool {
        facts.source_failed_since_ms.is_some()
            || facts
                .source_recovered_at_ms
                .is_some_and(|at_ms| now_ms < at_ms.saturating_add(self.recovery_grace_ms))
    }

    fn tail_blind(&self, facts: &Facts, now_ms: i64) -> bool {
        facts.tail_failed_since_ms.is_some()
            || facts
                .tail_recovered_at_ms
                .is_some_and(|at_ms| now_ms < at_ms.saturating_add(self.recovery_grace_ms))
    }

    /// Whether this instance has read nothing since a rebalance `grace_ms` ago, while the
    /// brokers answer and some partition has been read by no live replica as long: the group
    /// is stuck (a coordinator that never reassigns a dead member's partitions), and rejoining
    /// it is the one move this instance has.
    pub fn stuck_without_partitions(&self, now_ms: i64, grace_ms: i64) -> bool {
        let facts = self.facts();
        facts.joined
            && facts.own.is_empty()
            && facts.source_failed_since_ms.is_none()
            && now_ms.saturating_sub(facts.assigned_at_ms) >= grace_ms
            && facts
                .unowned_since_ms
                .values()
                .any(|&since_ms| now_ms.saturating_sub(since_ms) >= grace_ms)
    }

    /// The verdict for every feed at `now_ms`, and the partitions nobody reads.
    pub fn assess(&self, now_ms: i64) -> Assessment {
        let mut facts = self.facts();
        let facts = &mut *facts;
        let live_since_ms = now_ms.saturating_sub(self.peer_ttl_ms);
        let oldest_trusted_ms = now_ms.saturating_sub(self.max_age_ms);
        let source_blind = self.source_blind(facts, now_ms);
        let tail_blind = self.tail_blind(facts, now_ms);
        let store_blind = self.store_blind(facts, now_ms);
        let mut unowned_now: Vec<PartitionKey> = Vec::new();
        let mut sights = Vec::with_capacity(self.feeds.len());
        for (index, (_, mode)) in self.feeds.iter().enumerate() {
            let sight = match &facts.topics {
                None => Sight::Blind(Blindness::Starting),
                Some((metadata_at_ms, _)) => {
                    // With no partition at all, the metadata itself is what is known.
                    let mut verdict = Ok(i64::MAX);
                    for (topic, count) in &facts.feed_topics[index] {
                        let count = *count;
                        for partition in 0..count {
                            let key = (topic.clone(), partition);
                            let consumed = match mode {
                                FeedMode::Consume if !facts.joined => {
                                    consumed_read(facts, &key, live_since_ms, source_blind)
                                        .map_err(|_| Blindness::Starting)
                                }
                                FeedMode::Consume => {
                                    consumed_read(facts, &key, live_since_ms, source_blind)
                                }
                                FeedMode::Tail => tailed_read(facts, &key, tail_blind),
                            };
                            // Read by no live report while reports cannot arrive: unknown,
                            // not unread.
                            let read = match consumed {
                                Err(Blindness::Unowned) if store_blind => Err(Blindness::StoreDown),
                                other => other,
                            };
                            if read == Err(Blindness::Unowned) {
                                unowned_now.push(key);
                            }
                            verdict = merge(verdict, read);
                        }
                    }
                    if verdict == Ok(i64::MAX) {
                        verdict = Ok(*metadata_at_ms);
                    }
                    match verdict {
                        Ok(through_ms) if through_ms < oldest_trusted_ms => {
                            Sight::Blind(Blindness::Stale)
                        }
                        Ok(through_ms) => Sight::Known { through_ms },
                        Err(blindness) => Sight::Blind(blindness),
                    }
                }
            };
            sights.push(sight);
        }
        unowned_now.sort_unstable();
        unowned_now.dedup();
        facts
            .unowned_since_ms
            .retain(|key, _| unowned_now.binary_search(key).is_ok());
        for key in unowned_now {
            facts.unowned_since_ms.entry(key).or_insert(now_ms);
        }
        let mut unowned: Vec<(PartitionKey, i64)> = facts
            .unowned_since_ms
            .iter()
            .map(|(key, since)| (key.clone(), *since))
            .collect();
        unowned.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let feeds = sights
            .into_iter()
            .zip(facts.blind_since_ms.iter_mut())
            .map(|(sight, blind_since)| {
                match sight {
                    Sight::Known { .. } => *blind_since = None,
                    Sight::Blind(_) => {
                        blind_since.get_or_insert(now_ms);
                    }
                }
                FeedSight {
                    sight,
                    blind_since_ms: *blind_since,
                }
            })
            .collect();
        Assessment { feeds, unowned }
    }
}

/// The best any live reader knows of a consumed partition.
fn consumed_read(
    facts: &Facts,
    key: &PartitionKey,
    live_since_ms: i64,
    source_blind: bool,
) -> Result<i64, Blindness> {
    let mut owned = false;
    let mut best: Option<i64> = None;
    let mut blindness = Blindness::Behind;
    if let Some(own) = facts.own.get(key) {
        owned = true;
        if source_blind {
            blindness = Blindness::SourceDown;
        } else {
            best = best.max(*own);
        }
    }
    for report in facts.peers.values() {
        if report.at_ms < live_since_ms {
            continue;
        }
        if let Some(peer) = report.partitions.get(key) {
            owned = true;
            best = best.max(*peer);
        }
    }
    match (owned, best) {
        // Kafka does not answer this replica: an assignment lost meanwhile (the session timed
        // out) is the outage's doing, told by `FreshwatchSourceDown`, not unread partitions.
        (false, _) if source_blind => Err(Blindness::SourceDown),
        (false, _) => Err(Blindness::Unowned),
        (true, Some(through_ms)) => Ok(through_ms),
        (true, None) => Err(blindness),
    }
}

fn tailed_read(facts: &Facts, key: &PartitionKey, tail_blind: bool) -> Result<i64, Blindness> {
    if tail_blind {
        return Err(Blindness::SourceDown);
    }
    facts.tail.get(key).copied().ok_or(Blindness::Behind)
}

/// Known through the earliest of the two; blind for the weightier reason.
fn merge(verdict: Result<i64, Blindness>, read: Result<i64, Blindness>) -> Result<i64, Blindness> {
    match (verdict, read) {
        (Ok(through_ms), Ok(read_ms)) => Ok(through_ms.min(read_ms)),
        (Err(blindness), Ok(_)) | (Ok(_), Err(blindness)) => Err(blindness),
        (Err(first), Err(second)) => Err(if second.weight() > first.weight() {
            second
        } else {
            first
        }),
    }
}

/// Encodes a replica's reads for the state store: `topic:partition=through_ms` (or `-1` when
/// behind), comma separated. Kafka topic names hold only `[a-zA-Z0-9._-]`.
pub fn encode_reads(reads: &[(PartitionKey, ReadThrough)]) -> String {
    let mut text = String::new();
    for ((topic, partition), through) in reads {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(&format!("{topic}:{partition}={}", through.unwrap_or(-1)));
    }
    text
}

/// The inverse of [`encode_reads`]; `None` for text it did not write.
pub fn decode_reads(text: &str) -> Option<Vec<(PartitionKey, ReadThrough)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|entry| {
            let (partition_key, through) = entry.rsplit_once('=')?;
            let (topic, partition) = partition_key.rsplit_once(':')?;
            let through: i64 = through.parse().ok()?;
            Some((
                (topic.to_owned(), partition.parse().ok()?),
                (through >= 0).then_some(through),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;

/// Per feed (by index), the alert that pages for its blindness now, if another alert does: read
/// by the API and the status page as `held_by`.
#[derive(Debug, Clone, Default)]
pub struct HeldBy(Arc<std::sync::Mutex<Vec<Option<&'static str>>>>);

impl HeldBy {
    pub fn new(feeds: usize) -> HeldBy {
        HeldBy(Arc::new(std::sync::Mutex::new(vec![None; feeds])))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<&'static str>>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The cause holding feed `index`, if any.
    pub fn get(&self, index: usize) -> Option<&'static str> {
        self.lock().get(index).copied().flatten()
    }
}
