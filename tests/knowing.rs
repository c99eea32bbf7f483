//! Stale only when freshwatch knows: no page while it is blind, no blindness that lasts in
//! silence, and no amnesia. Each test breaks when the guarantee it names is broken in the code
//! (see the README's Reliability table): real freshwatch processes, redis-server and
//! Alertmanager, against librdkafka's mock cluster. `tests/tansu.rs` runs the restart, outage
//! and Redis-loss scenarios against a separate broker process.

mod common;

use std::time::Duration;

use common::{
    now_ms, produce_one, producer, runtime, wait_until, Alertmanager, FreshwatchProcess,
    RedisServer,
};
use rdkafka::mocking::MockCluster;

const DAY_MS: i64 = 86_400_000;

/// A config on the mock cluster with short intervals; `group` and `start` vary by scenario,
/// `evaluation` adds keys to `[evaluation]`.
fn config(
    brokers: &str,
    group: &str,
    start: &str,
    redis_url: &str,
    evaluation: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
start = "{start}"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"reconnect.backoff.max.ms" = "1000"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"statistics.interval.ms" = "200"

[state]
redis_url = "{redis_url}"
flush_interval = "100ms"

[evaluation]
interval = "200ms"
{evaluation}

{extra}
"#
    )
}

#[test]
fn a_broker_outage_pages_nothing_from_its_first_moment_and_a_long_one_pages_source_down_once_not_per_feed(
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("live", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    // The grace is longer than warn_after: judging must stop at the first failed request, not
    // when it ends. blind_after is shorter still: the outage is one cause, paged once by
    // FreshwatchSourceDown, never by a FreshwatchFeedBlind per feed.
    let text = config(
        &brokers,
        "knowing-outage",
        "earliest",
        &redis.url,
        "source_grace = \"10s\"\nblind_after = \"5s\"\nrecovery_grace = \"2s\"",
        &format!(
            r#"
[[feed]]
name = "live"
topic = "live"
warn_after = "3s"
critical_after = "60s"
[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"
"#,
            alertmanager.url
        ),
    );
    let producer = producer(&brokers);
    let freshwatch = runtime.block_on(async {
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        produce_one(&producer, "live", "k", now_ms());
        wait_until("live ok", Duration::from_secs(15), || async {
            freshwatch.status("live", "").await.as_deref() == Some("ok")
        })
        .await;
        freshwatch
    });

    cluster.broker_down(1).unwrap();
    runtime.block_on(async {
        // Past warn_after, well within source_grace.
        wait_until("live turns unknown", Duration::from_secs(10), || async {
            freshwatch.status("live", "").await.as_deref() == Some("unknown")
        })
        .await;
        assert!(
            alertmanager
                .alerts_named("FreshwatchSourceDown")
                .await
                .is_empty(),
            "the source-down page waits for source_grace"
        );
        wait_until(
            "FreshwatchSourceDown after source_grace",
            Duration::from_secs(30),
            || async {
                !alertmanager
                    .alerts_named("FreshwatchSourceDown")
                    .await
                    .is_empty()
            },
        )
        .await;
        let down = alertmanager.alerts_named("FreshwatchSourceDown").await;
        let summary = down[0]["annotations"]["summary"]
            .as_str()
            .unwrap_or_default();
        let source = reqwest::get(format!("{}/api/v1/source", freshwatch.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            summary.contains("(1 feed(s) held"),
            "{summary}\n{source}\n{:?}\n{}",
            freshwatch.rows().await,
            freshwatch.log()
        );
        let held = freshwatch.feed_field("live", "", "held_by").await;
        assert_eq!(held, Some(serde_json::json!("FreshwatchSourceDown")));
        assert!(
            alertmanager
                .alerts_named("FreshwatchFeedBlind")
                .await
                .is_empty(),
            "one cause, one page: the feed is held by FreshwatchSourceDown"
        );
        assert!(
            alertmanager.alerts_named("FeedStale").await.is_empty(),
            "no page while blind"
        );
    });

    cluster.broker_up(1).unwrap();
    runtime.block_on(async {
        // Back, and nothing new arrived: live really is stale now, and says so.
        wait_until(
            "live judged once Kafka is known again",
            Duration::from_secs(40),
            || async { freshwatch.status("live", "").await.as_deref() == Some("warning") },
        )
        .await;
        let stale = alertmanager.alerts_named("FeedStale").await;
        assert_eq!(stale.len(), 1, "{stale:#?}");
    });
    drop(freshwatch);
    drop(cluster);
}

#[test]
fn a_new_group_at_latest_on_a_topic_with_history_can_still_page() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("history", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    // More retained records than catchup_tolerance, all before freshwatch starts.
    for index in 0..500 {
        produce_one(
            &producer,
            "history",
            &format!("k{index}"),
            now_ms() - DAY_MS,
        );
    }
    let text = config(
        &brokers,
        "knowing-latest",
        "latest",
        &redis.url,
        "",
        r#"
[[feed]]
name = "history"
topic = "history"
warn_after = "2s"
critical_after = "4s"
"#,
    );
    runtime.block_on(async {
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        // Nothing arrives after the start: never seen, paged, not unknown for good.
        wait_until("history never_seen", Duration::from_secs(20), || async {
            freshwatch.status("history", "").await.as_deref() == Some("never_seen")
        })
        .await;
        assert_eq!(
            freshwatch
                .metric("freshwatch_consumer_lag_records{topic=\"history\",partition=\"0\"}")
                .await,
            Some(0.0),
            "a group at latest is not 500 records behind"
        );
    });
    drop(cluster);
}

#[test]
fn a_ten_day_silence_survives_redis_coming_back_empty_and_then_a_kill_9() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("quiet", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    let silent_since_ms = now_ms() - 10 * DAY_MS;
    produce_one(&producer, "quiet", "k", silent_since_ms);
    let text = config(
        &brokers,
        "knowing-redis-loss",
        "earliest",
        &redis.url,
        "",
        r#"
[[feed]]
name = "quiet"
topic = "quiet"
warn_after = "1h"
critical_after = "1d"
"#,
    );
    runtime.block_on(common::ten_day_silence_survives_redis_loss(
        &mut redis,
        directory.path(),
        &text,
        silent_since_ms,
    ));
    drop(cluster);
}

#[test]
fn offsets_are_committed_only_after_the_state_they_cover_is_written() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    let text = config(
        &brokers,
        "knowing-commit",
        "earliest",
        &redis.url,
        "",
        r#"
[[feed]]
name = "orders"
topic = "orders"
split_by = "key"
warn_after = "1h"
critical_after = "1d"
"#,
    );
    runtime.block_on(async {
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        produce_one(&producer, "orders", "first", now_ms());
        wait_until("first is stored", Duration::from_secs(15), || async {
            redis.command(&["HEXISTS", "freshwatch:{orders}:last_seen", "first"])
                == redis::Value::Int(1)
        })
        .await;

        // Redis stops taking writes: what freshwatch reads now cannot be stored.
        redis.command(&["CLIENT", "PAUSE", "60000", "WRITE"]);
        let unstored_ms = now_ms() - DAY_MS;
        produce_one(&producer, "orders", "unstored", unstored_ms);
        wait_until("unstored is read", Duration::from_secs(15), || async {
            freshwatch
                .last_seen_ms("orders", "unstored")
                .await
                .is_some()
        })
        .await;
        // Many flush intervals: a commit that did not wait for the write would be done now.
        tokio::time::sleep(Duration::from_secs(3)).await;
        freshwatch.kill();
        redis.command(&["CLIENT", "UNPAUSE"]);
        assert_eq!(
            redis.command(&["HEXISTS", "freshwatch:{orders}:last_seen", "unstored"]),
            redis::Value::Int(0),
            "the write died with the process"
        );

        // Same group: the record is read again, since its offset was never committed.
        freshwatch.restart();
        freshwatch.wait_ready().await;
        wait_until(
            "unstored is read again after the restart",
            Duration::from_secs(20),
            || async { freshwatch.last_seen_ms("orders", "unstored").await == Some(unstored_ms) },
        )
        .await;
    });
    drop(cluster);
}

#[test]
fn every_series_comes_back_after_kill_9_from_the_state_store_alone() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    let feeds = r#"
[[feed]]
name = "orders"
topic = "orders"
split_by = "key"
warn_after = "1h"
critical_after = "1d"
"#;
    let expected: Vec<(&str, i64)> = vec![
        ("acme", now_ms() - 10 * DAY_MS),
        ("globex", now_ms() - 2 * 3_600_000),
        ("initech", now_ms() - 60_000),
    ];
    for (key, timestamp_ms) in &expected {
        produce_one(&producer, "orders", key, *timestamp_ms);
    }
    runtime.block_on(async {
        let first_text = config(&brokers, "knowing-first", "earliest", &redis.url, "", feeds);
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &first_text);
        freshwatch.wait_ready().await;
        wait_until("all three read", Duration::from_secs(15), || async {
            freshwatch.rows().await.len() == 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        freshwatch.kill();

        // A new group at `latest`: Kafka gives nothing back, so all of it is the state store's.
        let second = tempfile::tempdir().unwrap();
        let second_text = config(&brokers, "knowing-second", "latest", &redis.url, "", feeds);
        let restarted = FreshwatchProcess::start(second.path(), &second_text);
        restarted.wait_ready().await;
        for (key, timestamp_ms) in &expected {
            assert_eq!(
                restarted.last_seen_ms("orders", key).await,
                Some(*timestamp_ms),
                "{key}"
            );
        }
        assert_eq!(
            restarted.status("orders", "acme").await.as_deref(),
            Some("critical")
        );
        assert_eq!(
            restarted.status("orders", "globex").await.as_deref(),
            Some("warning")
        );
    });
    drop(cluster);
}

#[test]
fn a_state_store_found_empty_after_the_group_has_read_says_state_was_lost() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    produce_one(&producer, "orders", "k", now_ms() - DAY_MS);
    runtime.block_on(async {
        let receiver = common::receiver::WebhookReceiver::start().await;
        let text = config(
            &brokers,
            "knowing-lost",
            "earliest",
            &redis.url,
            "",
            &format!(
                r#"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "1h"
critical_after = "2d"
[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        );
        // An allkeys policy may evict freshwatch's keys: said at start.
        redis.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        assert_eq!(
            freshwatch.metric("freshwatch_state_store_evictable").await,
            Some(1.0)
        );
        assert!(freshwatch.log().contains("maxmemory-policy"));
        wait_until("the record is read", Duration::from_secs(15), || async {
            freshwatch.last_seen_ms("orders", "").await.is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        freshwatch.kill();
        let lost = |receiver: &common::receiver::WebhookReceiver| {
            receiver
                .requests()
                .iter()
                .any(|request| request.json["alertname"] == "FreshwatchStateLost")
        };
        assert!(!lost(&receiver), "not on a first start");

        redis.command(&["FLUSHALL"]);
        freshwatch.restart();
        freshwatch.wait_ready().await;
        wait_until(
            "FreshwatchStateLost pages",
            Duration::from_secs(20),
            || async { lost(&receiver) },
        )
        .await;
    });
    drop(cluster);
}

/// Issue #18: state loss is repaired whole. A 30-minute silence, an open roll-up, the
/// transition history and a volume baseline are in Redis; Redis is flushed while freshwatch runs: each is written back,
/// the silence never leaves `GET /api/v1/silences` meanwhile, and after a `kill -9` it is known
/// from Redis alone.
#[test]
fn a_silence_a_roll_up_and_the_history_are_written_back_when_redis_comes_back_empty() {
    const ADMIN_TOKEN: &str = "admin-token-0123456789";
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 1, 1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("capped", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    for tenant in ["acme", "globex", "initech"] {
        produce_one(&producer, "profiles", tenant, now_ms() - DAY_MS);
    }
    for tenant in ["one", "two"] {
        produce_one(&producer, "capped", tenant, now_ms());
    }
    runtime.block_on(async {
        let receiver = common::receiver::WebhookReceiver::start().await;
        let text = config(
            &brokers,
            "knowing-repair",
            "earliest",
            &redis.url,
            "source_grace = \"2s\"",
            &format!(
                r#"
[[feed]]
name = "profiles"
topic = "profiles"
split_by = "key"
warn_after = "1h"
critical_after = "2d"
rollup_after = 2
[[feed]]
name = "orders"
topic = "orders"
warn_after = "1h"
critical_after = "2d"
min_rate = "60/min"
volume_window = "10s"
volume_for = "1h"
[[feed]]
name = "capped"
topic = "capped"
split_by = "key"
warn_after = "1h"
critical_after = "2d"
max_keys = 1
[[group]]
name = "feeder"
group_id = "knowing-repair"
topics = ["orders"]
[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        );
        let mut freshwatch = FreshwatchProcess::start_with_http(
            directory.path(),
            &text,
            &format!("admin_token = \"{ADMIN_TOKEN}\""),
        );
        freshwatch.wait_ready().await;
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/silences", freshwatch.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({
                "matchers": {"feed": "billing"},
                "duration": "30m",
                "comment": "billing migration"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: serde_json::Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let stored = |hash: &str, field: &str| {
            redis.command(&["HEXISTS", &format!("freshwatch:{hash}"), field])
                == redis::Value::Int(1)
        };
        wait_until(
            "the roll-up and the history are stored",
            Duration::from_secs(30),
            || async {
                stored("rollups", "profiles")
                    && stored("history", "profiles")
                    && stored("key_limits", "capped")
                    && stored("groups", r#"["feeder","orders"]"#)
            },
        )
        .await;
        assert!(stored("silences", &id));
        // An alert about freshwatch itself fires (Kafka down past its grace) when Redis empties.
        let source_down = "freshwatch/system/FreshwatchSourceDown/";
        cluster.broker_down(1).unwrap();
        wait_until("FreshwatchSourceDown is stored", Duration::from_secs(30), || async {
            stored("self_alerts", source_down)
        })
        .await;
        let listed = |freshwatch: &FreshwatchProcess| {
            let url = format!("{}/api/v1/silences", freshwatch.base_url);
            let id = id.clone();
            async move {
                let silences: Vec<serde_json::Value> = reqwest::get(url)
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap_or_default();
                silences.iter().any(|silence| silence["id"] == *id)
            }
        };

        redis.command(&["FLUSHALL"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                listed(&freshwatch).await,
                "the silence left the API after FLUSHALL:\n{}",
                freshwatch.log()
            );
            let volume = stored("volume", r#"["orders",null]"#);
            let alerts = stored("key_limits", "capped") && stored("self_alerts", source_down);
            let group = stored("groups", r#"["feeder","orders"]"#);
            if stored("silences", &id)
                && stored("rollups", "profiles")
                && stored("history", "profiles")
                && volume
                && alerts
                && group
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not written back: silence {}, roll-up {}, history {}, volume {volume}, key limit {}, source down {}, group {group}\n{}",
                stored("silences", &id),
                stored("rollups", "profiles"),
                stored("history", "profiles"),
                stored("key_limits", "capped"),
                stored("self_alerts", source_down),
                freshwatch.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Several replica reloads (ha.reload_interval, 2s): none drops it.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(listed(&freshwatch).await, "a reload dropped the silence");
        cluster.broker_up(1).unwrap();
        wait_until("FreshwatchSourceDown resolves", Duration::from_secs(30), || async {
            !stored("self_alerts", source_down)
        })
        .await;

        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        assert!(
            listed(&freshwatch).await,
            "after kill -9 the silence is known from Redis alone"
        );
        let history: String =
            redis::from_redis_value(redis.command(&["HGET", "freshwatch:history", "profiles"]))
                .unwrap();
        let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
        assert_eq!(history.len(), 3, "each key's warning: {history:?}");
    });
    drop(cluster);
}
