//! The examples users copy: the README's TOML blocks and the `config/*.toml` files shipped in the
//! repository. Each is read from the file itself, never from a hand copy, so an example that
//! drifts from the code fails here.

use super::*;

/// The README as shipped: the config reference users copy from.
const README: &str = include_str!("../../../README.md");

/// The heading whose first TOML block is the full example config.
const REFERENCE_HEADING: &str = "## Config reference";

/// What the README's `${VAR}` references stand for.
const README_ENV: &[(&str, &str)] = &[
    ("PAGERDUTY_ROUTING_KEY", "R0UT1NGKEY"),
    (
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T0/B0/XXXX",
    ),
    ("SMTP_PASSWORD", "smtp-password"),
    ("WEBHOOK_SECRET", "webhook-secret"),
];

/// One fenced ```` ```toml ```` block of a Markdown file.
#[derive(Debug)]
struct TomlBlock {
    /// The nearest heading above it, e.g. `### Notification sinks`.
    heading: String,
    /// 1-based line of the opening fence, for the failure message.
    line: usize,
    text: String,
}

impl TomlBlock {
    fn table(&self) -> toml::Table {
        toml::from_str(&self.text).unwrap_or_else(|error| {
            panic!(
                "README line {} ({}): invalid TOML: {error}",
                self.line, self.heading
            )
        })
    }

    /// A full config names its brokers; the rest are snippets of one section or two.
    /// A config of its own: `[kafka]` with its brokers, or `[[cluster]]` tables.
    fn is_full_config(&self) -> bool {
        let table = self.table();
        table
            .get("kafka")
            .and_then(toml::Value::as_table)
            .is_some_and(|kafka| kafka.contains_key("brokers"))
            || table.contains_key("cluster")
    }
}

/// Every TOML block, with its heading. Headings are looked for outside fences only: `#` starts
/// a comment inside TOML and shell blocks.
fn toml_blocks(markdown: &str) -> Vec<TomlBlock> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut open: Option<TomlBlock> = None;
    let mut in_other_fence = false;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if let Some(block) = open.as_mut() {
            if fence {
                blocks.extend(open.take());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if fence && line.trim() == "```toml" {
            open = Some(TomlBlock {
                heading: heading.clone(),
                line: index + 1,
                text: String::new(),
            });
        } else if fence {
            in_other_fence = !in_other_fence;
        } else if !in_other_fence && line.starts_with('#') {
            heading = line.trim().to_owned();
        }
    }
    assert!(open.is_none(), "unterminated ```toml block in the README");
    blocks
}

/// Adds `snippet` to `config`: tables merge key by key, arrays of tables append.
fn merge(config: &mut toml::Table, snippet: toml::Table) {
    for (key, value) in snippet {
        match (config.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table)
            }
            (Some(toml::Value::Array(existing)), toml::Value::Array(items)) => {
                existing.extend(items)
            }
            (_, value) => {
                config.insert(key, value);
            }
        }
    }
}

fn reference_example(blocks: &[TomlBlock]) -> &TomlBlock {
    blocks
        .iter()
        .find(|block| block.heading == REFERENCE_HEADING)
        .unwrap_or_else(|| panic!("no ```toml block under {REFERENCE_HEADING:?} in the README"))
}

fn env_lookup(name: &str) -> Option<String> {
    README_ENV
        .iter()
        .find(|(variable, _)| *variable == name)
        .map(|(_, value)| (*value).to_owned())
}

#[test]
fn the_readme_config_reference_example_is_a_full_valid_config() {
    let blocks = toml_blocks(README);
    let example = reference_example(&blocks);
    assert!(example.is_full_config(), "{example:?}");
    let config = parse_with(&example.text, README_ENV)
        .unwrap_or_else(|error| panic!("README line {}: {error}", example.line));

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
    assert_eq!(config.http.max_concurrent_reads.get(), 4);
    assert_eq!(config.metrics.max_key_series, 10_000);
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
    assert_eq!(profiles.rollup_after, 20);
    assert_eq!(profiles.mode, FeedMode::Consume);

    assert_eq!(config.alerts.alertmanager.len(), 1);
    let alertmanager = &config.alerts.alertmanager[0];
    assert_eq!(alertmanager.name, "alertmanager-0");
    assert_eq!(alertmanager.url.as_str(), "http://127.0.0.1:9093/");

    assert_eq!(config.alerts.sinks.len(), 1);
    let webhook = &config.alerts.sinks[0];
    assert_eq!(webhook.name, "webhook-0");
    assert_eq!(webhook_url(webhook), "http://127.0.0.1:8080/hook");
}

#[test]
fn every_full_config_in_the_readme_validates_on_its_own() {
    for block in toml_blocks(README)
        .iter()
        .filter(|block| block.is_full_config())
    {
        if let Err(error) = parse_with(&block.text, README_ENV) {
            panic!("README line {} ({}): {error}", block.line, block.heading);
        }
    }
}

/// A snippet (`[[group]]`, `[[alerts.pagerduty]]`, `[heartbeat]`, ...) is added to the
/// reference example: alone, its keys must deserialize there; all together they must validate,
/// since one may name a sink another declares (an Alertmanager falling back to `oncall-mail`).
#[test]
fn every_readme_snippet_fits_into_the_reference_example() {
    let blocks = toml_blocks(README);
    let base = reference_example(&blocks).table();
    let snippets: Vec<&TomlBlock> = blocks
        .iter()
        .filter(|block| !block.is_full_config())
        .collect();
    assert!(!snippets.is_empty(), "the README shows section snippets");
    let mut everything = base.clone();
    for snippet in snippets {
        let mut with_snippet = base.clone();
        merge(&mut with_snippet, snippet.table());
        let text = toml::to_string(&with_snippet).unwrap();
        if let Err(error) = parse_raw(&text, Path::new("README.md"), &env_lookup) {
            panic!(
                "README line {} ({}): {error}",
                snippet.line, snippet.heading
            );
        }
        merge(&mut everything, snippet.table());
    }
    let text = toml::to_string(&everything).unwrap();
    if let Err(error) = parse_with(&text, README_ENV) {
        panic!("the README's snippets together: {error}\n{text}");
    }
}

#[test]
fn every_example_config_shipped_in_config_validates() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(error) = parse(&text, &path, &env_lookup) {
            panic!("{}: {error}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 0, "no *.toml in {}", directory.display());
}
