//! Where last-seen times and verdicts survive restarts: Redis when `state.redis_url` is set,
//! else an embedded redb file under `state.path`.
//!
//! Writes are merges: last-seen is a max, so writing a value twice, late, or from two replicas
//! never moves a series backwards. The flush loop in [`crate::app`] writes only the series that
//! changed since the last flush.
//!
//! A learned feed's series also carry their cadence summary ([`crate::cadence::Cadence`]),
//! written with the series (it only changes when last-seen does) and merged by a bucket-wise
//! max when read back, at start or by a follower's reload, and in Redis also when written, so
//! two replicas that learned the same series lose none of each other's buckets.

mod embedded;
mod redis_store;

use std::collections::HashMap;
use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use redis_store::{ChangeCursor, RedisStore};

use crate::cadence::Cadence;
use crate::config::{StateBackend, StateConfig};
use crate::model::Status;

/// Why the store could not be used. All are transient from freshwatch's point of view: the
/// flush loop keeps the changes and retries.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("embedded store at {path}: {message}")]
    Embedded { path: String, message: String },
    #[error("stored value for {what} is corrupt: {value:?}")]
    Corrupt { what: String, value: String },
}

/// One series as written to or read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRecord {
    pub feed: Arc<str>,
    pub key: Vec<u8>,
    pub last_seen_ms: Option<i64>,
    /// The verdict and when it was entered.
    pub status: Option<(Status, i64)>,
    /// A learned feed's cadence summary, once it learned a gap.
    pub cadence: Option<Cadence>,
}

/// The record of `key` in `by_key`, created empty (key only) the first time one of its fields
/// is read: the stores read last-seen, status and cadence from separate tables.
fn record_of<'a>(
    by_key: &'a mut std::collections::BTreeMap<Vec<u8>, SeriesRecord>,
    feed: &Arc<str>,
    key: Vec<u8>,
) -> &'a mut SeriesRecord {
    by_key
        .entry(key)
        .or_insert_with_key(|key| SeriesRecord::empty(feed, key.clone()))
}

impl SeriesRecord {
    /// A series known by key only, filled in as its fields are read.
    fn empty(feed: &Arc<str>, key: Vec<u8>) -> SeriesRecord {
        SeriesRecord {
            feed: feed.clone(),
            key,
            last_seen_ms: None,
            status: None,
            cadence: None,
        }
    }
}

/// What a write could not do, though the store answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The statuses were refused: a leader with this newer fencing token wrote the feed. The
    /// last-seen times were merged all the same.
    pub fenced_by: Option<u64>,
}

/// Everything loaded at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub series: Vec<SeriesRecord>,
    /// Per feed: when freshwatch first watched it.
    pub watch_started_ms: HashMap<String, i64>,
}

/// The marker that says the store holds freshwatch's state (`freshwatch:epoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    /// When it was set, unix ms: a value other than the one a replica saw before means the
    /// store lost everything since (and someone set the marker again).
    pub marker: i64,
    /// It was there: `false` when this call set it.
    pub was_there: bool,
}

/// Small JSON documents kept by name (a Redis hash, a redb table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Documents {
    /// Per watched (group, topic): see [`crate::groups`].
    Groups,
    /// Per feed: its open roll-up, see [`crate::rollup`].
    RollUps,
    /// Per id: a silence, see [`crate::silence`].
    Silences,
    /// Per feed: its last status transitions, see [`crate::history`].
    History,
    /// Per feed and key: its learned volume baseline and open alert, see [`crate::volume`].
    Volume,
    /// Per replica: its own record counts of the feeds with `min_rate`, see
    /// [`crate::volume::replicas`].
    VolumeCounts,
    /// Per feed that learns by hour: its hours, see [`crate::cadence::Weekly`].
    Hours,
    /// Per feed whose `FreshwatchKeyLimit` fires: since when, see `app::key_limit`.
    KeyLimits,
    /// Per alert about freshwatch itself that fires (`FreshwatchSourceDown`, `FeedBlind`, ...):
    /// since when and what it said, see `app::watch`.
    SelfAlerts,
    /// Per `[[pipeline.audit]]` and replica (`<pipeline>/<from>/<to>@<instance>`): its open
    /// buckets and how far it counted, see [`crate::audit`].
    Audits,
    /// Per audit: the leader's closed buckets and open `RecordsMissing`.
    AuditResults,
}

