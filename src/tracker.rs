//! The table of series and their last-seen event time: what the source writes and everyone
//! else reads.
//!
//! A record costs one hash lookup by borrowed key bytes and a max; a known key allocates nothing.
//! The tracker also remembers what changed since the last look, so the evaluator and the state
//! flush never scan the whole table:
//! - `new_series`: series the evaluator has not scheduled yet;
//! - `refreshed`: series that were alerting and just got a record (to resolve quickly);
//! - `dirty`: series whose last-seen or status must be written to the state store.
//!
//! On a feed with `thresholds = "learned"` a record that moves last-seen forward also teaches
//! the series how stale it gets ([`crate::cadence`]): the staleness it reached before this
//! record arrived, weighted by the event-time gap the record closes, goes into its 24-byte
//! histogram. What is not learned:
//! - a sample that arrives while the feed is not known ([`Tracker::set_known`]: Kafka down,
//!   catching up): an outage or a backlog is not a cadence;
//! - a sample that ends while the series is alerting, the first time: an incident is not a
//!   cadence. Its log2 size is held back (one byte in the series' padding, not stored), and
//!   an alerting sample of the same size, give or take one bucket, that comes later is
//!   learned: a shape that keeps paging is the series' new normal, so no series is paged for
//!   good by thresholds it can never learn its way out of.
//!
//! The histograms sit beside the series (`FeedTrack::cadences`, same index), and only for
//! learned feeds, so a fixed feed's series pay nothing for them.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::cadence::{Cadence, Learned, OwnHours, WarmUp, Weekly};
use crate::config::FeedConfig;
use crate::model::{FeedIndex, SeriesId, Status};

/// `last_seen_ms` of a series that never had a record.
pub const NEVER: i64 = i64::MIN;

/// One tracked series.
#[derive(Debug, Clone)]
pub struct Series {
    key: Box<[u8]>,
    /// Newest event time seen, unix ms, or [`NEVER`].
    pub last_seen_ms: i64,
    /// Records counted since this process started.
    pub records: u64,
    /// The evaluator's verdict.
    pub status: Status,
    /// When `status` was entered, unix ms.
    pub status_since_ms: i64,
    /// When the current alert began (the first alerting status after a non-alerting one), so a
    /// resolve can say how long the whole incident lasted. Restored as `status_since_ms`.
    pub alert_since_ms: i64,
    /// The evaluator's next scheduled look, unix ms (`i64::MAX`: none).
    pub deadline_ms: i64,
    dirty: bool,
    /// Already listed in `refreshed` since the evaluator last looked.
    refresh_queued: bool,
    /// The log2 bucket of the last sample held back because it ended in an alert
    /// ([`NOTHING_HELD`]: none); fits in the struct's padding.
    held_bucket: u8,
}

/// `Series::held_bucket` when no sample is held back.
const NOTHING_HELD: u8 = u8::MAX;

impl Series {
    /// Whether a sample of staleness `reached_ms` is learned: always when the series is not
    /// alerting; when it is, only if an alerting sample of about its size (one log2 bucket
    /// either way) was held back before (the shape recurs), else it is held back.
    fn learns_sample(&mut self, reached_ms: i64) -> bool {
        if self.status.severity().is_none() {
            return true;
        }
        let bucket = crate::cadence::bucket_of(reached_ms) as u8;
        if self.held_bucket != NOTHING_HELD && self.held_bucket.abs_diff(bucket) <= 1 {
            return true;
        }
        self.held_bucket = bucket;
        false
    }

    fn new(key: Box<[u8]>) -> Self {
        Series {
            key,
            last_seen_ms: NEVER,
            records: 0,
            status: Status::Unknown,
            status_since_ms: 0,
            alert_since_ms: 0,
            deadline_ms: i64::MAX,
            dirty: false,
            refresh_queued: false,
            held_bucket: NOTHING_HELD,
        }
    }

    pub fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// The split value as text, as labels, the API, logs and dedup keys show it: see
    /// [`render_key`]. `""` for an unsplit feed.
    pub fn key(&self) -> Cow<'_, str> {
        render_key(&self.key)
    }

    pub fn last_seen(&self) -> Option<i64> {
        (self.last_seen_ms != NEVER).then_some(self.last_seen_ms)
    }
}

/// A split value as text, one-to-one with its bytes: UTF-8 as is, except that a backslash is
/// doubled, control characters are written `\u{..}` (no forged log lines, no terminal escapes)
/// and bytes that are not UTF-8 are written `\xNN`. So two binary keys (Java longs 154 and 155)
/// never become one series name, one incident or one metric series.
pub fn render_key(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.chars().any(|c| c == '\\' || c.is_control()) {
            return Cow::Borrowed(text);
        }
    }
    let mut rendered = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => rendered.push_str("\\\\"),
                c if c.is_control() => rendered.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => rendered.push(c),
            }
        }
        for byte in chunk.invalid() {
            rendered.push_str(&format!("\\x{byte:02x}"));
        }
    }
    Cow::Owned(rendered)
}

