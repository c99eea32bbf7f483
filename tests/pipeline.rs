//! End-to-end scenarios, in-process: librdkafka's mock cluster, a real `redis-server` and a real
//! Alertmanager, freshwatch started through its library entry point.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::WebhookReceiver;
use common::{kcat_produce, now_ms, runtime, wait_until, Alertmanager, KcatRecord, RedisServer};
use freshwatch::clock::SystemClock;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// A mock cluster with the given topics; stays on the test thread.
fn cluster(
    topics: &[(&str, i32)],
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("librdkafka mock cluster");
    for (topic, partitions) in topics {
        cluster.create_topic(topic, *partitions, 1).unwrap();
    }
    cluster
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap()
}

/// Sends one record and waits until the broker has it.
fn produce(
    producer: &BaseProducer,
    topic: &str,
    key: Option<&str>,
    payload: &str,
    timestamp_ms: Option<i64>,
    headers: &[(&str, &[u8])],
) {
    let mut owned_headers = OwnedHeaders::new();
    for (name, value) in headers {
        owned_headers = owned_headers.insert(Header {
            key: name,
            value: Some(*value),
        });
    }
    let mut record = BaseRecord::<str, str>::to(topic)
        .payload(payload)
        .headers(owned_headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(timestamp_ms) = timestamp_ms {
        record = record.timestamp(timestamp_ms);
    }
    producer.send(record).map_err(|(error, _)| error).unwrap();
    producer.flush(Duration::from_secs(5)).unwrap();
}

/// Config text with the common sections; `feeds` and `alerts` are appended.
fn config_text(brokers: &str, state: &str, extra: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-test"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"topic.metadata.refresh.interval.ms" = "1000"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[state]
{state}
flush_interval = "200ms"

[http]
listen = "127.0.0.1:0"

[evaluation]
interval = "1s"
# Seconds-long thresholds: FreshwatchFeedBlind is tests/knowing.rs' subject, not these.
blind_after = "1h"

{extra}
"#
    )
}

struct Instance {
    base_url: String,
    shutdown: CancellationToken,
    running: freshwatch::app::Running,
}

impl Instance {
    async fn start(text: &str) -> Instance {
        let config = freshwatch::config::parse(text, std::path::Path::new("test.toml"), &|_| None)
            .unwrap_or_else(|error| panic!("test config invalid: {error}\n{text}"));
        let shutdown = CancellationToken::new();
        let running = freshwatch::app::start(config, Arc::new(SystemClock), shutdown.clone())
            .await
            .expect("freshwatch starts");
        let base_url = format!("http://{}", running.http_address);
        let instance = Instance {
            base_url,
            shutdown,
            running,
        };
        let ready_url = format!("{}/readyz", instance.base_url);
        wait_until("freshwatch ready (partitions assigned)", Duration::from_secs(60), || {
            let url = ready_url.clone();
            async move {
                matches!(reqwest::get(&url).await, Ok(response) if response.status().is_success())
            }
        })
        .await;
        instance
    }

    async fn feeds(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/v1/feeds", self.base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn row(&self, feed: &str, key: &str) -> Option<Value> {
        self.feeds()
            .await
            .into_iter()
            .find(|row| row["feed"] == feed && row["key"] == key)
    }

    async fn wait_status(&self, feed: &str, key: &str, status: &str, timeout: Duration) -> Value {
        let what = format!("{feed}/{key} to be {status}");
        wait_until(&what, timeout, || async {
            self.row(feed, key)
                .await
                .is_some_and(|row| row["status"] == status)
        })
        .await;
        self.row(feed, key).await.unwrap()
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.running.wait())
            .await
            .expect("freshwatch stops within 30s")
            .expect("no source thread died");
    }
}

/// The value of one sample line in Prometheus text, e.g. `name{a="b"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.trim().parse().ok()
    })
}

