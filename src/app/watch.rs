//! The alerts about freshwatch's own sight and memory: Kafka unreachable, partitions nobody
//! reads, feeds blind past their bound, the state store down or found empty. The verdicts come
//! from [`crate::knowledge`] and the store; this only turns their changes into pages.
//!
//! Which of them fire, and since when, is kept in the state store ([`Documents::SelfAlerts`],
//! written before the page goes out): a restart, a reload or a new leader takes them up as they
//! were, so none is paged twice, a blind feed's clock does not start again (the heartbeat stays
//! withheld), and a condition that cleared while freshwatch was down is resolved once it can
//! tell. A firing alert resolves only on a verdict that it is over, never on "not known yet".
//! The one exception is `FreshwatchStateStoreDown` with Redis: it fires while the store it
//! would be written to is down, so it is remembered only when the store answers in between.

use std::collections::BTreeMap;

use super::*;
use crate::knowledge::{Blindness, FeedSight};
use crate::state::Documents;

/// Key of the roll-up of many blind feeds among the stored self-alerts' feeds.
const ROLLED_UP: &str = "*";

/// One firing self-alert, as stored under its dedup key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct StoredAlert {
    alertname: String,
    #[serde(default)]
    labels: Vec<(String, String)>,
    since_ms: i64,
    summary: String,
    /// A feed's `FreshwatchFeedBlind` that a roll-up pages for.
    #[serde(default)]
    rolled: bool,
}

impl StoredAlert {
    fn of(alert: &SystemAlert, rolled: bool) -> StoredAlert {
        StoredAlert {
            alertname: alert.alertname.to_owned(),
            labels: alert
                .labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
            since_ms: alert.since_ms,
            summary: alert.summary.clone(),
            rolled,
        }
    }

    /// The alert as it fires, if its name is one freshwatch still raises.
    fn alert(&self) -> Option<SystemAlert> {
        let alertname = [
            SOURCE_DOWN,
            PARTITIONS_UNREAD,
            FEED_BLIND,
            STATE_LOST,
            STATE_STORE_DOWN,
        ]
        .into_iter()
        .find(|name| *name == self.alertname)?;
        let label = |name: &str| -> Option<&'static str> {
            ["feed", "store", "cluster"]
                .into_iter()
                .find(|known| *known == name)
        };
        Some(SystemAlert {
            alertname,
            severity: Severity::Critical,
            labels: self
                .labels
                .iter()
                .filter_map(|(name, value)| Some((label(name)?, value.clone())))
                .collect(),
            summary: self.summary.clone(),
            firing: true,
            since_ms: self.since_ms,
        })
    }

    /// The `cluster` label, on a `[[cluster]]` config's `FreshwatchSourceDown`.
    fn cluster(&self) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| name == "cluster")
            .map(|(_, value)| value.as_str())
    }

    fn feed(&self) -> Option<&str> {
        (self.alertname == FEED_BLIND)
            .then(|| {
                self.labels
                    .iter()
                    .find(|(name, _)| name == "feed")
                    .map(|(_, value)| value.as_str())
            })
            .flatten()
    }
}

/// The firing self-alerts by dedup key, mirrored in the state store.
#[derive(Debug, Default)]
pub(super) struct SelfAlerts(Mutex<BTreeMap<String, StoredAlert>>);

