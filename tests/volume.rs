//! Volume drops through a real freshwatch: a feed that keeps arriving (never stale) but slows
//! below its `min_rate` pages `FeedVolumeDrop` to a webhook, keeps firing across a restart
//! without a second page, and resolves when the rate is back.
//! librdkafka's mock cluster; durations scaled down (a 10s window, `volume_for = "5s"`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::{
    now_ms, produce_one, producer, replica_config, runtime, wait_until, FreshwatchProcess,
};
use rdkafka::mocking::MockCluster;

/// Produces one record every `interval_ms` until `stop`; the interval can change while it runs.
fn start_producer(
    brokers: String,
    interval_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer = producer(&brokers);
        while !stop.load(Ordering::Relaxed) {
            produce_one(&producer, "profiles", "", now_ms());
            std::thread::sleep(Duration::from_millis(interval_ms.load(Ordering::Relaxed)));
        }
    })
}

fn volume_pages(receiver: &WebhookReceiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == "FeedVolumeDrop")
        .map(|request| {
            (
                request.json["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                request.json["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

async fn volume_row(freshwatch: &FreshwatchProcess) -> Option<serde_json::Value> {
    let response = reqwest::get(format!("{}/api/v1/volume", freshwatch.base_url))
        .await
        .ok()?;
    let rows: Vec<serde_json::Value> = response.json().await.ok()?;
    rows.into_iter().find(|row| row["feed"] == "profiles")
}

#[test]
fn a_feed_that_slows_below_its_min_rate_pages_feed_volume_drop_once_across_a_restart_and_resolves_when_fast_again(
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let directory = tempfile::tempdir().unwrap();
    let interval_ms = Arc::new(AtomicU64::new(100));
    let stop = Arc::new(AtomicBool::new(false));
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let config = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-volume"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[state]
path = "{state}"
flush_interval = "100ms"

[evaluation]
interval = "200ms"
blind_after = "1h"

[[feed]]
name = "profiles"
topic = "profiles"
warn_after = "1h"
critical_after = "2h"
min_rate = "60/min"
volume_window = "10s"
volume_for = "5s"

[[alerts.webhook]]
url = "{url}/hook"
"#,
            state = directory.path().join("state").display(),
            url = receiver.url,
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &config);
        freshwatch.wait_ready().await;
        let producing = start_producer(brokers.clone(), interval_ms.clone(), stop.clone());

        // Fast: about 10 records a second, well above 60/min.
        wait_until(
            "the rate is judged and above min_rate",
            Duration::from_secs(40),
            || async {
                volume_row(&freshwatch)
                    .await
                    .is_some_and(|row| row["status"] == "ok")
            },
        )
        .await;
        assert_eq!(
            freshwatch
                .metric("freshwatch_feed_expected_rate_per_second{feed=\"profiles\"}")
                .await,
            Some(1.0)
        );
        let rate = freshwatch
            .metric("freshwatch_feed_rate_per_second{feed=\"profiles\"}")
            .await
            .unwrap_or_default();
        assert!(rate > 1.0, "observed {rate}/s");
        assert!(volume_pages(&receiver).is_empty());

        // Slow: one record every 4 s (15/min), still fresh.
        interval_ms.store(4_000, Ordering::Relaxed);
        wait_until("FeedVolumeDrop fires", Duration::from_secs(40), || async {
            !volume_pages(&receiver).is_empty()
        })
        .await;
        let pages = volume_pages(&receiver);
        assert_eq!(pages[0].0, "firing", "{pages:?}");
        assert!(
            pages[0].1.starts_with("profiles: ")
                && pages[0]
                    .1
                    .ends_with("against an expected 60/min (below it pages)"),
            "{pages:?}"
        );
        assert_eq!(
            freshwatch.status("profiles", "").await.as_deref(),
            Some("ok"),
            "never stale: only the volume dropped"
        );

        // A restart while it fires: the alert is taken up from the state store, not paged again
        // (without it, the slow rate would page a second time after the window and `volume_for`).
        freshwatch.stop();
        freshwatch.restart();
        freshwatch.wait_ready().await;
        wait_until(
            "the restarted instance judges the rate again",
            Duration::from_secs(40),
            || async {
                volume_row(&freshwatch)
                    .await
                    .is_some_and(|row| row["rate_per_second"].is_number())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(
            volume_row(&freshwatch).await.unwrap()["status"],
            "firing",
            "the restored alert is still firing"
        );
        assert_eq!(volume_pages(&receiver).len(), 1, "no second page");

        // Fast again.
        interval_ms.store(100, Ordering::Relaxed);
        wait_until(
            "FeedVolumeDrop resolves",
            Duration::from_secs(30),
            || async {
                volume_pages(&receiver)
                    .iter()
                    .any(|(status, _)| status == "resolved")
            },
        )
        .await;
        let statuses: Vec<String> = volume_pages(&receiver)
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        assert_eq!(statuses, ["firing", "resolved"]);
        stop.store(true, Ordering::Relaxed);
        producing.join().unwrap();
        freshwatch.stop();
    });
    drop(cluster);
}

/// Two replicas share a topic's two partitions, each reading 10 of the 20 records a second: the
/// rate judged is the sum (about 20/s), so a `min_rate` of 15/s, which each half alone is below,
/// pages nothing.
#[test]
fn with_two_replicas_the_rate_judged_is_the_sum_of_what_each_reads() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = common::RedisServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let config = replica_config(
            &brokers,
            &redis.url,
            "freshwatch-volume-replicas",
            &format!(
                r#"
[[feed]]
name = "profiles"
topic = "profiles"
warn_after = "1h"
critical_after = "2h"
min_rate = "15/s"
volume_window = "10s"
volume_for = "3s"

[[alerts.webhook]]
url = "{url}/hook"
"#,
                url = receiver.url,
            ),
        );
        let first_dir = tempfile::tempdir().unwrap();
        let second_dir = tempfile::tempdir().unwrap();
        let first = FreshwatchProcess::start(first_dir.path(), &config);
        first.wait_ready().await;
        let second = FreshwatchProcess::start(second_dir.path(), &config);
        second.wait_ready().await;
        wait_until(
            "each replica reads one partition",
            Duration::from_secs(30),
            || async {
                first.metric("freshwatch_assigned_partitions").await == Some(1.0)
                    && second.metric("freshwatch_assigned_partitions").await == Some(1.0)
            },
        )
        .await;
        let producing = {
            let brokers = brokers.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                use rdkafka::producer::{BaseRecord, Producer};
                let producer = producer(&brokers);
                // Paced, not flushed per record: 10 records a second into each partition.
                let started = std::time::Instant::now();
                let mut sent: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    for partition in [0, 1] {
                        producer
                            .send(
                                BaseRecord::<(), _>::to("profiles")
                                    .partition(partition)
                                    .payload("{}")
                                    .timestamp(now_ms()),
                            )
                            .map_err(|(error, _)| error)
                            .unwrap();
                    }
                    producer.poll(Duration::ZERO);
                    sent += 1;
                    let next = started + Duration::from_millis(100) * sent;
                    std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
                }
                producer.flush(Duration::from_secs(5)).unwrap();
            })
        };
        let leader = if first.metric("freshwatch_leader").await == Some(1.0) {
            &first
        } else {
            &second
        };
        // Before the producer started the rate was rightly 0 (a page then is no false one);
        // once both replicas read, the summed rate is above min_rate.
        wait_until(
            "the leader judges the summed rate above min_rate",
            Duration::from_secs(40),
            || async {
                volume_row(leader)
                    .await
                    .is_some_and(|row| row["status"] == "ok")
            },
        )
        .await;
        let pages_before = volume_pages(&receiver).len();
        // Past the window and `volume_for`: half the rate would have paged by now.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let row = volume_row(leader).await.unwrap();
        let rate = row["rate_per_second"].as_f64().unwrap();
        assert!(rate > 15.0, "the sum of both replicas' reads: {row}");
        assert_eq!(row["status"], "ok", "{row}");
        let pages = volume_pages(&receiver);
        assert_eq!(pages.len(), pages_before, "{pages:?}");
        stop.store(true, Ordering::Relaxed);
        producing.join().unwrap();
    });
    drop(cluster);
}