#[test]
fn a_record_stamped_ten_days_ago_pages_alertmanager_within_two_intervals() {
    let cluster = cluster(&[("cdp.profile-updates", 1)]);
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    runtime().block_on(async {
        let text = config_text(
            &brokers,
            &format!("redis_url = \"{}\"", redis.url),
            &format!(
                r#"
[[feed]]
name = "profiles"
topic = "cdp.profile-updates"
warn_after = "30m"
critical_after = "2h"

[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"
"#,
                alertmanager.url
            ),
        );
        let instance = Instance::start(&text).await;
        let ten_days_ago = now_ms() - 10 * DAY_MS;
        let producer = producer(&brokers);
        let produced_at = Instant::now();
        produce(
            &producer,
            "cdp.profile-updates",
            None,
            "{}",
            Some(ten_days_ago),
            &[],
        );

        wait_until(
            "FeedStale in Alertmanager",
            Duration::from_secs(10),
            || async { !alertmanager.alerts_named("FeedStale").await.is_empty() },
        )
        .await;
        let elapsed = produced_at.elapsed();
        assert!(
            elapsed <= Duration::from_millis(2_000 + 500),
            "alert took {elapsed:?}; two evaluation intervals are 2s (+0.5s fetch)"
        );
        let alerts = alertmanager.alerts_named("FeedStale").await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let alert = &alerts[0];
        assert_eq!(alert["labels"]["feed"], "profiles");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert!(
            alert["labels"].get("key").is_none(),
            "unsplit feed has no key label"
        );
        let summary = alert["annotations"]["summary"].as_str().unwrap();
        assert!(
            summary.contains("profiles") && summary.contains("10d"),
            "{summary}"
        );
        let staleness: f64 = alert["annotations"]["staleness_seconds"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (staleness - 864_000.0).abs() < 60.0,
            "staleness {staleness}"
        );
        assert_eq!(
            alert["annotations"]["last_seen"].as_str().unwrap(),
            freshwatch::clock::rfc3339(ten_days_ago)
        );

        // Firing alerts are re-sent every resend_interval, pushing endsAt forward, so
        // Alertmanager never expires an alert that is still firing.
        let ends_at = |alerts: &[Value]| alerts[0]["endsAt"].as_str().unwrap().to_owned();
        let first_ends_at = ends_at(&alerts);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let later = alertmanager.alerts_named("FeedStale").await;
        assert_eq!(later.len(), 1);
        assert!(
            ends_at(&later) > first_ends_at,
            "endsAt moved: {first_ends_at} -> {}",
            ends_at(&later)
        );
        assert_eq!(
            later[0]["startsAt"], alert["startsAt"],
            "the same alert, not a new one"
        );

        let row = instance.row("profiles", "").await.unwrap();
        assert_eq!(row["status"], "critical");
        assert_eq!(row["records"], 1);
        assert_eq!(row["warn_after_seconds"], 1800.0);
        assert_eq!(row["critical_after_seconds"], 7200.0);
        let metrics = instance.metrics().await;
        assert_eq!(
            sample(
                &metrics,
                "freshwatch_feed_status{feed=\"profiles\",key=\"\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &metrics,
                "freshwatch_feed_last_seen_timestamp_seconds{feed=\"profiles\",key=\"\"}"
            ),
            Some(ten_days_ago as f64 / 1000.0)
        );
        assert!(
            sample(
                &metrics,
                "freshwatch_alerts_sent_total{sink=\"alertmanager-0\",outcome=\"accepted\"}"
            )
            .unwrap()
                >= 1.0
        );
        let staleness = sample(
            &metrics,
            "freshwatch_feed_staleness_seconds{feed=\"profiles\",key=\"\"}",
        )
        .unwrap();
        assert!(
            (staleness - 864_000.0).abs() < 60.0,
            "staleness {staleness}"
        );
        assert_eq!(
            sample(
                &metrics,
                "freshwatch_feed_records_total{feed=\"profiles\",key=\"\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &metrics,
                "freshwatch_consumer_lag_records{topic=\"cdp.profile-updates\",partition=\"0\"}"
            ),
            Some(0.0),
            "read to the high watermark"
        );
        let source: Value = reqwest::get(format!("{}/api/v1/source", instance.base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(source["records_consumed"], 1, "{source}");
        assert_eq!(source["assigned_partitions"], 1, "{source}");
        assert_eq!(source["lag_records"], 0, "{source}");
        assert_eq!(source["reachable"], true, "{source}");
        instance.stop().await;
    });
}

#[test]
fn a_feed_that_stops_goes_warning_then_critical_and_resolves_when_data_returns() {
    let cluster = cluster(&[("orders", 2)]);
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config_text(
            &brokers,
            &format!("redis_url = \"{}\"", redis.url),
            &format!(
                r#"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "3s"
critical_after = "6s"

[[alerts.alertmanager]]
url = "{}"
[[alerts.webhook]]
name = "hook"
url = "{}/hook"
"#,
                alertmanager.url, receiver.url
            ),
        );
        let instance = Instance::start(&text).await;
        let producer = producer(&brokers);
        produce(&producer, "orders", None, "{}", None, &[]);
        instance
            .wait_status("orders", "", "ok", Duration::from_secs(5))
            .await;

        instance
            .wait_status("orders", "", "warning", Duration::from_secs(6))
            .await;
        instance
            .wait_status("orders", "", "critical", Duration::from_secs(6))
            .await;
        wait_until(
            "critical alert in Alertmanager",
            Duration::from_secs(5),
            || async {
                alertmanager
                    .alerts_named("FeedStale")
                    .await
                    .iter()
                    .any(|alert| alert["labels"]["severity"] == "critical")
            },
        )
        .await;

        produce(&producer, "orders", None, "{}", None, &[]);
        instance
            .wait_status("orders", "", "ok", Duration::from_secs(5))
            .await;
        wait_until(
            "Alertmanager resolved the alert",
            Duration::from_secs(10),
            || async {
                alertmanager
                    .alerts_named("FeedStale")
                    .await
                    .iter()
                    .all(|alert| {
                        alert["status"]["state"] != "active" || {
                            let ends = alert["endsAt"].as_str().unwrap_or("");
                            chrono::DateTime::parse_from_rfc3339(ends)
                                .map(|ends| ends.timestamp_millis() <= now_ms())
                                .unwrap_or(false)
                        }
                    })
            },
        )
        .await;
        wait_until("three webhook posts", Duration::from_secs(5), || async {
            receiver.requests().len() >= 3
        })
        .await;
        let posts: Vec<Value> = receiver
            .requests()
            .into_iter()
            .map(|request| request.json)
            .collect();
        let sequence: Vec<(String, String)> = posts
            .iter()
            .map(|post| {
                (
                    post["status"].as_str().unwrap().to_owned(),
                    post["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            sequence,
            [
                ("firing".to_owned(), "warning".to_owned()),
                ("firing".to_owned(), "critical".to_owned()),
                ("resolved".to_owned(), "critical".to_owned()),
            ],
            "{posts:#?}"
        );
        for post in &posts {
            assert_eq!(post["feed"], "orders");
            assert_eq!(post["key"], "");
            assert_eq!(
                post["dedup_key"], posts[0]["dedup_key"],
                "dedup_key is stable"
            );
            assert!(post["summary"].as_str().unwrap().contains("orders"));
            assert!(post["last_seen"].is_string());
            assert!(post["staleness_seconds"].is_number());
        }
        assert!(posts[2]["summary"]
            .as_str()
            .unwrap()
            .contains("fresh again"));
        instance.stop().await;
    });
}

#[test]
fn a_tenant_that_never_appears_is_paged_as_never_seen() {
    let cluster = cluster(&[("cdp.profile-updates", 3)]);
    let brokers = cluster.bootstrap_servers();
    let alertmanager = Alertmanager::start();
    let state = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let text = config_text(
            &brokers,
            &format!("path = \"{}\"", state.path().display()),
            &format!(
                r#"
[[feed]]
name = "profiles"
topic = "cdp.profile-updates"
split_by = {{ json = "/tenant_id" }}
timestamp = {{ json = "/updated_at" }}
warn_after = "5s"
critical_after = "8s"
expected = ["acme", "globex", "initech"]

# A misspelt topic: no record will ever come, and the feed has no expected value to miss.
[[feed]]
name = "regions"
topic = "cdp.region-updtaes"
split_by = "key"
warn_after = "5s"
critical_after = "8s"

[[alerts.alertmanager]]
url = "{}"
"#,
                alertmanager.url
            ),
        );
        let instance = Instance::start(&text).await;
        let producer = producer(&brokers);
        // Stamped two minutes ahead (within max_future_skew), so these tenants stay fresh for
        // the whole test while initech's never-seen window (critical_after) runs out.
        for tenant in ["acme", "globex", "umbrella"] {
            let payload = format!(
                r#"{{"tenant_id":"{tenant}","updated_at":"{}"}}"#,
                freshwatch::clock::rfc3339(now_ms() + 120_000)
            );
            produce(
                &producer,
                "cdp.profile-updates",
                Some(tenant),
                &payload,
                None,
                &[],
            );
        }
        for tenant in ["acme", "globex", "umbrella"] {
            instance
                .wait_status("profiles", tenant, "ok", Duration::from_secs(5))
                .await;
        }
        let row = instance
            .wait_status("profiles", "initech", "never_seen", Duration::from_secs(10))
            .await;
        assert!(row["last_seen"].is_null());
        assert!(row["staleness_seconds"].is_null());
        for tenant in ["acme", "globex", "umbrella"] {
            let row = instance.row("profiles", tenant).await.unwrap();
            assert_eq!(row["status"], "ok", "{row}");
            assert_eq!(row["records"], 1);
        }
        wait_until(
            "never-seen alert for initech",
            Duration::from_secs(5),
            || async {
                alertmanager
                    .alerts_named("FeedStale")
                    .await
                    .iter()
                    .any(|alert| {
                        alert["labels"]["key"] == "initech"
                            && alert["labels"]["severity"] == "critical"
                    })
            },
        )
        .await;
        let whole = instance
            .wait_status("regions", "", "never_seen", Duration::from_secs(10))
            .await;
        assert!(whole["last_seen"].is_null(), "{whole}");
        wait_until(
            "never-seen alert for the misspelt topic's feed as a whole",
            Duration::from_secs(5),
            || async { alertmanager.alerts_named("FeedStale").await.len() == 2 },
        )
        .await;
        let alerts = alertmanager.alerts_named("FeedStale").await;
        let mut paged: Vec<(String, String)> = alerts
            .iter()
            .map(|alert| {
                assert!(alert["annotations"]["summary"]
                    .as_str()
                    .unwrap()
                    .contains("never been seen"));
                let label = |name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
                (label("feed"), label("key"))
            })
            .collect();
        paged.sort();
        assert_eq!(
            paged,
            [
                ("profiles".to_owned(), "initech".to_owned()),
                ("regions".to_owned(), String::new())
            ],
            "only initech and the misspelt feed page: {alerts:#?}"
        );
        let metrics = instance.metrics().await;
        assert_eq!(
            sample(
                &metrics,
                "freshwatch_feed_status{feed=\"profiles\",key=\"initech\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(&metrics, "freshwatch_feed_keys{feed=\"profiles\"}"),
            Some(4.0)
        );
        instance.stop().await;
    });
}

#[test]
fn event_time_comes_from_json_headers_or_the_record_as_configured() {
    let cluster = cluster(&[("json-ts", 1), ("header-ts", 1), ("record-ts", 1)]);
    let brokers = cluster.bootstrap_servers();
    let state = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let text = config_text(
            &brokers,
            &format!("path = \"{}\"", state.path().display()),
            r#"
[[feed]]
name = "json-rfc3339"
topic = "json-ts"
split_by = { json = "/kind" }
timestamp = { json = "/meta/at" }

[[feed]]
name = "header-ms"
topic = "header-ts"
timestamp = { header = "ts" }

[[feed]]
name = "record"
topic_regex = "^record-"
"#,
        );
        let instance = Instance::start(&text).await;
        let producer = producer(&brokers);
        let base = now_ms() - 60_000;
        produce(
            &producer,
            "json-ts",
            None,
            r#"{"kind":"rfc","meta":{"at":"2026-01-02T03:04:05.678Z"}}"#,
            None,
            &[],
        );
        produce(
            &producer,
            "json-ts",
            None,
            r#"{"kind":"secs","meta":{"at":1767323045}}"#,
            None,
            &[],
        );
        produce(
            &producer,
            "json-ts",
            None,
            r#"{"kind":"millis","meta":{"at":1767323045678}}"#,
            None,
            &[],
        );
        let header_value = (base + 1).to_string();
        produce(
            &producer,
            "header-ts",
            None,
            "x",
            Some(base - DAY_MS),
            &[("ts", header_value.as_bytes())],
        );
        produce(&producer, "record-ts", None, "x", Some(base + 2), &[]);

        wait_until(
            "all five records tracked",
            Duration::from_secs(10),
            || async {
                let rows = instance.feeds().await;
                rows.iter()
                    .filter(|row| row["last_seen"].is_string())
                    .count()
                    == 5
            },
        )
        .await;
        let last_seen = |row: Value| row["last_seen"].as_str().unwrap().to_owned();
        assert_eq!(
            last_seen(instance.row("json-rfc3339", "rfc").await.unwrap()),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(
            last_seen(instance.row("json-rfc3339", "secs").await.unwrap()),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            last_seen(instance.row("json-rfc3339", "millis").await.unwrap()),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(
            last_seen(instance.row("header-ms", "").await.unwrap()),
            freshwatch::clock::rfc3339(base + 1),
            "the header wins over the record timestamp"
        );
        assert_eq!(
            last_seen(instance.row("record", "").await.unwrap()),
            freshwatch::clock::rfc3339(base + 2)
        );
        instance.stop().await;
    });
}

#[test]
fn malformed_records_from_kcat_are_counted_and_never_crash_the_consumer() {
    let cluster = cluster(&[("profiles", 1), ("signals", 1)]);
    let brokers = cluster.bootstrap_servers();
    let state = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let text = config_text(
            &brokers,
            &format!("path = \"{}\"", state.path().display()),
            r#"
[[feed]]
name = "profiles"
topic = "profiles"
split_by = { json = "/tenant_id" }
timestamp = { json = "/updated_at" }

[[feed]]
name = "signals"
topic = "signals"
split_by = { header = "tenant" }
timestamp = { header = "ts" }
"#,
        );
        let instance = Instance::start(&text).await;
        let good_at = now_ms() - 5_000;
        let good = format!(r#"{{"tenant_id":"acme","updated_at":{good_at}}}"#);
        let profile_records: Vec<KcatRecord> = [
            r#"{"tenant_id":"acme","updated_at":"#, // truncated JSON
            "not json at all",                      // garbage
            r#"{"updated_at":1767323045}"#,         // no split field
            r#"{"tenant_id":{"nested":1},"updated_at":1}"#, // object as split value
            r#"{"tenant_id":"acme"}"#,              // no timestamp
            r#"{"tenant_id":"acme","updated_at":"yesterday"}"#, // bad timestamp
            good.as_str(),
        ]
        .iter()
        .map(|value| KcatRecord {
            key: None,
            value: value.to_string(),
            headers: vec![],
        })
        .collect();
        kcat_produce(&brokers, "profiles", &profile_records);
        let good_header = good_at.to_string();
        let signal_records = vec![
            KcatRecord {
                key: None,
                value: "a".into(),
                headers: vec![
                    ("tenant".into(), "acme".into()),
                    ("ts".into(), "\u{1}\u{2}garbage".into()),
                ],
            },
            KcatRecord {
                key: None,
                value: "b".into(),
                headers: vec![("ts".into(), good_header.clone())],
            },
            KcatRecord {
                key: None,
                value: "c".into(),
                headers: vec![("tenant".into(), "acme".into()), ("ts".into(), good_header)],
            },
        ];
        kcat_produce(&brokers, "signals", &signal_records);

        wait_until(
            "valid records tracked after the garbage",
            Duration::from_secs(15),
            || async {
                let profiles = instance.row("profiles", "acme").await;
                let signals = instance.row("signals", "acme").await;
                profiles.is_some_and(|row| row["last_seen"].is_string())
                    && signals.is_some_and(|row| row["last_seen"].is_string())
            },
        )
        .await;
        let expected_last_seen = freshwatch::clock::rfc3339(good_at);
        assert_eq!(
            instance.row("profiles", "acme").await.unwrap()["last_seen"],
            expected_last_seen.as_str()
        );
        assert_eq!(
            instance.row("signals", "acme").await.unwrap()["last_seen"],
            expected_last_seen.as_str()
        );
        let metrics = instance.metrics().await;
        let errors = |feed: &str, reason: &str| {
            sample(
                &metrics,
                &format!("freshwatch_record_errors_total{{feed=\"{feed}\",reason=\"{reason}\"}}"),
            )
            .unwrap_or_else(|| panic!("no {feed}/{reason} sample in\n{metrics}"))
        };
        assert_eq!(errors("profiles", "invalid_json"), 2.0);
        assert_eq!(errors("profiles", "missing_split"), 1.0);
        assert_eq!(errors("profiles", "invalid_split"), 1.0);
        assert_eq!(errors("profiles", "missing_timestamp"), 1.0);
        assert_eq!(errors("profiles", "invalid_timestamp"), 1.0);
        assert_eq!(errors("signals", "invalid_timestamp"), 1.0);
        assert_eq!(errors("signals", "missing_split"), 1.0);
        let healthy = reqwest::get(format!("{}/healthz", instance.base_url))
            .await
            .unwrap();
        assert!(healthy.status().is_success());
        instance.stop().await;
    });
}

#[test]
fn tail_mode_reads_only_the_newest_record_when_the_watermark_moves() {
    let cluster = cluster(&[("busy", 4)]);
    let brokers = cluster.bootstrap_servers();
    let state = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let producer = producer(&brokers);
        let base = now_ms() - 3_600_000;
        for offset in 0..400 {
            let key = format!("k{offset}");
            produce_no_flush(&producer, "busy", &key, base + offset);
        }
        producer.flush(Duration::from_secs(5)).unwrap();
        let text = config_text(
            &brokers,
            &format!("path = \"{}\"", state.path().display()),
            r#"
[[feed]]
name = "busy"
topic = "busy"
mode = "tail"
"#,
        )
        .replace(
            "[kafka.properties]",
            "tail_interval = \"200ms\"\n[kafka.properties]",
        );
        let instance = Instance::start(&text).await;
        let newest = freshwatch::clock::rfc3339(base + 399);
        wait_until(
            "tail mode learns the newest record",
            Duration::from_secs(10),
            || async {
                instance
                    .row("busy", "")
                    .await
                    .is_some_and(|row| row["last_seen"] == newest.as_str())
            },
        )
        .await;
        for offset in 400..410 {
            let key = format!("k{offset}");
            produce_no_flush(&producer, "busy", &key, base + offset);
        }
        producer.flush(Duration::from_secs(5)).unwrap();
        let newest = freshwatch::clock::rfc3339(base + 409);
        wait_until(
            "tail mode follows the watermark",
            Duration::from_secs(10),
            || async {
                instance
                    .row("busy", "")
                    .await
                    .is_some_and(|row| row["last_seen"] == newest.as_str())
            },
        )
        .await;
        let row = instance.row("busy", "").await.unwrap();
        assert_eq!(
            row["records"], 10,
            "records counted from watermark movement: {row}"
        );
        let metrics = instance.metrics().await;
        assert_eq!(
            sample(&metrics, "freshwatch_records_consumed_total"),
            Some(0.0),
            "tail mode consumes nothing"
        );

        // A producer clock a day ahead: clamped to arrival time and counted, as in consume mode.
        let before_ms = now_ms();
        produce_no_flush(&producer, "busy", "k-future", now_ms() + DAY_MS);
        producer.flush(Duration::from_secs(5)).unwrap();
        wait_until(
            "the future timestamp is counted",
            Duration::from_secs(10),
            || async {
                sample(
                    &instance.metrics().await,
                    "freshwatch_record_errors_total{feed=\"busy\",reason=\"future_timestamp\"}",
                ) == Some(1.0)
            },
        )
        .await;
        let row = instance.row("busy", "").await.unwrap();
        let last_seen = chrono::DateTime::parse_from_rfc3339(row["last_seen"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(
            last_seen >= before_ms && last_seen <= now_ms(),
            "last-seen is the arrival time, not tomorrow: {row}"
        );
        instance.stop().await;
    });
}

fn produce_no_flush(producer: &BaseProducer, topic: &str, key: &str, timestamp_ms: i64) {
    producer
        .send(
            BaseRecord::to(topic)
                .key(key)
                .payload("{}")
                .timestamp(timestamp_ms),
        )
        .map_err(|(error, _)| error)
        .unwrap();
}

#[test]
fn a_split_feed_at_max_keys_refuses_new_keys_counts_them_and_alerts() {
    let cluster = cluster(&[("tenants", 1)]);
    let brokers = cluster.bootstrap_servers();
    let alertmanager = Alertmanager::start();
    let state = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let text = config_text(
            &brokers,
            &format!("path = \"{}\"", state.path().display()),
            &format!(
                r#"
[[feed]]
name = "tenants"
topic = "tenants"
split_by = "key"
max_keys = 3

[[alerts.alertmanager]]
url = "{}"
"#,
                alertmanager.url
            ),
        );
        let instance = Instance::start(&text).await;
        let producer = producer(&brokers);
        for tenant in ["a", "b", "c", "d", "e", "a"] {
            produce_no_flush(&producer, "tenants", tenant, now_ms());
        }
        producer.flush(Duration::from_secs(5)).unwrap();
        wait_until(
            "FreshwatchKeyLimit in Alertmanager",
            Duration::from_secs(10),
            || async {
                !alertmanager
                    .alerts_named("FreshwatchKeyLimit")
                    .await
                    .is_empty()
            },
        )
        .await;
        let alerts = alertmanager.alerts_named("FreshwatchKeyLimit").await;
        assert_eq!(alerts[0]["labels"]["feed"], "tenants");
        assert_eq!(alerts[0]["labels"]["severity"], "warning");
        let rows = instance.feeds().await;
        assert_eq!(rows.len(), 3, "{rows:#?}");
        assert_eq!(instance.row("tenants", "a").await.unwrap()["records"], 2);
        let metrics = instance.metrics().await;
        assert_eq!(
            sample(
                &metrics,
                "freshwatch_feed_keys_refused_total{feed=\"tenants\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&metrics, "freshwatch_feed_keys{feed=\"tenants\"}"),
            Some(3.0)
        );
        instance.stop().await;
    });
}
