//! `freshwatch status`: a table of a running instance's feeds, stalest first, then its watched
//! consumer groups, worst first. With several Kafka clusters, one such section per cluster.

use crate::http::{stalest_first, FeedRow};

pub use crate::api_client::ApiError as StatusError;

/// One row of `/api/v1/groups`, as the CLI shows it.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
pub struct GroupRow {
    pub group: String,
    pub topic: String,
    pub status: String,
    pub lag_seconds: Option<f64>,
    pub lag_records: i64,
    pub loss_eta_seconds: Option<f64>,
    pub records_lost: u64,
}

/// One Kafka cluster of `/api/v1/source`, as the CLI groups by it.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Default)]
pub struct ClusterRow {
    pub name: String,
    pub reachable: bool,
    #[serde(default)]
    pub feeds: Vec<String>,
    /// `[[group]]` names (a `group_regex`'s pattern).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct SourceView {
    #[serde(default)]
    clusters: Vec<ClusterRow>,
}

/// Fetches the clusters from `/api/v1/source` (none from a freshwatch that predates them).
pub async fn fetch_clusters(
    base_url: &str,
    token: Option<&str>,
) -> Result<Vec<ClusterRow>, StatusError> {
    let view: SourceView = get_json(base_url, "/api/v1/source", token).await?;
    Ok(view.clusters)
}

/// The whole `freshwatch status` output: feeds then groups, as one section, or with several
/// clusters one section per cluster (groups a cluster's names do not claim come last).
pub fn render(feeds: &[FeedRow], groups: &[GroupRow], clusters: &[ClusterRow]) -> String {
    let section = |feeds: &[FeedRow], groups: &[GroupRow]| {
        let mut text = render_table(feeds);
        if !groups.is_empty() {
            text.push('\n');
            text.push_str(&render_groups(groups));
        }
        text
    };
    if clusters.len() <= 1 {
        return section(feeds, groups);
    }
    let claims = |cluster: &ClusterRow, group: &str| {
        cluster.groups.iter().any(|name| {
            name == group || regex::Regex::new(name).is_ok_and(|pattern| pattern.is_match(group))
        })
    };
    let mut text = String::new();
    for cluster in clusters {
        let reachable = if cluster.reachable {
            "reachable"
        } else {
            "unreachable"
        };
        text.push_str(&format!(
            "cluster {} ({reachable})\n",
            printable(&cluster.name)
        ));
        let cluster_feeds: Vec<FeedRow> = feeds
            .iter()
            .filter(|row| cluster.feeds.contains(&row.feed))
            .cloned()
            .collect();
        let cluster_groups: Vec<GroupRow> = groups
            .iter()
            .filter(|row| claims(cluster, &row.group))
            .cloned()
            .collect();
        text.push_str(&section(&cluster_feeds, &cluster_groups));
        text.push('\n');
    }
    let unclaimed: Vec<GroupRow> = groups
        .iter()
        .filter(|row| !clusters.iter().any(|cluster| claims(cluster, &row.group)))
        .cloned()
        .collect();
    if !unclaimed.is_empty() {
        text.push_str(&render_groups(&unclaimed));
    }
    text
}

/// Fetches `/api/v1/feeds` from `base_url`.
pub async fn fetch(base_url: &str, token: Option<&str>) -> Result<Vec<FeedRow>, StatusError> {
    let mut rows: Vec<FeedRow> = get_json(base_url, "/api/v1/feeds", token).await?;
    rows.sort_by(stalest_first);
    Ok(rows)
}

/// Fetches `/api/v1/groups` from `base_url` (already worst first).
pub async fn fetch_groups(
    base_url: &str,
    token: Option<&str>,
) -> Result<Vec<GroupRow>, StatusError> {
    get_json(base_url, "/api/v1/groups", token).await
}

async fn get_json<T: serde::de::DeserializeOwned>(
    base_url: &str,
    path: &str,
    token: Option<&str>,
) -> Result<T, StatusError> {
    crate::api_client::call(reqwest::Method::GET, base_url, path, token, None).await
}

/// Renders group rows as an aligned text table.
pub fn render_groups(rows: &[GroupRow]) -> String {
    let human = |seconds: Option<f64>, none: &str| {
        seconds
            .map(|seconds| crate::clock::human_duration_ms((seconds * 1000.0) as i64))
            .unwrap_or_else(|| none.to_owned())
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                printable(&row.group),
                printable(&row.topic),
                row.status.clone(),
                human(row.lag_seconds, "-"),
                row.lag_records.to_string(),
                human(row.loss_eta_seconds, "-"),
                row.records_lost.to_string(),
            ]
        })
        .collect();
    align(
        &[
            "GROUP",
            "TOPIC",
            "STATUS",
            "LAG",
            "RECORDS BEHIND",
            "LOSS IN",
            "LOST",
        ],
        &cells,
    )
}

/// Record-derived text for a terminal: control characters (ANSI escapes, newlines) escaped.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
}

