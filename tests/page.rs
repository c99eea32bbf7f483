//! The status page in a real browser: freshwatch on librdkafka's mock cluster with three feeds
//! that end up critical, warning and ok and one watched consumer group; headless Chromium loads
//! the pages, and the test reads the DOM it built, as a person would read the screen.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{now_ms, produce_one, producer, require_binary, runtime, wait_until};
use freshwatch::clock::SystemClock;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scraper::{ElementRef, Html, Selector};
use tokio_util::sync::CancellationToken;

/// Headless Chromium, one profile directory per test run.
struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            binary: require_binary("chromium"),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[String]) -> std::process::Output {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(["--headless=new", "--no-sandbox", "--disable-gpu"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(args)
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("chromium answers within 60s")
            .expect("chromium runs")
    }

    /// The DOM after the page loaded.
    async fn dom(&self, url: &str) -> Html {
        let output = self.run(&["--dump-dom".to_owned(), url.to_owned()]).await;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && text.contains("</html>"),
            "chromium could not load {url}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Html::parse_document(&text)
    }

    async fn screenshot(&self, url: &str, path: &Path) {
        let output = self
            .run(&[
                format!("--screenshot={}", path.display()),
                "--window-size=1280,900".to_owned(),
                url.to_owned(),
            ])
            .await;
        assert!(
            output.status.success(),
            "chromium screenshot failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn select<'a>(html: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    html.select(&Selector::parse(css).unwrap()).collect()
}

/// The text a person reads in an element, whitespace collapsed.
fn text(element: &ElementRef) -> String {
    element
        .text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn cell(row: &ElementRef, css: &str) -> String {
    row.select(&Selector::parse(css).unwrap())
        .next()
        .map(|element| text(&element))
        .unwrap_or_else(|| panic!("no {css} in row {}", text(row)))
}

/// (name, status label) of each front-page row, top to bottom.
fn overview(html: &Html) -> Vec<(String, String)> {
    select(html, "#overview tbody tr")
        .iter()
        .map(|row| (cell(row, "td.name"), cell(row, "td.status")))
        .collect()
}

/// The count shown next to a status at the top.
fn count(html: &Html, status: &str) -> String {
    let item = select(html, &format!("#counts li[data-status={status}]"));
    let item = item
        .first()
        .unwrap_or_else(|| panic!("no count for {status}"));
    cell(item, ".count")
}

/// (at, key, from, to) of each row of a feed page's last transitions, newest first.
fn transitions(html: &Html) -> Vec<[String; 4]> {
    select(html, "#history tbody tr")
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .select(&Selector::parse("td").unwrap())
                .map(|cell| text(&cell))
                .collect();
            let at = row
                .select(&Selector::parse("time").unwrap())
                .next()
                .and_then(|time| time.value().attr("datetime"))
                .unwrap_or_default()
                .to_owned();
            [at, cells[1].clone(), cells[2].clone(), cells[3].clone()]
        })
        .collect()
}

/// The watched application: reads `upstream` to its end and commits.
fn commit_everything(brokers: &str, records: i64) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "feeder")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("upstream", 0, Offset::Offset(records))
        .unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
    consumer
}

