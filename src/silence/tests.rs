use super::*;

const HOUR_MS: i64 = 3_600_000;
const NOW_MS: i64 = 1_764_547_200_000;

fn request(json: &str) -> NewSilence {
    serde_json::from_str(json).expect("valid request")
}

fn silence(json: &str) -> Silence {
    request(json)
        .into_silence("s1".into(), NOW_MS)
        .expect("valid silence")
}

#[test]
fn a_request_becomes_a_silence_from_now_for_its_duration() {
    let made = silence(
        r#"{"matchers": {"feed": "profiles", "key": "acme"}, "duration": "2h", "comment": "offboarding", "created_by": "ana"}"#,
    );
    assert_eq!(
        (made.starts_at_ms, made.ends_at_ms),
        (NOW_MS, NOW_MS + 2 * HOUR_MS)
    );
    assert!(made.active(NOW_MS) && !made.active(NOW_MS + 2 * HOUR_MS));
    assert!(made.matches_series("profiles", "acme"));
    assert!(!made.matches_series("profiles", "globex"));
    assert!(!made.matches_group("profiles"));
    assert!(made.describe().contains("by ana: offboarding (s1)"));
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let refused = |json: &str| request(json).into_silence("x".into(), NOW_MS).unwrap_err();
    assert_eq!(
        refused(r#"{"matchers": {}, "duration": "1h", "comment": "c"}"#),
        SilenceError::NoMatcher
    );
    assert_eq!(
        refused(r#"{"matchers": {"feed": "a", "group": "g"}, "duration": "1h", "comment": "c"}"#),
        SilenceError::FeedsAndGroups
    );
    assert_eq!(
        refused(r#"{"matchers": {"feed": "a"}, "duration": "1h", "comment": " "}"#),
        SilenceError::NoComment
    );
    assert_eq!(
        refused(r#"{"matchers": {"feed": "a"}, "comment": "c"}"#),
        SilenceError::NoEnd
    );
    assert_eq!(
        refused(
            r#"{"matchers": {"feed": "a"}, "starts_at": "2019-12-31T00:00:00Z", "ends_at": "2020-01-01T00:00:00Z", "comment": "c"}"#
        ),
        SilenceError::AlreadyOver
    );
    assert_eq!(
        refused(r#"{"matchers": {"feed": "a"}, "duration": "100d", "comment": "c"}"#),
        SilenceError::TooLong
    );
    assert!(
        serde_json::from_str::<NewSilence>(
            r#"{"matchers": {"tenant": "a"}, "duration": "1h", "comment": "c"}"#
        )
        .is_err(),
        "unknown matcher"
    );
}

#[test]
fn globs_match_feeds_and_groups_and_the_loss_guard_breaks_through() {
    let silences = Silences::default();
    silences.insert(silence(
        r#"{"matchers": {"feed": "billing-*"}, "duration": "1h", "comment": "migration"}"#,
    ));
    let mut group =
        silence(r#"{"matchers": {"group": "cdp-*"}, "duration": "1h", "comment": "deploy"}"#);
    group.id = "s2".into();
    silences.insert(group.clone());

    let series = |feed, key| Subject::Series { feed, key };
    assert!(silences
        .holding(series("billing-eu", "x"), NOW_MS)
        .is_some());
    assert!(
        silences.holding(series("billing-eu", ""), NOW_MS).is_some(),
        "its roll-up"
    );
    assert!(silences.holding(series("profiles", "x"), NOW_MS).is_none());
    let lagging = Subject::Group {
        group: "cdp-sync",
        data_loss: false,
    };
    let losing = Subject::Group {
        group: "cdp-sync",
        data_loss: true,
    };
    assert_eq!(
        silences.holding(lagging, NOW_MS).map(|s| s.id),
        Some("s2".into())
    );
    assert!(
        silences.holding(losing, NOW_MS).is_none(),
        "data loss breaks through"
    );

    group.allow_data_loss = true;
    silences.insert(group);
    assert!(silences.holding(losing, NOW_MS).is_some(), "unless allowed");
    assert!(
        silences.holding(lagging, NOW_MS + HOUR_MS).is_none(),
        "expired by itself"
    );
}

#[test]
fn ended_silences_are_handed_over_once_and_forgotten_after_a_day() {
    let silences = Silences::default();
    let mut ended = silence(r#"{"matchers": {"feed": "a"}, "duration": "1h", "comment": "c"}"#);
    silences.insert(ended.clone());
    assert!(silences.ended_unhandled(NOW_MS).is_empty());
    assert_eq!(silences.ended_unhandled(NOW_MS + HOUR_MS).len(), 1);
    ended.end_handled = true;
    silences.insert(ended);
    assert!(silences.ended_unhandled(NOW_MS + HOUR_MS).is_empty());
    assert!(silences.forgotten(NOW_MS + 2 * HOUR_MS).is_empty());
    assert_eq!(
        silences.forgotten(NOW_MS + HOUR_MS + KEEP_EXPIRED_MS),
        vec!["s1".to_owned()]
    );
    assert_ne!(new_id(), new_id());
}

/// A store that lost its silences (Redis restarted empty) must not make a reload drop the ones
/// held in memory before the repair writes them back; one forgotten by the store is dropped.
#[tokio::test]
async fn a_reload_from_a_store_that_lost_a_silence_keeps_it_until_it_is_written_back() {
    let directory = tempfile::tempdir().unwrap();
    let store = crate::state::StateStore::Embedded(
        crate::state::EmbeddedStore::open(directory.path().to_path_buf())
            .await
            .unwrap(),
    );
    let clock = Arc::new(crate::clock::ManualClock::new(NOW_MS));
    let book = SilenceBook::new(Silences::new(), store.clone(), clock.clone());
    let held = book
        .create(request(
            r#"{"matchers": {"feed": "billing"}, "duration": "30m", "comment": "migration"}"#,
        ))
        .await
        .unwrap();
    let mut old = silence(r#"{"matchers": {"feed": "a"}, "duration": "1h", "comment": "c"}"#);
    old.id = "old".into();
    old.end_handled = true;
    book.silences.insert(old);
    // The store loses every silence.
    store
        .documents_remove(
            crate::state::Documents::Silences,
            vec![held.id.clone(), "old".into()],
        )
        .await
        .unwrap();
    book.reload().await.unwrap();
    assert_eq!(book.silences.get(&held.id), Some(held.clone()));

    book.write_back().await;
    let stored = store
        .documents_load(crate::state::Documents::Silences)
        .await
        .unwrap();
    assert!(stored.iter().any(|(id, _)| *id == held.id));

    // A day after its end, a silence the store no longer holds is gone for good.
    clock.set(NOW_MS + 2 * HOUR_MS + KEEP_EXPIRED_MS);
    store
        .documents_remove(crate::state::Documents::Silences, vec!["old".into()])
        .await
        .unwrap();
    book.reload().await.unwrap();
    assert_eq!(book.silences.get("old"), None);
}
