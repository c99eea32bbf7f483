use std::path::Path;
use std::time::Duration;

use super::*;
use crate::extract::json::JsonPointer;

/// Parses `text` with an environment that holds exactly `env`.
fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    parse(text, Path::new("t.toml"), &|name| {
        env.iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| (*value).to_owned())
    })
}

/// The message of the error a refused config gives, with an empty environment.
fn error_of(text: &str) -> String {
    match parse_with(text, &[]) {
        Ok(_) => panic!("config must be refused:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// A valid config up to (not including) its feeds.
const KAFKA: &str = "[kafka]\nbrokers = \"k:9092\"\n";

/// [`KAFKA`] plus one valid feed named `a`.
const MINIMAL: &str = "[kafka]\nbrokers = \"k:9092\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n";

/// A config with one feed whose table holds `body` after `name = "a"`.
fn with_feed(body: &str) -> String {
    format!("{KAFKA}[[feed]]\nname = \"a\"\n{body}\n")
}

/// The example config of the README's config reference, every key spelled out.
const README_EXAMPLE: &str = r#"
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

fn pointer(text: &str) -> JsonPointer {
    JsonPointer::parse(text).expect("valid pointer")
}

fn webhook_url(sink: &SinkConfig) -> &str {
    match &sink.kind {
        SinkKind::Webhook { url, .. } => url.as_str(),
        other => panic!("expected a webhook sink, got {}", other.kind()),
    }
}

#[test]
fn the_readme_example_config_parses_into_typed_config() {
    let config = parse_with(README_EXAMPLE, &[]).expect("the README example is valid");

    assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(config.kafka.group_id, "freshwatch");
    assert_eq!(config.kafka.start, StartPosition::Earliest);
    assert_eq!(config.kafka.metadata_refresh, Duration::from_secs(30));
    assert_eq!(config.kafka.tail_interval, Duration::from_secs(5));
    assert!(config.kafka.properties.is_empty());

    match &config.state.backend {
        StateBackend::Redis { url } => assert_eq!(url.expose(), "redis://127.0.0.1:6379/0"),
        other => panic!("expected redis, got {other:?}"),
    }
    assert_eq!(config.state.flush_interval, Duration::from_secs(1));
    assert_eq!(config.state.key_prefix, "freshwatch");

    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9187");
    assert_eq!(config.http.external_url, "http://freshwatch.internal:9187");
    assert_eq!(config.evaluation.interval, Duration::from_secs(1));
    assert_eq!(config.evaluation.max_future_skew, Duration::from_secs(300));

    assert_eq!(config.feeds.len(), 1);
    let profiles = &config.feeds[0];
    assert_eq!(&*profiles.name, "profiles");
    assert!(
        matches!(&profiles.topics, TopicMatcher::Exact(topic) if topic == "cdp.profile-updates")
    );
    assert_eq!(profiles.split, Some(SplitRule::Json(pointer("/tenant_id"))));
    assert_eq!(
        profiles.timestamp,
        TimestampRule::Json(pointer("/updated_at"))
    );
    assert_eq!(profiles.warn_after, Duration::from_secs(30 * 60));
    assert_eq!(profiles.critical_after, Duration::from_secs(2 * 3600));
    assert_eq!(profiles.expected, ["acme", "globex"]);
    assert_eq!(profiles.max_keys, 100_000);
    assert_eq!(profiles.mode, FeedMode::Consume);

    assert_eq!(config.alerts.alertmanager.len(), 1);
    let alertmanager = &config.alerts.alertmanager[0];
    assert_eq!(alertmanager.name, "alertmanager-0");
    assert_eq!(alertmanager.url.as_str(), "http://127.0.0.1:9093/");
    assert_eq!(alertmanager.resend_interval, Duration::from_secs(60));
    assert_eq!(alertmanager.timeout, Duration::from_secs(10));

    assert_eq!(config.alerts.sinks.len(), 1);
    let webhook = &config.alerts.sinks[0];
    assert_eq!(webhook.name, "webhook-0");
    assert_eq!(webhook_url(webhook), "http://127.0.0.1:8080/hook");
    assert_eq!(webhook.timeout, Duration::from_secs(10));
}

#[test]
fn kafka_properties_are_passed_through_as_written() {
    let config = parse_with(
        &format!(
            "{KAFKA}[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"fetch.min.bytes\" = \"1\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(config.kafka.properties.len(), 2);
    assert_eq!(config.kafka.properties["security.protocol"], "SASL_SSL");
    assert_eq!(config.kafka.properties["fetch.min.bytes"], "1");
}

#[test]
fn without_a_redis_url_state_lives_in_the_embedded_store_at_path() {
    let config = parse_with(
        &format!("{MINIMAL}[state]\npath = \"/var/lib/freshwatch\"\n"),
        &[],
    )
    .unwrap();
    assert!(
        matches!(&config.state.backend, StateBackend::Embedded { path } if path == Path::new("/var/lib/freshwatch")),
        "{:?}",
        config.state.backend
    );
}

#[test]
fn a_minimal_config_takes_every_documented_default() {
    let config = parse_with(MINIMAL, &[]).unwrap();

    assert_eq!(config.kafka.group_id, "freshwatch");
    assert_eq!(config.kafka.start, StartPosition::Earliest);
    assert_eq!(config.kafka.metadata_refresh, Duration::from_secs(30));
    assert_eq!(config.kafka.tail_interval, Duration::from_secs(5));
    assert!(config.kafka.properties.is_empty());

    assert!(
        matches!(&config.state.backend, StateBackend::Embedded { path } if path == Path::new("freshwatch-state")),
        "{:?}",
        config.state.backend
    );
    assert_eq!(config.state.flush_interval, Duration::from_secs(1));
    assert_eq!(config.state.key_prefix, "freshwatch");

    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9187");
    assert_eq!(config.http.external_url, "http://127.0.0.1:9187");
    assert_eq!(config.evaluation.interval, Duration::from_secs(1));
    assert_eq!(
        config.evaluation.max_future_skew,
        Duration::from_secs(5 * 60)
    );

    let feed = &config.feeds[0];
    assert_eq!(feed.warn_after, Duration::from_secs(3600));
    assert_eq!(feed.critical_after, Duration::from_secs(6 * 3600));
    assert_eq!(feed.split, None);
    assert_eq!(feed.timestamp, TimestampRule::Record);
    assert!(feed.expected.is_empty());
    assert_eq!(feed.mode, FeedMode::Consume);
    assert_eq!(feed.max_keys, 100_000);

    assert!(config.alerts.alertmanager.is_empty());
    assert!(config.alerts.sinks.is_empty());
}

#[test]
fn feeds_without_thresholds_take_the_configured_defaults() {
    let config = parse_with(
        &format!("{MINIMAL}[defaults]\nwarn_after = \"10m\"\ncritical_after = \"90m\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(config.feeds[0].warn_after, Duration::from_secs(10 * 60));
    assert_eq!(config.feeds[0].critical_after, Duration::from_secs(90 * 60));
}

#[test]
fn flap_control_defaults_to_none_and_a_feed_may_override_the_default() {
    let config = parse_with(MINIMAL, &[]).unwrap();
    assert_eq!(config.feeds[0].hold, Duration::ZERO);

    let config = parse_with(
        &format!(
            "{MINIMAL}[[feed]]\nname = \"b\"\ntopic = \"b\"\nfor = \"2m\"\n[defaults]\nfor = \"5m\"\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(config.feeds[0].hold, Duration::from_secs(5 * 60));
    assert_eq!(config.feeds[1].hold, Duration::from_secs(2 * 60));
    let described = describe(&config);
    assert!(
        described.contains(
            "a: topic=a split_by=none timestamp=record warn_after=1h critical_after=6h for=5m"
        ),
        "{described}"
    );
}

#[test]
fn a_later_run_may_start_from_latest() {
    let config = parse_with(
        "[kafka]\nbrokers = \"k:9092\"\nstart = \"latest\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.kafka.start, StartPosition::Latest);
}

#[test]
fn every_split_by_spelling_parses_to_its_typed_rule() {
    let cases = [
        (
            "split_by = { json = \"/tenant/id\" }",
            SplitRule::Json(pointer("/tenant/id")),
        ),
        (
            "split_by = { header = \"tenant\" }",
            SplitRule::Header("tenant".into()),
        ),
        ("split_by = \"key\"", SplitRule::Key),
        ("split_by = \"partition\"", SplitRule::Partition),
    ];
    for (line, rule) in cases {
        let config = parse_with(&with_feed(&format!("topic = \"a\"\n{line}")), &[])
            .unwrap_or_else(|error| panic!("{line}: {error}"));
        assert_eq!(config.feeds[0].split, Some(rule), "{line}");
    }
}

#[test]
fn every_timestamp_spelling_parses_to_its_typed_rule() {
    let cases = [
        (
            "timestamp = { json = \"/updated_at\" }",
            TimestampRule::Json(pointer("/updated_at")),
        ),
        (
            "timestamp = { header = \"produced_at\" }",
            TimestampRule::Header("produced_at".into()),
        ),
        ("timestamp = \"record\"", TimestampRule::Record),
        ("timestamp = \"arrival\"", TimestampRule::Arrival),
    ];
    for (line, rule) in cases {
        let config = parse_with(&with_feed(&format!("topic = \"a\"\n{line}")), &[])
            .unwrap_or_else(|error| panic!("{line}: {error}"));
        assert_eq!(config.feeds[0].timestamp, rule, "{line}");
    }
}

#[test]
fn an_exact_topic_matches_only_itself() {
    let config = parse_with(&with_feed("topic = \"orders.eu\""), &[]).unwrap();
    let topics = &config.feeds[0].topics;
    assert!(topics.matches("orders.eu"));
    assert!(!topics.matches("orders.eu2"));
    assert!(!topics.matches("orders"));
    assert_eq!(topics.describe(), "orders.eu");
}

#[test]
fn a_topic_regex_matches_topics_by_pattern_and_is_unanchored_unless_anchored() {
    let config = parse_with(
        &format!(
            "{KAFKA}[[feed]]\nname = \"anchored\"\ntopic_regex = \"^orders\\\\..*\"\n[[feed]]\nname = \"loose\"\ntopic_regex = \"profile\"\n"
        ),
        &[],
    )
    .unwrap();
    let anchored = &config.feeds[0].topics;
    assert!(anchored.matches("orders.eu"));
    assert!(anchored.matches("orders.us-east"));
    assert!(!anchored.matches("ordersXeu"), "the dot is escaped");
    assert!(
        !anchored.matches("legacy.orders.eu"),
        "anchored at the start"
    );
    assert_eq!(anchored.describe(), "^orders\\..*");

    let loose = &config.feeds[1].topics;
    assert!(loose.matches("cdp.profile-updates"));
    assert!(!loose.matches("cdp.orders"));
}

#[test]
fn a_critical_threshold_not_above_warn_names_the_feed_index_and_both_values() {
    let text = format!(
        "{KAFKA}[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[feed]]\nname = \"b\"\ntopic = \"b\"\n[[feed]]\nname = \"c\"\ntopic = \"c\"\nwarn_after = \"2h\"\ncritical_after = \"1h\"\n"
    );
    let error = error_of(&text);
    assert!(
        error.starts_with("feed[2].critical_after: must be greater than warn_after"),
        "{error}"
    );
    assert_eq!(
        error,
        "feed[2].critical_after: must be greater than warn_after (feed \"c\": warn_after 2h, critical_after 1h)"
    );
}

#[test]
fn equal_thresholds_are_refused_too() {
    let error = error_of(&with_feed(
        "topic = \"a\"\nwarn_after = \"1h\"\ncritical_after = \"60m\"",
    ));
    assert!(
        error.starts_with("feed[0].critical_after: must be greater than warn_after"),
        "{error}"
    );
}

#[test]
fn defaults_with_critical_not_above_warn_are_refused() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[defaults]\nwarn_after = \"6h\"\ncritical_after = \"1h\"\n"
        )),
        "defaults.critical_after: must be greater than warn_after"
    );
}

#[test]
fn an_unknown_top_level_key_is_refused() {
    let error = error_of(&format!("colour = \"red\"\n{MINIMAL}"));
    assert!(
        error.starts_with("colour: unknown field `colour`, expected one of `kafka`"),
        "{error}"
    );
}

#[test]
fn an_unknown_key_inside_a_section_names_its_path() {
    let error = error_of(
        "[kafka]\nbrokers = \"k:9092\"\nbogus = 1\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n",
    );
    assert!(error.starts_with("kafka.bogus: "), "{error}");
    assert!(error.contains("unknown field `bogus`"), "{error}");
}

#[test]
fn an_unknown_key_inside_a_feed_names_the_feed_and_the_field() {
    let error = error_of(&with_feed("topic = \"a\"\ncolour = \"red\""));
    assert!(
        error.starts_with("feed[0].colour: unknown field `colour`"),
        "{error}"
    );
}

#[test]
fn a_feed_with_both_topic_and_topic_regex_is_refused() {
    assert_eq!(
        error_of(&with_feed("topic = \"a\"\ntopic_regex = \"^a\"")),
        "feed[0].topic: set either topic or topic_regex, not both"
    );
}

#[test]
fn a_feed_with_neither_topic_nor_topic_regex_is_refused() {
    assert_eq!(
        error_of(&with_feed("")),
        "feed[0].topic: one of topic or topic_regex is required"
    );
}

#[test]
fn an_invalid_topic_regex_is_refused_with_the_regex_error() {
    let error = error_of(&with_feed("topic_regex = \"orders.(\""));
    assert!(
        error.starts_with("feed[0].topic_regex: invalid regex: "),
        "{error}"
    );
}

#[test]
fn a_json_pointer_without_a_leading_slash_is_refused() {
    let error = error_of(&with_feed(
        "topic = \"a\"\nsplit_by = { json = \"tenant_id\" }",
    ));
    assert!(error.starts_with("feed[0].split_by.json: "), "{error}");
    assert!(error.contains("tenant_id"), "{error}");

    let error = error_of(&with_feed(
        "topic = \"a\"\ntimestamp = { json = \"updated_at\" }",
    ));
    assert!(error.starts_with("feed[0].timestamp.json: "), "{error}");
}

#[test]
fn expected_values_without_split_by_are_refused() {
    assert_eq!(
        error_of(&with_feed("topic = \"a\"\nexpected = [\"acme\"]")),
        "feed[0].expected: needs split_by: expected lists split values"
    );
}

#[test]
fn duplicate_feed_names_are_refused_at_the_second_one() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[feed]]\nname = \"b\"\ntopic = \"b\"\n[[feed]]\nname = \"a\"\ntopic = \"c\"\n"
        )),
        "feed[2].name: duplicate feed name \"a\""
    );
}

#[test]
fn feed_names_outside_letters_digits_and_punctuation_are_refused() {
    for name in ["a b", "tenant/acme", "", "profiles{x}"] {
        let error = error_of(&format!(
            "{KAFKA}[[feed]]\nname = \"{name}\"\ntopic = \"a\"\n"
        ));
        assert_eq!(
            error,
            format!("feed[0].name: {name:?} must be 1-128 letters, digits, '_', '-' or '.'")
        );
    }
    let config = parse_with(
        &format!("{KAFKA}[[feed]]\nname = \"cdp.profile-updates_v2\"\ntopic = \"a\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(&*config.feeds[0].name, "cdp.profile-updates_v2");
}

#[test]
fn an_unset_environment_variable_names_the_key_and_the_variable() {
    let text = format!("{MINIMAL}[[alerts.webhook]]\nurl = \"${{HOOK_URL}}\"\n");
    let error = parse_with(&text, &[("OTHER", "x")]).unwrap_err();
    assert!(
        matches!(&error, ConfigError::MissingEnv { key, variable } if key == "alerts.webhook[0].url" && variable == "HOOK_URL"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "alerts.webhook[0].url: environment variable HOOK_URL is not set"
    );
}

#[test]
fn an_unset_variable_inside_an_array_names_the_element() {
    let error = error_of(&with_feed(
        "topic = \"a\"\nsplit_by = \"key\"\nexpected = [\"acme\", \"${SECOND_TENANT}\"]",
    ));
    assert_eq!(
        error,
        "feed[0].expected[1]: environment variable SECOND_TENANT is not set"
    );
}

#[test]
fn environment_references_are_substituted_in_nested_tables_and_arrays() {
    let text = format!(
        "{KAFKA}[kafka.properties]\n\"sasl.password\" = \"${{KAFKA_PASSWORD}}\"\n[[feed]]\nname = \"a\"\ntopic = \"${{TOPIC}}\"\nsplit_by = {{ header = \"${{HEADER}}\" }}\nexpected = [\"${{TENANT}}\", \"pre-${{TENANT}}-post\"]\n[[alerts.webhook]]\nurl = \"http://${{HOOK_HOST}}/hook\"\n"
    );
    let config = parse_with(
        &text,
        &[
            ("KAFKA_PASSWORD", "hunter2"),
            ("TOPIC", "orders"),
            ("HEADER", "tenant"),
            ("TENANT", "acme"),
            ("HOOK_HOST", "hooks.internal:8080"),
        ],
    )
    .unwrap();
    assert_eq!(config.kafka.properties["sasl.password"], "hunter2");
    assert!(config.feeds[0].topics.matches("orders"));
    assert_eq!(
        config.feeds[0].split,
        Some(SplitRule::Header("tenant".into()))
    );
    assert_eq!(config.feeds[0].expected, ["acme", "pre-acme-post"]);
    assert_eq!(
        webhook_url(&config.alerts.sinks[0]),
        "http://hooks.internal:8080/hook"
    );
}

#[test]
fn a_doubled_dollar_writes_a_literal_reference_and_a_lone_dollar_stays() {
    let text = format!(
        "{KAFKA}[kafka.properties]\n\"note\" = \"$${{X}} costs $5\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
    );
    // X is deliberately unset: an escaped reference must not be looked up.
    let config = parse_with(&text, &[]).unwrap();
    assert_eq!(config.kafka.properties["note"], "${X} costs $5");
}

#[test]
fn an_invalid_duration_names_the_key() {
    let error = error_of(&with_feed("topic = \"a\"\nwarn_after = \"10 parsecs\""));
    assert_eq!(
        error,
        "feed[0].warn_after: invalid value: string \"10 parsecs\", expected a duration"
    );

    let error = error_of(&format!(
        "{MINIMAL}[evaluation]\ninterval = \"10 parsecs\"\n"
    ));
    assert!(error.starts_with("evaluation.interval: "), "{error}");
}

#[test]
fn kafka_properties_freshwatch_owns_are_refused() {
    for owned in [
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
    ] {
        let error = error_of(&format!(
            "{KAFKA}[kafka.properties]\n\"{owned}\" = \"true\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
        ));
        assert_eq!(
            error,
            format!("kafka.properties.\"{owned}\": is set by freshwatch itself; use kafka.brokers, kafka.group_id or kafka.start")
        );
    }
}

/// GAP (documented, not fixed here): librdkafka's canonical name for the broker list is
/// `metadata.broker.list`; `bootstrap.servers` is only its alias. The refusal list in
/// `validate_kafka` (src/config/mod.rs) checks the alias alone, so the canonical name slips
/// through and then races `kafka.brokers` inside rdkafka's ClientConfig (a HashMap, applied in
/// arbitrary order). This pins the current behaviour; it should be refused like the alias.
#[test]
fn the_canonical_broker_list_property_is_refused_like_its_alias() {
    let error = parse_with(
        &format!(
            "{KAFKA}[kafka.properties]\n\"metadata.broker.list\" = \"elsewhere:9092\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("kafka.properties.\"metadata.broker.list\": is set by freshwatch"),
        "{error}"
    );
}

#[test]
fn a_listen_address_that_is_not_ip_and_port_is_refused() {
    for listen in ["nowhere", "localhost:9187", "127.0.0.1"] {
        assert_eq!(
            error_of(&format!("{MINIMAL}[http]\nlisten = \"{listen}\"\n")),
            format!("http.listen: {listen:?} is not an ip:port address")
        );
    }
}

#[test]
fn alert_urls_must_be_http_or_https() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.webhook]]\nurl = \"ftp://hooks.example/x\"\n"
        )),
        "alerts.webhook[0].url: scheme must be http or https"
    );
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://a:9093\"\n[[alerts.alertmanager]]\nurl = \"file:///etc/passwd\"\n"
        )),
        "alerts.alertmanager[1].url: scheme must be http or https"
    );
    let error = error_of(&format!(
        "{MINIMAL}[[alerts.webhook]]\nurl = \"not a url\"\n"
    ));
    assert!(
        error.starts_with("alerts.webhook[0].url: not a URL: "),
        "{error}"
    );
}

