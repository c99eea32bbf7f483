//! The config file as the user writes it: serde structs that mirror the TOML one to one.
//!
//! Every field's `///` doc is the reference text in the README. Nothing here is checked beyond
//! its type; [`super::validate`] turns a [`RawConfig`] into the typed [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// How to reach Kafka: one cluster, named `default`. Or `[[cluster]]` tables instead.
    pub kafka: Option<RawKafka>,
    /// Several Kafka clusters watched by one process; `[[cluster]]` tables, instead of
    /// `[kafka]`. Each has its own consumers and knowledge: one that does not answer blinds only
    /// its own feeds and groups.
    #[serde(default)]
    pub cluster: Vec<RawCluster>,
    /// Where feed state is kept across restarts.
    #[serde(default)]
    pub state: RawState,
    /// The HTTP API and metrics listener.
    #[serde(default)]
    pub http: RawHttp,
    /// What `/metrics` exports per key.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// How often feeds are judged.
    #[serde(default)]
    pub evaluation: RawEvaluation,
    /// Thresholds for feeds that do not set their own.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// The feeds to watch; `[[feed]]` tables.
    #[serde(default)]
    pub feed: Vec<RawFeed>,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: RawAlerts,
    /// Optional dead-man's-switch ping.
    pub heartbeat: Option<RawHeartbeat>,
    /// Replicas sharing one Redis.
    #[serde(default)]
    pub ha: RawHa,
    /// Consumer groups to watch; `[[group]]` tables.
    #[serde(default)]
    pub group: Vec<super::groups::RawGroup>,
    /// Feeds and groups in data-flow order; `[[pipeline]]` tables.
    #[serde(default)]
    pub pipeline: Vec<super::pipeline::RawPipeline>,
}

/// `[ha]`: several replicas with the same config and Redis; one leads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHa {
    /// Leader lease: a dead leader is replaced within this long.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// How often each replica reads the shared state, so every replica serves every feed and
    /// the leader judges partitions read by the others.
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for RawHa {
    fn default() -> Self {
        RawHa {
            lease: default_lease(),
            reload_interval: default_reload(),
        }
    }
}

fn default_lease() -> Duration {
    Duration::from_secs(15)
}
fn default_reload() -> Duration {
    Duration::from_secs(2)
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// Comma-separated bootstrap servers, `host:port`.
    pub brokers: String,
    /// Consumer group; replicas with the same group share partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where a new consumer group starts: `earliest` (learn every feed's last-seen from what Kafka
    /// still holds) or `latest`. After the first run the committed offsets win.
    #[serde(default)]
    pub start: RawStart,
    /// How often topic metadata is re-read to pick up topics that match a `topic_regex`.
    #[serde(default = "default_metadata_refresh", with = "humantime_serde")]
    pub metadata_refresh: Duration,
    /// How often tail-mode feeds read their partitions' high watermarks.
    #[serde(default = "default_tail_interval", with = "humantime_serde")]
    pub tail_interval: Duration,
    /// How often watched consumer groups' committed offsets and watermarks are read.
    #[serde(default = "default_groups_interval", with = "humantime_serde")]
    pub groups_interval: Duration,
    /// How often watched topics' `retention.ms` and `cleanup.policy` are read again
    /// (DescribeConfigs): a retention extended during an incident moves the countdown. A failed
    /// read is retried at the next metadata refresh, never kept.
    #[serde(default = "default_retention_refresh", with = "humantime_serde")]
    pub retention_refresh: Duration,
    /// This replica's stable name in the consumer group (librdkafka's `group.instance.id`,
    /// static membership): a restarted replica takes its partitions back at once instead of
    /// waiting out its dead self's session. Default: the host name; `""` turns it off.
    pub instance_id: Option<String>,
    /// Passed to librdkafka as-is (SASL, TLS, fetch sizes, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[[cluster]]`: one Kafka cluster. Every `[kafka]` key is allowed, with the same meaning and
/// default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// The `cluster` label, and what a feed's or group's `cluster` key names. Unique.
    pub name: String,
    /// Comma-separated bootstrap servers, `host:port`.
    pub brokers: String,
    /// Consumer group on this cluster; replicas with the same group share partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// As `kafka.start`.
    #[serde(default)]
    pub start: RawStart,
    /// As `kafka.metadata_refresh`.
    #[serde(default = "default_metadata_refresh", with = "humantime_serde")]
    pub metadata_refresh: Duration,
    /// As `kafka.tail_interval`.
    #[serde(default = "default_tail_interval", with = "humantime_serde")]
    pub tail_interval: Duration,
    /// As `kafka.groups_interval`.
    #[serde(default = "default_groups_interval", with = "humantime_serde")]
    pub groups_interval: Duration,
    /// As `kafka.retention_refresh`.
    #[serde(default = "default_retention_refresh", with = "humantime_serde")]
    pub retention_refresh: Duration,
    /// As `kafka.instance_id`.
    pub instance_id: Option<String>,
    /// As `kafka.properties`: passed to this cluster's librdkafka clients as-is.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl RawCluster {
    /// Its name, and the rest as the `[kafka]` table it would be alone.
    pub fn split(self) -> (String, RawKafka) {
        let kafka = RawKafka {
            brokers: self.brokers,
            group_id: self.group_id,
            start: self.start,
            metadata_refresh: self.metadata_refresh,
            tail_interval: self.tail_interval,
            groups_interval: self.groups_interval,
            retention_refresh: self.retention_refresh,
            instance_id: self.instance_id,
            properties: self.properties,
        };
        (self.name, kafka)
    }
}

