//! `freshwatch backtest`: a known day of history on librdkafka's mock cluster gives exactly the
//! known incidents, and the backtest leaves no trace: no commit in the service's group, no
//! connection to the state store or a sink.
//!
//! Boundaries (see `src/backtest/replay.rs`): an alert starts at `last record + threshold`, a
//! warning that turns critical ends where the critical alert starts, and an alert ends at the
//! event time of the record that ended the gap.
//!
//! A second history compares `thresholds = "learned"` with fixed thresholds on one split feed:
//! each tenant is paged by its own cadence (see `src/cadence.rs`), where one fixed threshold
//! pages the slow tenant on every gap and misses the fast one's silences.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{freshwatch_bin, now_ms};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;
const SERVICE_GROUP: &str = "freshwatch-service";

// Each series' records are offset within the minute, so no series' record is a tick that happens
// to land on another's deadline: a replay that skipped the deadlines between records would be off.
const INITECH: i64 = 20_000;
const GLOBEX: i64 = 30_000;
const ORDERS: i64 = 40_000;

/// The history, in minutes after `base`: the first record lands ten minutes after the window's
/// start (so nothing is `never_seen`), the last two minutes before the test's "now".
struct History {
    base_ms: i64,
    last_minute: i64,
}

impl History {
    fn new(now_ms: i64) -> Self {
        History {
            base_ms: now_ms - 1430 * MINUTE,
            last_minute: 1428,
        }
    }

    fn at(&self, minute: i64) -> i64 {
        self.base_ms + minute * MINUTE
    }

