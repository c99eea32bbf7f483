//! One cause pages once: what freshwatch decided about a condition lives in the state store, so
//! neither a reload, a `kill -9` nor a Redis that lost its data makes it page again. Real
//! processes: `freshwatch run`, `redis-server`, librdkafka's mock cluster and a webhook receiver.

mod common;

use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::{runtime, wait_until, FreshwatchProcess, RedisServer};
use rdkafka::mocking::MockCluster;

/// One replica's config (`common::replica_config`) under this suite's own group.
fn config(brokers: &str, redis_url: &str, extra: &str) -> String {
    common::replica_config(
        brokers,
        redis_url,
        "freshwatch-pages-once",
        &format!("\n{extra}\n"),
    )
}

/// The webhook's `status` of every notification about `feed` named `alertname`, in order.
fn told(receiver: &WebhookReceiver, alertname: &str, feed: &str) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == alertname && request.json["feed"] == feed)
        .map(|request| request.json["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Waits for the `count`-th "config reloaded" line in the log.
async fn reloaded(freshwatch: &FreshwatchProcess, count: usize) {
    wait_until("the reload", Duration::from_secs(30), || async {
        freshwatch.log().matches("config reloaded").count() >= count
    })
    .await;
    freshwatch.wait_ready().await;
}

/// Issue #18: a split feed whose topic is never written (`typo`) pages `never_seen` once, then
/// not again after two SIGHUPs and a `kill -9`: its placeholder's verdict is restored.
#[test]
fn a_split_feed_that_never_saw_a_key_pages_once_across_reloads_and_kill_9() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("typo", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &brokers,
            &redis.url,
            &format!(
                r#"
[[feed]]
name = "typo"
topic = "typo"
split_by = "key"
warn_after = "1s"
critical_after = "2s"

[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("typo pages never_seen", Duration::from_secs(30), || async {
            !told(&receiver, "FeedStale", "typo").is_empty()
        })
        .await;
        assert_eq!(
            freshwatch.status("typo", "").await.as_deref(),
            Some("never_seen")
        );
        // Two reloads and a kill -9, each given time to page again (it would at once: the
        // feed is past critical_after from its persisted start).
        for round in 1..=2 {
            freshwatch.signal("HUP");
            reloaded(&freshwatch, round).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            freshwatch.status("typo", "").await.as_deref(),
            Some("never_seen")
        );
        assert_eq!(
            told(&receiver, "FeedStale", "typo"),
            ["firing"],
            "one condition, one page; log:\n{}",
            freshwatch.log()
        );
        drop(freshwatch);
    });
    drop(cluster);
}

/// The status of `feed`'s unsplit series as Redis holds it (`critical@<ms>`), and the fence.
fn stored_status(redis: &RedisServer, feed: &str) -> Option<String> {
    match redis.command(&["HGET", &format!("freshwatch:{{{feed}}}:status"), ""]) {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

fn stored_fence(redis: &RedisServer, feed: &str) -> Option<u64> {
    match redis.command(&["GET", &format!("freshwatch:{{{feed}}}:fence")]) {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).parse().ok(),
        _ => None,
    }
}

fn orders_with_webhook(receiver_url: &str) -> String {
    format!(
        r#"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "5s"
critical_after = "8s"

[[alerts.webhook]]
url = "{receiver_url}/hook"
"#
    )
}

/// Issue #18: the leader's term is 57 when Redis loses everything. Its statuses must still
/// reach Redis after the wipe (no write refused by the old term's fence), and a `kill -9` then
/// finds them there: the feed that went critical after the wipe does not page again.
#[test]
fn fencing_survives_a_wiped_store() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut redis = RedisServer::start();
    redis.command(&["SET", "freshwatch:leader_token", "56"]);
    let directory = tempfile::tempdir().unwrap();
    let producer = common::producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        // Fresh from the start: no never_seen page.
        common::produce_one(&producer, "orders", "k", common::now_ms());
        let text = config(&brokers, &redis.url, &orders_with_webhook(&receiver.url));
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("the leader's term 57", Duration::from_secs(15), || async {
            freshwatch.metric("freshwatch_leader").await == Some(1.0)
                && stored_fence(&redis, "orders") == Some(57)
        })
        .await;
        // Fresh now, then Redis loses everything, then the feed goes warning and critical.
        common::produce_one(&producer, "orders", "k", common::now_ms());
        wait_until("orders ok", Duration::from_secs(15), || async {
            freshwatch.status("orders", "").await.as_deref() == Some("ok")
        })
        .await;
        redis.restart_empty();
        // Every command the emptied Redis gets, to see which token the first writes carry.
        let monitor_path = directory.path().join("monitor.log");
        let mut monitor = std::process::Command::new(common::require_binary("redis-cli"))
            .args(["-p", &redis.port.to_string(), "monitor"])
            .stdout(std::fs::File::create(&monitor_path).unwrap())
            .spawn()
            .unwrap();
        wait_until("the wipe is noticed", Duration::from_secs(15), || async {
            freshwatch
                .metric("freshwatch_state_store_resets_total")
                .await
                .is_some_and(|resets| resets >= 1.0)
        })
        .await;
        wait_until(
            "the critical status reaches Redis after the wipe",
            Duration::from_secs(20),
            || async {
                stored_status(&redis, "orders").is_some_and(|text| text.starts_with("critical@"))
            },
        )
        .await;
        assert_eq!(
            freshwatch
                .metric("freshwatch_state_writes_fenced_total")
                .await,
            Some(0.0),
            "no status write refused; log:\n{}",
            freshwatch.log()
        );
        let fence = stored_fence(&redis, "orders").unwrap();
        assert!(
            fence > 57,
            "the new term's token beats the old one: {fence}"
        );
        let _ = monitor.kill();
        let _ = monitor.wait();
        let monitored = std::fs::read_to_string(&monitor_path).unwrap();
        let old_term_writes: Vec<&str> = monitored
            .lines()
            .filter(|line| line.contains("local newest") && line.contains("\"57\""))
            .collect();
        assert!(
            monitored.contains("local newest"),
            "fenced writes were monitored:\n{monitored}"
        );
        assert!(
            old_term_writes.is_empty(),
            "no status written under the old term's token after the wipe: {old_term_writes:#?}"
        );
        let pages = told(&receiver, "FeedStale", "orders");
        assert_eq!(pages, ["firing", "firing"], "warning, then critical");

        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            freshwatch.status("orders", "").await.as_deref(),
            Some("critical")
        );
        assert_eq!(
            told(&receiver, "FeedStale", "orders"),
            pages,
            "nothing paged again after the restart; log:\n{}",
            freshwatch.log()
        );
        drop(freshwatch);
    });
    drop(cluster);
}

