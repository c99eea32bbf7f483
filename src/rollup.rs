//! Roll-up: one page for a feed when many of its keys start alerting at once.
//!
//! When a producer for a 10,000-tenant feed dies, per-key pages would be 10,000 pages (83
//! minutes of PagerDuty events, then an email flood). When more than the feed's `rollup_after`
//! keys start alerting in one evaluation, notification sinks get one incident for the feed
//! instead; the keys become its members. Alertmanager still gets every key (its grouping does
//! this job there), and the API and metrics stay per key.
//!
//! - While a roll-up is open, every key of the feed that starts alerting joins it, so a slow
//!   trickle after the burst does not page key by key.
//! - A key that was paged on its own before stays on its own, resolve included: its incident is
//!   open on the pager under its own dedup key.
//! - The roll-up tells again only when its worst severity changes, and resolves when its last
//!   member recovers.
//!
//! The members persist in the state store (before the notifications go out), so after a restart
//! or a change of leader a member's recovery is never sent as a resolve of a page it never had.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::evaluate::Transition;
use crate::model::Severity;

/// One feed's open roll-up, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollUp {
    /// Rendered key → its current severity.
    pub members: BTreeMap<String, Severity>,
    /// The severity the sinks were last told.
    pub severity: Option<Severity>,
    /// When it opened, unix ms.
    pub opened_at_ms: i64,
}

impl RollUp {
    fn worst(&self) -> Option<Severity> {
        self.members.values().copied().max()
    }

    /// What the sinks are told now: the members' worst severity, after what they were told.
    fn notice(&self, feed: &Arc<str>, facts: &FeedFacts, now_ms: i64) -> RollUpNotice {
        RollUpNotice {
            feed: feed.clone(),
            topic: facts.topic.clone(),
            severity: self.worst(),
            previous: self.severity,
            members: self.members.len(),
            keys: facts.keys,
            sample: self.members.keys().take(3).cloned().collect(),
            warn_after_ms: facts.warn_after_ms,
            critical_after_ms: facts.critical_after_ms,
            learned: facts.learned,
            opened_at_ms: self.opened_at_ms,
            at_ms: now_ms,
        }
    }
}

/// What the roll-up sinks are told about one feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollUpNotice {
    pub feed: Arc<str>,
    pub topic: String,
    /// `None`: resolved.
    pub severity: Option<Severity>,
    /// What was told before (`None`: it opens now).
    pub previous: Option<Severity>,
    pub members: usize,
    /// Keys the feed has in all.
    pub keys: usize,
    /// A few member keys, for the summary.
    pub sample: Vec<String>,
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    /// The feed learns each key's thresholds: the summary cannot name one for all.
    pub learned: bool,
    pub opened_at_ms: i64,
    pub at_ms: i64,
}

impl RollUpNotice {
    /// Stable per feed, and distinct from every key's (`freshwatch/{feed}/{key}`): feed names
    /// hold no `/` or `#`.
    pub fn dedup_key(&self) -> String {
        format!("freshwatch/{}#rollup", self.feed)
    }

    /// "Feed profiles: 9812 of 10000 keys have had no new data for over 2h (acme, globex, …)".
    pub fn summary(&self) -> String {
        let sample = match self.members.saturating_sub(self.sample.len()) {
            0 => self.sample.join(", "),
            more => format!("{}, and {more} more", self.sample.join(", ")),
        };
        match self.severity {
            None => format!(
                "Feed {}: all keys of the roll-up are fresh again after {}",
                self.feed,
                crate::clock::human_duration_ms(self.at_ms - self.opened_at_ms)
            ),
            Some(severity) => {
                let threshold = match severity {
                    Severity::Critical => self.critical_after_ms,
                    Severity::Warning => self.warn_after_ms,
                };
                if self.learned {
                    return format!(
                        "Feed {}: {} of {} keys have gone quiet past their learned {severity} thresholds ({sample})",
                        self.feed, self.members, self.keys
                    );
                }
                format!(
                    "Feed {}: {} of {} keys have had no new data for over {} ({sample})",
                    self.feed,
                    self.members,
                    self.keys,
                    crate::clock::human_duration_ms(threshold)
                )
            }
        }
    }
}

/// What routing needs to know of a feed.
#[derive(Debug, Clone, Default)]
pub struct FeedFacts {
    pub rollup_after: usize,
    /// Keys the feed has in all.
    pub keys: usize,
    pub topic: String,
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    /// `thresholds = "learned"`: each key has its own.
    pub learned: bool,
}

