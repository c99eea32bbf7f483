//! `kill -9` and restart: every series comes back with its last-seen, so a feed silent for ten
//! days before the restart is still ten days stale after it. The restart uses a new consumer
//! group starting at `latest`, so nothing can be re-learned from Kafka: only the state store
//! can bring the clocks back. A learned feed's cadence summaries come back the same way: a
//! series that learned its thresholds before the restart is judged by them after it, and a feed
//! that learns by hour gets its hours back: without them its hour would be warming up again.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, freshwatch_bin, wait_until, RedisServer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;

fn write_config(path: &Path, brokers: &str, port: u16, group: &str, start: &str, state: &str) {
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
start = "{start}"
[kafka.properties]
"fetch.wait.max.ms" = "50"

[state]
{state}
flush_interval = "100ms"

[http]
listen = "127.0.0.1:{port}"

[evaluation]
interval = "200ms"
# Seconds-long thresholds: FreshwatchFeedBlind is tests/knowing.rs' subject, not these.
blind_after = "1h"

[[feed]]
name = "profiles"
topic = "profiles"
split_by = "key"
warn_after = "30m"
critical_after = "2h"
expected = ["initech"]

[[feed]]
name = "orders"
topic = "orders"
warn_after = "30m"
critical_after = "2h"

[[feed]]
name = "cadence"
topic = "cadence"
split_by = "key"
warn_after = "30m"
critical_after = "2h"
thresholds = "learned"
learn_min_gaps = 3
learn_min_span = "5s"
warn_after_min = "10m"
critical_after_min = "20m"

[[feed]]
name = "ticker"
topic = "ticker"
warn_after = "30m"
critical_after = "2h"
thresholds = "learned"
learn_by_hour = true
learn_timezone = "Europe/Berlin"
learn_min_gaps = 3
learn_min_span = "5s"
warn_after_min = "10m"
critical_after_min = "20m"
"#
    );
    std::fs::write(path, text).unwrap();
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    Command::new(freshwatch_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("freshwatch starts")
}

async fn rows(port: u16) -> Option<Vec<Value>> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/feeds"))
        .await
        .ok()?;
    response.json().await.ok()
}

fn find<'a>(rows: &'a [Value], feed: &str, key: &str) -> &'a Value {
    rows.iter()
        .find(|row| row["feed"] == feed && row["key"] == key)
        .unwrap_or_else(|| panic!("no {feed}/{key} in {rows:#?}"))
}

