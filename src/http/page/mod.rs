//! The status page: HTML rendered here (maud), for a person at a browser.
//!
//! - `GET /`: every feed and every watched consumer group with its worst status, stalest first
//!   (the order of `/api/v1/feeds`: status rank, then staleness), counts per status, and the
//!   health of the source, the state store and leadership. `?status=` and `?q=` filter on the
//!   server, so a plain `<form method=get>` works without script.
//! - `GET /feeds/{feed}`: one page of a feed's keys (`?page=N`, [`ROWS_PER_PAGE`] rows), its
//!   thresholds, and its last transitions ([`crate::history`]).
//! - `GET /groups/{group}`: a watched group's lag per topic and partition and its data-loss
//!   countdown.
//!
//! Nothing is loaded from elsewhere (styles inline, a few lines of script for auto-refresh): it
//! works air-gapped.
//!
//! Cost at a million series: the series are read from the table a chunk at a time
//! ([`crate::snapshot`]), off the async workers and in a read turn ([`super::ReadGate`]). A page
//! keeps a 24-byte [`Place`] per matching series and selects what it shows with two
//! `select_nth_unstable_by` (O(n)), copying only those series (and the keys of series tied with
//! them); it never sorts the feed, and renders one page of rows.

mod render;

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::HttpState;
use crate::groups::{GroupStatus, TopicView};
use crate::model::Status;
use crate::snapshot::{Place, SeriesView, Snapshots};

/// Rows of a feed page.
pub const ROWS_PER_PAGE: usize = 100;

/// Every status label the page shows, worst first: the order of the counts.
pub const LABELS: [&str; 6] = [
    "never_seen",
    "critical",
    "warning",
    "stalled",
    "unknown",
    "ok",
];

/// A status as the page shows it: its label (also its CSS class) and its stalest-first rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub label: &'static str,
    pub rank: u8,
}

impl Shown {
    pub fn feed(status: Status) -> Shown {
        Shown {
            label: status.as_str(),
            rank: status.rank(),
        }
    }

    /// A group's status on the feeds' scale: a stall pages as a warning, so it ranks as one.
    pub fn group(status: GroupStatus) -> Shown {
        let like = match status {
            GroupStatus::Critical | GroupStatus::NoCommits => Status::Critical,
            GroupStatus::Warning | GroupStatus::Stalled | GroupStatus::OffsetOutOfRange => {
                Status::Warning
            }
            GroupStatus::Unknown => Status::Unknown,
            GroupStatus::Ok => Status::Ok,
        };
        Shown {
            label: status.as_str(),
            rank: like.rank(),
        }
    }
}

/// `?status=` and `?q=`; empty values mean "no filter".
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    status: Option<String>,
    q: Option<String>,
    page: Option<String>,
}

impl Filters {
    fn status(&self) -> Option<&str> {
        self.status
            .as_deref()
            .map(str::trim)
            .filter(|status| !status.is_empty() && *status != "all")
    }

    fn query(&self) -> Option<&str> {
        self.q.as_deref().map(str::trim).filter(|q| !q.is_empty())
    }

    /// 1-based; anything unreadable is the first page.
    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|page| page.trim().parse().ok())
            .unwrap_or(1)
            .max(1)
    }

    fn admits(&self, label: &str, name: &str) -> bool {
        self.status().is_none_or(|status| status == label)
            && self
                .query()
                .is_none_or(|query| contains_ignoring_case(name, query))
    }
}

/// Whether `haystack` contains `needle`, ASCII case ignored; allocates nothing.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Whether the client asked for JSON rather than a page (`Accept: application/json`).
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// Whether a row is a feed or a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Feed,
    Group,
}

/// One row of the front page.
#[derive(Debug, Clone)]
pub struct FrontRow {
    pub kind: Kind,
    pub name: String,
    pub shown: Shown,
    /// The worst series' staleness (a group's lag); `None` when never seen or unknown.
    pub staleness_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    /// A short line: keys and how many alert, or the group's topics and lag.
    pub detail: String,
}

