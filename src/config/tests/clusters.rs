//! `[[cluster]]`: several Kafka clusters, and `[kafka]` as the one named `default`.

use super::*;

/// Two clusters, `eu` and `dr`, and a feed on each: the issue's example.
const TWO: &str = r#"
[[cluster]]
name = "eu"
brokers = "kafka-eu:9092"
group_id = "freshwatch"
properties = { "security.protocol" = "SASL_SSL" }
[[cluster]]
name = "dr"
brokers = "kafka-dr:9092"
tail_interval = "2s"
[[feed]]
name = "orders"
cluster = "eu"
topic = "orders"
[[feed]]
name = "orders-dr"
cluster = "dr"
topic = "eu.orders"
"#;

#[test]
fn clusters_take_every_kafka_key_and_each_feed_is_on_the_cluster_it_names() {
    let config = parse_with(TWO, &[]).unwrap();
    assert!(config.named_clusters);
    let names: Vec<&str> = config.clusters.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["eu", "dr"]);
    assert_eq!(config.clusters[0].kafka.brokers, "kafka-eu:9092");
    assert_eq!(
        config.clusters[0].kafka.properties["security.protocol"],
        "SASL_SSL"
    );
    assert_eq!(config.clusters[1].kafka.group_id, "freshwatch");
    assert_eq!(
        config.clusters[1].kafka.tail_interval,
        Duration::from_secs(2)
    );
    assert_eq!(config.feed_clusters, [0, 1]);
    assert_eq!(config.kafka.brokers, "kafka-eu:9092", "the first cluster's");
}

#[test]
fn kafka_alone_is_one_unlabelled_cluster_named_default() {
    let config = parse_with(MINIMAL, &[]).unwrap();
    assert!(!config.named_clusters);
    assert_eq!(config.clusters.len(), 1);
    assert_eq!(&*config.clusters[0].name, DEFAULT_CLUSTER);
    assert_eq!(config.clusters[0].kafka.brokers, "k:9092");
    assert_eq!(config.feed_clusters, [0]);
    let described = describe(&config);
    assert!(described.contains("kafka: brokers=k:9092"), "{described}");
    assert!(!described.contains("clusters ("), "{described}");
    let named = parse_with(&with_feed("topic = \"a\"\ncluster = \"default\""), &[]).unwrap();
    assert_eq!(named.feed_clusters, [0]);
}

#[test]
fn kafka_and_cluster_tables_together_are_refused() {
    let error = error_of(&format!("{KAFKA}{TWO}"));
    assert!(error.starts_with("cluster: "), "{error}");
    assert!(error.contains("cannot be used together"), "{error}");
}

#[test]
fn neither_kafka_nor_cluster_tables_is_refused_as_before() {
    let error = error_of("[[feed]]\nname = \"a\"\ntopic = \"a\"\n");
    assert!(error.contains("missing field `kafka`"), "{error}");
}

#[test]
fn with_cluster_tables_every_feed_and_group_names_its_cluster() {
    let feed_without = TWO.replace("cluster = \"dr\"\n", "");
    let error = error_of(&feed_without);
    assert!(error.starts_with("feed[1].cluster: is required"), "{error}");
    assert!(error.contains("\"eu\", \"dr\""), "{error}");
    let group_without = format!("{TWO}[[group]]\ngroup_id = \"billing\"\n");
    let error = error_of(&group_without);
    assert!(
        error.starts_with("group[0].cluster: is required"),
        "{error}"
    );
}

#[test]
fn a_cluster_key_must_name_a_cluster() {
    let error = error_of(&TWO.replace("cluster = \"dr\"", "cluster = \"us\""));
    assert!(
        error.starts_with("feed[1].cluster: no [[cluster]] is named \"us\""),
        "{error}"
    );
    let error = error_of(&with_feed("topic = \"a\"\ncluster = \"eu\""));
    assert!(
        error.starts_with("feed[0].cluster: no cluster is named \"eu\""),
        "{error}"
    );
    assert!(error.contains("\"default\""), "{error}");
    let error = error_of(&format!(
        "{TWO}[[group]]\ngroup_id = \"billing\"\ncluster = \"us\"\n"
    ));
    assert!(
        error.starts_with("group[0].cluster: no [[cluster]]"),
        "{error}"
    );
}

