//! Watching consumer groups from outside: a real consumer group on the mock cluster commits,
//! stops while producing goes on, resumes, and falls behind on records about to expire.
//! freshwatch runs as a process with real Redis, and pages through a webhook.

mod common;

use std::time::Duration;

use common::groups::{commit_as, group_pages, group_view};
use common::receiver::WebhookReceiver;
use common::{now_ms, produce_one, producer, runtime, wait_until, FreshwatchProcess, RedisServer};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const HOUR_MS: i64 = 3_600_000;

/// The watched application: reads `upstream` and commits only when told.
struct Feeder {
    consumer: BaseConsumer,
}

impl Feeder {
    fn new(brokers: &str) -> Feeder {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "feeder")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer.subscribe(&["upstream"]).unwrap();
        Feeder { consumer }
    }

    /// Reads until `offset` is reached, then commits it.
    fn read_and_commit_to(&self, offset: i64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut next = 0;
        while next < offset {
            assert!(
                std::time::Instant::now() < deadline,
                "feeder stuck at {next}"
            );
            if let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(100)) {
                next = message.offset() + 1;
            }
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("upstream", 0, Offset::Offset(offset))
            .unwrap();
        self.consumer.commit(&list, CommitMode::Sync).unwrap();
    }
}

fn view(views: &[serde_json::Value]) -> Option<serde_json::Value> {
    views
        .iter()
        .find(|view| view["group"] == "feeder" && view["topic"] == "upstream")
        .cloned()
}

async fn groups(freshwatch: &FreshwatchProcess) -> Option<serde_json::Value> {
    let response = reqwest::get(format!("{}/api/v1/groups", freshwatch.base_url))
        .await
        .ok()?;
    view(&response.json::<Vec<serde_json::Value>>().await.ok()?)
}