impl FrontRow {
    /// Stalest first: status rank, then staleness (never seen counts as the stalest), then name.
    fn order(a: &FrontRow, b: &FrontRow) -> CmpOrdering {
        let staleness = |row: &FrontRow| row.staleness_ms.unwrap_or(i64::MAX);
        b.shown
            .rank
            .cmp(&a.shown.rank)
            .then(staleness(b).cmp(&staleness(a)))
            .then_with(|| a.name.cmp(&b.name))
    }
}

/// The front page's content.
#[derive(Debug)]
pub struct Front {
    /// Rows per status label, before filtering ([`LABELS`] order).
    pub counts: Vec<(&'static str, usize)>,
    pub rows: Vec<FrontRow>,
    pub now_ms: i64,
    /// Silences in force or pending, as the API shows them.
    pub silences: Vec<crate::http::SilenceView>,
    /// Each `[[pipeline]]` as a chain of hops.
    pub pipelines: Vec<crate::pipelines::PipelineView>,
}

/// The health line at the top of every page.
#[derive(Debug, Clone)]
pub struct Health {
    pub source_reachable: bool,
    /// With several clusters, each one's name and whether it answers.
    pub clusters: Vec<(Arc<str>, bool)>,
    pub state_store_up: bool,
    pub leader: bool,
}

impl Health {
    fn of(state: &HttpState) -> Health {
        use std::sync::atomic::Ordering;
        Health {
            source_reachable: state.readiness.source.reachable.load(Ordering::Relaxed),
            clusters: if state.readiness.clusters.len() > 1 {
                state
                    .readiness
                    .clusters
                    .iter()
                    .map(|cluster| {
                        let reachable = cluster.status.reachable.load(Ordering::Relaxed);
                        (cluster.name.clone(), reachable)
                    })
                    .collect()
            } else {
                Vec::new()
            },
            state_store_up: state.readiness.state_store_up.load(Ordering::Relaxed),
            leader: state.leadership.is_leader(),
        }
    }
}

#[cfg(test)]
use crate::snapshot::select_page;

/// Builds the front page: one pass over each feed's series, plus the groups. Blocking.
fn front(state: &HttpState, filters: &Filters) -> Front {
    let now_ms = state.clock.now_ms();
    let heads = state.snapshots.heads();
    let feed_order = Snapshots::feed_order(&heads);
    let mut all = Vec::with_capacity(heads.len());
    for (feed_index, head) in heads.iter().enumerate() {
        let mut counts = [0usize; Status::ALL.len()];
        let mut places = Vec::new();
        state.snapshots.scan(feed_index, |index, one, _| {
            counts[one.status as usize] += 1;
            places.push(Place::of(now_ms, feed_index, index, one));
        });
        let stalest = state.snapshots.select(&mut places, &feed_order, 0, 1);
        drop(places);
        let worst = stalest.first().map(|(_, series)| series);
        let alerting: Vec<String> = [Status::NeverSeen, Status::Critical, Status::Warning]
            .into_iter()
            .filter(|status| counts[*status as usize] > 0)
            .map(|status| format!("{} {}", counts[status as usize], words(status.as_str())))
            .collect();
        let mut detail = match head.keys {
            1 => "1 key".to_owned(),
            keys => format!("{keys} keys"),
        };
        if !alerting.is_empty() {
            detail = format!("{detail} ({})", alerting.join(", "));
        }
        if let Some(stalest) = worst.filter(|_| head.keys > 1) {
            detail = format!("{detail}; stalest key {}", shown_key(&stalest.key));
        }
        let pipeline_hold = state
            .silences
            .silences
            .holding(
                crate::silence::Subject::Series {
                    feed: &head.name,
                    key: "",
                },
                state.clock.now_ms(),
            )
            .and_then(|silence| silence.held_by);
        if let Some(cause) = state
            .held_by
            .get(feed_index)
            .map(str::to_owned)
            .or(pipeline_hold)
        {
            detail = format!("{detail}; held by {cause}");
        }
        all.push(FrontRow {
            kind: Kind::Feed,
            name: head.name.to_string(),
            // A feed without a key yet cannot be judged.
            shown: Shown::feed(worst.map_or(Status::Unknown, |series| series.status)),
            staleness_ms: worst
                .and_then(SeriesView::last_seen)
                .map(|seen| (now_ms - seen).max(0)),
            last_seen_ms: worst.and_then(SeriesView::last_seen),
            detail,
        });
    }
    let groups = state
        .groups
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    all.extend(group_rows(&groups));
    let counts = LABELS
        .iter()
        .map(|label| {
            (
                *label,
                all.iter().filter(|row| row.shown.label == *label).count(),
            )
        })
        .collect();
    let mut rows: Vec<FrontRow> = all
        .into_iter()
        .filter(|row| filters.admits(row.shown.label, &row.name))
        .collect();
    rows.sort_by(FrontRow::order);
    let silences = state
        .silences
        .silences
        .list(now_ms)
        .iter()
        .filter(|silence| silence.ends_at_ms > now_ms)
        .map(|silence| crate::http::SilenceView::new(silence, now_ms))
        .collect();
    Front {
        counts,
        rows,
        now_ms,
        silences,
        pipelines: state
            .pipelines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone(),
    }
}

/// One row per watched group (its label), from its topics: the worst status, the largest lag.
fn group_rows(views: &[TopicView]) -> Vec<FrontRow> {
    let mut names: Vec<&str> = views.iter().map(|view| view.group.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let topics: Vec<&TopicView> = views.iter().filter(|view| view.group == name).collect();
            let worst = topics
                .iter()
                .map(|view| view.status)
                .max_by_key(|status| (Shown::group(*status).rank, status.rank()))
                .unwrap_or(GroupStatus::Unknown);
            let lag_ms = topics
                .iter()
                .map(|view| view.lag_seconds.map(seconds_to_ms))
                .try_fold(0, |worst: i64, lag| lag.map(|lag| worst.max(lag)));
            let moved_ms = topics
                .iter()
                .filter_map(|view| view.committed_moved_at.as_deref().and_then(parse_rfc3339))
                .max();
            let lag_records: i64 = topics.iter().map(|view| view.lag_records).sum();
            let mut detail = format!(
                "{} topic{}, {lag_records} records behind",
                topics.len(),
                if topics.len() == 1 { "" } else { "s" }
            );
            if let Some(eta) = topics
                .iter()
                .filter_map(|view| view.loss_eta_seconds)
                .reduce(f64::min)
            {
                detail = format!("{detail}; data loss in {}", human_seconds(eta));
            }
            FrontRow {
                kind: Kind::Group,
                name: name.to_owned(),
                shown: Shown::group(worst),
                staleness_ms: lag_ms,
                last_seen_ms: moved_ms,
                detail,
            }
        })
        .collect()
}