impl Documents {
    pub fn name(self) -> &'static str {
        match self {
            Documents::Groups => "groups",
            Documents::RollUps => "rollups",
            Documents::Silences => "silences",
            Documents::History => "history",
            Documents::Volume => "volume",
            Documents::VolumeCounts => "volume_counts",
            Documents::Hours => "cadence_hours",
            Documents::KeyLimits => "key_limits",
            Documents::SelfAlerts => "self_alerts",
            Documents::Audits => "audits",
            Documents::AuditResults => "audit_results",
        }
    }
}

/// The configured store.
#[derive(Debug, Clone)]
pub enum StateStore {
    Redis(RedisStore),
    Embedded(EmbeddedStore),
}

impl StateStore {
    pub async fn open(config: &StateConfig) -> Result<StateStore, StateError> {
        match &config.backend {
            StateBackend::Redis { url } => Ok(StateStore::Redis(
                RedisStore::connect(url.expose(), &config.key_prefix).await?,
            )),
            StateBackend::RedisCluster { nodes } => {
                let nodes: Vec<String> =
                    nodes.iter().map(|node| node.expose().to_owned()).collect();
                Ok(StateStore::Redis(
                    RedisStore::connect_cluster(&nodes, &config.key_prefix).await?,
                ))
            }
            StateBackend::Embedded { path } => Ok(StateStore::Embedded(
                EmbeddedStore::open(path.clone()).await?,
            )),
        }
    }

