//! What operators look at, checked against the real thing: every PromQL expression of the
//! Grafana dashboard (`config/grafana/freshwatch.json`) and of freshwatch's own alerting rules
//! (`config/freshwatch-rules.yml`) parses with `promtool`, and names only metrics a running
//! freshwatch exports; `docker-compose.yml` provisions the dashboard with its Prometheus.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    now_ms, produce_one, producer, require_binary, runtime, wait_until, FreshwatchProcess,
    RedisServer,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const DASHBOARD: &str = "config/grafana/freshwatch.json";
const ALERTING_RULES: &str = "config/freshwatch-rules.yml";
const DATASOURCES: &str = "config/grafana/provisioning/datasources/prometheus.yml";
const DASHBOARD_PROVIDERS: &str = "config/grafana/provisioning/dashboards/freshwatch.yml";

/// What Grafana's own interval variables stand for when an expression is checked.
const GRAFANA_INTERVALS: &[(&str, &str)] = &[
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
];

/// One PromQL expression and where it comes from, for failure messages.
#[derive(Debug)]
struct Query {
    origin: String,
    expr: String,
}

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(DASHBOARD).unwrap_or_else(|error| panic!("{DASHBOARD}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{DASHBOARD} is not JSON: {error}"))
}

fn yaml(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{path} is not YAML: {error}"))
}

/// Every panel, the ones inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// The dashboard's template variables, by name.
fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

/// A variable's query: Grafana writes it as a string or as `{ "query": ... }`.
fn variable_query(variable: &Value) -> &str {
    variable["query"]
        .as_str()
        .or_else(|| variable["query"]["query"].as_str())
        .unwrap_or_default()
}

/// The expression as Prometheus would get it: template variables become a match-all regex and
/// Grafana's intervals a duration.
fn substitute(expr: &str, variable_names: &[&str]) -> String {
    let mut text = expr.to_owned();
    for (interval, duration) in GRAFANA_INTERVALS {
        text = text.replace(interval, duration);
    }
    for name in variable_names {
        text = text
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    text
}

/// Every panel target's expression, substituted.
fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let variable_names: Vec<&str> = variables(dashboard)
        .iter()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {:?}: a target without expr", panel["title"]));
            let substituted = substitute(expr, &variable_names);
            assert!(
                !substituted.contains('$'),
                "panel {:?}: unknown variable in {expr:?}",
                panel["title"]
            );
            queries.push(Query {
                origin: format!(
                    "panel {} {:?}, target {}",
                    panel["id"], panel["title"], target["refId"]
                ),
                expr: substituted,
            });
        }
    }
    queries
}

/// Every rule's expression in a Prometheus rules file.
fn rule_queries(path: &str) -> Vec<Query> {
    let rules = yaml(path);
    let mut queries = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or("?");
            queries.push(Query {
                origin: format!("{path} rule {name}"),
                expr: rule["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    queries
}

/// `promtool check rules` on `path`; panics with promtool's answer unless all `rules` pass.
fn promtool_check_rules(path: &Path, rules: usize, legend: &str) {
    let output = Command::new(require_binary("promtool"))
        .args(["check", "rules"])
        .arg(path)
        .output()
        .expect("promtool runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(&format!("SUCCESS: {rules} rules found")),
        "promtool check rules {}:\n{stdout}{stderr}{legend}",
        path.display()
    );
}

/// The metric names an expression reads: every identifier starting `freshwatch_` outside string
/// literals (every freshwatch metric carries the prefix; label names and values never do).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    let mut in_string: Option<char> = None;
    let mut escaped = false;
    for character in expr.chars().chain([' ']) {
        if let Some(quote) = in_string {
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == quote {
                in_string = None;
            }
            continue;
        }
        if character.is_ascii_alphanumeric() || character == '_' || character == ':' {
            token.push(character);
            continue;
        }
        if token.starts_with("freshwatch_") {
            names.push(token.clone());
        }
        token.clear();
        if matches!(character, '"' | '\'' | '`') {
            in_string = Some(character);
        }
    }
    names
}

/// The sample names the `# TYPE` lines of a `/metrics` text announce: a counter's samples are
/// `<name>_total`, a histogram's `<name>_bucket`, `_sum` and `_count`, a gauge's `<name>`.
fn declared_names(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let Some(declaration) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = declaration.split_whitespace();
        let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
            panic!("malformed TYPE line: {line}");
        };
        match kind {
            "counter" => {
                names.insert(format!("{family}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{family}{suffix}"));
                }
            }
            _ => {
                names.insert(family.to_owned());
            }
        }
    }
    names
}

