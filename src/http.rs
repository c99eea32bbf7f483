//! The HTTP side: `/metrics`, `/api/v1/feeds`, `/healthz`, `/readyz`, and the status page
//! ([`page`]: `/`, `/feeds/{feed}`, `/groups/{group}`).
//!
//! Series are read from the table a chunk at a time ([`crate::snapshot`]), never by walking the
//! tracker under its lock for longer than a chunk; nothing here changes state. The heavy reads
//! (`/metrics`, `/api/v1/feeds`, the status page) take a turn at [`ReadGate`], and the
//! whole-table ones stream ([`reads::stream`]): a read costs what it returns.

use std::cmp::Ordering as CmpOrdering;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::{rfc3339, SharedClock};
use crate::evaluate::FeedRules;
use crate::snapshot::{FeedHead, Place, SeriesView, Snapshots};
use crate::source::SourceStatus;

mod access;
mod page;
mod reads;
mod silences;

pub use access::Access;
pub use reads::{ReadGate, ReadTurn, STREAM_CHUNK_BYTES};
pub use silences::SilenceView;

/// One Kafka cluster's source as `/readyz`, `/api/v1/source` and the status page see it.
#[derive(Debug, Default, Clone)]
pub struct ClusterSource {
    /// The cluster's name (`default` for `[kafka]`).
    pub name: Arc<str>,
    pub status: Arc<SourceStatus>,
    /// It has consume-mode feeds: ready once its consumer has partitions.
    pub needs_assignment: bool,
    /// It has tail-mode feeds: ready once its tail source finished a round.
    pub needs_tail: bool,
    /// The feeds on it, and its `[[group]]`s' names (a `group_regex`'s pattern).
    pub feeds: Vec<Arc<str>>,
    pub groups: Vec<Arc<str>>,
}

impl ClusterSource {
    fn started(&self) -> bool {
        (!self.needs_assignment || self.status.has_assignment.load(Ordering::Relaxed))
            && (!self.needs_tail || self.status.tail_ready.load(Ordering::Relaxed))
    }
}

/// What `/readyz` checks: on every cluster, the consumer joined its group (consume-mode feeds)
/// and the tail source finished a round (tail-mode feeds); and the state store answers.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The first cluster's source (the only one's with `[kafka]`).
    pub source: Arc<SourceStatus>,
    /// Every cluster's, in config order.
    pub clusters: Vec<ClusterSource>,
    pub state_store_up: AtomicBool,
}

impl Readiness {
    /// One cluster, named `default`.
    pub fn new(source: Arc<SourceStatus>, needs_assignment: bool, needs_tail: bool) -> Self {
        Readiness::for_clusters(vec![ClusterSource {
            name: Arc::from(crate::config::DEFAULT_CLUSTER),
            status: source,
            needs_assignment,
            needs_tail,
            feeds: Vec::new(),
            groups: Vec::new(),
        }])
    }

    pub fn for_clusters(clusters: Vec<ClusterSource>) -> Self {
        Readiness {
            source: clusters
                .first()
                .map(|cluster| cluster.status.clone())
                .unwrap_or_default(),
            clusters,
            state_store_up: AtomicBool::new(true),
        }
    }

    /// Whether the sources have started (a reason for "degraded" rather than "starting").
    fn started(&self) -> bool {
        self.clusters.iter().all(ClusterSource::started)
    }

