//! The hours of the feeds that learn by hour ([`crate::cadence::Weekly`]) in the state store
//! ([`Documents::Hours`], one document per feed). Every replica learns from the partitions it
//! consumes, so each one merges the stored copy into its own and writes the merge back when the
//! store lacks something it learned: at once when an hour learned news (its warm-up ended, a
//! gap in a bucket it had none in), otherwise at most once a minute, and once more at shutdown.
//! The merge ([`Weekly::merge`]) is idempotent and order-free: replicas that race overwrite each
//! other for one round and converge at the next; a `kill -9` loses at most a minute of gaps of
//! lengths each hour had seen before.

use super::*;
use crate::cadence::Weekly;
use crate::state::Documents;

/// How often the hours are shared, ms.
const SHARE_EVERY_MS: i64 = 60_000;

impl Pipeline {
    /// Shares the hours if they learned news or a minute has passed since the last time, or at
    /// once when `now`.
    pub(super) async fn share_hours(&self, now: bool) {
        if !self.learns_by_hour {
            return;
        }
        let now_ms = self.clock.now_ms();
        let last_ms = self.hours_shared_ms.load(Ordering::Relaxed);
        let news = self
            .tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take_hours_news();
        if !now && !news && now_ms - last_ms < SHARE_EVERY_MS {
            return;
        }
        self.hours_shared_ms.store(now_ms, Ordering::Relaxed);
        let stored = match self.store.documents_load(Documents::Hours).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "learned hours not shared; will retry");
                return;
            }
        };
        let lacking = take_stored_hours(
            &mut self
                .tracker
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
            stored,
        );
        if let Err(error) = self.store.documents_write(Documents::Hours, lacking).await {
            tracing::warn!(%error, "learned hours not written; will retry");
        }
    }
}

/// Merges the stored hours into the tracker's; returns, encoded, those of the feeds the store
/// lacks something of.
pub(super) fn take_stored_hours(
    tracker: &mut Tracker,
    stored: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let stored: std::collections::HashMap<String, String> = stored.into_iter().collect();
    let mut lacking = Vec::new();
    for feed in 0..tracker.feeds().len() {
        let track = tracker.feed(feed as FeedIndex);
        let Some(clock) = track.weekly().map(Weekly::clock) else {
            continue;
        };
        let name = track.name.to_string();
        let theirs = stored.get(&name).and_then(|text| {
            let decoded = Weekly::decode(text, clock);
            if decoded.is_none() {
                tracing::warn!(feed = %name, "stored learned hours unreadable; replaced by this replica's");
            }
            decoded
        });
        if let Some(theirs) = &theirs {
            tracker.merge_weekly(feed as FeedIndex, theirs);
        }
        if let Some(mine) = tracker.feed(feed as FeedIndex).weekly() {
            if theirs.as_ref() != Some(mine) {
                lacking.push((name, mine.encode()));
            }
        }
    }
    lacking
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    /// 2025-12-01T10:00:00Z, a Monday.
    const TEN_AM_MS: i64 = 1_764_583_200_000;

    fn replica() -> Tracker {
        let config = crate::config::parse(
            "[kafka]\nbrokers = \"k:9092\"\n[[feed]]\nname = \"ticker\"\ntopic = \"t\"\nthresholds = \"learned\"\nlearn_by_hour = true\nlearn_min_gaps = 3\n[[feed]]\nname = \"fixed\"\ntopic = \"f\"\n",
            std::path::Path::new("t.toml"),
            &|_| None,
        )
        .unwrap();
        Tracker::new(&config.feeds, TEN_AM_MS)
    }

    /// Half an hour of one-second gaps from `from_ms` (1,800: an hour's warm-up).
    fn learn(tracker: &mut Tracker, from_ms: i64) {
        for second in 0..=1_800 {
            tracker.observe(0, b"", from_ms + second * 1_000);
        }
    }

    #[test]
    fn replicas_converge_on_the_union_of_what_each_learned_through_the_store() {
        let mut store: std::collections::HashMap<String, String> = Default::default();
        let mut share = |tracker: &mut Tracker| {
            let lacking = take_stored_hours(tracker, store.clone().into_iter().collect());
            let written: Vec<String> = lacking.iter().map(|(name, _)| name.clone()).collect();
            store.extend(lacking);
            written
        };
        let (mut first, mut second) = (replica(), replica());
        learn(&mut first, TEN_AM_MS);
        learn(&mut second, TEN_AM_MS + HOUR_MS);
        assert_eq!(share(&mut first), ["ticker"], "the fixed feed has no hours");
        assert_eq!(share(&mut second), ["ticker"], "the store lacked 11:00");
        assert_eq!(
            share(&mut first),
            Vec::<String>::new(),
            "the first takes 11:00 in; the store has it all: no write"
        );
        let hours = |tracker: &Tracker| tracker.feed(0).weekly().unwrap().clone();
        assert_eq!(hours(&first), hours(&second));
        assert_eq!(hours(&first).hour(10).gaps(), 1_800);
        assert_eq!(hours(&first).hour(11).gaps(), 1_800);
        assert!(
            first.take_hours_warmed().contains(&0),
            "taking in 11:00 has the feed judged again"
        );
        // A third replica saw more of the same at 10:00: no hour's scale moves, so taking it in
        // costs no pass over the feed.
        let mut third = replica();
        for second in 0..=1_802 {
            third.observe(0, b"", TEN_AM_MS + second * 1_000);
        }
        assert_eq!(share(&mut third), ["ticker"]);
        share(&mut first);
        assert_eq!(hours(&first).hour(10).gaps(), 1_802);
        assert_eq!(first.take_hours_warmed(), Vec::<FeedIndex>::new());
    }

    #[test]
    fn unreadable_stored_hours_are_replaced() {
        let mut tracker = replica();
        learn(&mut tracker, TEN_AM_MS);
        let lacking = take_stored_hours(&mut tracker, vec![("ticker".into(), "w1,bogus".into())]);
        assert_eq!(lacking.len(), 1);
        assert_eq!(
            Weekly::decode(&lacking[0].1, tracker.feed(0).weekly().unwrap().clock()).as_ref(),
            tracker.feed(0).weekly()
        );
    }
}
