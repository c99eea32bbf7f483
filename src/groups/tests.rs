use super::*;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2025-11-24T00:00:00Z: the seed's first record that expired unread.
const NOV_24_MS: i64 = 1_763_942_400_000;

/// Judged as read just now.
const KNOWN: i64 = 0;

fn rules() -> GroupRules {
    GroupRules {
        name: "cdp".into(),
        matcher: crate::config::GroupMatcher::Exact("cdp-external-profile-feeder".into()),
        topics: Vec::new(),
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
        observed_at_ms: 1,
        first_watched_ms: NOV_24_MS,
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
        KNOWN,
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
        KNOWN,
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
        KNOWN,
    );
    assert_eq!(view.status, GroupStatus::Critical);
    assert_eq!(view.wants.lagging, Some(Severity::Critical));
}

#[test]
fn a_group_whose_commits_move_is_not_stalled_whatever_its_members_and_one_whose_commit_stands_is() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 101, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let mut state = one_partition(part);
    // Flink and assign() consumers commit without membership.
    state.members = Some(0);
    let view = judge(
        "cdp",
        "upstream",
        &state,
        &rules(),
        NOV_24_MS + 1_000,
        KNOWN,
    );
    assert_eq!(view.status, GroupStatus::Ok, "its commit just moved");
    assert_eq!(view.wants.lagging, None);
    let view = judge(
        "cdp",
        "upstream",
        &state,
        &rules(),
        NOV_24_MS + 5 * MINUTE_MS,
        KNOWN,
    );
    assert_eq!(
        view.status,
        GroupStatus::Stalled,
        "no commit for stall_after"
    );
    assert!(view.wants.lagging.is_some());
    assert!(summary(&view, LAGGING, true).contains("has no active members"));
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
            KNOWN,
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
    let view = judge("cdp", "upstream", &kept, &forever, expires_ms, KNOWN);
    assert_eq!((view.loss_eta_seconds, view.wants.loss), (None, None));
    kept.retention = Some((Retention::Unknown, RetentionSource::Unknown));
    let view = judge("cdp", "upstream", &kept, &forever, expires_ms, KNOWN);
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
        KNOWN,
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
        KNOWN,
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
        i64::MAX,
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

/// A misspelt `group_id`: OffsetFetch answers -1 on every partition of a topic holding 400
/// records. Never "ok, lag 0".
#[test]
fn a_group_without_commits_is_no_commits_and_pages_missing_after_critical_after() {
    let mut part = PartitionState::default();
    part.observe(-1, 0, 400, NOV_24_MS);
    assert!(!part.needs_first_unread());
    let state = one_partition(part);
    let early = judge(
        "cdp",
        "up.profiles",
        &state,
        &rules(),
        NOV_24_MS + 30 * MINUTE_MS,
        KNOWN,
    );
    assert_eq!(early.status, GroupStatus::NoCommits);
    assert_eq!(early.lag_seconds, None, "not known, never 0");
    assert_eq!(early.partitions_without_commits, vec![3]);
    assert_eq!(
        early.wants.missing, None,
        "the group had critical_after to commit"
    );
    let late = judge(
        "cdp",
        "up.profiles",
        &state,
        &rules(),
        NOV_24_MS + HOUR_MS,
        KNOWN,
    );
    assert_eq!(late.wants.missing, Some(Severity::Critical));
    let words = summary(&late, MISSING, true);
    assert!(
        words.contains("no committed offsets on up.profiles")
            && words.contains("misspelt group_id"),
        "{words}"
    );
    // An empty partition without a commit holds nothing to read: no page for it.
    let mut empty = PartitionState::default();
    empty.observe(-1, 7, 7, NOV_24_MS);
    let view = judge(
        "cdp",
        "up.profiles",
        &one_partition(empty),
        &rules(),
        NOV_24_MS + DAY_MS,
        KNOWN,
    );
    assert_eq!((view.status, view.wants.missing), (GroupStatus::Ok, None));
}

