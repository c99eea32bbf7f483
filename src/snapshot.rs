//! What the read endpoints (`/metrics`, `/api/v1/feeds`) serve: a copy of the series table.
//!
//! The copy is taken a chunk of series at a time, so a scrape of a million series never holds
//! the tracker lock (which the consumer thread needs for every batch) for more than one chunk.
//! Every reader gets a copy begun after it arrived (what it asks for after a change shows the
//! change); readers that arrive while a copy is taken wait for the next one and share it. A copy
//! reuses the previous copy's rendered keys (series are never removed, so an index keeps its
//! key): it allocates only for series that are new.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cadence::{Cadence, Learned, Weekly};
use crate::model::Status;
use crate::tracker::{Tracker, NEVER};

/// Series copied per hold of the tracker lock.
const CHUNK: usize = 4096;

/// One series as the read endpoints show it.
#[derive(Debug, Clone)]
pub struct SeriesView {
    /// The rendered split value (see [`crate::tracker::render_key`]).
    pub key: Arc<str>,
    pub last_seen_ms: i64,
    pub records: u64,
    pub status: Status,
    pub status_since_ms: i64,
}

impl SeriesView {
    pub fn last_seen(&self) -> Option<i64> {
        (self.last_seen_ms != NEVER).then_some(self.last_seen_ms)
    }
}

/// One feed's series.
#[derive(Debug, Clone)]
pub struct FeedView {
    pub name: Arc<str>,
    pub refused: u64,
    /// Every series by index; the first `hidden` are not shown (a retired placeholder).
    series: Vec<SeriesView>,
    /// A learned feed's cadence per series, by the same index (effective thresholds are
    /// derived at read time); empty for a fixed feed.
    cadences: Vec<Cadence>,
    /// A `learn_by_hour` feed's hours, as of the copy's last chunk.
    weekly: Option<Weekly>,
    hidden: usize,
}

impl FeedView {
    /// The series the read endpoints show.
    pub fn series(&self) -> &[SeriesView] {
        &self.series[self.hidden.min(self.series.len())..]
    }

    /// What the series at `position` in [`FeedView::series`] is judged by (see
    /// [`crate::tracker::FeedTrack::learned`]).
    pub fn learned(&self, position: usize) -> Learned<'_> {
        let index = self.hidden.min(self.series.len()) + position;
        Learned {
            cadence: self.cadences.get(index).copied().unwrap_or_default(),
            hours: self.weekly.as_ref(),
            since_ms: self.series.get(index).and_then(SeriesView::last_seen),
        }
    }
}

/// The whole table at one moment (per chunk: chunks may be a few microseconds apart).
#[derive(Debug)]
pub struct ReadView {
    taken_at: Option<Instant>,
    pub feeds: Vec<FeedView>,
}

/// Hands out copies of the series table.
#[derive(Debug)]
pub struct Snapshots {
    tracker: Arc<Mutex<Tracker>>,
    current: Mutex<Arc<ReadView>>,
    /// One refresh at a time; readers that wait for it then take its result.
    refreshing: Mutex<()>,
}

impl Snapshots {
    pub fn new(tracker: Arc<Mutex<Tracker>>) -> Snapshots {
        Snapshots {
            tracker,
            current: Mutex::new(Arc::new(ReadView {
                taken_at: None,
                feeds: Vec::new(),
            })),
            refreshing: Mutex::new(()),
        }
    }

    /// A copy begun after this call. Blocking: call it from a blocking context (the copy of a
    /// large table takes milliseconds).
    pub fn read(&self) -> Arc<ReadView> {
        let arrived = Instant::now();
        let fresh = |view: &Arc<ReadView>| view.taken_at.is_some_and(|taken| taken >= arrived);
        let _refreshing = self
            .refreshing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Another reader may have taken one while this one waited.
        let current = self.current();
        if fresh(&current) {
            return current;
        }
        let view = Arc::new(self.copy(&current));
        *self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = view.clone();
        view
    }

