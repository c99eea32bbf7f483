//! Two freshwatch processes with the same config and Redis: they share partitions through the
//! consumer group, both serve every feed, exactly one pages, and when the leader is killed the
//! other takes over within one lease without repeating or losing a page.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::{now_ms, replica_config, wait_until, FreshwatchProcess, RedisServer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const DAY_MS: i64 = 86_400_000;

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap()
}

fn send(producer: &BaseProducer, topic: &str, key: &str, timestamp_ms: i64) {
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

/// The replicas' shared config: fast group membership, statistics, a 3 s lease, then `feeds`.
async fn firing_pages(receiver: &WebhookReceiver, feed: &str) -> usize {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["feed"] == feed && request.json["status"] == "firing")
        .count()
}

#[test]
fn two_replicas_share_the_work_one_pages_and_the_survivor_takes_over_without_a_repeat() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    cluster.create_topic("billing", 1, 1).unwrap();
    cluster.create_topic("late", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let producer = producer(&brokers);
    let runtime = common::runtime();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = replica_config(
            &brokers,
            &redis.url,
            "freshwatch-replicas",
            &format!(
                r#"
[[feed]]
name = "orders"
topic = "orders"
split_by = "key"
warn_after = "1h"
critical_after = "2h"

[[feed]]
name = "billing"
topic = "billing"
warn_after = "1h"
critical_after = "2h"

[[feed]]
name = "late"
topic = "late"
warn_after = "1h"
critical_after = "2h"

[[alerts.webhook]]
url = "{}/hook"
"#,
                receiver.url
            ),
        );
        let first_dir = tempfile::tempdir().unwrap();
        let second_dir = tempfile::tempdir().unwrap();
        let mut first = FreshwatchProcess::start(first_dir.path(), &text);
        first.wait_ready().await;
        let mut second = FreshwatchProcess::start(second_dir.path(), &text);
        second.wait_ready().await;

        // Exactly one leader.
        wait_until("exactly one leader", Duration::from_secs(15), || async {
            let leaders = [
                first.metric("freshwatch_leader").await,
                second.metric("freshwatch_leader").await,
            ];
            leaders
                .iter()
                .filter(|leader| **leader == Some(1.0))
                .count()
                == 1
                && leaders
                    .iter()
                    .filter(|leader| **leader == Some(0.0))
                    .count()
                    == 1
        })
        .await;
        let first_leads = first.metric("freshwatch_leader").await == Some(1.0);

        // Partitions are shared; every replica serves every series from the shared state.
        for tenant in 0..40 {
            send(&producer, "orders", &format!("tenant-{tenant}"), now_ms());
        }
        send(&producer, "billing", "b", now_ms() - 10 * DAY_MS);
        producer.flush(Duration::from_secs(5)).unwrap();
        for replica in [&first, &second] {
            wait_until(
                "every replica serves all 40 tenants",
                Duration::from_secs(20),
                || async {
                    replica
                        .rows()
                        .await
                        .iter()
                        .filter(|row| row["feed"] == "orders" && row["last_seen"].is_string())
                        .count()
                        == 40
                },
            )
            .await;
        }
        let assigned = first
            .metric("freshwatch_assigned_partitions")
            .await
            .unwrap_or(0.0)
            + second
                .metric("freshwatch_assigned_partitions")
                .await
                .unwrap_or(0.0);
        assert_eq!(
            assigned, 6.0,
            "the group splits the 6 partitions between the replicas"
        );

        wait_until("billing paged once", Duration::from_secs(10), || async {
            firing_pages(&receiver, "billing").await == 1
        })
        .await;
        for replica in [&first, &second] {
            wait_until(
                "both replicas show billing critical",
                Duration::from_secs(10),
                || async { replica.status("billing", "").await.as_deref() == Some("critical") },
            )
            .await;
        }

        // Kill the leader mid-flight.
        let (leader, survivor) = if first_leads {
            (&mut first, &second)
        } else {
            (&mut second, &first)
        };
        leader.kill();
        wait_until(
            "the survivor takes the lease",
            Duration::from_secs(10),
            || async { survivor.metric("freshwatch_leader").await == Some(1.0) },
        )
        .await;
        // A new silence after the takeover is paged by the new leader, once.
        send(&producer, "late", "l", now_ms() - 10 * DAY_MS);
        producer.flush(Duration::from_secs(5)).unwrap();
        wait_until(
            "the new leader pages the new silence",
            Duration::from_secs(30),
            || async { firing_pages(&receiver, "late").await >= 1 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            firing_pages(&receiver, "billing").await,
            1,
            "billing is not paged again after the takeover"
        );
        assert_eq!(firing_pages(&receiver, "late").await, 1);
        assert_eq!(
            survivor.status("billing", "").await.as_deref(),
            Some("critical")
        );
    });
    drop(cluster);
}