impl SelfAlerts {
    /// The alerts as the store keeps them; none when it cannot be read (then a condition still
    /// true pages again rather than never).
    pub(super) async fn load(store: &StateStore) -> SelfAlerts {
        let stored = match store.documents_load(Documents::SelfAlerts).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "alerts about freshwatch itself not read; one still true pages again");
                Vec::new()
            }
        };
        let firing = stored
            .into_iter()
            .filter_map(|(key, json)| match serde_json::from_str(&json) {
                Ok(alert) => Some((key, alert)),
                Err(error) => {
                    tracing::warn!(%key, %error, "unreadable stored self-alert ignored");
                    None
                }
            })
            .collect();
        SelfAlerts(Mutex::new(firing))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredAlert>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Since when `alertname` (about `feed`, if given) fires, as stored.
    fn since(&self, alertname: &str, feed: Option<&str>) -> Option<i64> {
        self.lock()
            .values()
            .find(|alert| alert.alertname == alertname && alert.feed() == feed)
            .map(|alert| alert.since_ms)
    }

    /// Since when the alert stored under `key` fires.
    fn since_key(&self, key: &str) -> Option<i64> {
        self.lock().get(key).map(|alert| alert.since_ms)
    }

    /// The alerts that fire, for sinks that take up what fired before a restart: Alertmanager
    /// gets each feed's, notification sinks are reminded of what they were paged.
    pub(super) fn restored(&self) -> Vec<Notice> {
        self.lock()
            .values()
            .filter(|stored| stored.feed() != Some(ROLLED_UP))
            .filter_map(|stored| {
                let notice = Notice::RestoredSystem(stored.alert()?);
                Some(if stored.rolled {
                    Notice::Absorbed(Box::new(notice))
                } else {
                    notice
                })
            })
            .collect()
    }

    /// Every firing alert, to write back into a store that lost it.
    fn entries(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter_map(|(key, stored)| Some((key.clone(), serde_json::to_string(stored).ok()?)))
            .collect()
    }
}

/// Per feed: whether its blindness pages, and since when it has been blind on its own.
#[derive(Debug)]
pub(super) struct BlindFeeds {
    /// Its `FreshwatchFeedBlind` fires.
    alerting: Vec<bool>,
    /// ... and a roll-up pages for it.
    rolled: Vec<bool>,
    /// Since when it has been blind for a reason of its own (not held by a cause that pages for
    /// it); `None` while known or held.
    own_since: Vec<Option<i64>>,
    /// The roll-up of many blind feeds is open.
    rollup_open: bool,
}

/// One feed's `FreshwatchFeedBlind` starting or ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlindChange {
    index: usize,
    sight: Sight,
    since_ms: Option<i64>,
    firing: bool,
    /// A roll-up pages for it.
    rolled: bool,
}

/// What one look at the feeds' sight changes.
#[derive(Debug, Default)]
struct Judged {
    changes: Vec<BlindChange>,
    /// The roll-up opens (`true`) or resolves (`false`).
    rollup: Option<bool>,
    blind_on_their_own: usize,
}

impl BlindFeeds {
    /// Whether feed `index`'s `FreshwatchFeedBlind` fires.
    pub(super) fn is_alerting(&self, index: usize) -> bool {
        self.alerting.get(index).copied().unwrap_or(false)
    }

    pub(super) fn new(feeds: usize) -> BlindFeeds {
        BlindFeeds {
            alerting: vec![false; feeds],
            rolled: vec![false; feeds],
            own_since: vec![None; feeds],
            rollup_open: false,
        }
    }