    /// `None` when ready, else the reasons.
    pub fn problems(&self) -> Option<Vec<&'static str>> {
        let mut problems = Vec::new();
        if self.clusters.iter().any(|cluster| {
            cluster.needs_assignment && !cluster.status.has_assignment.load(Ordering::Relaxed)
        }) {
            problems.push("kafka consumer has no partition assignment yet");
        }
        if self
            .clusters
            .iter()
            .any(|cluster| cluster.needs_tail && !cluster.status.tail_ready.load(Ordering::Relaxed))
        {
            problems.push("tail source has not read the high watermarks yet");
        }
        if !self.state_store_up.load(Ordering::Relaxed) {
            problems.push("state store does not answer");
        }
        (!problems.is_empty()).then_some(problems)
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub snapshots: Arc<Snapshots>,
    /// Turns for the heavy reads (`http.max_concurrent_reads`).
    pub reads: ReadGate,
    pub rules: Arc<[FeedRules]>,
    pub clock: SharedClock,
    pub registry: Arc<Registry>,
    pub readiness: Arc<Readiness>,
    /// Shared with the source, so `/api/v1/source` reads it without touching the tracker.
    pub records_consumed: prometheus_client::metrics::counter::Counter,
    /// The last judgement of the watched consumer groups, worst first.
    pub groups: Arc<Mutex<Vec<crate::groups::TopicView>>>,
    /// The last volume judgement of the feeds with `min_rate` (and their keys).
    pub volume: Arc<Mutex<Vec<crate::volume::VolumeView>>>,
    /// Each `[[pipeline]]` as the last evaluation tick saw it.
    pub pipelines: Arc<Mutex<Vec<crate::pipelines::PipelineView>>>,
    /// Per audit (`pipeline/from/to`), its closed buckets.
    pub audit_results: Arc<Mutex<std::collections::BTreeMap<String, crate::audit::AuditResults>>>,
    /// Whether this replica leads, for the status page's header.
    pub leadership: Arc<crate::ha::Leadership>,
    /// Each feed's last transitions, for the status page.
    pub history: Arc<crate::history::History>,
    /// Silences: listed, created and expired through the API, marked on rows.
    pub silences: crate::silence::SilenceBook,
    /// The bearer tokens of the mutating and the read endpoints.
    pub access: Arc<Access>,
    /// Where `POST /-/reload` asks for a reload (`None`: not reloadable, e.g. the demo).
    pub reloads: Option<crate::app::reload::ReloadSender>,
    /// Per feed, the alert that pages for its blindness (`held_by` on its rows).
    pub held_by: crate::knowledge::HeldBy,
}

/// One row of `/api/v1/feeds`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeedRow {
    pub feed: String,
    pub key: String,
    pub status: String,
    pub last_seen: Option<String>,
    pub staleness_seconds: Option<f64>,
    /// The thresholds this series is judged by now (a learned series' own).
    pub warn_after_seconds: f64,
    pub critical_after_seconds: f64,
    /// Where they come from: `fixed`, or for `thresholds = "learned"` `learned`, `warm-up`
    /// (the ceilings, until `learn_min_gaps` gaps) or `ceiling` (the rule reached one).
    #[serde(default)]
    pub threshold_source: String,
    pub records: u64,
    pub topic: String,
    pub status_since: Option<String>,
    /// The id of the active silence holding this series' notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// While the feed is `unknown` because of a cause that pages for it (`FreshwatchSourceDown`,
    /// `FreshwatchPartitionsUnread`), that alert: the feed raises no `FreshwatchFeedBlind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct FeedsQuery {
    /// Only this feed.
    feed: Option<String>,
    /// Only series with this status.
    status: Option<String>,
    /// At most this many rows (stalest first).
    limit: Option<usize>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/feeds", get(feeds))
        .route("/api/v1/feeds/{feed}", get(feed))
        .route("/api/v1/feeds/{feed}/hours", get(hours))
        .route("/api/v1/source", get(source))
        .route("/api/v1/groups", get(groups))
        .route("/api/v1/volume", get(volume))
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/pipelines/{name}/audit", get(audit))
        .route("/feeds/{feed}", get(page::feed))
        .route("/groups/{group}", get(page::group))
        .route(
            "/api/v1/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(silences::expire),
        )
        .route("/-/reload", axum::routing::post(reload))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(access::BODY_LIMIT))
        .with_state(state)
}

/// `POST /-/reload`: 200 once the new config is accepted (the pipeline then restarts on it),
/// 400 with `check-config`'s message when it is refused.
async fn reload(State(state): State<HttpState>) -> Response {
    let Some(reloads) = &state.reloads else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            Json(serde_json::json!({"error": "this instance was not started from a config file"})),
        )
            .into_response();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if reloads.send(reply).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "shutting down"})),
        )
            .into_response();
    }
    match answer.await {
        Ok(Ok(())) => Json(serde_json::json!({"status": "reloading"})).into_response(),
        Ok(Err(message)) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": message})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "shutting down"})),
        )
            .into_response(),
    }
}

