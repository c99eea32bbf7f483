//! Pages that always arrive: the durable outbox across a dead sink and `kill -9`, fallbacks,
//! payload shapes, signatures, the watchdog alert and the heartbeat. Real processes: freshwatch
//! itself, Redis, Alertmanager, aiosmtpd; local receivers stand in for PagerDuty, Slack and
//! webhooks. Durations are scaled down (seconds for minutes) so the suite stays fast.

mod common;

use std::time::Duration;

use common::receiver::{Answer, WebhookReceiver};
use common::{
    now_ms, runtime, wait_until, Alertmanager, FreshwatchProcess, RedisServer, SmtpServer,
};
use hmac::{Hmac, Mac};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;
use sha2::Sha256;

const DAY_MS: i64 = 86_400_000;

fn produce(brokers: &str, topic: &str, timestamp_ms: i64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::<(), _>::to(topic)
                .payload("{}")
                .timestamp(timestamp_ms),
        )
        .map_err(|(error, _)| error)
        .unwrap();
    producer.flush(Duration::from_secs(5)).unwrap();
}

fn base_config(brokers: &str, state: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-alerting"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"reconnect.backoff.max.ms" = "1000"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[state]
{state}
flush_interval = "100ms"

[evaluation]
interval = "200ms"
# Thresholds here are seconds, shorter than a group join: these scenarios are about delivery,
# not about FreshwatchFeedBlind (tests/knowing.rs), which would page during start-up.
blind_after = "1h"

[[feed]]
name = "orders"
topic = "orders"
warn_after = "2s"
critical_after = "4s"
"#
    )
}

fn verify_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    header == format!("sha256={expected}")
}