/// `kafka.start`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawStart {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced after the group first joins.
    Latest,
}

/// `[state]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// Redis URL (`redis://host:port/db`). Absent: the embedded store in `path`.
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes (`["redis://h1:7000", "redis://h2:7000"]`), instead of
    /// `redis_url`.
    #[serde(default)]
    pub redis_cluster_nodes: Vec<String>,
    /// Directory of the embedded store, used when `redis_url` is absent.
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// How often changed feeds are written to the store; offsets are committed after each write.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The state store failing this long raises `FreshwatchStateStoreDown`.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub down_grace: Duration,
    /// How long a reload waits for the state store to answer before it is refused: the running
    /// pipeline is stopped only once the new one's store answers, so a reload during a Redis
    /// blip never leaves freshwatch without a pipeline.
    #[serde(default = "default_open_timeout", with = "humantime_serde")]
    pub open_timeout: Duration,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            path: default_state_path(),
            flush_interval: default_flush_interval(),
            key_prefix: default_key_prefix(),
            down_grace: default_grace(),
            open_timeout: default_open_timeout(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `ip:port` to serve the API and `/metrics` on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Base URL other systems reach this instance at, used in alert links. Default:
    /// `http://` + `listen`.
    pub external_url: Option<String>,
    /// Bearer token for the mutating endpoints (silences, reload); without it they answer 403.
    pub admin_token: Option<String>,
    /// Bearer token for the read endpoints (all but `/healthz` and `/readyz`); open without it.
    pub read_token: Option<String>,
    /// Heavy reads (`/metrics`, `/api/v1/feeds`, the status page) served at once; more wait
    /// their turn, so a burst of them cannot multiply the memory a read takes. At least 1.
    #[serde(default = "default_max_concurrent_reads")]
    pub max_concurrent_reads: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_listen(),
            external_url: None,
            admin_token: None,
            read_token: None,
            max_concurrent_reads: default_max_concurrent_reads(),
        }
    }
}

fn default_max_concurrent_reads() -> usize {
    4
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// A feed with more keys than this exports per-key samples only for its keys that are not
    /// `ok` (what alerts stays visible per key), besides the per-feed aggregates every feed
    /// has: a Prometheus takes tens of thousands of series per target, not millions.
    #[serde(default = "default_max_key_series")]
    pub max_key_series: usize,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            max_key_series: default_max_key_series(),
        }
    }
}

fn default_max_key_series() -> usize {
    10_000
}