fn restart_keeps_every_staleness_clock(state: &str) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 3, 1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("cadence", 1, 1).unwrap();
    cluster.create_topic("ticker", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    // The ticker's gaps and the judging after the restart must fall in one hour (Berlin's hours
    // start on UTC's).
    let into_hour_ms = chrono::Utc::now().timestamp_millis().rem_euclid(3_600_000);
    if !(15_000..3_480_000).contains(&into_hour_ms) {
        std::thread::sleep(Duration::from_millis(
            (3_615_000 - into_hour_ms).rem_euclid(3_600_000) as u64,
        ));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let ten_days_ago = now - 10 * DAY_MS;
    let an_hour_ago = now - 3_600_000;
    for (key, at) in [("acme", ten_days_ago), ("globex", an_hour_ago)] {
        producer
            .send(
                BaseRecord::to("profiles")
                    .key(key)
                    .payload("{}")
                    .timestamp(at),
            )
            .unwrap();
    }
    producer
        .send(
            BaseRecord::<(), _>::to("orders")
                .payload("{}")
                .timestamp(ten_days_ago),
        )
        .unwrap();
    producer.flush(Duration::from_secs(5)).unwrap();

    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let first_config = directory.path().join("first.toml");
    write_config(&first_config, &brokers, port, "first", "earliest", state);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut first = spawn(&first_config, &directory.path().join("first.log"));
    // Only what is read while the feeds are known is learned (a backlog read at start is not):
    // once the first run knows, ten records a second apart, sent live: nine samples of ~1 s
    // (p99 2 s: 3 × 2 s and 6 × 2 s, floored), nine seconds learned (`learn_min_span` 5s).
    runtime.block_on(wait_until(
        "first run knows its feeds",
        Duration::from_secs(30),
        || async {
            let Some(rows) = rows(port).await else {
                return false;
            };
            rows.iter()
                .any(|row| row["feed"] == "orders" && row["status"] == "critical")
        },
    ));
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        let sent_ms = chrono::Utc::now().timestamp_millis();
        for (topic, key) in [("cadence", "chatty"), ("ticker", "")] {
            producer
                .send(
                    BaseRecord::to(topic)
                        .key(key)
                        .payload("{}")
                        .timestamp(sent_ms),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(1_000));
    }
    runtime.block_on(wait_until(
        "first run tracks all three series as stale",
        Duration::from_secs(30),
        || async {
            let Some(rows) = rows(port).await else {
                return false;
            };
            rows.iter()
                .filter(|row| row["last_seen"].is_string())
                .count()
                == 5
                && find(&rows, "profiles", "acme")["status"] == "critical"
                && find(&rows, "cadence", "chatty")["threshold_source"] == "learned"
                && find(&rows, "ticker", "")["threshold_source"] == "learned"
                && find(&rows, "orders", "")["status"] == "critical"
        },
    ));
    // Two flush intervals so the state store has the evaluated statuses.
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let second_config = directory.path().join("second.toml");
    write_config(&second_config, &brokers, port, "second", "latest", state);
    let mut second = spawn(&second_config, &directory.path().join("second.log"));
    let (restored, hours, fixed_hours) = runtime.block_on(async {
        wait_until(
            "second run serves the API",
            Duration::from_secs(30),
            || async { rows(port).await.is_some() },
        )
        .await;
        let api = |path: &'static str| async move {
            reqwest::get(format!("http://127.0.0.1:{port}/api/v1/feeds/{path}"))
                .await
                .unwrap()
        };
        let hours: Value = api("ticker/hours").await.json().await.unwrap();
        let fixed_hours = api("orders/hours").await.status();
        (rows(port).await.unwrap(), hours, fixed_hours)
    });
    second.kill().unwrap();
    second.wait().unwrap();
    let log = std::fs::read_to_string(directory.path().join("second.log")).unwrap();

    let acme = find(&restored, "profiles", "acme");
    assert_eq!(
        acme["last_seen"],
        freshwatch::clock::rfc3339(ten_days_ago),
        "{log}"
    );
    assert_eq!(acme["status"], "critical");
    assert!(acme["staleness_seconds"].as_f64().unwrap() >= 10.0 * 86_400.0);
    assert_eq!(acme["records"], 0, "nothing was re-read from Kafka");
    let globex = find(&restored, "profiles", "globex");
    assert_eq!(globex["last_seen"], freshwatch::clock::rfc3339(an_hour_ago));
    assert_eq!(globex["status"], "warning");
    let orders = find(&restored, "orders", "");
    assert_eq!(
        orders["last_seen"],
        freshwatch::clock::rfc3339(ten_days_ago)
    );
    assert_eq!(orders["status"], "critical");
    let chatty = find(&restored, "cadence", "chatty");
    assert_eq!(
        chatty["threshold_source"], "learned",
        "the cadence summary came back from the store: {log}"
    );
    assert_eq!(chatty["warn_after_seconds"], 600.0);
    assert_eq!(chatty["critical_after_seconds"], 1_200.0);
    assert_eq!(chatty["records"], 0, "nothing was re-read from Kafka");
    let ticker = find(&restored, "ticker", "");
    assert_eq!(
        ticker["threshold_source"], "learned",
        "the hour's summary came back from the store, not only the series': {log}"
    );
    assert_eq!(ticker["warn_after_seconds"], 600.0);
    assert_eq!(ticker["records"], 0, "nothing was re-read from Kafka");
    // The hours as the API shows them: the one hour the nine gaps fell in, at the feed's scale.
    assert_eq!(hours["timezone"], "Europe/Berlin");
    // Stored at once when the hour's warm-up ended (3 samples and 5 s learned: about the fifth
    // of nine, sooner when a send was late), then at most once a minute: kill -9 loses what
    // came after.
    let gaps = hours["gaps"].as_u64().unwrap();
    assert!((3..=9).contains(&gaps), "{hours:#}");
    let learned: Vec<&Value> = hours["hours"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|hour| hour["gaps"] != 0)
        .collect();
    assert_eq!(learned.len(), 1, "{hours:#}");
    assert_eq!(learned[0]["gaps"], gaps);
    assert_eq!(learned[0]["p99_seconds"], 2.0);
    assert_eq!(learned[0]["scale"], 1.0);
    assert_eq!(hours["hours"].as_array().unwrap().len(), 168);
    assert_eq!(fixed_hours, reqwest::StatusCode::NOT_FOUND);
    let initech = find(&restored, "profiles", "initech");
    assert!(initech["last_seen"].is_null());
    drop(cluster);
}

#[test]
fn kill_9_and_restart_with_redis_keeps_every_staleness_clock() {
    let redis = RedisServer::start();
    restart_keeps_every_staleness_clock(&format!("redis_url = \"{}\"", redis.url));
}

#[test]
fn kill_9_and_restart_with_the_embedded_store_keeps_every_staleness_clock() {
    let directory = tempfile::tempdir().unwrap();
    restart_keeps_every_staleness_clock(&format!(
        "path = \"{}\"",
        directory.path().join("state").display()
    ));
}