#[test]
fn a_deposed_leaders_status_writes_are_fenced_off_and_last_seen_only_grows() {
    use freshwatch::model::Status;
    use freshwatch::state::{RedisStore, SeriesRecord};
    use std::sync::Arc;
    let redis = RedisServer::start();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = RedisStore::connect(&redis.url, "freshwatch").await.unwrap();
        let record = |last_seen: i64, status: Status| SeriesRecord {
            feed: Arc::from("billing"),
            key: b"eu".to_vec(),
            last_seen_ms: Some(last_seen),
            status: Some((status, last_seen)),
            cadence: None,
        };
        // The lease: one holder at a time, tokens grow.
        let first = store
            .lease_acquire("a", 3_000)
            .await
            .unwrap()
            .expect("free lease");
        assert_eq!(
            store.lease_acquire("b", 3_000).await.unwrap(),
            None,
            "held by a"
        );
        assert!(store
            .lease_renew(&format!("a:{first}"), 3_000)
            .await
            .unwrap());
        store.lease_release(&format!("a:{first}")).await.unwrap();
        let second = store
            .lease_acquire("b", 3_000)
            .await
            .unwrap()
            .expect("released");
        assert!(second > first);
        assert!(
            !store
                .lease_renew(&format!("a:{first}"), 3_000)
                .await
                .unwrap(),
            "a was deposed"
        );

        store
            .write(&[record(200, Status::Critical)], Some(second))
            .await
            .unwrap();
        store
            .write(&[record(100, Status::Ok)], Some(first))
            .await
            .unwrap();
        let snapshot = freshwatch::state::StateStore::Redis(store)
            .load(&[Arc::from("billing")])
            .await
            .unwrap();
        assert_eq!(snapshot.series[0].last_seen_ms, Some(200), "max merge");
        assert_eq!(
            snapshot.series[0].status,
            Some((Status::Critical, 200)),
            "the stale leader's write was refused"
        );
    });
}

/// What a cadence test needs of the Redis it writes to: the stored text of one field, and a way
/// to make Redis forget its scripts (as a restart or failover does).
struct CadenceRedis {
    stored: Box<dyn Fn() -> Option<String>>,
    forget_scripts: Box<dyn Fn()>,
}

fn learned_every(gap_ms: i64, gaps: usize) -> freshwatch::cadence::Cadence {
    let mut cadence = freshwatch::cadence::Cadence::default();
    for _ in 0..gaps {
        cadence.learn(gap_ms, 20);
    }
    cadence
}

/// A summary as stored (`c3:<gaps>:0:<hex>`), with `counts` (bucket, count) and zeros elsewhere:
/// exact counts, to exercise the merge byte by byte.
fn summary(gaps: u16, counts: &[(usize, u8)]) -> freshwatch::cadence::Cadence {
    let mut buckets = [0u8; freshwatch::cadence::BUCKETS];
    for &(bucket, count) in counts {
        buckets[bucket] = count;
    }
    let hex: String = buckets.iter().map(|count| format!("{count:02x}")).collect();
    freshwatch::cadence::Cadence::decode(&format!("c3:{gaps}:0:{hex}")).expect("a summary")
}