/// All series of one configured feed.
#[derive(Debug)]
pub struct FeedTrack {
    pub name: Arc<str>,
    pub split: bool,
    /// When freshwatch first started watching this feed (persisted), unix ms.
    pub watch_started_ms: i64,
    /// Most series this feed may hold; records with a new key beyond it are refused.
    pub max_keys: usize,
    /// Records refused because the feed was at `max_keys`.
    pub refused: u64,
    /// Records counted by its series since start (their `records` summed), kept as they are
    /// counted so a volume tick reads the feed's total without a pass over its series.
    pub records: u64,
    /// The newest event time over its series, unix ms ([`NEVER`] before any): a pipeline's
    /// hop delay compares it across hops without a pass over the series.
    pub newest_ms: i64,
    /// `learn_min_gaps` of a learned feed; 0 for a fixed one (its series learn nothing).
    pub learn_min_gaps: u16,
    /// `learn_min_span` of a learned feed, ms.
    learn_min_span_ms: i64,
    /// When each expected value was first watched (persisted): a value added to `expected`
    /// later is `never_seen` only `critical_after` after it was added, not at once.
    pub expected_started_ms: hashbrown::HashMap<Box<[u8]>, i64>,
    /// A split feed with no `expected` value stands for itself (series 0, the empty key, which no
    /// record can have) until its first key is seen: a misspelt, deleted or never-written topic
    /// is then `never_seen` as a whole instead of having no series and never alerting.
    placeholder: bool,
    index: HashTable<u32>,
    series: Vec<Series>,
    /// A learned feed's cadence per series, by the same index; empty for a fixed feed.
    cadences: Vec<Cadence>,
    /// `learn_by_hour = true`: the feed's gaps by hour of the week.
    weekly: Option<Weekly>,
    /// A split `learn_by_hour` feed: each key's own hours of the day, by the same index as
    /// the series; empty otherwise.
    own_hours: Vec<OwnHours>,
    /// Whether the feed is known now ([`Tracker::set_known`]): only then is anything learned.
    known: bool,
}

impl FeedTrack {
    /// Every series, the retired placeholder included (index = [`SeriesId::index`]).
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// How many leading series are not shown (the placeholder, once a real key exists).
    pub fn hidden(&self) -> usize {
        usize::from(self.placeholder_retired())
    }

    /// The placeholder stopped standing for the feed: it has real keys now.
    pub fn placeholder_retired(&self) -> bool {
        self.placeholder && self.series.len() > 1
    }

    /// When a learned feed's summaries are used.
    fn warm_up(&self) -> WarmUp {
        WarmUp {
            gaps: self.learn_min_gaps,
            span_ms: self.learn_min_span_ms,
        }
    }

    /// The learned cadence of series `index` (empty for a fixed feed's series).
    pub fn cadence(&self, index: usize) -> Cadence {
        self.cadences.get(index).copied().unwrap_or_default()
    }

    /// A split `learn_by_hour` feed's key's own hours of the day (`None` otherwise).
    pub fn own_hours(&self, index: usize) -> Option<OwnHours> {
        self.own_hours.get(index).copied()
    }

    /// What series `index` is judged by: its cadence, the feed's hours and its own.
    pub fn learned(&self, index: usize) -> Learned<'_> {
        Learned {
            cadence: self.cadence(index),
            hours: self.weekly.as_ref(),
            own_hours: self.own_hours.get(index),
            since_ms: self.series[index].last_seen(),
        }
    }

    /// Whether each key keeps its own hours: a split feed learning by hour.
    fn keeps_own_hours(&self) -> bool {
        self.split && self.weekly.is_some()
    }

    /// The feed's gaps by hour of the week (`learn_by_hour`).
    pub fn weekly(&self) -> Option<&Weekly> {
        self.weekly.as_ref()
    }

    /// Whether a stored series of this feed has a place in the table: an unsplit feed has only
    /// the empty key; a split feed has its split values, and the empty key only while it has a
    /// placeholder. The placeholder's verdict is kept like any series', so a misspelt topic's
    /// `never_seen` is restored at a reload or restart instead of paging again.
    fn holds_key(&self, key: &[u8]) -> bool {
        if key.is_empty() {
            !self.split || self.placeholder
        } else {
            self.split
        }
    }

    /// Split values seen (or expected), not counting the placeholder.
    pub fn keys(&self) -> usize {
        self.series.len() - usize::from(self.placeholder)
    }
}

/// Per topic, per partition: the next offset to commit once the tracker's state is safe.
pub type Positions = hashbrown::HashMap<String, Vec<i64>>;

