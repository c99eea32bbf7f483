//! A Kafka-protocol broker process for the benchmarks under `bench/`: librdkafka's mock cluster,
//! preloaded with ~300-byte profile updates (the same shape as `benches/hot_path.rs`).
//!
//! `cargo run --release --example mock_broker -- --records 5000000 --partitions 512`
//!
//! Prints `bootstrap=HOST:PORT topic=T records=N` once loaded, where N is what the broker really
//! holds (the mock cluster keeps ~4-5 MB per partition and silently drops older data, so data is
//! spread over many partitions and counted from the watermarks). Serves until stdin closes.

use std::io::Read;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

struct Options {
    topic: String,
    partitions: i32,
    records: usize,
    tenants: usize,
    /// Newest record's `updated_at` is this far in the past (0: now).
    age_ms: i64,
}

fn parse_options() -> Options {
    let mut options = Options {
        topic: "cdp.profile-updates".into(),
        partitions: 512,
        records: 5_000_000,
        tenants: 10_000,
        age_ms: 0,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let value = arguments
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--topic" => options.topic = value,
            "--partitions" => options.partitions = number(&flag, &value),
            "--records" => options.records = number(&flag, &value),
            "--tenants" => options.tenants = number(&flag, &value),
            "--age-ms" => options.age_ms = number(&flag, &value),
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"))
}

/// A realistic external profile update; the tenant is not the first field.
fn profile_update(index: usize, tenant: usize, updated_at_ms: i64) -> String {
    format!(
        r#"{{"profile_id":"p-{index:08}","email":"user{index}@example.com","name":"Zoë \"Z\" Müller","source":"crm-sync","locale":"de-DE","ip":"203.0.113.7","consent":{{"email":true,"sms":false}},"attributes":{{"plan":"pro","country":"DE","score":{score},"tags":["a","b"]}},"tenant_id":"tenant-{tenant:05}","updated_at":{updated_at_ms},"version":3}}"#,
        score = index % 97,
    )
}

fn main() {
    let options = parse_options();
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(&options.topic, options.partitions, 1)
        .expect("topic");
    let bootstrap = cluster.bootstrap_servers();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let started = Instant::now();
    let newest_ms = chrono::Utc::now().timestamp_millis() - options.age_ms;
    let records = options.records;
    for index in 0..records {
        let tenant = index % options.tenants;
        let updated_at_ms = newest_ms - (records - 1 - index) as i64 / 1000;
        let payload = profile_update(index, tenant, updated_at_ms);
        let key = format!("tenant-{tenant:05}");
        let partition = (index % options.partitions as usize) as i32;
        let mut record = BaseRecord::to(&options.topic)
            .key(&key)
            .payload(&payload)
            .partition(partition)
            .timestamp(updated_at_ms);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if index % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let load_seconds = started.elapsed().as_secs_f64();

    let counter: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "mock-broker-count")
        .create()
        .expect("consumer");
    let mut held = 0i64;
    for partition in 0..options.partitions {
        let (low, high) = counter
            .fetch_watermarks(&options.topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        held += high - low;
    }
    eprintln!(
        "loaded {records} records in {load_seconds:.1}s; the broker holds {held} over {} partitions",
        options.partitions
    );
    println!(
        "bootstrap={bootstrap} topic={} records={held}",
        options.topic
    );
    // Serve until whoever started us closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
}