    /// `profiles` (split by key, acme and initech on partition 0, globex on 1) and `orders`.
    fn produce(&self, brokers: &str) {
        let producer = common::producer(brokers);
        // Older than the window: skipped, or it would page `orders` at the window's start.
        send(&producer, "orders", 0, None, self.at(0) - 2 * 1440 * MINUTE);
        let last = self.last_minute;
        for minute in 0..=last {
            // acme: a 40-minute gap after minute 60.
            if minute <= 60 || minute >= 100 {
                send(&producer, "profiles", 0, Some("acme"), self.at(minute));
            }
            send(
                &producer,
                "profiles",
                1,
                Some("globex"),
                self.at(minute) + GLOBEX,
            );
            // initech: stops two hours before the end.
            if minute <= last - 120 {
                send(
                    &producer,
                    "profiles",
                    0,
                    Some("initech"),
                    self.at(minute) + INITECH,
                );
            }
            // orders: a 3-hour gap after minute 300.
            if minute <= 300 || minute >= 480 {
                send(&producer, "orders", 0, None, self.at(minute) + ORDERS);
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every alert the history must give, by feed (config order), key, start.
    fn expected_alerts(&self) -> Vec<ExpectedAlert> {
        let last = self.last_minute;
        vec![
            (
                "profiles",
                "acme",
                "warning",
                self.at(70),
                Some(self.at(90)),
            ),
            (
                "profiles",
                "acme",
                "critical",
                self.at(90),
                Some(self.at(100)),
            ),
            (
                "profiles",
                "initech",
                "warning",
                self.at(last - 110) + INITECH,
                Some(self.at(last - 90) + INITECH),
            ),
            (
                "profiles",
                "initech",
                "critical",
                self.at(last - 90) + INITECH,
                None,
            ),
            (
                "orders",
                "",
                "warning",
                self.at(310) + ORDERS,
                Some(self.at(330) + ORDERS),
            ),
            (
                "orders",
                "",
                "critical",
                self.at(330) + ORDERS,
                Some(self.at(480) + ORDERS),
            ),
        ]
    }
}

// The cadence history: three tenants of one `exports` topic (split by key), on a `History`'s
// minutes.
// - `fast` sends every minute, except in the `FAST_SILENCES`; it sends through the last minute
//   before now (a minute later than the incidents history), as its learned warning comes 192 s
//   after its last record;
// - `slow` sends every 90 minutes from minute 28, its last record under an hour before now;
// - `newcomer` sends every 15 minutes from minute 1000, except in its `NEWCOMER_SILENCE`.

/// Where in the minute each tenant's records land: apart, so that no record is a tick that
/// happens to land on another series' crossing.
const FAST: i64 = 45_000;
const SLOW: i64 = 15_000;
const NEWCOMER: i64 = 50_000;

/// `newcomer`'s 55-minute silence comes 7 gaps in, still warming up: its look two hours (the
/// ceiling) after its first record finds it fresh and keeps the ceilings, so it is not paged,
/// where its own thresholds then (p99 1024 s, warn 51m12s) would have paged it. Its 10th gap
/// ends the warm-up, and the silence it learned keeps its thresholds at the ceilings.
const NEWCOMER_SILENCE: (i64, i64) = (1105, 1160);

/// `fast`'s silences: its last record before each, and the one that ends it (minutes). Under
/// 100 gaps the p99 is the longest gap's bucket, so had the first silence (60 gaps in) been
/// learned, the second (90 gaps in) would not page at all.
const FAST_SILENCES: [(i64, i64); 2] = [(60, 90), (120, 150)];

/// `fast`'s learned thresholds: its 60 s gaps fall in the log2 bucket [32 s, 64 s), so p99 is
/// 64 s; warn = 3 × 64 s and critical = 6 × 64 s, both above the floors (1m, 3m) and under
/// the ceilings (2h, 4h).
const FAST_WARN_AFTER: i64 = 3 * 64_000;
const FAST_CRITICAL_AFTER: i64 = 6 * 64_000;

/// `exports` with learned thresholds: 2h / 4h are ceilings, 1m / 3m floors, and a series is
/// judged by the ceilings until it learned 10 gaps. `slow`'s 90-minute gaps (p99 8192 s) put
/// its thresholds at the ceilings, over its cadence.
const LEARNED_EXPORTS: &str = r#"
[[feed]]
name = "exports"
topic = "exports"
split_by = "key"
warn_after = "2h"
critical_after = "4h"
thresholds = "learned"
learn_min_gaps = 10
warn_after_min = "1m"
critical_after_min = "3m"
"#;

/// The same feed with one fixed pair of thresholds for every tenant.
const FIXED_EXPORTS: &str = r#"
[[feed]]
name = "exports"
topic = "exports"
split_by = "key"
warn_after = "1h"
critical_after = "2h"
"#;

impl History {
    fn slow_minutes(&self) -> impl Iterator<Item = i64> {
        (28..=self.last_minute + 1).step_by(90)
    }

    /// Produces the cadence history (`fast` and `newcomer` on partition 0, `slow` on 1) and
    /// returns how many records it holds.
    fn produce_cadences(&self, brokers: &str) -> u64 {
        let producer = common::producer(brokers);
        let last = self.last_minute + 1;
        let in_silence = |minute: i64| {
            FAST_SILENCES
                .iter()
                .any(|&(silent_after, resumed)| minute > silent_after && minute < resumed)
        };
        let fast = (0..=last).filter(|&minute| !in_silence(minute));
        let (silent_after, resumed) = NEWCOMER_SILENCE;
        let newcomer = (1000..=silent_after)
            .step_by(15)
            .chain((resumed..=last).step_by(15));
        let mut records = 0;
        for (key, partition, offset, minutes) in [
            ("fast", 0, FAST, fast.collect::<Vec<_>>()),
            ("newcomer", 0, NEWCOMER, newcomer.collect()),
            ("slow", 1, SLOW, self.slow_minutes().collect()),
        ] {
            for minute in minutes {
                send(
                    &producer,
                    "exports",
                    partition,
                    Some(key),
                    self.at(minute) + offset,
                );
                records += 1;
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        records
    }

    /// Under learned thresholds only `fast` pages, in each silence alike: a warning at its last
    /// record + 192 s, critical at + 384 s, resolved by the record that ends the silence.
    fn learned_alerts(&self) -> Vec<ExpectedAlert> {
        FAST_SILENCES
            .iter()
            .flat_map(|&(silent_after, resumed)| {
                let last_ms = self.at(silent_after) + FAST;
                let critical_ms = last_ms + FAST_CRITICAL_AFTER;
                [
                    (
                        "exports",
                        "fast",
                        "warning",
                        last_ms + FAST_WARN_AFTER,
                        Some(critical_ms),
                    ),
                    (
                        "exports",
                        "fast",
                        "critical",
                        critical_ms,
                        Some(self.at(resumed) + FAST),
                    ),
                ]
            })
            .collect()
    }

    /// Under fixed 1h / 2h only `slow` pages: a warning an hour into each of its 90-minute gaps,
    /// to the next record. `fast`'s 30 minutes and `newcomer`'s 55 stay under the hour.
    fn fixed_alerts(&self) -> Vec<ExpectedAlert> {
        let sent: Vec<i64> = self
            .slow_minutes()
            .map(|minute| self.at(minute) + SLOW)
            .collect();
        sent.windows(2)
            .map(|gap| {
                (
                    "exports",
                    "slow",
                    "warning",
                    gap[0] + 60 * MINUTE,
                    Some(gap[1]),
                )
            })
            .collect()
    }
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, key: Option<&str>, at_ms: i64) {
    loop {
        let mut record = BaseRecord::<str, str>::to(topic)
            .partition(partition)
            .payload("{}")
            .timestamp(at_ms);
        if let Some(key) = key {
            record = record.key(key);
        }
        match producer.send(record) {
            Ok(()) => return,
            // Queue full: let deliveries drain.
            Err((error, _)) => {
                assert!(
                    matches!(
                        error.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "{error}"
                );
                producer.poll(Duration::from_millis(50));
            }
        }
    }
}

/// The day of incidents' feeds: `profiles` split by key, and `orders`.
const INCIDENT_FEEDS: &str = r#"
[[feed]]
name = "profiles"
topic = "profiles"
split_by = "key"
warn_after = "10m"
critical_after = "30m"

[[feed]]
name = "orders"
topic = "orders"
warn_after = "10m"
critical_after = "30m"
"#;

fn config(brokers: &str, redis: &TcpListener, webhook: &TcpListener) -> String {
    config_with_feeds(brokers, redis, webhook, INCIDENT_FEEDS)
}

/// A config with `feeds` whose state store and webhook sink are listeners the test holds: any
/// connection the backtest made would be waiting in their backlog.
fn config_with_feeds(
    brokers: &str,
    redis: &TcpListener,
    webhook: &TcpListener,
    feeds: &str,
) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{SERVICE_GROUP}"
[kafka.properties]
"reconnect.backoff.max.ms" = "1000"

[state]
redis_url = "redis://{redis}/0"
{feeds}
[[alerts.webhook]]
url = "http://{webhook}/hook"
"#,
        redis = redis.local_addr().unwrap(),
        webhook = webhook.local_addr().unwrap(),
    )
}

fn backtest(config: &str, args: &[&str]) -> Output {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("freshwatch.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(freshwatch_bin())
        .arg("backtest")
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs `backtest --since 1d --format json` (plus `args`) and parses the report; its stderr
/// goes into failure messages.
fn json_backtest(config: &str, args: &[&str]) -> (Value, String) {
    let mut all_args = vec!["--since", "1d", "--format", "json"];
    all_args.extend_from_slice(args);
    let output = backtest(config, &all_args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

/// An alert as the tests compare them: feed, key, severity, start_ms and end_ms (`None`: still
/// firing at the end).
type AlertRow = (String, String, String, i64, Option<i64>);

/// An alert a history must give, in the same order.
type ExpectedAlert = (&'static str, &'static str, &'static str, i64, Option<i64>);

/// The report's alerts, in its order.
fn alert_rows(report: &Value) -> Vec<AlertRow> {
    report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| {
            (
                alert["feed"].as_str().unwrap().to_owned(),
                alert["key"].as_str().unwrap().to_owned(),
                alert["severity"].as_str().unwrap().to_owned(),
                alert["start_ms"].as_i64().unwrap(),
                alert["end_ms"].as_i64(),
            )
        })
        .collect()
}

fn rows(expected: Vec<ExpectedAlert>) -> Vec<AlertRow> {
    expected
        .into_iter()
        .map(|(feed, key, severity, start, end)| {
            (feed.into(), key.into(), severity.into(), start, end)
        })
        .collect()
}

fn listener() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

fn assert_untouched(listener: &TcpListener, what: &str) {
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("backtest connected to the {what} from {peer}"),
        Err(error) => panic!("{what} listener: {error}"),
    }
}

/// The service's group committed nothing: every partition's committed offset is invalid.
fn assert_no_commits(brokers: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", SERVICE_GROUP)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition("profiles", 0);
    partitions.add_partition("profiles", 1);
    partitions.add_partition("orders", 0);
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    for element in committed.elements() {
        assert_eq!(
            element.offset(),
            Offset::Invalid,
            "{}/{} has a committed offset in the service's group",
            element.topic(),
            element.partition()
        );
    }
}

#[test]
fn a_day_of_history_gives_exactly_the_known_incidents_and_leaves_no_trace() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 2, 1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let test_now_ms = now_ms();
    let history = History::new(test_now_ms);
    history.produce(&brokers);
    let redis = listener();
    let webhook = listener();
    let config = config(&brokers, &redis, &webhook);

    let (report, stderr) = json_backtest(&config, &[]);

    let end_ms = report["window"]["end_ms"].as_i64().unwrap();
    assert!(end_ms >= test_now_ms && end_ms < test_now_ms + 120_000);
    assert_eq!(report["window"]["start_ms"], json!(end_ms - 1440 * MINUTE));
    assert_eq!(
        alert_rows(&report),
        rows(history.expected_alerts()),
        "{:#}\n{stderr}",
        report["read"]
    );
    let initech_critical = &report["alerts"][3];
    assert_eq!(initech_critical["still_firing"], json!(true));
    assert_eq!(
        initech_critical["duration_ms"],
        json!(end_ms - (history.at(history.last_minute - 90) + INITECH))
    );
    assert_eq!(
        report["alerts"][0]["start"],
        json!(freshwatch::clock::rfc3339(history.at(70)))
    );

    let still_firing_ms = end_ms - (history.at(history.last_minute - 90) + INITECH);
    assert_eq!(
        report["totals"],
        json!({
            "volume_drops": 0,
            "alerts": 6,
            "alerting_ms": 40 * MINUTE + 10 * MINUTE + still_firing_ms + 20 * MINUTE + 150 * MINUTE,
            "by_feed": [
                {"feed": "profiles", "severity": "warning", "alerts": 2, "alerting_ms": 40 * MINUTE},
                {"feed": "profiles", "severity": "critical", "alerts": 2, "alerting_ms": 10 * MINUTE + still_firing_ms},
                {"feed": "orders", "severity": "warning", "alerts": 1, "alerting_ms": 20 * MINUTE},
                {"feed": "orders", "severity": "critical", "alerts": 1, "alerting_ms": 150 * MINUTE},
            ],
        })
    );
    assert_eq!(report["read"]["records_before_window"], json!(1));
    assert_eq!(report["read"]["partitions"], json!(3));
    assert_eq!(
        report["read"]["partitions_from_beginning"],
        json!(3),
        "the mock cluster cannot list offsets by time"
    );

    let text_output = backtest(&config, &["--since", "1d"]);
    assert!(text_output.status.success());
    let text = String::from_utf8_lossy(&text_output.stdout);
    let rfc = freshwatch::clock::rfc3339;
    for line in [
        "profiles/acme".to_owned(),
        format!(
            "warning  {} -> {} (20m 0s)",
            rfc(history.at(70)),
            rfc(history.at(90))
        ),
        format!(
            "critical {} -> {} (10m 0s)",
            rfc(history.at(90)),
            rfc(history.at(100))
        ),
        format!(
            "critical {} -> still firing at the end",
            rfc(history.at(history.last_minute - 90) + INITECH)
        ),
        format!(
            "critical {} -> {} (2h 30m)",
            rfc(history.at(330) + ORDERS),
            rfc(history.at(480) + ORDERS)
        ),
        "profiles                 warning     2 alerts  40m 0s alerting".to_owned(),
        "orders                   critical    1 alerts  2h 30m alerting".to_owned(),
        "read from the beginning".to_owned(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }

    assert_no_commits(&brokers);
    assert_untouched(&redis, "state store");
    assert_untouched(&webhook, "webhook sink");
}

#[test]
fn learned_thresholds_page_each_tenant_by_its_own_cadence_where_fixed_ones_page_the_slow_one() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("exports", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let history = History::new(now_ms());
    let records = history.produce_cadences(&brokers);
    let (redis, webhook) = (listener(), listener());

    let (learned, stderr) = json_backtest(
        &config_with_feeds(&brokers, &redis, &webhook, LEARNED_EXPORTS),
        &[],
    );
    assert_eq!(
        alert_rows(&learned),
        rows(history.learned_alerts()),
        "fast pages in both silences; slow stays within its own cadence; newcomer's silence \
         falls in its warm-up, judged by the ceilings\n{stderr}"
    );
    // Per silence: warning from 192 s to 384 s, then critical to the 30th minute.
    let warning_ms = FAST_CRITICAL_AFTER - FAST_WARN_AFTER;
    let critical_ms = 30 * MINUTE - FAST_CRITICAL_AFTER;
    assert_eq!(
        learned["totals"],
        json!({
            "volume_drops": 0,
            "alerts": 4,
            "alerting_ms": 2 * (warning_ms + critical_ms),
            "by_feed": [
                {"feed": "exports", "severity": "warning", "alerts": 2, "alerting_ms": 2 * warning_ms},
                {"feed": "exports", "severity": "critical", "alerts": 2, "alerting_ms": 2 * critical_ms},
            ],
        })
    );
    assert_eq!(learned["read"]["records"], json!(records));
    assert_eq!(learned["read"]["record_errors"], json!(0));

    // The same history under the fixed thresholds one would otherwise pick.
    let (fixed, stderr) = json_backtest(
        &config_with_feeds(&brokers, &redis, &webhook, FIXED_EXPORTS),
        &[],
    );
    assert_eq!(
        alert_rows(&fixed),
        rows(history.fixed_alerts()),
        "slow pages on every gap; fast's silences stay under the hour\n{stderr}"
    );
    assert_eq!(
        fixed["totals"],
        json!({
            "volume_drops": 0,
            "alerts": 15,
            "alerting_ms": 15 * 30 * MINUTE,
            "by_feed": [
                {"feed": "exports", "severity": "warning", "alerts": 15, "alerting_ms": 15 * 30 * MINUTE},
                {"feed": "exports", "severity": "critical", "alerts": 0, "alerting_ms": 0},
            ],
        })
    );

    assert_untouched(&redis, "state store");
    assert_untouched(&webhook, "webhook sink");
}

#[test]
fn feed_limits_the_report_to_one_feed_and_an_unknown_one_exits_2() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 2, 1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let history = History::new(now_ms());
    history.produce(&brokers);
    let (redis, webhook) = (listener(), listener());
    let config = config(&brokers, &redis, &webhook);

    let (report, _) = json_backtest(&config, &["--feed", "orders"]);
    let feeds: Vec<&str> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| alert["feed"].as_str().unwrap())
        .collect();
    assert_eq!(feeds, ["orders", "orders"]);
    assert_eq!(
        report["read"]["partitions"],
        json!(1),
        "only the feed's topic is read"
    );

    let unknown = backtest(&config, &["--feed", "invoices"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("--feed invoices: no such feed (the config has: profiles, orders)"));
}

#[test]
fn an_unreachable_broker_fails_within_seconds_with_exit_3_and_a_bad_config_with_exit_1() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let (redis, webhook) = (listener(), listener());
    let config = config(&address.to_string(), &redis, &webhook);

    let started = Instant::now();
    let output = backtest(&config, &["--since", "1d"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "error: backtest failed: Kafka brokers {address} did not answer within 10s"
        )),
        "{stderr}"
    );

    let bad = backtest(
        &config.replace("warn_after = \"10m\"", "warn_after = \"2h\""),
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("error: feed[0].critical_after: must be greater than warn_after"));
}

#[test]
fn a_broker_that_finds_offsets_by_time_is_read_from_the_windows_start() {
    let broker = common::TansuBroker::start();
    broker.create_topic("orders", 1);
    broker.create_topic("profiles", 1);
    let producer = common::producer(&broker.brokers);
    let now = now_ms();
    for at_ms in [
        now - 3 * 1440 * MINUTE,
        now - 2 * 1440 * MINUTE,
        now - 5 * MINUTE,
    ] {
        common::produce_one(&producer, "orders", "", at_ms);
    }
    common::produce_one(&producer, "profiles", "acme", now - 5 * MINUTE);
    let (redis, webhook) = (listener(), listener());

    let output = backtest(
        &config(&broker.brokers, &redis, &webhook),
        &["--since", "1d", "--format", "json"],
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        broker.log()
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["read"],
        json!({"partitions": 2, "partitions_from_beginning": 0, "records": 2,
               "records_before_window": 0, "record_errors": 0}),
        "the two old records are skipped by offset, not read"
    );
}

/// `orders-volume`: bursts of 30 records at one instant (one producer batch, one timestamp)
/// every minute, then one record a minute for an hour, then bursts again; fresh all along.
const VOLUME_FEEDS: &str = r#"
[evaluation]
interval = "10s"

[[feed]]
name = "orders-volume"
topic = "orders"
warn_after = "10m"
critical_after = "30m"
min_rate = "10/min"
volume_for = "5m"
volume_window = "10m"
"#;

#[test]
fn a_volume_drop_is_replayed_counting_every_record_of_a_burst() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let history = History::new(now_ms());
    let producer = common::producer(&brokers);
    for minute in 0..=history.last_minute {
        let burst = if (600..660).contains(&minute) { 1 } else { 30 };
        for _ in 0..burst {
            send(&producer, "orders", 0, None, history.at(minute) + ORDERS);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let (redis, webhook) = (listener(), listener());

    let (report, stderr) = json_backtest(
        &config_with_feeds(&brokers, &redis, &webhook, VOLUME_FEEDS),
        &[],
    );

    assert_eq!(alert_rows(&report), vec![], "fresh all along\n{stderr}");
    let drops = report["volume_drops"].as_array().unwrap();
    assert_eq!(
        drops.len(),
        1,
        "one drop, the hour at one a minute (a burst counted once would be a drop all day)\n{report:#}"
    );
    let drop = &drops[0];
    assert_eq!(drop["feed"], json!("orders-volume"));
    assert_eq!(drop["key"], json!(""));
    // Under 100 records in 10 minutes once 7 minutes of one a minute are in the window
    // (3 × 30 + 7 = 97), paged 5 minutes later, at the service's 10 s ticks.
    let below_since_ms = drop["below_since_ms"].as_i64().unwrap();
    let start_ms = drop["start_ms"].as_i64().unwrap();
    let end_ms = drop["end_ms"].as_i64().unwrap();
    assert!(
        (history.at(606)..=history.at(608)).contains(&below_since_ms),
        "{drop:#}"
    );
    assert_eq!(start_ms - below_since_ms, 5 * MINUTE, "{drop:#}");
    assert!(
        (history.at(660)..=history.at(665)).contains(&end_ms),
        "{drop:#}"
    );
    assert!(drop["summary"]
        .as_str()
        .unwrap()
        .contains("against an expected 10/min"));
    assert_eq!(report["totals"]["volume_drops"], json!(1));
    assert_untouched(&redis, "state store");
    assert_untouched(&webhook, "webhook sink");
}
