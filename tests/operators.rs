//! What operators do to a running freshwatch: silence what they know about, through the API and
//! the CLI, with the admin token; and reload the config without a restart. Real processes:
//! freshwatch, Redis, Alertmanager; a local receiver stands in for the webhook.

mod common;

use std::process::Command;
use std::time::Duration;

use common::receiver::WebhookReceiver;
use common::{
    freshwatch_bin, now_ms, runtime, wait_until, Alertmanager, FreshwatchProcess, RedisServer,
};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn produce(brokers: &str, topic: &str, keys: &[&str], timestamp_ms: i64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for key in keys {
        producer
            .send(
                BaseRecord::to(topic)
                    .key(*key)
                    .payload("{}")
                    .timestamp(timestamp_ms),
            )
            .map_err(|(error, _)| error)
            .unwrap();
    }
    producer.flush(Duration::from_secs(5)).unwrap();
}

fn config(brokers: &str, redis_url: &str, feeds: &str, sinks: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-operators"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[state]
redis_url = "{redis_url}"
flush_interval = "100ms"

[evaluation]
interval = "200ms"
blind_after = "1h"

{feeds}
{sinks}
"#
    )
}

/// `freshwatch silence ...` against `url`; returns (success, stdout, stderr).
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(freshwatch_bin());
    command.arg("silence").args(args).args(["--url", url]);
    command.env_remove("FRESHWATCH_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("FRESHWATCH_ADMIN_TOKEN", token);
    }
    let output = command.output().expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What the webhook was told about one key: (status, severity) in order.
fn told(receiver: &WebhookReceiver, key: &str) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| request.json["key"] == key)
        .map(|request| {
            (
                request.json["status"].as_str().unwrap_or("").to_owned(),
                request.json["severity"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// acme is silenced (from the CLI, with the token), globex is not: globex pages at once, acme's
/// page waits for the silence to end, across a `kill -9`; Alertmanager gets both, acme's
/// annotated with the silence; the API marks acme silenced.
#[test]
fn a_silence_holds_a_keys_pages_until_it_ends_and_survives_a_restart() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        let text = config(
            &brokers,
            &redis.url,
            r#"[[feed]]
name = "profiles"
topic = "profiles"
split_by = "key"
warn_after = "2s"
critical_after = "4s""#,
            &format!(
                "[[alerts.webhook]]\nurl = \"{}/hook\"\n\n[[alerts.alertmanager]]\nurl = \"{}\"\n",
                receiver.url, alertmanager.url
            ),
        );
        let mut freshwatch = FreshwatchProcess::start_with_http(
            directory.path(),
            &text,
            &format!("admin_token = \"{ADMIN_TOKEN}\""),
        );
        freshwatch.wait_ready().await;
        produce(&brokers, "profiles", &["acme", "globex"], now_ms());
        let url = freshwatch.base_url.clone();

        let (ok, _, stderr) = cli(
            &url,
            None,
            &["add", "--feed", "profiles", "--key", "acme", "--for", "30s", "--comment", "offboarding"],
        );
        assert!(!ok, "no token: refused");
        assert!(stderr.contains("needs Authorization: Bearer"), "{stderr}");
        let (ok, stdout, stderr) = cli(
            &url,
            Some(ADMIN_TOKEN),
            &["add", "--feed", "profiles", "--key", "acme", "--for", "30s", "--comment", "offboarding", "--created-by", "ana"],
        );
        assert!(ok, "{stderr}");
        let id = stdout.trim().to_owned();
        assert_eq!(id.len(), 16, "{stdout}");

        // Silences live in Redis: a kill -9 keeps it.
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        let (ok, listed, _) = cli(&url, None, &["list"]);
        assert!(ok);
        assert!(listed.contains(&id) && listed.contains("active") && listed.contains("ana: offboarding"), "{listed}");

        wait_until("globex pages critical", Duration::from_secs(20), || async {
            told(&receiver, "globex").contains(&("firing".into(), "critical".into()))
        })
        .await;
        assert!(
            told(&receiver, "acme").is_empty(),
            "acme is held: {:?}\n{}",
            told(&receiver, "acme"),
            freshwatch.log()
        );
        assert_eq!(freshwatch.status("profiles", "acme").await.as_deref(), Some("critical"));
        let acme = freshwatch.rows().await.into_iter().find(|row| row["key"] == "acme").unwrap();
        assert_eq!(acme["silenced_by"], id.as_str(), "{acme}");
        wait_until("Alertmanager has acme, annotated", Duration::from_secs(10), || async {
            alertmanager.alerts_named("FeedStale").await.iter().any(|alert| {
                alert["labels"]["key"] == "acme"
                    && alert["annotations"]["silenced_by"]
                        .as_str()
                        .is_some_and(|text| text.contains("offboarding"))
            })
        })
        .await;

        wait_until("acme pages once the silence ends", Duration::from_secs(40), || async {
            !told(&receiver, "acme").is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut acme = told(&receiver, "acme");
        acme.dedup(); // at-least-once
        assert_eq!(acme, [("firing".to_owned(), "critical".to_owned())]);
        let (_, listed, _) = cli(&url, None, &["list"]);
        assert!(listed.contains("expired"), "{listed}");

        // Expiring early through the API; unknown ids are 404.
        let client = reqwest::Client::new();
        let response = client
            .delete(format!("{url}/api/v1/silences/0000000000000000"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let response = client
            .post(format!("{url}/api/v1/silences"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"matchers": {}, "duration": "1h", "comment": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("at least one of feed, key or group"));
        let (ok, stdout, _) = cli(&url, Some(ADMIN_TOKEN), &["add", "--feed", "profiles", "--for", "1h", "--comment", "maintenance"]);
        assert!(ok);
        let (ok, stdout2, stderr) = cli(&url, Some(ADMIN_TOKEN), &["expire", stdout.trim()]);
        assert!(ok, "{stderr}");
        assert!(stdout2.contains("expired at"), "{stdout2}");
    });
    drop(cluster);
}