#[test]
fn cluster_names_are_unique_plain_labels() {
    let error = error_of(&TWO.replace("name = \"dr\"", "name = \"eu\""));
    assert!(
        error.starts_with("cluster[1].name: duplicate cluster name \"eu\""),
        "{error}"
    );
    let error = error_of(&TWO.replace("name = \"dr\"", "name = \"d r\""));
    assert!(error.starts_with("cluster[1].name: must be"), "{error}");
    let error = error_of(&TWO.replace("name = \"dr\"", "name = \"\""));
    assert!(
        error.starts_with("cluster[1].name: must not be empty"),
        "{error}"
    );
}

#[test]
fn a_cluster_is_checked_as_kafka_is_with_its_own_key_path() {
    let error = error_of(&TWO.replace("brokers = \"kafka-dr:9092\"", "brokers = \"\""));
    assert_eq!(error, "cluster[1].brokers: must not be empty");
    let error = error_of(&TWO.replace("tail_interval = \"2s\"", "tail_interval = \"10ms\""));
    assert_eq!(error, "cluster[1].tail_interval: must be at least 100ms");
    let error = error_of(&TWO.replace(
        "properties = { \"security.protocol\" = \"SASL_SSL\" }",
        "properties = { \"group.id\" = \"x\" }",
    ));
    assert!(
        error.starts_with("cluster[0].properties.\"group.id\": is set by freshwatch"),
        "{error}"
    );
    let error = error_of(&TWO.replace("tail_interval = \"2s\"", "bogus = 1"));
    assert!(error.starts_with("cluster[1]"), "{error}");
    assert!(error.contains("bogus"), "{error}");
}

#[test]
fn names_stay_unique_across_clusters() {
    let error = error_of(&TWO.replace("name = \"orders-dr\"", "name = \"orders\""));
    assert!(
        error.starts_with("feed[1].name: duplicate feed name"),
        "{error}"
    );
    let error = error_of(&format!(
        "{TWO}[[group]]\ngroup_id = \"mirror\"\ncluster = \"eu\"\n[[group]]\ngroup_id = \"mirror\"\ncluster = \"dr\"\n"
    ));
    assert!(
        error.starts_with("group[1].name: duplicate group name \"mirror\""),
        "{error}"
    );
    assert!(error.contains("cluster \"eu\""), "{error}");
    let named = parse_with(
        &format!("{TWO}[[group]]\ngroup_id = \"mirror\"\ncluster = \"eu\"\n[[group]]\nname = \"mirror-dr\"\ngroup_id = \"mirror\"\ncluster = \"dr\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(named.group_clusters, [0, 1]);
}

#[test]
fn one_topic_name_is_read_on_one_cluster_only() {
    let error = error_of(&TWO.replace("topic = \"eu.orders\"", "topic = \"orders\""));
    assert!(
        error.starts_with("feed[1].topic: topic \"orders\" is also read on cluster \"eu\""),
        "{error}"
    );
}

#[test]
fn a_cluster_view_reads_only_its_own_feeds_and_groups_at_their_places() {
    let config = parse_with(
        &format!("{TWO}[[group]]\ngroup_id = \"billing\"\ncluster = \"dr\"\n"),
        &[],
    )
    .unwrap();
    let dr = config.for_cluster(1);
    assert_eq!(dr.kafka.brokers, "kafka-dr:9092");
    assert_eq!(dr.feeds.len(), 2, "feed indexes are the tracker's");
    assert!(!dr.feeds[0].topics.matches("orders"));
    assert!(dr.feeds[1].topics.matches("eu.orders"));
    assert_eq!(dr.groups.len(), 1);
    let eu = config.for_cluster(0);
    assert!(eu.feeds[0].topics.matches("orders"));
    assert!(!eu.feeds[1].topics.matches("eu.orders"));
    assert!(eu.groups.is_empty());
}

#[test]
fn check_config_prints_each_cluster_with_what_it_watches() {
    let config = parse_with(
        &format!("{TWO}[[group]]\ngroup_id = \"billing\"\ncluster = \"dr\"\n"),
        &[],
    )
    .unwrap();
    let described = describe(&config);
    assert!(described.contains("clusters (2):"), "{described}");
    assert!(
        described.contains("  eu: brokers=kafka-eu:9092 group_id=freshwatch start=earliest properties=1 feeds=[orders] groups=[]"),
        "{described}"
    );
    assert!(
        described.contains("  dr: brokers=kafka-dr:9092 group_id=freshwatch start=earliest properties=0 feeds=[orders-dr] groups=[billing]"),
        "{described}"
    );
    assert!(!described.contains("kafka: brokers"), "{described}");
}