fn pages(receiver: &WebhookReceiver, alertname: &str) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == alertname)
        .map(|request| {
            (
                request.json["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                request.json["severity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_group_that_stops_committing_lags_in_time_stalls_pages_resolves_and_counts_down_to_loss() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("upstream", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    let feeder = Feeder::new(&brokers);
    for _ in 0..3 {
        produce_one(&producer, "upstream", "k", now_ms());
    }
    feeder.read_and_commit_to(3);
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = format!(
            r#"
[kafka]
brokers = "{brokers}"
groups_interval = "300ms"
[state]
redis_url = "{}"
flush_interval = "100ms"
[evaluation]
interval = "200ms"
[[group]]
group_id = "feeder"
topics = ["upstream"]
warn_after = "6s"
critical_after = "1h"
stall_after = "2s"
retention = "1d"
loss_warn_before = "2h"
loss_critical_before = "1h"
[[alerts.webhook]]
url = "{}/hook"
"#,
            redis.url, receiver.url
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until(
            "the group is caught up and ok",
            Duration::from_secs(15),
            || async {
                groups(&freshwatch)
                    .await
                    .is_some_and(|view| view["status"] == "ok" && view["lag_records"] == 0)
            },
        )
        .await;

        // The feeder stops committing; the topic keeps filling.
        let first_unread_ms = now_ms();
        produce_one(&producer, "upstream", "k", first_unread_ms);
        produce_one(&producer, "upstream", "k", now_ms());
        wait_until(
            "stalled after stall_after",
            Duration::from_secs(15),
            || async {
                groups(&freshwatch)
                    .await
                    .is_some_and(|view| view["status"] == "stalled")
            },
        )
        .await;
        let stalled = groups(&freshwatch).await.unwrap();
        assert_eq!(stalled["lag_records"], 2);
        let lag = stalled["lag_seconds"].as_f64().unwrap();
        let expected = (now_ms() - first_unread_ms) as f64 / 1000.0;
        assert!(
            (lag - expected).abs() <= 1.0,
            "lag {lag}s is the age of the first unread record ({expected}s)"
        );
        wait_until(
            "the stall pages as a warning",
            Duration::from_secs(10),
            || async {
                pages(&receiver, "ConsumerGroupLagging") == [("firing".into(), "warning".into())]
            },
        )
        .await;
        wait_until(
            "warning by lag in time",
            Duration::from_secs(15),
            || async {
                groups(&freshwatch)
                    .await
                    .is_some_and(|view| view["status"] == "warning")
            },
        )
        .await;

        // It resumes: resolved.
        feeder.read_and_commit_to(5);
        wait_until("ok again", Duration::from_secs(15), || async {
            groups(&freshwatch).await.is_some_and(|view| {
                view["status"] == "ok" && view["lag_seconds"].as_f64() == Some(0.0)
            })
        })
        .await;
        wait_until("the page resolves", Duration::from_secs(10), || async {
            pages(&receiver, "ConsumerGroupLagging").last()
                == Some(&("resolved".into(), "warning".into()))
        })
        .await;

        // Unread records written 23.5 hours ago under a one-day retention: expiring in 30m.
        let old_ms = now_ms() - 23 * HOUR_MS - HOUR_MS / 2;
        produce_one(&producer, "upstream", "k", old_ms);
        wait_until(
            "DataLossImminent pages critical",
            Duration::from_secs(15),
            || async {
                pages(&receiver, "DataLossImminent") == [("firing".into(), "critical".into())]
            },
        )
        .await;
        let countdown = groups(&freshwatch).await.unwrap();
        let eta = countdown["loss_eta_seconds"].as_f64().unwrap();
        assert!((1700.0..=1800.0).contains(&eta), "{eta}");
        assert_eq!(countdown["retention_source"], "config");
        assert_eq!(countdown["retention_seconds"], 86_400.0);
        let summary = receiver
            .requests()
            .iter()
            .rev()
            .find(|request| request.json["alertname"] == "DataLossImminent")
            .map(|request| {
                request.json["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap();
        let deadline = chrono::DateTime::from_timestamp_millis(old_ms + 24 * HOUR_MS)
            .unwrap()
            .format("%Y-%m-%d %H:%M UTC")
            .to_string();
        assert!(
            summary.starts_with(&format!(
                "unread records of upstream start expiring at {deadline} (in "
            )),
            "{summary}"
        );
        let moved_at = countdown["committed_moved_at"].clone();
        let metrics = reqwest::get(format!("{}/metrics", freshwatch.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "freshwatch_group_lag_seconds{group=\"feeder\",topic=\"upstream\"}",
            "freshwatch_group_lag_records{group=\"feeder\",topic=\"upstream\"} 1",
            "freshwatch_group_loss_eta_seconds{group=\"feeder\",topic=\"upstream\"}",
            "freshwatch_group_records_lost_total{group=\"feeder\",topic=\"upstream\"} 0",
            "freshwatch_group_status{group=\"feeder\",topic=\"upstream\"}",
        ] {
            assert!(metrics.contains(name), "{name} in\n{metrics}");
        }

        // A crash: the commit's last move and the firing alerts survive; nothing pages again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        wait_until(
            "judged again after the restart",
            Duration::from_secs(15),
            || async {
                groups(&freshwatch)
                    .await
                    .is_some_and(|view| view["status"] != "unknown")
            },
        )
        .await;
        let after = groups(&freshwatch).await.unwrap();
        assert_eq!(after["committed_moved_at"], moved_at);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            pages(&receiver, "DataLossImminent"),
            [("firing".to_owned(), "critical".to_owned())],
            "no second page, no resolve"
        );
    });
    drop(feeder);
    drop(cluster);
}

/// A misspelt `group_id` on a topic holding 400 records is `no_commits` and pages
/// `ConsumerGroupMissing` once, never "ok, lag 0"; when the group commits, it resolves. A commit
/// above the high watermark is `offset_out_of_range` and warns.
#[test]
fn a_misspelt_group_pages_missing_once_and_a_commit_above_the_watermark_warns() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("up.profiles", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let producer = producer(&brokers);
    for _ in 0..400 {
        produce_one(&producer, "up.profiles", "k", now_ms());
    }
    commit_as(&brokers, "ahead", "up.profiles", 900);
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = format!(
            r#"
[kafka]
brokers = "{brokers}"
groups_interval = "300ms"
[state]
redis_url = "{}"
flush_interval = "100ms"
[evaluation]
interval = "200ms"
[[group]]
group_id = "cdp-feedr"
topics = ["up.profiles"]
warn_after = "1s"
critical_after = "3s"
[[group]]
group_id = "ahead"
topics = ["up.profiles"]
[[alerts.webhook]]
url = "{}/hook"
"#,
            redis.url, receiver.url
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until(
            "the misspelt group is no_commits",
            Duration::from_secs(15),
            || async {
                group_view(&freshwatch, "cdp-feedr", "up.profiles")
                    .await
                    .is_some_and(|view| view["status"] == "no_commits")
            },
        )
        .await;
        let view = group_view(&freshwatch, "cdp-feedr", "up.profiles")
            .await
            .unwrap();
        assert!(view["lag_seconds"].is_null(), "never 0: {view}");
        assert_eq!(view["partitions_without_commits"], serde_json::json!([0]));
        wait_until(
            "ConsumerGroupMissing pages",
            Duration::from_secs(15),
            || async { !group_pages(&receiver, "ConsumerGroupMissing", "cdp-feedr").is_empty() },
        )
        .await;
        let ahead = group_view(&freshwatch, "ahead", "up.profiles")
            .await
            .unwrap();
        assert_eq!(ahead["status"], "offset_out_of_range", "{ahead}");
        assert!(ahead["lag_seconds"].is_null());
        wait_until(
            "the commit above the watermark warns",
            Duration::from_secs(10),
            || async {
                group_pages(&receiver, "ConsumerGroupMissing", "ahead")
                    .iter()
                    .any(|(status, severity, summary)| {
                        status == "firing"
                            && severity == "warning"
                            && summary.contains("committed offset 900 above the high watermark 400")
                    })
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let missing = group_pages(&receiver, "ConsumerGroupMissing", "cdp-feedr");
        assert_eq!(missing.len(), 1, "once: {missing:?}");
        assert_eq!(
            (missing[0].0.as_str(), missing[0].1.as_str()),
            ("firing", "critical")
        );
        assert!(
            missing[0].2.contains("misspelt group_id"),
            "{}",
            missing[0].2
        );

        // The group commits after all: resolved, and caught up.
        commit_as(&brokers, "cdp-feedr", "up.profiles", 400);
        wait_until(
            "resolved once it commits",
            Duration::from_secs(15),
            || async {
                group_pages(&receiver, "ConsumerGroupMissing", "cdp-feedr")
                    .last()
                    .is_some_and(|(status, _, _)| status == "resolved")
            },
        )
        .await;
        let view = group_view(&freshwatch, "cdp-feedr", "up.profiles")
            .await
            .unwrap();
        assert_eq!(view["status"], "ok", "{view}");
        assert_eq!(view["lag_records"], 0);
    });
}

/// The seed's day 7: the dead group's offsets expire. The last commit freshwatch saw is in Redis
/// and survives `kill -9`; a broker that no longer reports the commit (here: a new cluster that
/// never held it, as after `offsets.retention.minutes`) leaves the lag judged from it, and
/// `ConsumerGroupMissing` pages at once naming it.
#[test]
fn commits_that_vanish_across_a_kill_9_are_judged_from_the_last_one_seen() {
    let first = MockCluster::new(1).unwrap();
    first.create_topic("upstream", 1, 1).unwrap();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let old_ms = now_ms() - 2 * HOUR_MS;
    {
        let producer = producer(&first.bootstrap_servers());
        for _ in 0..5 {
            produce_one(&producer, "upstream", "k", old_ms);
        }
    }
    commit_as(&first.bootstrap_servers(), "feeder", "upstream", 2);
    let config = |brokers: &str, hook: &str| {
        format!(
            r#"
[kafka]
brokers = "{brokers}"
groups_interval = "300ms"
[state]
redis_url = "{}"
flush_interval = "100ms"
[evaluation]
interval = "200ms"
[[group]]
group_id = "feeder"
topics = ["upstream"]
[[alerts.webhook]]
url = "{hook}/hook"
"#,
            redis.url
        )
    };
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let hook = receiver.url.clone();
        let mut freshwatch =
            FreshwatchProcess::start(directory.path(), &config(&first.bootstrap_servers(), &hook));
        freshwatch.wait_ready().await;
        wait_until(
            "the first commit is seen",
            Duration::from_secs(15),
            || async {
                group_view(&freshwatch, "feeder", "upstream")
                    .await
                    .is_some_and(|view| view["lag_records"] == 3 && view["status"] != "unknown")
            },
        )
        .await;
        // The commit moves once more while freshwatch watches: that is the one to remember.
        commit_as(&first.bootstrap_servers(), "feeder", "upstream", 3);
        wait_until("the commit is seen", Duration::from_secs(15), || async {
            group_view(&freshwatch, "feeder", "upstream")
                .await
                .is_some_and(|view| view["lag_records"] == 2 && view["status"] != "unknown")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        freshwatch.kill();

        let second = MockCluster::new(1).unwrap();
        second.create_topic("upstream", 1, 1).unwrap();
        let producer = producer(&second.bootstrap_servers());
        for _ in 0..6 {
            produce_one(&producer, "upstream", "k", old_ms);
        }
        let text = std::fs::read_to_string(freshwatch.config_path())
            .unwrap()
            .replace(&first.bootstrap_servers(), &second.bootstrap_servers());
        std::fs::write(freshwatch.config_path(), text).unwrap();
        freshwatch.restart();
        freshwatch.wait_ready().await;
        wait_until(
            "the vanished commit pages at once",
            Duration::from_secs(20),
            || async { !group_pages(&receiver, "ConsumerGroupMissing", "feeder").is_empty() },
        )
        .await;
        let view = group_view(&freshwatch, "feeder", "upstream").await.unwrap();
        assert_eq!(view["status"], "no_commits", "{view}");
        assert_eq!(view["partitions_vanished"], serde_json::json!([0]));
        assert_eq!(view["lag_records"], 3, "judged from offset 3: {view}");
        let pages = group_pages(&receiver, "ConsumerGroupMissing", "feeder");
        assert_eq!(pages.len(), 1, "{pages:?}");
        assert_eq!(pages[0].1, "critical");
        assert!(
            pages[0]
                .2
                .contains("committed offsets vanished (last seen: offset 3"),
            "{}",
            pages[0].2
        );
        assert!(
            group_pages(&receiver, "ConsumerGroupLagging", "feeder")
                .iter()
                .all(|(status, _, _)| status == "firing"),
            "no lag alert resolved by the vanishing"
        );
        drop(second);
    });
}
