//! Redis layout, one hash tag per feed so a feed's keys stay on one Redis Cluster slot:
//! - `{prefix}:{<feed>}:last_seen`: hash, split value → unix ms, merged with a max (Lua);
//! - `{prefix}:{<feed>}:status`: hash, split value → `status@since_ms`;
//! - `{prefix}:{<feed>}:cadence`: hash, split value → a learned feed's cadence summary,
//!   `c3:<gaps>:<halvings>:<40 hex digits>` ([`crate::cadence::Cadence::encode`]), merged with a
//!   halving-aware bucket-wise max (Lua, [`CADENCE_MERGE`]) so two writers of one series lose no bucket; a
//!   stored value that is not a summary is replaced;
//! - `{prefix}:{<feed>}:meta`: hash, `watch_started` → unix ms (set once);
//! - `{prefix}:{<feed>}:fence`: the highest leader fencing token that wrote the feed's statuses;
//! - `{prefix}:{<feed>}:changes`: stream, one entry per write of the feed naming the split values
//!   it wrote, trimmed to the last [`CHANGE_LOG_WINDOW_MS`]: replicas reload only what changed;
//! - `{prefix}:outbox:{<sink>}`: stream of undelivered notifications, oldest first;
//! - `{prefix}:groups`, `{prefix}:rollups`, `{prefix}:silences`, `{prefix}:history`,
//!   `{prefix}:key_limits`, ...: hashes of JSON documents ([`Documents`]).
//!
//! The unsplit feed's split value is the empty string.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{
    decode_cadence, decode_status, encode_status, record_of, Documents, Epoch, SeriesRecord,
    Snapshot, StateError, WriteOutcome,
};
use crate::model::Status;

/// Keeps the larger of the stored and the given last-seen, per field; safe across replicas.
const MAX_MERGE: &str = r"
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
";

/// HSET of status fields unless a newer leader already wrote this feed: KEYS[2] (in the feed's
/// hash slot) keeps the highest fencing token that wrote, ARGV[1] is the writer's token. Returns
/// 0 when written, else the newer token that refused the write (always above 0), so the writer
/// learns it was deposed and which token its next term must beat.
const FENCED_HSET: &str = r"
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = tonumber(ARGV[1])
if token < newest then return newest end
redis.call('SET', KEYS[2], ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 0
";

/// INCR of the fencing token (KEYS[1]), lifted above ARGV[1] (the highest token the caller has
/// seen) when it is not: after Redis lost its data the counter starts again at 1, below the
/// fences an earlier leader may have written since, and a term with a token below them would
/// have every status write refused.
const NEXT_TOKEN: &str = r"
local token = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[1], token)
end
return token
";

/// Merges cadence summaries into KEYS[1] (ARGV: field, summary, ...) by
/// [`crate::cadence::Cadence::merge`]'s rule, so replicas that learned the same series from
/// different records, or a writer that restarted, add to one another instead of the last
/// writer's copy erasing the other's buckets, and a copy stored before a halving does not undo
/// it. A stored value this script cannot read (not in a form [`crate::cadence::Cadence::decode`]
/// reads as time: `c3:<gaps>:<halvings>:<hex>`) is replaced: a load would refuse it as corrupt
/// anyway, and an earlier version's `c2:`/`c1:` counted records, not time (a load reads it as
/// empty).
///
/// Copies at the same halvings (the usual case) compare buckets as bytes, two lowercase hex
/// digits each ('0'-'9' sort below 'a'-'f', so byte order is the counters' order); usually the
/// writer's summary already holds the stored one (it merged it at start or reload), so only the
/// stored summary's non-zero buckets are looked at, and the whole summary is rebuilt only when
/// the stored one adds something. Copies at different halvings (after a counter passed 255) are
/// decoded, the older halved to the newer's scale, and merged number by number.
static CADENCE_MERGE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local function parse(text)
  if not text then return nil end
  local gaps, halvings, hex = string.match(text, '^c3:(%d+):(%d+):([0-9a-f]+)$')
  if (not gaps) or #hex ~= 40 or tonumber(gaps) > 65535 or tonumber(halvings) > 65535 then
    return nil
  end
  return tonumber(gaps), tonumber(halvings), hex
