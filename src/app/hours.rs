//! The hours of the feeds that learn by hour ([`crate::cadence::Weekly`]) in the state store
//! ([`Documents::Hours`], one document per feed). Every replica learns from the partitions it
//! consumes, so each one merges the stored copy into its own and writes the merge back when the
//! store lacks something it learned: at once when an hour learned news (its warm-up ended, a
//! gap above its p99), otherwise at most once a minute, and once more at shutdown. A
//! bucket-wise max is idempotent and order-free: replicas that race overwrite each other for one
//! round and converge at the next; a `kill -9` loses at most a minute of learning that moved no
//! hour's thresholds up.

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
