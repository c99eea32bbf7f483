//! The embedded store: one redb file, `<state.path>/state.redb`, for single-instance deployments
//! without Redis. redb holds a file lock, so a second process on the same path fails at start
//! instead of corrupting state.

use std::path::PathBuf;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use super::{
    decode_cadence, decode_status, encode_status, record_of, Documents, SeriesRecord, Snapshot,
    StateError,
};

const LAST_SEEN: TableDefinition<(&str, &[u8]), i64> = TableDefinition::new("last_seen");
const STATUS: TableDefinition<(&str, &[u8]), &str> = TableDefinition::new("status");
/// A learned feed's cadence summaries, `c3:<gaps>:<halvings>:<hex>` ([`crate::cadence::Cadence::encode`]).
const CADENCE: TableDefinition<(&str, &[u8]), &str> = TableDefinition::new("cadence");
const WATCH_STARTED: TableDefinition<&str, i64> = TableDefinition::new("watch_started");
const OUTBOX: TableDefinition<(&str, u64), &str> = TableDefinition::new("outbox");
const OUTBOX_SEQUENCE: TableDefinition<&str, u64> = TableDefinition::new("outbox_sequence");
const GROUPS: TableDefinition<&str, &str> = TableDefinition::new("groups");
const ROLLUPS: TableDefinition<&str, &str> = TableDefinition::new("rollups");
const SILENCES: TableDefinition<&str, &str> = TableDefinition::new("silences");
const HISTORY: TableDefinition<&str, &str> = TableDefinition::new("history");
const VOLUME: TableDefinition<&str, &str> = TableDefinition::new("volume");
const VOLUME_COUNTS: TableDefinition<&str, &str> = TableDefinition::new("volume_counts");
const HOURS: TableDefinition<&str, &str> = TableDefinition::new("cadence_hours");
const KEY_LIMITS: TableDefinition<&str, &str> = TableDefinition::new("key_limits");
const SELF_ALERTS: TableDefinition<&str, &str> = TableDefinition::new("self_alerts");
const AUDITS: TableDefinition<&str, &str> = TableDefinition::new("audits");
const AUDIT_RESULTS: TableDefinition<&str, &str> = TableDefinition::new("audit_results");