    /// A feed blind past its bound joins the open roll-up, or opens it when more than
    /// `rollup_after` feeds are blind on their own right now; the roll-up resolves with its
    /// last member. `held_by` is set to the cause that pages for each feed, if any.
    fn judge(
        &mut self,
        held_by: &mut [Option<&'static str>],
        feeds: &[FeedSight],
        bounds: &[i64],
        rollup_after: usize,
        now_ms: i64,
    ) -> Judged {
        for (index, feed) in feeds.iter().enumerate() {
            let cause = held_cause(feed.sight);
            let was_held = held_by[index].is_some();
            held_by[index] = cause;
            // One cause, one page: a feed blind because Kafka or its partitions' readers are
            // gone is told by that cause's alert. Its own clock starts when it is blind for a
            // reason of its own, or when the cause is over.
            self.own_since[index] = match (feed.sight, cause) {
                (Sight::Blind(_), None) => Some(self.own_since[index].unwrap_or(if was_held {
                    now_ms
                } else {
                    feed.blind_since_ms.unwrap_or(now_ms)
                })),
                _ => None,
            };
        }
        let mut judged = Judged {
            blind_on_their_own: self
                .own_since
                .iter()
                .filter(|since| since.is_some())
                .count(),
            ..Judged::default()
        };
        for (index, feed) in feeds.iter().enumerate() {
            let is_blind = matches!(feed.sight, Sight::Blind(_));
            let overdue = feed.sight.pages_when_blind()
                && ((self.alerting[index] && is_blind)
                    || self.own_since[index]
                        .is_some_and(|since_ms| now_ms - since_ms >= bounds[index]));
            if self.alerting[index] == overdue {
                continue;
            }
            self.alerting[index] = overdue;
            if overdue {
                let rolled = self.rollup_open || judged.blind_on_their_own > rollup_after;
                if rolled && !self.rollup_open {
                    self.rollup_open = true;
                    judged.rollup = Some(true);
                }
                self.rolled[index] = rolled;
            }
            judged.changes.push(BlindChange {
                index,
                sight: feed.sight,
                since_ms: feed.blind_since_ms,
                firing: overdue,
                rolled: self.rolled[index],
            });
            if !overdue {
                self.rolled[index] = false;
            }
        }
        if self.rollup_open && !self.rolled.iter().any(|&rolled| rolled) {
            self.rollup_open = false;
            judged.rollup = Some(false);
        }
        judged
    }
}

/// The alerts about freshwatch's own sight and memory, and what they remember between ticks.
pub(super) struct Watch {
    /// Per feed: its name and how long it may be blind before `FreshwatchFeedBlind`.
    pub(super) feeds: Vec<(Arc<str>, i64)>,
    pub(super) source_grace_ms: i64,
    pub(super) state_grace_ms: i64,
    /// More feeds than this blind on their own at once page one roll-up.
    pub(super) blind_rollup_after: usize,
    /// Per cluster: whether its `FreshwatchSourceDown` fires.
    pub(super) source_alerting: Vec<AtomicBool>,
    /// Per cluster: its `cluster` label, `None` for the one cluster of a `[kafka]` config.
    pub(super) cluster_labels: Vec<Option<Arc<str>>>,
    pub(super) state_alerting: AtomicBool,
    pub(super) state_down_since_ms: AtomicI64,
    pub(super) unread_alerting: AtomicBool,
    pub(super) blind_feeds: Mutex<BlindFeeds>,
    /// Per feed: the alert that pages for its blindness (`FreshwatchSourceDown`,
    /// `FreshwatchPartitionsUnread`), shown as `held_by` in the API and on the status page.
    pub(super) held_by: crate::knowledge::HeldBy,
    /// Whether any feed or partition is past its bound unseen: the heartbeat stops.
    pub(super) blind: Arc<AtomicBool>,
    /// The state store was empty at start: `FreshwatchStateLost` once the group shows it had
    /// committed offsets, resolved when every feed had its `critical_after` to show up.
    pub(super) store_was_empty: bool,
    pub(super) state_lost_alerting: AtomicBool,
    pub(super) longest_critical_ms: i64,
    pub(super) started_ms: i64,
    /// What fires, as the state store keeps it.
    pub(super) firing: SelfAlerts,
}

impl Watch {
    /// Takes up the firing alerts as `firing` has them (at start, and on becoming leader).
    pub(super) fn take_up(&self, firing: SelfAlerts) {
        let stored = std::mem::take(&mut *firing.lock());
        let has = |alertname: &str| {
            stored
                .values()
                .any(|alert| alert.alertname == alertname && alert.feed().is_none())
        };
        for (alerting, label) in self.source_alerting.iter().zip(&self.cluster_labels) {
            let down = stored
                .values()
                .any(|alert| alert.alertname == SOURCE_DOWN && alert.cluster() == label.as_deref());
            alerting.store(down, Ordering::Relaxed);
        }
        self.unread_alerting
            .store(has(PARTITIONS_UNREAD), Ordering::Relaxed);
        self.state_lost_alerting
            .store(has(STATE_LOST), Ordering::Relaxed);
        self.state_alerting
            .store(has(STATE_STORE_DOWN), Ordering::Relaxed);
        {
            let mut blind = self
                .blind_feeds
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            *blind = BlindFeeds::new(self.feeds.len());
            for alert in stored.values() {
                match alert.feed() {
                    Some(ROLLED_UP) => blind.rollup_open = true,
                    Some(feed) => {
                        if let Some(index) = self.feeds.iter().position(|(name, _)| **name == *feed)
                        {
                            blind.alerting[index] = true;
                            blind.rolled[index] = alert.rolled;
                        }
                    }
                    None => {}
                }
            }
            self.blind.store(
                blind.alerting.iter().any(|&alerting| alerting) || has(PARTITIONS_UNREAD),
                Ordering::Relaxed,
            );
        }
        *self.firing.lock() = stored;
    }
}

/// Where one self-alert's change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// To every sink that takes system alerts.
    Own,
    /// A feed's blindness that a roll-up pages for: Alertmanager only.
    Rolled,
    /// The roll-up itself: notification sinks only.
    RollUp,
}

