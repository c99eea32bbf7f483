//! Several Kafka clusters in one process (issue #21): two Tansu brokers in separate processes
//! are two clusters, `eu` and `dr`. One that does not answer pages once, for itself, and blinds
//! only its own feeds; a relay copying from one to the other is a pipeline hop whose delay and
//! death freshwatch shows and pages as any hop's.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::WebhookReceiver;
use common::relay::Relay;
use common::{
    now_ms, producer, runtime, wait_until, Alertmanager, FreshwatchProcess, RedisServer,
    TansuBroker,
};

/// Produces a fresh record to `topic` every 200 ms until `stop`; keeps going through a broker
/// outage (librdkafka queues and delivers when it is back).
fn keep_producing(
    brokers: &str,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use rdkafka::producer::{BaseRecord, Producer};
    let producer = producer(brokers);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let record = BaseRecord::to(topic)
                .key("k")
                .payload("{}")
                .timestamp(now_ms());
            let _ = producer.send(record);
            producer.poll(Duration::from_millis(200));
        }
        let _ = producer.flush(Duration::from_secs(10));
    })
}

/// Two clusters' `[[cluster]]` tables, and the state store.
fn clusters(eu: &str, dr: &str, redis_url: &str) -> String {
    format!(
        r#"
[[cluster]]
name = "eu"
brokers = "{eu}"
group_id = "freshwatch-clusters"

[[cluster]]
name = "dr"
brokers = "{dr}"
group_id = "freshwatch-clusters"

[state]
redis_url = "{redis_url}"
flush_interval = "200ms"

[evaluation]
interval = "200ms"
source_grace = "5s"
# The producers' own reconnect backs off for up to 10 s (librdkafka's default): their records
# may arrive that long after the broker answers again.
recovery_grace = "15s"
"#
    )
}

/// Every notification the webhook got: `(alertname, status, dedup_key)`.
fn notifications(receiver: &WebhookReceiver) -> Vec<(String, String, String)> {
    receiver
        .requests()
        .iter()
        .map(|request| {
            let field = |name: &str| request.json[name].as_str().unwrap_or_default().to_owned();
            (field("alertname"), field("status"), field("dedup_key"))
        })
        .collect()
}

fn source_down(status: &str) -> (String, String, String) {
    (
        "FreshwatchSourceDown".to_owned(),
        status.to_owned(),
        "freshwatch/system/FreshwatchSourceDown/dr".to_owned(),
    )
}