/// The series table.
#[derive(Debug)]
pub struct Tracker {
    feeds: Vec<FeedTrack>,
    hasher: hashbrown::DefaultHashBuilder,
    new_series: Vec<SeriesId>,
    refreshed: Vec<SeriesId>,
    dirty: Vec<SeriesId>,
    /// Feeds that refused their first key since the last look.
    newly_full: Vec<FeedIndex>,
    /// `learn_by_hour` feeds where an hour of the week ended its warm-up since the last look:
    /// their series may be judged by tighter thresholds now.
    hours_warmed: Vec<FeedIndex>,
    positions: Positions,
    positions_changed: bool,
    /// `[[pipeline.audit]]`s: counted here, as records are, so under the same lock and flushed
    /// before the same commit.
    pub audits: Vec<crate::audit::AuditTrack>,
    /// Per feed, the audits it is a side of.
    audit_sides: Vec<Vec<(usize, crate::audit::Side)>>,
}

/// Key equality without a `memcmp` call for the empty key of unsplit feeds, which profiling
/// showed dominating an unsplit feed's hot path.
fn same_key(candidate: &[u8], key: &[u8]) -> bool {
    candidate.len() == key.len() && (key.is_empty() || candidate == key)
}

impl Tracker {
    /// Creates the unsplit feeds' series and the expected split values, all not yet seen.
    pub fn new(feeds: &[FeedConfig], now_ms: i64) -> Self {
        let mut tracker = Tracker {
            feeds: feeds
                .iter()
                .map(|feed| FeedTrack {
                    name: feed.name.clone(),
                    split: feed.split.is_some(),
                    watch_started_ms: now_ms,
                    max_keys: feed.max_keys.max(1),
                    refused: 0,
                    records: 0,
                    newest_ms: NEVER,
                    learn_min_gaps: feed.learning.map_or(0, |learning| learning.min_gaps),
                    learn_min_span_ms: feed.learning.map_or(0, |learning| learning.min_span_ms),
                    expected_started_ms: hashbrown::HashMap::new(),
                    placeholder: feed.split.is_some() && feed.expected.is_empty(),
                    index: HashTable::new(),
                    series: Vec::new(),
                    cadences: Vec::new(),
                    weekly: feed.week_clock().map(Weekly::new),
                    own_hours: Vec::new(),
                    known: true,
                })
                .collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            new_series: Vec::new(),
            refreshed: Vec::new(),
            dirty: Vec::new(),
            newly_full: Vec::new(),
            hours_warmed: Vec::new(),
            audits: Vec::new(),
            audit_sides: Vec::new(),
            positions: Positions::default(),
            positions_changed: false,
        };
        for (feed_index, feed) in feeds.iter().enumerate() {
            let feed_index = feed_index as FeedIndex;
            if feed.split.is_none() || tracker.feeds[feed_index as usize].placeholder {
                tracker.series_for(feed_index, b"", false);
            }
            for value in &feed.expected {
                tracker.series_for(feed_index, value.as_bytes(), false);
            }
        }
        tracker
    }

    /// Looks up the series for `key`, creating it unless the feed is full (`bounded`) or
    /// there are 2^32 already; only a new key allocates.
    fn series_for(&mut self, feed: FeedIndex, key: &[u8], bounded: bool) -> Option<SeriesId> {
        let hash = self.hasher.hash_one(key);
        let track = &mut self.feeds[feed as usize];
        let series = &track.series;
        if let Some(&index) = track
            .index
            .find(hash, |&index| same_key(&series[index as usize].key, key))
        {
            return Some(SeriesId { feed, index });
        }
        if bounded && track.keys() >= track.max_keys {
            if track.refused == 0 {
                self.newly_full.push(feed);
            }
            track.refused += 1;
            return None;
        }
        let index = u32::try_from(track.series.len()).ok()?;
        track.series.push(Series::new(key.into()));
        if track.learn_min_gaps != 0 {
            track.cadences.push(Cadence::default());
        }
        if track.keeps_own_hours() {
            track.own_hours.push(OwnHours::default());
        }
        let hasher = &self.hasher;
        let series = &track.series;
        track.index.insert_unique(hash, index, |&existing| {
            hasher.hash_one(&*series[existing as usize].key)
        });
        let id = SeriesId { feed, index };
        self.new_series.push(id);
        if index == 1 && track.placeholder {
            // The feed's first key: its placeholder is judged once more, and resolves.
            self.new_series.push(SeriesId { feed, index: 0 });
        }
        Some(id)
    }

    /// The placeholder of a feed that has real keys: always `ok`, never scheduled, not shown.
    /// Sets up the audits of `pipelines` (at start; feeds by name).
    pub fn set_audits(&mut self, pipelines: &[crate::config::PipelineConfig]) {
        use crate::audit::{AuditTrack, Side};
        let index = |name: &str| {
            self.feeds
                .iter()
                .position(|feed| *feed.name == *name)
                .map(|index| index as FeedIndex)
        };
        let mut audits = Vec::new();
        for audit in pipelines.iter().flat_map(|pipeline| &pipeline.audits) {
            if let (Some(from), Some(to)) = (index(&audit.from), index(&audit.to)) {
                audits.push(AuditTrack::new(audit.clone(), from, to));
            }
        }
        self.audit_sides = vec![Vec::new(); self.feeds.len()];
        for (position, audit) in audits.iter().enumerate() {
            self.audit_sides[audit.from as usize].push((position, Side::Upstream));
            self.audit_sides[audit.to as usize].push((position, Side::Downstream));
        }
        self.audits = audits;
    }

