//! `[[group]]`: watched consumer groups.

use super::*;

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
