//! The mock is not the world: crash-restarts, broker outages and Redis loss against Tansu, a
//! Kafka-protocol broker in a separate process, with librdkafka's default client timeouts (a
//! `kill -9`'d member keeps its partitions until `session.timeout.ms`, 45 s, expires). A feed
//! that never stopped must not page; one that really died meanwhile must.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::groups::{commit_as, group_pages, group_view};
use common::receiver::WebhookReceiver;
use common::{
    now_ms, produce_one, producer, runtime, wait_until, FreshwatchProcess, RedisServer, TansuBroker,
};
use rdkafka::producer::{BaseRecord, Producer};

const DAY_MS: i64 = 86_400_000;

/// Default librdkafka timeouts: only the pacing of freshwatch's own loops is shortened.
fn config(brokers: &str, redis_url: &str, extra: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-tansu"

[state]
redis_url = "{redis_url}"
flush_interval = "200ms"

[evaluation]
interval = "200ms"
source_grace = "20s"

{extra}
"#
    )
}

/// Produces a fresh record to `topic` every 100 ms until `stop`; keeps going through a broker
/// outage (librdkafka queues and delivers when it is back).
fn keep_producing(
    brokers: &str,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let producer = producer(brokers);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let _ = producer.send(
                BaseRecord::to(topic)
                    .key("k")
                    .payload("{}")
                    .timestamp(now_ms()),
            );
            producer.poll(Duration::from_millis(100));
        }
        let _ = producer.flush(Duration::from_secs(10));
    })
}

/// A broker with a `flowing` topic whose producer never stops and a `died` topic whose
/// producer stops when told, plus Redis.
struct Scene {
    broker: TansuBroker,
    redis: RedisServer,
    stop_flowing: Arc<AtomicBool>,
    stop_died: Arc<AtomicBool>,
    producers: Vec<std::thread::JoinHandle<()>>,
}

impl Scene {
    fn start(flowing_partitions: u32) -> Scene {
        let broker = TansuBroker::start();
        broker.create_topic("flowing", flowing_partitions);
        broker.create_topic("died", 1);
        let stop_flowing = Arc::new(AtomicBool::new(false));
        let stop_died = Arc::new(AtomicBool::new(false));
        let producers = vec![
            keep_producing(&broker.brokers, "flowing", stop_flowing.clone()),
            keep_producing(&broker.brokers, "died", stop_died.clone()),
        ];
        Scene {
            broker,
            redis: RedisServer::start(),
            stop_flowing,
            stop_died,
            producers,
        }
    }

    fn finish(self) {
        self.stop_flowing.store(true, Ordering::Relaxed);
        self.stop_died.store(true, Ordering::Relaxed);
        for producer in self.producers {
            producer.join().unwrap();
        }
    }
}

fn two_feeds(receiver_url: &str) -> String {
    format!(
        r#"
[[feed]]
name = "flowing"
topic = "flowing"
warn_after = "6s"
critical_after = "12s"
[[feed]]
name = "died"
topic = "died"
warn_after = "6s"
critical_after = "12s"
[[alerts.webhook]]
url = "{receiver_url}/hook"
"#
    )
}