/// The names of the samples actually present (no `#` line), for the check above.
fn sampled_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The watched application of [`real_metrics`]: group `feeder` reads one of the two records on
/// `upstream` and commits, so one record stays unread.
fn commit_one_of_two_records(brokers: &str) {
    let records = producer(brokers);
    produce_one(&records, "upstream", "k", now_ms());
    produce_one(&records, "upstream", "k", now_ms());
    let feeder: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "feeder")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    feeder.subscribe(&["upstream"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(feeder.poll(Duration::from_millis(100)), Some(Ok(_))) {
        assert!(Instant::now() < deadline, "feeder read nothing");
    }
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("upstream", 0, Offset::Offset(1))
        .unwrap();
    feeder.commit(&offsets, CommitMode::Sync).unwrap();
}

/// `/metrics` of a real freshwatch on the mock cluster and Redis, once every family the
/// dashboard reads has a sample: a feed with a record and a `min_rate` (its shortest window,
/// watched in full, so it has a rate), a watched group with an unread record (so it has a lag
/// and a data-loss countdown), and a sink. prometheus-client prints nothing for a family
/// without a sample, not even its `# TYPE` line (seen: before the group watcher's first round
/// `freshwatch_group_lag_seconds` is missing entirely), so the families must be filled.
fn real_metrics() -> String {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 1, 1).unwrap();
    cluster.create_topic("upstream", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let redis = RedisServer::start();
    let directory = tempfile::tempdir().unwrap();
    produce_one(&producer(&brokers), "events", "k", now_ms());
    commit_one_of_two_records(&brokers);
    let config = format!(
        r#"
[kafka]
brokers = "{brokers}"
groups_interval = "300ms"
[state]
redis_url = "{}"
flush_interval = "100ms"
[evaluation]
interval = "200ms"
[[feed]]
name = "events"
topic = "events"
split_by = "key"
min_rate = "60/min"
volume_window = "10s"
[[group]]
group_id = "feeder"
topics = ["upstream"]
retention = "7d"
[[alerts.webhook]]
url = "http://127.0.0.1:9/hook"
"#,
        redis.url
    );
    runtime().block_on(async {
        let freshwatch = FreshwatchProcess::start(directory.path(), &config);
        freshwatch.wait_ready().await;
        for series in [
            "freshwatch_feed_records_total{feed=\"events\",key=\"k\"}",
            "freshwatch_group_lag_seconds{group=\"feeder\",topic=\"upstream\"}",
            "freshwatch_group_loss_eta_seconds{group=\"feeder\",topic=\"upstream\"}",
            "freshwatch_feed_rate_per_second{feed=\"events\"}",
            "freshwatch_feed_expected_rate_per_second{feed=\"events\"}",
            "freshwatch_feed_min_rate_per_second{feed=\"events\"}",
        ] {
            wait_until(series, Duration::from_secs(30), || async {
                freshwatch.metric(series).await.is_some()
            })
            .await;
        }
        reqwest::get(format!("{}/metrics", freshwatch.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

#[test]
fn the_dashboard_has_a_variable_per_feed_per_group_and_per_cluster() {
    let dashboard = dashboard();
    let by_name = |name: &str| {
        variables(&dashboard)
            .into_iter()
            .find(|variable| variable["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(
        variable_query(by_name("feed")),
        // Every feed has it, also one past metrics.max_key_series with every key ok.
        "label_values(freshwatch_feed_keys, feed)"
    );
    assert_eq!(
        variable_query(by_name("group")),
        "label_values(freshwatch_group_status, group)"
    );
    assert_eq!(
        variable_query(by_name("cluster")),
        // Exported for every cluster, `default` too: the variable is never empty.
        "label_values(freshwatch_cluster_feeds_unknown, cluster)"
    );
    let queries = dashboard_queries(&dashboard);
    for (metric, variable) in [
        ("freshwatch_feed_max_staleness_seconds", "feed"),
        ("freshwatch_feed_keys_by_status", "feed"),
        ("freshwatch_feed_records_all_keys_total", "feed"),
        ("freshwatch_feed_rate_per_second", "feed"),
        ("freshwatch_feed_expected_rate_per_second", "feed"),
        ("freshwatch_feed_min_rate_per_second", "feed"),
        ("freshwatch_group_lag_seconds", "group"),
        ("freshwatch_group_loss_eta_seconds", "group"),
        ("freshwatch_source_up", "cluster"),
        ("freshwatch_cluster_feeds_unknown", "cluster"),
    ] {
        let raw: Vec<&str> = panels(&dashboard)
            .into_iter()
            .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
            .filter_map(|target| target["expr"].as_str())
            .filter(|expr| expr.contains(metric))
            .collect();
        assert!(!raw.is_empty(), "no panel reads {metric}");
        for expr in raw {
            assert!(
                expr.contains(&format!("{variable}=~\"${variable}\"")),
                "{expr:?} ignores the {variable} variable"
            );
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");
    // A feed past metrics.max_key_series exports these per key only for its keys that are not
    // ok: a panel summing them would be wrong for it. The per-feed aggregates stand in.
    for per_key in [
        "freshwatch_feed_staleness_seconds",
        "freshwatch_feed_status",
        "freshwatch_feed_records_total",
        "freshwatch_feed_last_seen_timestamp_seconds",
    ] {
        for query in &queries {
            assert!(
                !metric_names(&query.expr).iter().any(|name| name == per_key),
                "{:?} reads {per_key}, which a large feed exports only for its alerting keys",
                query.expr
            );
        }
    }
}

#[test]
fn every_dashboard_query_parses_as_promql() {
    let queries = dashboard_queries(&dashboard());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(index, query)| {
            serde_json::json!({
                "record": format!("freshwatch:dashboard:panel_{}", index + 1),
                "expr": query.expr,
            })
        })
        .collect();
    let file = serde_json::json!({
        "groups": [{ "name": "freshwatch-dashboard", "rules": rules }],
    });
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("dashboard-rules.yml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    let legend: String = queries
        .iter()
        .enumerate()
        .map(|(index, query)| format!("\npanel_{}: {}: {}", index + 1, query.origin, query.expr))
        .collect();
    promtool_check_rules(&path, queries.len(), &legend);
}

#[test]
fn the_alerting_rules_for_freshwatch_itself_parse() {
    let rules = rule_queries(ALERTING_RULES);
    assert!(!rules.is_empty());
    promtool_check_rules(Path::new(ALERTING_RULES), rules.len(), "");
}

/// `FreshwatchFeedVolumeLow` under `promtool test rules`: two replicas export the same feed,
/// whose rate stays below its min rate for 25 minutes, and one of its keys that stays above its
/// own: one alert, for the feed, and only once the drop has lasted 20 minutes.
#[test]
fn the_volume_rule_fires_once_per_feed_below_its_min_rate_after_20_minutes() {
    let rules = std::fs::canonicalize(ALERTING_RULES).unwrap();
    let test = format!(
        r#"
rule_files: ["{}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'freshwatch_feed_rate_per_second{{feed="orders",instance="a"}}'
        values: '0.5x30'
      - series: 'freshwatch_feed_rate_per_second{{feed="orders",instance="b"}}'
        values: '0.5x30'
      - series: 'freshwatch_feed_min_rate_per_second{{feed="orders",instance="a"}}'
        values: '2x30'
      - series: 'freshwatch_feed_min_rate_per_second{{feed="orders",instance="b"}}'
        values: '2x30'
      - series: 'freshwatch_feed_rate_per_second{{feed="orders",key="eu",instance="a"}}'
        values: '3x30'
      - series: 'freshwatch_feed_min_rate_per_second{{feed="orders",key="eu",instance="a"}}'
        values: '2x30'
    alert_rule_test:
      - eval_time: 19m
        alertname: FreshwatchFeedVolumeLow
        exp_alerts: []
      - eval_time: 25m
        alertname: FreshwatchFeedVolumeLow
        exp_alerts:
          - exp_labels: {{feed: orders, severity: warning}}
            exp_annotations:
              summary: "feed orders: 0.5 records/s, below its min_rate"
"#,
        rules.display()
    );
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("volume-rule-test.yml");
    std::fs::write(&path, test).unwrap();
    let output = Command::new(require_binary("promtool"))
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_metric_the_dashboard_and_the_rules_read_is_exported_by_a_running_freshwatch() {
    let metrics = real_metrics();
    let declared = declared_names(&metrics);
    let sampled = sampled_names(&metrics);
    assert!(
        sampled.is_subset(&declared),
        "samples their TYPE line does not announce: {:?}",
        sampled.difference(&declared).collect::<Vec<_>>()
    );
    let exported = declared;
    let mut queries = dashboard_queries(&dashboard());
    queries.extend(rule_queries(ALERTING_RULES));
    let dashboard = dashboard();
    for variable in variables(&dashboard) {
        queries.push(Query {
            origin: format!("variable {}", variable["name"]),
            expr: variable_query(variable).to_owned(),
        });
    }
    let mut missing = Vec::new();
    for query in &queries {
        for name in metric_names(&query.expr) {
            if !exported.contains(&name) {
                missing.push(format!("{name} ({}: {})", query.origin, query.expr));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in freshwatch's /metrics:\n{}\n\nexported: {exported:?}",
        missing.join("\n")
    );
    let read: BTreeSet<String> = queries
        .iter()
        .flat_map(|query| metric_names(&query.expr))
        .collect();
    for family in [
        // The per-feed aggregates: the per-key families are bounded by metrics.max_key_series.
        "freshwatch_feed_max_staleness_seconds",
        "freshwatch_feed_warn_after_seconds",
        "freshwatch_feed_critical_after_seconds",
        "freshwatch_feed_keys_by_status",
        "freshwatch_feed_records_all_keys_total",
        "freshwatch_records_consumed_total",
        "freshwatch_group_lag_seconds",
        "freshwatch_group_loss_eta_seconds",
        "freshwatch_alerts_sent_total",
        "freshwatch_outbox_pending",
        "freshwatch_source_up",
        "freshwatch_state_store_up",
        "freshwatch_leader",
        "freshwatch_record_errors_total",
        "freshwatch_feed_rate_per_second",
        "freshwatch_feed_expected_rate_per_second",
        "freshwatch_feed_min_rate_per_second",
    ] {
        assert!(read.contains(family), "nothing reads {family}");
    }
}

#[test]
fn compose_provisions_grafana_with_the_dashboard_and_prometheus_as_its_datasource() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let grafana = &services["grafana"];
    let image = grafana["image"].as_str().expect("grafana image");
    assert!(image.starts_with("grafana/grafana:11."), "{image}");
    let mounts: Vec<(&str, &str)> = grafana["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(|volume| {
            let mut parts = volume.as_str()?.split(':');
            Some((parts.next()?, parts.next()?))
        })
        .collect();
    let mounted_at = |source: &str| {
        mounts
            .iter()
            .find(|(from, _)| from.strip_prefix("./") == Some(source))
            .map(|(_, to)| *to)
            .unwrap_or_else(|| panic!("{source} is not mounted into grafana: {mounts:?}"))
    };
    assert!(mounted_at(DATASOURCES).starts_with("/etc/grafana/provisioning/datasources/"));
    assert!(mounted_at(DASHBOARD_PROVIDERS).starts_with("/etc/grafana/provisioning/dashboards/"));
    let providers = yaml(DASHBOARD_PROVIDERS);
    let provider_path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let dashboard_mount = Path::new(mounted_at(DASHBOARD));
    assert_eq!(dashboard_mount.parent(), Some(Path::new(provider_path)));

    // The datasource is the compose file's Prometheus, under the uid the panels name.
    let datasource = &yaml(DATASOURCES)["datasources"][0];
    assert_eq!(datasource["type"], "prometheus");
    assert_eq!(datasource["url"], "http://prometheus:9090");
    assert!(services["prometheus"].is_mapping());
    let uid = datasource["uid"].as_str().expect("datasource uid");
    for panel in panels(&dashboard()) {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], uid,
            "panel {:?}",
            panel["title"]
        );
    }

    // freshwatch's API stays on the compose network; what is published is on loopback.
    assert!(
        services["freshwatch"]["ports"].is_null(),
        "freshwatch publishes its API: {:?}",
        services["freshwatch"]["ports"]
    );
    for (name, service) in services.as_mapping().unwrap() {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap_or_default();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name:?} publishes {port} beyond loopback"
            );
        }
    }
}
