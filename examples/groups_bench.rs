//! What watching consumer groups costs: 1,000 partitions across 50 watched groups on the mock
//! cluster, a release `freshwatch run` at `groups_interval = "5s"` in a process of its own, and
//! a tenth of the commits moving every interval. Prints the watcher's CPU per minute and per
//! round (from /proc, freshwatch's process only) and its requests per round.
//!
//! `cargo run --release --example groups_bench -- [seconds] [path/to/freshwatch]`

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const GROUPS: usize = 50;
const PARTITIONS_PER_GROUP: i32 = 20;

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("freshwatch runs");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `/metrics`, or nothing while freshwatch does not listen yet.
fn scrape(port: u16) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut stream, &mut body).unwrap();
    body
}

fn commit(consumer: &BaseConsumer, topic: &str, partition: i32, offset: i64) {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args
        .next()
        .map_or(60, |text| text.parse().expect("seconds"));
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/freshwatch".to_owned());
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let mut committers = Vec::new();
    for group in 0..GROUPS {
        let topic = format!("bench.topic-{group}");
        cluster
            .create_topic(&topic, PARTITIONS_PER_GROUP, 1)
            .unwrap();
        for partition in 0..PARTITIONS_PER_GROUP {
            for _ in 0..3 {
                producer
                    .send(
                        BaseRecord::to(&topic)
                            .partition(partition)
                            .key("k")
                            .payload("{}"),
                    )
                    .unwrap();
            }
        }
        let committer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("bench-group-{group}"))
            .create()
            .unwrap();
        for partition in 0..PARTITIONS_PER_GROUP {
            commit(&committer, &topic, partition, 1);
        }
        committers.push((topic, committer));
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let directory =
        std::env::temp_dir().join(format!("freshwatch-groups-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ngroups_interval = \"5s\"\n[state]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[evaluation]\ninterval = \"5s\"\n",
        directory.join("state").display()
    );
    for group in 0..GROUPS {
        config.push_str(&format!(
            "[[group]]\ngroup_id = \"bench-group-{group}\"\ntopics = [\"bench.topic-{group}\"]\n"
        ));
    }
    let config_path = directory.join("freshwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("{binary}: {error} (build it with cargo build --release)"));
    // Warm up: the first rounds read every first unread record and every retention.
    let warm = Instant::now();
    while metric_sum(&scrape(port), "freshwatch_group_watch_rounds_total") < 2.0 {
        assert!(warm.elapsed() < Duration::from_secs(60), "no rounds");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = scrape(port);
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let mut next_offset = 2;
    while started.elapsed() < Duration::from_secs(seconds) {
        // A tenth of the commits move every interval: those records are fetched again.
        for (topic, committer) in committers.iter().take(GROUPS / 10) {
            for partition in 0..PARTITIONS_PER_GROUP {
                commit(committer, topic, partition, next_offset.min(3));
            }
        }
        next_offset += 1;
        if next_offset > 3 {
            next_offset = 1;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let after = scrape(port);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&directory);
    let rounds = metric_sum(&after, "freshwatch_group_watch_rounds_total")
        - metric_sum(&before, "freshwatch_group_watch_rounds_total");
    println!(
        "groups: {GROUPS} groups, {} partitions, groups_interval 5s, {elapsed:.0} s measured",
        GROUPS as i32 * PARTITIONS_PER_GROUP
    );
    println!(
        "cpu: {:.2} s per minute, {:.1} ms per round ({rounds} rounds)",
        cpu * 60.0 / elapsed,
        cpu * 1000.0 / rounds.max(1.0)
    );
    for kind in [
        "offset_fetch",
        "describe_group",
        "list_offsets",
        "fetch",
        "metadata",
        "describe_configs",
    ] {
        let prefix = format!("freshwatch_group_watch_requests_total{{kind=\"{kind}\"}}");
        let requests = metric_sum(&after, &prefix) - metric_sum(&before, &prefix);
        println!(
            "requests per round, {kind}: {:.1}",
            requests / rounds.max(1.0)
        );
    }
    drop(cluster);
}