/// Day 7 of the seed: Kafka expires the dead group's offsets. The lag, the countdown and the
/// loss go on from the last commit seen, and nothing resolves.
#[test]
fn commits_that_vanish_keep_their_lag_and_countdown_and_page_missing_at_once() {
    let mut part = PartitionState::default();
    part.observe(1_000, 0, 5_000, NOV_24_MS);
    part.found_first_unread(1_000, NOV_24_MS);
    let mut state = one_partition(part);
    let day_6 = NOV_24_MS + 6 * DAY_MS;
    let before = judge("cdp", "upstream", &state, &rules(), day_6, KNOWN);
    state.firing = before.wants.clone();
    assert_eq!(before.wants.loss, Some(Severity::Critical));

    let day_7 = NOV_24_MS + 7 * DAY_MS - HOUR_MS;
    let part = state.partitions.get_mut(&3).unwrap();
    part.observe(-1, 0, 6_000, day_7);
    assert_eq!(part.committed, 1_000, "the last commit seen stands");
    assert_eq!(part.vanished_at_ms, Some(day_7));
    let after = judge("cdp", "upstream", &state, &rules(), day_7, KNOWN);
    assert_eq!(after.status, GroupStatus::NoCommits);
    assert_eq!(after.lag_records, 5_000);
    assert_eq!(after.wants.lagging, Some(Severity::Critical), "no resolve");
    assert_eq!(after.wants.loss, Some(Severity::Critical), "no resolve");
    assert_eq!(after.wants.missing, Some(Severity::Critical), "at once");
    assert_eq!(after.loss_eta_seconds, Some(3600.0));
    let words = summary(&after, MISSING, true);
    assert!(
        words.contains("committed offsets vanished (last seen: offset 1000"),
        "{words}"
    );
    // Retention deletes the unread records: DataLost still fires from the last commit.
    state
        .partitions
        .get_mut(&3)
        .unwrap()
        .observe(-1, 2_000, 6_100, day_7 + 2 * HOUR_MS);
    let lost = judge(
        "cdp",
        "upstream",
        &state,
        &rules(),
        day_7 + 2 * HOUR_MS,
        KNOWN,
    );
    assert!(lost.wants.lost);
    assert_eq!(lost.records_lost, 1_000);
    // The group comes back and commits: the vanishing is over.
    let part = state.partitions.get_mut(&3).unwrap();
    part.observe(6_100, 2_000, 6_100, day_7 + 3 * HOUR_MS);
    assert_eq!(part.vanished_at_ms, None);
    let back = judge(
        "cdp",
        "upstream",
        &state,
        &rules(),
        day_7 + 3 * HOUR_MS,
        KNOWN,
    );
    assert_eq!(back.wants.missing, None);
    assert_eq!(back.status, GroupStatus::Ok);
}

/// The last commit seen is persisted: a freshwatch restarted after the offsets expired still
/// knows where the group stood.
#[test]
fn a_commit_seen_before_a_restart_is_judged_as_vanished_after_it() {
    let mut part = PartitionState::default();
    part.observe(1_000, 0, 5_000, NOV_24_MS);
    let stored: TopicState =
        serde_json::from_str(&serde_json::to_string(&one_partition(part)).unwrap()).unwrap();
    let mut restored = stored.clone();
    restored.observed_at_ms = 1;
    restored
        .partitions
        .get_mut(&3)
        .unwrap()
        .observe(-1, 0, 5_000, NOV_24_MS + DAY_MS);
    assert_eq!(restored.partitions[&3].committed, 1_000);
    assert_eq!(
        restored.partitions[&3].vanished_at_ms,
        Some(NOV_24_MS + DAY_MS)
    );
    // A new leader that never saw the commit takes it from the store.
    let mut fresh = PartitionState::default();
    fresh.observe(-1, 0, 5_000, NOV_24_MS + DAY_MS);
    let mut own = one_partition(fresh);
    own.adopt(stored);
    assert_eq!(own.partitions[&3].committed, 1_000);
    assert_eq!(own.partitions[&3].vanished_at_ms, Some(NOV_24_MS + DAY_MS));
    assert_eq!(own.partitions[&3].high, 5_000);
}

