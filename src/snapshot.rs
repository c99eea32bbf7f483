//! How the read endpoints (`/metrics`, `/api/v1/feeds`, the status page) read the series table:
//! in place, a chunk at a time, with no second copy of it.
//!
//! A read holds the tracker lock for one chunk of series ([`CHUNK`]) at a time, so a scrape of a
//! million series never holds the lock the consumer thread needs for more than one chunk. What
//! leaves the lock is only what the read returns: counts, the 24-byte [`Place`] of each series it
//! orders, and copies ([`SeriesView`]) of the series it shows. An earlier design kept a whole copy
//! of the table after the first scrape; at a million keys that copy, its rendered keys and the
//! rows built from it cost more than the table.

use std::cmp::Ordering as CmpOrdering;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cadence::{Cadence, Learned, OwnHours, Weekly};
use crate::model::Status;
use crate::tracker::{FeedTrack, Series, Tracker, NEVER};

/// Series read per hold of the tracker lock.
pub const CHUNK: usize = 4096;

/// One series as the read endpoints show it: a copy, taken only for series a read returns.
#[derive(Debug, Clone)]
pub struct SeriesView {
    /// The rendered split value (see [`crate::tracker::render_key`]).
    pub key: Arc<str>,
    pub last_seen_ms: i64,
    pub records: u64,
    pub status: Status,
    pub status_since_ms: i64,
    /// A learned feed's cadence of this series (empty for a fixed feed).
    pub cadence: Cadence,
    /// A split `learn_by_hour` feed's key: its own hours of the day.
    pub own_hours: Option<OwnHours>,
}

impl SeriesView {
    fn of(track: &FeedTrack, index: usize) -> SeriesView {
        let series = &track.series()[index];
        let cadence = track.cadence(index);
        SeriesView {
            key: Arc::from(series.key()),
            last_seen_ms: series.last_seen_ms,
            records: series.records,
            status: series.status,
            status_since_ms: series.status_since_ms,
            cadence,
            own_hours: track.own_hours(index),
        }
    }

    pub fn last_seen(&self) -> Option<i64> {
        (self.last_seen_ms != NEVER).then_some(self.last_seen_ms)
    }

    /// What this series is judged by, with its feed's hours ([`FeedHead::weekly`]).
    pub fn learned<'a>(&'a self, weekly: Option<&'a Weekly>) -> Learned<'a> {
        Learned {
            cadence: self.cadence,
            hours: weekly,
            own_hours: self.own_hours.as_ref(),
            since_ms: self.last_seen(),
        }
    }
}

/// One feed as a read starts: what it needs besides the series.
#[derive(Debug, Clone)]
pub struct FeedHead {
    pub name: Arc<str>,
    pub refused: u64,
    /// Records counted on the feed since start, every key summed.
    pub records: u64,
    /// Series shown (the retired placeholder not counted).
    pub keys: usize,
    /// A `learn_by_hour` feed's hours.
    pub weekly: Option<Weekly>,
}

/// A series' place in the stalest-first order, without its key: status rank, then staleness
/// (never seen: the most), then feed name, then key (looked up only to break ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub rank: u8,
    pub staleness_ms: i64,
    pub feed: u32,
    pub index: u32,
}

impl Place {
    pub fn of(now_ms: i64, feed: usize, index: usize, series: &Series) -> Place {
        Place {
            rank: series.status.rank(),
            staleness_ms: series
                .last_seen()
                .map_or(i64::MAX, |seen| (now_ms - seen).max(0)),
            feed: feed as u32,
            index: index as u32,
        }
    }
}

/// The stalest-first order of places before their keys: `feed_order[feed]` is the feed's rank
/// by name.
fn coarse(feed_order: &[u32], a: &Place, b: &Place) -> CmpOrdering {
    b.rank
        .cmp(&a.rank)
        .then(b.staleness_ms.cmp(&a.staleness_ms))
        .then_with(|| feed_order[a.feed as usize].cmp(&feed_order[b.feed as usize]))
}

