//! The command line as a user meets it: `check-config`, `status`, `demo`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, freshwatch_bin, wait_until};

fn check_config(text: &str) -> (i32, String, String) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("freshwatch.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(freshwatch_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("FRESHWATCH_TEST_UNSET")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const KAFKA: &str = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n";

#[test]
fn the_example_config_is_valid_and_its_feeds_are_printed() {
    let output = Command::new(freshwatch_bin())
        .args(["check-config", "--config", "config/freshwatch.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("profiles: topic=cdp.profile-updates split_by=json /tenant_id"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warn_after=30m critical_after=2h expected=[acme, globex]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("orders: topic=orders.created split_by=partition"),
        "{stdout}"
    );
    // The seed's feeder group is watched, not only topics.
    assert!(
        stdout.contains(
            "cdp-feeder (group_id=cdp-external-profile-feeder) topics: upstream.profile-updates"
        ),
        "{stdout}"
    );
}

#[test]
fn each_bad_config_names_the_key_and_the_reason_and_exits_1() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\n[[feed]]\nname=\"b\"\ntopic=\"b\"\n[[feed]]\nname=\"c\"\ntopic=\"c\"\nwarn_after=\"2h\"\ncritical_after=\"1h\"\n"),
            "error: feed[2].critical_after: must be greater than warn_after",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\ncolour=\"red\"\n"),
            "error: feed[0].colour: unknown field `colour`",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\nwarn_after=\"10 parsecs\"\n"),
            "error: feed[0].warn_after:",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\ntopic_regex=\"^a\"\n"),
            "error: feed[0].topic: set either topic or topic_regex, not both",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\nsplit_by={{ json = \"tenant\" }}\n"),
            "error: feed[0].split_by.json:",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\nexpected=[\"x\"]\n"),
            "error: feed[0].expected: needs split_by",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\n[[alerts.webhook]]\nurl=\"${{FRESHWATCH_TEST_UNSET}}\"\n"),
            "error: alerts.webhook[0].url: environment variable FRESHWATCH_TEST_UNSET is not set",
        ),
        (
            format!("{KAFKA}[[feed]]\nname=\"a\"\ntopic=\"a\"\n[[alerts.alertmanager]]\nurl=\"ftp://x\"\n"),
            "error: alerts.alertmanager[0].url: scheme must be http or https",
        ),
        (
            KAFKA.to_string(),
            "error: feed: at least one [[feed]] (or [[group]]) is required",
        ),
        ("[kafka\nbrokers=1".to_owned(), "invalid TOML"),
        ("[[feed]]\nname=\"a\"\ntopic=\"a\"\n".to_owned(), "missing field `kafka`"),
    ];
    for (text, expected) in cases {
        let (code, stdout, stderr) = check_config(&text);
        assert_eq!(code, 1, "exit code for:\n{text}\nstderr: {stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr:?} for:\n{text}"
        );
        assert!(stdout.is_empty(), "nothing on stdout on error: {stdout}");
    }
    let missing = Command::new(freshwatch_bin())
        .args(["check-config", "--config", "/nonexistent/freshwatch.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("cannot read /nonexistent/freshwatch.toml"));
}

#[test]
fn check_config_prints_a_feeds_volume_rule_under_it() {
    let (code, stdout, stderr) = check_config(&format!(
        "{KAFKA}[[feed]]\nname=\"orders\"\ntopic=\"orders\"\nmin_rate=\"learned\"\ndrop_ratio=0.25\n"
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "  orders: topic=orders split_by=none timestamp=record warn_after=1h critical_after=6h\n    volume: min_rate=learned (hour-of-week baseline, UTC) drop_ratio=0.25 volume_for=10m volume_window=10m\n"
        ),
        "{stdout}"
    );
}

#[test]
fn the_demo_shows_a_warning_then_a_critical_alert_and_serves_status() {
    let port = free_port();
    let demo = Command::new(freshwatch_bin())
        .args([
            "demo",
            "--for",
            "32s",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    runtime.block_on(wait_until(
        "demo serves the API",
        Duration::from_secs(20),
        || async { reqwest::get(format!("{url}/api/v1/feeds")).await.is_ok() },
    ));
    // Once payments has gone warning, `status` lists it above the fresh feeds.
    runtime.block_on(wait_until(
        "payments turns warning",
        Duration::from_secs(25),
        || async {
            let Ok(response) = reqwest::get(format!("{url}/api/v1/feeds?feed=payments")).await
            else {
                return false;
            };
            let rows: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
            rows.first()
                .is_some_and(|row| row["status"] != "ok" && row["status"] != "unknown")
        },
    ));
    let status = Command::new(freshwatch_bin())
        .args(["status", "--url", &url])
        .output()
        .unwrap();
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("FEED"), "{table}");
    let position = |needle: &str| {
        lines
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {table}"))
    };
    assert!(
        position("payments") < position("orders"),
        "stalest first:\n{table}"
    );
    assert!(position("acme") > position("payments"), "{table}");
    // The consumer group that died follows the feeds.
    assert!(position("GROUP") > position("acme"), "{table}");
    assert!(
        lines[position("demo-billing-loader")].contains("demo.orders"),
        "{table}"
    );

    let output = demo.wait_with_output().unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    let warning = log
        .find("feed warning: Feed payments")
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    let critical = log
        .find("feed critical: Feed payments")
        .unwrap_or_else(|| panic!("no critical in:\n{log}"));
    assert!(warning < critical);
    assert!(
        log.contains("feed critical: Feed profiles/initech has never been seen"),
        "{log}"
    );
    for alertname in ["ConsumerGroupLagging", "DataLossImminent"] {
        assert!(
            log.lines()
                .any(|line| line.contains("consumer group alert") && line.contains(alertname)),
            "{alertname} in:\n{log}"
        );
    }

    let unreachable = Command::new(freshwatch_bin())
        .args(["status", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach freshwatch"));
}

#[test]
fn a_bad_command_line_exits_2_and_a_failed_start_exits_3_naming_the_cause() {
    let usage = Command::new(freshwatch_bin())
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("no-such-command"),
        "clap names what it did not understand"
    );

    // An embedded store that cannot be created fails at once (Redis, which may be restarting,
    // is waited for instead: see tests/resilience.rs).
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("freshwatch.toml");
    std::fs::write(
        &path,
        format!(
            "{KAFKA}[state]\npath = \"/proc/freshwatch-state\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[[feed]]\nname = \"orders\"\ntopic = \"orders\"\n",
            free_port()
        ),
    )
    .unwrap();
    let failed = Command::new(freshwatch_bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("state store"), "{stderr}");

    // A consumer thread that stops while running (here: librdkafka refuses the subscription,
    // since a topic starting with `^` is a regex to it) stops the process with exit 3: it never
    // looks alive while blind.
    std::fs::write(
        &path,
        format!(
            "{KAFKA}[state]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[[feed]]\nname = \"bad\"\ntopic = \"^[\"\n",
            directory.path().join("state").display(),
            free_port()
        ),
    )
    .unwrap();
    let died = Command::new(freshwatch_bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(died.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&died.stderr);
    assert!(
        stderr.contains("the source thread stopped while running"),
        "{stderr}"
    );
}