    /// The audits `feed` is a side of (empty for most feeds).
    pub fn audit_sides(&self, feed: FeedIndex) -> &[(usize, crate::audit::Side)] {
        self.audit_sides
            .get(feed as usize)
            .map_or(&[], Vec::as_slice)
    }

    pub fn retired(&self, id: SeriesId) -> bool {
        id.index == 0 && self.feeds[id.feed as usize].placeholder_retired()
    }

    /// Counts a record with event time `event_ms`; last-seen only moves forward. `None` when the
    /// key is new and the feed is at `max_keys`. Learns as if it arrived at its event time.
    pub fn observe(&mut self, feed: FeedIndex, key: &[u8], event_ms: i64) -> Option<SeriesId> {
        self.observe_many(feed, key, event_ms, event_ms, 1)
    }

    /// Like [`Tracker::observe`] for a record that arrived (Kafka accepted it, or it was read)
    /// at `arrival_ms`: the staleness learned includes the lag between event and arrival.
    pub fn observe_at(
        &mut self,
        feed: FeedIndex,
        key: &[u8],
        event_ms: i64,
        arrival_ms: i64,
    ) -> Option<SeriesId> {
        self.observe_many(feed, key, event_ms, arrival_ms, 1)
    }

    /// Whether records of `feed` read from now on may teach it: [`crate::knowledge`]'s verdict
    /// ([`crate::knowledge::FeedSight::learns`]). While not (Kafka down, a backlog being read)
    /// records move last-seen but teach nothing.
    pub fn set_known(&mut self, feed: FeedIndex, known: bool) {
        self.feeds[feed as usize].known = known;
    }

    /// Whether records of `feed` teach it now (see [`Tracker::set_known`]).
    pub fn known(&self, feed: FeedIndex) -> bool {
        self.feeds[feed as usize].known
    }

    /// Feeds the knowledge rule from one assessment ([`crate::knowledge::FeedSight::learns`]).
    pub fn set_sights(&mut self, sights: &[crate::knowledge::FeedSight], now_ms: i64) {
        for (feed, sight) in sights.iter().enumerate() {
            let track = &mut self.feeds[feed];
            track.known = sight.learns(track.known, now_ms);
        }
    }

    /// Like [`Tracker::observe_at`] for `count` records whose newest event time is `event_ms`.
    pub fn observe_many(
        &mut self,
        feed: FeedIndex,
        key: &[u8],
        event_ms: i64,
        arrival_ms: i64,
        count: u64,
    ) -> Option<SeriesId> {
        let id = self.series_for(feed, key, true)?;
        let track = &mut self.feeds[feed as usize];
        let learn_min_gaps = track.learn_min_gaps;
        let warm_up = track.warm_up();
        let series = &mut track.series[id.index as usize];
        series.records += count;
        track.records += count;
        if event_ms > series.last_seen_ms {
            let learns = learn_min_gaps != 0 && series.last_seen_ms != NEVER && track.known;
            // The staleness reached just before this record arrived, and the time it weighs.
            let reached_ms = arrival_ms.max(event_ms).saturating_sub(series.last_seen_ms);
            let weight_ms = event_ms.saturating_sub(series.last_seen_ms);
            if learns && series.learns_sample(reached_ms) {
                if let Some(weekly) = &mut track.weekly {
                    if weekly.learn(
                        series.last_seen_ms,
                        series.last_seen_ms + reached_ms,
                        weight_ms,
                        event_ms,
                        warm_up,
                        track.own_hours.get_mut(id.index as usize),
                    ) && !self.hours_warmed.contains(&feed)
                    {
                        self.hours_warmed.push(feed);
                    }
                }
                if track.cadences[id.index as usize]
                    .learn_sample(reached_ms, weight_ms, event_ms, warm_up)
                    && !series.refresh_queued
                {
                    // Warm-up just ended: judged by its own thresholds now, not at the old
                    // deadline.
                    series.refresh_queued = true;
                    self.refreshed.push(id);
                }
            }
            series.last_seen_ms = event_ms;
            track.newest_ms = track.newest_ms.max(event_ms);
            if !series.dirty {
                series.dirty = true;
                self.dirty.push(id);
            }
            if series.status != Status::Ok && !series.refresh_queued {
                series.refresh_queued = true;
                self.refreshed.push(id);
            }
        }
        Some(id)
    }

    /// Merges persisted state at start: last-seen is a max, the status is taken as it was.
    pub fn restore(
        &mut self,
        feed: FeedIndex,
        key: &[u8],
        last_seen_ms: Option<i64>,
        status: Option<(Status, i64)>,
    ) {
        // Restored series are never refused: state must not be lost to a lowered max_keys.
        self.merge(feed, key, last_seen_ms, status, false);
    }