#[test]
fn a_commit_above_the_high_watermark_is_never_lag_zero() {
    let mut part = PartitionState::default();
    part.observe(900, 0, 400, NOV_24_MS);
    assert!(!part.needs_first_unread());
    let mut state = one_partition(part);
    state.firing.lagging = Some(Severity::Warning);
    let view = judge("cdp", "upstream", &state, &rules(), NOV_24_MS, KNOWN);
    assert_eq!(view.status, GroupStatus::OffsetOutOfRange);
    assert_eq!(view.lag_seconds, None);
    assert_eq!(view.wants.missing, Some(Severity::Warning));
    assert_eq!(
        view.wants.lagging,
        Some(Severity::Warning),
        "not resolved by it"
    );
    let words = summary(&view, MISSING, true);
    assert!(
        words.contains("committed offset 900 above the high watermark 400"),
        "{words}"
    );
}

/// A live consumer far behind: between its commit moving and the new first unread record being
/// read, its lag in time is unknown, and a tick then must not resolve its alerts.
#[test]
fn a_commit_that_moved_keeps_the_alerts_until_its_first_unread_record_is_read() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 10_000, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let mut state = one_partition(part);
    let now_ms = NOV_24_MS + 2 * HOUR_MS;
    state
        .partitions
        .get_mut(&3)
        .unwrap()
        .observe(200, 0, 10_000, now_ms);
    let view = judge("cdp", "upstream", &state, &rules(), now_ms, KNOWN);
    state.firing = view.wants.clone();
    assert_eq!(
        state.partitions[&3].first_unread,
        Some((100, NOV_24_MS)),
        "kept until the new one is read"
    );
    let mut firing = Firing {
        lagging: Some(Severity::Critical),
        loss: Some(Severity::Warning),
        ..Firing::default()
    };
    state.firing = firing.clone();
    let tick = judge("cdp", "upstream", &state, &rules(), now_ms, KNOWN);
    assert_eq!(tick.lag_seconds, None);
    assert_eq!(tick.wants.lagging, Some(Severity::Critical), "no flap");
    assert_eq!(tick.wants.loss, Some(Severity::Warning), "no flap");
    assert!(state.partitions[&3].needs_first_unread());
    state
        .partitions
        .get_mut(&3)
        .unwrap()
        .found_first_unread(200, now_ms - MINUTE_MS);
    let read = judge("cdp", "upstream", &state, &rules(), now_ms, KNOWN);
    firing.lagging = None;
    firing.loss = None;
    assert_eq!(read.wants, firing, "known again: resolved by the truth");
}

#[test]
fn a_commit_on_transaction_markers_is_caught_up_and_never_stalls() {
    let mut part = PartitionState::default();
    // The consumer committed 99; offset 99 is a commit marker; the high watermark is 100.
    part.observe(99, 0, 100, NOV_24_MS);
    assert!(part.needs_first_unread());
    part.found_only_markers(100);
    assert!(!part.needs_first_unread());
    assert_eq!(part.lag_records(), 0);
    let state = one_partition(part.clone());
    let view = judge(
        "cdp",
        "upstream",
        &state,
        &rules(),
        NOV_24_MS + DAY_MS,
        KNOWN,
    );
    assert_eq!(view.status, GroupStatus::Ok);
    assert_eq!(view.wants, Firing::default());
    // New data lands past the markers: read again, lag as usual.
    part.observe(99, 0, 105, NOV_24_MS + DAY_MS);
    assert!(part.needs_first_unread());
    part.found_first_unread(101, NOV_24_MS + DAY_MS);
    assert_eq!(part.lag_records(), 6);
    assert_eq!(part.markers_to, None);
}