#[test]
fn the_status_page_shows_feeds_stalest_first_with_labels_counts_filters_and_a_feed_page() {
    let browser = Browser::new();
    let cluster = MockCluster::new(1).expect("librdkafka mock cluster");
    for topic in ["billing", "clicks", "payments", "upstream"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let state = tempfile::tempdir().unwrap();
    let screenshots = tempfile::tempdir().unwrap();
    let producer = producer(&brokers);
    // Alphabetical order is the reverse of the stalest-first order the page must show.
    let minute_ago = now_ms() - 60_000;
    produce_one(&producer, "payments", "eu", minute_ago);
    produce_one(&producer, "payments", "us", minute_ago + 30_000);
    produce_one(&producer, "clicks", "", minute_ago);
    produce_one(&producer, "billing", "", now_ms());
    for _ in 0..3 {
        produce_one(&producer, "upstream", "", now_ms());
    }
    let _feeder = commit_everything(&brokers, 3);
    runtime().block_on(async {
        let config_text = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-page-test"
groups_interval = "300ms"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"topic.metadata.refresh.interval.ms" = "1000"

[state]
path = "{}"
flush_interval = "200ms"

[http]
listen = "127.0.0.1:0"

[evaluation]
interval = "300ms"
blind_after = "1h"

[[feed]]
name = "payments"
topic = "payments"
split_by = "key"
warn_after = "5s"
critical_after = "8s"

[[feed]]
name = "clicks"
topic = "clicks"
warn_after = "5s"
critical_after = "1h"

[[feed]]
name = "billing"
topic = "billing"
warn_after = "1h"
critical_after = "2h"

[[group]]
group_id = "feeder"
topics = ["upstream"]
warn_after = "1h"
critical_after = "2h"

[[pipeline]]
name = "clickstream"
hops = ["clicks", "payments"]

[[pipeline]]
name = "ledger"
hops = ["billing", "group:feeder"]
"#,
            state.path().display()
        );
        let config = freshwatch::config::parse(&config_text, Path::new("page.toml"), &|_| None)
            .unwrap_or_else(|error| panic!("test config invalid: {error}"));
        let shutdown = CancellationToken::new();
        let running = freshwatch::app::start(config, Arc::new(SystemClock), shutdown.clone())
            .await
            .expect("freshwatch starts");
        let base = format!("http://{}", running.http_address);

        wait_until(
            "payments critical, clicks warning, billing ok, feeder watched",
            Duration::from_secs(60),
            || async {
                let Ok(response) = reqwest::get(format!("{base}/api/v1/feeds")).await else {
                    return false;
                };
                let rows: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
                let status = |feed: &str, key: &str| {
                    rows.iter()
                        .find(|row| row["feed"] == feed && row["key"] == key)
                        .map(|row| row["status"].as_str().unwrap_or_default().to_owned())
                };
                let groups: Vec<serde_json::Value> =
                    match reqwest::get(format!("{base}/api/v1/groups")).await {
                        Ok(response) => response.json().await.unwrap_or_default(),
                        Err(_) => Vec::new(),
                    };
                status("payments", "eu").as_deref() == Some("critical")
                    && status("payments", "us").as_deref() == Some("critical")
                    && status("clicks", "").as_deref() == Some("warning")
                    && status("billing", "").as_deref() == Some("ok")
                    && groups.iter().any(|group| group["status"] == "ok")
            },
        )
        .await;

        // The front page: stalest first, every status in words, counts at the top.
        let front = browser.dom(&format!("{base}/")).await;
        assert_eq!(
            overview(&front),
            [
                ("payments".to_owned(), "critical".to_owned()),
                ("clicks".to_owned(), "warning".to_owned()),
                ("billing".to_owned(), "ok".to_owned()),
                ("feeder".to_owned(), "ok".to_owned()),
            ],
            "front page rows"
        );
        assert_eq!(count(&front, "critical"), "1");
        assert_eq!(count(&front, "warning"), "1");
        assert_eq!(count(&front, "ok"), "2");
        assert_eq!(count(&front, "never_seen"), "0");
        let payments = &select(&front, "#overview tbody tr")[0];
        assert_eq!(cell(payments, "td.kind"), "feed");
        assert!(
            cell(payments, "td.detail").contains("2 keys (2 critical)"),
            "{}",
            cell(payments, "td.detail")
        );
        let staleness = cell(payments, "td.staleness");
        assert!(
            staleness.ends_with('s') && staleness.starts_with('1'),
            "payments' stalest key is over a minute old: {staleness}"
        );
        let health = text(&select(&front, ".health")[0]);
        assert!(
            health.contains("Source: reachable")
                && health.contains("State store: up")
                && health.contains("Leader: this replica"),
            "{health}"
        );
        assert!(
            select(&front, "form#filters[method=get] select[name=status]").len() == 1
                && select(&front, "form#filters input[name=q]").len() == 1,
            "a plain GET form filters"
        );

        // Each pipeline as a chain: the broken hop marked, the hop behind it held by it.
        let chains: Vec<(String, String, String)> = select(&front, "div.pipeline")
            .iter()
            .map(|pipeline| {
                let value = |name: &str| pipeline.value().attr(name).unwrap_or("").to_owned();
                (
                    value("data-pipeline"),
                    value("data-status"),
                    cell(pipeline, "h3"),
                )
            })
            .collect();
        assert_eq!(chains.len(), 2, "{chains:?}");
        assert_eq!(chains[0].0, "clickstream");
        assert_eq!(chains[0].1, "broken");
        assert!(chains[0].2.contains("broken at clicks"), "{chains:?}");
        assert_eq!(
            (chains[1].0.as_str(), chains[1].1.as_str()),
            ("ledger", "ok")
        );
        assert!(chains[1].2.contains("flowing"), "{chains:?}");
        let hops: Vec<(String, String, String, String)> =
            select(&front, "div.pipeline[data-pipeline=clickstream] li.hop")
                .iter()
                .map(|hop| {
                    let value = |name: &str| hop.value().attr(name).unwrap_or("").to_owned();
                    (
                        value("data-hop"),
                        value("data-status"),
                        value("data-held-by"),
                        text(hop),
                    )
                })
                .collect();
        assert_eq!(hops.len(), 2, "{hops:?}");
        assert_eq!(
            (hops[0].0.as_str(), hops[0].1.as_str()),
            ("clicks", "warning")
        );
        assert!(hops[0].3.contains("broken here"), "{hops:?}");
        assert_eq!(
            (hops[1].0.as_str(), hops[1].1.as_str(), hops[1].2.as_str()),
            ("payments", "critical", "clicks")
        );
        assert!(hops[1].3.contains("held by clicks"), "{hops:?}");
        assert_eq!(
            select(&front, "div.pipeline li.hop.broken").len(),
            1,
            "only the broken hop is outlined"
        );
        let ledger_hops: Vec<String> = select(&front, "div.pipeline[data-pipeline=ledger] li.hop")
            .iter()
            .map(|hop| hop.value().attr("data-status").unwrap_or("").to_owned())
            .collect();
        assert_eq!(ledger_hops, ["ok", "ok"]);
        // clicks' newest record is as old as payments' oldest key's: payments trails by 0s.
        let delay: Vec<&str> = select(&front, "div.pipeline[data-pipeline=clickstream] .delay")
            .iter()
            .filter_map(|delay| delay.value().attr("data-delay"))
            .collect();
        assert_eq!(delay, ["0"]);
        let api: Vec<serde_json::Value> = reqwest::get(format!("{base}/api/v1/pipelines"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(api[0]["name"], "clickstream");
        assert_eq!(api[0]["broken_at"], "clicks");
        assert_eq!(api[0]["hops"][1]["held_by"], "clicks");
        assert_eq!(api[0]["hops"][1]["stale_keys"], 2);
        assert_eq!(api[0]["delays"][0]["from"], "clicks");
        assert_eq!(api[0]["delays"][0]["seconds"], 0.0);
        assert_eq!(api[1]["hops"][1]["hop"], "group:feeder");
        assert_eq!(api[1]["hops"][1]["held_by"], serde_json::Value::Null);

        // A filtered URL, as the form submits it.
        let warning = browser.dom(&format!("{base}/?status=warning&q=")).await;
        assert_eq!(
            overview(&warning),
            [("clicks".to_owned(), "warning".to_owned())]
        );
        assert_eq!(count(&warning, "critical"), "1", "counts stay unfiltered");
        let by_name = browser.dom(&format!("{base}/?q=PAY")).await;
        assert_eq!(
            overview(&by_name),
            [("payments".to_owned(), "critical".to_owned())]
        );

        // A feed's own page: its keys, stalest first, with the thresholds and transitions.
        let feed = browser.dom(&format!("{base}/feeds/payments")).await;
        assert_eq!(text(&select(&feed, "#warn-after")[0]), "5s");
        assert_eq!(text(&select(&feed, "#critical-after")[0]), "8s");
        let keys: Vec<(String, String, String, String)> = select(&feed, "#keys tbody tr")
            .iter()
            .map(|row| {
                (
                    cell(row, "td.key"),
                    cell(row, "td.status"),
                    cell(row, "td.warn-after"),
                    cell(row, "td.critical-after"),
                )
            })
            .collect();
        let expected = |key: &str| {
            (
                key.to_owned(),
                "critical".to_owned(),
                "5s".to_owned(),
                "8s".to_owned(),
            )
        };
        assert_eq!(keys, [expected("eu"), expected("us")]);
        assert!(
            text(&select(&feed, "#total")[0]).starts_with("Keys 1–2 of 2"),
            "{}",
            text(&select(&feed, "#total")[0])
        );
        let history = transitions(&feed);
        assert!(
            history
                .iter()
                .any(|[_, key, _, to]| key == "eu" && to == "critical")
                && history
                    .iter()
                    .any(|[_, key, _, to]| key == "us" && to == "critical"),
            "the feed page lists its last transitions: {history:?}"
        );
        let missing = reqwest::get(format!("{base}/feeds/no-such-feed"))
            .await
            .unwrap();
        assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
        assert!(missing.text().await.unwrap().contains("No feed named"));

        // A consumer group's page: per partition, the committed offset and the lag.
        let group = browser.dom(&format!("{base}/groups/feeder")).await;
        let partitions: Vec<String> = select(&group, "table.partitions tbody tr td")
            .iter()
            .take(4)
            .map(|cell| text(cell))
            .collect();
        assert_eq!(
            partitions,
            ["0", "3", "3", "0"],
            "partition, committed, high, lag"
        );

        // JSON clients still get the index.
        let index: serde_json::Value = reqwest::Client::new()
            .get(format!("{base}/"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(index["name"], "freshwatch");

        let screenshot = screenshots.path().join("page.png");
        browser.screenshot(&format!("{base}/"), &screenshot).await;
        let size = std::fs::metadata(&screenshot).map_or(0, |meta| meta.len());
        assert!(
            size > 10_000,
            "screenshot {} is {size} bytes",
            screenshot.display()
        );
        println!(
            "status page screenshot: {} ({size} bytes)",
            screenshot.display()
        );
        // Kept for a person to look at when the test is run with --nocapture.
        let _kept = screenshots.keep();

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), running.wait())
            .await
            .expect("freshwatch stops")
            .expect("no source thread died");

        // The transitions survive a restart: read back from the state store, not seen again.
        let config =
            freshwatch::config::parse(&config_text, Path::new("page.toml"), &|_| None).unwrap();
        let shutdown = CancellationToken::new();
        let running = freshwatch::app::start(config, Arc::new(SystemClock), shutdown.clone())
            .await
            .expect("freshwatch restarts");
        let page = reqwest::get(format!("http://{}/feeds/payments", running.http_address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let restarted = Html::parse_document(&page);
        assert_eq!(transitions(&restarted), history, "history after a restart");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), running.wait())
            .await
            .expect("freshwatch stops")
            .expect("no source thread died");
    });
}
