//! Config tests: helpers and the top-level sections here; one file per section below.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::extract::json::JsonPointer;

mod alerts;
mod clusters;
mod describe;
mod examples;
mod feed;
mod groups;
mod volume;
mod window;

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
    assert_eq!(config.http.max_concurrent_reads.get(), 4);
    assert_eq!(config.metrics.max_key_series, 10_000);
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
fn read_turns_and_the_key_series_bound_are_set_in_their_tables() {
    let config = parse_with(
        &format!("{MINIMAL}[http]\nmax_concurrent_reads = 2\n[metrics]\nmax_key_series = 50\n"),
        &[],
    )
    .unwrap();
    assert_eq!(config.http.max_concurrent_reads.get(), 2);
    assert_eq!(config.metrics.max_key_series, 50);
    let error = error_of(&format!("{MINIMAL}[http]\nmax_concurrent_reads = 0\n"));
    assert!(error.starts_with("http.max_concurrent_reads: "), "{error}");
    let error = error_of(&format!("{MINIMAL}[metrics]\nmax_series = 5\n"));
    assert!(error.starts_with("metrics.max_series: "), "{error}");
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
        "group.instance.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
    ] {
        let error = error_of(&format!(
            "{KAFKA}[kafka.properties]\n\"{owned}\" = \"true\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n"
        ));
        assert_eq!(
            error,
            format!("kafka.properties.\"{owned}\": is set by freshwatch itself; use kafka.brokers, kafka.group_id, kafka.instance_id or kafka.start")
        );
    }
}

#[test]
fn kafka_instance_id_defaults_to_the_host_name_and_an_empty_one_turns_static_membership_off() {
    let feed = "[[feed]]\nname = \"a\"\ntopic = \"a\"\n";
    let named = parse_with(&format!("{KAFKA}instance_id = \"replica-0\"\n{feed}"), &[]).unwrap();
    assert_eq!(named.kafka.instance_id.as_deref(), Some("replica-0"));
    let off = parse_with(&format!("{KAFKA}instance_id = \"\"\n{feed}"), &[]).unwrap();
    assert_eq!(off.kafka.instance_id, None);
    let default = parse_with(&format!("{KAFKA}{feed}"), &[]).unwrap();
    assert_eq!(default.kafka.instance_id, crate::config::host_name());
    assert!(
        default.kafka.instance_id.is_some(),
        "this machine has a host name"
    );
    let error = error_of(&format!(
        "{KAFKA}instance_id = \"{}\"\n{feed}",
        "x".repeat(250)
    ));
    assert!(error.starts_with("kafka.instance_id: "), "{error}");
}

/// librdkafka's canonical name for the broker list is `metadata.broker.list`; `bootstrap.servers`
/// is only its alias. Let through, it would race `kafka.brokers` inside rdkafka's ClientConfig (a
/// HashMap, applied in arbitrary order), so it is refused like the alias.
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
fn admin_and_read_tokens_come_from_the_environment_and_must_be_long() {
    let text = MINIMAL.to_owned()
        + "\n[http]\nadmin_token = \"${FRESHWATCH_ADMIN_TOKEN}\"\nread_token = \"short\"\n";
    let env = [("FRESHWATCH_ADMIN_TOKEN", "0123456789abcdef0123")];
    let error = parse_with(&text, &env).unwrap_err().to_string();
    assert!(
        error.contains("http.read_token: must be at least 16 characters"),
        "{error}"
    );
    let text = MINIMAL.to_owned() + "\n[http]\nadmin_token = \"${FRESHWATCH_ADMIN_TOKEN}\"\n";
    let config = parse_with(&text, &env).unwrap();
    let token = config.http.admin_token.expect("set");
    assert_eq!(token.expose(), "0123456789abcdef0123");
    assert_eq!(format!("{token:?}"), "***", "never printed");
    assert!(config.http.read_token.is_none());
}

/// `[[feed]]`s `a`, `b` and `c`, a `[[group]]` `relay`, and `pipelines` after them.
fn with_pipelines(pipelines: &str) -> String {
    let feeds: String = ["a", "b", "c"]
        .iter()
        .map(|name| format!("[[feed]]\nname = \"{name}\"\ntopic = \"{name}\"\n"))
        .collect();
    format!("{KAFKA}{feeds}[[group]]\ngroup_id = \"relay\"\n{pipelines}")
}

#[test]
fn a_pipeline_names_feeds_and_groups_in_order_and_check_config_prints_it() {
    let config = parse_with(
        &with_pipelines("[[pipeline]]\nname = \"p\"\nhops = [\"a\", \"group:relay\", \"b\"]\n"),
        &[],
    )
    .unwrap();
    let pipeline = &config.pipelines[0];
    assert_eq!(
        pipeline.hops,
        [
            Hop::Feed("a".into()),
            Hop::Group("relay".into()),
            Hop::Feed("b".into())
        ]
    );
    assert_eq!(pipeline.catchup_grace, Duration::from_secs(600));
    assert!(
        describe(&config).contains("pipeline p: a -> group:relay -> b (catchup_grace 10m)\n"),
        "{}",
        describe(&config)
    );
}