#[test]
fn a_compacted_topic_has_lag_alerts_and_no_countdown() {
    use super::watcher::retention_of;
    assert_eq!(
        retention_of(Some("compact"), Some("604800000")),
        (Retention::Compacted, RetentionSource::Compact)
    );
    assert_eq!(
        retention_of(Some("compact,delete"), Some("604800000")),
        (Retention::Time(604_800_000), RetentionSource::Broker)
    );
    assert_eq!(
        retention_of(None, Some("-1")),
        (Retention::Forever, RetentionSource::Broker)
    );
    let mut part = PartitionState::default();
    part.observe(100, 0, 900, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let mut state = one_partition(part);
    state.retention = Some((Retention::Compacted, RetentionSource::Compact));
    let mut from_broker = rules();
    from_broker.retention = None;
    let view = judge(
        "cdp",
        "profiles-compacted",
        &state,
        &from_broker,
        NOV_24_MS + 6 * DAY_MS + 23 * HOUR_MS,
        KNOWN,
    );
    assert_eq!(view.retention_source, RetentionSource::Compact);
    assert_eq!((view.loss_eta_seconds, view.wants.loss), (None, None));
    assert_eq!(view.wants.lagging, Some(Severity::Critical));
    assert_eq!(
        serde_json::to_value(&view).unwrap()["retention_source"],
        "compact"
    );
}

#[test]
fn rates_give_a_catchup_eta_and_the_countdown_says_whether_it_is_in_time() {
    let mut trend = Trend::default();
    assert_eq!(trend.rates(), None);
    trend.push(0, 1_000, 10_000);
    trend.push(60_000, 7_000, 13_000);
    assert_eq!(trend.rates(), Some((100.0, 50.0)));
    let mut part = PartitionState::default();
    part.observe(7_000, 0, 13_000, NOV_24_MS);
    part.found_first_unread(7_000, NOV_24_MS);
    let mut state = one_partition(part);
    state.trend = trend;
    let now_ms = NOV_24_MS + 6 * DAY_MS + 23 * HOUR_MS;
    let view = judge("cdp", "upstream", &state, &rules(), now_ms, KNOWN);
    assert_eq!(
        view.catchup_eta_seconds,
        Some(120.0),
        "6000 behind at 50/s net"
    );
    let words = summary(&view, LOSS_IMMINENT, true);
    assert!(
        words.contains("catches up in 2m 0s, before then"),
        "{words}"
    );
    // Falling behind: no ETA, and the page says it will not catch up.
    let mut falling = Trend::default();
    falling.push(0, 1_000, 10_000);
    falling.push(60_000, 1_600, 13_000);
    state.trend = falling;
    let view = judge("cdp", "upstream", &state, &rules(), now_ms, KNOWN);
    assert_eq!(view.catchup_eta_seconds, None);
    assert!(summary(&view, LOSS_IMMINENT, true).contains("will not catch up"));
}

#[test]
fn an_escalation_resolves_the_warning_with_words_that_say_so() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 200, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let label: Arc<str> = Arc::from("cdp");
    let mut table = GroupsTable::from([((label, "upstream".to_owned()), one_partition(part))]);
    let all = [rules()];
    let (_, alerts, _) = evaluate(&mut table, &all, NOV_24_MS + 20 * MINUTE_MS, 0, true);
    assert!(alerts
        .iter()
        .any(|alert| alert.alertname == LAGGING && alert.firing));
    for state in table.values_mut() {
        state.partitions.get_mut(&3).unwrap().committed_moved_at_ms = NOV_24_MS + HOUR_MS;
    }
    let (_, alerts, _) = evaluate(&mut table, &all, NOV_24_MS + HOUR_MS, 0, true);
    let resolve = alerts
        .iter()
        .find(|alert| alert.alertname == LAGGING && !alert.firing)
        .expect("the warning is resolved");
    assert!(
        resolve
            .summary
            .starts_with("escalated to critical: Consumer group cdp is 1h 0m behind"),
        "{}",
        resolve.summary
    );
    assert!(!resolve.summary.contains("keeping up"));
}

/// State is keyed by what it watches: removing the first `[[group]]` neither moves the second's
/// state to other rules nor leaves the first's alert firing.
#[test]
fn a_removed_group_resolves_its_alerts_once_and_the_others_keep_theirs() {
    let mut part = PartitionState::default();
    part.observe(100, 0, 200, NOV_24_MS);
    part.found_first_unread(100, NOV_24_MS);
    let mut gone = one_partition(part.clone());
    gone.group_id = "old-feeder".into();
    gone.firing.lagging = Some(Severity::Critical);
    let mut kept = one_partition(part);
    kept.rules = 1;
    kept.firing.lagging = Some(Severity::Critical);
    let mut table = GroupsTable::from([
        ((Arc::from("old"), "upstream".to_owned()), gone),
        ((Arc::from("cdp"), "upstream".to_owned()), kept),
    ]);
    let now_ms = NOV_24_MS + 2 * HOUR_MS;
    let (views, alerts, removed) = evaluate(&mut table, &[rules()], now_ms, 0, true);
    assert_eq!(removed, vec![(Arc::from("old"), "upstream".to_owned())]);
    assert_eq!(views.len(), 1);
    assert_eq!(table[&(Arc::from("cdp"), "upstream".to_owned())].rules, 0);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(!alerts[0].firing);
    assert_eq!(alerts[0].labels[0].1, "old");
    assert!(alerts[0].summary.contains("no longer watched"));
    let (_, again, removed) = evaluate(&mut table, &[rules()], now_ms + 1, 0, true);
    assert!(again.is_empty() && removed.is_empty(), "once");
}

