//! What `check-config` prints and what `{:?}` logs: the config as meant, no secret.

use super::*;

/// A full config with one split feed, an Alertmanager and a webhook: what `describe` is shown.
const EXAMPLE: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"       # required
group_id = "freshwatch"          # replicas with the same group share partitions
start = "earliest"               # or "latest"
metadata_refresh = "30s"
tail_interval = "5s"
[kafka.properties]               # passed to librdkafka as-is (SASL, TLS, fetch sizes, ...)

[state]
redis_url = "redis://127.0.0.1:6379/0"   # absent: embedded store (redb) in `path`
path = "freshwatch-state"
flush_interval = "1s"
key_prefix = "freshwatch"

[http]
listen = "127.0.0.1:9187"
external_url = "http://freshwatch.internal:9187"

[evaluation]
interval = "1s"
max_future_skew = "5m"

[defaults]
warn_after = "1h"
critical_after = "6h"

[[feed]]
name = "profiles"
topic = "cdp.profile-updates"
split_by = { json = "/tenant_id" }
timestamp = { json = "/updated_at" }
warn_after = "30m"
critical_after = "2h"
expected = ["acme", "globex"]
max_keys = 100000

[[alerts.alertmanager]]
url = "http://127.0.0.1:9093"

[[alerts.webhook]]
url = "http://127.0.0.1:8080/hook"
"#;

#[test]
fn describe_lists_every_feed_with_its_thresholds() {
    let text = format!(
        "{EXAMPLE}\n[[feed]]\nname = \"orders\"\ntopic_regex = \"^orders\\\\..*\"\nsplit_by = \"key\"\nwarn_after = \"10m\"\ncritical_after = \"30m\"\n[[feed]]\nname = \"payments\"\ntopic = \"payments\"\n"
    );
    let config = parse_with(&text, &[]).unwrap();
    let described = describe(&config);
    assert!(described.contains("feeds (3):"), "{described}");
    assert!(
        described.contains(
            "profiles: topic=cdp.profile-updates split_by=json /tenant_id timestamp=json /updated_at warn_after=30m critical_after=2h expected=[acme, globex]"
        ),
        "{described}"
    );
    assert!(
        described.contains(
            "orders: topic_regex=^orders\\..* split_by=key timestamp=record warn_after=10m critical_after=30m"
        ),
        "{described}"
    );
    assert!(
        described.contains(
            "payments: topic=payments split_by=none timestamp=record warn_after=1h critical_after=6h"
        ),
        "{described}"
    );
}

#[test]
fn describe_never_prints_a_redis_password_or_a_webhook_token() {
    let text = EXAMPLE
        .replace("redis://127.0.0.1:6379/0", "redis://:hunter2@host:6379")
        .replace("http://127.0.0.1:8080/hook", "${HOOK_URL}");
    let config = parse_with(
        &text,
        &[(
            "HOOK_URL",
            "https://user:s3cr3t-token@hooks.example/secret-path?sig=abc",
        )],
    )
    .unwrap();
    let described = describe(&config);
    for secret in [
        "redis://:hunter2@host:6379",
        "hunter2",
        "s3cr3t-token",
        "secret-path",
        "sig=abc",
    ] {
        assert!(
            !described.contains(secret),
            "{secret:?} leaked in:\n{described}"
        );
    }
    assert!(described.contains("https://hooks.example"), "{described}");
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "Debug hides the redis url"
    );
}

#[test]
fn a_logged_config_shows_no_secret_of_any_kind() {
    let config = parse_with(
        r#"
[kafka]
brokers = "k:9092"
[kafka.properties]
"sasl.password" = "KAFKA-PASSWORD"
"ssl.key.password" = "KEY-PASSWORD"
[state]
redis_url = "redis://:REDIS-PASSWORD@redis:6379/0"
[[feed]]
name = "a"
topic = "a"
[[alerts.alertmanager]]
url = "http://alertmanager:9093/?token=AM-TOKEN"
[[alerts.webhook]]
url = "https://hooks.example.com/hook?token=HOOK-TOKEN"
secret = "HMAC-SECRET"
[[alerts.slack]]
url = "https://hooks.slack.com/services/T0/B0/SLACK-TOKEN"
[[alerts.pagerduty]]
routing_key = "ROUTING-KEY"
[heartbeat]
url = "https://hc-ping.com/HEARTBEAT-UUID"
"#,
        &[],
    )
    .unwrap();
    let logged = format!("{config:?}");
    for secret in [
        "KAFKA-PASSWORD",
        "KEY-PASSWORD",
        "REDIS-PASSWORD",
        "AM-TOKEN",
        "HOOK-TOKEN",
        "HMAC-SECRET",
        "SLACK-TOKEN",
        "ROUTING-KEY",
        "HEARTBEAT-UUID",
    ] {
        assert!(!logged.contains(secret), "{secret} in {logged}");
    }
    assert!(logged.contains("sasl.password"), "the keys stay visible");
}
