//! Pipelines: the first broken hop pages; the hops behind it are held. Real processes:
//! `freshwatch run`, `redis-server`, librdkafka's mock cluster and a webhook receiver.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::{now_ms, produce_one, producer, runtime, wait_until, FreshwatchProcess, RedisServer};
use rdkafka::mocking::MockCluster;

/// `(feed, status)` of every `FeedStale` notification, in order.
fn pages(receiver: &WebhookReceiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == "FeedStale")
        .map(|request| {
            (
                request.json["feed"].as_str().unwrap_or("").to_owned(),
                request.json["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn page(feed: &str, status: &str) -> (String, String) {
    (feed.to_owned(), status.to_owned())
}

/// Produces a fresh record to each of `topics` every 300 ms until the returned flag is set.
fn keep_producing(
    brokers: &str,
    topics: &'static [&'static str],
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let producer = producer(brokers);
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            for topic in topics {
                produce_one(&producer, topic, "k", now_ms());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    (stop, thread)
}

fn stop(producing: (Arc<AtomicBool>, std::thread::JoinHandle<()>)) {
    producing.0.store(true, Ordering::Relaxed);
    let _ = producing.1.join();
}

/// Issue #20: `up` → `down`. Both stop: only `up` pages, `down` is held. `up` recovers and
/// `down` does not: `down` pages once `catchup_grace` has passed, then resolves when it flows.
#[test]
fn the_first_broken_hop_pages_and_a_held_hop_pages_only_if_still_broken_after_catchup_grace() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("up", 1, 1).unwrap();
    cluster.create_topic("down", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = common::replica_config(
            &brokers,
            &redis.url,
            "freshwatch-pipelines",
            &format!(
                r#"
[[feed]]
name = "up"
topic = "up"
warn_after = "2s"
critical_after = "1h"

[[feed]]
name = "down"
topic = "down"
warn_after = "3s"
critical_after = "1h"

[[pipeline]]
name = "chain"
hops = ["up", "down"]
catchup_grace = "3s"

[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        );
        let both = keep_producing(&brokers, &["up", "down"]);
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("both ok", Duration::from_secs(15), || async {
            freshwatch.status("up", "").await.as_deref() == Some("ok")
                && freshwatch.status("down", "").await.as_deref() == Some("ok")
        })
        .await;
        stop(both);

        // Both stop: up pages, down is held.
        wait_until("down turns warning", Duration::from_secs(20), || async {
            freshwatch.status("down", "").await.as_deref() == Some("warning")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            pages(&receiver),
            [page("up", "firing")],
            "{}",
            freshwatch.log()
        );
        let silences: Vec<serde_json::Value> =
            reqwest::get(format!("{}/api/v1/silences", freshwatch.base_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert!(
            silences
                .iter()
                .any(|silence| silence["matchers"]["feed"] == "down"
                    && silence["comment"] == "held by pipeline chain: broken at up"),
            "{silences:#?}"
        );

        // up flows again, down does not: down pages once catchup_grace has passed.
        let keep_up = keep_producing(&brokers, &["up"]);
        wait_until("up resolves", Duration::from_secs(15), || async {
            pages(&receiver).contains(&page("up", "resolved"))
        })
        .await;
        let resolved_at = std::time::Instant::now();
        wait_until(
            "down pages after the grace",
            Duration::from_secs(20),
            || async { pages(&receiver).contains(&page("down", "firing")) },
        )
        .await;
        assert!(
            resolved_at.elapsed() >= Duration::from_secs(2),
            "down paged {:?} after up resolved, inside its 3 s catchup_grace",
            resolved_at.elapsed()
        );

        assert_eq!(
            freshwatch.feed_field("down", "", "held_by").await,
            Some(serde_json::Value::Null),
            "the hold ended"
        );
        produce_one(&producer, "down", "k", now_ms());
        wait_until("down resolves", Duration::from_secs(15), || async {
            pages(&receiver).contains(&page("down", "resolved"))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop(keep_up);
        assert_eq!(
            pages(&receiver),
            [
                page("up", "firing"),
                page("up", "resolved"),
                page("down", "firing"),
                page("down", "resolved")
            ],
            "{}",
            freshwatch.log()
        );
    });
    drop(cluster);
}
