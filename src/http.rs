//! The HTTP side: `/metrics`, `/api/v1/feeds`, `/healthz`, `/readyz`, and the status page
//! ([`page`]: `/`, `/feeds/{feed}`, `/groups/{group}`).
//!
//! Series are read from the read snapshot ([`crate::snapshot`]), never by walking the tracker
//! under its lock; nothing here changes state.

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
use crate::snapshot::Snapshots;
use crate::source::SourceStatus;

mod access;
mod page;
mod silences;

pub use access::Access;
pub use silences::SilenceView;

/// What `/readyz` checks: the consumer joined its group (consume-mode feeds), the tail source
/// finished a round (tail-mode feeds), and the state store answers.
#[derive(Debug, Default)]
pub struct Readiness {
    pub source: Arc<SourceStatus>,
    pub state_store_up: AtomicBool,
    needs_assignment: bool,
    needs_tail: bool,
}

impl Readiness {
    pub fn new(source: Arc<SourceStatus>, needs_assignment: bool, needs_tail: bool) -> Self {
        Readiness {
            source,
            state_store_up: AtomicBool::new(true),
            needs_assignment,
            needs_tail,
        }
    }

    /// Whether the sources have started (a reason for "degraded" rather than "starting").
    fn started(&self) -> bool {
        (!self.needs_assignment || self.source.has_assignment.load(Ordering::Relaxed))
            && (!self.needs_tail || self.source.tail_ready.load(Ordering::Relaxed))
    }

    /// `None` when ready, else the reasons.
    pub fn problems(&self) -> Option<Vec<&'static str>> {
        let mut problems = Vec::new();
        if self.needs_assignment && !self.source.has_assignment.load(Ordering::Relaxed) {
            problems.push("kafka consumer has no partition assignment yet");
        }
        if self.needs_tail && !self.source.tail_ready.load(Ordering::Relaxed) {
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
        "endpoints": ["/metrics", "/api/v1/feeds", "/api/v1/feeds/{feed}", "/api/v1/groups", "/api/v1/volume", "/api/v1/source", "/healthz", "/readyz", "/feeds/{feed}", "/groups/{group}"],
    }))
    .into_response()
}

/// Every watched (group, topic), worst first: lag, the data-loss countdown, losses.
async fn groups(State(state): State<HttpState>) -> Json<Vec<crate::groups::TopicView>> {
    Json(
        state
            .groups
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone(),
    )
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

async fn metrics(State(state): State<HttpState>) -> Response {
    // Rendering a large table takes a while: off the async workers.
    let registry = state.registry.clone();
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&registry))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The consumer as it stands. Cheap (never locks the series table), so scripts and benchmarks
/// can poll it often while freshwatch reads a backlog.
async fn source(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let source = &state.readiness.source;
    let lag = source
        .lag
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .as_ref()
        .map(|partitions| partitions.values().sum::<i64>());
    Json(serde_json::json!({
        "reachable": source.reachable.load(Ordering::Relaxed),
        "assigned_partitions": source.assigned_partitions.load(Ordering::Relaxed),
        "records_consumed": state.records_consumed.get(),
        "lag_records": lag,
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

/// Builds rows, stalest first: by status rank, then staleness, then never-seen last-seen.
/// Blocking (it may refresh the snapshot).
pub fn feed_rows(state: &HttpState, only_feed: Option<&str>) -> Vec<FeedRow> {
    let now_ms = state.clock.now_ms();
    let view = state.snapshots.read();
    let mut rows: Vec<(u8, i64, FeedRow)> = Vec::new();
    for (feed_index, (feed_view, rules)) in view.feeds.iter().zip(state.rules.iter()).enumerate() {
        if only_feed.is_some_and(|name| name != &*feed_view.name) {
            continue;
        }
        let held_by = state.held_by.get(feed_index);
        for (position, series) in feed_view.series().iter().enumerate() {
            // Windows change thresholds with the time of day, learning per series: show now's.
            let (in_force, source) = rules.effective(&feed_view.learned(position), now_ms);
            let staleness_ms = series.last_seen().map(|seen| (now_ms - seen).max(0));
            rows.push((
                series.status.rank(),
                staleness_ms.unwrap_or(i64::MAX),
                FeedRow {
                    feed: feed_view.name.to_string(),
                    key: series.key.to_string(),
                    status: series.status.as_str().to_owned(),
                    last_seen: series.last_seen().map(rfc3339),
                    staleness_seconds: staleness_ms.map(|millis| millis as f64 / 1000.0),
                    warn_after_seconds: in_force.warn_after_ms as f64 / 1000.0,
                    critical_after_seconds: in_force.critical_after_ms as f64 / 1000.0,
                    threshold_source: source.as_str().to_owned(),
                    records: series.records,
                    topic: rules.topic.clone(),
                    status_since: (series.status_since_ms > 0)
                        .then(|| rfc3339(series.status_since_ms)),
                    silenced_by: state
                        .silences
                        .silences
                        .holding(
                            crate::silence::Subject::Series {
                                feed: &feed_view.name,
                                key: &series.key,
                            },
                            now_ms,
                        )
                        .map(|silence| silence.id),
                    held_by: held_by
                        .filter(|_| series.status == crate::model::Status::Unknown)
                        .map(str::to_owned),
                },
            ));
        }
    }
    drop(view);
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then_with(|| a.2.feed.cmp(&b.2.feed))
            .then_with(|| a.2.key.cmp(&b.2.key))
    });
    rows.into_iter().map(|(_, _, row)| row).collect()
}

/// [`feed_rows`] off the async workers.
async fn rows_blocking(state: HttpState, only_feed: Option<String>) -> Vec<FeedRow> {
    tokio::task::spawn_blocking(move || feed_rows(&state, only_feed.as_deref()))
        .await
        .unwrap_or_default()
}

async fn feeds(
    State(state): State<HttpState>,
    Query(query): Query<FeedsQuery>,
) -> Json<Vec<FeedRow>> {
    let mut rows = rows_blocking(state, query.feed.clone()).await;
    if let Some(status) = &query.status {
        rows.retain(|row| &row.status == status);
    }
    if let Some(limit) = query.limit {
        rows.truncate(limit);
    }
    Json(rows)
}

async fn feed(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    if !state.rules.iter().any(|rules| *rules.name == *name) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no feed named {name:?}")})),
        )
            .into_response();
    }
    Json(rows_blocking(state, Some(name)).await).into_response()
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
