//! `freshwatch status`: a table of a running instance's feeds, stalest first.

use crate::http::{stalest_first, FeedRow};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach freshwatch at {url}: {error}")]
    Unreachable { url: String, error: reqwest::Error },
    #[error("{url} answered HTTP {status}")]
    Http {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url} answered something that is not a feed list: {error}")]
    Body { url: String, error: reqwest::Error },
}

/// Fetches `/api/v1/feeds` from `base_url`.
pub async fn fetch(base_url: &str) -> Result<Vec<FeedRow>, StatusError> {
    let url = format!("{}/api/v1/feeds", base_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|error| StatusError::Unreachable {
            url: url.clone(),
            error,
        })?;
    if !response.status().is_success() {
        return Err(StatusError::Http {
            url,
            status: response.status(),
        });
    }
    let mut rows: Vec<FeedRow> = response
        .json()
        .await
        .map_err(|error| StatusError::Body { url, error })?;
    rows.sort_by(stalest_first);
    Ok(rows)
}

/// Renders rows as an aligned text table.
pub fn render_table(rows: &[FeedRow]) -> String {
    let header = ["FEED", "KEY", "STATUS", "STALENESS", "LAST SEEN", "RECORDS"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.feed.clone(),
                if row.key.is_empty() {
                    "-".to_owned()
                } else {
                    row.key.clone()
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
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    let mut push_line = |values: &[&str]| {
        let line: Vec<String> = values
            .iter()
            .zip(widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect();
        table.push_str(line.join("  ").trim_end());
        table.push('\n');
    };
    push_line(&header);
    for row in &cells {
        let values: Vec<&str> = row.iter().map(String::as_str).collect();
        push_line(&values);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(feed: &str, key: &str, status: &str, staleness: Option<f64>) -> FeedRow {
        FeedRow {
            feed: feed.into(),
            key: key.into(),
            status: status.into(),
            last_seen: staleness.map(|_| "2025-11-24T00:00:00.000Z".into()),
            staleness_seconds: staleness,
            warn_after_seconds: 60.0,
            critical_after_seconds: 120.0,
            records: 3,
            topic: "t".into(),
            status_since: None,
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
}