/// Puts the items that a full sort by `order` would place at `offset..offset + length` there,
/// sorted, and returns them; the rest is left in no order. O(n) on average, against O(n log n)
/// for sorting everything.
pub fn select_page<T>(
    items: &mut [T],
    offset: usize,
    length: usize,
    mut order: impl FnMut(&T, &T) -> CmpOrdering,
) -> &mut [T] {
    if offset >= items.len() || length == 0 {
        return &mut [];
    }
    let end = offset.saturating_add(length).min(items.len());
    if end < items.len() {
        // Everything before `end` now sorts before everything after it.
        items.select_nth_unstable_by(end, &mut order);
    }
    let head = &mut items[..end];
    if offset > 0 {
        head.select_nth_unstable_by(offset, &mut order);
    }
    let page = &mut head[offset..];
    page.sort_unstable_by(order);
    page
}

/// Reads the series table for the read endpoints.
#[derive(Debug)]
pub struct Snapshots {
    tracker: Arc<Mutex<Tracker>>,
}

impl Snapshots {
    pub fn new(tracker: Arc<Mutex<Tracker>>) -> Snapshots {
        Snapshots { tracker }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Every feed's head, in config order.
    pub fn heads(&self) -> Vec<FeedHead> {
        let tracker = self.lock();
        tracker
            .feeds()
            .iter()
            .map(|track| FeedHead {
                name: track.name.clone(),
                refused: track.refused,
                records: track.records,
                keys: track.series().len() - track.hidden().min(track.series().len()),
                weekly: track.weekly().cloned(),
            })
            .collect()
    }

    /// A copy of one feed's learned hours, without copying its series.
    pub fn hours(&self, feed: usize) -> Option<Weekly> {
        self.lock().feeds().get(feed)?.weekly().cloned()
    }

    /// Calls `visit` with each shown series of `feed` (its index, the series, what it is judged
    /// by) under the tracker lock, one chunk per hold. `visit` must not block or take locks.
    pub fn scan(&self, feed: usize, mut visit: impl FnMut(usize, &Series, Learned<'_>)) {
        let mut start = 0;
        loop {
            let tracker = self.lock();
            let Some(track) = tracker.feeds().get(feed) else {
                return;
            };
            let first = start.max(track.hidden());
            let end = (first + CHUNK).min(track.series().len());
            for index in first..end {
                visit(index, &track.series()[index], track.learned(index));
            }
            if end >= track.series().len() {
                return;
            }
            start = end;
        }
    }

    /// Copies the shown series of `feed` that `keep` admits, a chunk at a time, and hands each
    /// chunk's copies to `visit` outside the lock (so `visit` may block, e.g. on a slow client).
    pub fn copy(
        &self,
        feed: usize,
        mut keep: impl FnMut(&Series) -> bool,
        mut visit: impl FnMut(&[SeriesView]),
    ) {
        let mut start = 0;
        let mut chunk = Vec::new();
        loop {
            let done = {
                let tracker = self.lock();
                let Some(track) = tracker.feeds().get(feed) else {
                    return;
                };
                let first = start.max(track.hidden());
                let end = (first + CHUNK).min(track.series().len());
                chunk.extend(
                    (first..end)
                        .filter(|&index| keep(&track.series()[index]))
                        .map(|index| SeriesView::of(track, index)),
                );
                start = end;
                end >= track.series().len()
            };
            if !chunk.is_empty() {
                visit(&chunk);
                chunk.clear();
            }
            if done {
                return;
            }
        }
    }

    /// The place of every shown series of `feeds` that `admit` lets through. 24 bytes each.
    pub fn places(
        &self,
        feeds: &[usize],
        now_ms: i64,
        mut admit: impl FnMut(usize, &Series) -> bool,
    ) -> Vec<Place> {
        let mut places = Vec::new();
        for &feed in feeds {
            self.scan(feed, |index, series, _| {
                if admit(feed, series) {
                    places.push(Place::of(now_ms, feed, index, series));
                }
            });
        }
        places
    }

    /// Copies of the series at `places`, in the same order (a chunk per hold of the lock).
    pub fn copy_at(&self, places: &[Place]) -> Vec<SeriesView> {
        let mut views = Vec::with_capacity(places.len());
        for chunk in places.chunks(CHUNK) {
            let tracker = self.lock();
            views.extend(chunk.iter().map(|place| {
                let track: &FeedTrack = &tracker.feeds()[place.feed as usize];
                let index = place.index as usize;
                SeriesView::of(track, index)
            }));
        }
        views
    }

    /// Each feed's rank by name, the order ties between feeds are broken by.
    pub fn feed_order(heads: &[FeedHead]) -> Vec<u32> {
        let mut by_name: Vec<usize> = (0..heads.len()).collect();
        by_name.sort_by(|&a, &b| heads[a].name.cmp(&heads[b].name));
        let mut order = vec![0; heads.len()];
        for (rank, feed) in by_name.into_iter().enumerate() {
            order[feed] = rank as u32;
        }
        order
    }

    /// The series a full stalest-first sort of `places` would put at `offset..offset + length`,
    /// in order, without sorting or copying the rest: a selection by everything but the key,
    /// then, among the series tied with the page's first or last, the first by key, kept in a
    /// bounded heap (keys compared in place under the lock, copied only when kept).
    pub fn select(
        &self,
        places: &mut [Place],
        feed_order: &[u32],
        offset: usize,
        length: usize,
    ) -> Vec<(Place, SeriesView)> {
        let page = select_page(places, offset, length, |a, b| coarse(feed_order, a, b));
        let (Some(&first), Some(&last)) = (page.first(), page.last()) else {
            return Vec::new();
        };
        let before = places
            .iter()
            .filter(|place| coarse(feed_order, place, &first).is_lt())
            .count();
        let tied: Vec<Place> = places
            .iter()
            .filter(|place| {
                coarse(feed_order, place, &first).is_ge()
                    && coarse(feed_order, place, &last).is_le()
            })
            .copied()
            .collect();
        let wanted = offset - before + length;
        let order = |a: &(Place, Box<str>), b: &(Place, Box<str>)| {
            coarse(feed_order, &a.0, &b.0).then_with(|| a.1.cmp(&b.1))
        };
        // The `wanted` first of `tied`, worst last; a sorted Vec is enough for page sizes.
        let mut kept: Vec<(Place, Box<str>)> = Vec::with_capacity(wanted.min(CHUNK) + 1);
        for chunk in tied.chunks(CHUNK) {
            let tracker = self.lock();
            for place in chunk {
                let key = tracker.feeds()[place.feed as usize].series()[place.index as usize].key();
                // Deep pages keep every tied key and sort once (insertion would be quadratic).
                if kept.len() == wanted && wanted <= CHUNK {
                    let worst = &kept[wanted - 1];
                    let better = coarse(feed_order, place, &worst.0)
                        .then_with(|| (*key).cmp(&*worst.1))
                        .is_lt();
                    if !better {
                        continue;
                    }
                    kept.pop();
                }
                let candidate = (*place, Box::from(&*key));
                if wanted > CHUNK {
                    kept.push(candidate);
                    continue;
                }
                let at = kept
                    .binary_search_by(|known| order(known, &candidate))
                    .unwrap_or_else(|at| at);
                kept.insert(at, candidate);
            }
        }
        if wanted > CHUNK {
            kept.sort_by(order);
        }
        let shown: Vec<Place> = kept
            .into_iter()
            .take(wanted)
            .skip(offset - before)
            .map(|(place, _)| place)
            .collect();
        shown.iter().copied().zip(self.copy_at(&shown)).collect()
    }

    /// Every series at `places`, stalest first, handed to `visit` a batch at a time (about
    /// [`CHUNK`]; more when that many tie): memory is the places plus one batch's copies.
    /// `visit` returns false to stop (the client went away).
    pub fn stream_sorted(
        &self,
        places: &mut [Place],
        feed_order: &[u32],
        mut visit: impl FnMut(&[(Place, SeriesView)]) -> bool,
    ) {
        places.sort_unstable_by(|a, b| coarse(feed_order, a, b));
        let mut start = 0;
        while start < places.len() {
            let mut end = (start + CHUNK).min(places.len());
            // A batch ends between two places that differ before their keys.
            while end < places.len() && coarse(feed_order, &places[end - 1], &places[end]).is_eq() {
                end += 1;
            }
            let batch = &places[start..end];
            let mut rows: Vec<(Place, SeriesView)> =
                batch.iter().copied().zip(self.copy_at(batch)).collect();
            rows.sort_by(|a, b| coarse(feed_order, &a.0, &b.0).then_with(|| a.1.key.cmp(&b.1.key)));
            if !visit(&rows) {
                return;
            }
            start = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Arc<Mutex<Tracker>> {
        let text = r#"
            [kafka]
            brokers = "localhost:9092"
            [[feed]]
            name = "profiles"
            topic = "profiles"
            split_by = "key"
            warn_after = "1m"
            critical_after = "2m"
        "#;
        let config = crate::config::parse(text, std::path::Path::new("test.toml"), &|_| None)
            .expect("valid config");
        Arc::new(Mutex::new(Tracker::new(&config.feeds, 0)))
    }

    fn observe(tracker: &Mutex<Tracker>, key: &str, event_ms: i64) {
        tracker.lock().unwrap().observe(0, key.as_bytes(), event_ms);
    }

    fn keys(rows: &[(Place, SeriesView)]) -> Vec<String> {
        rows.iter().map(|(_, view)| view.key.to_string()).collect()
    }

    /// A selected page equals the same slice of a full sort, ties broken by key, across chunks.
    #[test]
    fn a_selection_equals_the_same_slice_of_a_full_sort_ties_broken_by_key() {
        let tracker = tracker();
        let snapshots = Snapshots::new(tracker.clone());
        let keys_total = 3 * CHUNK + 7;
        for index in 0..keys_total {
            // Many ties: 10 distinct event times.
            observe(&tracker, &format!("tenant-{index}"), (index % 10) as i64);
        }
        let heads = snapshots.heads();
        let order = Snapshots::feed_order(&heads);
        let mut everything = Vec::new();
        snapshots.stream_sorted(
            &mut snapshots.places(&[0], 100, |_, _| true),
            &order,
            |rows| {
                everything.extend(keys(rows));
                true
            },
        );
        assert_eq!(everything.len(), keys_total);
        let mut expected: Vec<(i64, String)> = (0..keys_total)
            .map(|index| ((index % 10) as i64, format!("tenant-{index}")))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let expected: Vec<String> = expected.into_iter().map(|(_, key)| key).collect();
        assert_eq!(everything, expected);
        for (offset, length) in [
            (0, 10),
            (1_230, 100),
            (keys_total - 5, 100),
            (0, 0),
            (2 * CHUNK, 100),
        ] {
            let mut places = snapshots.places(&[0], 100, |_, _| true);
            let page = snapshots.select(&mut places, &order, offset, length);
            let end = (offset + length).min(keys_total);
            assert_eq!(keys(&page), expected[offset..end], "{offset}+{length}");
        }
    }

    /// A copy hands out only the admitted series, a chunk at a time, and shows every change
    /// made before it.
    #[test]
    fn a_copy_takes_only_admitted_series_a_chunk_at_a_time() {
        let tracker = tracker();
        let snapshots = Snapshots::new(tracker.clone());
        for index in 0..(3 * CHUNK) {
            observe(&tracker, &format!("tenant-{index}"), index as i64);
        }
        let mut chunks = Vec::new();
        snapshots.copy(
            0,
            |series| series.last_seen_ms % 2 == 0,
            |chunk| chunks.push(chunk.len()),
        );
        assert_eq!(chunks, [CHUNK / 2, CHUNK / 2, CHUNK / 2]);
        observe(&tracker, "tenant-1", 99_999);
        let mut seen = Vec::new();
        snapshots.copy(
            0,
            |series| series.last_seen_ms == 99_999,
            |chunk| seen.extend(chunk.iter().map(|view| view.key.to_string())),
        );
        assert_eq!(seen, ["tenant-1"]);
    }
}
