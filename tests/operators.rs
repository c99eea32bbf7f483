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

        let add_acme = [
            "add",
            "--feed",
            "profiles",
            "--key",
            "acme",
            "--for",
            "30s",
            "--comment",
            "offboarding",
        ];
        let (ok, _, stderr) = cli(&url, None, &add_acme);
        assert!(!ok, "no token: refused");
        assert!(stderr.contains("needs Authorization: Bearer"), "{stderr}");
        let by_ana = [&add_acme[..], &["--created-by", "ana"]].concat();
        let (ok, stdout, stderr) = cli(&url, Some(ADMIN_TOKEN), &by_ana);
        assert!(ok, "{stderr}");
        let id = stdout.trim().to_owned();
        assert_eq!(id.len(), 16, "{stdout}");

        // Silences live in Redis: a kill -9 keeps it.
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        let (ok, listed, _) = cli(&url, None, &["list"]);
        assert!(ok);
        assert!(
            listed.contains(&id)
                && listed.contains("active")
                && listed.contains("ana: offboarding"),
            "{listed}"
        );
        let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(
            page.contains(&format!("data-silence=\"{id}\"")) && page.contains("offboarding"),
            "the status page lists the silence"
        );

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
        assert_eq!(
            freshwatch.status("profiles", "acme").await.as_deref(),
            Some("critical")
        );
        let acme = freshwatch
            .rows()
            .await
            .into_iter()
            .find(|row| row["key"] == "acme")
            .unwrap();
        assert_eq!(acme["silenced_by"], id.as_str(), "{acme}");
        wait_until(
            "Alertmanager has acme, annotated",
            Duration::from_secs(10),
            || async {
                alertmanager
                    .alerts_named("FeedStale")
                    .await
                    .iter()
                    .any(|alert| {
                        alert["labels"]["key"] == "acme"
                            && alert["annotations"]["silenced_by"]
                                .as_str()
                                .is_some_and(|text| text.contains("offboarding"))
                    })
            },
        )
        .await;

        wait_until(
            "acme pages once the silence ends",
            Duration::from_secs(40),
            || async { !told(&receiver, "acme").is_empty() },
        )
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
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("at least one of feed, key or group"));
        let (ok, stdout, _) = cli(
            &url,
            Some(ADMIN_TOKEN),
            &[
                "add",
                "--feed",
                "profiles",
                "--for",
                "1h",
                "--comment",
                "maintenance",
            ],
        );
        assert!(ok);
        let (ok, stdout2, stderr) = cli(&url, Some(ADMIN_TOKEN), &["expire", stdout.trim()]);
        assert!(ok, "{stderr}");
        assert!(stdout2.contains("expired at"), "{stdout2}");
    });
    drop(cluster);
}

/// A silence ends while Redis is down: what it held goes out then, once, not on every tick; once
/// Redis answers the end is written, so a `kill -9` afterwards does not send it again either.
#[test]
fn a_silence_that_ends_while_redis_is_down_sends_what_it_held_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut redis = RedisServer::start();
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
            &format!("[[alerts.webhook]]\nurl = \"{}/hook\"\n", receiver.url),
        );
        let mut freshwatch = FreshwatchProcess::start_with_http(
            directory.path(),
            &text,
            &format!("admin_token = \"{ADMIN_TOKEN}\""),
        );
        freshwatch.wait_ready().await;
        let url = freshwatch.base_url.clone();
        let response = reqwest::Client::new()
            .post(format!("{url}/api/v1/silences"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({
                "matchers": {"feed": "profiles", "key": "acme"},
                "duration": "12s",
                "comment": "migration"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        produce(&brokers, "profiles", &["acme"], now_ms());
        wait_until("acme is critical", Duration::from_secs(20), || async {
            freshwatch.status("profiles", "acme").await.as_deref() == Some("critical")
        })
        .await;
        assert!(told(&receiver, "acme").is_empty(), "held by the silence");

        redis.kill();
        wait_until(
            "acme pages when the silence ends",
            Duration::from_secs(30),
            || async { !told(&receiver, "acme").is_empty() },
        )
        .await;
        // Ticks every 200 ms: a re-send on every tick would show within seconds.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            told(&receiver, "acme"),
            [("firing".to_owned(), "critical".to_owned())],
            "sent once although the end could not be written\n{}",
            freshwatch.log()
        );

        redis.restart();
        // The silences reload every `ha.reload_interval` (2 s) and write the end then.
        tokio::time::sleep(Duration::from_secs(6)).await;
        freshwatch.kill_and_restart();
        freshwatch.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            told(&receiver, "acme"),
            [("firing".to_owned(), "critical".to_owned())],
            "not sent again after a restart: the end was written once Redis answered\n{}",
            freshwatch.log()
        );
    });
    drop(cluster);
}