/// Two writers of one series' summary (replicas reading different partitions of a feed, or a
/// restarted one) are merged by Redis with [`freshwatch::cadence::Cadence::merge`]'s rule, so
/// neither erases the other's buckets; writing the same summary again changes nothing.
async fn two_writers_merge_cadence(
    first: freshwatch::state::RedisStore,
    second: freshwatch::state::RedisStore,
    redis: CadenceRedis,
) {
    use freshwatch::cadence::Cadence;
    use freshwatch::state::SeriesRecord;
    let record = |cadence: Cadence| SeriesRecord {
        feed: Arc::from("profiles"),
        key: b"acme".to_vec(),
        last_seen_ms: Some(1_000),
        status: None,
        cadence: Some(cadence),
    };
    let stored = || {
        let text = (redis.stored)().expect("a stored summary");
        Cadence::decode(&text).unwrap_or_else(|| panic!("stored in the encoded form: {text}"))
    };
    // Time in seconds (no halving yet): 30 s of one-second gaps, 25 s of hourly ones.
    let every_second = summary(30, &[(1, 0x1e)]);
    let hourly = summary(25, &[(12, 0x19)]);
    let mut both = every_second;
    both.merge(&hourly);

    first.write(&[record(every_second)], None).await.unwrap();
    assert_eq!(
        stored(),
        every_second,
        "the first summary is stored as written"
    );
    second.write(&[record(hourly)], None).await.unwrap();
    assert_eq!(
        stored(),
        both,
        "the second writer's summary is merged in, not written over the first's"
    );

    let text = (redis.stored)();
    second.write(&[record(hourly)], None).await.unwrap();
    first.write(&[record(every_second)], None).await.unwrap();
    first.write(&[record(both)], None).await.unwrap();
    assert_eq!(
        (redis.stored)(),
        text,
        "writing a summary again changes nothing"
    );

    // Redis without the script (restarted, failed over): the write loads it and still merges.
    // Bucket by bucket the larger count wins either way, across hex digits and letters:
    // 0x1e stored over 0x0f written (1 s), 0xa0 written over 0x19 stored (1 h).
    (redis.forget_scripts)();
    let mixed = summary(160, &[(1, 0x0f), (6, 0x28), (12, 0xa0)]);
    second.write(&[record(mixed)], None).await.unwrap();
    let mut all = both;
    all.merge(&mixed);
    assert_ne!(all, mixed, "the stored summary still adds a bucket");
    assert_eq!(stored(), all, "merged after Redis forgot the script");

    // The usual flush: the writer merged the stored summary at start or reload and learned on.
    let mut grown = all;
    grown.learn(1_000, 20);
    first.write(&[record(grown)], None).await.unwrap();
    assert_eq!(
        stored(),
        grown,
        "a summary holding the stored one is stored as written"
    );

    // The series sped up: a counter passed 255 and every counter was halved. The stored copy,
    // a halving behind, is halved before the max, so the halving stands (a plain max would
    // bring the hourly past back at its old count), and a lagging writer's older copy after it
    // changes nothing either.
    let mut sped_up = grown;
    for _ in 0..300 {
        sped_up.learn(1_000, 20);
    }
    let mut expected = grown;
    expected.merge(&sped_up);
    assert_eq!(expected, sped_up, "the newer copy is the merge");
    second.write(&[record(sped_up)], None).await.unwrap();
    assert_eq!(stored(), sped_up, "the halving stands");
    first.write(&[record(grown)], None).await.unwrap();
    assert_eq!(stored(), sped_up, "an older copy does not undo it");
}