/// `[evaluation]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvaluation {
    /// How often feeds are judged; alert latency is at most about one interval.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Event times further ahead of now than this are replaced by the arrival time and counted
    /// (`reason="future_timestamp"`), so a producer with a bad clock cannot mask a silence.
    #[serde(default = "default_max_future_skew", with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Kafka unreachable this long raises `FreshwatchSourceDown`, and feeds that would turn
    /// stale turn `unknown` instead: freshwatch cannot tell.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub source_grace: Duration,
    /// A feed may turn stale only when every assigned partition of its topics is read to
    /// within this many records of the high watermark; until then it is `unknown`.
    #[serde(default = "default_catchup_tolerance")]
    pub catchup_tolerance: u64,
    /// A feed freshwatch cannot judge (`unknown`) this long raises `FreshwatchFeedBlind`, and
    /// the heartbeat stops: a silence there could not page. Default: each feed's
    /// `critical_after`.
    #[serde(default, with = "humantime_serde")]
    pub blind_after: Option<Duration>,
    /// After Kafka answers again, feeds stay `unknown` this long: producers were blocked by the
    /// same outage and deliver what they queued, so the silence was not theirs.
    #[serde(default = "default_recovery_grace", with = "humantime_serde")]
    pub recovery_grace: Duration,
    /// When more feeds than this are blind at once for reasons of their own (a backlog, stopped
    /// statistics), their `FreshwatchFeedBlind`s roll up into one notification, as keys do.
    #[serde(default = "default_blind_rollup_after")]
    pub blind_rollup_after: usize,
}

fn default_blind_rollup_after() -> usize {
    3
}

fn default_groups_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_recovery_grace() -> Duration {
    Duration::from_secs(30)
}

impl Default for RawEvaluation {
    fn default() -> Self {
        RawEvaluation {
            interval: default_interval(),
            max_future_skew: default_max_future_skew(),
            source_grace: default_grace(),
            catchup_tolerance: default_catchup_tolerance(),
            blind_after: None,
            recovery_grace: default_recovery_grace(),
            blind_rollup_after: default_blind_rollup_after(),
        }
    }
}

/// `[defaults]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Staleness at which a feed turns `warning`.
    #[serde(default = "default_warn_after", with = "humantime_serde")]
    pub warn_after: Duration,
    /// Staleness at which a feed turns `critical`; must be greater than `warn_after`.
    #[serde(default = "default_critical_after", with = "humantime_serde")]
    pub critical_after: Duration,
    /// Flap control: how long a threshold must stay crossed before the status (and its alert)
    /// changes. A record within that time cancels it.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Duration,
    /// When more than this many keys of one split feed change status in one evaluation,
    /// notification sinks (webhook, Slack, PagerDuty, email) get one rolled-up notification for
    /// the feed instead of one per key; Alertmanager still gets per-key alerts (its grouping
    /// handles them); the API and metrics stay per key. At least 1.
    #[serde(default = "default_rollup_after")]
    pub rollup_after: usize,
    /// `[[defaults.window]]`: the windows of feeds that declare none of their own.
    #[serde(default)]
    pub window: Vec<RawWindow>,
    /// `"fixed"` (default): every series is judged by `warn_after` / `critical_after`.
    /// `"learned"`: each series learns its own gaps between records, and those thresholds (or
    /// the window's) become ceilings; see the README's "Learned cadence".
    #[serde(default)]
    pub thresholds: RawThresholds,
    /// Learned thresholds only: gaps a series must have learned before its own thresholds
    /// replace the ceilings (warm-up). 1 to 65535.
    #[serde(default = "default_learn_min_gaps")]
    pub learn_min_gaps: u32,
    /// Learned thresholds only: the lowest learned warning threshold.
    #[serde(default = "default_warn_after_min", with = "humantime_serde")]
    pub warn_after_min: Duration,
    /// Learned thresholds only: the lowest learned critical threshold; greater than
    /// `warn_after_min`.
    #[serde(default = "default_critical_after_min", with = "humantime_serde")]
    pub critical_after_min: Duration,
}

/// `thresholds`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawThresholds {
    #[default]
    Fixed,
    Learned,
}

fn default_learn_min_gaps() -> u32 {
    20
}

fn default_warn_after_min() -> Duration {
    Duration::from_secs(60)
}