/// One page of a feed's keys.
#[derive(Debug)]
pub struct FeedPage {
    pub name: String,
    pub topic: String,
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    pub hold_ms: i64,
    /// Keys per status label (all keys, before filtering).
    pub counts: Vec<(&'static str, usize)>,
    pub keys: usize,
    /// Keys that pass the filters.
    pub matching: usize,
    pub page: usize,
    pub pages: usize,
    pub rows: Vec<SeriesView>,
    pub history: Vec<crate::history::TransitionRecord>,
    pub now_ms: i64,
}

/// Builds one page of a feed; `None` for a feed not configured. Blocking.
fn feed_page(state: &HttpState, name: &str, filters: &Filters) -> Option<FeedPage> {
    let (index, rules) = state
        .rules
        .iter()
        .enumerate()
        .find(|(_, rules)| *rules.name == *name)?;
    let now_ms = state.clock.now_ms();
    let heads = state.snapshots.heads();
    let feed_order = Snapshots::feed_order(&heads);
    let keys = heads.get(index).map_or(0, |head| head.keys);
    let mut counts = [0usize; Status::ALL.len()];
    let mut matching: Vec<Place> = Vec::new();
    state.snapshots.scan(index, |position, one, _| {
        counts[one.status as usize] += 1;
        if filters.admits(one.status.as_str(), &one.key()) {
            matching.push(Place::of(now_ms, index, position, one));
        }
    });
    let pages = matching.len().div_ceil(ROWS_PER_PAGE).max(1);
    let page = filters.page().min(pages);
    let matching_count = matching.len();
    let rows = state
        .snapshots
        .select(
            &mut matching,
            &feed_order,
            (page - 1) * ROWS_PER_PAGE,
            ROWS_PER_PAGE,
        )
        .into_iter()
        .map(|(_, series)| series)
        .collect();
    Some(FeedPage {
        name: name.to_owned(),
        topic: rules.topic.clone(),
        warn_after_ms: rules.warn_after_ms,
        critical_after_ms: rules.critical_after_ms,
        hold_ms: rules.hold_ms,
        counts: LABELS
            .iter()
            .filter_map(|label| Status::parse(label))
            .map(|status| (status.as_str(), counts[status as usize]))
            .collect(),
        keys,
        matching: matching_count,
        page,
        pages,
        rows,
        history: state.history.newest_first(name),
        now_ms,
    })
}

/// `GET /` for a browser.
pub async fn front_page(state: HttpState, filters: Filters) -> Response {
    let health = Health::of(&state);
    let turn = state.reads.enter().await;
    let rendered = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let front = front(&state, &filters);
        render::front(&front, &filters, health).into_string()
    })
    .await;
    html_or_error(StatusCode::OK, rendered)
}