fn pages_for(receiver: &WebhookReceiver, feed: &str) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["alertname"] == "FeedStale" && request.json["feed"] == feed)
        .map(|request| {
            format!(
                "{} {}",
                request.json["status"].as_str().unwrap_or_default(),
                request.json["severity"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// `flowing` never looked stale (as sampled) and never paged.
async fn flowing_never_paged(flowing_seen: &[String], receiver: &WebhookReceiver) {
    assert!(
        !flowing_seen
            .iter()
            .any(|status| status == "warning" || status == "critical"),
        "flowing never looked stale: {flowing_seen:?}"
    );
    // A page that was already on its way has time to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pages_for(receiver, "flowing"), Vec::<String>::new());
}

/// Samples `flowing`'s status until `died` pages critical; returns what `flowing` showed.
async fn until_died_pages(
    freshwatch: &FreshwatchProcess,
    within: Duration,
    broker: &TansuBroker,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut flowing_seen = Vec::new();
    loop {
        if let Some(status) = freshwatch.status("flowing", "").await {
            if flowing_seen.last() != Some(&status) {
                flowing_seen.push(status);
            }
        }
        if freshwatch.status("died", "").await.as_deref() == Some("critical") {
            return flowing_seen;
        }
        assert!(
            Instant::now() < deadline,
            "died never paged; flowing showed {flowing_seen:?}\n{}\nbroker:\n{}",
            freshwatch.log(),
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_crash_restart_pages_nothing_for_a_feed_that_kept_flowing_and_pages_one_that_died() {
    let scene = Scene::start(2);
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &scene.broker.brokers,
            &scene.redis.url,
            &two_feeds(&receiver.url),
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("both feeds ok", Duration::from_secs(60), || async {
            freshwatch.status("flowing", "").await.as_deref() == Some("ok")
                && freshwatch.status("died", "").await.as_deref() == Some("ok")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Crash; one producer dies with it. Down past both feeds' critical_after, so the
        // restored last-seen of `flowing` is 15 s old while fresh records wait unread.
        freshwatch.kill();
        scene.stop_died.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(15)).await;
        freshwatch.restart();
        // The dead member's session holds the partitions for up to 45 s: no replica reads
        // them, so nothing is judged; then the new member reads the backlog.
        let flowing_seen =
            until_died_pages(&freshwatch, Duration::from_secs(120), &scene.broker).await;
        flowing_never_paged(&flowing_seen, &receiver).await;
        assert!(
            pages_for(&receiver, "died")
                .iter()
                .any(|page| page == "firing critical"),
            "{:?}",
            pages_for(&receiver, "died")
        );
    });
    scene.finish();
}

#[test]
fn a_broker_outage_pages_nothing_while_blind_and_the_feed_that_died_pages_once_it_is_back() {
    let mut scene = Scene::start(1);
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &scene.broker.brokers,
            &scene.redis.url,
            &two_feeds(&receiver.url),
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("both feeds ok", Duration::from_secs(60), || async {
            freshwatch.status("flowing", "").await.as_deref() == Some("ok")
                && freshwatch.status("died", "").await.as_deref() == Some("ok")
        })
        .await;
        scene.stop_died.store(true, Ordering::Relaxed);

        scene.broker.kill();
        wait_until("flowing turns unknown", Duration::from_secs(20), || async {
            freshwatch.status("flowing", "").await.as_deref() == Some("unknown")
        })
        .await;
        // Down past both thresholds.
        tokio::time::sleep(Duration::from_secs(14)).await;
        assert_eq!(pages_for(&receiver, "flowing"), Vec::<String>::new());
        assert_eq!(pages_for(&receiver, "died"), Vec::<String>::new());

        scene.broker.restart();
        let flowing_seen =
            until_died_pages(&freshwatch, Duration::from_secs(90), &scene.broker).await;
        flowing_never_paged(&flowing_seen, &receiver).await;
    });
    scene.finish();
}

#[test]
fn a_ten_day_silence_survives_redis_coming_back_empty_and_a_kill_9() {
    let broker = TansuBroker::start();
    broker.create_topic("quiet", 1);
    let mut redis = RedisServer::start();
    let runtime = runtime();
    let silent_since_ms = now_ms() - 10 * DAY_MS;
    produce_one(&producer(&broker.brokers), "quiet", "k", silent_since_ms);
    let directory = tempfile::tempdir().unwrap();
    let text = config(
        &broker.brokers,
        &redis.url,
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
}

#[test]
fn a_watched_groups_retention_comes_from_the_broker() {
    let broker = TansuBroker::start();
    broker.create_topic_with(
        "upstream",
        1,
        &[("retention.ms", "86400000"), ("cleanup.policy", "delete")],
    );
    let redis = RedisServer::start();
    let runtime = runtime();
    let producer = producer(&broker.brokers);
    let first_unread_ms = now_ms() - 2 * 3_600_000;
    for _ in 0..3 {
        produce_one(&producer, "upstream", "k", first_unread_ms);
    }
    // The feeder read one record and committed; it never joined through freshwatch.
    let feeder: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("group.id", "feeder")
        .create()
        .unwrap();
    let mut commit = rdkafka::TopicPartitionList::new();
    commit
        .add_partition_offset("upstream", 0, rdkafka::Offset::Offset(1))
        .unwrap();
    rdkafka::consumer::Consumer::commit(&feeder, &commit, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let text = config(
        &broker.brokers,
        &redis.url,
        r#"
[[group]]
group_id = "feeder"
topics = ["upstream"]
"#,
    )
    .replace("[kafka]\n", "[kafka]\ngroups_interval = \"500ms\"\n");
    runtime.block_on(async {
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        let url = format!("{}/api/v1/groups", freshwatch.base_url);
        let mut view = serde_json::Value::Null;
        let deadline = Instant::now() + Duration::from_secs(30);
        while view["loss_eta_seconds"].is_null() {
            assert!(
                Instant::now() < deadline,
                "no countdown: {view}\n{}",
                freshwatch.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let views: Vec<serde_json::Value> = reqwest::get(&url)
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            view = views.into_iter().next().unwrap_or_default();
        }
        assert_eq!(view["retention_source"], "broker", "{view}");
        assert_eq!(view["retention_seconds"], 86_400.0);
        assert_eq!(view["lag_records"], 2);
        let eta = view["loss_eta_seconds"].as_f64().unwrap();
        assert!((21.9 * 3600.0..=22.0 * 3600.0).contains(&eta), "{eta}");
    });
}

#[test]
fn a_rolling_restart_of_two_replicas_pages_nothing_for_a_feed_that_kept_flowing() {
    let scene = Scene::start(2);
    let runtime = runtime();
    let first_directory = tempfile::tempdir().unwrap();
    let second_directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &scene.broker.brokers,
            &scene.redis.url,
            &two_feeds(&receiver.url),
        );
        let mut first = FreshwatchProcess::start(first_directory.path(), &text);
        let mut second = FreshwatchProcess::start(second_directory.path(), &text);
        first.wait_ready().await;
        second.wait_ready().await;
        wait_until("both feeds ok", Duration::from_secs(60), || async {
            first.status("flowing", "").await.as_deref() == Some("ok")
                && first.status("died", "").await.as_deref() == Some("ok")
        })
        .await;
        // One producer dies now; the rolling restart follows.
        scene.stop_died.store(true, Ordering::Relaxed);
        for replica in [&mut first, &mut second] {
            replica.stop();
            tokio::time::sleep(Duration::from_secs(8)).await;
            replica.restart();
            replica.wait_ready().await;
        }
        let flowing_seen = until_died_pages(&first, Duration::from_secs(120), &scene.broker).await;
        flowing_never_paged(&flowing_seen, &receiver).await;
        assert!(!pages_for(&receiver, "died").is_empty());
    });
    scene.finish();
}

/// Group truth on a separate broker: a misspelt `group_id` pages `ConsumerGroupMissing` once and
/// resolves when the group commits; a compacted topic has lag alerts and no countdown; with the
/// broker down past `blind_after`, one `FreshwatchGroupsBlind` (for every group at once) pages,
/// never one per group, and resolves when the broker is back.
#[test]
fn a_misspelt_group_a_compacted_topic_and_a_dead_broker_tell_the_truth_about_groups() {
    let mut broker = TansuBroker::start();
    broker.create_topic_with(
        "up.profiles",
        1,
        &[("retention.ms", "604800000"), ("cleanup.policy", "delete")],
    );
    broker.create_topic_with("profiles-compacted", 1, &[("cleanup.policy", "compact")]);
    let redis = RedisServer::start();
    let runtime = runtime();
    let producer = producer(&broker.brokers);
    for index in 0..400 {
        produce_one(
            &producer,
            "up.profiles",
            &format!("tenant-{index}"),
            now_ms(),
        );
    }
    let two_hours_ago = now_ms() - 2 * 3_600_000;
    for index in 0..3 {
        produce_one(
            &producer,
            "profiles-compacted",
            &format!("profile-{index}"),
            two_hours_ago,
        );
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    commit_as(&broker.brokers, "feeder", "profiles-compacted", 1);
    let directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &broker.brokers,
            &redis.url,
            &format!(
                r#"
[[group]]
group_id = "cdp-feedr"
topics = ["up.profiles"]
warn_after = "1s"
critical_after = "3s"
[[group]]
group_id = "feeder"
topics = ["profiles-compacted"]
[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        )
        .replace("[kafka]\n", "[kafka]\ngroups_interval = \"500ms\"\n")
        .replace("[evaluation]\n", "[evaluation]\nblind_after = \"5s\"\n");
        let freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until(
            "ConsumerGroupMissing pages",
            Duration::from_secs(30),
            || async { !group_pages(&receiver, "ConsumerGroupMissing", "cdp-feedr").is_empty() },
        )
        .await;
        let misspelt = group_view(&freshwatch, "cdp-feedr", "up.profiles")
            .await
            .unwrap();
        assert_eq!(misspelt["status"], "no_commits", "{misspelt}");
        assert!(misspelt["lag_seconds"].is_null());

        wait_until(
            "the compacted topic lags critical",
            Duration::from_secs(30),
            || async {
                group_view(&freshwatch, "feeder", "profiles-compacted")
                    .await
                    .is_some_and(|view| view["status"] == "critical")
            },
        )
        .await;
        let compacted = group_view(&freshwatch, "feeder", "profiles-compacted")
            .await
            .unwrap();
        assert_eq!(compacted["retention_source"], "compact", "{compacted}");
        assert!(compacted["loss_eta_seconds"].is_null(), "{compacted}");
        assert_eq!(compacted["lag_records"], 2);
        wait_until("the lag pages", Duration::from_secs(10), || async {
            !group_pages(&receiver, "ConsumerGroupLagging", "feeder").is_empty()
        })
        .await;
        assert!(group_pages(&receiver, "DataLossImminent", "feeder").is_empty());

        // The misspelt group's real consumer commits after all: resolved.
        commit_as(&broker.brokers, "cdp-feedr", "up.profiles", 400);
        wait_until(
            "resolved once it commits",
            Duration::from_secs(30),
            || async {
                group_pages(&receiver, "ConsumerGroupMissing", "cdp-feedr")
                    .last()
                    .is_some_and(|(status, _, _)| status == "resolved")
            },
        )
        .await;
        assert_eq!(
            group_pages(&receiver, "ConsumerGroupMissing", "cdp-feedr").len(),
            2,
            "one page, one resolve"
        );

        broker.kill();
        wait_until(
            "FreshwatchGroupsBlind pages",
            Duration::from_secs(90),
            || async {
                receiver
                    .requests()
                    .iter()
                    .any(|request| request.json["alertname"] == "FreshwatchGroupsBlind")
            },
        )
        .await;
        let blind: Vec<String> = receiver
            .requests()
            .iter()
            .filter(|request| request.json["alertname"] == "FreshwatchGroupsBlind")
            .map(|request| {
                request.json["dedup_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            blind,
            ["freshwatch/system/FreshwatchGroupsBlind/*"],
            "one page for the cause, none per group"
        );
        let groups_status = group_view(&freshwatch, "feeder", "profiles-compacted")
            .await
            .unwrap();
        assert_eq!(groups_status["status"], "unknown");
        broker.restart();
        wait_until(
            "FreshwatchGroupsBlind resolves",
            Duration::from_secs(90),
            || async {
                receiver.requests().iter().any(|request| {
                    request.json["alertname"] == "FreshwatchGroupsBlind"
                        && request.json["status"] == "resolved"
                })
            },
        )
        .await;
        let lagging = group_pages(&receiver, "ConsumerGroupLagging", "feeder");
        assert!(
            lagging.iter().all(|(status, _, _)| status == "firing"),
            "the outage resolved no lag alert: {lagging:?}"
        );
    });
}

/// Issue #18 item 10: static membership. A replica killed with `kill -9` and started again
/// under the same name (`kafka.instance_id`, default the host name) takes its partitions back
/// at once; under dynamic membership the dead member's session holds them first (~30 s on
/// Tansu with default client timeouts, 45 s on Kafka).
#[test]
fn a_restarted_replica_takes_its_partitions_back_without_waiting_out_its_dead_session() {
    let broker = TansuBroker::start();
    broker.create_topic("held", 2);
    let redis = RedisServer::start();
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    let text = config(
        &broker.brokers,
        &redis.url,
        r#"
[[feed]]
name = "held"
topic = "held"
warn_after = "1h"
critical_after = "2h"
"#,
    );
    runtime.block_on(async {
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        let assigned = |freshwatch: &FreshwatchProcess| {
            freshwatch
                .log()
                .matches("partitions assigned partitions=2")
                .count()
        };
        wait_until("partitions assigned", Duration::from_secs(60), || async {
            assigned(&freshwatch) >= 1
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        freshwatch.kill_and_restart();
        let restarted = std::time::Instant::now();
        wait_until(
            "partitions assigned after the restart",
            Duration::from_secs(90),
            || async { assigned(&freshwatch) >= 2 },
        )
        .await;
        let took = restarted.elapsed();
        eprintln!("partitions back {took:?} after the restart");
        assert!(
            took < Duration::from_secs(20),
            "the restarted replica waited {took:?} for its own partitions\n{}",
            freshwatch.log()
        );
    });
    drop(broker);
}

/// Issue #18: `FreshwatchSourceDown` cleared while freshwatch was down is resolved by its next
/// start, once, on a separate broker with default client timeouts: Tansu is killed and the
/// page goes out; freshwatch is killed (`kill -9`) and started again while Tansu is still down
/// (no second page); then freshwatch is killed again, Tansu comes back, and the next start
/// resolves it.
#[test]
fn a_source_down_that_cleared_while_freshwatch_was_down_is_resolved_after_its_restart() {
    let mut broker = TansuBroker::start();
    broker.create_topic("live", 1);
    let redis = RedisServer::start();
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &broker.brokers,
            &redis.url,
            &format!(
                r#"
[ha]
lease = "3s"

[[feed]]
name = "live"
topic = "live"
warn_after = "1h"
critical_after = "2h"

[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        )
        .replace("source_grace = \"20s\"", "source_grace = \"3s\"");
        let source_down = || receiver.statuses("FreshwatchSourceDown");
        produce_one(&producer(&broker.brokers), "live", "k", now_ms());
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        wait_until("live ok", Duration::from_secs(60), || async {
            freshwatch.status("live", "").await.as_deref() == Some("ok")
        })
        .await;

        broker.kill();
        wait_until(
            "FreshwatchSourceDown pages",
            Duration::from_secs(60),
            || async { !source_down().is_empty() },
        )
        .await;
        freshwatch.wait_outbox_empty("webhook-0").await;
        freshwatch.kill_and_restart();
        wait_until(
            "the restarted process leads",
            Duration::from_secs(30),
            || async { freshwatch.log().matches("became leader").count() >= 2 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(source_down(), ["firing"], "{}", freshwatch.log());

        freshwatch.kill();
        broker.restart();
        freshwatch.restart();
        wait_until(
            "FreshwatchSourceDown resolves",
            Duration::from_secs(60),
            || async { source_down().len() >= 2 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            source_down(),
            ["firing", "resolved"],
            "{}",
            freshwatch.log()
        );
    });
    drop(broker);
}

/// Learned thresholds on a split feed: `steady` every 200 ms, `burst` 20 records 50 ms apart
/// then a 3 s pause, `lagging` every 200 ms with event times 3 s behind, `dies` every 200 ms
/// until told to stop. Event times are a JSON field; the record timestamp is when it was sent.
/// The ceilings are wide so the feed's placeholder is not `never_seen` while the group forms.
const LEARNED_TENANTS: &str = r#"
[[feed]]
name = "tenants"
topic = "tenants"
split_by = "key"
timestamp = { json = "/ts" }
warn_after = "90s"
critical_after = "180s"
thresholds = "learned"
learn_min_gaps = 5
learn_min_span = "5s"
warn_after_min = "2s"
critical_after_min = "4s"
"#;

/// Sends the four tenants' records until `stop`; `dies` only until `stop_dies`.
fn produce_tenants(
    brokers: &str,
    stop: Arc<AtomicBool>,
    stop_dies: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let producer = producer(brokers);
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut step: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let now = now_ms();
            let send = |key: &str, event_ms: i64| {
                let payload = format!("{{\"ts\": {event_ms}}}");
                let _ = producer.send(
                    BaseRecord::to("tenants")
                        .key(key)
                        .payload(&payload)
                        .timestamp(now),
                );
            };
            if step % 4 == 0 {
                send("steady", now);
                send("lagging", now - 3_000);
                if !stop_dies.load(Ordering::Relaxed) {
                    send("dies", now);
                }
            }
            // 4 s cycles: a second of records 50 ms apart, then a 3 s pause.
            if step % 80 < 20 {
                send("burst", now);
            }
            producer.poll(Duration::ZERO);
            step += 1;
            let next = started + Duration::from_millis(50 * step);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let _ = producer.flush(Duration::from_secs(10));
    })
}

/// What paged, as `(key, severity)`: the service's webhook pages of `tenants`.
fn service_verdict(receiver: &WebhookReceiver) -> std::collections::BTreeSet<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| {
            request.json["alertname"] == "FeedStale"
                && request.json["feed"] == "tenants"
                && request.json["status"] == "firing"
        })
        .map(|request| {
            (
                request.json["key"].as_str().unwrap_or_default().to_owned(),
                request.json["severity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn learned_thresholds_give_the_same_answers_through_the_service_and_through_backtest() {
    let broker = TansuBroker::start();
    broker.create_topic("tenants", 2);
    let redis = RedisServer::start();
    let runtime = runtime();
    let directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &broker.brokers,
            &redis.url,
            &format!(
                "{LEARNED_TENANTS}\n[[alerts.webhook]]\nurl = \"{}/hook\"\n",
                receiver.url
            ),
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        let (stop, stop_dies) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let producing_since = Instant::now();
        let tenants = produce_tenants(&broker.brokers, stop.clone(), stop_dies.clone());
        // The group forms, then the feed is known: only what is read from then on is learned.
        wait_until(
            "steady read and judged",
            Duration::from_secs(90),
            || async { freshwatch.status("tenants", "steady").await.as_deref() == Some("ok") },
        )
        .await;
        // Warm: every tenant learned its shape (5 samples, 5 s), `burst` five cycles.
        tokio::time::sleep(Duration::from_secs(20)).await;
        stop_dies.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(12)).await;

        // The same topic, replayed while the others keep sending: the window reaches back to
        // just before the first record.
        let since_s = producing_since.elapsed().as_secs() + 2;
        let output = std::process::Command::new(common::freshwatch_bin())
            .args(["backtest", "--config"])
            .arg(freshwatch.config_path())
            .args(["--since", &format!("{since_s}s"), "--format", "json"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        // A page on its way has time to arrive.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        tenants.join().unwrap();

        let replayed: std::collections::BTreeSet<(String, String)> = report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|alert| {
                (
                    alert["key"].as_str().unwrap().to_owned(),
                    alert["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let served = service_verdict(&receiver);
        let expected: std::collections::BTreeSet<(String, String)> = [
            ("dies".to_owned(), "warning".to_owned()),
            ("dies".to_owned(), "critical".to_owned()),
        ]
        .into();
        assert_eq!(
            served,
            expected,
            "the service: only the tenant that died pages; not the burst, not the lag\n{}",
            freshwatch.log()
        );
        assert_eq!(
            replayed, served,
            "backtest gives the service's answers\n{report:#}\n{stderr}"
        );
        freshwatch.stop();
    });
}

/// The own client on a real broker: OffsetFetch from v8 names up to 100 groups per request, so
/// 150 groups are read in two requests, each with its own offsets; and its Fetch reads the
/// record at a commit with that record's own timestamp.
#[test]
fn the_own_client_reads_150_groups_in_two_offset_fetches_and_the_record_at_a_commit() {
    use freshwatch::groups::wire::{
        FirstUnread, FirstUnreadAsk, GroupAsk, GroupCommit, WireClient,
    };
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let broker = TansuBroker::start();
    broker.create_topic("orders", 1);
    let producer = producer(&broker.brokers);
    let first_ms = now_ms() - 60_000;
    for index in 0..5 {
        produce_one(&producer, "orders", "k", first_ms + index * 1_000);
    }
    let metadata_client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .create()
        .expect("a client");
    let metadata = metadata_client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let node = metadata.brokers()[0].id();
    let mut wire = WireClient::new("tansu-own-client");
    wire.set_brokers(std::collections::BTreeMap::from([(
        node,
        broker.brokers.clone(),
    )]));
    let groups = 150;
    let commits: Vec<GroupCommit> = (0..groups)
        .map(|group| {
            (
                format!("own-{group}"),
                vec![("orders".to_owned(), vec![(0, group % 5)])],
            )
        })
        .collect();
    for result in wire.commit(&commits) {
        result.expect("committed");
    }
    let asks: Vec<GroupAsk> = (0..groups)
        .map(|group| GroupAsk {
            group_id: format!("own-{group}"),
            topics: vec![("orders".to_owned(), 1)],
        })
        .collect();
    let before = wire.sent.offset_fetch;
    let results = wire.committed(&asks);
    for (group, result) in results.iter().enumerate() {
        let read = result.as_ref().expect("read");
        assert_eq!(read["orders"][&0], group as i64 % 5, "own-{group}");
    }
    assert_eq!(
        wire.sent.offset_fetch - before,
        2,
        "150 groups on one coordinator: two OffsetFetch v8 requests"
    );

    let found = wire.first_unread(
        &[FirstUnreadAsk {
            topic: "orders",
            partition: 0,
            leader: node,
            from: 2,
            high: 5,
        }],
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(
        found.get(&("orders".to_owned(), 0)),
        Some(&FirstUnread::Record {
            offset: 2,
            timestamp_ms: first_ms + 2_000
        })
    );
}
