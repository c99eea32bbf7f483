//! The status page's markup (maud). Every status shows as a coloured badge that also says it in
//! words, so nothing depends on colour alone.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{
    encode, human_seconds, shown_key, words, FeedPage, Filters, Front, Health, Kind, LABELS,
};
use crate::clock::{human_duration_ms, rfc3339};
use crate::groups::TopicView;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1b1f24; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline;
  border-bottom: 1px solid #d0d7de; padding: .75rem 0; }
header h1 { font-size: 1.2rem; margin: 0; }
header h1 a { color: inherit; text-decoration: none; }
.health span { margin-right: 1rem; }
.up { color: #116329; } .down { color: #b3261e; font-weight: 600; }
.refresh { margin-left: auto; color: #57606a; }
table { border-collapse: collapse; width: 100%; margin: .75rem 0; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; min-width: 6.5em; text-align: center; border-radius: 3px;
  padding: 0 .4em; font-weight: 600; border: 1px solid transparent; }
.badge.never_seen { background: #5c1a8a; color: #fff; }
.badge.critical { background: #b3261e; color: #fff; }
.badge.warning { background: #f2b01e; color: #1b1f24; }
.badge.stalled { background: #e36209; color: #fff; }
.badge.unknown { background: #e1e4e8; color: #1b1f24; border-color: #8c959f; }
.badge.ok { background: #1f883d; color: #fff; }
tr.critical td:first-child, tr.never_seen td:first-child { box-shadow: inset 4px 0 #b3261e; }
tr.warning td:first-child, tr.stalled td:first-child { box-shadow: inset 4px 0 #f2b01e; }
#counts { display: flex; flex-wrap: wrap; gap: .5rem; list-style: none; padding: 0; margin: .75rem 0; }
#counts a { text-decoration: none; color: inherit; }
#counts .count { font-weight: 700; margin-left: .3em; }
form { margin: .5rem 0; display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; }
.muted { color: #57606a; }
nav.pages a, nav.pages strong { margin-right: .5rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
ol.chain { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem; list-style: none;
  padding: 0; margin: .4rem 0 1rem; }
ol.chain li.hop { border: 1px solid #d0d7de; border-radius: 4px; padding: .3rem .5rem; }
ol.chain li.hop.broken { border: 2px solid #b3261e; }
ol.chain li.link { color: #57606a; }
"#;

/// Reloads every 10 s while the box is ticked; the choice is remembered in this browser.
const REFRESH_SCRIPT: &str = r#"
(function () {
  var box = document.getElementById('auto-refresh');
  if (!box) return;
  try { if (localStorage.getItem('freshwatch.refresh') === 'off') box.checked = false; } catch (e) {}
  box.addEventListener('change', function () {
    try { localStorage.setItem('freshwatch.refresh', box.checked ? 'on' : 'off'); } catch (e) {}
  });
  setInterval(function () { if (box.checked) location.reload(); }, 10000);
})();
"#;

fn layout(title: &str, health: Health, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · freshwatch" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { a href="/" { "freshwatch" } }
                    (health_line(&health))
                    label.refresh {
                        input #auto-refresh type="checkbox" checked;
                        " refresh every 10 s"
                    }
                }
                main { (body) }
                script { (PreEscaped(REFRESH_SCRIPT)) }
            }
        }
    }
}

fn health_line(health: &Health) -> Markup {
    let part = |id: &str, what: &str, good: bool, yes: &str, no: &str| {
        html! {
            span #(id) {
                (what) ": "
                span class=(if good { "up" } else { "down" }) { (if good { yes } else { no }) }
            }
        }
    };
    html! {
        div.health {
            @if health.clusters.is_empty() {
                (part("health-source", "Source", health.source_reachable, "reachable", "unreachable"))
            } @else {
                @for (name, reachable) in &health.clusters {
                    (part(&format!("health-source-{name}"), &format!("Cluster {name}"), *reachable, "reachable", "unreachable"))
                }
            }
            (part("health-state", "State store", health.state_store_up, "up", "down"))
            (part("health-leader", "Leader", health.leader, "this replica", "another replica (standing by)"))
        }
    }
}

fn badge(label: &str) -> Markup {
    html! { span class={ "badge " (label) } { (words(label)) } }
}

/// "2h 5m ago" next to the time itself.
fn when(at_ms: Option<i64>, now_ms: i64) -> Markup {
    match at_ms {
        Some(at_ms) => html! {
            time datetime=(rfc3339(at_ms)) title=(rfc3339(at_ms)) {
                (rfc3339(at_ms)) " "
                span.muted { "(" (human_duration_ms(now_ms - at_ms)) " ago)" }
            }
        },
        None => html! { span.muted { "never" } },
    }
}

fn staleness(staleness_ms: Option<i64>, none: &str) -> Markup {
    match staleness_ms {
        Some(millis) => html! { (human_duration_ms(millis)) },
        None => html! { span.muted { (none) } },
    }
}

/// The filter form: a status choice and a name search, sent as a GET.
fn filter_form(filters: &Filters, labels: &[&str], search: &str) -> Markup {
    let chosen = filters.status().unwrap_or("");
    html! {
        form #filters method="get" {
            label {
                "Status "
                select name="status" {
                    option value="" selected[chosen.is_empty()] { "all" }
                    @for label in labels {
                        option value=(label) selected[chosen == *label] { (words(label)) }
                    }
                }
            }
            label {
                (search) " "
                input type="search" name="q" value=(filters.query().unwrap_or("")) placeholder="contains…";
            }
            button type="submit" { "Filter" }
            @if filters.status().is_some() || filters.query().is_some() {
                a href="?" { "clear" }
            }
        }
    }
}

fn counts(counts: &[(&'static str, usize)]) -> Markup {
    html! {
        ul #counts {
            @for (label, count) in counts {
                li data-status=(label) {
                    a href={ "?status=" (label) } title={ "only " (words(label)) } {
                        (badge(label)) span.count { (count) }
                    }
                }
            }
        }
    }
}

pub fn front(front: &Front, filters: &Filters, health: Health) -> Markup {
    let body = html! {
        (counts(&front.counts))
        (filter_form(filters, &LABELS, "Name"))
        @if front.rows.is_empty() {
            p #empty.muted { "Nothing matches." }
        } @else {
            table #overview {
                thead { tr {
                    th { "Status" } th { "Name" } th { "Kind" } th { "Staleness" }
                    th { "Last seen" } th { "Details" }
                } }
                tbody {
                    @for row in &front.rows {
                        @let (kind, href) = match row.kind {
                            Kind::Feed => ("feed", format!("/feeds/{}", encode(&row.name))),
                            Kind::Group => ("consumer group", format!("/groups/{}", encode(&row.name))),
                        };
                        tr class=(row.shown.label) data-status=(row.shown.label) data-name=(row.name) {
                            td.status { (badge(row.shown.label)) }
                            td.name { a href=(href) { (row.name) } }
                            td.kind { (kind) }
                            td.staleness { (staleness(row.staleness_ms, "never seen")) }
                            td.last-seen { (when(row.last_seen_ms, front.now_ms)) }
                            td.detail.muted { (row.detail) }
                        }
                    }
                }
            }
        }
        (pipelines(&front.pipelines))
        (silences(&front.silences))
        p.muted {
            "Stalest first: status, then staleness. A feed shows its stalest key; a consumer group its "
            "largest lag and when its committed offset last moved. JSON: "
            a href="/api/v1/feeds" { "/api/v1/feeds" } ", " a href="/api/v1/groups" { "/api/v1/groups" } "."
        }
    };
    layout("Status", health, body)
}

/// Each pipeline as a chain of hops in data-flow order, each coloured by its status; the broken
/// hop (the one that pages) is outlined and says so, the hops it holds say by what, and the
/// links between feed hops show their delay.
fn pipelines(pipelines: &[crate::pipelines::PipelineView]) -> Markup {
    html! {
        @if !pipelines.is_empty() {
            h2 { "Pipelines" }
            section #pipelines {
                @for pipeline in pipelines {
                    div.pipeline data-pipeline=(pipeline.name) data-status=(pipeline.status) {
                        h3 {
                            (pipeline.name) " "
                            @if let Some(broken) = &pipeline.broken_at {
                                span.down { "broken at " (broken) }
                            } @else {
                                span.up { "flowing" }
                            }
                            @if let Some(freshness) = pipeline.freshness_seconds {
                                span.muted { " · end to end " (human_seconds(freshness)) " stale" }
                            }
                        }
                        ol.chain {
                            @for (index, hop) in pipeline.hops.iter().enumerate() {
                                @if index > 0 {
                                    li.link aria-hidden="true" {
                                        "→"
                                        @if let Some(delay) = pipeline.delays.iter().find(|delay| delay.to == hop.hop).and_then(|delay| delay.seconds) {
                                            " " span.delay data-delay=(delay) { "+" (human_seconds(delay)) }
                                        }
                                    }
                                }
                                @let broken = pipeline.broken_at.as_deref() == Some(hop.hop.as_str());
                                li.hop.broken[broken] data-hop=(hop.hop) data-status=(hop.status) data-held-by=[hop.held_by.as_deref()] {
                                    (badge(hop.status)) " "
                                    @if hop.kind == "group" {
                                        a href={ "/groups/" (encode(&hop.name)) } { "group " (hop.name) }
                                    } @else {
                                        a href={ "/feeds/" (encode(&hop.name)) } { (hop.name) }
                                    }
                                    @if broken { " " strong.down.broken-here { "broken here" } }
                                    @if let Some(cause) = &hop.held_by {
                                        " " span.muted.held { "held by " (cause) }
                                    }
                                    @if let (Some(keys), Some(stale)) = (hop.keys, hop.stale_keys) {
                                        @if keys > 1 && stale > 0 { " " span.muted { (stale) " of " (keys) " keys stale" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The silences in force or pending: what is hushed, until when, by whom and why.
fn silences(silences: &[crate::http::SilenceView]) -> Markup {
    html! {
        @if !silences.is_empty() {
            h2 { "Silences" }
            table #silences {
                thead { tr {
                    th { "State" } th { "Matches" } th { "Until" } th { "By" } th { "Why" } th { "Id" }
                } }
                tbody {
                    @for silence in silences {
                        tr data-silence=(silence.id) {
                            td { (silence.state) }
                            td {
                                @for (name, value) in [("feed", &silence.matchers.feed), ("key", &silence.matchers.key), ("group", &silence.matchers.group)] {
                                    @if let Some(value) = value { code { (name) "=" (value) } " " }
                                }
                            }
                            td { (silence.ends_at) }
                            td { (silence.created_by) }
                            td { (silence.comment) }
                            td.muted { (silence.id) }
                        }
                    }
                }
            }
        }
    }
}

fn page_link(page: &FeedPage, filters: &Filters, number: usize) -> String {
    let mut link = format!("?page={number}");
    if let Some(status) = filters.status() {
        link.push_str(&format!("&status={}", encode(status)));
    }
    if let Some(query) = filters.query() {
        link.push_str(&format!("&q={}", encode(query)));
    }
    debug_assert!(number >= 1 && number <= page.pages);
    link
}

fn pagination(page: &FeedPage, filters: &Filters) -> Markup {
    let first_row = (page.page - 1) * super::ROWS_PER_PAGE + 1;
    let last_row = (first_row + page.rows.len()).saturating_sub(1);
    let window = page.page.saturating_sub(3).max(1)..=(page.page + 3).min(page.pages);
    html! {
        nav.pages {
            span #total {
                @if page.matching == 0 { "No keys" } @else {
                    "Keys " (first_row) "–" (last_row) " of " (page.matching)
                }
                @if page.matching != page.keys { " (of " (page.keys) " in the feed)" }
                " · page " (page.page) " of " (page.pages) ": "
            }
            @if page.page > 1 {
                a href=(page_link(page, filters, 1)) { "« first" }
                a href=(page_link(page, filters, page.page - 1)) rel="prev" { "‹ previous" }
            }
            @for number in window {
                @if number == page.page { strong { (number) } }
                @else { a href=(page_link(page, filters, number)) { (number) } }
            }
            @if page.page < page.pages {
                a href=(page_link(page, filters, page.page + 1)) rel="next" { "next ›" }
                a href=(page_link(page, filters, page.pages)) { "last »" }
            }
        }
    }
}

pub fn feed(page: &FeedPage, filters: &Filters, health: Health) -> Markup {
    let warn = human_duration_ms(page.warn_after_ms);
    let critical = human_duration_ms(page.critical_after_ms);
    let labels: Vec<&str> = page.counts.iter().map(|(label, _)| *label).collect();
    let body = html! {
        h2 { "Feed " (page.name) }
        dl #thresholds {
            dt { "Topic" } dd { (page.topic) }
            dt { "Warning after" } dd #warn-after { (warn) }
            dt { "Critical after" } dd #critical-after { (critical) }
            @if page.hold_ms > 0 { dt { "Held for" } dd { (human_duration_ms(page.hold_ms)) } }
            dt { "Keys" } dd { (page.keys) }
        }
        (counts(&page.counts))
        (filter_form(filters, &labels, "Key"))
        (pagination(page, filters))
        table #keys {
            thead { tr {
                th { "Status" } th { "Key" } th { "Staleness" } th { "Last seen" }
                th { "Warn after" } th { "Critical after" } th.number { "Records" } th { "Status since" }
            } }
            tbody {
                @for series in &page.rows {
                    @let status = series.status.as_str();
                    tr class=(status) data-status=(status) data-key=(series.key) {
                        td.status { (badge(status)) }
                        td.key { (shown_key(&series.key)) }
                        td.staleness { (staleness(series.last_seen().map(|seen| (page.now_ms - seen).max(0)), "never seen")) }
                        td.last-seen { (when(series.last_seen(), page.now_ms)) }
                        td.warn-after { (warn) }
                        td.critical-after { (critical) }
                        td.number.records { (series.records) }
                        td.since { (when((series.status_since_ms > 0).then_some(series.status_since_ms), page.now_ms)) }
                    }
                }
            }
        }
        (pagination(page, filters))
        h3 { "Last transitions" }
        @if page.history.is_empty() {
            p #no-history.muted { "None recorded yet." }
        } @else {
            table #history {
                thead { tr { th { "At" } th { "Key" } th { "From" } th { "To" } th { "Staleness" } } }
                tbody {
                    @for transition in &page.history {
                        tr class=(transition.to) {
                            td { (when(Some(transition.at_ms), page.now_ms)) }
                            td { (shown_key(&transition.key)) }
                            td { (badge(&transition.from)) }
                            td { (badge(&transition.to)) }
                            td { (staleness(transition.staleness_ms, "never seen")) }
                        }
                    }
                }
            }
        }
    };
    layout(&format!("Feed {}", page.name), health, body)
}

pub fn group(name: &str, topics: &[TopicView], now_ms: i64, health: Health) -> Markup {
    let body = html! {
        h2 { "Consumer group " (name) }
        @if let Some(first) = topics.first() { p.muted { "group.id " code { (first.group_id) } } }
        @for topic in topics {
            section.topic data-topic=(topic.topic) {
                h3 { (badge(topic.status.as_str())) " topic " (topic.topic) }
                dl {
                    dt { "Lag" }
                    dd.lag {
                        (staleness(topic.lag_seconds.map(|seconds| (seconds * 1000.0) as i64), "unknown"))
                        ", " (topic.lag_records) " records"
                    }
                    dt { "Data loss" }
                    dd.loss {
                        @match (topic.loss_eta_seconds, &topic.expires_at) {
                            (Some(eta), Some(at)) => { "unread records expire in " strong { (human_seconds(eta)) } " (" (at) ")" }
                            _ => { span.muted { "no countdown (nothing unread expires, or retention unknown)" } }
                        }
                    }
                    @if topic.records_lost > 0 {
                        dt { "Lost" }
                        dd { strong { (topic.records_lost) " records expired unread" }
                            @if let (Some(from), Some(to)) = (&topic.lost_from, &topic.lost_to) { " (" (from) " – " (to) ")" } }
                    }
                    dt { "Committed offset last moved" }
                    dd.moved {
                        @match topic.committed_moved_at.as_deref().and_then(super::parse_rfc3339) {
                            Some(at_ms) => { (when(Some(at_ms), now_ms)) }
                            None => { span.muted { "not yet seen" } }
                        }
                    }
                    dt { "Members" }
                    dd { @match topic.members { Some(members) => { (members) } None => { span.muted { "unknown" } } } }
                    dt { "Retention" }
                    dd { @match topic.retention_seconds { Some(seconds) => { (human_seconds(seconds)) } None => { span.muted { "none by time, or unknown" } } } }
                }
                table.partitions {
                    thead { tr {
                        th.number { "Partition" } th.number { "Committed" } th.number { "High watermark" }
                        th.number { "Lag (records)" } th { "Lag (time)" } th { "Committed offset moved" }
                    } }
                    tbody {
                        @for partition in &topic.partitions {
                            tr class=(if topic.partitions_lost.contains(&partition.partition) { "critical" } else { "" }) {
                                td.number { (partition.partition) }
                                td.number { (partition.committed) }
                                td.number { (partition.high) }
                                td.number { (partition.lag_records) }
                                td { (staleness(partition.lag_seconds.map(|seconds| (seconds * 1000.0) as i64), "unknown")) }
                                td { (when(super::parse_rfc3339(&partition.committed_moved_at), now_ms)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&format!("Group {name}"), health, body)
}

pub fn not_found(what: &str, name: &str, health: Health) -> Markup {
    let body = html! {
        h2 #not-found { "No " (what) " named “" (name) "”" }
        p { a href="/" { "Back to every feed and group" } }
    };
    layout("Not found", health, body)
}