/// `GET /feeds/{feed}`.
pub async fn feed(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    Query(filters): Query<Filters>,
) -> Response {
    let health = Health::of(&state);
    let turn = state.reads.enter().await;
    let rendered = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        match feed_page(&state, &name, &filters) {
            Some(page) => (StatusCode::OK, render::feed(&page, &filters, health)),
            None => (
                StatusCode::NOT_FOUND,
                render::not_found("feed", &name, health),
            ),
        }
    })
    .await;
    match rendered {
        Ok((status, markup)) => html_or_error(status, Ok(markup.into_string())),
        Err(error) => html_or_error(StatusCode::OK, Err(error)),
    }
}

/// `GET /groups/{group}`.
pub async fn group(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let health = Health::of(&state);
    let topics: Vec<TopicView> = state
        .groups
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .iter()
        .filter(|view| view.group == name)
        .cloned()
        .collect();
    if topics.is_empty() {
        let markup = render::not_found("consumer group", &name, health);
        return (StatusCode::NOT_FOUND, Html(markup.into_string())).into_response();
    }
    let now_ms = state.clock.now_ms();
    Html(render::group(&name, &topics, now_ms, health).into_string()).into_response()
}

fn html_or_error(status: StatusCode, rendered: Result<String, tokio::task::JoinError>) -> Response {
    match rendered {
        Ok(page) => (status, Html(page)).into_response(),
        Err(error) => {
            tracing::error!(%error, "status page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "status page failed\n").into_response()
        }
    }
}

/// `never_seen` → `never seen`.
pub fn words(label: &str) -> String {
    label.replace('_', " ")
}

/// How a key reads on the page: an unsplit feed's one series has the empty key.
pub fn shown_key(key: &str) -> String {
    if key.is_empty() {
        "(whole feed)".to_owned()
    } else {
        key.to_owned()
    }
}

pub fn human_seconds(seconds: f64) -> String {
    crate::clock::human_duration_ms(seconds_to_ms(seconds))
}

fn seconds_to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0) as i64
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp_millis())
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved).
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests;
