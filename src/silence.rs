//! Silences: "we know, hush for two hours" for a backfill, a migration or a tenant leaving.
//!
//! A silence matches feed series (by `feed` and `key` globs) or consumer-group alerts (by a
//! `group` glob). While it is active:
//! - the series keeps its status in the API and metrics, marked silenced;
//! - notification sinks are not told that it started firing or got worse. When the silence ends
//!   while it still fires, they are told then (the leader marks each silence's end as handled in
//!   the state store, so a restart in between still tells them; with the store down the mark is
//!   kept in memory, so the end is handled once, and written when the store answers);
//! - a resolve is held only when the alert began inside the silence (the sink never heard of it);
//!   the resolve of an alert paged before the silence always goes out, or its incident would stay
//!   open. Every alert carries when it began for this (group alerts keep it with their state);
//! - a feed's silence holds the feed's `FeedVolumeDrop` as it holds its staleness;
//! - Alertmanager sinks still get every alert, annotated with the silence: use Alertmanager's own
//!   silences for its routing;
//! - the loss guard: a critical `DataLossImminent` or a `DataLost` goes through any silence
//!   that does not say `allow_data_loss = true`.
//!
//! Silences live in the state store (shared by replicas, surviving restarts) and expire by
//! themselves; an expired one is kept for a day, then removed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::glob_matches;

/// How long an expired silence stays listed.
pub const KEEP_EXPIRED_MS: i64 = 24 * 3_600_000;

/// Longest silence accepted: a forgotten one must not hide a feed for ever.
pub const MAX_DURATION_MS: i64 = 90 * 24 * 3_600_000;

/// What a silence matches; an omitted glob matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One silence, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Matchers,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub comment: String,
    pub created_by: String,
    #[serde(default)]
    pub allow_data_loss: bool,
    /// The leader told the sinks what still fired when it ended.
    #[serde(default)]
    pub end_handled: bool,
    /// A pipeline's hold (freshwatch's own silence): the broken hop upstream, `held_by` on the
    /// held hop's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

/// Why a silence was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SilenceError {
    #[error("matchers: give at least one of feed, key or group")]
    NoMatcher,
    #[error("matchers: a silence matches feeds (feed, key) or consumer groups (group), not both")]
    FeedsAndGroups,
    #[error("ends_at must be after starts_at")]
    EndsBeforeStart,
    #[error("ends_at is in the past")]
    AlreadyOver,
    #[error("a silence may last at most 90 days")]
    TooLong,
    #[error("comment must not be empty: say why")]
    NoComment,
    #[error("give ends_at or duration, not both")]
    EndAndDuration,
    #[error("give ends_at or duration")]
    NoEnd,
    #[error("{0}: not an RFC 3339 time (e.g. 2026-11-25T18:00:00Z)")]
    BadTime(&'static str),
}

fn parse_time(field: &'static str, text: &str) -> Result<i64, SilenceError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|_| SilenceError::BadTime(field))
}

/// A request to create a silence (`POST /api/v1/silences`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Matchers,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339; or `duration`.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// `"2h"`, from `starts_at`.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<std::time::Duration>,
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub allow_data_loss: bool,
}

impl NewSilence {
    /// Validates the request into a silence with `id`.
    pub fn into_silence(self, id: String, now_ms: i64) -> Result<Silence, SilenceError> {
        let matchers = self.matchers;
        if matchers.feed.is_none() && matchers.key.is_none() && matchers.group.is_none() {
            return Err(SilenceError::NoMatcher);
        }
        if matchers.group.is_some() && (matchers.feed.is_some() || matchers.key.is_some()) {
            return Err(SilenceError::FeedsAndGroups);
        }
        if self.comment.trim().is_empty() {
            return Err(SilenceError::NoComment);
        }
        let starts_at_ms = match &self.starts_at {
            Some(text) => parse_time("starts_at", text)?,
            None => now_ms,
        };
        let ends_at_ms = match (&self.ends_at, self.duration) {
            (Some(_), Some(_)) => return Err(SilenceError::EndAndDuration),
            (None, None) => return Err(SilenceError::NoEnd),
            (Some(text), None) => parse_time("ends_at", text)?,
            (None, Some(duration)) => {
                starts_at_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
            }
        };
        if ends_at_ms <= starts_at_ms {
            return Err(SilenceError::EndsBeforeStart);
        }
        if ends_at_ms <= now_ms {
            return Err(SilenceError::AlreadyOver);
        }
        if ends_at_ms - starts_at_ms > MAX_DURATION_MS {
            return Err(SilenceError::TooLong);
        }
        Ok(Silence {
            id,
            matchers,
            starts_at_ms,
            ends_at_ms,
            comment: self.comment,
            created_by: self.created_by,
            allow_data_loss: self.allow_data_loss,
            end_handled: false,
            held_by: None,
        })
    }
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    /// Matches a feed's series (`key` `""` is the feed as a whole, e.g. its roll-up).
    pub fn matches_series(&self, feed: &str, key: &str) -> bool {
        let glob = |pattern: &Option<String>, text: &str| {
            pattern
                .as_ref()
                .is_none_or(|pattern| glob_matches(pattern.as_bytes(), text.as_bytes()))
        };
        self.matchers.group.is_none()
            && glob(&self.matchers.feed, feed)
            && glob(&self.matchers.key, key)
    }

