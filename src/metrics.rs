//! Every Prometheus metric freshwatch exports, with its help text.
//!
//! Process-wide counters live in a prometheus-client [`Registry`]. The per-series gauges
//! (`freshwatch_feed_*`) are read from the series table at scrape time by [`FeedCollector`], so a
//! record never touches a metric and staleness is exact at the moment of the scrape. Labels are
//! bounded: `feed` by the config, `key` by the split values seen, `reason` and `outcome` by fixed
//! sets. A feed with more keys than `metrics.max_key_series` exports per key only its keys that
//! are not `ok`; the per-feed aggregates (`freshwatch_feed_keys_by_status`,
//! `freshwatch_feed_max_staleness_seconds`) cover every feed, so a million-key feed is a few
//! samples plus its alerting keys, not four million.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
    NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock::SharedClock;
use crate::evaluate::FeedRules;
use crate::model::Status;
use crate::snapshot::{FeedHead, SeriesView, Snapshots};
use crate::tracker::Series;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    pub feed: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkOutcomeLabels {
    pub sink: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// `freshwatch_alerts_sent_total` outcomes.
pub const OUTCOME_ACCEPTED: &str = "accepted";
/// A delivery attempt failed and will be retried.
pub const OUTCOME_FAILED: &str = "failed";
/// The sink refused a notification permanently (4xx): logged, counted, not retried.
pub const OUTCOME_REJECTED: &str = "rejected";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupTopicLabels {
    pub group: String,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

/// A gauge of seconds.
pub type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// A Kafka cluster: bounded by the config's `[[cluster]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// The source's and the group watcher's own series per cluster. With `[[cluster]]` tables
/// (`labelled`) they are exported under their usual names with a `cluster` label, and each
/// cluster's source and watcher write their own ([`Metrics::for_cluster`]); with `[kafka]`
/// they are exported unlabelled, as before.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    pub labelled: bool,
    pub source_up: Family<ClusterLabels, Gauge>,
    pub assigned_partitions: Family<ClusterLabels, Gauge>,
    pub group_rounds: Family<ClusterLabels, Counter>,
    pub group_round_seconds: Family<ClusterLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub group_last_round_seconds: Family<ClusterLabels, SecondsGauge>,
    pub group_first_unread_deferred: Family<ClusterLabels, Counter>,
    /// `freshwatch_cluster_feeds_unknown`: per cluster (also `default`), its feeds that cannot
    /// be judged now.
    pub feeds_unknown: Family<ClusterLabels, Gauge>,
}

/// The `freshwatch_group_*` metrics: set from each judgement of the watched groups, and kept
/// while the group is configured, so a dead group does not vanish from dashboards.
#[derive(Debug, Clone, Default)]
pub struct GroupMetrics {
    pub lag_seconds: Family<GroupTopicLabels, SecondsGauge>,
    pub lag_records: Family<GroupTopicLabels, Gauge>,
    pub loss_eta_seconds: Family<GroupTopicLabels, SecondsGauge>,
    pub catchup_eta_seconds: Family<GroupTopicLabels, SecondsGauge>,
    pub records_lost: Family<GroupTopicLabels, Counter>,
    pub status: Family<GroupTopicLabels, Gauge>,
    pub members: Family<GroupLabels, Gauge>,
    /// Requests the group watcher sent, by kind: what watching costs the brokers.
    pub requests: Family<KindLabels, Counter>,
    pub rounds: Counter,
    /// Seconds the group watcher's rounds took, summed: with `rounds`, the mean round.
    pub round_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// How long the last round took.
    pub last_round_seconds: SecondsGauge,
    /// Records at moved commits left for a later round: more commits moved than one round reads.
    pub first_unread_deferred: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// A gauge that is absent while there is no value (the Prometheus way to say "none").
pub fn set_or_remove(
    family: &Family<GroupTopicLabels, SecondsGauge>,
    labels: &GroupTopicLabels,
    seconds: Option<f64>,
) {
    match seconds {
        Some(seconds) => {
            family.get_or_create(labels).set(seconds);
        }
        None => {
            family.remove(labels);
        }
    }
}

impl GroupMetrics {
    /// Drops the series of a (group, topic) no `[[group]]` watches any more.
    pub fn forget(&self, group: &str, topic: &str) {
        let labels = GroupTopicLabels {
            group: group.to_owned(),
            topic: topic.to_owned(),
        };
        self.lag_seconds.remove(&labels);
        self.lag_records.remove(&labels);
        self.loss_eta_seconds.remove(&labels);
        self.catchup_eta_seconds.remove(&labels);
        self.records_lost.remove(&labels);
        self.status.remove(&labels);
    }
}

/// `feed`, and `key` for the keys of a feed judged by key (bounded by `volume_max_keys`).
pub type VolumeLabels = Vec<(&'static str, String)>;

/// The `freshwatch_feed_*rate_per_second` gauges: set from each volume judgement; absent while
/// there is no value (the window not yet watched in full, no baseline for this hour).
#[derive(Debug, Clone, Default)]
pub struct VolumeMetrics {
    pub rate: Family<VolumeLabels, SecondsGauge>,
    pub expected_rate: Family<VolumeLabels, SecondsGauge>,
    /// The threshold itself, so Prometheus rules and dashboards need not know `drop_ratio`.
    pub min_rate: Family<VolumeLabels, SecondsGauge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FeedLabels {
    pub feed: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// Handles to every metric; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub record_errors: Family<ErrorLabels, Counter>,
    pub records_consumed: Counter,
    pub alerts_sent: Family<SinkOutcomeLabels, Counter>,
    pub state_flushes: Family<OutcomeLabels, Counter>,
    pub state_store_up: Gauge,
    /// Times the state store was found to have lost freshwatch's data while running.
    pub state_store_resets: Counter,
    /// Status writes refused by the fence: a newer leader wrote the feed (this one steps down).
    pub state_writes_fenced: Counter,
    /// 1 when Redis's `maxmemory-policy` may evict freshwatch's keys.
    pub state_store_evictable: Gauge,
    pub source_up: Gauge,
    pub assigned_partitions: Gauge,
    pub transitions: Family<OutcomeLabels, Counter>,
    pub outbox_pending: Family<SinkLabels, Gauge>,
    pub notification_latency: Family<SinkLabels, Histogram, fn() -> Histogram>,
    pub notifications_suppressed: Family<SinkLabels, Counter>,
    /// Sink tasks started again after a panic or an early return.
    pub sink_task_restarts: Family<SinkLabels, Counter>,
    /// Notices that found a sink's bounded queue full.
    pub sink_queue_overflows: Family<SinkLabels, Counter>,
    /// Notifications a sink past its `max_queued` dropped because a newer one of the same dedup
    /// key was queued behind them.
    pub sink_queue_coalesced: Family<SinkLabels, Counter>,
    /// Tail rounds that found no data record within the read-back bound below a moved high
    /// watermark (only transaction markers or aborted records there).
    pub tail_readback_exhausted: Family<FeedLabels, Counter>,
    /// Notices a silence held from the notification sinks.
    pub notifications_silenced: Counter,
    /// Silences in force now.
    pub silences_active: Gauge,
    pub heartbeats: Family<OutcomeLabels, Counter>,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub groups: GroupMetrics,
    pub volume: VolumeMetrics,
    pub pipelines: crate::pipelines::PipelineMetrics,
    pub audits: crate::audit::AuditMetrics,
    pub leader: Gauge,
    pub clusters: ClusterMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            record_errors: Family::default(),
            records_consumed: Counter::default(),
            alerts_sent: Family::default(),
            state_flushes: Family::default(),
            state_store_up: Gauge::default(),
            state_store_resets: Counter::default(),
            state_writes_fenced: Counter::default(),
            state_store_evictable: Gauge::default(),
            source_up: Gauge::default(),
            assigned_partitions: Gauge::default(),
            transitions: Family::default(),
            outbox_pending: Family::default(),
            notification_latency: Family::new_with_constructor(latency_histogram),
            notifications_suppressed: Family::default(),
            sink_task_restarts: Family::default(),
            sink_queue_overflows: Family::default(),
            sink_queue_coalesced: Family::default(),
            tail_readback_exhausted: Family::default(),
            notifications_silenced: Counter::default(),
            silences_active: Gauge::default(),
            heartbeats: Family::default(),
            consumer_lag: Family::default(),
            groups: GroupMetrics::default(),
            volume: VolumeMetrics::default(),
            pipelines: crate::pipelines::PipelineMetrics::default(),
            audits: crate::audit::AuditMetrics::default(),
            leader: Gauge::default(),
            clusters: ClusterMetrics::default(),
        }
    }
}

impl Metrics {
    /// The metrics cluster `cluster`'s source and group watcher write: with `[[cluster]]`
    /// tables, their own series of the per-cluster metrics; else these same metrics.
    pub fn for_cluster(&self, cluster: &str) -> Metrics {
        let mut metrics = self.clone();
        if !self.clusters.labelled {
            return metrics;
        }
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        let clusters = &self.clusters;
        metrics.source_up = clusters.source_up.get_or_create(&labels).clone();
        metrics.assigned_partitions = clusters.assigned_partitions.get_or_create(&labels).clone();
        metrics.groups.rounds = clusters.group_rounds.get_or_create(&labels).clone();
        metrics.groups.round_seconds = clusters.group_round_seconds.get_or_create(&labels).clone();
        metrics.groups.last_round_seconds = clusters
            .group_last_round_seconds
            .get_or_create(&labels)
            .clone();
        metrics.groups.first_unread_deferred = clusters
            .group_first_unread_deferred
            .get_or_create(&labels)
            .clone();
        metrics
    }

    /// Registers the process-wide metrics and the per-series collector, for a `[kafka]` config.
    pub fn register(
        registry: &mut Registry,
        snapshots: Arc<Snapshots>,
        rules: Arc<[FeedRules]>,
        clock: SharedClock,
        max_key_series: usize,
    ) -> Metrics {
        Metrics::register_clustered(registry, snapshots, rules, clock, max_key_series, false)
    }

    /// [`Metrics::register`]; `labelled`: the config has `[[cluster]]` tables, and the
    /// per-cluster series carry the `cluster` label.
    pub fn register_clustered(
        registry: &mut Registry,
        snapshots: Arc<Snapshots>,
        rules: Arc<[FeedRules]>,
        clock: SharedClock,
        max_key_series: usize,
        labelled: bool,
    ) -> Metrics {
        let mut metrics = Metrics::default();
        metrics.clusters.labelled = labelled;
        /// Registers the unlabelled metric, or with `[[cluster]]` its family under the same name.
        macro_rules! per_cluster {
            ($name:expr, $help:expr, $plain:expr, $family:expr) => {
                if labelled {
                    registry.register($name, $help, $family.clone());
                } else {
                    registry.register($name, $help, $plain.clone());
                }
            };
        }
        registry.register(
            "freshwatch_record_errors",
            "Records that did not refresh their feed, by reason",
            metrics.record_errors.clone(),
        );
        registry.register(
            "freshwatch_records_consumed",
            "Records read from Kafka",
            metrics.records_consumed.clone(),
        );
        registry.register(
            "freshwatch_alerts_sent",
            "Alert delivery attempts by sink and outcome (accepted, failed and retried, rejected)",
            metrics.alerts_sent.clone(),
        );
        registry.register(
            "freshwatch_state_flushes",
            "Writes of changed series to the state store, by outcome",
            metrics.state_flushes.clone(),
        );
        registry.register(
            "freshwatch_state_store_up",
            "1 while the state store answers",
            metrics.state_store_up.clone(),
        );
        registry.register(
            "freshwatch_state_store_resets",
            "Times the state store was found empty of freshwatch's data while running (all of it was written back)",
            metrics.state_store_resets.clone(),
        );
        registry.register(
            "freshwatch_state_writes_fenced",
            "Status writes the state store refused because a newer leader's fencing token wrote the feed; the replica stepped down",
            metrics.state_writes_fenced.clone(),
        );
        registry.register(
            "freshwatch_state_store_evictable",
            "1 when Redis's maxmemory-policy may evict freshwatch's keys",
            metrics.state_store_evictable.clone(),
        );
        per_cluster!(
            "freshwatch_source_up",
            "1 while Kafka is reachable",
            metrics.source_up,
            metrics.clusters.source_up
        );
        per_cluster!(
            "freshwatch_assigned_partitions",
            "Partitions assigned to this instance by the consumer group",
            metrics.assigned_partitions,
            metrics.clusters.assigned_partitions
        );
        registry.register(
            "freshwatch_cluster_feeds_unknown",
            "Feeds on this Kafka cluster that cannot be judged now (not read to the end, or the cluster does not answer)",
            metrics.clusters.feeds_unknown.clone(),
        );
        registry.register(
            "freshwatch_status_transitions",
            "Series status changes, by the status entered",
            metrics.transitions.clone(),
        );
        registry.register(
            "freshwatch_outbox_pending",
            "Notifications waiting for delivery, per sink",
            metrics.outbox_pending.clone(),
        );
        registry.register(
            "freshwatch_notification_latency_seconds",
            "From a status change to the sink accepting its notification",
            metrics.notification_latency.clone(),
        );
        registry.register(
            "freshwatch_notifications_suppressed",
            "Notifications coalesced by the per-dedup-key rate limit",
            metrics.notifications_suppressed.clone(),
        );
        registry.register(
            "freshwatch_sink_task_restarts",
            "Sink tasks restarted after a panic or an early return (their outbox and alerts kept)",
            metrics.sink_task_restarts.clone(),
        );
        registry.register(
            "freshwatch_sink_queue_overflows",
            "Notices that found a sink's bounded queue full: notification sinks take them up from their outbox, Alertmanager sinks coalesce them per alert",
            metrics.sink_queue_overflows.clone(),
        );
        registry.register(
            "freshwatch_sink_queue_coalesced",
            "Notifications a sink holding more than its max_queued dropped because a newer one of the same dedup key was queued behind them (the newest state of every key is kept)",
            metrics.sink_queue_coalesced.clone(),
        );
        registry.register(
            "freshwatch_tail_readback_exhausted",
            "Tail fetches that found no data record within the read-back bound (transaction markers or aborted records only)",
            metrics.tail_readback_exhausted.clone(),
        );
        registry.register(
            "freshwatch_heartbeats",
            "Dead-man's-switch pings, by outcome (sent, failed, withheld while unhealthy)",
            metrics.heartbeats.clone(),
        );
        registry.register(
            "freshwatch_leader",
            "1 while this replica holds the leader lease (evaluates and sends alerts)",
            metrics.leader.clone(),
        );
        registry.register(
            "freshwatch_feed_rate_per_second",
            "Records per second over the feed's volume_window (feeds with min_rate; per key with volume_by_key)",
            metrics.volume.rate.clone(),
        );
        registry.register(
            "freshwatch_feed_expected_rate_per_second",
            "The fixed min_rate, or the learned hour-of-week baseline (absent while too little history)",
            metrics.volume.expected_rate.clone(),
        );
        registry.register(
            "freshwatch_feed_min_rate_per_second",
            "Below this rate for volume_for pages FeedVolumeDrop: the fixed min_rate, or drop_ratio times the learned baseline",
            metrics.volume.min_rate.clone(),
        );
        registry.register(
            "freshwatch_hop_delay_seconds",
            "How far a pipeline hop's newest event time trails the hop upstream of it (feed hops; groups between them skipped)",
            metrics.pipelines.hop_delay.clone(),
        );
        registry.register(
            "freshwatch_pipeline_freshness_seconds",
            "End to end: the staleness of the newest record of a pipeline's last feed hop",
            metrics.pipelines.freshness.clone(),
        );
        registry.register(
            "freshwatch_audit_records_missing",
            "Records of a pipeline audit's upstream feed that its downstream feed never got, over closed buckets",
            metrics.audits.missing.clone(),
        );
        registry.register(
            "freshwatch_audit_records_duplicated",
            "Records a pipeline audit's downstream feed got once more than its upstream sent, over closed buckets",
            metrics.audits.duplicated.clone(),
        );
        registry.register(
            "freshwatch_audit_open_buckets",
            "A pipeline audit's event-time buckets not closed yet (both feeds not yet known past end + grace)",
            metrics.audits.open_buckets.clone(),
        );
        registry.register(
            "freshwatch_audit_records_late",
            "Records read after their audit bucket closed: counted nowhere (arrived later than grace)",
            metrics.audits.late.clone(),
        );
        registry.register(
            "freshwatch_audit_records_without_id",
            "Records of an audited feed without the audit's id: counted nowhere",
            metrics.audits.without_id.clone(),
        );
        registry.register(
            "freshwatch_group_lag_seconds",
            "Age of the first record a watched consumer group has not read (0 when caught up)",
            metrics.groups.lag_seconds.clone(),
        );
        registry.register(
            "freshwatch_group_lag_records",
            "High watermark minus committed offset, summed over the topic's partitions",
            metrics.groups.lag_records.clone(),
        );
        registry.register(
            "freshwatch_group_loss_eta_seconds",
            "Time until the group's first unread record expires under retention (absent when none)",
            metrics.groups.loss_eta_seconds.clone(),
        );
        registry.register(
            "freshwatch_group_catchup_eta_seconds",
            "At the current consume and produce rates, time until the group has caught up (0 when it has; absent when it is not catching up)",
            metrics.groups.catchup_eta_seconds.clone(),
        );
        registry.register(
            "freshwatch_group_records_lost",
            "Records that expired before the group read them",
            metrics.groups.records_lost.clone(),
        );
        registry.register(
            "freshwatch_group_status",
            "0 ok, 1 warning, 2 critical, 3 stalled, 4 unknown, 5 no_commits, 6 offset_out_of_range",
            metrics.groups.status.clone(),
        );
        registry.register(
            "freshwatch_group_watch_requests",
            "Requests the group watcher sent, by kind (offset_fetch, find_coordinator, list_groups, describe_group, list_offsets, describe_configs, metadata; fetch counts partitions re-read at a moved commit)",
            metrics.groups.requests.clone(),
        );
        per_cluster!(
            "freshwatch_group_watch_rounds",
            "Completed rounds of the group watcher",
            metrics.groups.rounds,
            metrics.clusters.group_rounds
        );
        per_cluster!(
            "freshwatch_group_watch_round_seconds",
            "Seconds spent in group watcher rounds, completed or not",
            metrics.groups.round_seconds,
            metrics.clusters.group_round_seconds
        );
        per_cluster!(
            "freshwatch_group_watch_last_round_seconds",
            "How long the group watcher's last round took",
            metrics.groups.last_round_seconds,
            metrics.clusters.group_last_round_seconds
        );
        per_cluster!(
            "freshwatch_group_first_unread_deferred",
            "Records at moved commits left for a later round because more commits moved than one round reads",
            metrics.groups.first_unread_deferred,
            metrics.clusters.group_first_unread_deferred
        );
        registry.register(
            "freshwatch_group_members",
            "Active members of a watched consumer group",
            metrics.groups.members.clone(),
        );
        registry.register(
            "freshwatch_notifications_silenced",
            "Notices held from the notification sinks by a silence",
            metrics.notifications_silenced.clone(),
        );
        registry.register(
            "freshwatch_silences_active",
            "Silences in force now",
            metrics.silences_active.clone(),
        );
        registry.register(
            "freshwatch_consumer_lag_records",
            "Records between what freshwatch has read and the partition's high watermark",
            metrics.consumer_lag.clone(),
        );
        registry.register_collector(Box::new(FeedCollector {
            announced: rules.iter().map(|_| AtomicBool::new(false)).collect(),
            snapshots,
            rules,
            clock,
            max_key_series,
        }));
        metrics
    }

    /// Pre-creates the error series of a feed at zero, so rate() works from the first error.
    pub fn declare_feed(&self, feed: &str) {
        for reason in crate::extract::RecordError::REASONS {
            drop(self.record_errors.get_or_create(&ErrorLabels {
                feed: feed.to_owned(),
                reason,
            }));
        }
    }

    pub fn declare_sink(&self, sink: &str) {
        let labels = SinkLabels {
            sink: sink.to_owned(),
        };
        drop(self.outbox_pending.get_or_create(&labels));
        drop(self.sink_task_restarts.get_or_create(&labels));
        drop(self.sink_queue_overflows.get_or_create(&labels));
        drop(self.sink_queue_coalesced.get_or_create(&labels));
        for outcome in [OUTCOME_ACCEPTED, OUTCOME_FAILED, OUTCOME_REJECTED] {
            drop(self.alerts_sent.get_or_create(&SinkOutcomeLabels {
                sink: sink.to_owned(),
                outcome,
            }));
        }
    }

    pub fn count_record_error(&self, feed: &str, reason: &'static str) {
        self.record_errors
            .get_or_create(&ErrorLabels {
                feed: feed.to_owned(),
                reason,
            })
            .inc();
    }

    pub fn count_suppressed(&self, sink: &str) {
        self.notifications_suppressed
            .get_or_create(&SinkLabels {
                sink: sink.to_owned(),
            })
            .inc();
    }

    pub fn count_alert(&self, sink: &str, outcome: &'static str) {
        self.alerts_sent
            .get_or_create(&SinkOutcomeLabels {
                sink: sink.to_owned(),
                outcome,
            })
            .inc();
    }
}

/// Renders the Prometheus text format of a registry.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    render_into(&mut text, registry);
    text
}

/// Renders the Prometheus text format of a registry into `out` as it goes (a scrape streams).
/// Stops at the first write `out` refuses (the scraper went away).
pub fn render_into(out: &mut impl std::fmt::Write, registry: &Registry) {
    if let Err(error) = prometheus_client::encoding::text::encode(out, registry) {
        tracing::debug!(%error, "metrics encoding stopped");
    }
}

/// A label value escaped per the exposition format (the client library writes values as-is,
/// and split values come from record data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for character in self.0.chars() {
            match character {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                other => encoder.write_char(other)?,
            }
        }
        Ok(())
    }
}