/// Binds `listen` (so a taken port fails at start) and returns the server future's runner.
pub async fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

/// Serves until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) {
    let app = router(state);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(%error, "http server failed");
    }
}

/// The status page, or for `Accept: application/json` the index of endpoints.
async fn index(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    Query(filters): Query<page::Filters>,
) -> Response {
    if !page::wants_json(&headers) {
        return page::front_page(state, filters).await;
    }
    Json(serde_json::json!({
        "name": "freshwatch",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": ["/metrics", "/api/v1/feeds", "/api/v1/feeds/{feed}", "/api/v1/groups", "/api/v1/volume", "/api/v1/pipelines", "/api/v1/source", "/healthz", "/readyz", "/feeds/{feed}", "/groups/{group}"],
    }))
    .into_response()
}

/// Every watched (group, topic), worst first: lag, the data-loss countdown, losses; a group
/// behind a broken pipeline hop has `held_by`.
async fn groups(State(state): State<HttpState>) -> Json<Vec<crate::groups::TopicView>> {
    let now_ms = state.clock.now_ms();
    let mut views = state
        .groups
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    for view in &mut views {
        let holding = state.silences.silences.holding(
            crate::silence::Subject::Group {
                group: &view.group,
                data_loss: false,
            },
            now_ms,
        );
        view.silenced_by = holding.as_ref().map(|silence| silence.id.clone());
        view.held_by = holding.and_then(|silence| silence.held_by);
    }
    Json(views)
}

/// Every `[[pipeline]]` in config order: its hops' statuses, `held_by`, the hop delays and its
/// end-to-end freshness.
async fn pipelines(State(state): State<HttpState>) -> Json<Vec<crate::pipelines::PipelineView>> {
    Json(
        state
            .pipelines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone(),
    )
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    /// Only buckets that end after this (RFC 3339).
    since: Option<String>,
}

/// One closed bucket of `GET /api/v1/pipelines/{name}/audit`.
#[derive(Debug, Serialize)]
struct AuditRow<'a> {
    from: &'a str,
    to: &'a str,
    start: String,
    end: String,
    upstream: u64,
    downstream: u64,
    missing: u64,
    duplicated: u64,
    missing_ids: &'a [String],
    listed_all: bool,
}

/// A pipeline's closed audit buckets, oldest first (every audit of it); 404 for a pipeline
/// that is not configured, 400 for a `since` that is no RFC 3339 time.
async fn audit(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let known = state
        .pipelines
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .iter()
        .any(|pipeline| pipeline.name == name);
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no pipeline named {name:?}")})),
        )
            .into_response();
    }
    let since_ms = match query.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => i64::MIN,
        Some(Ok(time)) => time.timestamp_millis(),
        Some(Err(error)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": format!("since: {error} (RFC 3339, e.g. 2026-12-03T10:00:00Z)")})),
            )
                .into_response()
        }
    };
    let results = state
        .audit_results
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let prefix = format!("{name}/");
    let mut rows: Vec<AuditRow> = results
        .iter()
        .filter(|(audit, _)| audit.starts_with(&prefix))
        .flat_map(|(_, results)| &results.closed)
        .filter(|bucket| bucket.end_ms > since_ms)
        .map(|bucket| AuditRow {
            from: &bucket.from,
            to: &bucket.to,
            start: rfc3339(bucket.start_ms),
            end: rfc3339(bucket.end_ms),
            upstream: bucket.upstream,
            downstream: bucket.downstream,
            missing: bucket.missing,
            duplicated: bucket.duplicated,
            missing_ids: &bucket.missing_ids,
            listed_all: bucket.listed_all,
        })
        .collect();
    rows.sort_by(|a, b| (&a.start, a.from, a.to).cmp(&(&b.start, b.from, b.to)));
    Json(rows).into_response()
}

/// Per feed with `min_rate` (and per key with `volume_by_key`): the observed rate against the
/// expected one, in feed order.
async fn volume(State(state): State<HttpState>) -> Json<Vec<crate::volume::VolumeView>> {
    Json(
        state
            .volume
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone(),
    )
}