fn documents(table: Documents) -> TableDefinition<'static, &'static str, &'static str> {
    match table {
        Documents::Groups => GROUPS,
        Documents::RollUps => ROLLUPS,
        Documents::Silences => SILENCES,
        Documents::History => HISTORY,
        Documents::Volume => VOLUME,
        Documents::VolumeCounts => VOLUME_COUNTS,
        Documents::Hours => HOURS,
        Documents::KeyLimits => KEY_LIMITS,
        Documents::SelfAlerts => SELF_ALERTS,
        Documents::Audits => AUDITS,
        Documents::AuditResults => AUDIT_RESULTS,
    }
}

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    database: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedStore {
    pub async fn open(directory: PathBuf) -> Result<EmbeddedStore, StateError> {
        let path = directory.join("state.redb");
        let error_path = path.clone();
        let database = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&directory).map_err(|error| error.to_string())?;
            let database = Database::create(&error_path).map_err(|error| error.to_string())?;
            let transaction = database.begin_write().map_err(|error| error.to_string())?;
            transaction
                .open_table(LAST_SEEN)
                .map_err(|error| error.to_string())?;
            transaction
                .open_table(STATUS)
                .map_err(|error| error.to_string())?;
            transaction
                .open_table(CADENCE)
                .map_err(|error| error.to_string())?;
            transaction
                .open_table(WATCH_STARTED)
                .map_err(|error| error.to_string())?;
            transaction
                .open_table(OUTBOX)
                .map_err(|error| error.to_string())?;
            transaction
                .open_table(OUTBOX_SEQUENCE)
                .map_err(|error| error.to_string())?;
            for table in [
                GROUPS,
                ROLLUPS,
                SILENCES,
                HISTORY,
                VOLUME,
                VOLUME_COUNTS,
                HOURS,
                KEY_LIMITS,
                SELF_ALERTS,
                AUDITS,
                AUDIT_RESULTS,
            ] {
                transaction
                    .open_table(table)
                    .map_err(|error| error.to_string())?;
            }
            transaction.commit().map_err(|error| error.to_string())?;
            Ok::<_, String>(database)
        })
        .await
        .map_err(|error| error.to_string())
        .and_then(|result| result)
        .map_err(|message| StateError::Embedded {
            path: path.display().to_string(),
            message,
        })?;
        Ok(EmbeddedStore {
            database: Arc::new(database),
            path,
        })
    }

    fn error(&self, error: impl std::fmt::Display) -> StateError {
        StateError::Embedded {
            path: self.path.display().to_string(),
            message: error.to_string(),
        }
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let database = self.database.clone();
        tokio::task::spawn_blocking(move || work(&database))
            .await
            .map_err(|error| self.error(error))?
    }

    /// Every split value of `feed` in a text-valued series table (statuses, cadences), in order.
    fn each_text(
        &self,
        table: &redb::ReadOnlyTable<(&'static str, &'static [u8]), &'static str>,
        feed: &str,
        mut each: impl FnMut(Vec<u8>, &str) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let range_end: &[u8] = &[0xff; 1024];
        let lower: (&str, &[u8]) = (feed, &[]);
        let upper: (&str, &[u8]) = (feed, range_end);
        for entry in table
            .range(lower..upper)
            .map_err(|error| self.error(error))?
        {
            let (key, value) = entry.map_err(|error| self.error(error))?;
            each(key.value().1.to_vec(), value.value())?;
        }
        Ok(())
    }

    pub async fn load(&self, feeds: &[Arc<str>]) -> Result<Snapshot, StateError> {
        let feeds = feeds.to_vec();
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_read().map_err(|error| store.error(error))?;
            let last_seen = transaction
                .open_table(LAST_SEEN)
                .map_err(|error| store.error(error))?;
            let statuses = transaction
                .open_table(STATUS)
                .map_err(|error| store.error(error))?;
            let started = transaction
                .open_table(WATCH_STARTED)
                .map_err(|error| store.error(error))?;
            let cadences = transaction
                .open_table(CADENCE)
                .map_err(|error| store.error(error))?;
            let mut snapshot = Snapshot::default();
            for feed in &feeds {
                let mut by_key: std::collections::BTreeMap<Vec<u8>, SeriesRecord> =
                    std::collections::BTreeMap::new();
                let range_end: &[u8] = &[0xff; 1024];
                let lower: (&str, &[u8]) = (feed, &[]);
                let upper: (&str, &[u8]) = (feed, range_end);
                for entry in last_seen
                    .range(lower..upper)
                    .map_err(|error| store.error(error))?
                {
                    let (key, value) = entry.map_err(|error| store.error(error))?;
                    let split_key = key.value().1.to_vec();
                    record_of(&mut by_key, feed, split_key).last_seen_ms = Some(value.value());
                }
                store.each_text(&statuses, feed, |split_key, text| {
                    let status = decode_status(&format!("status of {feed}"), text)?;
                    record_of(&mut by_key, feed, split_key).status = Some(status);
                    Ok(())
                })?;
                store.each_text(&cadences, feed, |split_key, text| {
                    let cadence = decode_cadence(&format!("cadence of {feed}"), text)?;
                    record_of(&mut by_key, feed, split_key).cadence = Some(cadence);
                    Ok(())
                })?;
                snapshot.series.extend(by_key.into_values());
                if let Some(value) = started.get(&**feed).map_err(|error| store.error(error))? {
                    snapshot
                        .watch_started_ms
                        .insert(feed.to_string(), value.value());
                }
            }
            Ok(snapshot)
        })
        .await
    }

    pub async fn watch_started(&self, feed: &str, now_ms: i64) -> Result<i64, StateError> {
        let feed = feed.to_owned();
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(|error| store.error(error))?;
            let kept = {
                let mut table = transaction
                    .open_table(WATCH_STARTED)
                    .map_err(|error| store.error(error))?;
                let existing = table
                    .get(feed.as_str())
                    .map_err(|error| store.error(error))?
                    .map(|value| value.value());
                match existing {
                    Some(existing) => existing,
                    None => {
                        table
                            .insert(feed.as_str(), now_ms)
                            .map_err(|error| store.error(error))?;
                        now_ms
                    }
                }
            };
            transaction.commit().map_err(|error| store.error(error))?;
            Ok(kept)
        })
        .await
    }

    pub async fn write(&self, records: Vec<SeriesRecord>) -> Result<(), StateError> {
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(|error| store.error(error))?;
            {
                let mut last_seen = transaction
                    .open_table(LAST_SEEN)
                    .map_err(|error| store.error(error))?;
                let mut statuses = transaction
                    .open_table(STATUS)
                    .map_err(|error| store.error(error))?;
                let mut cadences = transaction
                    .open_table(CADENCE)
                    .map_err(|error| store.error(error))?;
                for record in &records {
                    let key: (&str, &[u8]) = (&record.feed, &record.key);
                    if let Some(millis) = record.last_seen_ms {
                        let current = last_seen
                            .get(key)
                            .map_err(|error| store.error(error))?
                            .map(|value| value.value());
                        if current.is_none_or(|current| current < millis) {
                            last_seen
                                .insert(key, millis)
                                .map_err(|error| store.error(error))?;
                        }
                    }
                    if let Some((status, since)) = record.status {
                        statuses
                            .insert(key, encode_status(status, since).as_str())
                            .map_err(|error| store.error(error))?;
                    }
                    if let Some(cadence) = &record.cadence {
                        cadences
                            .insert(key, cadence.encode().as_str())
                            .map_err(|error| store.error(error))?;
                    }
                }
            }
            transaction.commit().map_err(|error| store.error(error))?;
            Ok(())
        })
        .await
    }
}