end
local function larger(a1, a2, b1, b2)
  return a1 > b1 or (a1 == b1 and a2 > b2)
end
local function stored_adds(stored_hex, hex)
  local at = string.find(stored_hex, '[^0]')
  while at do
    local b = at - 1 + at % 2
    local s1, s2 = string.byte(stored_hex, b, b + 1)
    local w1, w2 = string.byte(hex, b, b + 1)
    if larger(s1, s2, w1, w2) then return true end
    at = string.find(stored_hex, '[^0]', b + 2)
  end
  return false
end
local function bucket_max(stored_hex, hex)
  local stored_bytes = {string.byte(stored_hex, 1, 40)}
  local bytes = {string.byte(hex, 1, 40)}
  for b = 1, 39, 2 do
    if larger(stored_bytes[b], stored_bytes[b + 1], bytes[b], bytes[b + 1]) then
      bytes[b], bytes[b + 1] = stored_bytes[b], stored_bytes[b + 1]
    end
  end
  return string.char(unpack(bytes))
end
local function halved_max(stored_hex, stored_by, hex, by)
  local out = {}
  for b = 1, 39, 2 do
    local s = math.floor(tonumber(string.sub(stored_hex, b, b + 1), 16) / 2 ^ stored_by)
    local w = math.floor(tonumber(string.sub(hex, b, b + 1), 16) / 2 ^ by)
    out[#out + 1] = string.format('%02x', math.max(s, w))
  end
  return table.concat(out)
end
for i = 1, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  local written = ARGV[i + 1]
  if stored ~= written then
    local merged = written
    local stored_gaps, stored_halvings, stored_hex = parse(stored)
    local gaps, halvings, hex
    if stored_gaps then gaps, halvings, hex = parse(written) end
    if gaps then
      -- How many halvings the written copy is ahead, as serial numbers (RFC 1982).
      local ahead = (halvings - stored_halvings) % 65536
      local more_gaps = stored_gaps > gaps
      if more_gaps then gaps = stored_gaps end
      if ahead ~= 0 then
        local stored_by, by = ahead, 0
        if ahead >= 32768 then
          stored_by, by, halvings = 0, 65536 - ahead, stored_halvings
        end
        merged = 'c3:' .. gaps .. ':' .. halvings .. ':' ..
          halved_max(stored_hex, stored_by, hex, by)
      elseif more_gaps or stored_adds(stored_hex, hex) then
        merged = 'c3:' .. gaps .. ':' .. halvings .. ':' .. bucket_max(stored_hex, hex)
      end
    end
    if merged ~= stored then
      redis.call('HSET', KEYS[1], ARGV[i], merged)
    end
  end
end
return 0
",
    )
});

/// Fields per script call, so one call never blocks Redis for long.
const FIELDS_PER_CALL: usize = 500;

/// How long the change log keeps an entry (Redis's own time). A replica whose last reload is
/// older than this reads the feed whole; replicas reload every couple of seconds.
pub const CHANGE_LOG_WINDOW_MS: i64 = 30_000;

/// Appends one change-log entry (ARGV[2..]: the split values written, as field names) and trims
/// entries older than ARGV[1] ms by Redis's clock, so writers' clocks need not agree.
const LOG_CHANGES: &str = r"
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local fields = {}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ''
end
redis.call('XADD', KEYS[1], 'MINID', '~', cutoff, '*', unpack(fields))
return 0
";