    /// Matches a consumer group's alerts.
    pub fn matches_group(&self, group: &str) -> bool {
        self.matchers
            .group
            .as_ref()
            .is_some_and(|pattern| glob_matches(pattern.as_bytes(), group.as_bytes()))
    }

    /// "until 2026-11-25T18:00:00Z by ana: backfill (id)", for annotations and logs.
    pub fn describe(&self) -> String {
        format!(
            "until {} by {}: {} ({})",
            crate::clock::rfc3339(self.ends_at_ms),
            if self.created_by.is_empty() {
                "someone"
            } else {
                &self.created_by
            },
            self.comment,
            self.id
        )
    }
}

/// What a notice is about, for matching.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Series { feed: &'a str, key: &'a str },
    Group { group: &'a str, data_loss: bool },
}

/// Every silence, shared by the API, the dispatcher and the evaluation loop.
#[derive(Debug, Default)]
pub struct Silences {
    all: Mutex<BTreeMap<String, Silence>>,
}

impl Silences {
    pub fn new() -> Arc<Silences> {
        Arc::new(Silences::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Silence>> {
        self.all.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Replaces the set with what the state store holds.
    pub fn replace(&self, silences: Vec<Silence>) {
        *self.lock() = silences
            .into_iter()
            .map(|silence| (silence.id.clone(), silence))
            .collect();
    }

    pub fn insert(&self, silence: Silence) {
        self.lock().insert(silence.id.clone(), silence);
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.lock().get(id).cloned()
    }

    /// Every silence, active first, then pending, then expired; each by end.
    pub fn list(&self, now_ms: i64) -> Vec<Silence> {
        let mut all: Vec<Silence> = self.lock().values().cloned().collect();
        let rank = |silence: &Silence| {
            if silence.active(now_ms) {
                0
            } else if silence.starts_at_ms > now_ms {
                1
            } else {
                2
            }
        };
        all.sort_by_key(|silence| (rank(silence), silence.ends_at_ms));
        all
    }

    /// How many are in force at `now_ms`.
    pub fn active(&self, now_ms: i64) -> usize {
        self.lock()
            .values()
            .filter(|silence| silence.active(now_ms))
            .count()
    }

    /// The active silence that holds notifications about `subject`, if any. The loss guard:
    /// data loss goes through silences that do not allow it.
    pub fn holding(&self, subject: Subject<'_>, now_ms: i64) -> Option<Silence> {
        self.lock()
            .values()
            .filter(|silence| silence.active(now_ms))
            .find(|silence| match subject {
                Subject::Series { feed, key } => silence.matches_series(feed, key),
                Subject::Group { group, data_loss } => {
                    silence.matches_group(group) && (!data_loss || silence.allow_data_loss)
                }
            })
            .cloned()
    }

    /// Silences that ended (or were expired) and whose end the leader has not handled yet.
    pub fn ended_unhandled(&self, now_ms: i64) -> Vec<Silence> {
        self.lock()
            .values()
            .filter(|silence| silence.ends_at_ms <= now_ms && !silence.end_handled)
            .cloned()
            .collect()
    }

    /// Expired silences older than [`KEEP_EXPIRED_MS`], to remove from the store.
    pub fn forgotten(&self, now_ms: i64) -> Vec<String> {
        self.lock()
            .values()
            .filter(|silence| silence.end_handled && silence.ends_at_ms + KEEP_EXPIRED_MS <= now_ms)
            .map(|silence| silence.id.clone())
            .collect()
    }
}

/// Silences as the API and the loops change them: the state store first, then memory, under one
/// gate so a reload never drops a silence created meanwhile.
#[derive(Debug, Clone)]
pub struct SilenceBook {
    pub silences: Arc<Silences>,
    store: crate::state::StateStore,
    clock: crate::clock::SharedClock,
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// Why the API could not change a silence.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Invalid(#[from] SilenceError),
    #[error("no silence with id {0:?}")]
    Unknown(String),
    #[error("state store: {0}")]
    Store(#[from] crate::state::StateError),
}

impl SilenceBook {
    pub fn new(
        silences: Arc<Silences>,
        store: crate::state::StateStore,
        clock: crate::clock::SharedClock,
    ) -> SilenceBook {
        SilenceBook {
            silences,
            store,
            clock,
            gate: Arc::default(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn save(&self, silence: &Silence) -> Result<(), crate::state::StateError> {
        let json = serde_json::to_string(silence).unwrap_or_default();
        self.store
            .documents_write(
                crate::state::Documents::Silences,
                vec![(silence.id.clone(), json)],
            )
            .await
    }

    pub async fn create(&self, request: NewSilence) -> Result<Silence, BookError> {
        let silence = request.into_silence(new_id(), self.clock.now_ms())?;
        let _gate = self.gate.lock().await;
        self.save(&silence).await?;
        self.silences.insert(silence.clone());
        Ok(silence)
    }

    /// Stores `silence` as it is (freshwatch's own: a pipeline's held hop), new or changed.
    pub async fn put(&self, silence: Silence) -> Result<(), BookError> {
        let _gate = self.gate.lock().await;
        self.save(&silence).await?;
        self.silences.insert(silence);
        Ok(())
    }

    /// Ends a silence now; what it held and still fires is sent at the leader's next tick.
    pub async fn expire(&self, id: &str) -> Result<Silence, BookError> {
        let _gate = self.gate.lock().await;
        let mut silence = self
            .silences
            .get(id)
            .ok_or_else(|| BookError::Unknown(id.to_owned()))?;
        let now_ms = self.clock.now_ms();
        if silence.ends_at_ms > now_ms {
            silence.ends_at_ms = now_ms;
            silence.starts_at_ms = silence.starts_at_ms.min(now_ms);
            self.save(&silence).await?;
            self.silences.insert(silence.clone());
        }
        Ok(silence)
    }

    /// The leader told the sinks what the silence held and still fires. Marked in memory first:
    /// with the state store down the end must not be handled (and its pages sent) again on every
    /// tick; [`SilenceBook::reload`] writes the mark once the store answers.
    pub async fn mark_end_handled(&self, mut silence: Silence) -> Result<(), BookError> {
        let _gate = self.gate.lock().await;
        silence.end_handled = true;
        self.silences.insert(silence.clone());
        self.save(&silence).await?;
        Ok(())
    }

    /// The store lost its data: every silence held in memory is written again.
    pub async fn write_back(&self) {
        let _gate = self.gate.lock().await;
        let entries: Vec<(String, String)> = self
            .silences
            .list(self.clock.now_ms())
            .iter()
            .filter_map(|silence| Some((silence.id.clone(), serde_json::to_string(silence).ok()?)))
            .collect();
        let count = entries.len();
        match self
            .store
            .documents_write(crate::state::Documents::Silences, entries)
            .await
        {
            Ok(()) => tracing::info!(silences = count, "silences written back"),
            Err(error) => tracing::warn!(%error, "silences not written back yet"),
        }
    }

    /// Takes up what the state store holds (other replicas' changes), and removes silences
    /// expired for longer than [`KEEP_EXPIRED_MS`]. A silence held here that the store lacks is
    /// kept until it is forgotten: nothing but forgetting removes a silence from the store, so
    /// its absence means the store lost it (restarted empty), and the repair writes it back.
    pub async fn reload(&self) -> Result<(), BookError> {
        let _gate = self.gate.lock().await;
        let stored = self
            .store
            .documents_load(crate::state::Documents::Silences)
            .await?;
        let now_ms = self.clock.now_ms();
        let mut silences = Vec::with_capacity(stored.len());
        let mut unsaved_ends = Vec::new();
        let stored_ids: std::collections::HashSet<String> =
            stored.iter().map(|(id, _)| id.clone()).collect();
        let forgotten_here = self.silences.forgotten(now_ms);
        silences.extend(
            self.silences
                .list(now_ms)
                .into_iter()
                .filter(|own| !stored_ids.contains(&own.id) && !forgotten_here.contains(&own.id)),
        );
        for (id, json) in stored {
            match serde_json::from_str::<Silence>(&json) {
                Ok(mut silence) => {
                    // An end handled while the store was down: handled it stays, and is written.
                    let handled_here = self.silences.get(&id).is_some_and(|own| own.end_handled);
                    if handled_here && !silence.end_handled {
                        silence.end_handled = true;
                        unsaved_ends.push(silence.clone());
                    }
                    silences.push(silence);
                }
                Err(error) => tracing::warn!(%id, %error, "unreadable silence ignored"),
            }
        }
        self.silences.replace(silences);
        for silence in &unsaved_ends {
            self.save(silence).await?;
        }
        let forgotten = self.silences.forgotten(now_ms);
        if !forgotten.is_empty() {
            self.store
                .documents_remove(crate::state::Documents::Silences, forgotten)
                .await?;
        }
        Ok(())
    }
}

/// A fresh silence id: 16 hex digits. `RandomState` is seeded from the OS's randomness, so ids
/// from replicas and restarts do not collide.
pub fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

pub mod client;

#[cfg(test)]
mod tests;