    /// Takes a series another replica wrote (a follower's periodic reload): bounded by
    /// `max_keys` like a record, so the shared state cannot grow this table without limit.
    pub fn merge_shared(
        &mut self,
        feed: FeedIndex,
        key: &[u8],
        last_seen_ms: Option<i64>,
        status: Option<(Status, i64)>,
    ) {
        self.merge(feed, key, last_seen_ms, status, true);
    }

    fn merge(
        &mut self,
        feed: FeedIndex,
        key: &[u8],
        last_seen_ms: Option<i64>,
        status: Option<(Status, i64)>,
        bounded: bool,
    ) {
        if !self.feeds[feed as usize].holds_key(key) {
            return;
        }
        let Some(id) = self.series_for(feed, key, bounded) else {
            return;
        };
        let series = &mut self.feeds[feed as usize].series[id.index as usize];
        if let Some((status, since_ms)) = status {
            series.status = status;
            series.status_since_ms = since_ms;
            series.alert_since_ms = since_ms;
        }
        // Another replica's fresher record must resolve an alert here, as a record would.
        if let Some(last_seen_ms) = last_seen_ms.filter(|&seen| seen > series.last_seen_ms) {
            series.last_seen_ms = last_seen_ms;
            let track = &mut self.feeds[feed as usize];
            track.newest_ms = track.newest_ms.max(last_seen_ms);
            let series = &mut track.series[id.index as usize];
            if series.status != Status::Ok && !series.refresh_queued {
                series.refresh_queued = true;
                self.refreshed.push(id);
            }
        }
    }

    /// Takes in a stored or shared copy of a series' learned cadence (restart, replica reload)
    /// by a bucket-wise max; a series that does not exist (refused by `max_keys`) is skipped.
    pub fn merge_cadence(&mut self, feed: FeedIndex, key: &[u8], cadence: &Cadence) {
        let track = &mut self.feeds[feed as usize];
        if track.learn_min_gaps == 0 || !track.holds_key(key) {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let series = &track.series;
        let Some(&index) = track
            .index
            .find(hash, |&index| same_key(&series[index as usize].key, key))
        else {
            return;
        };
        let series = &mut track.series[index as usize];
        let learned = &mut track.cadences[index as usize];
        let warm_up = WarmUp {
            gaps: track.learn_min_gaps,
            span_ms: track.learn_min_span_ms,
        };
        let was_warming_up = !learned.is_warm(warm_up);
        learned.merge(cadence);
        let id = SeriesId { feed, index };
        if was_warming_up && learned.is_warm(warm_up) && !series.refresh_queued {
            series.refresh_queued = true;
            self.refreshed.push(id);
        }
    }

    /// Takes in a stored or shared copy of a `learn_by_hour` feed's hours (restart, replica) by
    /// [`Weekly::merge`]; if that moved any hour's scale or warm-up, its series are judged again
    /// at the next look (replicas share every minute: a merge that changes no threshold costs
    /// no pass over a large feed).
    pub fn merge_weekly(&mut self, feed: FeedIndex, other: &Weekly) {
        let track = &mut self.feeds[feed as usize];
        let warm_up = track.warm_up();
        if let Some(weekly) = &mut track.weekly {
            let scales = |weekly: &Weekly| -> Vec<Option<i32>> {
                (0..crate::schedule::WEEK_HOURS)
                    .map(|hour| weekly.hour_shift(hour, warm_up))
                    .collect()
            };
            let before = scales(weekly);
            weekly.merge(other);
            if scales(weekly) != before && !self.hours_warmed.contains(&feed) {
                self.hours_warmed.push(feed);
            }
        }
    }

    /// Whether some feed's hours learned news since the last call ([`Weekly::take_news`]).
    pub fn take_hours_news(&mut self) -> bool {
        let mut news = false;
        for weekly in self
            .feeds
            .iter_mut()
            .filter_map(|feed| feed.weekly.as_mut())
        {
            // Every feed's news is taken, not only the first's.
            news |= weekly.take_news();
        }
        news
    }

    /// The `learn_by_hour` feeds an hour of which ended its warm-up, or that took in stored
    /// hours, since the last call.
    pub fn take_hours_warmed(&mut self) -> Vec<FeedIndex> {
        std::mem::take(&mut self.hours_warmed)
    }

    /// When `key` of `feed` was first watched: its own start for an expected value, else the
    /// feed's.
    pub fn watch_started(&self, id: SeriesId) -> i64 {
        let track = &self.feeds[id.feed as usize];
        track
            .expected_started_ms
            .get(&*track.series[id.index as usize].key)
            .copied()
            .unwrap_or(track.watch_started_ms)
    }

    pub fn set_expected_started(&mut self, feed: FeedIndex, value: &[u8], started_ms: i64) {
        self.feeds[feed as usize]
            .expected_started_ms
            .insert(value.into(), started_ms);
    }

    pub fn set_watch_started(&mut self, feed: FeedIndex, started_ms: i64) {
        self.feeds[feed as usize].watch_started_ms = started_ms;
    }

    pub fn feeds(&self) -> &[FeedTrack] {
        &self.feeds
    }

    pub fn feed(&self, feed: FeedIndex) -> &FeedTrack {
        &self.feeds[feed as usize]
    }

    pub fn series(&self, id: SeriesId) -> &Series {
        &self.feeds[id.feed as usize].series[id.index as usize]
    }

    /// The learned cadence of a series (empty for a fixed feed's).
    pub fn cadence(&self, id: SeriesId) -> Cadence {
        self.feeds[id.feed as usize].cadence(id.index as usize)
    }

    /// What a series is judged by: see [`FeedTrack::learned`].
    pub fn learned(&self, id: SeriesId) -> Learned<'_> {
        self.feeds[id.feed as usize].learned(id.index as usize)
    }