/// Renders rows as an aligned text table.
pub fn render_table(rows: &[FeedRow]) -> String {
    let header = ["FEED", "KEY", "STATUS", "STALENESS", "LAST SEEN", "RECORDS"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                printable(&row.feed),
                if row.key.is_empty() {
                    "-".to_owned()
                } else {
                    printable(&row.key)
                },
                row.status.clone(),
                row.staleness_seconds
                    .map(|seconds| crate::clock::human_duration_ms((seconds * 1000.0) as i64))
                    .unwrap_or_else(|| "never".to_owned()),
                row.last_seen.clone().unwrap_or_else(|| "-".to_owned()),
                row.records.to_string(),
            ]
        })
        .collect();
    align(&header, &cells)
}

/// Columns padded to their widest cell, two spaces apart.
fn align(header: &[&str], cells: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    let mut push_line = |values: &[&str]| {
        let line: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(value, &width)| format!("{value:<width$}"))
            .collect();
        table.push_str(line.join("  ").trim_end());
        table.push('\n');
    };
    push_line(header);
    for row in cells {
        let values: Vec<&str> = row.iter().map(String::as_str).collect();
        push_line(&values);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_several_clusters_each_has_its_own_section_with_its_feeds_and_groups() {
        let feeds = [
            row("orders", "", "ok", Some(1.0)),
            row("orders-dr", "", "unknown", Some(30.0)),
        ];
        let group = |name: &str| GroupRow {
            group: name.to_owned(),
            topic: "t".to_owned(),
            status: "ok".to_owned(),
            lag_seconds: None,
            lag_records: 0,
            loss_eta_seconds: None,
            records_lost: 0,
        };
        let groups = [group("billing"), group("mm2-eu"), group("stray")];
        let clusters = [
            ClusterRow {
                name: "eu".into(),
                reachable: true,
                feeds: vec!["orders".into()],
                groups: vec!["billing".into()],
            },
            ClusterRow {
                name: "dr".into(),
                reachable: false,
                feeds: vec!["orders-dr".into()],
                groups: vec!["^mm2-".into()],
            },
        ];
        let text = render(&feeds, &groups, &clusters);
        let eu = text.find("cluster eu (reachable)").expect(&text);
        let dr = text.find("cluster dr (unreachable)").expect(&text);
        let orders = text.find("orders  ").expect(&text);
        let orders_dr = text.find("orders-dr").expect(&text);
        assert!(eu < orders && orders < dr && dr < orders_dr, "{text}");
        assert!(text.find("billing").unwrap() < dr, "{text}");
        assert!(text.find("mm2-eu").unwrap() > dr, "{text}");
        assert!(
            text.rfind("stray").unwrap() > text.find("mm2-eu").unwrap(),
            "{text}"
        );
        let single = render(&feeds, &groups, &clusters[..1]);
        assert_eq!(single, render(&feeds, &groups, &[]));
        assert!(!single.contains("cluster "), "{single}");
    }

    fn row(feed: &str, key: &str, status: &str, staleness: Option<f64>) -> FeedRow {
        FeedRow {
            feed: feed.into(),
            key: key.into(),
            status: status.into(),
            last_seen: staleness.map(|_| "2025-11-24T00:00:00.000Z".into()),
            staleness_seconds: staleness,
            warn_after_seconds: 60.0,
            critical_after_seconds: 120.0,
            threshold_source: "fixed".into(),
            records: 3,
            topic: "t".into(),
            status_since: None,
            silenced_by: None,
            held_by: None,
        }
    }

    #[test]
    fn stalest_rows_come_first_and_columns_align() {
        let mut rows = vec![
            row("orders", "", "ok", Some(5.0)),
            row("profiles", "acme", "critical", Some(864_000.0)),
            row("profiles", "initech", "never_seen", None),
            row("payments", "", "warning", Some(90.0)),
        ];
        rows.sort_by(stalest_first);
        let order: Vec<&str> = rows.iter().map(|row| row.status.as_str()).collect();
        assert_eq!(order, ["never_seen", "critical", "warning", "ok"]);
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("FEED"));
        assert!(lines[2].contains("10d 0h"), "{table}");
        assert!(lines[1].contains("never"), "{table}");
        let status_column = lines[0].find("STATUS").unwrap();
        assert_eq!(&lines[2][status_column..status_column + 8], "critical");
    }

    #[test]
    fn groups_follow_with_lag_in_words_and_record_data_cannot_drive_the_terminal() {
        let groups = [GroupRow {
            group: "cdp-feeder".into(),
            topic: "upstream".into(),
            status: "critical".into(),
            lag_seconds: Some(7_200.0),
            lag_records: 5_000,
            loss_eta_seconds: Some(82_800.0),
            records_lost: 0,
        }];
        let table = render_groups(&groups);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("GROUP"));
        assert!(
            lines[1].contains("2h 0m") && lines[1].contains("23h 0m"),
            "{table}"
        );
        let hostile = [row("profiles", "\u{1b}[2J\nforged", "ok", Some(1.0))];
        let table = render_table(&hostile);
        assert!(!table.contains('\u{1b}'), "{table:?}");
        assert_eq!(table.lines().count(), 2, "no forged line: {table:?}");
    }
}