#[test]
fn two_sinks_with_the_same_name_are_refused() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.alertmanager]]\nname = \"ops\"\nurl = \"http://a:9093\"\n[[alerts.webhook]]\nname = \"ops\"\nurl = \"http://b/hook\"\n"
        )),
        "alerts.webhook[0].name: duplicate sink name \"ops\""
    );
    // A default name counts too.
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.webhook]]\nurl = \"http://a/hook\"\n[[alerts.webhook]]\nname = \"webhook-0\"\nurl = \"http://b/hook\"\n"
        )),
        "alerts.webhook[1].name: duplicate sink name \"webhook-0\""
    );
}

#[test]
fn a_redis_url_with_another_scheme_is_refused() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[state]\nredis_url = \"http://redis:6379\"\n"
        )),
        "state.redis_url: scheme must be redis:// or rediss://"
    );
    let config = parse_with(
        &format!("{MINIMAL}[state]\nredis_url = \"rediss://redis:6380/1\"\n"),
        &[],
    )
    .unwrap();
    assert!(matches!(config.state.backend, StateBackend::Redis { .. }));
}

#[test]
fn a_config_without_feeds_is_refused() {
    assert_eq!(
        error_of(KAFKA),
        "feed: at least one [[feed]] (or [[group]]) is required"
    );
}