/// `GET /metrics`: rendered off the async workers as the scraper reads it, in a read turn.
async fn metrics(State(state): State<HttpState>) -> Response {
    let turn = state.reads.enter().await;
    let registry = state.registry.clone();
    let body = reads::stream(turn, move |out| crate::metrics::render_into(out, &registry));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Records between what one source has read and the high watermarks, summed; `None` until its
/// first statistics.
fn lag_records(source: &SourceStatus) -> Option<i64> {
    source
        .lag
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .as_ref()
        .map(|partitions| partitions.values().sum::<i64>())
}

/// The consumer as it stands. Cheap (never locks the series table), so scripts and benchmarks
/// can poll it often while freshwatch reads a backlog. The top-level fields are the whole
/// process's (reachable only when every cluster is; lag unknown while any cluster's is);
/// `clusters` has each cluster's own.
async fn source(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let clusters = &state.readiness.clusters;
    let lags: Vec<Option<i64>> = clusters
        .iter()
        .map(|cluster| lag_records(&cluster.status))
        .collect();
    let lag: Option<i64> = lags.iter().copied().sum();
    let each: Vec<serde_json::Value> = clusters
        .iter()
        .zip(&lags)
        .map(|(cluster, lag)| {
            serde_json::json!({
                "name": &*cluster.name,
                "reachable": cluster.status.reachable.load(Ordering::Relaxed),
                "assigned_partitions": cluster.status.assigned_partitions.load(Ordering::Relaxed),
                "lag_records": lag,
                "feeds": cluster.feeds.iter().map(|feed| &**feed).collect::<Vec<&str>>(),
                "groups": cluster.groups.iter().map(|group| &**group).collect::<Vec<&str>>(),
            })
        })
        .collect();
    Json(serde_json::json!({
        "reachable": clusters
            .iter()
            .all(|cluster| cluster.status.reachable.load(Ordering::Relaxed)),
        "assigned_partitions": clusters
            .iter()
            .map(|cluster| cluster.status.assigned_partitions.load(Ordering::Relaxed))
            .sum::<usize>(),
        "records_consumed": state.records_consumed.get(),
        "lag_records": lag,
        "clusters": each,
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.readiness.problems() {
        None => Json(serde_json::json!({"ready": true})).into_response(),
        Some(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "ready": false,
                // Degraded: running and judging from memory, but not all it depends on answers.
                "status": if state.readiness.started() { "degraded" } else { "starting" },
                "reasons": reasons,
            })),
        )
            .into_response(),
    }
}

/// What a read of `/api/v1/feeds` selects.
#[derive(Debug, Default, Clone)]
pub struct RowFilter {
    /// Only this feed.
    pub feed: Option<String>,
    /// Only series with this status.
    pub status: Option<String>,
}

/// The places of the series `filter` admits (see [`crate::snapshot::Place`]), and each feed's
/// rank by name. Blocking.
fn admitted_places(
    state: &HttpState,
    filter: &RowFilter,
    now_ms: i64,
) -> (Vec<FeedHead>, Vec<u32>, Vec<Place>) {
    let heads = state.snapshots.heads();
    let feed_order = Snapshots::feed_order(&heads);
    let feeds: Vec<usize> = (0..heads.len())
        .filter(|&index| {
            filter
                .feed
                .as_deref()
                .is_none_or(|name| name == &*heads[index].name)
        })
        .collect();
    let places = state.snapshots.places(&feeds, now_ms, |_, series| {
        filter
            .status
            .as_deref()
            .is_none_or(|status| status == series.status.as_str())
    });
    (heads, feed_order, places)
}

/// One row of `/api/v1/feeds` from a copy of its series.
fn feed_row(
    state: &HttpState,
    now_ms: i64,
    head: &FeedHead,
    feed_index: usize,
    series: &SeriesView,
) -> FeedRow {
    let rules = &state.rules[feed_index];
    // Windows change thresholds with the time of day, learning per series: show now's.
    let (in_force, source) = rules.effective(&series.learned(head.weekly.as_ref()), now_ms);
    let staleness_ms = series.last_seen().map(|seen| (now_ms - seen).max(0));
    // A silence holding it, perhaps a pipeline's hold (then `held_by` names the broken hop).
    let holding = state.silences.silences.holding(
        crate::silence::Subject::Series {
            feed: &head.name,
            key: &series.key,
        },
        now_ms,
    );
    FeedRow {
        feed: head.name.to_string(),
        key: series.key.to_string(),
        status: series.status.as_str().to_owned(),
        last_seen: series.last_seen().map(rfc3339),
        staleness_seconds: staleness_ms.map(|millis| millis as f64 / 1000.0),
        warn_after_seconds: in_force.warn_after_ms as f64 / 1000.0,
        critical_after_seconds: in_force.critical_after_ms as f64 / 1000.0,
        threshold_source: source.as_str().to_owned(),
        records: series.records,
        topic: rules.topic.clone(),
        status_since: (series.status_since_ms > 0).then(|| rfc3339(series.status_since_ms)),
        held_by: state
            .held_by
            .get(feed_index)
            .filter(|_| series.status == crate::model::Status::Unknown)
            .map(str::to_owned)
            .or_else(|| holding.as_ref().and_then(|silence| silence.held_by.clone())),
        silenced_by: holding.map(|silence| silence.id),
    }
}

/// The first `limit` rows, stalest first (status rank, then staleness, then feed and key),
/// built without building the others: a selection over 24 bytes per admitted series, then
/// rows for the selected only. Blocking.
pub fn feed_rows_limited(state: &HttpState, filter: &RowFilter, limit: usize) -> Vec<FeedRow> {
    let now_ms = state.clock.now_ms();
    let (heads, feed_order, mut places) = admitted_places(state, filter, now_ms);
    state
        .snapshots
        .select(&mut places, &feed_order, 0, limit)
        .iter()
        .map(|(place, series)| {
            let feed = place.feed as usize;
            feed_row(state, now_ms, &heads[feed], feed, series)
        })
        .collect()
}

/// Every admitted row, stalest first, written to `out` as a JSON array a batch at a time: the
/// memory is 24 bytes per admitted series and one batch of rows, never all rows. Blocking.
pub fn write_feed_rows(state: &HttpState, filter: &RowFilter, out: &mut impl std::fmt::Write) {
    let now_ms = state.clock.now_ms();
    let (heads, feed_order, mut places) = admitted_places(state, filter, now_ms);
    let mut first = true;
    if out.write_char('[').is_err() {
        return;
    }
    state
        .snapshots
        .stream_sorted(&mut places, &feed_order, |rows| {
            for (place, series) in rows {
                let feed = place.feed as usize;
                let row = feed_row(state, now_ms, &heads[feed], feed, series);
                let Ok(json) = serde_json::to_string(&row) else {
                    continue;
                };
                let separator = if first { "" } else { "," };
                first = false;
                if out
                    .write_str(separator)
                    .and_then(|()| out.write_str(&json))
                    .is_err()
                {
                    return false;
                }
            }
            true
        });
    let _ = out.write_char(']');
}

/// A JSON array of rows that streams: see [`write_feed_rows`].
fn streamed_rows(state: HttpState, turn: reads::ReadTurn, filter: RowFilter) -> Response {
    let body = reads::stream(turn, move |out| write_feed_rows(&state, &filter, out));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/v1/feeds`: with `?limit=`, the stalest rows, selected; without, every row,
/// streamed. Either waits for a read turn.
async fn feeds(State(state): State<HttpState>, Query(query): Query<FeedsQuery>) -> Response {
    let turn = state.reads.enter().await;
    let filter = RowFilter {
        feed: query.feed,
        status: query.status,
    };
    match query.limit {
        Some(limit) => {
            let rows = tokio::task::spawn_blocking(move || {
                let _turn = turn;
                feed_rows_limited(&state, &filter, limit)
            })
            .await
            .unwrap_or_default();
            Json(rows).into_response()
        }
        None => streamed_rows(state, turn, filter),
    }
}

async fn feed(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    if !state.rules.iter().any(|rules| *rules.name == *name) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no feed named {name:?}")})),
        )
            .into_response();
    }
    let turn = state.reads.enter().await;
    let filter = RowFilter {
        feed: Some(name),
        status: None,
    };
    streamed_rows(state, turn, filter)
}

/// One hour of the week of a feed that learns by hour (`GET /api/v1/feeds/{feed}/hours`).
#[derive(Debug, Serialize)]
struct HourRow {
    /// `mon` to `sun`, and the hour of the day on the feed's `learn_timezone` clocks.
    day: &'static str,
    hour: usize,
    gaps: u16,
    /// The upper edge of the bucket holding the 99th percentile of the staleness reached in it.
    p99_seconds: Option<f64>,
    /// What a series' p99 is multiplied by in this hour (a power of two); `None` while the hour
    /// warms up (the ceilings apply).
    scale: Option<f64>,
}

async fn hours(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let not_found = |error: String| {
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response()
    };
    let Some(index) = state.rules.iter().position(|rules| *rules.name == *name) else {
        return not_found(format!("no feed named {name:?}"));
    };
    let Some(learning) = state.rules[index].learning else {
        return not_found(format!("feed {name:?} does not learn by hour"));
    };
    let Some(weekly) = state.snapshots.hours(index) else {
        return not_found(format!("feed {name:?} does not learn by hour"));
    };
    let seconds = |millis: i64| millis as f64 / 1000.0;
    let hours: Vec<HourRow> = (0..crate::schedule::WEEK_HOURS)
        .map(|hour| {
            let summary = weekly.hour(hour);
            HourRow {
                day: crate::schedule::DAY_NAMES[hour / 24],
                hour: hour % 24,
                gaps: summary.gaps(),
                p99_seconds: summary.p99_ms().map(seconds),
                scale: weekly
                    .hour_shift(hour, learning.warm_up())
                    .map(|shift| 2f64.powi(shift)),
            }
        })
        .collect();
    Json(serde_json::json!({
        "feed": name,
        "timezone": weekly.clock().timezone.name(),
        "learn_min_gaps": learning.min_gaps,
        "gaps": weekly.feed_summary().gaps(),
        "p99_seconds": weekly.feed_summary().p99_ms().map(seconds),
        "hours": hours,
    }))
    .into_response()
}

/// Orders rows the way `freshwatch status` prints them (used by the CLI on fetched rows).
pub fn stalest_first(a: &FeedRow, b: &FeedRow) -> CmpOrdering {
    let rank = |row: &FeedRow| {
        crate::model::Status::parse(&row.status)
            .map(|status| status.rank())
            .unwrap_or(0)
    };
    rank(b)
        .cmp(&rank(a))
        .then_with(|| {
            let staleness = |row: &FeedRow| row.staleness_seconds.unwrap_or(f64::INFINITY);
            staleness(b).total_cmp(&staleness(a))
        })
        .then_with(|| a.feed.cmp(&b.feed))
        .then_with(|| a.key.cmp(&b.key))
}

#[cfg(test)]
mod serve_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_an_assignment_and_a_state_store_that_answers() {
        let source = Arc::new(SourceStatus::default());
        let readiness = Readiness::new(source.clone(), true, false);
        assert_eq!(
            readiness.problems(),
            Some(vec!["kafka consumer has no partition assignment yet"])
        );
        source.has_assignment.store(true, Ordering::Relaxed);
        assert_eq!(readiness.problems(), None);
        readiness.state_store_up.store(false, Ordering::Relaxed);
        assert_eq!(
            readiness.problems(),
            Some(vec!["state store does not answer"])
        );
    }

    #[test]
    fn a_tail_feed_does_not_stand_in_for_the_consumers_assignment() {
        let source = Arc::new(SourceStatus::default());
        let readiness = Readiness::new(source.clone(), true, true);
        source.tail_ready.store(true, Ordering::Relaxed);
        assert_eq!(
            readiness.problems(),
            Some(vec!["kafka consumer has no partition assignment yet"])
        );
        source.has_assignment.store(true, Ordering::Relaxed);
        assert_eq!(readiness.problems(), None);
        let tail_only = Readiness::new(Arc::new(SourceStatus::default()), false, true);
        assert_eq!(
            tail_only.problems(),
            Some(vec!["tail source has not read the high watermarks yet"])
        );
    }
}