fn default_critical_after_min() -> Duration {
    Duration::from_secs(5 * 60)
}

impl Default for RawDefaults {
    fn default() -> Self {
        RawDefaults {
            warn_after: default_warn_after(),
            critical_after: default_critical_after(),
            hold: Duration::ZERO,
            rollup_after: default_rollup_after(),
            window: Vec::new(),
            thresholds: RawThresholds::Fixed,
            learn_min_gaps: default_learn_min_gaps(),
            warn_after_min: default_warn_after_min(),
            critical_after_min: default_critical_after_min(),
        }
    }
}

fn default_rollup_after() -> usize {
    20
}

/// `[[feed]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    /// Unique name; the `feed` label of metrics and alerts. Letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// The `[[cluster]]` whose topics it reads: required with `[[cluster]]` tables, not allowed
    /// with `[kafka]`.
    pub cluster: Option<String>,
    /// The topic to read. Exactly one of `topic` and `topic_regex`.
    pub topic: Option<String>,
    /// A regular expression over topic names; matching topics are picked up as they appear.
    pub topic_regex: Option<String>,
    /// Split the topic into one feed per value: `{ json = "/pointer" }`, `{ header = "name" }`,
    /// `"key"` or `"partition"`. Absent: the topic is one feed.
    pub split_by: Option<RawSplitBy>,
    /// Where a record's event time comes from: `"record"` (Kafka record timestamp, default),
    /// `"arrival"` (when freshwatch read it), `{ json = "/pointer" }` or `{ header = "name" }`.
    #[serde(default)]
    pub timestamp: RawTimestamp,
    /// Overrides `defaults.warn_after`.
    #[serde(default, with = "humantime_serde")]
    pub warn_after: Option<Duration>,
    /// Overrides `defaults.critical_after`.
    #[serde(default, with = "humantime_serde")]
    pub critical_after: Option<Duration>,
    /// Overrides `defaults.for`.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Option<Duration>,
    /// Split values that must exist: each is alerted `never_seen` if no record ever carries it.
    #[serde(default)]
    pub expected: Vec<String>,
    /// `"consume"` reads every record; `"tail"` (unsplit feeds with `"record"` or `"arrival"`
    /// timestamps only) reads just each partition's newest record when its high watermark moves.
    #[serde(default)]
    pub mode: RawMode,
    /// Most split values tracked for this feed; new values beyond it are refused and counted, and
    /// an alert is raised, rather than memory growing without bound.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Longest split value in bytes; longer values are refused and counted
    /// (`reason="split_too_long"`): `max_keys` bounds the count, this the size.
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: usize,
    /// Overrides `defaults.rollup_after`.
    pub rollup_after: Option<usize>,
    /// `[[feed.window]]`: schedules with their own thresholds, or quiet times. Absent: the
    /// windows of `[defaults]`; `window = []` opts out of them.
    pub window: Option<Vec<RawWindow>>,
    /// Overrides `defaults.thresholds`: `"fixed"` or `"learned"`.
    pub thresholds: Option<RawThresholds>,
    /// Overrides `defaults.learn_min_gaps` (learned thresholds only).
    pub learn_min_gaps: Option<u32>,
    /// Learned thresholds only: time a series (and, with `learn_by_hour`, an hour) must have
    /// learned, beside `learn_min_gaps`, before its own thresholds apply, so a first burst is
    /// not taken for a cadence (default `"30m"`). Feed-level only.
    #[serde(default, with = "humantime_serde")]
    pub learn_min_span: Option<Duration>,
    /// Overrides `defaults.warn_after_min` (learned thresholds only).
    #[serde(default, with = "humantime_serde")]
    pub warn_after_min: Option<Duration>,
    /// Overrides `defaults.critical_after_min` (learned thresholds only).
    #[serde(default, with = "humantime_serde")]
    pub critical_after_min: Option<Duration>,
    /// Learned thresholds only: also learn the feed's hours of the week, so a feed busy by day
    /// and rare at night is judged by night-time thresholds at night. Feed-level only.
    pub learn_by_hour: Option<bool>,
    /// The IANA timezone whose clocks `learn_by_hour` counts hours on (default `"UTC"`).
    pub learn_timezone: Option<String>,
    /// Volume drops: the rate this feed must keep, `"100/min"` (also `/s`, `/h`), or `"learned"`
    /// (compared with an hour-of-week baseline learned from the feed's own past). Absent: no
    /// volume judging. See "Volume drops" in the README.
    pub min_rate: Option<String>,
    /// With `min_rate = "learned"`: a rate below this share of the baseline pages. Default 0.2.
    pub drop_ratio: Option<f64>,
    /// Judge each split value's rate too (needs `split_by`). Default false.
    pub volume_by_key: Option<bool>,
    /// With `volume_by_key`: most keys judged; later keys are counted, not judged. Default 1000.
    pub volume_max_keys: Option<usize>,
    /// How long the rate must stay below the threshold before `FeedVolumeDrop` pages. Default
    /// 10m (independent of `for`, which holds staleness thresholds).
    #[serde(default, with = "humantime_serde")]
    pub volume_for: Option<Duration>,
    /// The sliding window the rate is counted over (ten buckets). Default 10m, at least 10s.
    #[serde(default, with = "humantime_serde")]
    pub volume_window: Option<Duration>,
}