    pub fn series_mut(&mut self, id: SeriesId) -> &mut Series {
        &mut self.feeds[id.feed as usize].series[id.index as usize]
    }

    pub fn series_count(&self) -> usize {
        self.feeds.iter().map(|feed| feed.series.len()).sum()
    }

    /// Every series id, for a full pass (start-up, shutdown).
    pub fn all_ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.feeds.iter().enumerate().flat_map(|(feed, track)| {
            (0..track.series.len() as u32).map(move |index| SeriesId {
                feed: feed as FeedIndex,
                index,
            })
        })
    }

    /// Sets a verdict and queues the series for the next state flush.
    pub fn set_status(&mut self, id: SeriesId, status: Status, since_ms: i64) {
        let series = &mut self.feeds[id.feed as usize].series[id.index as usize];
        if status.severity().is_some() && series.status.severity().is_none() {
            series.alert_since_ms = since_ms;
        }
        series.status = status;
        series.status_since_ms = since_ms;
        self.mark_dirty(id);
    }

    /// Queues a series for the next state flush (also used to retry a failed flush).
    pub fn mark_dirty(&mut self, id: SeriesId) {
        let series = &mut self.feeds[id.feed as usize].series[id.index as usize];
        if !series.dirty {
            series.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Queues every series for the next state flush: the store lost them.
    pub fn mark_all_dirty(&mut self) {
        let ids: Vec<SeriesId> = self.all_ids().collect();
        for id in ids {
            self.mark_dirty(id);
        }
    }

    /// Feeds that hit `max_keys` since the last call.
    pub fn take_newly_full(&mut self) -> Vec<FeedIndex> {
        std::mem::take(&mut self.newly_full)
    }

    pub fn take_new_series(&mut self) -> Vec<SeriesId> {
        std::mem::take(&mut self.new_series)
    }

    pub fn take_refreshed(&mut self) -> Vec<SeriesId> {
        let refreshed = std::mem::take(&mut self.refreshed);
        for id in &refreshed {
            self.feeds[id.feed as usize].series[id.index as usize].refresh_queued = false;
        }
        refreshed
    }

    /// Hands the changed series to the state flush and forgets they changed.
    pub fn take_dirty(&mut self) -> Vec<SeriesId> {
        let dirty = std::mem::take(&mut self.dirty);
        for id in &dirty {
            self.feeds[id.feed as usize].series[id.index as usize].dirty = false;
        }
        dirty
    }

    /// Records that everything before `next_offset` in this partition is in the table.
    pub fn advance_position(&mut self, topic: &str, partition: i32, next_offset: i64) {
        let Ok(partition) = usize::try_from(partition) else {
            return;
        };
        let offsets = match self.positions.get_mut(topic) {
            Some(offsets) => offsets,
            None => self.positions.entry(topic.to_owned()).or_default(),
        };
        if offsets.len() <= partition {
            offsets.resize(partition + 1, -1);
        }
        if next_offset > offsets[partition] {
            offsets[partition] = next_offset;
            self.positions_changed = true;
        }
    }

    /// A flush failed: offer the positions again at the next one.
    pub fn requeue_positions(&mut self) {
        self.positions_changed = true;
    }

    /// The positions to commit, if any moved since the last call.
    pub fn take_positions(&mut self) -> Option<Positions> {
        if !self.positions_changed {
            return None;
        }
        self.positions_changed = false;
        Some(self.positions.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SplitRule, TimestampRule, TopicMatcher};
    use std::time::Duration;

    fn feed(name: &str, split: bool, expected: &[&str]) -> FeedConfig {
        FeedConfig {
            name: Arc::from(name),
            topics: TopicMatcher::Exact(name.to_owned()),
            split: split.then_some(SplitRule::Key),
            timestamp: TimestampRule::Record,
            warn_after: Duration::from_secs(60),
            critical_after: Duration::from_secs(120),
            expected: expected.iter().map(|value| value.to_string()).collect(),
            mode: crate::config::FeedMode::Consume,
            max_keys: 1_000,
            max_key_bytes: 256,
            hold: Duration::ZERO,
            rollup_after: 20,
            windows: Vec::new(),
            learning: None,
        }
    }

    #[test]
    fn the_held_back_sample_costs_no_memory_it_sits_in_the_series_padding() {
        assert_eq!(std::mem::size_of::<Series>(), 64);
    }

    #[test]
    fn unsplit_feeds_and_expected_keys_exist_before_any_record() {
        let tracker = Tracker::new(
            &[
                feed("orders", false, &[]),
                feed("profiles", true, &["acme"]),
            ],
            5,
        );
        assert_eq!(tracker.series_count(), 2);
        assert_eq!(tracker.feed(0).series()[0].key(), "");
        assert_eq!(tracker.feed(1).series()[0].key(), "acme");
        assert_eq!(tracker.feed(1).series()[0].last_seen(), None);
        assert_eq!(tracker.feed(1).watch_started_ms, 5);
    }

    #[test]
    fn an_unsplit_feed_keeps_one_series_however_many_records_arrive() {
        let mut tracker = Tracker::new(&[feed("orders", false, &[])], 0);
        for at in 0..1_000 {
            tracker.observe(0, b"", at);
        }
        assert_eq!(tracker.series_count(), 1);
        assert_eq!(tracker.feed(0).series()[0].records, 1_000);
    }

    #[test]
    fn last_seen_is_a_max_and_never_moves_backwards() {
        let mut tracker = Tracker::new(&[feed("profiles", true, &[])], 0);
        let id = tracker.observe(0, b"acme", 1_000).unwrap();
        tracker.observe(0, b"acme", 500);
        tracker.observe(0, b"acme", 900);
        assert_eq!(tracker.series(id).last_seen(), Some(1_000));
        assert_eq!(tracker.series(id).records, 3);
        tracker.observe(0, b"acme", 2_000);
        assert_eq!(tracker.series(id).last_seen(), Some(2_000));
    }

    #[test]
    fn keys_are_interned_once() {
        let mut tracker = Tracker::new(&[feed("profiles", true, &[])], 0);
        for round in 0..3 {
            for tenant in 0..100 {
                tracker.observe(0, format!("t{tenant}").as_bytes(), round);
            }
        }
        assert_eq!(tracker.feed(0).keys(), 100);
        let new = tracker.take_new_series();
        assert_eq!(new.iter().filter(|id| id.index != 0).count(), 100);
        assert!(tracker.take_new_series().is_empty());
    }

    #[test]
    fn a_split_feed_without_expected_values_stands_for_itself_until_its_first_key() {
        let mut feeds = [feed("profiles", true, &[]), feed("billing", true, &["eu"])];
        feeds[0].max_keys = 2;
        let mut tracker = Tracker::new(&feeds, 0);
        let placeholder = SeriesId { feed: 0, index: 0 };
        assert_eq!(tracker.series(placeholder).key_bytes(), b"");
        assert_eq!(
            tracker.feed(0).hidden(),
            0,
            "shown while the feed has no key"
        );
        assert_eq!(tracker.feed(0).keys(), 0);
        assert_eq!(
            tracker.feed(1).series().len(),
            1,
            "expected values need none"
        );
        tracker.take_new_series();

        tracker.observe(0, b"acme", 5);
        assert!(tracker.retired(placeholder));
        assert_eq!(tracker.feed(0).hidden(), 1);
        assert!(
            tracker.take_new_series().contains(&placeholder),
            "judged once more, to resolve"
        );
        tracker.observe(0, b"globex", 5);
        assert_eq!(
            tracker.observe(0, b"initech", 5),
            None,
            "max_keys counts keys only"
        );
        assert_eq!(tracker.feed(0).keys(), 2);
    }

    #[test]
    fn a_full_feed_refuses_new_keys_counts_them_and_reports_once() {
        let mut bounded = feed("profiles", true, &["acme"]);
        bounded.max_keys = 3;
        let mut tracker = Tracker::new(&[bounded], 0);
        assert!(tracker.observe(0, b"b", 1).is_some());
        assert!(tracker.observe(0, b"c", 1).is_some());
        assert!(tracker.observe(0, b"d", 1).is_none());
        assert!(tracker.observe(0, b"e", 1).is_none());
        assert!(
            tracker.observe(0, b"acme", 5).is_some(),
            "known keys still refresh"
        );
        assert_eq!(tracker.series_count(), 3);
        assert_eq!(tracker.feed(0).refused, 2);
        assert_eq!(tracker.take_newly_full(), vec![0]);
        assert!(tracker.take_newly_full().is_empty());
        tracker.restore(0, b"z", Some(9), None);
        assert_eq!(tracker.series_count(), 4, "restored state is never refused");
    }

    #[test]
    fn dirty_lists_each_changed_series_once_until_taken() {
        let mut tracker = Tracker::new(&[feed("profiles", true, &[])], 0);
        tracker.observe(0, b"a", 1);
        tracker.observe(0, b"a", 2);
        tracker.observe(0, b"b", 1);
        assert_eq!(tracker.take_dirty().len(), 2);
        assert!(tracker.take_dirty().is_empty());
        tracker.observe(0, b"a", 1);
        assert!(
            tracker.take_dirty().is_empty(),
            "an older record changes nothing"
        );
        tracker.observe(0, b"a", 3);
        assert_eq!(tracker.take_dirty().len(), 1);
    }

    #[test]
    fn a_record_on_an_alerting_series_is_reported_as_refreshed() {
        let mut tracker = Tracker::new(&[feed("orders", false, &[])], 0);
        let id = SeriesId { feed: 0, index: 0 };
        tracker.set_status(id, Status::Ok, 0);
        tracker.observe(0, b"", 10);
        assert!(tracker.take_refreshed().is_empty());
        tracker.set_status(id, Status::Critical, 0);
        tracker.observe(0, b"", 20);
        tracker.observe(0, b"", 30);
        assert_eq!(
            tracker.take_refreshed(),
            vec![id],
            "listed once however many records"
        );
        tracker.observe(0, b"", 40);
        assert_eq!(tracker.take_refreshed(), vec![id]);
    }

    #[test]
    fn restore_merges_by_max_and_restores_split_keys() {
        let mut tracker = Tracker::new(&[feed("profiles", true, &[])], 0);
        tracker.observe(0, b"acme", 50);
        tracker.restore(0, b"acme", Some(40), Some((Status::Critical, 7)));
        tracker.restore(0, b"globex", Some(30), None);
        let acme = tracker.series(SeriesId { feed: 0, index: 1 });
        assert_eq!(acme.last_seen(), Some(50));
        assert_eq!(acme.status, Status::Critical);
        assert_eq!(tracker.feed(0).keys(), 2);
    }

    #[test]
    fn a_split_feeds_placeholder_is_restored_like_any_series() {
        let mut feeds = [feed("typo", true, &[]), feed("billing", true, &["eu"])];
        feeds[0].max_keys = 1;
        let mut tracker = Tracker::new(&feeds, 0);
        tracker.restore(0, b"", None, Some((Status::NeverSeen, 7)));
        let placeholder = tracker.series(SeriesId { feed: 0, index: 0 });
        assert_eq!(
            placeholder.status,
            Status::NeverSeen,
            "its page is not sent again"
        );
        assert_eq!(placeholder.status_since_ms, 7);
        assert_eq!(tracker.feed(0).series().len(), 1, "no second empty key");
        tracker.restore(1, b"", None, Some((Status::NeverSeen, 7)));
        assert_eq!(
            tracker.feed(1).series().len(),
            1,
            "a feed with expected values has no placeholder to restore"
        );
    }

    #[test]
    fn positions_only_move_forward() {
        let mut tracker = Tracker::new(&[feed("orders", false, &[])], 0);
        assert!(tracker.take_positions().is_none());
        tracker.advance_position("orders", 2, 10);
        tracker.advance_position("orders", 2, 5);
        let positions = tracker.take_positions().unwrap();
        assert_eq!(positions["orders"], vec![-1, -1, 10]);
        assert!(tracker.take_positions().is_none());
    }

    #[test]
    fn binary_keys_stay_apart_and_record_data_cannot_forge_a_line() {
        let java_long = |value: i64| value.to_be_bytes();
        let (first, second) = (java_long(154), java_long(155));
        assert_ne!(render_key(&first), render_key(&second));
        assert_eq!(
            render_key(&first),
            "\\u{0}\\u{0}\\u{0}\\u{0}\\u{0}\\u{0}\\u{0}\\x9a"
        );
        assert_eq!(render_key(b"acme"), "acme");
        assert!(matches!(render_key(b"acme"), Cow::Borrowed(_)));
        assert_eq!(render_key(b"a\nforged"), "a\\u{a}forged");
        assert_eq!(render_key(b"\x1b[2J"), "\\u{1b}[2J");
        // A backslash is doubled, so the escaped form of one key is never another key.
        assert_ne!(render_key(b"\\x9a"), render_key(&[0x9a]));
        assert_eq!(render_key(b"\\x9a"), "\\\\x9a");
    }

    #[test]
    fn a_followers_reload_is_bounded_by_max_keys_but_a_restore_at_start_is_not() {
        let mut feeds = [feed("profiles", true, &[])];
        feeds[0].max_keys = 2;
        let mut tracker = Tracker::new(&feeds, 0);
        for key in [&b"a"[..], b"b", b"c"] {
            tracker.merge_shared(0, key, Some(1), None);
        }
        assert_eq!(tracker.feed(0).keys(), 2, "the third is refused");
        assert_eq!(tracker.take_newly_full(), vec![0]);
        tracker.restore(0, b"d", Some(1), None);
        assert_eq!(
            tracker.feed(0).keys(),
            3,
            "state at start is never lost to a lowered max_keys"
        );
    }
}