impl EmbeddedStore {
    pub async fn documents_load(
        &self,
        documents_table: Documents,
    ) -> Result<Vec<(String, String)>, StateError> {
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_read().map_err(|error| store.error(error))?;
            let table = transaction
                .open_table(documents(documents_table))
                .map_err(|error| store.error(error))?;
            let mut entries = Vec::new();
            for entry in table.iter().map_err(|error| store.error(error))? {
                let (key, value) = entry.map_err(|error| store.error(error))?;
                entries.push((key.value().to_owned(), value.value().to_owned()));
            }
            Ok(entries)
        })
        .await
    }

    pub async fn documents_write(
        &self,
        documents_table: Documents,
        entries: Vec<(String, String)>,
    ) -> Result<(), StateError> {
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(|error| store.error(error))?;
            {
                let mut table = transaction
                    .open_table(documents(documents_table))
                    .map_err(|error| store.error(error))?;
                for (key, value) in &entries {
                    table
                        .insert(key.as_str(), value.as_str())
                        .map_err(|error| store.error(error))?;
                }
            }
            transaction.commit().map_err(|error| store.error(error))?;
            Ok(())
        })
        .await
    }

    pub async fn documents_remove(
        &self,
        documents_table: Documents,
        names: Vec<String>,
    ) -> Result<(), StateError> {
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(|error| store.error(error))?;
            {
                let mut table = transaction
                    .open_table(documents(documents_table))
                    .map_err(|error| store.error(error))?;
                for name in &names {
                    table
                        .remove(name.as_str())
                        .map_err(|error| store.error(error))?;
                }
            }
            transaction.commit().map_err(|error| store.error(error))?;
            Ok(())
        })
        .await
    }

    pub async fn outbox_push(&self, sink: &str, entry: &str) -> Result<String, StateError> {
        let (sink, entry) = (sink.to_owned(), entry.to_owned());
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(|error| store.error(error))?;
            let sequence = {
                let mut sequences = transaction
                    .open_table(OUTBOX_SEQUENCE)
                    .map_err(|error| store.error(error))?;
                let next = sequences
                    .get(sink.as_str())
                    .map_err(|error| store.error(error))?
                    .map_or(0, |value| value.value())
                    + 1;
                sequences
                    .insert(sink.as_str(), next)
                    .map_err(|error| store.error(error))?;
                let mut outbox = transaction
                    .open_table(OUTBOX)
                    .map_err(|error| store.error(error))?;
                outbox
                    .insert((sink.as_str(), next), entry.as_str())
                    .map_err(|error| store.error(error))?;
                next
            };
            transaction.commit().map_err(|error| store.error(error))?;
            Ok(sequence.to_string())
        })
        .await
    }

    pub async fn outbox_list(&self, sink: &str) -> Result<Vec<(String, String)>, StateError> {
        let sink = sink.to_owned();
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_read().map_err(|error| store.error(error))?;
            let outbox = transaction
                .open_table(OUTBOX)
                .map_err(|error| store.error(error))?;
            let mut entries = Vec::new();
            for entry in outbox
                .range((sink.as_str(), 0)..=(sink.as_str(), u64::MAX))
                .map_err(|error| store.error(error))?
            {
                let (key, value) = entry.map_err(|error| store.error(error))?;
                entries.push((key.value().1.to_string(), value.value().to_owned()));
            }
            Ok(entries)
        })
        .await
    }

    pub async fn outbox_remove(&self, sink: &str, id: &str) -> Result<(), StateError> {
        let sink = sink.to_owned();
        let sequence: u64 = id.parse().map_err(|_| StateError::Corrupt {
            what: format!("outbox id of {sink}"),
            value: id.to_owned(),
        })?;
        let store = self.clone();
        self.blocking(move |database| {
            let transaction = database.begin_write().map_err(|error| store.error(error))?;
            {
                let mut outbox = transaction
                    .open_table(OUTBOX)
                    .map_err(|error| store.error(error))?;
                outbox
                    .remove((sink.as_str(), sequence))
                    .map_err(|error| store.error(error))?;
            }
            transaction.commit().map_err(|error| store.error(error))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn record(feed: &str, key: &str, last_seen: i64) -> SeriesRecord {
        SeriesRecord {
            feed: Arc::from(feed),
            key: key.as_bytes().to_vec(),
            last_seen_ms: Some(last_seen),
            status: Some((Status::Critical, 42)),
            cadence: None,
        }
    }

    #[tokio::test]
    async fn writes_merge_by_max_and_survive_reopen() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(directory.path().to_owned())
                .await
                .unwrap();
            store
                .write(vec![
                    record("profiles", "acme", 100),
                    record("orders", "", 7),
                ])
                .await
                .unwrap();
            store
                .write(vec![record("profiles", "acme", 50)])
                .await
                .unwrap();
            assert_eq!(store.watch_started("profiles", 10).await.unwrap(), 10);
            assert_eq!(store.watch_started("profiles", 20).await.unwrap(), 10);
        }
        let store = EmbeddedStore::open(directory.path().to_owned())
            .await
            .unwrap();
        let snapshot = store
            .load(&[Arc::from("profiles"), Arc::from("orders")])
            .await
            .unwrap();
        let mut series = snapshot.series;
        series.sort_by(|a, b| a.feed.cmp(&b.feed));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].feed.as_ref(), "orders");
        assert_eq!(
            series[1].last_seen_ms,
            Some(100),
            "max wins over a later, older write"
        );
        assert_eq!(series[1].status, Some((Status::Critical, 42)));
        assert_eq!(snapshot.watch_started_ms["profiles"], 10);
    }

    #[tokio::test]
    async fn the_outbox_keeps_order_per_sink_and_survives_reopen() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(directory.path().to_owned())
                .await
                .unwrap();
            let first = store.outbox_push("pd", "one").await.unwrap();
            store.outbox_push("pd", "two").await.unwrap();
            store.outbox_push("slack", "other").await.unwrap();
            store.outbox_remove("pd", &first).await.unwrap();
            store.outbox_push("pd", "three").await.unwrap();
        }
        let store = EmbeddedStore::open(directory.path().to_owned())
            .await
            .unwrap();
        let pending: Vec<String> = store
            .outbox_list("pd")
            .await
            .unwrap()
            .into_iter()
            .map(|(_, entry)| entry)
            .collect();
        assert_eq!(pending, ["two", "three"]);
        assert_eq!(store.outbox_list("slack").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_feed_prefix_does_not_leak_into_another_feed() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(directory.path().to_owned())
            .await
            .unwrap();
        store
            .write(vec![record("pro", "x", 1), record("profiles", "y", 2)])
            .await
            .unwrap();
        let snapshot = store.load(&[Arc::from("pro")]).await.unwrap();
        assert_eq!(snapshot.series.len(), 1);
        assert_eq!(snapshot.series[0].key, b"x");
    }
}