/// `dr` is killed: one `FreshwatchSourceDown{cluster="dr"}`, its feed unknown and held by it;
/// `eu`'s feed stays ok and keeps being read as fast as before; nothing else pages. `dr` comes
/// back: the alert resolves, its feed is judged again, and still nothing else pages.
#[test]
fn a_cluster_that_does_not_answer_pages_once_for_itself_and_changes_nothing_on_the_other() {
    let eu = TansuBroker::start();
    let mut dr = TansuBroker::start();
    eu.create_topic("orders", 1);
    dr.create_topic("payments", 1);
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let stop = Arc::new(AtomicBool::new(false));
    let producers = [
        keep_producing(&eu.brokers, "orders", stop.clone()),
        keep_producing(&dr.brokers, "payments", stop.clone()),
    ];
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = format!(
            r#"{}
[[feed]]
name = "orders"
cluster = "eu"
topic = "orders"
warn_after = "6s"
critical_after = "12s"

[[feed]]
name = "payments"
cluster = "dr"
topic = "payments"
warn_after = "6s"
critical_after = "12s"

[[alerts.webhook]]
url = "{}/hook"

[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"
"#,
            clusters(&eu.brokers, &dr.brokers, &redis.url),
            receiver.url,
            alertmanager.url
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("both feeds ok", Duration::from_secs(60), || async {
            freshwatch.status("orders", "").await.as_deref() == Some("ok")
                && freshwatch.status("payments", "").await.as_deref() == Some("ok")
        })
        .await;

        // How far eu's feed trails the clock, sampled: before, during and after dr's outage.
        let sample = |trail: &AtomicI64,
                      seen: &mut Vec<String>,
                      status: Option<String>,
                      last: Option<i64>| {
            if let Some(last_seen_ms) = last {
                trail.fetch_max(now_ms() - last_seen_ms, Ordering::Relaxed);
            }
            if let Some(status) = status {
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
            }
        };
        let before = AtomicI64::new(0);
        let mut orders_seen = Vec::new();
        for _ in 0..25 {
            sample(
                &before,
                &mut orders_seen,
                freshwatch.status("orders", "").await,
                freshwatch.last_seen_ms("orders", "").await,
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        dr.kill();
        let killed = Instant::now();
        let during = AtomicI64::new(0);
        // Down past payments' critical_after and well past source_grace.
        let mut payments_seen = Vec::new();
        while killed.elapsed() < Duration::from_secs(20) {
            sample(
                &during,
                &mut orders_seen,
                freshwatch.status("orders", "").await,
                freshwatch.last_seen_ms("orders", "").await,
            );
            if let Some(status) = freshwatch.status("payments", "").await {
                if payments_seen.last() != Some(&status) {
                    payments_seen.push(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "eu's feed trails the clock by at most {} ms before dr's outage, {} ms during it",
            before.load(Ordering::Relaxed),
            during.load(Ordering::Relaxed)
        );
        assert_eq!(
            payments_seen.last().map(String::as_str),
            Some("unknown"),
            "dr's feed is unknown while dr does not answer: {payments_seen:?}"
        );
        assert_eq!(
            freshwatch.feed_field("payments", "", "held_by").await,
            Some(serde_json::json!("FreshwatchSourceDown"))
        );
        assert_eq!(
            freshwatch.feed_field("orders", "", "held_by").await,
            Some(serde_json::Value::Null)
        );
        assert_eq!(orders_seen, ["ok"], "eu's feed never changed");
        assert!(
            during.load(Ordering::Relaxed) < 3_000,
            "eu is read as fast while dr is down: trails by {} ms",
            during.load(Ordering::Relaxed)
        );
        assert_eq!(
            notifications(&receiver),
            [source_down("firing")],
            "{}",
            freshwatch.log()
        );
        let down = alertmanager.alerts_named("FreshwatchSourceDown").await;
        assert_eq!(down.len(), 1, "{down:#?}");
        assert_eq!(down[0]["labels"]["cluster"], "dr", "{down:#?}");
        let summary = down[0]["annotations"]["summary"]
            .as_str()
            .unwrap_or_default();
        assert!(summary.contains("Kafka cluster dr"), "{summary}");
        assert!(summary.contains("(1 feed(s) held"), "{summary}");
        // Every surface tells the clusters apart.
        let get = |path: &str| {
            let url = format!("{}{path}", freshwatch.base_url);
            async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
        };
        let source: serde_json::Value = serde_json::from_str(&get("/api/v1/source").await).unwrap();
        assert_eq!(source["reachable"], false, "{source:#}");
        assert_eq!(source["clusters"][0]["name"], "eu", "{source:#}");
        assert_eq!(source["clusters"][0]["reachable"], true, "{source:#}");
        assert_eq!(source["clusters"][1]["name"], "dr", "{source:#}");
        assert_eq!(source["clusters"][1]["reachable"], false, "{source:#}");
        assert_eq!(
            source["clusters"][1]["feeds"],
            serde_json::json!(["payments"])
        );
        let page = get("/").await;
        assert!(
            page.contains("Cluster eu") && page.contains("Cluster dr"),
            "the status page's header names each cluster"
        );
        let metrics = get("/metrics").await;
        for series in [
            "freshwatch_source_up{cluster=\"dr\"} 0",
            "freshwatch_source_up{cluster=\"eu\"} 1",
            "freshwatch_cluster_feeds_unknown{cluster=\"dr\"} 1",
            "freshwatch_cluster_feeds_unknown{cluster=\"eu\"} 0",
        ] {
            assert!(metrics.contains(series), "{series} in {metrics}");
        }

        dr.restart();
        wait_until(
            "dr's feed judged again",
            Duration::from_secs(60),
            || async { freshwatch.status("payments", "").await.as_deref() == Some("ok") },
        )
        .await;
        wait_until(
            "FreshwatchSourceDown{cluster=dr} resolves",
            Duration::from_secs(30),
            || async { notifications(&receiver).len() >= 2 },
        )
        .await;
        for _ in 0..15 {
            sample(
                &during,
                &mut orders_seen,
                freshwatch.status("orders", "").await,
                freshwatch.last_seen_ms("orders", "").await,
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(orders_seen, ["ok"], "eu's feed never changed");
        assert_eq!(
            notifications(&receiver),
            [source_down("firing"), source_down("resolved")],
            "{}",
            freshwatch.log()
        );
    });
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.join().unwrap();
    }
}

/// `FeedStale` notifications: `(feed, status)`.
fn feed_pages(receiver: &WebhookReceiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == "FeedStale")
        .map(|request| {
            (
                request.json["feed"].as_str().unwrap_or_default().to_owned(),
                request.json["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// `orders` on eu is mirrored to `eu.orders` on dr by a relay: one pipeline across two
/// clusters. The relay stalled 60 s shows a hop delay of 60 s ± 2 s; stalled past the mirror's
/// `warn_after` it pages once, at the mirror, and nothing else pages.
#[test]
fn a_relay_between_two_clusters_is_a_hop_whose_delay_is_shown_and_whose_death_pages_once() {
    let eu = TansuBroker::start();
    let dr = TansuBroker::start();
    eu.create_topic("orders", 1);
    dr.create_topic("eu.orders", 1);
    let redis = RedisServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = keep_producing(&eu.brokers, "orders", stop.clone());
    let relay = Relay::start(&eu.brokers, "orders", &dr.brokers, "eu.orders");
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        wait_until("the relay copies", Duration::from_secs(60), || async {
            relay.copied.load(Ordering::Relaxed) > 0
        })
        .await;
        let receiver = WebhookReceiver::start().await;
        let text = format!(
            r#"{}
[[feed]]
name = "orders"
cluster = "eu"
topic = "orders"
warn_after = "10s"
critical_after = "1h"

[[feed]]
name = "orders-dr"
cluster = "dr"
topic = "eu.orders"
warn_after = "70s"
critical_after = "1h"

[[pipeline]]
name = "mirror"
hops = ["orders", "orders-dr"]

[[alerts.webhook]]
url = "{}/hook"
"#,
            clusters(&eu.brokers, &dr.brokers, &redis.url),
            receiver.url
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("both hops ok", Duration::from_secs(60), || async {
            freshwatch.status("orders", "").await.as_deref() == Some("ok")
                && freshwatch.status("orders-dr", "").await.as_deref() == Some("ok")
        })
        .await;

        relay.paused.store(true, Ordering::Relaxed);
        let paused_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(60).saturating_sub(paused_at.elapsed())).await;
        let view: serde_json::Value =
            reqwest::get(format!("{}/api/v1/pipelines", freshwatch.base_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let stalled = paused_at.elapsed().as_secs_f64();
        let view = &view[0];
        let delay = view["delays"][0]["seconds"].as_f64().unwrap_or(-1.0);
        println!("relay stalled {stalled:.1} s: hop delay orders -> orders-dr {delay:.1} s");
        assert_eq!(view["delays"][0]["from"], "orders", "{view:#}");
        assert_eq!(view["delays"][0]["to"], "orders-dr", "{view:#}");
        assert!(
            (delay - stalled).abs() <= 2.0,
            "hop delay {delay} s after a {stalled:.1} s stall: {view:#}"
        );
        let metric = freshwatch
            .metric("freshwatch_hop_delay_seconds{pipeline=\"mirror\",from=\"orders\",to=\"orders-dr\"}")
            .await
            .unwrap_or(-1.0);
        assert!((metric - stalled).abs() <= 2.5, "metric {metric} s after {stalled:.1} s");
        assert_eq!(feed_pages(&receiver), [], "within warn_after nothing pages");

        // The relay stays dead: past orders-dr's warn_after the mirror pages, once.
        wait_until("orders-dr pages", Duration::from_secs(30), || async {
            !feed_pages(&receiver).is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            feed_pages(&receiver),
            [("orders-dr".to_owned(), "firing".to_owned())],
            "{}",
            freshwatch.log()
        );
        let others: Vec<_> = notifications(&receiver)
            .into_iter()
            .filter(|(alertname, _, _)| alertname != "FeedStale")
            .collect();
        assert_eq!(others, [], "nothing else pages");
        assert_eq!(freshwatch.status("orders", "").await.as_deref(), Some("ok"));
    });
    stop.store(true, Ordering::Relaxed);
    producing.join().unwrap();
    drop(relay);
}