/// Issue #18: a fenced status write that is refused (a newer term, 1000, wrote the feed) is
/// logged, counted, and makes the replica stand by; it leads again only with a token above the
/// one that refused it, so its statuses reach Redis once more.
#[test]
fn a_refused_fenced_write_is_counted_and_the_replica_steps_down() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = common::producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        // Fresh from the start: no never_seen page.
        common::produce_one(&producer, "orders", "k", common::now_ms());
        let text = config(&brokers, &redis.url, &orders_with_webhook(&receiver.url));
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("leading", Duration::from_secs(15), || async {
            freshwatch.metric("freshwatch_leader").await == Some(1.0)
        })
        .await;
        // A newer leader's mark on the feed, as a deposed leader would find it.
        redis.command(&["SET", "freshwatch:{orders}:fence", "1000"]);
        common::produce_one(&producer, "orders", "k", common::now_ms());
        wait_until(
            "the refused write is counted",
            Duration::from_secs(20),
            || async {
                freshwatch
                    .metric("freshwatch_state_writes_fenced_total")
                    .await
                    .is_some_and(|fenced| fenced >= 1.0)
            },
        )
        .await;
        assert!(
            freshwatch
                .log()
                .contains("status write refused by the fence"),
            "{}",
            freshwatch.log()
        );
        assert!(freshwatch.log().contains("no longer leader"));
        wait_until(
            "it leads again above the fence and its statuses reach Redis",
            Duration::from_secs(30),
            || async {
                stored_fence(&redis, "orders").is_some_and(|fence| fence > 1000)
                    && stored_status(&redis, "orders")
                        .is_some_and(|text| text.starts_with("critical@"))
            },
        )
        .await;
        drop(freshwatch);
    });
    drop(cluster);
}