impl Pipeline {
    /// Keeps the store's copy of what fires, then tells the sinks: after a `kill -9` in between,
    /// the next start knows the page went out (or may resolve one that never did, never the
    /// reverse).
    async fn tell(&self, alert: SystemAlert, route: Route) {
        let key = alert.dedup_key();
        let written = if alert.firing {
            let stored = StoredAlert::of(&alert, route == Route::Rolled);
            let json = serde_json::to_string(&stored).unwrap_or_default();
            self.watch.firing.lock().insert(key.clone(), stored);
            self.store
                .documents_write(Documents::SelfAlerts, vec![(key, json)])
                .await
        } else {
            self.watch.firing.lock().remove(&key);
            self.store
                .documents_remove(Documents::SelfAlerts, vec![key])
                .await
        };
        if let Err(error) = written {
            tracing::warn!(%error, alertname = alert.alertname, firing = alert.firing, "alert about freshwatch not persisted; a restart may page or resolve it again");
        }
        let notice = match route {
            Route::Own => Notice::System(alert),
            Route::Rolled => Notice::Absorbed(Box::new(Notice::System(alert))),
            Route::RollUp => Notice::SystemRollUp(alert),
        };
        self.dispatcher.dispatch(notice).await;
    }

    /// The firing self-alerts as the store keeps them (at start, and on becoming leader).
    pub(super) async fn adopt_self_alerts(&self) {
        self.watch.take_up(SelfAlerts::load(&self.store).await);
    }

    /// Writes every firing self-alert again into a store that lost it.
    pub(super) async fn write_back_self_alerts(&self) {
        let entries = self.watch.firing.entries();
        if let Err(error) = self
            .store
            .documents_write(Documents::SelfAlerts, entries)
            .await
        {
            tracing::warn!(%error, "alerts about freshwatch not written back yet");
        }
    }

    /// Raises `FreshwatchSourceDown` once the source has been down past its grace (`Some(true)`);
    /// resolves it when Kafka answers (`Some(false)`). `None`: not known yet (starting, or down
    /// within the grace), which changes nothing, so one restored from before a restart waits
    /// for Kafka's answer.
    /// Cluster `cluster`'s own: labelled `cluster` with `[[cluster]]` tables, and holding only
    /// that cluster's feeds.
    pub(super) async fn source_down_alert(
        &self,
        cluster: usize,
        source_down: Option<bool>,
        held: usize,
        now_ms: i64,
    ) {
        let Some(source_down) = source_down else {
            return;
        };
        if self.watch.source_alerting[cluster].swap(source_down, Ordering::Relaxed) == source_down {
            return;
        }
        let run = &self.clusters.runs[cluster];
        let kafka = if run.labelled {
            format!("Kafka cluster {}", run.name)
        } else {
            "Kafka".to_owned()
        };
        if source_down {
            tracing::error!(cluster = %run.name, "kafka unreachable past source_grace: feeds that would turn stale are unknown");
        } else {
            tracing::info!(cluster = %run.name, "kafka answers again; feeds are judged once caught up");
        }
        let mut alert = SystemAlert {
            alertname: SOURCE_DOWN,
            severity: Severity::Critical,
            labels: run.labels(),
            summary: if source_down {
                format!("freshwatch cannot reach {kafka}: feed staleness is not being judged ({held} feed(s) held: they page no FreshwatchFeedBlind of their own)")
            } else {
                format!("freshwatch reaches {kafka} again: feeds are judged once caught up")
            },
            firing: source_down,
            since_ms: now_ms,
        };
        if !source_down {
            alert.since_ms = self
                .watch
                .firing
                .since_key(&alert.dedup_key())
                .unwrap_or(now_ms);
        }
        self.tell(alert, Route::Own).await;
    }