#[test]
fn cadence_summaries_from_two_writers_merge_by_a_bucket_wise_max() {
    use freshwatch::state::RedisStore;
    let redis = Arc::new(RedisServer::start());
    let (reader, flusher) = (redis.clone(), redis.clone());
    let cadence_redis = CadenceRedis {
        stored: Box::new(move || {
            match reader.command(&["HGET", "freshwatch:{profiles}:cadence", "acme"]) {
                redis::Value::Nil => None,
                value => Some(redis::from_redis_value(value).unwrap()),
            }
        }),
        forget_scripts: Box::new(move || {
            flusher.command(&["SCRIPT", "FLUSH"]);
        }),
    };
    common::runtime().block_on(async {
        let first = RedisStore::connect(&redis.url, "freshwatch").await.unwrap();
        let second = RedisStore::connect(&redis.url, "freshwatch").await.unwrap();
        two_writers_merge_cadence(first, second, cadence_redis).await;

        // A stored value that is not a summary is replaced by the one written.
        redis.command(&["HSET", "freshwatch:{profiles}:cadence", "acme", "c1:bogus"]);
        let store = RedisStore::connect(&redis.url, "freshwatch").await.unwrap();
        let every_second = learned_every(1_000, 30);
        store
            .write(
                &[freshwatch::state::SeriesRecord {
                    feed: Arc::from("profiles"),
                    key: b"acme".to_vec(),
                    last_seen_ms: Some(1_000),
                    status: None,
                    cadence: Some(every_second),
                }],
                None,
            )
            .await
            .unwrap();
        let snapshot = freshwatch::state::StateStore::Redis(store.clone())
            .load(&[Arc::from("profiles")])
            .await
            .unwrap();
        assert_eq!(snapshot.series[0].cadence, Some(every_second));

        // An earlier version's `c1:`/`c2:` forms counted records, not time: replaced by the
        // summary written, not merged as if they were time.
        let hourly = learned_every(3_600_000, 25);
        let hex = &hourly.encode()[hourly.encode().rfind(':').unwrap() + 1..];
        let c2 = format!("c2:25:0:{hex}");
        redis.command(&["HSET", "freshwatch:{profiles}:cadence", "acme", &c2]);
        store
            .write(
                &[freshwatch::state::SeriesRecord {
                    feed: Arc::from("profiles"),
                    key: b"acme".to_vec(),
                    last_seen_ms: Some(2_000),
                    status: None,
                    cadence: Some(every_second),
                }],
                None,
            )
            .await
            .unwrap();
        let snapshot = freshwatch::state::StateStore::Redis(store)
            .load(&[Arc::from("profiles")])
            .await
            .unwrap();
        assert_eq!(snapshot.series[0].cadence, Some(every_second));
    });
}