/// Where each transition goes.
#[derive(Debug, Default)]
pub struct Routed {
    /// To every sink, as before.
    pub individual: Vec<Transition>,
    /// Part of a roll-up: to Alertmanager sinks only.
    pub absorbed: Vec<Transition>,
    /// To notification sinks.
    pub rollups: Vec<RollUpNotice>,
    /// The feeds whose roll-up changed (to persist before anything is sent).
    pub changed: Vec<Arc<str>>,
}

/// Every feed's roll-up.
#[derive(Debug, Default)]
pub struct RollUps {
    open: HashMap<Arc<str>, RollUp>,
}

impl RollUps {
    /// Takes up persisted roll-ups.
    pub fn restore(&mut self, feed: Arc<str>, rollup: RollUp) {
        if !rollup.members.is_empty() {
            self.open.insert(feed, rollup);
        }
    }

    pub fn get(&self, feed: &str) -> Option<&RollUp> {
        self.open.get(feed)
    }

    /// After a restart or a change of leader: members that no longer alert (their series
    /// recovered or was lost meanwhile) leave. Returns a notice per open roll-up: a reminder
    /// (`previous == severity`) when unchanged, else the change (a resolve when none is left).
    pub fn take_up(
        &mut self,
        alerting: impl Fn(&str, &str) -> bool,
        facts: impl Fn(&str) -> FeedFacts,
        now_ms: i64,
    ) -> Vec<RollUpNotice> {
        let mut notices = Vec::new();
        self.open.retain(|feed, rollup| {
            rollup.members.retain(|key, _| alerting(feed, key));
            notices.push(rollup.notice(feed, &facts(feed), now_ms));
            rollup.severity = rollup.worst();
            !rollup.members.is_empty()
        });
        notices
    }

    /// The roll-up of `feed` as news (`previous` none), for sinks a silence kept it from.
    pub fn announce(
        &self,
        feed: &Arc<str>,
        facts: &FeedFacts,
        now_ms: i64,
    ) -> Option<RollUpNotice> {
        let rollup = self.open.get(feed)?;
        let mut notice = rollup.notice(feed, facts, now_ms);
        notice.previous = None;
        Some(notice)
    }

    /// The feeds with an open roll-up.
    pub fn feeds(&self) -> Vec<Arc<str>> {
        self.open.keys().cloned().collect()
    }

    /// Whether `key` of `feed` is paged through the feed's roll-up.
    pub fn is_member(&self, feed: &str, key: &str) -> bool {
        self.open
            .get(feed)
            .is_some_and(|rollup| rollup.members.contains_key(key))
    }

    /// Routes one evaluation's notifiable transitions.
    pub fn route(
        &mut self,
        transitions: Vec<Transition>,
        facts: impl Fn(&str) -> FeedFacts,
        now_ms: i64,
    ) -> Routed {
        let mut by_feed: BTreeMap<Arc<str>, Vec<Transition>> = BTreeMap::new();
        for transition in transitions {
            by_feed
                .entry(transition.feed.clone())
                .or_default()
                .push(transition);
        }
        let mut routed = Routed::default();
        for (feed, transitions) in by_feed {
            let starting = transitions
                .iter()
                .filter(|transition| starts_alerting(transition))
                .count();
            let open = self.open.contains_key(&feed);
            let facts = facts(&feed);
            if !open && starting <= facts.rollup_after {
                routed.individual.extend(transitions);
                continue;
            }
            let rollup = self.open.entry(feed.clone()).or_insert_with(|| RollUp {
                opened_at_ms: now_ms,
                ..RollUp::default()
            });
            let mut changed = false;
            for transition in transitions {
                let member = rollup.members.contains_key(&transition.key);
                if !member && !starts_alerting(&transition) {
                    routed.individual.push(transition);
                    continue;
                }
                match transition.to.severity() {
                    Some(severity) => rollup.members.insert(transition.key.clone(), severity),
                    None => rollup.members.remove(&transition.key),
                };
                changed = true;
                routed.absorbed.push(transition);
            }
            if rollup.worst() != rollup.severity {
                routed.rollups.push(rollup.notice(&feed, &facts, now_ms));
                rollup.severity = rollup.worst();
            }
            if changed {
                routed.changed.push(feed.clone());
            }
            if rollup.members.is_empty() {
                self.open.remove(&feed);
            }
        }
        routed
    }
}

/// From not alerting to alerting.
fn starts_alerting(transition: &Transition) -> bool {
    transition.from.severity().is_none() && transition.to.severity().is_some()
}

#[cfg(test)]
mod tests;