    /// The Redis store, when there is one (replicas need it for leadership).
    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            StateStore::Redis(store) => Some(store),
            StateStore::Embedded(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StateStore::Redis(_) => "redis",
            StateStore::Embedded(_) => "embedded",
        }
    }

    /// Reads every series of the named feeds; feeds no longer configured are ignored.
    pub async fn load(&self, feeds: &[Arc<str>]) -> Result<Snapshot, StateError> {
        match self {
            StateStore::Redis(store) => store.load(feeds).await,
            StateStore::Embedded(store) => store.load(feeds).await,
        }
    }

    /// The series of `feeds` written since `cursors` (one per feed) were last used: with Redis,
    /// only what changed (its change log); the embedded store, which no replica shares, reads
    /// everything.
    pub async fn load_changed(
        &self,
        feeds: &[Arc<str>],
        cursors: &mut [ChangeCursor],
    ) -> Result<Vec<SeriesRecord>, StateError> {
        match self {
            StateStore::Redis(store) => store.load_changed(feeds, cursors).await,
            StateStore::Embedded(store) => Ok(store.load(feeds).await?.series),
        }
    }

    /// Records when a feed was first watched, keeping an older value; returns the value kept.
    pub async fn watch_started(&self, feed: &str, now_ms: i64) -> Result<i64, StateError> {
        match self {
            StateStore::Redis(store) => store.watch_started(feed, now_ms).await,
            StateStore::Embedded(store) => store.watch_started(feed, now_ms).await,
        }
    }

    /// [`StateStore::watch_started`] of one expected value of a feed (its own clock).
    pub async fn expected_started(
        &self,
        feed: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        self.watch_started(&expected_entry(feed, value), now_ms)
            .await
    }

    /// Merges `records` into the store: last-seen by max, status by overwrite. With `fence`
    /// (the leader's fencing token), statuses are refused once a newer leader wrote them, and
    /// the answer says so.
    pub async fn write(
        &self,
        records: Vec<SeriesRecord>,
        fence: Option<u64>,
    ) -> Result<WriteOutcome, StateError> {
        if records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        match self {
            StateStore::Redis(store) => store.write(&records, fence).await,
            StateStore::Embedded(store) => {
                store.write(records).await?;
                Ok(WriteOutcome::default())
            }
        }
    }

    /// Appends a notification for `sink` to its durable outbox; returns the entry's id.
    pub async fn outbox_push(&self, sink: &str, entry: &str) -> Result<String, StateError> {
        match self {
            StateStore::Redis(store) => store.outbox_push(sink, entry).await,
            StateStore::Embedded(store) => store.outbox_push(sink, entry).await,
        }
    }

    /// The entries of `sink`'s outbox, oldest first.
    pub async fn outbox_list(&self, sink: &str) -> Result<Vec<(String, String)>, StateError> {
        match self {
            StateStore::Redis(store) => store.outbox_list(sink).await,
            StateStore::Embedded(store) => store.outbox_list(sink).await,
        }
    }

    /// Removes a delivered entry.
    pub async fn outbox_remove(&self, sink: &str, id: &str) -> Result<(), StateError> {
        match self {
            StateStore::Redis(store) => store.outbox_remove(sink, id).await,
            StateStore::Embedded(store) => store.outbox_remove(sink, id).await,
        }
    }

    /// Whether the store still holds freshwatch's state: sets the marker when it is missing
    /// (a new store, or one that lost everything). The embedded store cannot lose its file
    /// behind freshwatch's back without failing, so it always holds, with one marker.
    pub async fn epoch_ensure(&self, now_ms: i64) -> Result<Epoch, StateError> {
        match self {
            StateStore::Redis(store) => store.epoch_ensure(now_ms).await,
            StateStore::Embedded(_) => Ok(Epoch {
                marker: 0,
                was_there: true,
            }),
        }
    }

    /// Every entry of `table` as written by [`StateStore::documents_write`].
    pub async fn documents_load(
        &self,
        table: Documents,
    ) -> Result<Vec<(String, String)>, StateError> {
        match self {
            StateStore::Redis(store) => store.documents_load(table).await,
            StateStore::Embedded(store) => store.documents_load(table).await,
        }
    }

    /// Overwrites the given entries of `table`.
    pub async fn documents_write(
        &self,
        table: Documents,
        entries: Vec<(String, String)>,
    ) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        match self {
            StateStore::Redis(store) => store.documents_write(table, &entries).await,
            StateStore::Embedded(store) => store.documents_write(table, entries).await,
        }
    }

    /// Removes the named entries of `table`.
    pub async fn documents_remove(
        &self,
        table: Documents,
        names: Vec<String>,
    ) -> Result<(), StateError> {
        if names.is_empty() {
            return Ok(());
        }
        match self {
            StateStore::Redis(store) => store.documents_remove(table, &names).await,
            StateStore::Embedded(store) => store.documents_remove(table, names).await,
        }
    }

    /// Whether the store answers now.
    pub async fn ping(&self) -> Result<(), StateError> {
        match self {
            StateStore::Redis(store) => store.ping().await,
            StateStore::Embedded(_) => Ok(()),
        }
    }
}

/// Where an expected value's start is kept: `<feed>#expected#<value>` (feed names hold no `#`).
fn expected_entry(feed: &str, value: &str) -> String {
    format!("{feed}#expected#{value}")
}

/// Status as stored: `critical@1700000000000`.
fn encode_status(status: Status, since_ms: i64) -> String {
    format!("{}@{since_ms}", status.as_str())
}

/// A cadence as stored: see [`Cadence::encode`].
fn decode_cadence(what: &str, text: &str) -> Result<Cadence, StateError> {
    Cadence::decode(text).ok_or_else(|| StateError::Corrupt {
        what: what.to_owned(),
        value: text.to_owned(),
    })
}

fn decode_status(what: &str, text: &str) -> Result<(Status, i64), StateError> {
    let corrupt = || StateError::Corrupt {
        what: what.to_owned(),
        value: text.to_owned(),
    };
    let (status, since) = text.split_once('@').ok_or_else(corrupt)?;
    let status = Status::parse(status).ok_or_else(corrupt)?;
    let since_ms = since.parse().map_err(|_| corrupt())?;
    Ok((status, since_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_encoding_round_trips() {
        for status in Status::ALL {
            let text = encode_status(status, 1_700_000_000_000);
            assert_eq!(
                decode_status("x", &text).unwrap(),
                (status, 1_700_000_000_000)
            );
        }
        assert!(decode_status("x", "bogus").is_err());
        assert!(decode_status("x", "critical@soon").is_err());
    }
}
