//! The own client against librdkafka's mock cluster: many groups read through one connection,
//! a group with no commit reads -1, a refused group fails alone, a coordinator that moved is
//! looked up again within the round, and watermarks come back per partition.

use std::collections::BTreeMap;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;

use super::*;

fn client(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> WireClient {
    let mut client = WireClient::new("wire-test");
    // The mock cluster's one broker is node 1.
    client.set_brokers(BTreeMap::from([(1, cluster.bootstrap_servers())]));
    client
}

fn ask(group_id: &str) -> GroupAsk {
    GroupAsk {
        group_id: group_id.to_owned(),
        topics: vec![("orders".to_owned(), 3)],
    }
}

#[test]
fn many_groups_read_through_one_connection_with_minus_one_for_no_commit_and_a_refused_group_alone()
{
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("orders", 3, 1).expect("a topic");
    let mut wire = client(&cluster);
    let groups = PIPELINE * 3 + 7;
    let commits: Vec<GroupCommit> = (0..groups)
        .map(|group| {
            let offset = i64::try_from(group).expect("small");
            (
                format!("g-{group}"),
                vec![("orders".to_owned(), vec![(0, offset), (2, offset + 1)])],
            )
        })
        .collect();
    for result in wire.commit(&commits) {
        result.expect("committed");
    }
    let mut asks: Vec<GroupAsk> = (0..groups)
        .map(|group| ask(&format!("g-{group}")))
        .collect();
    asks.push(ask("never-existed"));
    let results = wire.committed(&asks);
    for (group, result) in results.iter().take(groups).enumerate() {
        let offset = i64::try_from(group).expect("small");
        let expected: BTreeMap<i32, i64> = [(0, offset), (1, -1), (2, offset + 1)].into();
        assert_eq!(
            result.as_ref().expect("read")["orders"],
            expected,
            "g-{group}"
        );
    }
    let missing = results[groups].as_ref().expect("a missing group reads");
    assert!(missing["orders"].values().all(|offset| *offset == -1));
    // Coordinators are cached: the second round asks no FindCoordinator.
    let found = wire.sent.find_coordinator;
    assert_eq!(found, groups as u64 + 1);

    let refused = [ask("g-1"), ask("g-2")];
    cluster.request_errors(
        RDKafkaApiKey::OffsetFetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
    );
    let results = wire.committed(&refused);
    assert!(
        matches!(results[0], Err(WireError::Broker { code: 30, .. })),
        "{:?}",
        results[0]
    );
    assert_eq!(
        results[1].as_ref().expect("the other group is read")["orders"][&0],
        2
    );
    assert_eq!(wire.sent.find_coordinator, found);

    // A coordinator that moved is looked up again and asked once more in the same round.
    cluster.request_errors(
        RDKafkaApiKey::OffsetFetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR],
    );
    let again = wire.committed(&refused);
    assert_eq!(
        again[0].as_ref().expect("read after a new lookup")["orders"][&0],
        1
    );
    assert_eq!(wire.sent.find_coordinator, found + 1);
}

#[test]
fn watermarks_come_per_partition_and_a_dead_broker_fails_the_call() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("orders", 2, 1).expect("a topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("a producer");
    for _ in 0..5 {
        producer
            .send(BaseRecord::to("orders").partition(1).key("k").payload("{}"))
            .expect("queued");
    }
    producer
        .flush(std::time::Duration::from_secs(10))
        .expect("flushed");
    let mut wire = client(&cluster);
    let (lows, highs) = wire
        .watermarks(&[("orders", 0, 1), ("orders", 1, 1), ("orders", 2, -1)])
        .expect("watermarks");
    assert_eq!(highs[&("orders".to_owned(), 1)], 5);
    assert_eq!(highs[&("orders".to_owned(), 0)], 0);
    assert_eq!(lows[&("orders".to_owned(), 1)], 0);
    assert!(
        !highs.contains_key(&("orders".to_owned(), 2)),
        "no leader: not asked"
    );

    cluster.broker_down(1).expect("down");
    assert!(wire.watermarks(&[("orders", 1, 1)]).is_err());
    cluster.broker_up(1).expect("up");
    let (_, highs) = wire.watermarks(&[("orders", 1, 1)]).expect("back");
    assert_eq!(highs[&("orders".to_owned(), 1)], 5);
}