/// `[[feed.window]]` / `[[defaults.window]]`: a recurring time in which other thresholds apply.
/// The first window (in config order) containing an instant applies; outside every window, the
/// feed's own thresholds do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Days it applies on, in its timezone: `"mon-fri"`, `"sat-sun"`, `"mon,wed,fri"`, `"daily"`.
    #[serde(default = "default_window_days")]
    pub days: String,
    /// Time of day, `"08:00-20:00"`; a range that wraps midnight (`"22:00-06:00"`) belongs to
    /// the day it starts on. Default: the whole day.
    #[serde(default = "default_window_hours")]
    pub hours: String,
    /// IANA timezone of `days`, `hours` and `holidays`, e.g. `"America/New_York"`.
    #[serde(default = "default_window_timezone")]
    pub timezone: String,
    /// Dates, `"YYYY-MM-DD"` in `timezone`, on which the window does not apply.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Warning threshold inside the window; default the feed's. Not with `expect = "nothing"`.
    #[serde(default, with = "humantime_serde")]
    pub warn_after: Option<Duration>,
    /// Critical threshold inside the window; default the feed's. Not with `expect = "nothing"`.
    #[serde(default, with = "humantime_serde")]
    pub critical_after: Option<Duration>,
    /// `"data"` (default), or `"nothing"`: silence inside is normal; no alert starts or worsens
    /// there, and a feed still silent when the window ends is judged at once.
    #[serde(default)]
    pub expect: RawExpect,
}

fn default_window_days() -> String {
    "daily".to_owned()
}

fn default_window_hours() -> String {
    "00:00-24:00".to_owned()
}

fn default_window_timezone() -> String {
    "UTC".to_owned()
}

/// `window.expect`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawExpect {
    #[default]
    Data,
    Nothing,
}

fn default_max_key_bytes() -> usize {
    256
}

/// `feed.mode`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    #[default]
    Consume,
    Tail,
}

/// `feed.split_by`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSplitBy {
    /// RFC 6901 pointer into a JSON value.
    Json(String),
    /// A record header's value.
    Header(String),
    /// The record key.
    Key,
    /// The partition number.
    Partition,
}

/// `feed.timestamp`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTimestamp {
    /// RFC 6901 pointer into a JSON value.
    Json(String),
    /// A record header's value.
    Header(String),
    /// The Kafka record timestamp (CreateTime or LogAppendTime).
    #[default]
    Record,
    /// The time freshwatch read the record.
    Arrival,
}