#[test]
fn a_group_that_cannot_be_read_past_blind_after_pages_once_and_resolves() {
    let mut reads = GroupReads::new();
    let mut alerting = BTreeMap::new();
    let failure = ReadFailure {
        since_ms: NOV_24_MS,
        reason: "coordinator not available".into(),
    };
    reads.insert(Arc::from("cdp"), failure.clone());
    assert!(blindness(&reads, &mut alerting, HOUR_MS, false, NOV_24_MS + MINUTE_MS).is_empty());
    let raised = blindness(&reads, &mut alerting, HOUR_MS, false, NOV_24_MS + HOUR_MS);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].alertname, GROUPS_BLIND);
    assert_eq!(raised[0].labels, vec![("group", "cdp".to_owned())]);
    assert!(raised[0].summary.contains("coordinator not available"));
    assert!(blindness(
        &reads,
        &mut alerting,
        HOUR_MS,
        false,
        NOV_24_MS + 2 * HOUR_MS
    )
    .is_empty());
    // Kafka itself down: every group fails under one cause, held while SourceDown pages.
    reads.insert(Arc::from(ALL_GROUPS), failure);
    assert!(blindness(
        &reads,
        &mut alerting,
        HOUR_MS,
        true,
        NOV_24_MS + 2 * HOUR_MS
    )
    .is_empty());
    let all = blindness(
        &reads,
        &mut alerting,
        HOUR_MS,
        false,
        NOV_24_MS + 2 * HOUR_MS,
    );
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].labels, vec![("group", ALL_GROUPS.to_owned())]);
    reads.clear();
    let resolved = blindness(
        &reads,
        &mut alerting,
        HOUR_MS,
        false,
        NOV_24_MS + 3 * HOUR_MS,
    );
    assert_eq!(resolved.len(), 2);
    assert!(resolved.iter().all(|alert| !alert.firing));
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
    let (_, fired, _) = evaluate(&mut table, &[rules()], began_ms, 0, true);
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
    let (_, resolved, _) = evaluate(&mut table, &[rules()], resolved_ms, 0, true);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(!resolved[0].firing);
    assert_eq!(
        resolved[0].since_ms, began_ms,
        "the resolve says when the alert began, not when it ended: a silence since then holds \
         it only if the alert began inside"
    );
}

#[test]
fn the_rules_index_finds_the_rule_a_scan_finds_among_exact_ids_and_regexes() {
    let exact = |name: &str, id: &str, topics: &[&str]| GroupRules {
        name: name.into(),
        matcher: crate::config::GroupMatcher::Exact(id.into()),
        topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
        ..rules()
    };
    let regex = GroupRules {
        name: "all-cdp".into(),
        matcher: crate::config::GroupMatcher::Regex(regex::Regex::new("^cdp-").expect("a regex")),
        ..rules()
    };
    let all = vec![
        exact("a", "cdp-a", &["orders"]),
        regex,
        exact("a-too", "cdp-a", &[]),
        exact("b", "other-b", &[]),
    ];
    let index = RulesIndex::new(&all);
    for (label, group_id, topic) in [
        ("a", "cdp-a", "orders"),
        ("a", "cdp-a", "payments"),
        ("a-too", "cdp-a", "payments"),
        ("cdp-a", "cdp-a", "payments"),
        ("cdp-x", "cdp-x", "orders"),
        ("b", "other-b", "orders"),
        ("gone", "gone", "orders"),
    ] {
        assert_eq!(
            index.find(label, group_id, topic),
            rules_for(&all, label, group_id, topic),
            "{label} {group_id} {topic}"
        );
    }
}
