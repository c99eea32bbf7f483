//! Never blind, never amnesiac: Kafka outages, catch-up after downtime, Redis loss and `kill -9`
//! under load. Each test drives real processes (freshwatch, redis-server, Alertmanager) against
//! librdkafka's mock cluster, with thresholds scaled down to seconds.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::{now_ms, runtime, wait_until, Alertmanager, FreshwatchProcess, RedisServer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const DAY_MS: i64 = 86_400_000;

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

fn send(producer: &BaseProducer, topic: &str, key: &str, timestamp_ms: i64) {
    loop {
        match producer.send(
            BaseRecord::to(topic)
                .key(key)
                .payload("{}")
                .timestamp(timestamp_ms),
        ) {
            Ok(()) => return,
            Err((_, _)) => {
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

fn config(brokers: &str, state: &str, extra: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-resilience"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"reconnect.backoff.max.ms" = "1000"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"statistics.interval.ms" = "200"

[state]
{state}
flush_interval = "100ms"
down_grace = "2s"

[evaluation]
interval = "200ms"
source_grace = "2s"
# Seconds-long thresholds: FreshwatchFeedBlind is tests/knowing.rs' subject, not these.
blind_after = "1h"
recovery_grace = "2s"

{extra}
"#
    )
}

#[test]
fn a_kafka_outage_pages_once_and_turns_would_be_stale_feeds_unknown_not_stale() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("live", 1, 1).unwrap();
    cluster.create_topic("quiet", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let text = config(
        &brokers,
        &format!("path = \"{}\"", directory.path().join("state").display()),
        &format!(
            r#"
[[feed]]
name = "live"
topic = "live"
warn_after = "20s"
critical_after = "90s"
[[feed]]
name = "quiet"
topic = "quiet"
warn_after = "4s"
critical_after = "8s"
[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"
"#,
            alertmanager.url
        ),
    );
    let producer = producer(&brokers);
    send(&producer, "quiet", "q", now_ms() - 10 * DAY_MS);
    send(&producer, "live", "l", now_ms());
    producer.flush(Duration::from_secs(5)).unwrap();
    let freshwatch = runtime.block_on(async {
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until(
            "quiet critical, live ok",
            Duration::from_secs(10),
            || async {
                freshwatch.status("quiet", "").await.as_deref() == Some("critical")
                    && freshwatch.status("live", "").await.as_deref() == Some("ok")
            },
        )
        .await;
        freshwatch
    });

    cluster.broker_down(1).unwrap();
    runtime.block_on(async {
        wait_until(
            "FreshwatchSourceDown in Alertmanager",
            Duration::from_secs(30),
            || async {
                !alertmanager
                    .alerts_named("FreshwatchSourceDown")
                    .await
                    .is_empty()
            },
        )
        .await;
        assert_eq!(freshwatch.metric("freshwatch_source_up").await, Some(0.0));
        // live's silence passes warn_after during the outage: freshwatch cannot tell.
        wait_until("live turns unknown", Duration::from_secs(40), || async {
            freshwatch.status("live", "").await.as_deref() == Some("unknown")
        })
        .await;
        assert_eq!(
            freshwatch
                .metric("freshwatch_feed_status{feed=\"live\",key=\"\"}")
                .await,
            Some(4.0)
        );
        assert_eq!(
            freshwatch.status("quiet", "").await.as_deref(),
            Some("critical"),
            "firing stays firing"
        );
        let stale: Vec<_> = alertmanager.alerts_named("FeedStale").await;
        assert!(
            stale.iter().all(|alert| alert["labels"]["feed"] == "quiet"),
            "no new FeedStale during the outage: {stale:#?}"
        );
    });

    cluster.broker_up(1).unwrap();
    runtime.block_on(async {
        wait_until(
            "FreshwatchSourceDown resolves",
            Duration::from_secs(45),
            || async {
                alertmanager
                    .alerts_named("FreshwatchSourceDown")
                    .await
                    .iter()
                    .all(|alert| {
                        let ends = alert["endsAt"].as_str().unwrap_or("");
                        chrono::DateTime::parse_from_rfc3339(ends)
                            .map(|ends| ends.timestamp_millis() <= now_ms())
                            .unwrap_or(false)
                    })
            },
        )
        .await;
        // Back and caught up, live really is stale now; quiet was never resolved.
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while !matches!(
            freshwatch.status("live", "").await.as_deref(),
            Some("warning" | "critical")
        ) {
            assert!(
                std::time::Instant::now() < deadline,
                "live not judged again once caught up: {:?}\n{}",
                freshwatch.status("live", "").await,
                freshwatch.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            freshwatch.status("quiet", "").await.as_deref(),
            Some("critical")
        );
    });
    drop(freshwatch);
    drop(cluster);
}

#[test]
fn a_restart_behind_a_fresh_backlog_pages_nothing_and_one_behind_an_old_backlog_pages() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 8, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &brokers,
            &format!("redis_url = \"{}\"", redis.url),
            &format!(
                r#"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "10s"
critical_after = "20s"
[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        );
        send(&producer, "orders", "k", now_ms() - 2_000);
        producer.flush(Duration::from_secs(5)).unwrap();
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("orders ok", Duration::from_secs(10), || async {
            freshwatch.status("orders", "").await.as_deref() == Some("ok")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        freshwatch.stop(); // SIGTERM: it leaves the group, so the restart is assigned at once

        // Down long enough that the stored last-seen is past warn_after, while producers go
        // on: the backlog's newest records are fresh.
        tokio::time::sleep(Duration::from_secs(9)).await;
        for index in 0..150_000u32 {
            send(&producer, "orders", &format!("k{}", index % 64), now_ms());
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        freshwatch.restart();
        let mut seen_statuses = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = freshwatch.status("orders", "").await {
                seen_statuses.insert(status.clone());
                let consumed = freshwatch
                    .metric("freshwatch_records_consumed_total")
                    .await
                    .unwrap_or(0.0);
                if status == "ok" && consumed >= 150_000.0 {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no catch-up: {seen_statuses:?}\n{}",
                freshwatch.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !seen_statuses.contains("warning") && !seen_statuses.contains("critical"),
            "no stale status while catching up: {seen_statuses:?}"
        );
        assert!(
            receiver.requests().is_empty(),
            "no page while catching up: {:?}\n{}",
            receiver
                .requests()
                .iter()
                .map(|request| request.json.to_string())
                .collect::<Vec<_>>(),
            freshwatch.log()
        );

        // Now a backlog whose newest records really are old.
        freshwatch.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let old = now_ms() - 10 * DAY_MS;
        for index in 0..50_000u32 {
            send(&producer, "orders", &format!("k{}", index % 64), old);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        freshwatch.restart();
        wait_until("a page once caught up", Duration::from_secs(40), || async {
            receiver
                .requests()
                .iter()
                .any(|request| request.json["status"] == "firing")
        })
        .await;
        let consumed = freshwatch
            .metric("freshwatch_records_consumed_total")
            .await
            .unwrap_or(0.0);
        assert!(
            consumed >= 50_000.0 - 100.0,
            "paged only after reading the backlog ({consumed})"
        );
    });
    drop(cluster);
}

#[test]
fn redis_going_away_keeps_freshwatch_judging_and_nothing_is_lost_when_it_returns() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &brokers,
            &format!("redis_url = \"{}\"", redis.url),
            &format!(
                r#"
[ha]
lease = "3s"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "3s"
critical_after = "9s"
[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"
[[alerts.webhook]]
url = "{}/hook"
"#,
                alertmanager.url, receiver.url
            ),
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        redis.kill();
        let during_outage = now_ms();
        send(&producer, "orders", "k", during_outage);
        producer.flush(Duration::from_secs(5)).unwrap();
        wait_until(
            "FreshwatchStateStoreDown in Alertmanager",
            Duration::from_secs(20),
            || async {
                !alertmanager
                    .alerts_named("FreshwatchStateStoreDown")
                    .await
                    .is_empty()
            },
        )
        .await;
        assert_eq!(
            freshwatch.metric("freshwatch_state_store_up").await,
            Some(0.0)
        );
        let readyz = reqwest::get(format!("{}/readyz", freshwatch.base_url))
            .await
            .unwrap();
        assert_eq!(readyz.status(), 503);
        let body: serde_json::Value = readyz.json().await.unwrap();
        assert!(
            body["reasons"].to_string().contains("state store"),
            "{body}"
        );
        assert_eq!(body["status"], "degraded", "{body}");
        // Still judging from memory: the record seen during the outage, then the warning.
        wait_until(
            "orders warns while Redis is down",
            Duration::from_secs(10),
            || async { freshwatch.status("orders", "").await.as_deref() == Some("warning") },
        )
        .await;
        wait_until(
            "the page goes out though the outbox cannot be written",
            Duration::from_secs(10),
            || async {
                receiver
                    .requests()
                    .iter()
                    .any(|request| request.json["severity"] == "warning")
            },
        )
        .await;
        // Down for longer than the leader lease: the leader leads on, since nobody else can
        // take the lease, and the escalation is paged too.
        wait_until(
            "the critical page goes out with Redis down past the lease",
            Duration::from_secs(15),
            || async {
                receiver
                    .requests()
                    .iter()
                    .any(|request| request.json["severity"] == "critical")
            },
        )
        .await;
        assert_eq!(freshwatch.metric("freshwatch_leader").await, Some(1.0));

        redis.restart();
        wait_until(
            "the state store answers again",
            Duration::from_secs(20),
            || async { freshwatch.metric("freshwatch_state_store_up").await == Some(1.0) },
        )
        .await;
        wait_until(
            "FreshwatchStateStoreDown resolves",
            Duration::from_secs(20),
            || async {
                alertmanager
                    .alerts_named("FreshwatchStateStoreDown")
                    .await
                    .iter()
                    .all(|alert| {
                        chrono::DateTime::parse_from_rfc3339(alert["endsAt"].as_str().unwrap_or(""))
                            .map(|ends| ends.timestamp_millis() <= now_ms())
                            .unwrap_or(false)
                    })
            },
        )
        .await;
        // What was seen during the outage reached Redis once it returned.
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let stored: Option<i64> = redis::cmd("HGET")
            .arg("freshwatch:{orders}:last_seen")
            .arg("")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(stored, Some(during_outage));
        assert!(freshwatch.log().contains("state flush failed"));
        drop(freshwatch);
    });
    drop(cluster);
}

#[test]
fn kill_9_under_load_then_restart_gives_back_every_series_and_its_last_seen() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 4, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    let text = config(
        &brokers,
        &format!("redis_url = \"{}\"", redis.url),
        r#"
[[feed]]
name = "events"
topic = "events"
split_by = "key"
warn_after = "1h"
critical_after = "2h"
"#,
    );
    let base = now_ms() - 600_000;
    let mut newest: HashMap<String, i64> = HashMap::new();
    runtime.block_on(async {
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        for round in 0..6u32 {
            for index in 0..20_000u32 {
                let key = format!("tenant-{}", index % 200);
                let at = base + i64::from(round * 20_000 + index);
                newest.insert(key.clone(), at);
                send(&producer, "events", &key, at);
            }
            producer.flush(Duration::from_secs(10)).unwrap();
            if round == 2 {
                freshwatch.kill(); // mid-stream, with records in flight
            }
            if round == 4 {
                freshwatch.kill_and_restart();
            }
        }
        freshwatch.wait_ready().await;
        wait_until(
            "every series back with its newest last-seen",
            Duration::from_secs(60),
            || async {
                let rows = freshwatch.rows().await;
                rows.len() == 200
                    && rows.iter().all(|row| {
                        let key = row["key"].as_str().unwrap();
                        row["last_seen"].as_str()
                            == Some(freshwatch::clock::rfc3339(newest[key]).as_str())
                    })
            },
        )
        .await;
    });
    drop(cluster);
}

#[test]
fn a_firing_alert_stays_firing_across_kill_9_with_no_false_resolve_and_no_second_page() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &brokers,
            &format!("redis_url = \"{}\"", redis.url),
            &format!(
                r#"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "1h"
critical_after = "2h"
[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"
[[alerts.webhook]]
url = "{}/hook"
"#,
                alertmanager.url, receiver.url
            ),
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        send(&producer, "orders", "k", now_ms() - 10 * DAY_MS);
        producer.flush(Duration::from_secs(5)).unwrap();
        wait_until(
            "the critical page reaches Alertmanager and the webhook",
            Duration::from_secs(15),
            || async {
                !alertmanager.alerts_named("FeedStale").await.is_empty()
                    && !receiver.requests().is_empty()
            },
        )
        .await;
        let before = alertmanager.alerts_named("FeedStale").await;
        assert_eq!(before.len(), 1, "{before:#?}");
        assert_eq!(before[0]["labels"]["severity"], "critical");

        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        assert_eq!(
            freshwatch.status("orders", "").await.as_deref(),
            Some("critical"),
            "restored as it was"
        );
        // Several resend intervals after the restart, the same alert is still active.
        let restarted = std::time::Instant::now();
        wait_until(
            "the restarted instance re-sends the firing alert",
            Duration::from_secs(15),
            || async {
                freshwatch
                    .metric("freshwatch_alerts_sent_total{sink=\"alertmanager-0\",outcome=\"accepted\"}")
                    .await
                    .is_some_and(|sent| sent >= 2.0)
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(restarted.elapsed())).await;
        let after = alertmanager.alerts_named("FeedStale").await;
        assert_eq!(after.len(), 1, "{after:#?}");
        assert_eq!(after[0]["status"]["state"], "active", "{after:#?}");
        assert_eq!(
            after[0]["startsAt"], before[0]["startsAt"],
            "the same alert, taken up again, not a new one"
        );
        let ends_at = chrono::DateTime::parse_from_rfc3339(after[0]["endsAt"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(ends_at > now_ms(), "endsAt is in the future: not resolved");
        let pages: Vec<String> = receiver
            .requests()
            .iter()
            .filter(|request| request.json["alertname"] == "FeedStale")
            .map(|request| request.json["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(pages, ["firing"], "one page, no repeat and no false resolve");
        drop(freshwatch);
    });
    drop(cluster);
}

#[test]
fn redis_down_at_start_is_waited_for_and_freshwatch_starts_when_it_answers() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut redis = RedisServer::start();
    redis.kill(); // down before freshwatch starts, as after a region-wide outage
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let text = config(
            &brokers,
            &format!("redis_url = \"{}\"", redis.url),
            "[[feed]]\nname = \"orders\"\ntopic = \"orders\"\n",
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        wait_until(
            "freshwatch says it waits for the state store",
            Duration::from_secs(10),
            || async {
                freshwatch
                    .log()
                    .contains("state store does not answer at start")
            },
        )
        .await;
        assert!(freshwatch.is_running(), "it waits, it does not exit");
        redis.restart();
        freshwatch.wait_ready().await;
        assert_eq!(
            freshwatch.metric("freshwatch_state_store_up").await,
            Some(1.0)
        );
        drop(freshwatch);
    });
    drop(cluster);
}