#[test]
fn no_notification_is_lost_while_the_sink_is_down_nor_across_kill_9() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        receiver.answer(Answer::Hang);
        let config = format!(
            "{}\n[[alerts.webhook]]\nurl = \"{}/hook\"\nsecret = \"s3cret\"\ntimeout = \"1s\"\n",
            base_config(&brokers, &format!("redis_url = \"{}\"", redis.url)),
            receiver.url
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &config);
        freshwatch.wait_ready().await;
        produce(&brokers, "orders", now_ms());
        wait_until(
            "orders turns critical while the sink is down",
            Duration::from_secs(15),
            || async { freshwatch.status("orders", "").await.as_deref() == Some("critical") },
        )
        .await;
        wait_until(
            "both notifications wait in the outbox",
            Duration::from_secs(5),
            || async {
                freshwatch
                    .metric("freshwatch_outbox_pending{sink=\"webhook-0\"}")
                    .await
                    == Some(2.0)
            },
        )
        .await;
        assert!(
            receiver.requests().is_empty(),
            "the sink accepted nothing yet"
        );

        // kill -9 with undelivered notifications, then the sink comes back.
        freshwatch.kill();
        receiver.answer(Answer::Ok); // the sink comes back while freshwatch is down
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        wait_until(
            "both notifications delivered after the restart",
            Duration::from_secs(20),
            || async { receiver.requests().len() >= 2 },
        )
        .await;
        produce(&brokers, "orders", now_ms());
        wait_until(
            "the resolve is delivered",
            Duration::from_secs(15),
            || async {
                receiver
                    .requests()
                    .iter()
                    .any(|request| request.json["status"] == "resolved")
            },
        )
        .await;

        let requests = receiver.requests();
        let mut sequence: Vec<(String, String)> = requests
            .iter()
            .map(|request| {
                (
                    request.json["status"].as_str().unwrap().to_owned(),
                    request.json["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        sequence.dedup(); // at-least-once: a duplicate is allowed, the dedup key absorbs it
        assert_eq!(
            sequence,
            [
                ("firing".to_owned(), "warning".to_owned()),
                ("firing".to_owned(), "critical".to_owned()),
                ("resolved".to_owned(), "critical".to_owned()),
            ],
            "{:#?}",
            requests
                .iter()
                .map(|request| &request.json)
                .collect::<Vec<_>>()
        );
        for request in &requests {
            assert_eq!(
                request.json["dedup_key"], "freshwatch/orders/",
                "stable across restarts"
            );
            let signature = request.headers["x-freshwatch-signature"].to_str().unwrap();
            assert!(
                verify_signature("s3cret", &request.body, signature),
                "signature verifies"
            );
            assert!(!verify_signature("wrong", &request.body, signature));
        }
        wait_until("the outbox is empty", Duration::from_secs(5), || async {
            freshwatch
                .metric("freshwatch_outbox_pending{sink=\"webhook-0\"}")
                .await
                == Some(0.0)
        })
        .await;
        let log = freshwatch.log();
        assert!(
            log.contains("undelivered notifications recovered from the outbox"),
            "{log}"
        );
    });
    drop(cluster);
}

/// Twelve tenants of one feed stop at once: the webhook gets one roll-up that escalates once and
/// resolves once, across a `kill -9` (the members persist), while Alertmanager gets every key.
#[test]
fn many_keys_that_stop_together_page_once_per_feed_and_alertmanager_still_gets_each() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    let tenants: Vec<String> = (0..12).map(|index| format!("tenant-{index:02}")).collect();
    let produce_all = |timestamp_ms: i64| {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        for tenant in &tenants {
            producer
                .send(
                    BaseRecord::to("profiles")
                        .key(tenant.as_str())
                        .payload("{}")
                        .timestamp(timestamp_ms),
                )
                .map_err(|(error, _)| error)
                .unwrap();
        }
        producer.flush(Duration::from_secs(5)).unwrap();
    };
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let base = base_config(&brokers, &format!("redis_url = \"{}\"", redis.url));
        let (head, _) = base.split_once("[[feed]]").unwrap();
        let config = format!(
            r#"{head}
[[feed]]
name = "profiles"
topic = "profiles"
split_by = "key"
warn_after = "3s"
critical_after = "8s"
rollup_after = 5

[[alerts.webhook]]
url = "{}/hook"

[[alerts.alertmanager]]
url = "{}"
"#,
            receiver.url, alertmanager.url
        );
        let mut freshwatch = FreshwatchProcess::start(directory.path(), &config);
        freshwatch.wait_ready().await;
        // One timestamp for all: they cross each threshold in the same evaluation.
        produce_all(now_ms());
        let firing = |severity: &'static str| {
            let receiver = &receiver;
            move || async move {
                receiver.requests().iter().any(|request| {
                    request.json["status"] == "firing" && request.json["severity"] == severity
                })
            }
        };
        wait_until(
            "the warning roll-up",
            Duration::from_secs(20),
            firing("warning"),
        )
        .await;
        wait_until(
            "Alertmanager holds every key",
            Duration::from_secs(10),
            || async { alertmanager.alerts_named("FeedStale").await.len() == tenants.len() },
        )
        .await;

        // kill -9 while the roll-up is open: its members come back from Redis.
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        wait_until(
            "the critical roll-up",
            Duration::from_secs(20),
            firing("critical"),
        )
        .await;
        produce_all(now_ms());
        wait_until("the roll-up resolves", Duration::from_secs(20), || async {
            receiver
                .requests()
                .iter()
                .any(|request| request.json["status"] == "resolved")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let requests = receiver.requests();
        let mut sequence: Vec<(String, String)> = requests
            .iter()
            .map(|request| {
                assert_eq!(
                    request.json["dedup_key"], "freshwatch/profiles#rollup",
                    "{:#}",
                    request.json
                );
                (
                    request.json["status"].as_str().unwrap().to_owned(),
                    request.json["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        sequence.dedup(); // at-least-once
        assert_eq!(
            sequence,
            [
                ("firing".to_owned(), "warning".to_owned()),
                ("firing".to_owned(), "critical".to_owned()),
                ("resolved".to_owned(), "critical".to_owned()),
            ]
        );
        let summary = requests[0].json["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("Feed profiles: 12 of 12 keys have had no new data for over 3s"),
            "{summary}"
        );
        // The API stays per key.
        assert_eq!(
            freshwatch.status("profiles", "tenant-07").await.as_deref(),
            Some("ok")
        );
    });
    drop(cluster);
}

#[test]
fn a_fallback_fires_when_pagerduty_stays_down_and_payloads_have_every_field() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let smtp = SmtpServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let slack = WebhookReceiver::start().await;
        let pagerduty = WebhookReceiver::start().await;
        pagerduty.answer(Answer::TooManyRequests {
            retry_after_seconds: 1,
        });
        let config = format!(
            r#"{}
[alerts]
watchdog = true

[[alerts.alertmanager]]
url = "{}"
resend_interval = "1s"

[[alerts.pagerduty]]
name = "pd"
routing_key = "R0UT1NG-KEY"
url = "{}/v2/enqueue"
min_severity = "critical"
fallback = ["mail"]
fallback_after = "2s"
repeat_interval = "2s"

[[alerts.slack]]
url = "{}/services/T0/B0/X"
feeds = ["orders"]

[[alerts.email]]
name = "mail"
smtp_host = "127.0.0.1"
smtp_port = {}
from = "freshwatch@example.com"
to = ["oncall@example.com"]
"#,
            base_config(
                &brokers,
                &format!("path = \"{}\"", directory.path().join("state").display())
            ),
            alertmanager.url,
            pagerduty.url,
            slack.url,
            smtp.port
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &config);
        freshwatch.wait_ready().await;
        produce(&brokers, "orders", now_ms() - 10 * DAY_MS);

        wait_until(
            "the fallback email arrives",
            Duration::from_secs(20),
            || async {
                smtp.received()
                    .contains("Subject: [freshwatch] FIRING critical: orders")
            },
        )
        .await;
        let mail = smtp.received();
        assert!(mail.contains("has had no new data for 10d"), "{mail}");
        assert!(mail.contains("dedup key: freshwatch/orders/"), "{mail}");
        assert!(pagerduty.requests().is_empty());
        let failed = freshwatch
            .metric("freshwatch_alerts_sent_total{sink=\"pd\",outcome=\"failed\"}")
            .await
            .unwrap();
        assert!(failed >= 1.0, "429s were retried: {failed}");

        // PagerDuty recovers: it still gets its trigger (at least once).
        pagerduty.answer(Answer::Ok);
        wait_until(
            "PagerDuty gets the trigger",
            Duration::from_secs(20),
            || async { !pagerduty.requests().is_empty() },
        )
        .await;
        let event = &pagerduty.requests()[0];
        assert_eq!(event.path, "/v2/enqueue");
        let event = &event.json;
        assert_eq!(event["routing_key"], "R0UT1NG-KEY");
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["dedup_key"], "freshwatch/orders/");
        let payload = &event["payload"];
        for field in [
            "summary",
            "source",
            "severity",
            "component",
            "group",
            "custom_details",
        ] {
            assert!(
                !payload[field].is_null(),
                "payload.{field} missing: {event}"
            );
        }
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["component"], "orders");
        assert_eq!(payload["group"], "orders");
        assert!(payload["summary"].as_str().unwrap().len() <= 1024);
        let staleness = payload["custom_details"]["staleness_seconds"]
            .as_i64()
            .unwrap();
        assert!((staleness - 864_000).abs() < 60);
        assert_eq!(payload["custom_details"]["critical_after_seconds"], 4);
        assert!(event["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/feeds/orders"));

        // Still firing: re-notified every repeat_interval under the same dedup key.
        wait_until(
            "PagerDuty gets a repeat",
            Duration::from_secs(15),
            || async { pagerduty.requests().len() >= 2 },
        )
        .await;
        assert!(pagerduty
            .requests()
            .iter()
            .all(|request| request.json["dedup_key"] == "freshwatch/orders/"
                && request.json["event_action"] == "trigger"));

        // Slack: one readable message, coloured by severity.
        wait_until("the Slack message", Duration::from_secs(10), || async {
            !slack.requests().is_empty()
        })
        .await;
        let message = &slack.requests()[0].json;
        assert!(
            message["text"]
                .as_str()
                .unwrap()
                .starts_with(":rotating_light: *CRITICAL* orders"),
            "{message}"
        );
        assert_eq!(message["attachments"][0]["color"], "#e01e5a");

        // Alertmanager v2: the feed alert and the always-firing watchdog.
        wait_until(
            "FeedStale and FreshwatchWatchdog in Alertmanager",
            Duration::from_secs(10),
            || async {
                !alertmanager.alerts_named("FeedStale").await.is_empty()
                    && !alertmanager
                        .alerts_named("FreshwatchWatchdog")
                        .await
                        .is_empty()
            },
        )
        .await;
        let alert: Value = alertmanager.alerts_named("FeedStale").await.remove(0);
        assert_eq!(alert["labels"]["alertname"], "FeedStale");
        assert_eq!(alert["labels"]["feed"], "orders");
        assert_eq!(alert["labels"]["severity"], "critical");
        for annotation in ["summary", "last_seen", "staleness_seconds"] {
            assert!(
                alert["annotations"][annotation].is_string(),
                "{annotation}: {alert}"
            );
        }
        assert!(alert["startsAt"].is_string() && alert["endsAt"].is_string());
        assert!(alert["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/api/v1/feeds/orders"));
    });
    drop(cluster);
}

