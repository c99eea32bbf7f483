use std::path::Path;

use super::*;

fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(text, Path::new("t.toml"), &move |name| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
}

fn error_of(text: &str) -> String {
    parse_with(text, &[])
        .expect_err("config must be refused")
        .to_string()
}

const FULL: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "freshwatch"
[kafka.properties]
"security.protocol" = "SASL_SSL"

[state]
redis_url = "redis://127.0.0.1:6379/0"
path = "freshwatch-state"

[http]
listen = "127.0.0.1:9187"

[evaluation]
interval = "1s"

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

[[feed]]
name = "orders"
topic_regex = "^orders\\..*"

[[alerts.alertmanager]]
url = "http://127.0.0.1:9093"
[[alerts.webhook]]
url = "${HOOK_URL}"
"#;

#[test]
fn the_contract_example_parses_into_typed_config() {
    let config = parse_with(FULL, &[("HOOK_URL", "http://127.0.0.1:8080/hook")]).unwrap();
    assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(config.kafka.properties["security.protocol"], "SASL_SSL");
    assert!(matches!(config.state.backend, StateBackend::Redis { .. }));
    let profiles = &config.feeds[0];
    assert_eq!(
        profiles.split,
        Some(SplitRule::Json(JsonPointer::parse("/tenant_id").unwrap()))
    );
    assert_eq!(
        profiles.timestamp,
        TimestampRule::Json(JsonPointer::parse("/updated_at").unwrap())
    );
    assert_eq!(profiles.warn_after, Duration::from_secs(1800));
    assert_eq!(profiles.critical_after, Duration::from_secs(7200));
    assert_eq!(profiles.expected, ["acme", "globex"]);
    let orders = &config.feeds[1];
    assert!(orders.topics.matches("orders.eu") && !orders.topics.matches("refunds"));
    assert_eq!(
        orders.warn_after,
        Duration::from_secs(3600),
        "defaults apply"
    );
    assert_eq!(orders.critical_after, Duration::from_secs(6 * 3600));
    assert_eq!(
        config.alerts.webhook[0].url.as_str(),
        "http://127.0.0.1:8080/hook"
    );
    assert_eq!(config.alerts.alertmanager[0].name, "alertmanager-0");
}