#[test]
fn invalid_toml_names_the_file() {
    let error = error_of("[kafka\nbrokers = 1");
    assert!(error.starts_with("t.toml: invalid TOML: "), "{error}");
}

#[test]
fn describe_lists_every_feed_with_its_thresholds() {
    let text = format!(
        "{README_EXAMPLE}\n[[feed]]\nname = \"orders\"\ntopic_regex = \"^orders\\\\..*\"\nsplit_by = \"key\"\nwarn_after = \"10m\"\ncritical_after = \"30m\"\n[[feed]]\nname = \"payments\"\ntopic = \"payments\"\n"
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
    let text = README_EXAMPLE
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
fn an_alertmanager_takes_routing_and_a_fallback_to_a_notification_sink() {
    let text = format!(
        "{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://am:9093\"\nmin_severity = \"critical\"\nfeeds = [\"billing/*\"]\nfallback = [\"oncall-mail\"]\nfallback_after = \"30s\"\n[[alerts.email]]\nname = \"oncall-mail\"\nsmtp_host = \"smtp\"\nfrom = \"fw@example.com\"\nto = [\"oncall@example.com\"]\n"
    );
    let config = parse_with(&text, &[]).unwrap();
    let alertmanager = &config.alerts.alertmanager[0];
    assert_eq!(alertmanager.min_severity, crate::model::Severity::Critical);
    assert!(alertmanager.feeds[0].matches("billing", "eu"));
    assert_eq!(alertmanager.fallback, ["oncall-mail"]);
    assert_eq!(alertmanager.fallback_after, Duration::from_secs(30));

    let defaults = parse_with(
        &format!("{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://am:9093\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        defaults.alerts.alertmanager[0].fallback_after,
        Duration::from_secs(120)
    );

    let error = error_of(&format!(
        "{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://am:9093\"\nfallback = [\"nobody\"]\n"
    ));
    assert!(
        error.contains("alerts.alertmanager[0].fallback") && error.contains("\"nobody\""),
        "{error}"
    );
}

#[test]
fn statistics_turned_off_are_refused_since_every_feed_would_stay_unknown() {
    for value in ["0", "-1", "soon"] {
        let message = error_of(&format!(
            "[kafka]\nbrokers = \"k:9092\"\n[kafka.properties]\n\"statistics.interval.ms\" = \"{value}\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
        ));
        assert!(
            message.starts_with(
                "kafka.properties.\"statistics.interval.ms\": must be a positive number"
            ),
            "{value}: {message}"
        );
    }
}

#[test]
fn a_group_takes_the_issue_contract_and_check_config_prints_it() {
    let config = parse_with(
        r#"
[kafka]
brokers = "k:9092"
[[group]]
name = "cdp-feeder"
group_id = "cdp-external-profile-feeder"
topics = ["upstream.profile-updates"]
warn_after = "15m"
critical_after = "1h"
stall_after = "5m"
retention = "7d"
loss_warn_before = "3d"
loss_critical_before = "1d"
[[group]]
group_regex = "^cdp-"
"#,
        &[],
    )
    .unwrap();
    assert_eq!(config.groups.len(), 2);
    let group = &config.groups[0];
    assert_eq!(&*group.name, "cdp-feeder");
    assert_eq!(
        group.label("cdp-external-profile-feeder").as_ref(),
        "cdp-feeder"
    );
    assert_eq!(group.retention, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(
        config.groups[1].label("cdp-loader").as_ref(),
        "cdp-loader",
        "a regex reports each group under its own id"
    );
    let described = describe(&config);
    assert!(
        described.contains("cdp-feeder (group_id=cdp-external-profile-feeder)"),
        "{described}"
    );
    assert!(
        described.contains("retention from the broker"),
        "{described}"
    );
}

#[test]
fn a_group_with_both_or_neither_id_or_inverted_thresholds_is_refused() {
    let with = |body: &str| error_of(&format!("{KAFKA}[[group]]\n{body}\n"));
    assert_eq!(
        with("group_id = \"a\"\ngroup_regex = \"b\""),
        "group[0].group_regex: set either group_id or group_regex, not both"
    );
    assert_eq!(
        with("name = \"x\""),
        "group[0].group_id: one of group_id or group_regex is required"
    );
    assert_eq!(
        with("group_id = \"a\"\nwarn_after = \"2h\"\ncritical_after = \"1h\""),
        "group[0].critical_after: must be greater than warn_after"
    );
    assert_eq!(
        with("group_id = \"a\"\nloss_warn_before = \"1h\"\nloss_critical_before = \"1d\""),
        "group[0].loss_warn_before: must be greater than loss_critical_before"
    );
}

#[test]
fn smtp_credentials_without_tls_are_refused() {
    let message = error_of(&format!(
        "{KAFKA}[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[alerts.email]]\nsmtp_host = \"smtp.internal\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n"
    ));
    assert!(
        message.starts_with("alerts.email[0].security: username and password need"),
        "{message}"
    );
}

#[test]
fn glob_routes_match_by_star_and_stay_linear_with_many_stars() {
    let pattern = |text: &str| FeedPattern(text.into());
    assert!(pattern("billing/*").matches("billing", "acme"));
    assert!(pattern("cdp.*/acme").matches("cdp.profiles", "acme"));
    assert!(!pattern("cdp.*/acme").matches("cdp.profiles", "globex"));
    assert!(pattern("*a*b*c*").matches("xaybzc", ""));
    assert!(!pattern("*a*b*c*d").matches("xaybzc", ""));
    // 30 stars against a long key that never matches: instant, not 2^30 steps.
    let stars = "*a".repeat(30) + "b";
    let started = std::time::Instant::now();
    assert!(!pattern(&stars).matches(&"a".repeat(200), ""));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn partition_split_with_a_topic_regex_is_refused() {
    let message = error_of(&format!(
        "{KAFKA}[[feed]]\nname = \"orders\"\ntopic_regex = \"^orders\\\\..*\"\nsplit_by = \"partition\"\n"
    ));
    assert!(
        message.starts_with("feed[0].split_by: \"partition\" with topic_regex"),
        "{message}"
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