/// Per-series gauges, read from the series table at scrape time a chunk at a time
/// ([`crate::snapshot`]), never a walk under the tracker lock.
#[derive(Debug)]
struct FeedCollector {
    snapshots: Arc<Snapshots>,
    rules: Arc<[FeedRules]>,
    clock: SharedClock,
    /// `metrics.max_key_series`.
    max_key_series: usize,
    /// Per feed, whether its passing the bound was logged (once per process and feed).
    announced: Vec<AtomicBool>,
}

/// One feed as a scrape exports it.
struct ScrapedFeed {
    head: FeedHead,
    /// More keys than `metrics.max_key_series`: per key, only the keys that are not `ok`.
    limited: bool,
    /// Keys per status, by `Status as usize`.
    by_status: [u64; Status::ALL.len()],
    /// The largest staleness of a seen key, ms.
    max_staleness_ms: Option<i64>,
}

impl ScrapedFeed {
    /// Whether a series of this feed is exported per key.
    fn exports(&self, series: &Series) -> bool {
        !self.limited || series.status != Status::Ok
    }
}

/// One per-series gauge family: `value` gives a series' sample, `None` for none.
fn encode_series_gauge<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    snapshots: &Snapshots,
    feeds: &[ScrapedFeed],
    (name, help): (&str, &str),
    value: impl Fn(&SeriesView) -> Option<V>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    let mut result = Ok(());
    for (index, feed) in feeds.iter().enumerate() {
        snapshots.copy(
            index,
            |series| feed.exports(series),
            |chunk| {
                for series in chunk {
                    if result.is_err() {
                        return;
                    }
                    if let Some(value) = value(series) {
                        let labels = [
                            ("feed", Escaped(&feed.head.name)),
                            ("key", Escaped(&series.key)),
                        ];
                        result = metric
                            .encode_family(&labels)
                            .and_then(|mut sample| sample.encode_gauge(&value));
                    }
                }
            },
        );
        result?;
    }
    Ok(())
}