/// Sends a write pipeline; when Redis does not know [`CADENCE_MERGE`] (first write, or Redis
/// restarted or failed over since), loads it and sends the pipeline again. redis-rs loads a
/// script on `NOSCRIPT` for a single invocation only, not in a pipeline. Sending twice is safe:
/// every write in it is a merge (max, fenced status) and a second change-log entry only has
/// replicas read the same series again.
async fn send_loading_scripts(
    connection: &mut Connection,
    pipeline: &redis::Pipeline,
) -> Result<Vec<u64>, StateError> {
    let error = match pipeline.query_async::<Vec<u64>>(connection).await {
        Ok(replies) => return Ok(replies),
        Err(error) => error,
    };
    if error.kind() != redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
        return Err(error.into());
    }
    CADENCE_MERGE.load_async(connection).await?;
    Ok(pipeline.query_async(connection).await?)
}

/// Where a replica's reload of one feed stands: the last change-log entry it has read.
#[derive(Debug, Clone, Default)]
pub struct ChangeCursor {
    last_id: Option<String>,
}

/// One Redis server (reconnecting), or a Redis Cluster (routing each command by key slot).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        command: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(command),
            Connection::Cluster(connection) => connection.req_packed_command(command),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    prefix: String,
    cluster: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StateError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisStore {
            connection: Connection::Single(connection),
            prefix: prefix.to_owned(),
            cluster: false,
        })
    }

    /// Connects to a Redis Cluster through any of its `nodes`.
    pub async fn connect_cluster(nodes: &[String], prefix: &str) -> Result<RedisStore, StateError> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .build()?;
        let connection = client.get_async_connection().await?;
        Ok(RedisStore {
            connection: Connection::Cluster(connection),
            prefix: prefix.to_owned(),
            cluster: true,
        })
    }

    fn key(&self, feed: &str, what: &str) -> String {
        format!("{}:{{{feed}}}:{what}", self.prefix)
    }

    pub async fn load(&self, feeds: &[Arc<str>]) -> Result<Snapshot, StateError> {
        let mut connection = self.connection.clone();
        let mut snapshot = Snapshot::default();
        for feed in feeds {
            snapshot
                .series
                .extend(self.load_feed(&mut connection, feed).await?);
            let started: Option<i64> = redis::cmd("HGET")
                .arg(self.key(feed, "meta"))
                .arg("watch_started")
                .query_async(&mut connection)
                .await?;
            if let Some(started) = started {
                snapshot.watch_started_ms.insert(feed.to_string(), started);
            }
        }
        Ok(snapshot)
    }

    /// Every series of one feed.
    async fn load_feed(
        &self,
        connection: &mut Connection,
        feed: &Arc<str>,
    ) -> Result<Vec<SeriesRecord>, StateError> {
        let last_seen: Vec<(Vec<u8>, i64)> = redis::cmd("HGETALL")
            .arg(self.key(feed, "last_seen"))
            .query_async(connection)
            .await?;
        let statuses: Vec<(Vec<u8>, String)> = redis::cmd("HGETALL")
            .arg(self.key(feed, "status"))
            .query_async(connection)
            .await?;
        let cadences: Vec<(Vec<u8>, String)> = redis::cmd("HGETALL")
            .arg(self.key(feed, "cadence"))
            .query_async(connection)
            .await?;
        let mut by_key = std::collections::BTreeMap::new();
        for (key, millis) in last_seen {
            record_of(&mut by_key, feed, key).last_seen_ms = Some(millis);
        }
        for (key, text) in statuses {
            let status = self.decode_status(feed, &key, &text)?;
            record_of(&mut by_key, feed, key).status = Some(status);
        }
        for (key, text) in cadences {
            let cadence = self.decode_cadence(feed, &key, &text)?;
            record_of(&mut by_key, feed, key).cadence = Some(cadence);
        }
        Ok(by_key.into_values().collect())
    }

    fn decode_cadence(
        &self,
        feed: &str,
        key: &[u8],
        text: &str,
    ) -> Result<crate::cadence::Cadence, StateError> {
        let what = format!(
            "{}[{}]",
            self.key(feed, "cadence"),
            String::from_utf8_lossy(key)
        );
        decode_cadence(&what, text)
    }

    fn decode_status(
        &self,
        feed: &str,
        key: &[u8],
        text: &str,
    ) -> Result<(Status, i64), StateError> {
        let what = format!(
            "{}[{}]",
            self.key(feed, "status"),
            String::from_utf8_lossy(key)
        );
        decode_status(&what, text)
    }

    /// The series of `feeds` written since each feed's cursor, by the change log: O(changes).
    /// A feed is read whole the first time, and when entries past its cursor were trimmed (the
    /// reload fell more than [`CHANGE_LOG_WINDOW_MS`] behind).
    pub async fn load_changed(
        &self,
        feeds: &[Arc<str>],
        cursors: &mut [ChangeCursor],
    ) -> Result<Vec<SeriesRecord>, StateError> {
        let mut connection = self.connection.clone();
        let mut series = Vec::new();
        for (feed, cursor) in feeds.iter().zip(cursors.iter_mut()) {
            let log = self.key(feed, "changes");
            if let Some(last_id) = cursor.last_id.clone() {
                // [[id, [field, value, ...]], ...]; the fields are the split values written.
                let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                    .arg(&log)
                    .arg(&last_id)
                    .arg("+")
                    .query_async(&mut connection)
                    .await?;
                // The cursor's own entry is still there: nothing after it was trimmed.
                let continuous =
                    last_id == "0-0" || entries.first().is_some_and(|(id, _)| *id == last_id);
                if continuous {
                    if let Some((newest, _)) = entries.last() {
                        cursor.last_id = Some(newest.clone());
                    }
                    let keys: std::collections::BTreeSet<Vec<u8>> = entries
                        .into_iter()
                        .filter(|(id, _)| *id != last_id)
                        .flat_map(|(_, fields)| fields.into_iter().step_by(2))
                        .collect();
                    series.extend(self.load_keys(&mut connection, feed, keys).await?);
                    continue;
                }
            }
            // Whole: note the newest entry first, so what is written meanwhile is read again.
            let newest: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
                .arg(&log)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut connection)
                .await?;
            cursor.last_id = Some(
                newest
                    .into_iter()
                    .next()
                    .map_or_else(|| "0-0".to_owned(), |(id, _)| id),
            );
            series.extend(self.load_feed(&mut connection, feed).await?);
        }
        Ok(series)
    }

    /// The named series of one feed.
    async fn load_keys(
        &self,
        connection: &mut Connection,
        feed: &Arc<str>,
        keys: std::collections::BTreeSet<Vec<u8>>,
    ) -> Result<Vec<SeriesRecord>, StateError> {
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        let mut records = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(FIELDS_PER_CALL) {
            type Fields = (Vec<Option<i64>>, Vec<Option<String>>, Vec<Option<String>>);
            let (last_seen, statuses, cadences): Fields = redis::pipe()
                .cmd("HMGET")
                .arg(self.key(feed, "last_seen"))
                .arg(chunk)
                .cmd("HMGET")
                .arg(self.key(feed, "status"))
                .arg(chunk)
                .cmd("HMGET")
                .arg(self.key(feed, "cadence"))
                .arg(chunk)
                .query_async(connection)
                .await?;
            for (((key, last_seen_ms), status), cadence) in
                chunk.iter().zip(last_seen).zip(statuses).zip(cadences)
            {
                let status = match status {
                    Some(text) => Some(self.decode_status(feed, key, &text)?),
                    None => None,
                };
                let cadence = match cadence {
                    Some(text) => Some(self.decode_cadence(feed, key, &text)?),
                    None => None,
                };
                records.push(SeriesRecord {
                    feed: feed.clone(),
                    key: key.clone(),
                    last_seen_ms,
                    status,
                    cadence,
                });
            }
        }
        Ok(records)
    }

    pub async fn watch_started(&self, feed: &str, now_ms: i64) -> Result<i64, StateError> {
        let mut connection = self.connection.clone();
        let meta = self.key(feed, "meta");
        let started: i64 = redis::Script::new(
            "redis.call('HSETNX', KEYS[1], 'watch_started', ARGV[1]) return tonumber(redis.call('HGET', KEYS[1], 'watch_started'))",
        )
        .key(&meta)
        .arg(now_ms)
        .invoke_async(&mut connection)
        .await?;
        Ok(started)
    }

    /// Merges `records`; see [`crate::state::StateStore::write`] for what it answers.
    pub async fn write(
        &self,
        records: &[SeriesRecord],
        fence: Option<u64>,
    ) -> Result<WriteOutcome, StateError> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        let mut by_feed: std::collections::BTreeMap<&str, Vec<&SeriesRecord>> =
            std::collections::BTreeMap::new();
        // One reply per fenced status script: 0, or the newer token that refused it.
        let mut fence_replies: Vec<u64> = Vec::new();
        for record in records {
            by_feed.entry(&record.feed).or_default().push(record);
        }
        for (feed, feed_records) in by_feed {
            let last_seen_key = self.key(feed, "last_seen");
            let status_key = self.key(feed, "status");
            let with_last_seen: Vec<(&[u8], i64)> = feed_records
                .iter()
                .filter_map(|record| Some((record.key.as_slice(), record.last_seen_ms?)))
                .collect();
            for chunk in with_last_seen.chunks(FIELDS_PER_CALL) {
                let command = pipeline
                    .cmd("EVAL")
                    .arg(MAX_MERGE)
                    .arg(1)
                    .arg(&last_seen_key);
                for (key, millis) in chunk {
                    command.arg(*key).arg(*millis);
                }
                pipeline.ignore();
            }
            let with_status: Vec<(&[u8], String)> = feed_records
                .iter()
                .filter_map(|record| {
                    let (status, since) = record.status?;
                    Some((record.key.as_slice(), encode_status(status, since)))
                })
                .collect();
            for chunk in with_status.chunks(FIELDS_PER_CALL) {
                match fence {
                    // Only the lease holder's statuses are written: a deposed leader's are not.
                    Some(token) => {
                        let command = pipeline
                            .cmd("EVAL")
                            .arg(FENCED_HSET)
                            .arg(2)
                            .arg(&status_key)
                            .arg(self.key(feed, "fence"))
                            .arg(token);
                        for (key, text) in chunk {
                            command.arg(*key).arg(text);
                        }
                        // Not ignored: its reply says whether a newer leader refused it.
                    }
                    None => {
                        let command = pipeline.cmd("HSET").arg(&status_key);
                        for (key, text) in chunk {
                            command.arg(*key).arg(text);
                        }
                        pipeline.ignore();
                    }
                }
            }
            let with_cadence: Vec<(&[u8], String)> = feed_records
                .iter()
                .filter_map(|record| Some((record.key.as_slice(), record.cadence?.encode())))
                .collect();
            // Not fenced, as last-seen is not: every replica's gaps are true, and a max only adds.
            for chunk in with_cadence.chunks(FIELDS_PER_CALL) {
                let mut invocation = CADENCE_MERGE.key(self.key(feed, "cadence"));
                for (key, text) in chunk {
                    invocation.arg(*key).arg(text);
                }
                pipeline.invoke_script(&invocation).ignore();
            }
            // After the writes it names, on the same connection: a replica that reads the entry
            // reads these values or newer ones.
            for chunk in feed_records.chunks(FIELDS_PER_CALL) {
                let command = pipeline
                    .cmd("EVAL")
                    .arg(LOG_CHANGES)
                    .arg(1)
                    .arg(self.key(feed, "changes"))
                    .arg(CHANGE_LOG_WINDOW_MS);
                for record in chunk {
                    command.arg(record.key.as_slice());
                }
                pipeline.ignore();
            }
            // A cluster pipeline must stay in one slot: one per feed (its hash tag).
            if self.cluster {
                fence_replies.extend(send_loading_scripts(&mut connection, &pipeline).await?);
                pipeline = redis::pipe();
            }
        }
        if !self.cluster {
            fence_replies.extend(send_loading_scripts(&mut connection, &pipeline).await?);
        }
        Ok(WriteOutcome {
            fenced_by: fence_replies
                .into_iter()
                .filter(|&newest| newest != 0)
                .max(),
        })
    }

    fn outbox_key(&self, sink: &str) -> String {
        format!("{}:outbox:{{{sink}}}", self.prefix)
    }

    pub async fn outbox_push(&self, sink: &str, entry: &str) -> Result<String, StateError> {
        let mut connection = self.connection.clone();
        let id: String = redis::cmd("XADD")
            .arg(self.outbox_key(sink))
            .arg("*")
            .arg("n")
            .arg(entry)
            .query_async(&mut connection)
            .await?;
        Ok(id)
    }

    pub async fn outbox_list(&self, sink: &str) -> Result<Vec<(String, String)>, StateError> {
        let mut connection = self.connection.clone();
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(self.outbox_key(sink))
            .arg("-")
            .arg("+")
            .query_async(&mut connection)
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, mut fields)| {
                // fields = ["n", "<json>"]
                (fields.len() == 2).then(|| (id, fields.swap_remove(1)))
            })
            .collect())
    }

    pub async fn outbox_remove(&self, sink: &str, id: &str) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("XDEL")
            .arg(self.outbox_key(sink))
            .arg(id)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    fn leader_key(&self) -> String {
        format!("{}:leader", self.prefix)
    }

    /// Takes the lease if free; returns the new fencing token.
    pub async fn lease_acquire(
        &self,
        instance: &str,
        ttl_ms: i64,
    ) -> Result<Option<u64>, StateError> {
        self.lease_acquire_above(instance, ttl_ms, 0).await
    }

    /// [`RedisStore::lease_acquire`] with a token above `floor`, the highest this replica has
    /// seen (its own last term, or the one that fenced it off): the token counter is lifted
    /// past it when Redis lost its data and counts from 1 again.
    pub async fn lease_acquire_above(
        &self,
        instance: &str,
        ttl_ms: i64,
        floor: u64,
    ) -> Result<Option<u64>, StateError> {
        let mut connection = self.connection.clone();
        let holder: Option<String> = redis::cmd("GET")
            .arg(self.leader_key())
            .query_async(&mut connection)
            .await?;
        if holder.is_some() {
            return Ok(None);
        }
        let token: u64 = redis::cmd("EVAL")
            .arg(NEXT_TOKEN)
            .arg(1)
            .arg(format!("{}:leader_token", self.prefix))
            .arg(floor)
            .query_async(&mut connection)
            .await?;
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.leader_key())
            .arg(format!("{instance}:{token}"))
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut connection)
            .await?;
        Ok(taken.map(|_| token))
    }

    /// Extends the lease if `value` still holds it.
    pub async fn lease_renew(&self, value: &str, ttl_ms: i64) -> Result<bool, StateError> {
        let mut connection = self.connection.clone();
        let renewed: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
        )
        .key(self.leader_key())
        .arg(value)
        .arg(ttl_ms)
        .invoke_async(&mut connection)
        .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up so a follower takes over at once.
    pub async fn lease_release(&self, value: &str) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        )
        .key(self.leader_key())
        .arg(value)
        .invoke_async(&mut connection)
        .await?;
        Ok(())
    }

    fn documents_key(&self, table: Documents) -> String {
        format!("{}:{}", self.prefix, table.name())
    }

    /// A table of documents: field → JSON.
    pub async fn documents_load(
        &self,
        table: Documents,
    ) -> Result<Vec<(String, String)>, StateError> {
        let mut connection = self.connection.clone();
        Ok(redis::cmd("HGETALL")
            .arg(self.documents_key(table))
            .query_async(&mut connection)
            .await?)
    }

    pub async fn documents_write(
        &self,
        table: Documents,
        entries: &[(String, String)],
    ) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("HSET");
        command.arg(self.documents_key(table));
        for (field, value) in entries {
            command.arg(field).arg(value);
        }
        let _: i64 = command.query_async(&mut connection).await?;
        Ok(())
    }

    pub async fn documents_remove(
        &self,
        table: Documents,
        names: &[String],
    ) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("HDEL")
            .arg(self.documents_key(table))
            .arg(names)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// `cluster`: `None` for the one cluster of a `[kafka]` config (the key it always had, so a
    /// deployment keeps its state), a `[[cluster]]`'s name otherwise.
    fn knowledge_key(&self, cluster: Option<&str>) -> String {
        match cluster {
            None => format!("{}:knowledge", self.prefix),
            Some(cluster) => format!("{}:knowledge:{cluster}", self.prefix),
        }
    }

    /// Publishes what this replica knows of its partitions (see [`crate::knowledge`]), so the
    /// leader, which reads only its own, can judge theirs. `at_ms` lets readers ignore replicas
    /// that stopped publishing.
    pub async fn knowledge_publish(
        &self,
        cluster: Option<&str>,
        instance: &str,
        at_ms: i64,
        reads: &str,
    ) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.knowledge_key(cluster))
            .arg(instance)
            .arg(format!("{at_ms}|{reads}"))
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// Every replica's published entry: instance, when, its encoded reads.
    pub async fn knowledge_read(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<(String, i64, String)>, StateError> {
        let mut connection = self.connection.clone();
        let entries: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.knowledge_key(cluster))
            .query_async(&mut connection)
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(instance, value)| {
                let (at, reads) = value.split_once('|')?;
                Some((instance, at.parse().ok()?, reads.to_owned()))
            })
            .collect())
    }

    /// Removes a replica's entry (this one's on the way out, or a dead one's).
    pub async fn knowledge_forget(
        &self,
        cluster: Option<&str>,
        instance: &str,
    ) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("HDEL")
            .arg(self.knowledge_key(cluster))
            .arg(instance)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Sets the marker that says this Redis holds freshwatch's state, unless it is there;
    /// returns its value and whether it was there. Missing means the store is new, or lost
    /// everything (restarted without persistence, failed over to an empty replica, evicted).
    /// The value is when it was set: a replica that finds another value than it saw before knows
    /// the store lost its data since, even when another replica set the marker again first.
    pub async fn epoch_ensure(&self, now_ms: i64) -> Result<Epoch, StateError> {
        let mut connection = self.connection.clone();
        // A read first: the common case must not need Redis to take writes (a flush that
        // cannot write must fail at the write itself, before any offset is committed).
        let present: Option<String> = redis::cmd("GET")
            .arg(self.epoch_key())
            .query_async(&mut connection)
            .await?;
        if let Some(marker) = present {
            return Ok(Epoch {
                marker: self.decode_epoch(&marker)?,
                was_there: true,
            });
        }
        let set: Option<String> = redis::cmd("SET")
            .arg(self.epoch_key())
            .arg(now_ms)
            .arg("NX")
            .query_async(&mut connection)
            .await?;
        if set.is_some() {
            return Ok(Epoch {
                marker: now_ms,
                was_there: false,
            });
        }
        // Another replica set it in between.
        let marker: String = redis::cmd("GET")
            .arg(self.epoch_key())
            .query_async(&mut connection)
            .await?;
        Ok(Epoch {
            marker: self.decode_epoch(&marker)?,
            was_there: true,
        })
    }

    fn decode_epoch(&self, marker: &str) -> Result<i64, StateError> {
        marker.parse().map_err(|_| StateError::Corrupt {
            what: self.epoch_key(),
            value: marker.to_owned(),
        })
    }

    /// Whether Redis may evict freshwatch's keys under memory pressure: `Some(policy)` when
    /// `maxmemory-policy` is an `allkeys-*` one. `None` also when `CONFIG` is not allowed.
    pub async fn eviction_risk(&self) -> Option<String> {
        let mut connection = self.connection.clone();
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut connection)
            .await
            .ok()?;
        let policy = reply.get(1)?.clone();
        policy.starts_with("allkeys-").then_some(policy)
    }

    pub async fn ping(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}
