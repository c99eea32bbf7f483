use super::*;

const FEED: usize = 0;

fn orders_knowledge(mode: FeedMode) -> Knowledge {
    Knowledge::new(
        vec![(TopicMatcher::Exact("orders".into()), mode)],
        10_000,
        6_000,
        500,
    )
}

fn partitions(topic: &str, count: i32) -> Vec<PartitionKey> {
    (0..count)
        .map(|partition| (topic.to_owned(), partition))
        .collect()
}

fn metadata(at_ms: i64, topics: &[(&str, i32)]) -> HashMap<String, i32> {
    let _ = at_ms;
    topics
        .iter()
        .map(|(topic, count)| ((*topic).to_owned(), *count))
        .collect()
}

fn sight(knowledge: &Knowledge, now_ms: i64) -> Sight {
    knowledge.assess(now_ms).feeds[FEED].sight
}

#[test]
fn nothing_is_known_before_the_metadata_says_which_partitions_exist() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    assert_eq!(sight(&knowledge, 1_000), Sight::Blind(Blindness::Starting));
}

#[test]
fn a_restart_given_no_partitions_while_the_dead_member_holds_them_is_blind_not_vacuously_caught_up()
{
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 2)]));
    knowledge.observe_assignment(0, &[]);
    let assessment = knowledge.assess(2_000);
    assert_eq!(
        assessment.feeds[FEED].sight,
        Sight::Blind(Blindness::Unowned)
    );
    assert_eq!(assessment.feeds[FEED].blind_since_ms, Some(2_000));
    assert_eq!(
        assessment.unowned,
        vec![(("orders".into(), 0), 2_000), (("orders".into(), 1), 2_000)]
    );
    // Still unowned later: the since stays, so the alert can count from it.
    assert_eq!(knowledge.assess(9_000).unowned[0].1, 2_000);
}

#[test]
fn partitions_are_being_handed_out_not_unread_until_the_consumer_first_joins() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 2)]));
    let assessment = knowledge.assess(2_000);
    assert_eq!(
        assessment.feeds[FEED].sight,
        Sight::Blind(Blindness::Starting)
    );
    assert!(assessment.unowned.is_empty());
    knowledge.observe_assignment(0, &partitions("orders", 1));
    assert_eq!(
        knowledge.assess(3_000).unowned,
        vec![(("orders".into(), 1), 3_000)]
    );
}

#[test]
fn a_consumer_with_nothing_while_partitions_stay_unread_is_stuck() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 1)]));
    knowledge.observe_assignment(0, &[]);
    knowledge.assess(2_000);
    assert!(!knowledge.stuck_without_partitions(2_999, 1_000));
    assert!(knowledge.stuck_without_partitions(3_000, 1_000));
    knowledge.observe_assignment(0, &partitions("orders", 1));
    assert!(
        !knowledge.stuck_without_partitions(9_000, 1_000),
        "it reads them now"
    );
}

#[test]
fn a_feed_is_known_through_the_earliest_moment_every_partition_was_read_to_its_end() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 2), ("other", 4)]));
    knowledge.observe_assignment(0, &partitions("orders", 2));
    assert_eq!(
        sight(&knowledge, 2_000),
        Sight::Blind(Blindness::Behind),
        "assigned, no statistics yet"
    );
    knowledge.observe_reads([(("orders".into(), 0), Some(5_000))]);
    assert_eq!(sight(&knowledge, 5_000), Sight::Blind(Blindness::Behind));
    knowledge.observe_reads([(("orders".into(), 1), Some(4_000))]);
    assert_eq!(sight(&knowledge, 5_000), Sight::Known { through_ms: 4_000 });
    knowledge.observe_reads([(("orders".into(), 1), None)]);
    assert_eq!(
        sight(&knowledge, 6_000),
        Sight::Blind(Blindness::Behind),
        "a backlog appeared"
    );
    assert!(knowledge.assess(6_000).unowned.is_empty());
}