/// A feed's silence holds its `FeedVolumeDrop` as it holds its staleness: the drop that starts
/// inside the silence pages nobody then, and pages once when the silence ends while it still
/// fires.
#[test]
fn a_feeds_silence_holds_its_volume_drop_until_it_ends() {
    const ADMIN_TOKEN: &str = "admin-token-0123456789";
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let directory = tempfile::tempdir().unwrap();
    let interval_ms = Arc::new(AtomicU64::new(100));
    let stop = Arc::new(AtomicBool::new(false));
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let config = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-volume-silence"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[state]
path = "{state}"
flush_interval = "100ms"

[evaluation]
interval = "200ms"
blind_after = "1h"

[[feed]]
name = "profiles"
topic = "profiles"
warn_after = "1h"
critical_after = "2h"
min_rate = "60/min"
volume_window = "10s"
volume_for = "5s"

[[alerts.webhook]]
url = "{url}/hook"
"#,
            state = directory.path().join("state").display(),
            url = receiver.url,
        );
        let mut freshwatch = FreshwatchProcess::start_with_http(
            directory.path(),
            &config,
            &format!("admin_token = \"{ADMIN_TOKEN}\""),
        );
        freshwatch.wait_ready().await;
        let producing = start_producer(brokers.clone(), interval_ms.clone(), stop.clone());
        wait_until(
            "the rate is judged and above min_rate",
            Duration::from_secs(40),
            || async {
                volume_row(&freshwatch)
                    .await
                    .is_some_and(|row| row["status"] == "ok")
            },
        )
        .await;

        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/silences", freshwatch.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({
                "matchers": {"feed": "profiles"},
                "duration": "25s",
                "comment": "producer migration"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let silenced_at = std::time::Instant::now();
        interval_ms.store(4_000, Ordering::Relaxed);
        wait_until(
            "FeedVolumeDrop fires inside the silence",
            Duration::from_secs(22),
            || async {
                volume_row(&freshwatch)
                    .await
                    .is_some_and(|row| row["status"] == "firing")
            },
        )
        .await;
        assert!(
            silenced_at.elapsed() < Duration::from_secs(24),
            "the drop must start inside the silence for this test to mean anything"
        );
        assert!(
            volume_pages(&receiver).is_empty(),
            "held by the feed's silence: {:?}",
            volume_pages(&receiver)
        );
        wait_until(
            "the held drop pages when the silence ends",
            Duration::from_secs(30),
            || async { !volume_pages(&receiver).is_empty() },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let statuses: Vec<String> = volume_pages(&receiver)
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        assert_eq!(statuses, ["firing"], "once, after the silence");
        assert!(silenced_at.elapsed() >= Duration::from_secs(25));
        stop.store(true, Ordering::Relaxed);
        producing.join().unwrap();
        freshwatch.stop();
    });
    drop(cluster);
}
