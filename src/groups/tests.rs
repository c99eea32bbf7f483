use super::*;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2025-11-24T00:00:00Z: the seed's first record that expired unread.
const NOV_24_MS: i64 = 1_763_942_400_000;

fn rules() -> GroupRules {
    GroupRules {
        warn_after_ms: 15 * MINUTE_MS,
        critical_after_ms: HOUR_MS,
        stall_after_ms: 5 * MINUTE_MS,
        retention: Some(7 * DAY_MS),
        loss_warn_before_ms: 3 * DAY_MS,
        loss_critical_before_ms: DAY_MS,
    }
}

fn one_partition(part: PartitionState) -> TopicState {
    TopicState {
        group_id: "cdp-external-profile-feeder".into(),
        partitions: BTreeMap::from([(3, part)]),
        ..TopicState::default()
    }
}

#[test]
fn lag_in_time_is_the_age_of_the_first_unread_record_and_zero_when_caught_up() {
    let now_ms = NOV_24_MS + 10 * MINUTE_MS;
    let mut part = PartitionState::default();
    part.observe(100, 0, 150, NOV_24_MS);
    assert!(part.needs_first_unread());
    part.found_first_unread(100, NOV_24_MS);
    assert!(!part.needs_first_unread(), "read once per commit");
    let view = judge(
        "cdp",
        "upstream",
        &one_partition(part.clone()),
        &rules(),
        now_ms,
        true,
    );
    assert_eq!(view.lag_records, 50);
    assert_eq!(view.lag_seconds, Some(600.0));
    assert_eq!(
        view.status,
        GroupStatus::Stalled,
        "behind, commit still for 10m"
    );
    assert_eq!(view.wants.lagging, Some(Severity::Warning));

    part.observe(150, 0, 150, now_ms);
    let caught_up = judge(
        "cdp",
        "upstream",
        &one_partition(part),
        &rules(),
        now_ms,
        true,
    );
    assert_eq!(caught_up.lag_seconds, Some(0.0));
    assert_eq!(caught_up.status, GroupStatus::Ok);
    assert_eq!(caught_up.wants, Firing::default());
}

#[test]
fn a_group_that_commits_but_falls_behind_lags_without_stalling() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 500, NOV_24_MS + 2 * HOUR_MS);
    part.found_first_unread(100, NOV_24_MS);
    let view = judge(
        "cdp",
        "upstream",
        &one_partition(part),
        &rules(),
        NOV_24_MS + 2 * HOUR_MS + MINUTE_MS,
        true,
    );
    assert_eq!(view.status, GroupStatus::Critical);
    assert_eq!(view.wants.lagging, Some(Severity::Critical));
}

#[test]
fn a_group_with_no_members_while_behind_is_stalled_at_once() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 101, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let mut state = one_partition(part);
    state.members = Some(0);
    let view = judge("cdp", "upstream", &state, &rules(), NOV_24_MS + 1_000, true);
    assert_eq!(view.status, GroupStatus::Stalled);
}

#[test]
fn the_countdown_is_the_first_unread_record_plus_retention_and_pages_by_its_thresholds() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 900, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let state = one_partition(part);
    let expires_ms = NOV_24_MS + 7 * DAY_MS;
    let at = |eta_ms: i64| {
        judge(
            "cdp",
            "upstream",
            &state,
            &rules(),
            expires_ms - eta_ms,
            true,
        )
    };
    assert_eq!(at(4 * DAY_MS).wants.loss, None);
    assert_eq!(at(3 * DAY_MS).wants.loss, Some(Severity::Warning));
    let critical = at(23 * HOUR_MS);
    assert_eq!(critical.wants.loss, Some(Severity::Critical));
    assert_eq!(critical.loss_eta_seconds, Some(23.0 * 3600.0));
    assert_eq!(
        critical.expires_at.as_deref(),
        Some("2025-12-01T00:00:00.000Z")
    );
    assert_eq!(critical.retention_source, RetentionSource::Config);

    let mut forever = rules();
    forever.retention = None;
    let mut kept = state.clone();
    kept.retention = Some((Retention::Forever, RetentionSource::Broker));
    let view = judge("cdp", "upstream", &kept, &forever, expires_ms, true);
    assert_eq!((view.loss_eta_seconds, view.wants.loss), (None, None));
    kept.retention = Some((Retention::Unknown, RetentionSource::Unknown));
    let view = judge("cdp", "upstream", &kept, &forever, expires_ms, true);
    assert_eq!(view.retention_source, RetentionSource::Unknown);
    assert_eq!(
        view.loss_eta_seconds, None,
        "size-based retention has no time"
    );
}