/// Issue #18: `FreshwatchKeyLimit` fires once when a feed refuses its first key, not again after
/// a `kill -9` while the feed is still full, and resolves once a reload raises `max_keys` above
/// the feed's keys.
#[test]
fn a_key_limit_pages_once_and_resolves_when_the_feed_is_back_under_its_bound() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("tenants", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = common::producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let feeds = |max_keys: usize| {
            format!(
                r#"
[[feed]]
name = "tenants"
topic = "tenants"
split_by = "key"
warn_after = "1h"
critical_after = "2h"
max_keys = {max_keys}

[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            )
        };
        for tenant in ["acme", "globex"] {
            common::produce_one(&producer, "tenants", tenant, common::now_ms());
        }
        let mut freshwatch =
            FreshwatchProcess::start(directory.path(), &config(&brokers, &redis.url, &feeds(2)));
        freshwatch.wait_ready().await;
        wait_until("two tenants", Duration::from_secs(15), || async {
            freshwatch.status("tenants", "globex").await.as_deref() == Some("ok")
        })
        .await;
        common::produce_one(&producer, "tenants", "initech", common::now_ms());
        wait_until("the key limit pages", Duration::from_secs(15), || async {
            !told(&receiver, "FreshwatchKeyLimit", "tenants").is_empty()
        })
        .await;
        // Delivered and out of the outbox (an entry left there would rightly go out again).
        freshwatch.wait_outbox_empty("webhook-0").await;
        // Still full after a kill -9 (and refusing again): no second page.
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        common::produce_one(&producer, "tenants", "umbrella", common::now_ms());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            told(&receiver, "FreshwatchKeyLimit", "tenants"),
            ["firing"],
            "log:\n{}",
            freshwatch.log()
        );
        // A reload raises max_keys: the feed is under its bound, the alert resolves.
        std::fs::write(
            freshwatch.config_path(),
            format!(
                "{}\n[http]\nlisten = \"127.0.0.1:{}\"\n",
                config(&brokers, &redis.url, &feeds(10)),
                freshwatch.port
            ),
        )
        .unwrap();
        freshwatch.signal("HUP");
        reloaded(&freshwatch, 1).await;
        wait_until(
            "the key limit resolves",
            Duration::from_secs(15),
            || async { told(&receiver, "FreshwatchKeyLimit", "tenants").len() >= 2 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            told(&receiver, "FreshwatchKeyLimit", "tenants"),
            ["firing", "resolved"]
        );
        drop(freshwatch);
    });
    drop(cluster);
}

/// One feed on the mock cluster, a 2 s `source_grace`, a 3 s lease and a webhook.
fn source_down_config(brokers: &str, redis_url: &str, receiver_url: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-source-down-once"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"reconnect.backoff.max.ms" = "500"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"statistics.interval.ms" = "200"

[state]
redis_url = "{redis_url}"
flush_interval = "100ms"

[evaluation]
interval = "200ms"
source_grace = "2s"
blind_after = "1h"

[ha]
lease = "3s"
reload_interval = "300ms"

[[feed]]
name = "live"
topic = "live"
warn_after = "1h"
critical_after = "2h"

[[alerts.webhook]]
url = "{receiver_url}/hook"
"#
    )
}