#[test]
fn omitted_sections_take_their_documented_defaults() {
    let config = parse_with(
        "[kafka]\nbrokers = \"k:9092\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.kafka.group_id, "freshwatch");
    assert_eq!(config.kafka.start, raw::RawStart::Earliest);
    assert_eq!(config.evaluation.interval, Duration::from_secs(1));
    assert_eq!(config.evaluation.max_future_skew, Duration::from_secs(300));
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9187");
    assert!(
        matches!(&config.state.backend, StateBackend::Embedded { path } if path == Path::new("freshwatch-state"))
    );
    assert_eq!(config.feeds[0].timestamp, TimestampRule::Record);
    assert_eq!(config.feeds[0].split, None);
}

#[test]
fn every_split_and_timestamp_spelling_is_understood() {
    let text = r#"
[kafka]
brokers = "k:9092"
[[feed]]
name = "a"
topic = "a"
split_by = "key"
timestamp = "arrival"
[[feed]]
name = "b"
topic = "b"
split_by = "partition"
timestamp = { header = "ts" }
[[feed]]
name = "c"
topic = "c"
split_by = { header = "tenant" }
timestamp = "record"
"#;
    let config = parse_with(text, &[]).unwrap();
    assert_eq!(config.feeds[0].split, Some(SplitRule::Key));
    assert_eq!(config.feeds[0].timestamp, TimestampRule::Arrival);
    assert_eq!(config.feeds[1].split, Some(SplitRule::Partition));
    assert_eq!(
        config.feeds[1].timestamp,
        TimestampRule::Header("ts".into())
    );
    assert_eq!(
        config.feeds[2].split,
        Some(SplitRule::Header("tenant".into()))
    );
}

const BASE: &str = "[kafka]\nbrokers = \"k:9092\"\n";

#[test]
fn bad_values_name_the_key_and_the_reason() {
    let feed = |body: &str| format!("{BASE}[[feed]]\nname = \"a\"\n{body}\n");
    let cases = [
        (feed("topic = \"a\"\nwarn_after = \"2h\"\ncritical_after = \"1h\""), "feed[0].critical_after: must be greater than warn_after"),
        (feed("topic = \"a\"\ntopic_regex = \"^a\""), "feed[0].topic: set either topic or topic_regex, not both"),
        (feed(""), "feed[0].topic: one of topic or topic_regex is required"),
        (feed("topic_regex = \"(\""), "feed[0].topic_regex: invalid regex"),
        (feed("topic = \"a\"\nsplit_by = { json = \"tenant\" }"), "feed[0].split_by.json: invalid JSON pointer"),
        (feed("topic = \"a\"\nexpected = [\"x\"]"), "feed[0].expected: needs split_by"),
        (feed("topic = \"a\"\nsplit_by = \"key\"\nexpected = [\"x\", \"x\"]"), "feed[0].expected[1]: duplicate value"),
        (feed("topic = \"a\"\nmode = \"tail\"\nsplit_by = \"key\""), "feed[0].mode: tail mode"),
        (feed("topic = \"a\"\nwarn_after = \"10 parsecs\""), "feed[0].warn_after:"),
        (feed("topic = \"a\"\ncolour = \"red\""), "feed[0].colour: unknown field `colour`"),
        (format!("{BASE}bogus = 1\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"), "kafka.bogus: unknown field"),
        (format!("{BASE}[[feed]]\nname = \"a b\"\ntopic = \"a\"\n"), "feed[0].name:"),
        (format!("{BASE}[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[feed]]\nname = \"a\"\ntopic = \"b\"\n"), "feed[1].name: duplicate feed name"),
        (format!("{BASE}[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"), "kafka.properties.\"enable.auto.commit\": is set by freshwatch"),
        (format!("{BASE}[http]\nlisten = \"nowhere\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"), "http.listen:"),
        (format!("{BASE}[state]\nredis_url = \"http://r\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"), "state.redis_url: scheme must be"),
        (format!("{BASE}[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[alerts.webhook]]\nname = \"x\"\nurl = \"http://a\"\n[[alerts.alertmanager]]\nname = \"x\"\nurl = \"http://b\"\n"), "duplicate sink name"),
        (BASE.to_owned(), "feed: at least one [[feed]] is required"),
    ];
    for (text, expected) in cases {
        let error = error_of(&text);
        assert!(
            error.starts_with(expected) || error.contains(expected),
            "{expected:?} not in {error:?} for\n{text}"
        );
    }
}

#[test]
fn environment_references_are_resolved_escaped_or_refused() {
    let text = format!(
        "{BASE}[kafka.properties]\n\"sasl.password\" = \"${{PASSWORD}}\"\n\"note\" = \"$${{LITERAL}} costs $5\"\n[[feed]]\nname = \"a\"\ntopic = \"${{TOPIC}}\"\n"
    );
    let config = parse_with(&text, &[("PASSWORD", "hunter2"), ("TOPIC", "orders")]).unwrap();
    assert_eq!(config.kafka.properties["sasl.password"], "hunter2");
    assert_eq!(config.kafka.properties["note"], "${LITERAL} costs $5");
    assert!(config.feeds[0].topics.matches("orders"));
    let missing = parse_with(&text, &[("PASSWORD", "x")]).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "feed[0].topic: environment variable TOPIC is not set"
    );
}

#[test]
fn describe_lists_feeds_and_hides_secrets() {
    let text = FULL.replace(
        "redis://127.0.0.1:6379/0",
        "redis://:hunter2@127.0.0.1:6379/0",
    );
    let config = parse_with(
        &text,
        &[("HOOK_URL", "http://user:token@hooks.example/secret-path")],
    )
    .unwrap();
    let described = describe(&config);
    assert!(described.contains("profiles: topic=cdp.profile-updates split_by=json /tenant_id timestamp=json /updated_at warn_after=30m critical_after=2h expected=[acme, globex]"), "{described}");
    assert!(described.contains("orders: topic_regex=^orders\\..*"));
    assert!(
        !described.contains("hunter2")
            && !described.contains("token")
            && !described.contains("secret-path"),
        "{described}"
    );
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
}