#[test]
fn a_failed_request_blinds_at_once_not_after_a_grace() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 1)]));
    knowledge.observe_assignment(0, &partitions("orders", 1));
    knowledge.observe_reads([(("orders".into(), 0), Some(2_000))]);
    assert_eq!(sight(&knowledge, 2_000), Sight::Known { through_ms: 2_000 });
    knowledge.observe_source_failure(2_100);
    assert_eq!(
        sight(&knowledge, 2_100),
        Sight::Blind(Blindness::SourceDown)
    );
    assert_eq!(
        knowledge.own_reads(2_100),
        vec![(("orders".into(), 0), None)],
        "peers are told too"
    );
    knowledge.observe_source_success(2_200);
    knowledge.observe_reads([(("orders".into(), 0), Some(2_300))]);
    assert_eq!(
        sight(&knowledge, 2_300),
        Sight::Blind(Blindness::SourceDown),
        "answers again, but producers get the recovery grace to deliver what they queued"
    );
    assert_eq!(
        knowledge.own_reads(2_300),
        vec![(("orders".into(), 0), None)]
    );
    assert_eq!(
        sight(&knowledge, 2_800),
        Sight::Known { through_ms: 2_300 },
        "past the grace, what was read since the brokers answered counts"
    );
    knowledge.observe_source_failure(2_900);
    knowledge.observe_source_success(2_950);
    assert_eq!(
        sight(&knowledge, 3_500),
        Sight::Blind(Blindness::Behind),
        "the reads from before a failure never come back"
    );
    knowledge.observe_reads([(("orders".into(), 0), Some(3_500))]);
    assert_eq!(sight(&knowledge, 3_500), Sight::Known { through_ms: 3_500 });
}

#[test]
fn other_replicas_know_their_partitions_until_their_reports_stop() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 2)]));
    knowledge.observe_assignment(0, &partitions("orders", 2)[..1]);
    knowledge.observe_reads([(("orders".into(), 0), Some(5_000))]);
    assert_eq!(sight(&knowledge, 5_000), Sight::Blind(Blindness::Unowned));
    knowledge.observe_peer("peer", 4_500, vec![(("orders".into(), 1), Some(4_400))]);
    assert_eq!(sight(&knowledge, 5_000), Sight::Known { through_ms: 4_400 });
    knowledge.observe_peer("peer", 5_000, vec![(("orders".into(), 1), None)]);
    assert_eq!(
        sight(&knowledge, 5_000),
        Sight::Blind(Blindness::Behind),
        "the peer is reading a backlog"
    );
    // The peer dies: its last report ages past the TTL.
    assert_eq!(sight(&knowledge, 11_001), Sight::Blind(Blindness::Unowned));
    assert_eq!(knowledge.forget_dead_peers(11_001), vec!["peer".to_owned()]);
}

#[test]
fn knowledge_that_stopped_being_refreshed_is_no_knowledge() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 1)]));
    knowledge.observe_assignment(0, &partitions("orders", 1));
    knowledge.observe_reads([(("orders".into(), 0), Some(2_000))]);
    assert_eq!(
        sight(&knowledge, 12_000),
        Sight::Known { through_ms: 2_000 }
    );
    assert_eq!(sight(&knowledge, 12_001), Sight::Blind(Blindness::Stale));
}

#[test]
fn a_topic_with_no_partitions_is_known_through_the_metadata_that_said_so() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("other", 3)]));
    assert_eq!(sight(&knowledge, 1_500), Sight::Known { through_ms: 1_000 });
}

#[test]
fn tail_feeds_know_what_the_tail_rounds_read() {
    let knowledge = orders_knowledge(FeedMode::Tail);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 2)]));
    knowledge.observe_assignment(0, &[]);
    assert_eq!(
        sight(&knowledge, 1_000),
        Sight::Blind(Blindness::Behind),
        "not read yet; the consumer's assignment does not matter to a tail feed"
    );
    knowledge.observe_tail_round(2_000, partitions("orders", 2));
    assert_eq!(sight(&knowledge, 2_000), Sight::Known { through_ms: 2_000 });
    knowledge.observe_tail_failure(3_000);
    assert_eq!(
        sight(&knowledge, 3_000),
        Sight::Blind(Blindness::SourceDown)
    );
}

#[test]
fn reads_survive_the_trip_through_the_state_store() {
    let reads = vec![
        (("orders.v1".to_owned(), 0), Some(1_700_000_000_000)),
        (("a-b_c".to_owned(), 12), None),
    ];
    assert_eq!(decode_reads(&encode_reads(&reads)), Some(reads));
    assert_eq!(decode_reads(""), Some(Vec::new()));
    assert_eq!(decode_reads("orders:x=1"), None);
    assert_eq!(decode_reads("1700000000000:orders"), None);
}

