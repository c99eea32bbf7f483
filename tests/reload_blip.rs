//! Reload never stops what works: a reload while Redis does not answer (a redis-server frozen by
//! SIGSTOP) is refused after `state.open_timeout`, and the running pipeline goes on judging and
//! paging; SIGTERM ends the process within 10 s in every state, waiting for Redis at first start
//! included. Real processes: `freshwatch run`, `redis-server`, librdkafka's mock cluster and a
//! webhook receiver.

mod common;

use std::time::{Duration, Instant};

use common::receiver::WebhookReceiver;
use common::{now_ms, produce_one, producer, runtime, wait_until, FreshwatchProcess, RedisServer};
use rdkafka::mocking::MockCluster;

const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn config(brokers: &str, redis_url: &str, feeds: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-reload-blip"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"statistics.interval.ms" = "200"

[state]
redis_url = "{redis_url}"
flush_interval = "100ms"
open_timeout = "2s"

[evaluation]
interval = "200ms"
# Seconds-long thresholds: FreshwatchFeedBlind is tests/knowing.rs' subject, not these.
blind_after = "1h"

{feeds}
"#
    )
}

const ORDERS: &str = "[[feed]]\nname = \"orders\"\ntopic = \"orders\"\nwarn_after = \"4s\"\ncritical_after = \"6s\"\n";
const BILLING: &str = "[[feed]]\nname = \"billing\"\ntopic = \"billing\"\nwarn_after = \"1h\"\ncritical_after = \"2h\"\n";

#[test]
fn a_reload_while_redis_is_frozen_is_refused_and_the_running_pipeline_goes_on() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("billing", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    let producer = producer(&brokers);
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let sinks = format!("[[alerts.webhook]]\nurl = \"{}/hook\"\n", receiver.url);
        let http_keys = format!("admin_token = \"{ADMIN_TOKEN}\"");
        produce_one(&producer, "orders", "k", now_ms());
        let mut freshwatch = FreshwatchProcess::start_with_http(
            directory.path(),
            &config(&brokers, &redis.url, &format!("{ORDERS}\n{sinks}")),
            &http_keys,
        );
        freshwatch.wait_ready().await;
        wait_until("orders ok", Duration::from_secs(15), || async {
            freshwatch.status("orders", "").await.as_deref() == Some("ok")
        })
        .await;
        // A new feed in the file, and Redis stops answering.
        std::fs::write(
            freshwatch.config_path(),
            format!(
                "{}\n[http]\nlisten = \"127.0.0.1:{}\"\n{http_keys}\n",
                config(
                    &brokers,
                    &redis.url,
                    &format!("{ORDERS}\n{BILLING}\n{sinks}")
                ),
                freshwatch.port
            ),
        )
        .unwrap();
        redis.freeze();
        let reload = || async {
            let response = reqwest::Client::new()
                .post(format!("{}/-/reload", freshwatch.base_url))
                .bearer_auth(ADMIN_TOKEN)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        };
        let asked = Instant::now();
        let (status, body) = reload().await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("did not answer within state.open_timeout"),
            "{body}"
        );
        let refused_after = asked.elapsed();
        eprintln!("reload refused {refused_after:?} after it was asked (open_timeout 2s)");
        assert!(refused_after < Duration::from_secs(8), "{refused_after:?}");
        freshwatch.signal("HUP");
        wait_until(
            "the SIGHUP is refused too",
            Duration::from_secs(10),
            || async {
                freshwatch
                    .log()
                    .matches("did not answer within state.open_timeout")
                    .count()
                    >= 2
            },
        )
        .await;
        // The running pipeline went on: it answers, judges and pages, Redis still frozen.
        let health = reqwest::Client::new()
            .get(format!("{}/healthz", freshwatch.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("/healthz answers");
        assert!(health.status().is_success());
        wait_until(
            "orders pages critical with Redis frozen",
            Duration::from_secs(40),
            || async {
                receiver.requests().iter().any(|request| {
                    request.json["feed"] == "orders" && request.json["severity"] == "critical"
                })
            },
        )
        .await;
        assert!(
            !freshwatch
                .rows()
                .await
                .iter()
                .any(|row| row["feed"] == "billing"),
            "the running config stays"
        );
        assert!(!freshwatch
            .log()
            .contains("reloading: stopping the pipeline"));

        // Redis answers again: the same reload goes through.
        redis.thaw();
        let (status, body) = reload().await;
        assert_eq!(status, 200, "{body}");
        wait_until("the new config runs", Duration::from_secs(30), || async {
            freshwatch
                .rows()
                .await
                .iter()
                .any(|row| row["feed"] == "billing")
        })
        .await;

        // SIGTERM with Redis frozen again: the process still ends within 10 s.
        redis.freeze();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let took = freshwatch.terminate_within(Duration::from_secs(10));
        redis.thaw();
        assert!(
            took.is_some(),
            "SIGTERM did not end freshwatch within 10 s; log:\n{}",
            freshwatch.log()
        );
        eprintln!(
            "stopped {:?} after SIGTERM with Redis frozen",
            took.unwrap()
        );
    });
    drop(cluster);
}

#[test]
fn sigterm_ends_the_process_within_10_s_while_it_waits_for_redis_at_first_start() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    redis.freeze(); // accepts connections, answers nothing
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut freshwatch =
            FreshwatchProcess::start(directory.path(), &config(&brokers, &redis.url, ORDERS));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            freshwatch.is_running(),
            "it waits for Redis; it does not exit"
        );
        let took = freshwatch.terminate_within(Duration::from_secs(10));
        redis.thaw();
        assert!(
            took.is_some(),
            "SIGTERM did not end freshwatch within 10 s while it waited for Redis; log:\n{}",
            freshwatch.log()
        );
        eprintln!("stopped {:?} after SIGTERM", took.unwrap());
    });
    drop(cluster);
}
