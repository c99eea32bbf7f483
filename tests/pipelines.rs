//! Pipelines: the first broken hop pages; the hops behind it are held. Real processes:
//! `freshwatch run`, `redis-server`, librdkafka's mock cluster and a webhook receiver.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::relay::Relay;
use common::{
    now_ms, produce_one, producer, runtime, wait_until, FreshwatchProcess, RedisServer, TansuBroker,
};
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

/// Every notification about a consumer group `group`: `(alertname, status, summary)`.
fn group_notifications(receiver: &WebhookReceiver, group: &str) -> Vec<(String, String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| {
            request.json["dedup_key"]
                .as_str()
                .is_some_and(|key| key.contains(&format!("/{group}/")))
        })
        .map(|request| {
            let text = |field: &str| request.json[field].as_str().unwrap_or_default().to_owned();
            (text("alertname"), text("status"), text("summary"))
        })
        .collect()
}

async fn pipeline_view(freshwatch: &FreshwatchProcess) -> serde_json::Value {
    let views: Vec<serde_json::Value> =
        reqwest::get(format!("{}/api/v1/pipelines", freshwatch.base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    views.into_iter().next().expect("one pipeline")
}

/// Issue #20 on a separate broker process (Tansu, default client timeouts): `a` → the relay
/// group → `c`. `a`'s producer stops: one page (a), the relay and `c` held for the whole
/// outage, and nothing else pages when it flows again. The relay alone stalls: one page for its
/// group naming the pipeline, `c` held, and after 90 s the hop delay a → c reads 90 s ± 2 s.
#[test]
fn on_a_separate_broker_a_three_hop_chain_pages_only_its_first_broken_hop_and_shows_the_relay_delay(
) {
    let broker = TansuBroker::start();
    broker.create_topic("a", 1);
    broker.create_topic("c", 1);
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producing = Arc::new(AtomicBool::new(true));
    let stop_all = Arc::new(AtomicBool::new(false));
    let producer_thread = {
        let producer = producer(&broker.brokers);
        let (producing, stop_all) = (producing.clone(), stop_all.clone());
        std::thread::spawn(move || {
            while !stop_all.load(Ordering::Relaxed) {
                if producing.load(Ordering::Relaxed) {
                    produce_one(&producer, "a", "k", now_ms());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let relay = Relay::start(&broker.brokers, "a", &broker.brokers, "c");
    runtime().block_on(async {
        wait_until(
            "the relay copies and commits",
            Duration::from_secs(60),
            || async { relay.copied.load(Ordering::Relaxed) > 0 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let receiver = WebhookReceiver::start().await;
        let text = format!(
            r#"
[kafka]
brokers = "{}"
group_id = "freshwatch-chain"
groups_interval = "500ms"

[state]
redis_url = "{}"
flush_interval = "200ms"

[evaluation]
interval = "200ms"

[[feed]]
name = "a"
topic = "a"
warn_after = "4s"
critical_after = "1h"

[[feed]]
name = "c"
topic = "c"
warn_after = "8s"
critical_after = "1h"

[[group]]
group_id = "relay"
topics = ["a"]
warn_after = "3s"
critical_after = "1h"
stall_after = "1h"

[[pipeline]]
name = "chain"
hops = ["a", "group:relay", "c"]
catchup_grace = "5s"

[[alerts.webhook]]
url = "{}/hook"
"#,
            broker.brokers, redis.url, receiver.url
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("a, c and the relay ok", Duration::from_secs(60), || async {
            let view = pipeline_view(&freshwatch).await;
            view["status"] == "ok"
                && view["hops"]
                    .as_array()
                    .is_some_and(|hops| hops.iter().all(|hop| hop["status"] == "ok"))
        })
        .await;

        // a's producer stops: a pages; the relay (caught up) and c (stale) are held.
        producing.store(false, Ordering::Relaxed);
        wait_until("c turns warning", Duration::from_secs(30), || async {
            freshwatch.status("c", "").await.as_deref() == Some("warning")
        })
        .await;
        let view = pipeline_view(&freshwatch).await;
        assert_eq!(view["broken_at"], "a", "{view:#}");
        assert_eq!(view["hops"][1]["held_by"], "a", "{view:#}");
        assert_eq!(view["hops"][2]["held_by"], "a", "{view:#}");
        assert_eq!(view["hops"][2]["status"], "warning", "{view:#}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            pages(&receiver),
            [page("a", "firing")],
            "{}",
            freshwatch.log()
        );
        assert_eq!(group_notifications(&receiver, "relay"), []);

        // a flows again: everything resolves, and nothing else pages, inside the grace or after.
        producing.store(true, Ordering::Relaxed);
        wait_until("a and c ok again", Duration::from_secs(30), || async {
            freshwatch.status("a", "").await.as_deref() == Some("ok")
                && freshwatch.status("c", "").await.as_deref() == Some("ok")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            pages(&receiver),
            [page("a", "firing"), page("a", "resolved")],
            "{}",
            freshwatch.log()
        );
        assert_eq!(group_notifications(&receiver, "relay"), []);

        // The relay alone stalls: its group pages once, naming the pipeline; c is held by it.
        relay.paused.store(true, Ordering::Relaxed);
        let paused_at = std::time::Instant::now();
        wait_until(
            "the relay's group pages",
            Duration::from_secs(30),
            || async { !group_notifications(&receiver, "relay").is_empty() },
        )
        .await;
        let notifications = group_notifications(&receiver, "relay");
        assert_eq!(notifications.len(), 1, "{notifications:?}");
        let (alertname, status, summary) = &notifications[0];
        assert_eq!(
            (alertname.as_str(), status.as_str()),
            ("ConsumerGroupLagging", "firing")
        );
        assert!(
            summary.contains("pipeline chain broken at group:relay; downstream held: c"),
            "{summary}"
        );
        wait_until("c turns warning, held", Duration::from_secs(30), || async {
            freshwatch.status("c", "").await.as_deref() == Some("warning")
        })
        .await;
        assert_eq!(
            freshwatch.feed_field("c", "", "held_by").await,
            Some(serde_json::Value::String("group:relay".to_owned()))
        );
        let held = group_view_held_by(&freshwatch).await;
        assert_eq!(
            held,
            serde_json::Value::Null,
            "the relay itself is not held"
        );

        let stalled_for = Duration::from_secs(90);
        tokio::time::sleep(stalled_for.saturating_sub(paused_at.elapsed())).await;
        let view = pipeline_view(&freshwatch).await;
        let delay = view["delays"][0]["seconds"].as_f64().unwrap_or(-1.0);
        let stalled = paused_at.elapsed().as_secs_f64();
        println!("relay stalled {stalled:.1} s: hop delay a -> c {delay:.1} s");
        assert_eq!(view["delays"][0]["from"], "a");
        assert_eq!(view["delays"][0]["to"], "c");
        assert!(
            (delay - stalled).abs() <= 2.0,
            "hop delay {delay} s after a {stalled:.1} s stall: {view:#}"
        );
        let metrics = reqwest::get(format!("{}/metrics", freshwatch.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .contains("freshwatch_hop_delay_seconds{pipeline=\"chain\",from=\"a\",to=\"c\"}"),
            "{metrics}"
        );
        assert_eq!(
            pages(&receiver),
            [page("a", "firing"), page("a", "resolved")]
        );

        // The relay catches up: its group resolves, c recovers unpaged.
        relay.paused.store(false, Ordering::Relaxed);
        wait_until(
            "the relay's group resolves",
            Duration::from_secs(60),
            || async {
                group_notifications(&receiver, "relay")
                    .iter()
                    .any(|(_, status, _)| status == "resolved")
            },
        )
        .await;
        wait_until("c ok", Duration::from_secs(30), || async {
            freshwatch.status("c", "").await.as_deref() == Some("ok")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            pages(&receiver),
            [page("a", "firing"), page("a", "resolved")],
            "{}",
            freshwatch.log()
        );
        let statuses: Vec<String> = group_notifications(&receiver, "relay")
            .into_iter()
            .map(|(_, status, _)| status)
            .collect();
        assert_eq!(statuses, ["firing", "resolved"]);
    });
    stop_all.store(true, Ordering::Relaxed);
    producer_thread.join().unwrap();
    drop(relay);
}

async fn group_view_held_by(freshwatch: &FreshwatchProcess) -> serde_json::Value {
    common::groups::group_view(freshwatch, "relay", "a")
        .await
        .map_or(serde_json::Value::Null, |view| view["held_by"].clone())
}

/// Two feeds `raw` → `enriched` of pipeline `orders`, audited by key in 10 s buckets with 2 s
/// of grace, and a webhook.
fn audit_tables(receiver_url: &str, max_listed: usize) -> String {
    format!(
        r#"
[[feed]]
name = "raw"
topic = "raw"
warn_after = "2h"
critical_after = "3h"

[[feed]]
name = "enriched"
topic = "enriched"
warn_after = "2h"
critical_after = "3h"

[[pipeline]]
name = "orders"
hops = ["raw", "enriched"]

[[pipeline.audit]]
from = "raw"
to = "enriched"
id = "key"
bucket = "10s"
grace = "2s"
max_listed = {max_listed}

[[alerts.webhook]]
url = "{receiver_url}/hook"
"#
    )
}

/// Produces `ids` to `topic` with key = id and record timestamp `at_ms`, spread over its
/// partitions by key; flushed.
fn produce_ids(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    ids: &[String],
    at_ms: i64,
) {
    use rdkafka::producer::{BaseRecord, Producer};
    for id in ids {
        loop {
            match producer.send(BaseRecord::to(topic).key(id).payload("{}").timestamp(at_ms)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

async fn audit_rows(freshwatch: &FreshwatchProcess) -> Vec<serde_json::Value> {
    match reqwest::get(format!(
        "{}/api/v1/pipelines/orders/audit",
        freshwatch.base_url
    ))
    .await
    {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// `(status, summary)` of every `RecordsMissing` notification.
fn records_missing(receiver: &WebhookReceiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == "RecordsMissing")
        .map(|request| {
            let text = |field: &str| request.json[field].as_str().unwrap_or_default().to_owned();
            (text("status"), text("summary"))
        })
        .collect()
}

/// Issue #20's audit: a relay dropped 37 ids of one bucket and duplicated 20 of another. The
/// closed buckets list exactly those, `RecordsMissing` pages once with the ids. Then, with every
/// Kafka commit refused, freshwatch reads an open bucket and is killed (`kill -9`): the restart
/// reads everything again, yet counts nothing twice, and the complete bucket resolves the alert.
#[test]
fn an_audit_lists_the_ids_a_relay_dropped_and_counts_nothing_twice_across_a_kill_9() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("raw", 4, 1).unwrap();
    cluster.create_topic("enriched", 4, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = producer(&brokers);
    // Two buckets an hour ago: 10,000 ids each; the relay drops 37 of the first and sends 20
    // of the second twice.
    let bucket_ms = 10_000;
    let first_ms = (now_ms() - 3_600_000) / bucket_ms * bucket_ms;
    let first: Vec<String> = (0..10_000).map(|index| format!("o-{index}")).collect();
    let second: Vec<String> = (10_000..20_000).map(|index| format!("o-{index}")).collect();
    let dropped: Vec<String> = (0..37)
        .map(|index| format!("o-{}", 100 + index * 263))
        .collect();
    let doubled: Vec<String> = (0..20)
        .map(|index| format!("o-{}", 10_050 + index * 487))
        .collect();
    produce_ids(&producer, "raw", &first, first_ms + 1_000);
    produce_ids(&producer, "raw", &second, first_ms + bucket_ms + 1_000);
    let relayed: Vec<String> = first
        .iter()
        .filter(|id| !dropped.contains(id))
        .cloned()
        .collect();
    produce_ids(&producer, "enriched", &relayed, first_ms + 1_000);
    produce_ids(&producer, "enriched", &second, first_ms + bucket_ms + 1_000);
    produce_ids(
        &producer,
        "enriched",
        &doubled,
        first_ms + bucket_ms + 1_000,
    );
    // A relayed record that lost its id: counted on neither side, but counted as such.
    {
        use rdkafka::producer::{BaseRecord, Producer};
        producer
            .send(
                BaseRecord::<(), _>::to("enriched")
                    .payload("{}")
                    .timestamp(first_ms + 1_000),
            )
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    // Every commit of freshwatch's first life is refused: its restart reads it all again.
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 100_000],
    );
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = common::replica_config(
            &brokers,
            &redis.url,
            "freshwatch-audit",
            &audit_tables(&receiver.url, 100),
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("both buckets closed", Duration::from_secs(60), || async {
            audit_rows(&freshwatch).await.len() == 2
        })
        .await;
        let rows = audit_rows(&freshwatch).await;
        let missing_ids: Vec<String> = serde_json::from_value(rows[0]["missing_ids"].clone()).unwrap();
        let mut expected = dropped.clone();
        expected.sort();
        assert_eq!(missing_ids, expected, "{rows:#?}");
        let counts = |row: &serde_json::Value| {
            ["upstream", "downstream", "missing", "duplicated"].map(|field| row[field].as_u64().unwrap())
        };
        assert_eq!(counts(&rows[0]), [10_000, 9_963, 37, 0]);
        assert_eq!(counts(&rows[1]), [10_000, 10_020, 0, 20]);
        assert_eq!(rows[0]["from"], "raw");
        assert_eq!(rows[0]["start"], freshwatch::clock::rfc3339(first_ms));
        wait_until("RecordsMissing pages", Duration::from_secs(10), || async {
            !records_missing(&receiver).is_empty()
        })
        .await;
        // The complete second bucket, closed with it, does not resolve it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pages = records_missing(&receiver);
        assert_eq!(pages.len(), 1, "{pages:?}");
        assert!(
            pages[0].0 == "firing" && pages[0].1.contains("37 of 10000 records of raw missing from enriched"),
            "{pages:?}"
        );
        let metrics = reqwest::get(format!("{}/metrics", freshwatch.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("freshwatch_audit_records_missing_total{pipeline=\"orders\",from=\"raw\",to=\"enriched\"} 37"),
            "{metrics}"
        );
        assert!(metrics.contains(
            "freshwatch_audit_records_duplicated_total{pipeline=\"orders\",from=\"raw\",to=\"enriched\"} 20"
        ));
        assert!(
            metrics.contains(
                "freshwatch_audit_records_without_id{pipeline=\"orders\",from=\"raw\",to=\"enriched\"} 1"
            ),
            "{metrics}"
        );

        // A complete bucket, read while it is open (its end plus grace still ahead): stored
        // with the counts, never committed to Kafka.
        let consumed = || async {
            match reqwest::get(format!("{}/api/v1/source", freshwatch.base_url)).await {
                Ok(response) => response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|source| source["records_consumed"].as_u64())
                    .unwrap_or(0),
                Err(_) => 0,
            }
        };
        let before = consumed().await;
        assert_eq!(before, 39_984, "every record read once");
        let third: Vec<String> = (20_000..20_500).map(|index| format!("o-{index}")).collect();
        // It begins after the page: its being complete resolves RecordsMissing.
        let third_ms = now_ms() + 12_000;
        produce_ids(&producer, "raw", &third, third_ms);
        produce_ids(&producer, "enriched", &third, third_ms);
        wait_until("the open bucket is read", Duration::from_secs(20), || async {
            consumed().await == before + 1_000
        })
        .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        freshwatch.kill();
        cluster.clear_request_errors(RDKafkaApiKey::OffsetCommit);
        freshwatch.restart();
        freshwatch.wait_ready().await;
        wait_until("the third bucket closes", Duration::from_secs(60), || async {
            audit_rows(&freshwatch).await.len() == 3
        })
        .await;
        let rows = audit_rows(&freshwatch).await;
        assert_eq!(
            counts(&rows[2]),
            [500, 500, 0, 0],
            "read twice, counted once: {rows:#?}"
        );
        assert_eq!(counts(&rows[0]), [10_000, 9_963, 37, 0], "verdicts survive the restart");
        wait_until("RecordsMissing resolves", Duration::from_secs(10), || async {
            records_missing(&receiver).len() == 2
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let statuses: Vec<String> = records_missing(&receiver).into_iter().map(|(status, _)| status).collect();
        assert_eq!(statuses, ["firing", "resolved"], "{}", freshwatch.log());
    });
    drop(cluster);
}

/// Issue #20's audit on a separate broker process (Tansu, default client timeouts): ten
/// buckets of 10,000 records each; the relay's output lacks 137 ids of the fourth bucket and
/// holds 50 ids of the eighth twice. Exactly those are found, and nothing else.
/// `FRESHWATCH_AUDIT_RECORDS=1000000` runs the issue's million (`bench/audit.sh`, release).
#[test]
fn on_a_separate_broker_an_audit_of_a_hundred_thousand_records_finds_exactly_what_the_relay_lost() {
    let records: usize = std::env::var("FRESHWATCH_AUDIT_RECORDS")
        .ok()
        .map(|value| value.parse().expect("FRESHWATCH_AUDIT_RECORDS: a number"))
        .unwrap_or(100_000);
    let per_bucket = records / 10;
    assert!(per_bucket >= 10_000, "at least 100,000 records");
    let broker = TansuBroker::start();
    broker.create_topic("raw", 4);
    broker.create_topic("enriched", 4);
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = producer(&broker.brokers);
    let bucket_ms = 10_000;
    let first_ms = (now_ms() - 3_600_000) / bucket_ms * bucket_ms;
    let dropped: Vec<String> = (0..137)
        .map(|index| format!("o-{}", 3 * per_bucket + index * 71))
        .collect();
    let doubled: Vec<String> = (0..50)
        .map(|index| format!("o-{}", 7 * per_bucket + index * 193))
        .collect();
    let dropped_set: std::collections::HashSet<&String> = dropped.iter().collect();
    let doubled_set: std::collections::HashSet<&String> = doubled.iter().collect();
    let produced = std::time::Instant::now();
    for bucket in 0..10 {
        let ids: Vec<String> = (bucket * per_bucket..(bucket + 1) * per_bucket)
            .map(|index| format!("o-{index}"))
            .collect();
        let at_ms = first_ms + bucket as i64 * bucket_ms + 500;
        produce_ids(&producer, "raw", &ids, at_ms);
        let relayed: Vec<String> = ids
            .iter()
            .filter(|id| !dropped_set.contains(id))
            .cloned()
            .collect();
        produce_ids(&producer, "enriched", &relayed, at_ms);
        let again: Vec<String> = ids
            .iter()
            .filter(|id| doubled_set.contains(id))
            .cloned()
            .collect();
        produce_ids(&producer, "enriched", &again, at_ms);
    }
    println!(
        "produced {} records to tansu in {:?}",
        2 * records - 137 + 50,
        produced.elapsed()
    );
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = format!(
            r#"
[kafka]
brokers = "{}"
group_id = "freshwatch-audit"

[state]
redis_url = "{}"
flush_interval = "200ms"

[evaluation]
interval = "200ms"
{}"#,
            broker.brokers,
            redis.url,
            audit_tables(&receiver.url, 250)
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        let read = std::time::Instant::now();
        wait_until(
            "ten buckets closed",
            Duration::from_secs(240 * records as u64 / 100_000),
            || async { audit_rows(&freshwatch).await.len() == 10 },
        )
        .await;
        println!(
            "ten buckets judged {:?} after freshwatch was ready",
            read.elapsed()
        );
        let rows = audit_rows(&freshwatch).await;
        for (bucket, row) in rows.iter().enumerate() {
            let counts = ["upstream", "downstream", "missing", "duplicated"]
                .map(|field| row[field].as_u64().unwrap());
            let per = per_bucket as u64;
            let expected = match bucket {
                3 => [per, per - 137, 137, 0],
                7 => [per, per + 50, 0, 50],
                _ => [per, per, 0, 0],
            };
            assert_eq!(counts, expected, "bucket {bucket}: {row:#}");
        }
        let listed: Vec<String> = serde_json::from_value(rows[3]["missing_ids"].clone()).unwrap();
        let mut expected = dropped.clone();
        expected.sort();
        assert_eq!(listed, expected);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pages = records_missing(&receiver);
        assert_eq!(pages.len(), 1, "{pages:?}");
        assert!(
            pages[0].1.contains(&format!(
                "137 of {per_bucket} records of raw missing from enriched"
            )),
            "{pages:?}"
        );
    });
}

/// Issue #20's audit, lossless: records arrive up to 2 s out of event-time order, a relay in a
/// consumer group copies them and is restarted halfway (so it copies some again from its last
/// commit). Every bucket closes with nothing missing, and nothing pages.
#[test]
fn a_lossless_relay_with_records_out_of_order_and_a_restart_pages_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("raw", 2, 1).unwrap();
    cluster.create_topic("enriched", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = common::replica_config(
            &brokers,
            &redis.url,
            "freshwatch-audit-lossless",
            &audit_tables(&receiver.url, 100)
                .replace("bucket = \"10s\"", "bucket = \"5s\"")
                .replace("grace = \"2s\"", "grace = \"15s\""),
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        let mut relay = Relay::start(&brokers, "raw", &brokers, "enriched");
        let started_ms = now_ms();
        let mut produced = 0u64;
        for index in 0..300u64 {
            // Up to 2 s behind, in no order.
            let skew_ms = ((index * 7_919) % 2_000) as i64;
            let id = format!("r-{index}");
            produce_ids(
                &producer,
                "raw",
                std::slice::from_ref(&id),
                now_ms() - skew_ms,
            );
            produced += 1;
            if index == 150 {
                drop(relay);
                relay = Relay::start(&brokers, "raw", &brokers, "enriched");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let last_ms = now_ms();
        let buckets = ((last_ms / 5_000) - ((started_ms - 2_000) / 5_000) + 1) as usize;
        wait_until("every bucket closed", Duration::from_secs(120), || async {
            let rows = audit_rows(&freshwatch).await;
            rows.iter()
                .map(|row| row["upstream"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == produced
                && rows.len() >= buckets.saturating_sub(1)
        })
        .await;
        let rows = audit_rows(&freshwatch).await;
        for row in &rows {
            assert_eq!(row["missing"], 0, "{rows:#?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(records_missing(&receiver), [], "{}", freshwatch.log());
        drop(relay);
    });
    drop(cluster);
}

/// Issue #20's audit shared by two replicas on a separate broker process (Tansu, default
/// client timeouts): a second replica joins while records flow, so partitions move from a live
/// replica that has read past its last commit. Every record is counted exactly once on each
/// side, across both replicas' counts: no bucket misses or doubles anything, nothing pages.
#[test]
fn two_replicas_sharing_an_audit_across_a_rebalance_count_every_record_once() {
    let broker = TansuBroker::start();
    // Different partition counts: a record's two sides move between replicas independently.
    broker.create_topic("raw", 4);
    broker.create_topic("enriched", 6);
    let redis = RedisServer::start();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        // A long flush: the first replica has read well past its last commit when it loses
        // partitions.
        let text = format!(
            r#"
[kafka]
brokers = "{}"
group_id = "freshwatch-audit-shared"

[state]
redis_url = "{}"
flush_interval = "2s"

[evaluation]
interval = "200ms"
blind_after = "1h"

[ha]
lease = "3s"
{}"#,
            broker.brokers,
            redis.url,
            audit_tables(&receiver.url, 100)
                .replace("bucket = \"10s\"", "bucket = \"5s\"")
                .replace("grace = \"2s\"", "grace = \"5s\"")
        );
        let replica_a = FreshwatchProcess::start(first.path(), &text);
        replica_a.wait_ready().await;
        let running = Arc::new(AtomicBool::new(true));
        let brokers = broker.brokers.clone();
        let flag = running.clone();
        let producing = std::thread::spawn(move || {
            use rdkafka::producer::{BaseRecord, Producer};
            let producer = producer(&brokers);
            let mut produced = 0u64;
            while flag.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let id = format!("s-{produced}");
                    let at_ms = now_ms();
                    for topic in ["raw", "enriched"] {
                        while producer
                            .send(
                                BaseRecord::to(topic)
                                    .key(&id)
                                    .payload("{}")
                                    .timestamp(at_ms),
                            )
                            .is_err()
                        {
                            producer.poll(Duration::from_millis(10));
                        }
                    }
                    produced += 1;
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(50));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            produced
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        let replica_b = FreshwatchProcess::start(second.path(), &text);
        replica_b.wait_ready().await;
        wait_until(
            "both replicas hold partitions",
            Duration::from_secs(90),
            || async {
                let mut holding = 0;
                for replica in [&replica_a, &replica_b] {
                    if replica
                        .metric("freshwatch_assigned_partitions")
                        .await
                        .unwrap_or(0.0)
                        > 0.0
                    {
                        holding += 1;
                    }
                }
                holding == 2
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        running.store(false, Ordering::Relaxed);
        let produced = producing.join().unwrap();
        let rows_of_leader = || async {
            let mut best = Vec::new();
            for replica in [&replica_a, &replica_b] {
                let rows = audit_rows(replica).await;
                if rows.len() > best.len() {
                    best = rows;
                }
            }
            best
        };
        let sum = |rows: &[serde_json::Value], field: &str| {
            rows.iter()
                .map(|row| row[field].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        wait_until(
            "every record's bucket closed",
            Duration::from_secs(120),
            || async { sum(&rows_of_leader().await, "upstream") >= produced },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let rows = rows_of_leader().await;
        let logs = format!("{}\n---\n{}", replica_a.log(), replica_b.log());
        assert_eq!(sum(&rows, "upstream"), produced, "{rows:#?}\n{logs}");
        assert_eq!(sum(&rows, "downstream"), produced, "{rows:#?}\n{logs}");
        for row in &rows {
            assert_eq!(
                (&row["missing"], &row["duplicated"]),
                (&0.into(), &0.into()),
                "{rows:#?}"
            );
        }
        assert_eq!(records_missing(&receiver), [], "{logs}");
        assert!(
            logs.contains("counted by the replica that had it"),
            "a partition moved between live replicas: {logs}"
        );
    });
}