/// One per-feed gauge family.
fn encode_feed_gauge<'a, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    feeds: impl Iterator<Item = (&'a str, V)>,
    (name, help): (&str, &str),
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (feed, value) in feeds {
        let labels = [("feed", Escaped(feed))];
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

impl FeedCollector {
    /// Each feed's head, bound and aggregates: one pass over its series under the lock, a
    /// chunk per hold, allocating nothing per series.
    fn scrape_feeds(&self, now_ms: i64) -> Vec<ScrapedFeed> {
        let heads = self.snapshots.heads();
        heads
            .into_iter()
            .enumerate()
            .map(|(index, head)| {
                let mut by_status = [0u64; Status::ALL.len()];
                let mut max_staleness_ms: Option<i64> = None;
                self.snapshots.scan(index, |_, series, _| {
                    by_status[series.status as usize] += 1;
                    if let Some(seen) = series.last_seen() {
                        let staleness_ms = (now_ms - seen).max(0);
                        max_staleness_ms = Some(
                            max_staleness_ms.map_or(staleness_ms, |known| known.max(staleness_ms)),
                        );
                    }
                });
                let limited = head.keys > self.max_key_series;
                if limited {
                    self.announce(index, &head);
                }
                ScrapedFeed {
                    head,
                    limited,
                    by_status,
                    max_staleness_ms,
                }
            })
            .collect()
    }

    /// Logs, once per feed, that it passed `metrics.max_key_series`.
    fn announce(&self, index: usize, head: &FeedHead) {
        let Some(announced) = self.announced.get(index) else {
            return;
        };
        if !announced.swap(true, AtomicOrdering::Relaxed) {
            tracing::warn!(
                feed = %head.name,
                keys = head.keys,
                max_key_series = self.max_key_series,
                "feed has more keys than metrics.max_key_series: only its keys that are not ok are exported per key (freshwatch_feed_keys_by_status and freshwatch_feed_max_staleness_seconds cover the rest)"
            );
        }
    }
}

impl Collector for FeedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now_ms = self.clock.now_ms();
        let feeds = self.scrape_feeds(now_ms);
        let snapshots = &*self.snapshots;
        let encoder = &mut encoder;
        encode_series_gauge(
            encoder,
            snapshots,
            &feeds,
            (
                "freshwatch_feed_last_seen_timestamp_seconds",
                "Newest event time seen on the feed, unix seconds (absent until seen)",
            ),
            |series| Some(series.last_seen()? as f64 / 1000.0),
        )?;
        encode_series_gauge(
            encoder,
            snapshots,
            &feeds,
            (
                "freshwatch_feed_staleness_seconds",
                "Seconds since the newest event time seen (absent until seen)",
            ),
            |series| Some((now_ms - series.last_seen()?).max(0) as f64 / 1000.0),
        )?;
        encode_series_gauge(
            encoder,
            snapshots,
            &feeds,
            (
                "freshwatch_feed_status",
                "0 ok, 1 warning, 2 critical, 3 never_seen, 4 unknown",
            ),
            |series| Some(series.status.gauge_value()),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "freshwatch_feed_records",
                "Records counted on the feed since this process started",
                None,
                MetricType::Counter,
            )?;
            let mut result = Ok(());
            for (index, feed) in feeds.iter().enumerate() {
                snapshots.copy(
                    index,
                    |series| feed.exports(series),
                    |chunk| {
                        for series in chunk {
                            if result.is_err() {
                                return;
                            }
                            let labels = [
                                ("feed", Escaped(&feed.head.name)),
                                ("key", Escaped(&series.key)),
                            ];
                            result = metric.encode_family(&labels).and_then(|mut sample| {
                                sample.encode_counter::<NoLabelSet, u64, f64>(&series.records, None)
                            });
                        }
                    },
                );
                result?;
            }
        }
        encode_feed_gauge(
            encoder,
            feeds
                .iter()
                .map(|feed| (&*feed.head.name, feed.head.keys as i64)),
            (
                "freshwatch_feed_keys",
                "Series tracked per feed (1 for an unsplit feed)",
            ),
        )?;
        encode_aggregates(encoder, &feeds)?;
        {
            let mut metric = encoder.encode_descriptor(
                "freshwatch_feed_keys_refused",
                "Records whose new split value was refused because the feed is at max_keys",
                None,
                MetricType::Counter,
            )?;
            for feed in &feeds {
                let labels = [("feed", Escaped(&feed.head.name))];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, f64>(&feed.head.refused, None)?;
            }
        }
        let seconds = |millis: i64| millis as f64 / 1000.0;
        encode_feed_gauge(
            encoder,
            self.rules
                .iter()
                .map(|rules| (&*rules.name, seconds(rules.in_force(now_ms).warn_after_ms))),
            (
                "freshwatch_feed_warn_after_seconds",
                "The feed's warning threshold in force now (a window's, if one applies)",
            ),
        )?;
        encode_feed_gauge(
            encoder,
            self.rules.iter().map(|rules| {
                (
                    &*rules.name,
                    seconds(rules.in_force(now_ms).critical_after_ms),
                )
            }),
            (
                "freshwatch_feed_critical_after_seconds",
                "The feed's critical threshold in force now (a window's, if one applies)",
            ),
        )?;
        encode_effective_thresholds(encoder, snapshots, &feeds, &self.rules, now_ms)
    }
}