/// A bad file and a brokers change are refused with check-config's message and the running
/// config stays; SIGHUP with a good file adds a feed and changes thresholds, and the alert that
/// was firing and the notifications waiting in the outbox come through it, once each.
#[test]
fn a_reload_applies_a_new_config_and_keeps_alerts_and_the_outbox_and_refuses_a_bad_one() {
    use common::receiver::Answer;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("billing", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let alertmanager = Alertmanager::start();
    let directory = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let receiver = WebhookReceiver::start().await;
        receiver.answer(Answer::Hang);
        let sinks = format!(
            "[[alerts.webhook]]\nurl = \"{}/hook\"\ntimeout = \"1s\"\n\n[[alerts.alertmanager]]\nurl = \"{}\"\n",
            receiver.url, alertmanager.url
        );
        let orders = |critical: &str| {
            format!("[[feed]]\nname = \"orders\"\ntopic = \"orders\"\nwarn_after = \"2s\"\ncritical_after = \"{critical}\"\n")
        };
        let http_keys = format!("admin_token = \"{ADMIN_TOKEN}\"");
        let freshwatch = FreshwatchProcess::start_with_http(
            directory.path(),
            &config(&brokers, &redis.url, &orders("4s"), &sinks),
            &http_keys,
        );
        freshwatch.wait_ready().await;
        produce(&brokers, "orders", &["o"], now_ms());
        wait_until("orders critical, both pages in the outbox", Duration::from_secs(20), || async {
            freshwatch.status("orders", "").await.as_deref() == Some("critical")
                && freshwatch.metric("freshwatch_outbox_pending{sink=\"webhook-0\"}").await == Some(2.0)
        })
        .await;
        let rewrite = |text: &str| {
            std::fs::write(
                freshwatch.config_path(),
                format!("{text}\n[http]\nlisten = \"127.0.0.1:{}\"\n{http_keys}\n", freshwatch.port),
            )
            .unwrap()
        };
        let reload = || async {
            let response = reqwest::Client::new()
                .post(format!("{}/-/reload", freshwatch.base_url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        };

        // A bad file: refused with check-config's message.
        rewrite(&config(&brokers, &redis.url, &orders("1s"), &sinks));
        let (status, body) = reload().await;
        assert_eq!(status, 400, "{body}");
        let check = Command::new(freshwatch_bin())
            .args(["check-config", "--config"])
            .arg(freshwatch.config_path())
            .output()
            .unwrap();
        let check_message = String::from_utf8_lossy(&check.stderr).trim().to_owned();
        assert_eq!(check_message, format!("error: {}", body["error"].as_str().unwrap()));
        assert_eq!(
            freshwatch.metric("freshwatch_config_last_reload_successful").await,
            Some(0.0)
        );
        // What the process holds open: refused too.
        rewrite(&config(&format!("{brokers},127.0.0.1:1"), &redis.url, &orders("4s"), &sinks));
        let (status, body) = reload().await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().starts_with("kafka.brokers changed"), "{body}");
        assert_eq!(freshwatch.status("orders", "").await.as_deref(), Some("critical"));

        // A good file, by SIGHUP: a new feed, a new threshold.
        let billing = "[[feed]]\nname = \"billing\"\ntopic = \"billing\"\nwarn_after = \"1h\"\ncritical_after = \"2h\"\n";
        rewrite(&config(&brokers, &redis.url, &format!("{}\n{billing}", orders("5s")), &sinks));
        let before_ms = now_ms();
        freshwatch.signal("HUP");
        wait_until("the new config runs", Duration::from_secs(30), || async {
            let rows = freshwatch.rows().await;
            rows.iter().any(|row| row["feed"] == "billing")
                && rows.iter().any(|row| row["feed"] == "orders" && row["critical_after_seconds"] == 5.0)
        })
        .await;
        freshwatch.wait_ready().await;
        assert_eq!(freshwatch.metric("freshwatch_config_last_reload_successful").await, Some(1.0));
        let reloaded_at = freshwatch
            .metric("freshwatch_config_last_reload_success_timestamp_seconds")
            .await
            .unwrap();
        assert!(reloaded_at * 1000.0 >= before_ms as f64 - 1000.0, "{reloaded_at}");
        assert_eq!(freshwatch.status("orders", "").await.as_deref(), Some("critical"));

        // The outbox came through: each page once, and the reload paged nothing again.
        receiver.answer(Answer::Ok);
        wait_until("the outbox is delivered", Duration::from_secs(20), || async {
            freshwatch.metric("freshwatch_outbox_pending{sink=\"webhook-0\"}").await == Some(0.0)
                && receiver.requests().len() >= 2
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut orders_told = told(&receiver, "");
        orders_told.dedup();
        assert_eq!(
            orders_told,
            [
                ("firing".to_owned(), "warning".to_owned()),
                ("firing".to_owned(), "critical".to_owned())
            ]
        );
        assert!(alertmanager
            .alerts_named("FeedStale")
            .await
            .iter()
            .any(|alert| alert["labels"]["feed"] == "orders"));
        assert!(freshwatch.log().contains("config reloaded"));
    });
    drop(cluster);
}