#[test]
fn cadence_summaries_merge_on_a_redis_cluster_too() {
    use freshwatch::state::RedisStore;
    let cluster = common::RedisCluster::start();
    let nodes = cluster.nodes.clone();
    let client = redis::cluster::ClusterClient::new(nodes.clone()).unwrap();
    let cadence_redis = CadenceRedis {
        stored: Box::new(move || {
            let mut connection = client.get_connection().unwrap();
            redis::cmd("HGET")
                .arg("freshwatch:{profiles}:cadence")
                .arg("acme")
                .query(&mut connection)
                .unwrap()
        }),
        forget_scripts: Box::new(move || {
            for node in &nodes {
                let mut connection = redis::Client::open(node.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query(&mut connection)
                    .unwrap();
            }
        }),
    };
    common::runtime().block_on(async {
        let first = RedisStore::connect_cluster(&cluster.nodes, "freshwatch")
            .await
            .unwrap();
        let second = RedisStore::connect_cluster(&cluster.nodes, "freshwatch")
            .await
            .unwrap();
        two_writers_merge_cadence(first, second, cadence_redis).await;
    });
}

/// A replica's reload reads only what was written since its last one (the change log), the whole
/// feed the first time, and the whole feed again when the log was trimmed past its cursor.
#[test]
fn a_replica_reload_reads_only_what_changed() {
    use freshwatch::model::Status;
    use freshwatch::state::{ChangeCursor, RedisStore, SeriesRecord};
    use std::sync::Arc;
    let redis = RedisServer::start();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = RedisStore::connect(&redis.url, "freshwatch").await.unwrap();
        let feeds = [Arc::<str>::from("profiles"), Arc::<str>::from("billing")];
        let record = |feed: &str, key: &str, last_seen: i64| SeriesRecord {
            feed: Arc::from(feed),
            key: key.as_bytes().to_vec(),
            last_seen_ms: Some(last_seen),
            status: Some((Status::Ok, last_seen)),
            cadence: None,
        };
        // A learned feed's cadence summary travels with its series, read whole or by changes.
        let mut cadence = freshwatch::cadence::Cadence::default();
        for _ in 0..25 {
            cadence.learn(1_000, 20);
        }
        let mut all: Vec<SeriesRecord> = (0..1_200)
            .map(|index| record("profiles", &format!("tenant-{index}"), 1_000))
            .collect();
        all[5].cadence = Some(cadence);
        store.write(&all, None).await.unwrap();
        let mut cursors = vec![ChangeCursor::default(); feeds.len()];

        let first = store.load_changed(&feeds, &mut cursors).await.unwrap();
        assert_eq!(first.len(), 1_200, "the first reload reads the feed whole");
        assert!(first.contains(&all[5]), "with the cadence summary");
        assert!(store
            .load_changed(&feeds, &mut cursors)
            .await
            .unwrap()
            .is_empty());

        let mut changed = vec![
            record("profiles", "tenant-7", 2_000),
            record("profiles", "tenant-1100", 2_500),
        ];
        changed[1].status = Some((Status::Critical, 2_500));
        changed[0].cadence = Some(cadence);
        store.write(&changed, None).await.unwrap();
        store
            .write(&[record("billing", "eu", 3_000)], None)
            .await
            .unwrap();
        let mut read = store.load_changed(&feeds, &mut cursors).await.unwrap();
        read.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            read,
            vec![
                record("billing", "eu", 3_000),
                changed[1].clone(),
                changed[0].clone()
            ],
            "exactly the series written since, with their stored values"
        );
        assert!(store
            .load_changed(&feeds, &mut cursors)
            .await
            .unwrap()
            .is_empty());

        // A replica that fell behind the log's window: its cursor's entry is gone.
        redis.command(&["XTRIM", "freshwatch:{profiles}:changes", "MAXLEN", "0"]);
        store
            .write(&[record("profiles", "tenant-3", 4_000)], None)
            .await
            .unwrap();
        let again = store.load_changed(&feeds, &mut cursors).await.unwrap();
        assert_eq!(again.len(), 1_200, "read whole after a gap");
        assert!(again
            .iter()
            .any(|series| series.key == b"tenant-3" && series.last_seen_ms == Some(4_000)));
    });
}

#[test]
fn with_redis_cluster_state_outbox_and_leadership_work_across_slots() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["orders", "billing", "late"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let redis = common::RedisCluster::start();
    let producer = producer(&brokers);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let receiver = WebhookReceiver::start().await;
        receiver.answer(common::receiver::Answer::Status(500));
        let nodes: Vec<String> = redis
            .nodes
            .iter()
            .map(|node| format!("\"{node}\""))
            .collect();
        let text = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-cluster"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"session.timeout.ms" = "6000"
"statistics.interval.ms" = "200"
[state]
redis_cluster_nodes = [{}]
flush_interval = "100ms"
[ha]
lease = "3s"
[evaluation]
interval = "200ms"
# Seconds-long thresholds: FreshwatchFeedBlind is tests/knowing.rs' subject, not these.
blind_after = "1h"
[[feed]]
name = "orders"
topic = "orders"
split_by = "key"
[[feed]]
name = "billing"
topic = "billing"
[[feed]]
name = "late"
topic = "late"
[[alerts.webhook]]
url = "{}/hook"
"#,
            nodes.join(", "),
            receiver.url
        );
        let directory = tempfile::tempdir().unwrap();
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &text);
        freshwatch.wait_ready().await;
        wait_until("leader over a cluster", Duration::from_secs(10), || async {
            freshwatch.metric("freshwatch_leader").await == Some(1.0)
        })
        .await;
        let ten_days_ago = now_ms() - 10 * DAY_MS;
        for (topic, key) in [
            ("orders", "acme"),
            ("orders", "globex"),
            ("billing", "b"),
            ("late", "l"),
        ] {
            send(&producer, topic, key, ten_days_ago);
        }
        producer.flush(Duration::from_secs(5)).unwrap();
        wait_until(
            "every feed critical, pages waiting in the outbox",
            Duration::from_secs(20),
            || async {
                let rows = freshwatch.rows().await;
                rows.len() == 4
                    && rows.iter().all(|row| row["status"] == "critical")
                    && freshwatch
                        .metric("freshwatch_outbox_pending{sink=\"webhook-0\"}")
                        .await
                        == Some(4.0)
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        freshwatch.kill();
        receiver.answer(common::receiver::Answer::Ok);
        freshwatch.restart();
        wait_until(
            "the outbox is delivered after the restart",
            Duration::from_secs(30),
            || async { receiver.requests().len() >= 4 },
        )
        .await;
        let rows = freshwatch.rows().await;
        assert_eq!(
            rows.len(),
            4,
            "every series restored from the cluster: {rows:#?}"
        );
        for row in &rows {
            assert_eq!(row["status"], "critical", "{rows:#?}\n{}", freshwatch.log());
            assert_eq!(
                row["last_seen"],
                freshwatch::clock::rfc3339(ten_days_ago).as_str()
            );
        }
    });
    drop(cluster);
}