#[test]
fn the_heartbeat_stops_while_kafka_is_unreachable_and_resumes_after() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let directory = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let (switch, freshwatch) = runtime.block_on(async {
        let switch = WebhookReceiver::start().await;
        let config = format!(
            "{}\n[heartbeat]\nurl = \"{}/ping/abc\"\ninterval = \"1s\"\n",
            base_config(
                &brokers,
                &format!("path = \"{}\"", directory.path().join("state").display())
            ),
            switch.url
        );
        let freshwatch = FreshwatchProcess::start(directory.path(), &config);
        freshwatch.wait_ready().await;
        wait_until(
            "pings arrive while healthy",
            Duration::from_secs(10),
            || async { switch.requests().len() >= 2 },
        )
        .await;
        assert!(switch
            .requests()
            .iter()
            .all(|request| request.path == "/ping/abc"));
        (switch, freshwatch)
    });
    // The mock cluster is not Send: take the broker down from this thread.
    cluster.broker_down(1).unwrap();
    let stopped_at = runtime.block_on(async {
        wait_until(
            "freshwatch sees kafka down",
            Duration::from_secs(20),
            || async { freshwatch.metric("freshwatch_source_up").await == Some(0.0) },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stopped_at = switch.requests().len();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            switch.requests().len(),
            stopped_at,
            "no ping while kafka is unreachable"
        );
        let withheld = freshwatch
            .metric("freshwatch_heartbeats_total{outcome=\"withheld\"}")
            .await
            .unwrap();
        assert!(withheld >= 3.0, "withheld {withheld}");
        stopped_at
    });
    cluster.broker_up(1).unwrap();
    runtime.block_on(async {
        wait_until(
            "pings resume once kafka answers",
            Duration::from_secs(45),
            || async { switch.requests().len() > stopped_at },
        )
        .await;
    });
    drop(freshwatch);
    drop(cluster);
}