/// `[alerts]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// `[[alerts.alertmanager]]` sinks.
    #[serde(default)]
    pub alertmanager: Vec<RawAlertmanager>,
    /// `[[alerts.webhook]]` sinks.
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
    /// `[[alerts.pagerduty]]` sinks (Events API v2).
    #[serde(default)]
    pub pagerduty: Vec<RawPagerDuty>,
    /// `[[alerts.slack]]` sinks (incoming webhooks).
    #[serde(default)]
    pub slack: Vec<RawSlack>,
    /// `[[alerts.email]]` sinks (SMTP).
    #[serde(default)]
    pub email: Vec<RawEmail>,
    /// Send an always-firing `FreshwatchWatchdog` alert to every Alertmanager sink, the standard
    /// dead-man's-switch pattern: route it to an external switch that pages when it stops.
    #[serde(default)]
    pub watchdog: bool,
}

/// `[[alerts.alertmanager]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    /// Name used in metrics and logs; default `alertmanager-N`.
    pub name: Option<String>,
    /// Base URL of Alertmanager, e.g. `http://127.0.0.1:9093`.
    pub url: String,
    /// How often firing alerts are re-sent so Alertmanager does not expire them.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Timeout of one HTTP request.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Lowest severity sent: `warning` (default) or `critical`.
    #[serde(default)]
    pub min_severity: RawSeverity,
    /// Only these feeds: `"profiles"`, `"billing/*"` (feed/key globs). Default: all.
    #[serde(default)]
    pub feeds: Vec<String>,
    /// Notification sinks that also get a change this Alertmanager has not accepted after
    /// `fallback_after` (Alertmanager itself may be down with what it watches).
    #[serde(default)]
    pub fallback: Vec<String>,
    #[serde(default = "default_fallback_after", with = "humantime_serde")]
    pub fallback_after: Duration,
    /// Alerts about freshwatch itself and about watched consumer groups go to this sink
    /// whatever `feeds` says (when `min_severity` admits them); `false` opts out.
    #[serde(default = "default_true")]
    pub system: bool,
}

fn default_true() -> bool {
    true
}

/// The fields every notification sink (webhook, pagerduty, slack, email) takes, copied out of
/// its table: who gets what, and how hard freshwatch tries.
#[derive(Debug, Clone)]
pub struct RawRouting {
    pub name: Option<String>,
    pub min_severity: RawSeverity,
    pub feeds: Vec<String>,
    pub fallback: Vec<String>,
    pub fallback_after: Duration,
    pub repeat_interval: Duration,
    pub rate_limit: u32,
    pub rate_limit_period: Duration,
    pub timeout: Duration,
    pub system: bool,
    pub max_queued: usize,
}

/// Declares a sink table with its own fields plus the routing fields (serde's `flatten` cannot
/// be combined with `deny_unknown_fields`, so the shared fields are spelled out by the macro).
macro_rules! sink_table {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            /// Name used in metrics, logs and `fallback` lists; default `<kind>-N`.
            pub name: Option<String>,
            /// Lowest severity sent: `warning` (default) or `critical`.
            #[serde(default)]
            pub min_severity: RawSeverity,
            /// Only these feeds: `"profiles"`, `"billing/*"` (feed/key globs). Default: all.
            #[serde(default)]
            pub feeds: Vec<String>,
            /// Sinks that also get a notification this sink has not accepted after
            /// `fallback_after`.
            #[serde(default)]
            pub fallback: Vec<String>,
            #[serde(default = "default_fallback_after", with = "humantime_serde")]
            pub fallback_after: Duration,
            /// A still-firing critical alert is notified again this often.
            #[serde(default = "default_repeat_interval", with = "humantime_serde")]
            pub repeat_interval: Duration,
            /// At most this many notifications per dedup key per `rate_limit_period`; more are
            /// coalesced (the newest state of the key is kept) and counted as suppressed.
            #[serde(default = "default_rate_limit")]
            pub rate_limit: u32,
            #[serde(default = "default_rate_limit_period", with = "humantime_serde")]
            pub rate_limit_period: Duration,
            /// Timeout of one delivery attempt.
            #[serde(default = "default_http_timeout", with = "humantime_serde")]
            pub timeout: Duration,
            /// Alerts about freshwatch itself and about watched consumer groups come here
            /// whatever `feeds` says (when `min_severity` admits them); `false` opts out.
            #[serde(default = "default_true")]
            pub system: bool,
            /// Notifications this sink holds while it cannot deliver (in memory and in its
            /// outbox). Past it, only the newest state of each dedup key is kept (counted in
            /// `freshwatch_sink_queue_coalesced_total`), so a sink that is down for a day stays
            /// bounded and still sends the latest state of every alert.
            #[serde(default = "default_max_queued")]
            pub max_queued: usize,
        }

        impl $name {
            pub fn routing(&self) -> RawRouting {
                RawRouting {
                    name: self.name.clone(),
                    min_severity: self.min_severity,
                    feeds: self.feeds.clone(),
                    fallback: self.fallback.clone(),
                    fallback_after: self.fallback_after,
                    repeat_interval: self.repeat_interval,
                    rate_limit: self.rate_limit,
                    rate_limit_period: self.rate_limit_period,
                    timeout: self.timeout,
                    system: self.system,
                    max_queued: self.max_queued,
                }
            }
        }
    };
}