/// The per-feed aggregates every feed exports, whatever its size: what a dashboard or rule
/// reads for a feed that may pass `metrics.max_key_series`.
fn encode_aggregates(
    encoder: &mut DescriptorEncoder,
    feeds: &[ScrapedFeed],
) -> Result<(), std::fmt::Error> {
    {
        let mut metric = encoder.encode_descriptor(
            "freshwatch_feed_keys_by_status",
            "Keys of the feed per status (all of them, whether exported per key or not)",
            None,
            MetricType::Gauge,
        )?;
        for feed in feeds {
            for status in Status::ALL {
                let labels = [
                    ("feed", Escaped(&feed.head.name)),
                    ("status", Escaped(status.as_str())),
                ];
                metric
                    .encode_family(&labels)?
                    .encode_gauge(&(feed.by_status[status as usize] as i64))?;
            }
        }
    }
    encode_feed_gauge(
        encoder,
        feeds
            .iter()
            .filter_map(|feed| Some((&*feed.head.name, feed.max_staleness_ms? as f64 / 1000.0))),
        (
            "freshwatch_feed_max_staleness_seconds",
            "The largest staleness of the feed's keys (absent until a key is seen)",
        ),
    )?;
    {
        let mut metric = encoder.encode_descriptor(
            "freshwatch_feed_records_all_keys",
            "Records counted on the feed since this process started, every key summed",
            None,
            MetricType::Counter,
        )?;
        for feed in feeds {
            let labels = [("feed", Escaped(&feed.head.name))];
            metric
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, f64>(&feed.head.records, None)?;
        }
    }
    encode_feed_gauge(
        encoder,
        feeds
            .iter()
            .map(|feed| (&*feed.head.name, i64::from(feed.limited))),
        (
            "freshwatch_feed_key_series_limited",
            "1 while the feed has more keys than metrics.max_key_series, so only its keys that are not ok are exported per key",
        ),
    )
}