#[test]
fn with_the_store_down_a_peers_partitions_are_unknown_not_unread() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 2)]));
    knowledge.observe_assignment(0, &partitions("orders", 2)[..1]);
    knowledge.observe_reads([(("orders".into(), 0), Some(5_000))]);
    knowledge.observe_peer("peer", 4_500, vec![(("orders".into(), 1), Some(4_400))]);
    assert!(!knowledge.peers_unknown(5_000));
    // Redis goes away: the peer's report can no longer be refreshed, and ages past the TTL.
    knowledge.observe_store_failure(5_100);
    assert!(
        knowledge.peers_unknown(5_100),
        "a sum over replicas is partial"
    );
    let assessment = knowledge.assess(11_001);
    assert_eq!(
        assessment.feeds[FEED].sight,
        Sight::Blind(Blindness::StoreDown)
    );
    assert!(
        assessment.unowned.is_empty(),
        "no partition is called unread"
    );
    assert!(
        !assessment.feeds[FEED].sight.pages_when_blind(),
        "FreshwatchStateStoreDown is the one page of this cause"
    );
    assert!(
        knowledge.forget_dead_peers(11_001).is_empty(),
        "a report that aged while nobody could publish says nothing of its replica"
    );
    // Back: the peer has a TTL to report again, and is unknown meanwhile.
    knowledge.observe_store_success(12_000);
    assert!(knowledge.peers_unknown(12_000));
    assert!(knowledge.assess(12_000).unowned.is_empty());
    knowledge.observe_reads([(("orders".into(), 0), Some(12_500))]);
    knowledge.observe_peer("peer", 12_500, vec![(("orders".into(), 1), Some(12_400))]);
    assert_eq!(
        sight(&knowledge, 12_500),
        Sight::Known { through_ms: 12_400 }
    );
    // Past the TTL after it came back, a peer that never reported again is gone: unread.
    assert!(!knowledge.peers_unknown(18_001));
    assert_eq!(knowledge.forget_dead_peers(19_000), vec!["peer".to_owned()]);
    let assessment = knowledge.assess(19_000);
    assert_eq!(
        assessment.feeds[FEED].sight,
        Sight::Blind(Blindness::Unowned)
    );
    assert_eq!(assessment.unowned.len(), 1);
}

#[test]
fn a_replica_says_it_read_through_a_moment_only_once_it_flushed_what_it_read_before() {
    let knowledge = orders_knowledge(FeedMode::Consume);
    knowledge.observe_metadata(1_000, metadata(1_000, &[("orders", 1)]));
    knowledge.observe_assignment(0, &partitions("orders", 1));
    knowledge.observe_reads([(("orders".into(), 0), Some(2_000))]);
    assert_eq!(
        knowledge.shared_reads(2_000),
        vec![(("orders".into(), 0), None)],
        "nothing flushed yet: nothing read through"
    );
    knowledge.observe_flushed(1_900);
    assert_eq!(
        knowledge.shared_reads(2_000),
        vec![(("orders".into(), 0), Some(1_900))]
    );
    knowledge.observe_flushed(2_100);
    assert_eq!(
        knowledge.shared_reads(2_100),
        vec![(("orders".into(), 0), Some(2_000))]
    );
    assert_eq!(
        sight(&knowledge, 2_100),
        Sight::Known { through_ms: 2_000 },
        "its own judgement reads its memory"
    );
}

#[test]
fn records_teach_a_known_feed_and_one_behind_for_a_moment_but_not_a_backlog_or_an_outage() {
    let sight = |sight: Sight, blind_since_ms: Option<i64>| FeedSight {
        sight,
        blind_since_ms,
    };
    let known = sight(Sight::Known { through_ms: 1_000 }, None);
    assert!(known.learns(false, 1_000));
    let behind = sight(Sight::Blind(Blindness::Behind), Some(10_000));
    assert!(
        behind.learns(true, 20_000),
        "a statistics snapshot just after records arrived"
    );
    assert!(
        !behind.learns(true, 10_000 + LEARN_THROUGH_BEHIND_MS),
        "behind this long is a backlog"
    );
    assert!(
        !behind.learns(false, 20_000),
        "a restart's catch-up: it was never known"
    );
    let down = sight(Sight::Blind(Blindness::SourceDown), Some(10_000));
    assert!(!down.learns(true, 10_001));
    let starting = sight(Sight::Blind(Blindness::Starting), Some(0));
    assert!(!starting.learns(true, 1));
}
