//! The alerts about freshwatch's own sight and memory: Kafka unreachable, partitions nobody
//! reads, feeds blind past their bound, the state store down or found empty. The verdicts come
//! from [`crate::knowledge`] and the store; this only turns their changes into pages.

use super::*;
use crate::knowledge::Blindness;

/// The alerts about freshwatch's own sight and memory, and what they remember between ticks.
pub(super) struct Watch {
    /// Per feed: its name and how long it may be blind before `FreshwatchFeedBlind`.
    pub(super) feeds: Vec<(Arc<str>, i64)>,
    pub(super) source_grace_ms: i64,
    pub(super) state_grace_ms: i64,
    pub(super) source_alerting: AtomicBool,
    pub(super) state_alerting: AtomicBool,
    pub(super) state_down_since_ms: AtomicI64,
    pub(super) unread_alerting: AtomicBool,
    pub(super) blind_alerting: Mutex<Vec<bool>>,
    /// Per feed: since when it has been blind for a reason of its own (not held by a cause that
    /// pages for it); `None` while known or held.
    pub(super) blind_own_since: Mutex<Vec<Option<i64>>>,
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
}

impl Pipeline {
    /// Raises `FreshwatchSourceDown` once the source has been down past its grace; resolves it
    /// when Kafka answers again.
    pub(super) async fn source_down_alert(&self, source_down: bool, held: usize, now_ms: i64) {
        if self
            .watch
            .source_alerting
            .swap(source_down, Ordering::Relaxed)
            == source_down
        {
            return;
        }
        if source_down {
            tracing::error!(
                "kafka unreachable past source_grace: feeds that would turn stale are unknown"
            );
        } else {
            tracing::info!("kafka answers again; feeds are judged once caught up");
        }
        self.dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname: SOURCE_DOWN,
                severity: Severity::Critical,
                labels: vec![],
                summary: if source_down {
                    format!("freshwatch cannot reach Kafka: feed staleness is not being judged ({held} feed(s) held: they page no FreshwatchFeedBlind of their own)")
                } else {
                    "freshwatch reaches Kafka again: feeds are judged once caught up".into()
                },
                firing: source_down,
                since_ms: now_ms,
            }))
            .await;
    }

    /// Raises `FreshwatchPartitionsUnread` while partitions stay unread by every replica past
    /// `source_grace`, and `FreshwatchFeedBlind` for each feed unknown past its bound.
    pub(super) async fn sight_alerts(&self, assessment: &Assessment, now_ms: i64) {
        let overdue: Vec<&(crate::knowledge::PartitionKey, i64)> = assessment
            .unowned
            .iter()
            .filter(|(_, since_ms)| now_ms - since_ms >= self.watch.source_grace_ms)
            .collect();
        let unread = !overdue.is_empty();
        if self.watch.unread_alerting.swap(unread, Ordering::Relaxed) != unread {
            let listed: Vec<String> = overdue
                .iter()
                .take(10)
                .map(|((topic, partition), _)| format!("{topic}/{partition}"))
                .collect();
            let since_ms = overdue.first().map_or(now_ms, |(_, since_ms)| *since_ms);
            if unread {
                tracing::error!(partitions = overdue.len(), first = ?listed, "no freshwatch replica is reading some partitions");
            }
            self.dispatcher
                .dispatch(Notice::System(SystemAlert {
                    alertname: PARTITIONS_UNREAD,
                    severity: Severity::Critical,
                    labels: vec![],
                    summary: format!(
                        "No freshwatch replica is reading {} partition(s) ({}{}): feeds on them cannot be judged, so a silence there would not page ({} feed(s) held)",
                        overdue.len(),
                        listed.join(", "),
                        if overdue.len() > listed.len() { ", ..." } else { "" },
                        held_by_count(assessment, Blindness::Unowned)
                    ),
                    firing: unread,
                    since_ms,
                }))
                .await;
        }
        let mut changes = Vec::new();
        {
            let mut alerting = self
                .watch
                .blind_alerting
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut own_since = self
                .watch
                .blind_own_since
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut held_by = self.watch.held_by.lock();
            for (index, feed) in assessment.feeds.iter().enumerate() {
                let (name, bound_ms) = &self.watch.feeds[index];
                let cause = held_cause(feed.sight);
                let was_held = held_by[index].is_some();
                held_by[index] = cause;
                // One cause, one page: a feed blind because Kafka or its partitions' readers
                // are gone is told by that cause's alert. Its own clock starts when it is blind
                // for a reason of its own, or when the cause is over.
                own_since[index] = match (feed.sight, cause) {
                    (Sight::Blind(_), None) => Some(own_since[index].unwrap_or(if was_held {
                        now_ms
                    } else {
                        feed.blind_since_ms.unwrap_or(now_ms)
                    })),
                    _ => None,
                };
                let blind = matches!(feed.sight, Sight::Blind(_));
                let overdue = feed.sight.pages_when_blind()
                    && ((alerting[index] && blind)
                        || own_since[index].is_some_and(|since_ms| now_ms - since_ms >= *bound_ms));
                if alerting[index] != overdue {
                    alerting[index] = overdue;
                    changes.push((name.clone(), feed.sight, feed.blind_since_ms, overdue));
                }
            }
            self.watch.blind.store(
                alerting.iter().any(|&blind| blind) || unread,
                Ordering::Relaxed,
            );
        }
        for (feed, sight, since_ms, firing) in changes {
            let reason = match sight {
                Sight::Blind(blindness) => blindness.describe(),
                Sight::Known { .. } => "it can be judged again",
            };
            if firing {
                let cause = match sight {
                    Sight::Blind(blindness) => blindness.as_str(),
                    Sight::Known { .. } => "known",
                };
                tracing::error!(feed = %feed, cause, reason, "feed cannot be judged past blind_after");
            }
            self.dispatcher
                .dispatch(Notice::System(SystemAlert {
                    alertname: FEED_BLIND,
                    severity: Severity::Critical,
                    labels: vec![("feed", feed.to_string())],
                    summary: format!(
                        "Feed {feed} cannot be judged ({reason}): a silence would not page"
                    ),
                    firing,
                    since_ms: since_ms.unwrap_or(now_ms),
                }))
                .await;
        }
    }

    /// Raises `FreshwatchStateLost` when the state store was empty at start but the consumer
    /// group had committed offsets: an earlier run's knowledge of quiet feeds is gone, and
    /// feeds silent since before this start would page only as `never_seen`, after their
    /// `critical_after`. Resolved once that much time has passed.
    pub(super) async fn state_lost_alert(&self, now_ms: i64) {
        if !self.watch.store_was_empty {
            return;
        }
        let lost = self.source.status.group_had_commits.load(Ordering::Relaxed)
            && now_ms - self.watch.started_ms < self.watch.longest_critical_ms;
        if self.watch.state_lost_alerting.swap(lost, Ordering::Relaxed) == lost {
            return;
        }
        if lost {
            tracing::error!("the state store was empty but this consumer group read before: what freshwatch knew of quiet feeds is lost");
        }
        self.dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname: STATE_LOST,
                severity: Severity::Critical,
                labels: vec![],
                summary: "freshwatch's state store was empty at start although its consumer group had read before: feeds that went quiet earlier are not known to be stale and page only as never_seen after their critical_after. Check Redis persistence and maxmemory-policy".into(),
                firing: lost,
                since_ms: self.watch.started_ms,
            }))
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
            self.watch.state_down_since_ms.swap(0, Ordering::Relaxed)
        };
        let down = failed && now_ms - since_ms >= self.watch.state_grace_ms;
        if self.watch.state_alerting.swap(down, Ordering::Relaxed) == down {
            return;
        }
        self.dispatcher
            .dispatch(Notice::System(SystemAlert {
                alertname: STATE_STORE_DOWN,
                severity: Severity::Critical,
                labels: vec![("store", self.store.kind().to_owned())],
                summary: format!(
                    "freshwatch's {} state store does not answer: state is kept in memory until it returns",
                    self.store.kind()
                ),
                firing: down,
                since_ms,
            }))
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