    /// Raises `FreshwatchPartitionsUnread` while partitions stay unread by every replica past
    /// `source_grace`, and `FreshwatchFeedBlind` for each feed unknown past its bound (one
    /// roll-up when more than `blind_rollup_after` feeds are blind on their own at once).
    pub(super) async fn sight_alerts(&self, assessment: &Assessment, now_ms: i64) {
        let overdue: Vec<&(crate::knowledge::PartitionKey, i64)> = assessment
            .unowned
            .iter()
            .filter(|(_, since_ms)| now_ms - since_ms >= self.watch.source_grace_ms)
            .collect();
        // Resolved only when every partition is known to be read: not while freshwatch starts
        // or cannot ask (one restored from before a restart waits for that answer).
        let cannot_tell = assessment.feeds.iter().any(|feed| {
            matches!(
                feed.sight,
                Sight::Blind(Blindness::Starting | Blindness::SourceDown | Blindness::StoreDown)
            )
        });
        let unread = if !overdue.is_empty() {
            Some(true)
        } else if assessment.unowned.is_empty() && !cannot_tell {
            Some(false)
        } else {
            None
        };
        if let Some(unread) = unread {
            if self.watch.unread_alerting.swap(unread, Ordering::Relaxed) != unread {
                self.partitions_unread_alert(assessment, &overdue, unread, now_ms)
                    .await;
            }
        }
        let (changes, rollup) = self.blind_changes(assessment, now_ms);
        for BlindChange {
            index,
            sight,
            since_ms,
            firing,
            rolled,
        } in changes
        {
            let feed = self.watch.feeds[index].0.clone();
            let reason = match sight {
                Sight::Blind(blindness) => blindness.describe(),
                Sight::Known { .. } => "it can be judged again",
            };
            if firing {
                let cause = match sight {
                    Sight::Blind(blindness) => blindness.as_str(),
                    Sight::Known { .. } => "known",
                };
                tracing::error!(feed = %feed, cause, reason, rolled_up = rolled, "feed cannot be judged past blind_after");
            }
            let since_ms = if firing {
                since_ms.unwrap_or(now_ms)
            } else {
                let stored = self.watch.firing.since(FEED_BLIND, Some(&feed));
                stored.or(since_ms).unwrap_or(now_ms)
            };
            self.tell(
                SystemAlert {
                    alertname: FEED_BLIND,
                    severity: Severity::Critical,
                    labels: vec![("feed", feed.to_string())],
                    summary: format!(
                        "Feed {feed} cannot be judged ({reason}): a silence would not page"
                    ),
                    firing,
                    since_ms,
                },
                if rolled { Route::Rolled } else { Route::Own },
            )
            .await;
        }
        if let Some(alert) = rollup {
            self.tell(alert, Route::RollUp).await;
        }
        // Feeds no longer configured take their alerts with them, resolved once.
        let gone: Vec<StoredAlert> = self
            .watch
            .firing
            .lock()
            .values()
            .filter(|alert| {
                alert.feed().is_some_and(|feed| {
                    feed != ROLLED_UP && !self.watch.feeds.iter().any(|(name, _)| **name == *feed)
                })
            })
            .cloned()
            .collect();
        for stored in gone {
            if let Some(alert) = stored.alert() {
                let route = if stored.rolled {
                    Route::Rolled
                } else {
                    Route::Own
                };
                let summary = format!(
                    "Feed {} is no longer watched",
                    stored.feed().unwrap_or_default()
                );
                self.tell(
                    SystemAlert {
                        firing: false,
                        summary,
                        ..alert
                    },
                    route,
                )
                .await;
            }
        }
        let blind_feeds = self
            .watch
            .blind_feeds
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.watch.blind.store(
            blind_feeds.alerting.iter().any(|&blind| blind)
                || self.watch.unread_alerting.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    async fn partitions_unread_alert(
        &self,
        assessment: &Assessment,
        overdue: &[&(crate::knowledge::PartitionKey, i64)],
        unread: bool,
        now_ms: i64,
    ) {
        let listed: Vec<String> = overdue
            .iter()
            .take(10)
            .map(|((topic, partition), _)| format!("{topic}/{partition}"))
            .collect();
        let since_ms = match overdue.first() {
            Some((_, since_ms)) => *since_ms,
            None => self
                .watch
                .firing
                .since(PARTITIONS_UNREAD, None)
                .unwrap_or(now_ms),
        };
        if unread {
            tracing::error!(partitions = overdue.len(), first = ?listed, "no freshwatch replica is reading some partitions");
        }
        let summary = if unread {
            format!(
                "No freshwatch replica is reading {} partition(s) ({}{}): feeds on them cannot be judged, so a silence there would not page ({} feed(s) held)",
                overdue.len(),
                listed.join(", "),
                if overdue.len() > listed.len() { ", ..." } else { "" },
                held_by_count(assessment, Blindness::Unowned)
            )
        } else {
            "Every partition of the watched topics is read again".to_owned()
        };
        self.tell(
            SystemAlert {
                alertname: PARTITIONS_UNREAD,
                severity: Severity::Critical,
                labels: vec![],
                summary,
                firing: unread,
                since_ms,
            },
            Route::Own,
        )
        .await;
    }

    /// Each feed's blindness verdict, and the roll-up's change if any.
    fn blind_changes(
        &self,
        assessment: &Assessment,
        now_ms: i64,
    ) -> (Vec<BlindChange>, Option<SystemAlert>) {
        let mut blind = self
            .watch
            .blind_feeds
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let bounds: Vec<i64> = self.watch.feeds.iter().map(|(_, bound)| *bound).collect();
        let judged = blind.judge(
            &mut self.watch.held_by.lock(),
            &assessment.feeds,
            &bounds,
            self.watch.blind_rollup_after,
            now_ms,
        );
        let rollup = judged.rollup.map(|firing| {
            let members: Vec<usize> = (0..blind.rolled.len())
                .filter(|&index| blind.rolled[index])
                .collect();
            self.blind_rollup(
                assessment,
                &members,
                judged.blind_on_their_own,
                firing,
                now_ms,
            )
        });
        (judged.changes, rollup)
    }

    /// The one page for many blind feeds: what they are and why.
    fn blind_rollup(
        &self,
        assessment: &Assessment,
        members: &[usize],
        blind_on_their_own: usize,
        firing: bool,
        now_ms: i64,
    ) -> SystemAlert {
        let summary = if firing {
            let mut reasons: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for &index in members {
                if let Sight::Blind(blindness) = assessment.feeds[index].sight {
                    reasons
                        .entry(blindness.as_str())
                        .or_default()
                        .push(&self.watch.feeds[index].0);
                }
            }
            let reasons: Vec<String> = reasons
                .iter()
                .map(|(reason, feeds)| {
                    let shown: Vec<&str> = feeds.iter().take(5).copied().collect();
                    let more = if feeds.len() > shown.len() {
                        ", ..."
                    } else {
                        ""
                    };
                    format!("{reason}: {}{more}", shown.join(", "))
                })
                .collect();
            format!(
                "{} feed(s) cannot be judged past blind_after ({}), {blind_on_their_own} blind in all: a silence there would not page; each feed's FreshwatchFeedBlind goes to Alertmanager only",
                members.len(),
                reasons.join("; ")
            )
        } else {
            "Every rolled-up blind feed can be judged again".to_owned()
        };
        let since_ms = if firing {
            now_ms
        } else {
            let stored = self.watch.firing.since(FEED_BLIND, Some(ROLLED_UP));
            stored.unwrap_or(now_ms)
        };
        SystemAlert {
            alertname: FEED_BLIND,
            severity: Severity::Critical,
            labels: vec![("feed", ROLLED_UP.to_owned())],
            summary,
            firing,
            since_ms,
        }
    }

    /// Raises `FreshwatchStateLost` when the state store was empty at start but the consumer
    /// group had committed offsets: an earlier run's knowledge of quiet feeds is gone, and
    /// feeds silent since before this start would page only as `never_seen`, after their
    /// `critical_after`. Resolved once that much time has passed since the start that found the
    /// store empty (also by a later run, which finds it firing in the store).
    pub(super) async fn state_lost_alert(&self, now_ms: i64) {
        let restored_since = self.watch.firing.since(STATE_LOST, None);
        if !self.watch.store_was_empty && restored_since.is_none() {
            return;
        }
        let since_ms = restored_since.unwrap_or(self.watch.started_ms);
        let lost = (restored_since.is_some() || self.clusters.group_had_commits())
            && now_ms - since_ms < self.watch.longest_critical_ms;
        if self.watch.state_lost_alerting.swap(lost, Ordering::Relaxed) == lost {
            return;
        }
        if lost {
            tracing::error!("the state store was empty but this consumer group read before: what freshwatch knew of quiet feeds is lost");
        }
        self.tell(
            SystemAlert {
                alertname: STATE_LOST,
                severity: Severity::Critical,
                labels: vec![],
                summary: "freshwatch's state store was empty at start although its consumer group had read before: feeds that went quiet earlier are not known to be stale and page only as never_seen after their critical_after. Check Redis persistence and maxmemory-policy".into(),
                firing: lost,
                since_ms,
            },
            Route::Own,
        )
        .await;
    }

    /// Raises or resolves `FreshwatchStateStoreDown` as the store fails past its grace or
    /// answers again.
    pub(super) async fn state_down_alert(&self, failed: bool, now_ms: i64) {
        let since_ms = if failed {
            let _ = self.watch.state_down_since_ms.compare_exchange(
                0,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.watch.state_down_since_ms.load(Ordering::Relaxed)
        } else {
            let since_ms = self.watch.state_down_since_ms.swap(0, Ordering::Relaxed);
            if since_ms == 0 {
                self.watch
                    .firing
                    .since(STATE_STORE_DOWN, None)
                    .unwrap_or(now_ms)
            } else {
                since_ms
            }
        };
        let down = failed && now_ms - since_ms >= self.watch.state_grace_ms;
        if self.watch.state_alerting.swap(down, Ordering::Relaxed) == down {
            return;
        }
        self.tell(
            SystemAlert {
                alertname: STATE_STORE_DOWN,
                severity: Severity::Critical,
                labels: vec![("store", self.store.kind().to_owned())],
                summary: format!(
                    "freshwatch's {} state store does not answer: state is kept in memory until it returns",
                    self.store.kind()
                ),
                firing: down,
                since_ms,
            },
            Route::Own,
        )
        .await;
    }
}

/// The alert that pages for a feed blind for this reason, if one does.
fn held_cause(sight: Sight) -> Option<&'static str> {
    match sight {
        Sight::Blind(Blindness::SourceDown) => Some(SOURCE_DOWN),
        Sight::Blind(Blindness::Unowned) => Some(PARTITIONS_UNREAD),
        Sight::Blind(Blindness::StoreDown) => Some(STATE_STORE_DOWN),
        _ => None,
    }
}

/// How many feeds `cause` holds in `assessment`.
pub(super) fn held_by_count(assessment: &Assessment, cause: Blindness) -> usize {
    assessment
        .feeds
        .iter()
        .filter(|feed| matches!(feed.sight, Sight::Blind(blindness) if blindness == cause))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blind(reason: Blindness, since_ms: i64) -> FeedSight {
        FeedSight {
            sight: Sight::Blind(reason),
            blind_since_ms: Some(since_ms),
        }
    }

    fn known() -> FeedSight {
        FeedSight {
            sight: Sight::Known { through_ms: 0 },
            blind_since_ms: None,
        }
    }

    /// (feed, firing, rolled) of each change.
    fn changes(judged: &Judged) -> Vec<(usize, bool, bool)> {
        judged
            .changes
            .iter()
            .map(|change| (change.index, change.firing, change.rolled))
            .collect()
    }

    #[test]
    fn more_feeds_blind_on_their_own_than_blind_rollup_after_page_one_roll_up_that_ends_with_its_last_member(
    ) {
        let mut feeds = BlindFeeds::new(5);
        let mut held_by = vec![None; 5];
        let bounds = [1_000; 5];
        let mut sights = vec![blind(Blindness::Behind, 0); 5];
        let quiet = feeds.judge(&mut held_by, &sights, &bounds, 3, 999);
        assert!(quiet.changes.is_empty() && quiet.rollup.is_none());

        let opened = feeds.judge(&mut held_by, &sights, &bounds, 3, 1_000);
        assert_eq!(opened.rollup, Some(true));
        assert_eq!(
            changes(&opened),
            (0..5).map(|feed| (feed, true, true)).collect::<Vec<_>>()
        );

        sights[0] = known();
        let one_back = feeds.judge(&mut held_by, &sights, &bounds, 3, 2_000);
        assert_eq!(changes(&one_back), [(0, false, true)]);
        assert_eq!(one_back.rollup, None, "four members still blind");

        // A feed that goes blind while the roll-up is open joins it, however few are blind.
        sights = vec![known(); 5];
        sights[0] = blind(Blindness::Stale, 2_500);
        let joined = feeds.judge(&mut held_by, &sights, &bounds, 3, 3_500);
        assert_eq!(
            changes(&joined),
            [
                (0, true, true),
                (1, false, true),
                (2, false, true),
                (3, false, true),
                (4, false, true)
            ]
        );
        assert_eq!(joined.rollup, None);

        sights[0] = known();
        let closed = feeds.judge(&mut held_by, &sights, &bounds, 3, 4_000);
        assert_eq!(changes(&closed), [(0, false, true)]);
        assert_eq!(closed.rollup, Some(false));

        // Then one feed blind alone pages on its own.
        sights[2] = blind(Blindness::Behind, 4_000);
        let alone = feeds.judge(&mut held_by, &sights, &bounds, 3, 5_000);
        assert_eq!(changes(&alone), [(2, true, false)]);
        assert_eq!(alone.rollup, None);
    }

    #[test]
    fn as_many_blind_feeds_as_blind_rollup_after_page_each_on_its_own() {
        let mut feeds = BlindFeeds::new(4);
        let mut held_by = vec![None; 4];
        let mut sights = vec![blind(Blindness::Behind, 0); 3];
        sights.push(known());
        let judged = feeds.judge(&mut held_by, &sights, &[1_000; 4], 3, 1_000);
        assert_eq!(
            changes(&judged),
            [(0, true, false), (1, true, false), (2, true, false)]
        );
        assert_eq!(judged.rollup, None);
    }

    #[test]
    fn feeds_held_by_a_cause_neither_page_nor_count_towards_a_roll_up_and_their_clock_starts_when_it_ends(
    ) {
        let mut feeds = BlindFeeds::new(5);
        let mut held_by = vec![None; 5];
        let bounds = [1_000; 5];
        let mut sights = vec![blind(Blindness::SourceDown, 0); 5];
        sights[4] = blind(Blindness::Behind, 0);
        let judged = feeds.judge(&mut held_by, &sights, &bounds, 3, 5_000);
        assert_eq!(changes(&judged), [(4, true, false)]);
        assert_eq!(held_by[0], Some(SOURCE_DOWN));
        assert_eq!(held_by[4], None);

        // The source is back but the feeds are still behind: their own clock starts now.
        let sights = vec![blind(Blindness::Behind, 0); 5];
        let judged = feeds.judge(&mut held_by, &sights, &bounds, 3, 6_000);
        assert!(judged.changes.is_empty(), "{:?}", judged.changes);
        assert_eq!(held_by, vec![None; 5]);
        let judged = feeds.judge(&mut held_by, &sights, &bounds, 3, 7_000);
        assert_eq!(
            changes(&judged),
            (0..4).map(|feed| (feed, true, true)).collect::<Vec<_>>(),
            "four more blind at once join one roll-up; the one paged before stays on its own"
        );
        assert_eq!(judged.rollup, Some(true));
    }

    #[test]
    fn a_stored_self_alert_comes_back_as_it_fired() {
        let alert = SystemAlert {
            alertname: FEED_BLIND,
            severity: Severity::Critical,
            labels: vec![("feed", "orders".to_owned())],
            summary: "Feed orders cannot be judged".to_owned(),
            firing: true,
            since_ms: 1_234,
        };
        let stored = StoredAlert::of(&alert, true);
        let json = serde_json::to_string(&stored).unwrap();
        let back: StoredAlert = serde_json::from_str(&json).unwrap();
        assert_eq!(back.alert(), Some(alert));
        assert!(back.rolled);
        assert_eq!(back.feed(), Some("orders"));
    }

    #[test]
    fn a_clusters_stored_source_down_comes_back_with_its_cluster_label() {
        let alert = SystemAlert {
            alertname: SOURCE_DOWN,
            severity: Severity::Critical,
            labels: vec![("cluster", "dr".to_owned())],
            summary: "freshwatch cannot reach Kafka cluster dr".to_owned(),
            firing: true,
            since_ms: 1_234,
        };
        assert_eq!(
            alert.dedup_key(),
            "freshwatch/system/FreshwatchSourceDown/dr"
        );
        let stored = StoredAlert::of(&alert, false);
        let back: StoredAlert =
            serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
        assert_eq!(back.cluster(), Some("dr"));
        assert_eq!(back.alert(), Some(alert), "the label survives a restart");
    }
}
