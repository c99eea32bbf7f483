//! Tail mode on transactional topics, against Tansu: the newest offsets of such a partition are
//! transaction markers, which no consumer ever receives. The feed must still be known through
//! its newest data record, and a partition holding nothing but markers within the read-back
//! bound must not look fresh.
//!
//! Tansu 0.6 stores control batches but does not route `EndTxn`, so librdkafka's transactional
//! producer cannot commit against it; the commit markers are written as raw `Produce` requests
//! (see `common::markers`), where a real broker's coordinator would write them.

mod common;

use std::time::Duration;

use common::markers::produce_commit_marker;
use common::{now_ms, produce_one, producer, runtime, wait_until, FreshwatchProcess, TansuBroker};

const FEED: &str = "orders";
const EXHAUSTED: &str = "freshwatch_tail_readback_exhausted_total{feed=\"orders\"}";

fn config(brokers: &str, state: &std::path::Path) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-transactions"
tail_interval = "200ms"

[state]
path = "{}"
flush_interval = "200ms"

[evaluation]
interval = "200ms"

[[feed]]
name = "{FEED}"
topic = "{FEED}"
mode = "tail"
warn_after = "1h"
critical_after = "1d"
"#,
        state.join("state").display()
    )
}

/// One committed transaction as it lands in the log: its data record, then its commit marker.
fn commit_one(broker: &TansuBroker, partition: i32, timestamp_ms: i64) {
    let producer = producer(&broker.brokers);
    producer
        .send(
            rdkafka::producer::BaseRecord::to(FEED)
                .partition(partition)
                .key("k")
                .payload("{}")
                .timestamp(timestamp_ms),
        )
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    produce_commit_marker(&broker.brokers, FEED, partition, timestamp_ms + 1);
}

async fn wait_last_seen(freshwatch: &FreshwatchProcess, broker: &TansuBroker, expected_ms: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let last_seen = freshwatch.last_seen_ms(FEED, "").await;
        if last_seen == Some(expected_ms) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen {last_seen:?}, expected {expected_ms}\n{}\nbroker:\n{}",
            freshwatch.log(),
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_tail_feed_on_a_transactional_topic_is_known_through_the_record_before_the_marker() {
    let broker = TansuBroker::start();
    broker.create_topic(FEED, 2);
    let committed_ms = now_ms() - 60_000;
    commit_one(&broker, 0, committed_ms);
    commit_one(&broker, 1, committed_ms);
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let freshwatch =
            FreshwatchProcess::start(directory.path(), &config(&broker.brokers, directory.path()));
        freshwatch.wait_ready().await;
        wait_last_seen(&freshwatch, &broker, committed_ms).await;
        wait_until("the feed is ok", Duration::from_secs(10), || async {
            freshwatch.status(FEED, "").await.as_deref() == Some("ok")
        })
        .await;

        // A later transaction: the watermark moves past another marker; the feed follows.
        let later_ms = now_ms() - 30_000;
        commit_one(&broker, 0, later_ms);
        wait_last_seen(&freshwatch, &broker, later_ms).await;
        assert_eq!(freshwatch.metric(EXHAUSTED).await, Some(0.0));
        assert_eq!(freshwatch.status(FEED, "").await.as_deref(), Some("ok"));
    });
}

#[test]
fn markers_past_the_read_back_bound_refresh_nothing_and_are_counted() {
    let broker = TansuBroker::start();
    broker.create_topic(FEED, 1);
    let committed_ms = now_ms() - 60_000;
    produce_one(&producer(&broker.brokers), FEED, "k", committed_ms);
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let freshwatch =
            FreshwatchProcess::start(directory.path(), &config(&broker.brokers, directory.path()));
        freshwatch.wait_ready().await;
        wait_last_seen(&freshwatch, &broker, committed_ms).await;

        // More markers than the read-back bound, and no data record among them.
        for _ in 0..70 {
            produce_commit_marker(&broker.brokers, FEED, 0, now_ms());
        }
        wait_until(
            "the exhausted read-back is counted",
            Duration::from_secs(20),
            || async {
                freshwatch
                    .metric(EXHAUSTED)
                    .await
                    .is_some_and(|count| count >= 1.0)
            },
        )
        .await;
        assert_eq!(freshwatch.last_seen_ms(FEED, "").await, Some(committed_ms));
        let log = freshwatch.log();
        assert_eq!(
            log.matches("tail read-back found no data record").count(),
            1,
            "one warning per partition:\n{log}"
        );
    });
}

#[test]
fn the_hand_written_markers_carry_a_correct_crc() {
    assert_eq!(common::markers::crc32c(b"123456789"), 0xE306_9283);
}