/// A member of the freshwatch group that is not freshwatch: it holds partitions and says only
/// what the test makes it say in the shared state.
fn foreign_member(brokers: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<i32>> {
    let brokers = brokers.to_owned();
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "freshwatch-replicas")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&["orders"]).unwrap();
        let mut owned = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(100));
            if let Ok(assignment) = consumer.assignment() {
                owned = assignment
                    .elements()
                    .iter()
                    .map(|element| element.partition())
                    .collect();
                *OWNED.lock().unwrap() = owned.clone();
            }
        }
        owned
    })
}

static OWNED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

#[test]
fn the_leader_judges_a_partition_another_member_holds_only_from_that_members_report() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let producer = producer(&brokers);
    for partition in 0..2 {
        producer
            .send(
                BaseRecord::to("orders")
                    .partition(partition)
                    .key("k")
                    .payload("{}")
                    .timestamp(now_ms() - 10 * DAY_MS),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(5)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let member = foreign_member(&brokers, stop.clone());
    let runtime = common::runtime();
    runtime.block_on(async {
        let text = replica_config(
            &brokers,
            &redis.url,
            "freshwatch-replicas",
            r#"
[[feed]]
name = "orders"
topic = "orders"
warn_after = "3s"
critical_after = "1h"
"#,
        );
        let directory = tempfile::tempdir().unwrap();
        let leader = FreshwatchProcess::start(directory.path(), &text);
        leader.wait_ready().await;
        wait_until(
            "the group splits the two partitions",
            Duration::from_secs(30),
            || async {
                OWNED.lock().unwrap().len() == 1
                    && leader.metric("freshwatch_assigned_partitions").await == Some(1.0)
            },
        )
        .await;
        let theirs = OWNED.lock().unwrap()[0];
        wait_until(
            "the leader read its partition",
            Duration::from_secs(10),
            || async {
                leader
                    .feed_field("orders", "", "last_seen")
                    .await
                    .is_some_and(|value| !value.is_null())
            },
        )
        .await;
        // Nothing says what the other member read: the ten-day-old record on the leader's own
        // partition is not enough to page, since the other partition may hold newer ones.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            leader.status("orders", "").await.as_deref(),
            Some("unknown"),
            "no page while a partition is read by no freshwatch replica"
        );

        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let connection = client.get_multiplexed_async_connection().await.unwrap();
        let report = |through: i64| {
            let mut connection = connection.clone();
            async move {
                let _: i64 = redis::cmd("HSET")
                    .arg("freshwatch:knowledge")
                    .arg("peer")
                    .arg(format!("{}|orders:{theirs}={through}", now_ms()))
                    .query_async(&mut connection)
                    .await
                    .unwrap();
            }
        };
        // The member says it is behind on its partition: still unknown.
        let behind = async {
            loop {
                report(-1).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = behind => unreachable!("the report loop never ends"),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        assert_eq!(
            leader.status("orders", "").await.as_deref(),
            Some("unknown")
        );
        // It has read to the end: the leader knows the whole topic and pages.
        let caught_up = async {
            loop {
                report(now_ms()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = caught_up => unreachable!("the report loop never ends"),
            _ = wait_until("orders is judged", Duration::from_secs(10), || async {
                leader.status("orders", "").await.as_deref() == Some("critical")
            }) => {}
        }
        // Its reports stop (it died): the entry is removed, and the page stays.
        wait_until(
            "the dead member's entry is removed",
            Duration::from_secs(10),
            || {
                let mut connection = connection.clone();
                async move {
                    let exists: bool = redis::cmd("HEXISTS")
                        .arg("freshwatch:knowledge")
                        .arg("peer")
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                    !exists
                }
            },
        )
        .await;
        assert_eq!(
            leader.status("orders", "").await.as_deref(),
            Some("critical")
        );
        drop(leader);
    });
    stop.store(true, Ordering::Relaxed);
    member.join().unwrap();
    drop(cluster);
}

/// Issue #18: with Redis down, what the other replica reads is unknown because the store is
/// down, not unread: the leader pages no `FreshwatchPartitionsUnread` and no `FeedVolumeDrop`
/// from its own share of the rate, and exactly one `FreshwatchStateStoreDown`.
#[test]
fn with_redis_down_two_replicas_page_only_that_the_state_store_is_down() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut redis = RedisServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    common::runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let config = replica_config(
            &brokers,
            &redis.url,
            "freshwatch-replicas-redis-down",
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
        )
        .replace(
            "blind_after = \"1h\"",
            "blind_after = \"5s\"\nsource_grace = \"3s\"",
        )
        .replace(
            "flush_interval = \"100ms\"",
            "flush_interval = \"100ms\"\ndown_grace = \"2s\"",
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
                let producer = producer(&brokers);
                // Paced: 10 records a second into each partition, 20 in all.
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
        wait_until(
            "the leader judges the summed rate above min_rate",
            Duration::from_secs(40),
            || async {
                let Ok(response) = reqwest::get(format!("{}/api/v1/volume", leader.base_url)).await
                else {
                    return false;
                };
                let rows: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
                rows.iter()
                    .any(|row| row["feed"] == "profiles" && row["status"] == "ok")
            },
        )
        .await;
        // The start (a rebalance, the rate measured from nothing) is not the subject: only
        // what is paged from the moment Redis goes away counts.
        let settled = receiver.requests().len();
        let named = |alertname: &str| -> Vec<String> {
            receiver
                .requests()
                .iter()
                .skip(settled)
                .filter(|request| request.json["alertname"] == alertname)
                .map(|request| {
                    request.json["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        };

        redis.kill();
        // Past the peer TTL, source_grace, down_grace, the volume window and volume_for.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let logs = || format!("{}\n---\n{}", first.log(), second.log());
        assert_eq!(
            named("FreshwatchStateStoreDown"),
            ["firing"],
            "one page says the store is down\n{}",
            logs()
        );
        assert!(
            named("FreshwatchPartitionsUnread").is_empty(),
            "the peer's partition is unknown, not unread\n{}",
            logs()
        );
        assert!(
            named("FeedVolumeDrop").is_empty(),
            "no volume judgement from the leader's own share of the rate\n{}",
            logs()
        );
        assert!(
            !named("FreshwatchFeedBlind").contains(&"firing".to_owned()),
            "the feed is blind past blind_after, but its cause has paged already\n{}",
            logs()
        );

        // Back: the peers report again within their TTL, so nothing is called unread then
        // either, and the rate is the whole feed's again.
        redis.restart();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(named("FreshwatchPartitionsUnread").is_empty(), "{}", logs());
        assert!(named("FeedVolumeDrop").is_empty(), "{}", logs());
        stop.store(true, Ordering::Relaxed);
        producing.join().unwrap();
    });
    drop(cluster);
}