#[test]
fn records_that_expire_unread_are_counted_once_with_their_time_range() {
    // The seed: the feeder's commit sits at Nov 24 00:00 while retention deletes forward.
    let mut part = PartitionState::default();
    part.observe(1_000, 0, 5_000, NOV_24_MS + 7 * DAY_MS);
    part.found_first_unread(1_000, NOV_24_MS);
    let nov_26_18h = NOV_24_MS + 2 * DAY_MS + 18 * HOUR_MS;
    let later = NOV_24_MS + 9 * DAY_MS + 18 * HOUR_MS;
    part.observe(1_000, 3_750, 9_000, later);
    part.observe(1_000, 3_750, 9_100, later + MINUTE_MS);
    assert_eq!(part.lost_records, 2_750, "counted once, not per round");
    assert!(part.needs_first_unread());
    part.found_first_unread(3_750, nov_26_18h);
    let view = judge(
        "cdp",
        "upstream",
        &one_partition(part.clone()),
        &rules(),
        later,
        true,
    );
    assert_eq!(view.records_lost, 2_750);
    assert_eq!(view.partitions_lost, vec![3]);
    assert!(view.wants.lost);
    assert_eq!(view.lost_from.as_deref(), Some("2025-11-24T00:00:00.000Z"));
    assert_eq!(view.lost_to.as_deref(), Some("2025-11-26T18:00:00.000Z"));
    // More expires: counted from where the last count stopped.
    part.observe(1_000, 4_000, 9_200, later + HOUR_MS);
    assert_eq!(part.lost_records, 3_000);
    // The group resumes from the log start: nothing more is lost, the alert ends.
    part.observe(4_000, 4_000, 9_200, later + 2 * HOUR_MS);
    let view = judge(
        "cdp",
        "upstream",
        &one_partition(part),
        &rules(),
        later,
        true,
    );
    assert!(!view.wants.lost);
    assert_eq!(view.records_lost, 3_000);
}

#[test]
fn a_group_that_cannot_be_read_is_unknown_and_keeps_its_alerts() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 101, NOV_24_MS);
    let mut state = one_partition(part);
    state.firing.lagging = Some(Severity::Critical);
    let view = judge(
        "cdp",
        "upstream",
        &state,
        &rules(),
        NOV_24_MS + DAY_MS,
        false,
    );
    assert_eq!(view.status, GroupStatus::Unknown);
    assert_eq!(view.wants.lagging, Some(Severity::Critical));
}

#[test]
fn a_new_leader_adopts_what_fires_and_the_earlier_last_move_of_a_commit_that_stands() {
    let mut theirs = PartitionState::default();
    theirs.observe(100, 0, 200, NOV_24_MS);
    let mut stored = one_partition(theirs);
    stored.firing.lagging = Some(Severity::Critical);
    let mut mine = PartitionState::default();
    mine.observe(100, 0, 200, NOV_24_MS + HOUR_MS);
    let mut own = one_partition(mine);
    own.adopt(stored.clone());
    assert_eq!(own.firing.lagging, Some(Severity::Critical));
    assert_eq!(own.partitions[&3].committed_moved_at_ms, NOV_24_MS);

    let mut moved = PartitionState::default();
    moved.observe(150, 0, 200, NOV_24_MS + HOUR_MS);
    let mut own = one_partition(moved);
    own.adopt(stored);
    assert_eq!(
        own.partitions[&3].committed_moved_at_ms,
        NOV_24_MS + HOUR_MS,
        "the commit moved since: the newer observation stands"
    );
}

#[test]
fn a_group_alert_and_its_resolve_carry_when_it_began_across_a_restart() {
    let began_ms = NOV_24_MS + 10 * MINUTE_MS;
    let mut part = PartitionState::default();
    part.observe(100, 0, 150, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let key = (Arc::from("cdp"), "upstream".to_owned());
    let mut table = GroupsTable::new();
    table.insert(key.clone(), one_partition(part.clone()));
    table.get_mut(&key).unwrap().observed_at_ms = began_ms;
    let (_, fired) = evaluate(&mut table, &[rules()], began_ms, 0, true);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0].firing);
    assert_eq!(fired[0].since_ms, began_ms);

    // Restarted an hour later: the stored state says when it began.
    let stored: TopicState =
        serde_json::from_str(&serde_json::to_string(&table[&key]).unwrap()).unwrap();
    let mut table = GroupsTable::new();
    table.insert(key.clone(), one_partition(part.clone()));
    table.get_mut(&key).unwrap().adopt(stored);
    let restarted_ms = began_ms + HOUR_MS;
    let still = firing(&table, restarted_ms);
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].since_ms, began_ms, "still firing since it began");

    let resolved_ms = restarted_ms + MINUTE_MS;
    part.observe(150, 0, 150, resolved_ms);
    let state = table.get_mut(&key).unwrap();
    state.partitions.insert(3, part);
    state.observed_at_ms = resolved_ms;
    let (_, resolved) = evaluate(&mut table, &[rules()], resolved_ms, 0, true);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(!resolved[0].firing);
    assert_eq!(
        resolved[0].since_ms, began_ms,
        "the resolve says when the alert began, not when it ended: a silence since then holds \
         it only if the alert began inside"
    );
}