/// Issue #18: `FreshwatchSourceDown` lives in the state store. Kafka goes down and it pages;
/// a `kill -9` and a restart while Kafka is still down page nothing more (the new process
/// takes it up as firing and does not resolve it before Kafka answers); Kafka comes back while
/// freshwatch is down, and the next start resolves it: one trigger, one resolve.
#[test]
fn a_source_down_pages_once_across_kill_9_and_is_resolved_by_the_start_after_kafka_came_back() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("live", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = common::producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = source_down_config(&brokers, &redis.url, &receiver.url);
        let source_down = || receiver.statuses("FreshwatchSourceDown");
        common::produce_one(&producer, "live", "k", common::now_ms());
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("live ok", Duration::from_secs(15), || async {
            freshwatch.status("live", "").await.as_deref() == Some("ok")
        })
        .await;

        cluster.broker_down(1).unwrap();
        wait_until(
            "FreshwatchSourceDown pages",
            Duration::from_secs(30),
            || async { !source_down().is_empty() },
        )
        .await;
        freshwatch.wait_outbox_empty("webhook-0").await;

        // Restarted while Kafka is still down: well past source_grace, nothing more.
        freshwatch.kill_and_restart();
        wait_until(
            "the restarted process answers",
            Duration::from_secs(15),
            || async { freshwatch.status("live", "").await.is_some() },
        )
        .await;
        wait_until(
            "the restarted process leads",
            Duration::from_secs(30),
            || async { freshwatch.log().matches("became leader").count() >= 2 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(source_down(), ["firing"], "log:\n{}", freshwatch.log());

        // Kafka answers again while freshwatch is down: the next start resolves it.
        freshwatch.kill();
        cluster.broker_up(1).unwrap();
        freshwatch.restart();
        freshwatch.wait_ready().await;
        wait_until(
            "FreshwatchSourceDown resolves",
            Duration::from_secs(30),
            || async { source_down().len() >= 2 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            source_down(),
            ["firing", "resolved"],
            "log:\n{}",
            freshwatch.log()
        );
        drop(freshwatch);
    });
    drop(cluster);
}

/// Issue #18: a new leader takes up the self-alerts the old one paged. Two replicas; Kafka
/// goes down and the leader pages `FreshwatchSourceDown`; the leader is killed and the other
/// replica takes over without paging it again, then resolves it when Kafka answers.
#[test]
fn a_new_leader_takes_up_source_down_without_paging_it_again_and_resolves_it() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("live", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let first_directory = tempfile::tempdir().unwrap();
    let second_directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = source_down_config(&brokers, &redis.url, &receiver.url);
        let mut first = FreshwatchProcess::start(first_directory.path(), &text);
        first.wait_ready().await;
        wait_until(
            "the first replica leads",
            Duration::from_secs(15),
            || async { first.log().contains("became leader") },
        )
        .await;
        let second = FreshwatchProcess::start(second_directory.path(), &text);
        second.wait_ready().await;

        cluster.broker_down(1).unwrap();
        wait_until(
            "FreshwatchSourceDown pages",
            Duration::from_secs(30),
            || async { !receiver.statuses("FreshwatchSourceDown").is_empty() },
        )
        .await;
        first.wait_outbox_empty("webhook-0").await;
        first.kill();
        wait_until(
            "the second replica leads",
            Duration::from_secs(30),
            || async { second.log().contains("became leader") },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            receiver.statuses("FreshwatchSourceDown"),
            ["firing"],
            "log:\n{}",
            second.log()
        );
        cluster.broker_up(1).unwrap();
        wait_until(
            "FreshwatchSourceDown resolves",
            Duration::from_secs(30),
            || async { receiver.statuses("FreshwatchSourceDown").len() >= 2 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            receiver.statuses("FreshwatchSourceDown"),
            ["firing", "resolved"]
        );
        drop(second);
    });
    drop(cluster);
}