/// `freshwatch_feed_effective_critical_after_seconds{feed,key,source}`: learned feeds only, so
/// fixed feeds add no series; `source` is one of `learned`, `warm-up`, `ceiling`, and a series
/// has one source at a time, so this is one sample per series of a learned feed (within the
/// bound, as the other per-key families).
fn encode_effective_thresholds(
    encoder: &mut DescriptorEncoder,
    snapshots: &Snapshots,
    feeds: &[ScrapedFeed],
    rules: &[FeedRules],
    now_ms: i64,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        "freshwatch_feed_effective_critical_after_seconds",
        "The critical threshold a series of a learned feed is judged by now, and its source",
        None,
        MetricType::Gauge,
    )?;
    let mut result = Ok(());
    for (index, (feed, feed_rules)) in feeds.iter().zip(rules).enumerate() {
        if feed_rules.learning.is_none() {
            continue;
        }
        snapshots.copy(
            index,
            |series| feed.exports(series),
            |chunk| {
                for series in chunk {
                    if result.is_err() {
                        return;
                    }
                    let learned = series.learned(feed.head.weekly.as_ref());
                    let (thresholds, source) = feed_rules.effective(&learned, now_ms);
                    let labels = [
                        ("feed", Escaped(&feed.head.name)),
                        ("key", Escaped(&series.key)),
                        ("source", Escaped(source.as_str())),
                    ];
                    result = metric.encode_family(&labels).and_then(|mut sample| {
                        sample.encode_gauge(&(thresholds.critical_after_ms as f64 / 1000.0))
                    });
                }
            },
        );
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::tracker::Tracker;

    /// A learned feed's series carry their effective critical threshold and its source; a fixed
    /// feed adds no such series (bounded cardinality).
    #[test]
    fn learned_feeds_expose_each_series_effective_critical_threshold_and_its_source() {
        let text = r#"
            [kafka]
            brokers = "localhost:9092"
            [[feed]]
            name = "tenants"
            topic = "tenants"
            split_by = "key"
            warn_after = "12h"
            critical_after = "24h"
            thresholds = "learned"
            [[feed]]
            name = "orders"
            topic = "orders"
        "#;
        let config = crate::config::parse(text, std::path::Path::new("test.toml"), &|_| None)
            .expect("valid config");
        let start_ms = 1_764_547_200_000;
        let mut tracker = Tracker::new(&config.feeds, start_ms);
        // Half an hour of one-second gaps: warm.
        for second in 0..=2_000 {
            tracker.observe(0, b"chatty", start_ms + second * 1_000);
        }
        tracker.observe(0, b"new", start_ms);
        let tracker = Arc::new(Mutex::new(tracker));
        let rules: Arc<[FeedRules]> = config.feeds.iter().map(FeedRules::from_config).collect();
        let clock: SharedClock = Arc::new(crate::clock::ManualClock::new(start_ms + 2_010_000));
        let mut registry = Registry::default();
        Metrics::register(
            &mut registry,
            Arc::new(Snapshots::new(tracker)),
            rules,
            clock,
            10_000,
        );
        let text = render(&registry);
        let samples: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("freshwatch_feed_effective_critical_after_seconds{"))
            .collect();
        assert_eq!(
            samples,
            [
                "freshwatch_feed_effective_critical_after_seconds{feed=\"tenants\",key=\"chatty\",source=\"learned\"} 300.0",
                "freshwatch_feed_effective_critical_after_seconds{feed=\"tenants\",key=\"new\",source=\"warm-up\"} 86400.0",
            ],
            "{text}"
        );
    }

    /// The threshold gauges follow the window in force (business hours here), not only the
    /// feed's own thresholds.
    #[test]
    fn threshold_gauges_show_the_thresholds_in_force_now() {
        let text = r#"
            [kafka]
            brokers = "localhost:9092"
            [[feed]]
            name = "orders"
            topic = "orders"
            warn_after = "30m"
            critical_after = "2h"
            [[feed.window]]
            days = "daily"
            hours = "08:00-20:00"
            warn_after = "5m"
            critical_after = "15m"
        "#;
        let config = crate::config::parse(text, std::path::Path::new("test.toml"), &|_| None)
            .expect("valid config");
        // 2025-12-01T10:00:00Z, inside the window.
        let ten_am_ms = 1_764_583_200_000;
        let tracker = Arc::new(Mutex::new(Tracker::new(&config.feeds, ten_am_ms)));
        let rules: Arc<[FeedRules]> = config.feeds.iter().map(FeedRules::from_config).collect();
        let clock = Arc::new(crate::clock::ManualClock::new(ten_am_ms));
        let mut registry = Registry::default();
        Metrics::register(
            &mut registry,
            Arc::new(Snapshots::new(tracker)),
            rules,
            clock.clone(),
            10_000,
        );
        let gauges = |registry: &Registry| -> Vec<String> {
            render(registry)
                .lines()
                .filter(|line| line.contains("_after_seconds{feed=\"orders\"}"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            gauges(&registry),
            [
                "freshwatch_feed_warn_after_seconds{feed=\"orders\"} 300.0",
                "freshwatch_feed_critical_after_seconds{feed=\"orders\"} 900.0",
            ]
        );
        clock.set(ten_am_ms + 12 * 3_600_000);
        assert_eq!(
            gauges(&registry),
            [
                "freshwatch_feed_warn_after_seconds{feed=\"orders\"} 1800.0",
                "freshwatch_feed_critical_after_seconds{feed=\"orders\"} 7200.0",
            ],
            "at 22:00 the feed's own"
        );
    }
}