#[test]
fn unknown_hops_short_pipelines_and_cycles_are_refused_with_the_hop_named() {
    let error = error_of(&with_pipelines(
        "[[pipeline]]\nname = \"p\"\nhops = [\"a\", \"nope\"]\n",
    ));
    assert!(
        error.starts_with("pipeline[0].hops[1]: \"nope\": no [[feed]] named so"),
        "{error}"
    );
    let error = error_of(&with_pipelines(
        "[[pipeline]]\nname = \"p\"\nhops = [\"a\", \"group:feeder\"]\n",
    ));
    assert!(
        error.starts_with("pipeline[0].hops[1]: \"group:feeder\": no [[group]]"),
        "{error}"
    );
    let error = error_of(&with_pipelines(
        "[[pipeline]]\nname = \"p\"\nhops = [\"a\"]\n",
    ));
    assert!(error.starts_with("pipeline[0].hops: "), "{error}");
    let error = error_of(&with_pipelines(
        "[[pipeline]]\nname = \"p\"\nhops = [\"a\", \"b\"]\n[[pipeline]]\nname = \"q\"\nhops = [\"b\", \"c\", \"a\"]\n",
    ));
    assert!(error.contains("is upstream of itself"), "{error}");
    assert!(error.starts_with("pipeline[0].hops: hop "), "{error}");
    let error = error_of(&with_pipelines(
        "[[pipeline]]\nname = \"p\"\nhops = [\"a\", \"b\"]\n[[pipeline]]\nname = \"p\"\nhops = [\"b\", \"c\"]\n",
    ));
    assert!(error.starts_with("pipeline[1].name: "), "{error}");
}

#[test]
fn an_audit_names_two_feed_hops_in_order_with_an_id_and_check_config_prints_it() {
    let audit = |body: &str| {
        with_pipelines(&format!(
            "[[pipeline]]\nname = \"p\"\nhops = [\"a\", \"group:relay\", \"b\"]\n[[pipeline.audit]]\n{body}"
        ))
    };
    let config = parse_with(
        &audit("from = \"a\"\nto = \"b\"\nid = { json = \"/order_id\" }\nbucket = \"30s\"\n"),
        &[],
    )
    .unwrap();
    let parsed = &config.pipelines[0].audits[0];
    assert_eq!(parsed.name(), "p/a/b");
    assert_eq!(parsed.bucket, Duration::from_secs(30));
    assert_eq!(
        parsed.grace,
        Duration::from_secs(300),
        "grace defaults to 5m"
    );
    assert_eq!(parsed.max_listed, 100);
    assert!(
        describe(&config).contains(
            "  audit a -> b by json /order_id (bucket 30s, grace 5m, lists up to 100 ids)\n"
        ),
        "{}",
        describe(&config)
    );
    let error = error_of(&audit("from = \"b\"\nto = \"a\"\nid = \"key\"\n"));
    assert!(
        error.starts_with("pipeline[0].audit[0].to: \"a\" must be downstream of \"b\""),
        "{error}"
    );
    let error = error_of(&audit("from = \"a\"\nto = \"c\"\nid = \"key\"\n"));
    assert!(
        error.starts_with("pipeline[0].audit[0].to: \"c\" is not a feed hop of pipeline p"),
        "{error}"
    );
    let error = error_of(&audit("from = \"relay\"\nto = \"b\"\nid = \"key\"\n"));
    assert!(error.starts_with("pipeline[0].audit[0].from: "), "{error}");
    let error = error_of(&audit("from = \"a\"\nto = \"b\"\nid = \"partition\"\n"));
    assert!(
        error.starts_with("pipeline[0].audit[0].id: must be"),
        "{error}"
    );
    let error = error_of(&audit(
        "from = \"a\"\nto = \"b\"\nid = \"key\"\nbucket = \"10ms\"\n",
    ));
    assert!(
        error.starts_with("pipeline[0].audit[0].bucket: "),
        "{error}"
    );
    let error = error_of(&audit(
        "from = \"a\"\nto = \"b\"\nid = \"key\"\nmax_listed = 0\n",
    ));
    assert!(
        error.starts_with("pipeline[0].audit[0].max_listed: "),
        "{error}"
    );
    let error = error_of(&audit(
        "from = \"a\"\nto = \"b\"\nid = \"key\"\nbukcet = \"1m\"\n",
    ));
    assert!(
        error.contains("bukcet"),
        "unknown keys are refused: {error}"
    );
}
