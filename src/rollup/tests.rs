use super::*;
use crate::model::Status;

const MINUTE_MS: i64 = 60_000;

fn transition(key: &str, from: Status, to: Status) -> Transition {
    Transition {
        feed: Arc::from("profiles"),
        key: key.to_owned(),
        split: true,
        topic: "cdp.profile-updates".into(),
        from,
        to,
        at_ms: 0,
        from_since_ms: 0,
        alert_since_ms: 0,
        last_seen_ms: Some(0),
        staleness_ms: Some(0),
        warn_after_ms: 30 * MINUTE_MS,
        critical_after_ms: 120 * MINUTE_MS,
        records: 1,
        context: None,
    }
}

fn many(count: usize, from: Status, to: Status) -> Vec<Transition> {
    (0..count)
        .map(|index| transition(&format!("tenant-{index:05}"), from, to))
        .collect()
}

fn facts(_feed: &str) -> FeedFacts {
    FeedFacts {
        rollup_after: 20,
        keys: 10_000,
        topic: "cdp.profile-updates".into(),
        warn_after_ms: 30 * MINUTE_MS,
        critical_after_ms: 120 * MINUTE_MS,
        learned: false,
    }
}

fn route(rollups: &mut RollUps, transitions: Vec<Transition>, now_ms: i64) -> Routed {
    rollups.route(transitions, facts, now_ms)
}

#[test]
fn up_to_rollup_after_keys_page_one_by_one() {
    let mut rollups = RollUps::default();
    let routed = route(&mut rollups, many(20, Status::Ok, Status::Warning), 0);
    assert_eq!(routed.individual.len(), 20);
    assert!(routed.absorbed.is_empty() && routed.rollups.is_empty());
    assert!(rollups.get("profiles").is_none());
}

#[test]
fn a_burst_is_one_page_that_escalates_once_and_resolves_with_its_last_member() {
    let mut rollups = RollUps::default();
    let routed = route(
        &mut rollups,
        many(9_812, Status::Ok, Status::Warning),
        1_000,
    );
    assert!(routed.individual.is_empty());
    assert_eq!(
        routed.absorbed.len(),
        9_812,
        "Alertmanager still gets every key"
    );
    assert_eq!(routed.rollups.len(), 1);
    let notice = &routed.rollups[0];
    assert_eq!(
        (notice.severity, notice.previous),
        (Some(Severity::Warning), None)
    );
    assert_eq!(notice.dedup_key(), "freshwatch/profiles#rollup");
    assert_eq!(
        notice.summary(),
        "Feed profiles: 9812 of 10000 keys have had no new data for over 30m 0s (tenant-00000, tenant-00001, tenant-00002, and 9809 more)"
    );
    assert_eq!(routed.changed, vec![Arc::<str>::from("profiles")]);

    // The trickle after the burst joins it; so does the escalation to critical, told once.
    let mut later = many(9_812, Status::Warning, Status::Critical);
    later.push(transition("straggler", Status::Ok, Status::Warning));
    let routed = route(&mut rollups, later, 2_000);
    assert!(routed.individual.is_empty());
    assert_eq!(routed.rollups.len(), 1);
    assert_eq!(
        (routed.rollups[0].severity, routed.rollups[0].previous),
        (Some(Severity::Critical), Some(Severity::Warning))
    );
    assert_eq!(routed.rollups[0].members, 9_813);

    // The critical members recover: the roll-up is down to warning, told once.
    let routed = route(
        &mut rollups,
        many(9_812, Status::Critical, Status::Ok),
        3_000,
    );
    assert_eq!(routed.rollups.len(), 1);
    assert_eq!(routed.rollups[0].severity, Some(Severity::Warning));
    assert_eq!(
        routed.rollups[0].members, 1,
        "the straggler is still warning"
    );
    let routed = route(
        &mut rollups,
        vec![transition("straggler", Status::Warning, Status::Ok)],
        4_000,
    );
    assert_eq!(routed.absorbed.len(), 1);
    assert_eq!(routed.rollups.len(), 1);
    assert_eq!(routed.rollups[0].severity, None);
    assert!(routed.rollups[0].summary().contains("fresh again after 3s"));
    assert!(rollups.get("profiles").is_none());
}

#[test]
fn a_key_paged_on_its_own_before_the_burst_stays_on_its_own() {
    let mut rollups = RollUps::default();
    let alone = route(
        &mut rollups,
        vec![transition("early", Status::Ok, Status::Warning)],
        0,
    );
    assert_eq!(alone.individual.len(), 1);
    route(&mut rollups, many(50, Status::Ok, Status::Critical), 1_000);
    let routed = route(
        &mut rollups,
        vec![
            transition("early", Status::Warning, Status::Critical),
            transition("early-2", Status::Ok, Status::Warning),
        ],
        2_000,
    );
    assert_eq!(routed.individual.len(), 1, "its own incident escalates");
    assert_eq!(routed.individual[0].key, "early");
    assert_eq!(routed.absorbed[0].key, "early-2");
    assert!(!rollups.is_member("profiles", "early"));
    assert!(rollups.is_member("profiles", "early-2"));
}

#[test]
fn a_restored_rollup_absorbs_its_members_recovery() {
    let mut first = RollUps::default();
    route(&mut first, many(30, Status::Ok, Status::Critical), 0);
    let persisted = first.get("profiles").unwrap().clone();
    let json = serde_json::to_string(&persisted).unwrap();

    let mut restarted = RollUps::default();
    restarted.restore(Arc::from("profiles"), serde_json::from_str(&json).unwrap());
    let routed = route(
        &mut restarted,
        many(30, Status::Critical, Status::Ok),
        5_000,
    );
    assert!(
        routed.individual.is_empty(),
        "no resolve of a page never sent"
    );
    assert_eq!(routed.rollups.len(), 1);
    assert_eq!(routed.rollups[0].severity, None);
}

#[test]
fn taken_up_after_a_restart_members_that_recovered_meanwhile_leave() {
    let mut rollups = RollUps::default();
    route(&mut rollups, many(30, Status::Ok, Status::Critical), 0);
    let notices = rollups.take_up(|_, key| key < "tenant-00010", facts, 1_000);
    assert_eq!(notices.len(), 1);
    assert_eq!(
        (notices[0].severity, notices[0].previous, notices[0].members),
        (Some(Severity::Critical), Some(Severity::Critical), 10),
        "a reminder of the same incident, with the members that still alert"
    );
    let notices = rollups.take_up(|_, _| false, facts, 2_000);
    assert_eq!(notices[0].severity, None, "none left: it resolves");
    assert!(rollups.feeds().is_empty());
}

#[test]
fn a_learned_feeds_rollup_names_no_single_threshold() {
    let mut rollups = RollUps::default();
    let learned = |feed: &str| FeedFacts {
        learned: true,
        ..facts(feed)
    };
    let routed = rollups.route(many(25, Status::Ok, Status::Critical), learned, 0);
    assert_eq!(
        routed.rollups[0].summary(),
        "Feed profiles: 25 of 10000 keys have gone quiet past their learned critical thresholds (tenant-00000, tenant-00001, tenant-00002, and 22 more)"
    );
}