    /// A copy of one feed's learned hours, without copying its series.
    pub fn hours(&self, feed: usize) -> Option<Weekly> {
        let tracker = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        tracker.feeds().get(feed)?.weekly().cloned()
    }

    fn current(&self) -> Arc<ReadView> {
        self.current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn copy(&self, previous: &ReadView) -> ReadView {
        let taken_at = Some(Instant::now());
        let lock = || {
            self.tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
        };
        let names: Vec<Arc<str>> = lock()
            .feeds()
            .iter()
            .map(|feed| feed.name.clone())
            .collect();
        let mut feeds = Vec::with_capacity(names.len());
        for (index, name) in names.into_iter().enumerate() {
            let old = previous
                .feeds
                .get(index)
                .map_or(&[][..], |feed| &feed.series);
            let mut series: Vec<SeriesView> = Vec::with_capacity(old.len());
            let mut cadences: Vec<Cadence> = Vec::new();
            let (mut refused, mut hidden) = (0, 0);
            let weekly = loop {
                let tracker = lock();
                let track = &tracker.feeds()[index];
                refused = track.refused.max(refused);
                hidden = track.hidden().max(hidden);
                let start = series.len();
                let end = (start + CHUNK).min(track.series().len());
                for (offset, live) in track.series()[start..end].iter().enumerate() {
                    let key = match old.get(start + offset) {
                        Some(known) => known.key.clone(),
                        None => Arc::from(live.key()),
                    };
                    series.push(SeriesView {
                        key,
                        last_seen_ms: live.last_seen_ms,
                        records: live.records,
                        status: live.status,
                        status_since_ms: live.status_since_ms,
                    });
                }
                if track.learn_min_gaps != 0 {
                    cadences.extend((start..end).map(|index| track.cadence(index)));
                }
                if end == track.series().len() {
                    break track.weekly().cloned();
                }
            };
            feeds.push(FeedView {
                name,
                refused,
                series,
                cadences,
                weekly,
                hidden,
            });
        }
        ReadView { taken_at, feeds }
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

    #[test]
    fn a_copy_spans_many_chunks_shows_every_change_before_it_and_reuses_keys() {
        let tracker = tracker();
        let snapshots = Snapshots::new(tracker.clone());
        let keys = 3 * CHUNK + 7;
        for index in 0..keys {
            observe(&tracker, &format!("tenant-{index}"), index as i64);
        }
        let first = snapshots.read();
        assert_eq!(first.feeds[0].series().len(), keys);
        assert_eq!(&*first.feeds[0].series()[CHUNK + 1].key, "tenant-4097");
        assert_eq!(
            first.feeds[0].series()[keys - 1].last_seen(),
            Some(keys as i64 - 1)
        );

        // A read after a record shows it, in a new copy that reuses the rendered keys.
        observe(&tracker, "tenant-0", 99_999);
        let later = snapshots.read();
        assert!(!Arc::ptr_eq(&first, &later));
        assert_eq!(later.feeds[0].series()[0].last_seen(), Some(99_999));
        assert!(Arc::ptr_eq(
            &first.feeds[0].series()[5].key,
            &later.feeds[0].series()[5].key
        ));
    }

    #[test]
    fn series_added_while_a_copy_is_taken_are_in_the_next() {
        let tracker = tracker();
        let snapshots = Snapshots::new(tracker.clone());
        for index in 0..(20 * CHUNK) {
            observe(&tracker, &format!("tenant-{index}"), 1);
        }
        // The writer gets the lock between chunks; the copy never waits for all of it.
        let writer = {
            let tracker = tracker.clone();
            std::thread::spawn(move || {
                for index in 0..2_000 {
                    observe(&tracker, &format!("late-{index}"), 2);
                }
            })
        };
        let view = snapshots.read();
        writer.join().unwrap();
        assert!(view.feeds[0].series().len() >= 20 * CHUNK);
        let next = snapshots.read();
        assert_eq!(next.feeds[0].series().len(), 20 * CHUNK + 2_000);
        assert_eq!(
            &*next.feeds[0].series()[20 * CHUNK + 1_999].key,
            "late-1999"
        );
    }
}