/// `min_severity`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSeverity {
    #[default]
    Warning,
    Critical,
}

impl RawSeverity {
    pub fn severity(self) -> crate::model::Severity {
        match self {
            RawSeverity::Warning => crate::model::Severity::Warning,
            RawSeverity::Critical => crate::model::Severity::Critical,
        }
    }
}

sink_table! {
    /// `[[alerts.webhook]]`
    RawWebhook {
        /// URL that receives one JSON POST per status change.
        url: String,
        /// With a secret, each POST carries `X-Freshwatch-Signature: sha256=<hex HMAC-SHA256 of
        /// the body>` so receivers can verify it.
        secret: Option<String>,
    }
}

sink_table! {
    /// `[[alerts.pagerduty]]`
    RawPagerDuty {
        /// The integration's routing key, usually `"${PAGERDUTY_ROUTING_KEY}"`.
        routing_key: String,
        /// Events API endpoint; override to point at a test receiver.
        #[serde(default = "default_pagerduty_url")]
        url: String,
    }
}

sink_table! {
    /// `[[alerts.slack]]`
    RawSlack {
        /// Incoming-webhook URL (it embeds a token: keep it in `${SLACK_WEBHOOK_URL}`).
        url: String,
    }
}

sink_table! {
    /// `[[alerts.email]]`
    RawEmail {
        /// SMTP relay host.
        smtp_host: String,
        #[serde(default = "default_smtp_port")]
        smtp_port: u16,
        /// `none` (plain, for a local relay), `starttls` or `tls`.
        #[serde(default)]
        security: RawSmtpSecurity,
        username: Option<String>,
        password: Option<String>,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    }
}

/// `email.security`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSmtpSecurity {
    #[default]
    None,
    Starttls,
    Tls,
}

/// `[heartbeat]`: ping an external dead-man's switch while freshwatch is healthy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// Ping URL (Healthchecks.io style).
    pub url: String,
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// `get` (default) or `post`.
    #[serde(default)]
    pub method: RawHeartbeatMethod,
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHeartbeatMethod {
    #[default]
    Get,
    Post,
}

fn default_group_id() -> String {
    "freshwatch".to_owned()
}
fn default_metadata_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_retention_refresh() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_tail_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_keys() -> usize {
    100_000
}
fn default_state_path() -> PathBuf {
    PathBuf::from("freshwatch-state")
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_open_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_key_prefix() -> String {
    "freshwatch".to_owned()
}
fn default_listen() -> String {
    "127.0.0.1:9187".to_owned()
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_grace() -> Duration {
    Duration::from_secs(60)
}
fn default_catchup_tolerance() -> u64 {
    100
}
fn default_max_future_skew() -> Duration {
    Duration::from_secs(300)
}
fn default_warn_after() -> Duration {
    Duration::from_secs(3600)
}
fn default_critical_after() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}
fn default_fallback_after() -> Duration {
    Duration::from_secs(120)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_rate_limit() -> u32 {
    12
}
/// A sink down for hours during an incident storm still fits in memory: 10,000 notifications
/// are a few MB.
fn default_max_queued() -> usize {
    10_000
}

fn default_rate_limit_period() -> Duration {
    Duration::from_secs(3600)
}
fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_owned()
}
fn default_smtp_port() -> u16 {
    25
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
