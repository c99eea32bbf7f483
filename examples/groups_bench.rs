//! What watching consumer groups costs: WATCHED_GROUPS watched groups over TOPICS topics of
//! PARTITIONS_PER_TOPIC partitions (topic t is watched by group t % WATCHED_GROUPS) on the mock
//! cluster (in this process), a release `freshwatch run` in a process of its own at
//! `groups_interval = INTERVAL_SECONDS`, and MOVING_PERCENT of the groups' commits moving every
//! interval. Prints freshwatch's CPU per minute and per round (from /proc, freshwatch's process
//! only), its RSS, its round time and its requests per round.
//!
//! `cargo run --release --example groups_bench -- [seconds] [path/to/freshwatch]`, sized by
//! `WATCHED_GROUPS` (default 50), `TOPICS` (as many as groups), `PARTITIONS_PER_TOPIC` (20),
//! `INTERVAL_SECONDS` (5) and `MOVING_PERCENT` (10) in the environment.
//!
//! Up to 1,000 topics are created with the mock cluster's `create_topic`; beyond, that call
//! hangs now and then (librdkafka 2.12.1), so topics are created the way the mock cluster
//! creates them for a producer: on first use, with its default of 4 partitions
//! (PARTITIONS_PER_TOPIC must then be 4). A producer looks each record's topic up in a linked
//! list, so each producer sends to at most [`TOPICS_PER_PRODUCER`] topics: one producer for
//! 25,000 topics took 18 minutes.
//!
//! Commits are set with the watcher's own client (`freshwatch::groups::wire::WireClient::commit`,
//! plain OffsetCommit requests as an outsider, pipelined), not a consumer per group.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use freshwatch::groups::wire::{GroupCommit, WireClient};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Records produced to each partition; the bench commits between 1 and this.
const RECORDS: i64 = 3;

/// Topics one producer sends to (see the module's doc).
const TOPICS_PER_PRODUCER: u64 = 500;

/// Partitions one producer sends to, at most: a librdkafka producer's broker thread visits
/// every partition it holds on each wake-up, and one over 50,000 partitions (500 topics of 100)
/// could not flush 150,000 records in 120 s.
const PARTITIONS_PER_PRODUCER: u64 = 2_000;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |text| text.parse().expect(name))
}

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

/// VmRSS of `pid`, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("freshwatch runs");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
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

fn topic(index: u64) -> String {
    format!("bench.topic-{index}")
}

/// The shape of the bench: which topics each group watches.
struct Layout {
    groups: u64,
    topics: u64,
    partitions: i32,
}

impl Layout {
    /// Topic t is watched by group t % groups; with fewer topics than groups, group g
    /// watches topic g % topics (several groups read each topic).
    fn topics_of(&self, group: u64) -> impl Iterator<Item = u64> {
        let first = if self.topics >= self.groups {
            group
        } else {
            group % self.topics
        };
        (first..self.topics).step_by(usize::try_from(self.groups).unwrap())
    }
}

/// Commits `offset` on every partition of each group in `groups`, through one client.
fn commit(
    client: &mut WireClient,
    layout: &Layout,
    groups: impl Iterator<Item = u64>,
    offset: i64,
) {
    let commits: Vec<GroupCommit> = groups
        .map(|group| {
            let topics = layout
                .topics_of(group)
                .map(|index| {
                    let partitions = (0..layout.partitions).map(|p| (p, offset)).collect();
                    (topic(index), partitions)
                })
                .collect();
            (format!("bench-group-{group}"), topics)
        })
        .collect();
    for result in client.commit(&commits) {
        result.expect("committed");
    }
}

fn main() {
    let groups = setting("WATCHED_GROUPS", 50);
    let layout = Layout {
        groups,
        topics: setting("TOPICS", groups),
        partitions: i32::try_from(setting("PARTITIONS_PER_TOPIC", 20)).expect("partitions"),
    };
    let partitions = layout.partitions;
    // Beyond 1,000 topics of the mock cluster's default width, created on first use (see the
    // module's doc); other widths are always created with `create_topic`.
    let created_on_first_use = layout.topics > 1_000 && partitions == 4;
    let interval = setting("INTERVAL_SECONDS", 5);
    let moving = (groups * setting("MOVING_PERCENT", 10) / 100).max(1);
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args
        .next()
        .map_or(60, |text| text.parse().expect("seconds"));
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/freshwatch".to_owned());
    let setup = Instant::now();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    if !created_on_first_use {
        for index in 0..layout.topics {
            cluster.create_topic(&topic(index), partitions, 1).unwrap();
            if index % 1_000 == 999 {
                eprintln!(
                    "created {} topics in {:.0} s",
                    index + 1,
                    setup.elapsed().as_secs_f64()
                );
            }
        }
    }
    let topics_per_producer = TOPICS_PER_PRODUCER
        .min((PARTITIONS_PER_PRODUCER / u64::from(partitions.unsigned_abs())).max(1));
    let mut producer: Option<BaseProducer> = None;
    for index in 0..layout.topics {
        if index % topics_per_producer == 0 {
            if let Some(done) = producer.take() {
                done.flush(Duration::from_secs(600)).unwrap();
            }
        }
        let sender = producer.get_or_insert_with(|| {
            ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("linger.ms", "50")
                .create()
                .unwrap()
        });
        for partition in 0..partitions {
            for _ in 0..RECORDS {
                loop {
                    match sender.send(
                        BaseRecord::to(&topic(index))
                            .partition(partition)
                            .key("k")
                            .payload("{}"),
                    ) {
                        Ok(()) => break,
                        Err(_) => sender.poll(Duration::from_millis(10)),
                    };
                }
            }
        }
        sender.poll(Duration::ZERO);
    }
    if let Some(done) = producer.take() {
        done.flush(Duration::from_secs(600)).unwrap();
    }
    // The mock cluster's one broker is node 1.
    let mut committer = WireClient::new("groups-bench");
    committer.set_brokers(BTreeMap::from([(1, brokers.clone())]));
    // Caught up at first: the rounds before the measure read no record; the moving commits do.
    commit(&mut committer, &layout, 0..groups, RECORDS);
    let total_partitions = layout.topics * partitions as u64;
    eprintln!(
        "set up {groups} groups over {total_partitions} partitions in {:.0} s",
        setup.elapsed().as_secs_f64()
    );

    let directory =
        std::env::temp_dir().join(format!("freshwatch-groups-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ngroups_interval = \"{interval}s\"\n[state]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[evaluation]\ninterval = \"5s\"\n",
        directory.join("state").display()
    );
    for group in 0..groups {
        let topics: Vec<String> = layout
            .topics_of(group)
            .map(|index| format!("\"{}\"", topic(index)))
            .collect();
        config.push_str(&format!(
            "[[group]]\ngroup_id = \"bench-group-{group}\"\ntopics = [{}]\n",
            topics.join(", ")
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
    // Warm up: the first round looks every coordinator up and reads every retention.
    let warm = Instant::now();
    while metric_sum(&scrape(port), "freshwatch_group_watch_rounds_total") < 2.0 {
        assert!(
            warm.elapsed() < Duration::from_secs(20 * interval + 120),
            "no rounds"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = scrape(port);
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let mut next_offset = 1;
    let mut moved_batch = 0;
    let mut rss_max: f64 = 0.0;
    let mut round_max: f64 = 0.0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let tick = Instant::now();
        // A fraction of the groups' commits move every interval: those records are read again.
        let first = (moved_batch * moving) % groups;
        commit(
            &mut committer,
            &layout,
            (first..first + moving).map(|group| group % groups),
            next_offset,
        );
        next_offset = if next_offset >= RECORDS {
            1
        } else {
            next_offset + 1
        };
        if next_offset == 1 {
            moved_batch += 1;
        }
        rss_max = rss_max.max(rss_mb(child.id()));
        round_max = round_max.max(metric_sum(
            &scrape(port),
            "freshwatch_group_watch_last_round_seconds",
        ));
        std::thread::sleep(Duration::from_secs(interval).saturating_sub(tick.elapsed()));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let rss_end = rss_mb(child.id());
    let after = scrape(port);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&directory);
    let delta = |prefix: &str| metric_sum(&after, prefix) - metric_sum(&before, prefix);
    let rounds = delta("freshwatch_group_watch_rounds_total");
    let round_seconds = delta("freshwatch_group_watch_round_seconds_total");
    println!(
        "groups: {groups} groups, {} topics, {total_partitions} partitions, groups_interval {interval}s, {moving} groups' commits moving each interval, {elapsed:.0} s measured",
        layout.topics
    );
    println!(
        "cpu: {:.2} s per minute, {:.1} ms per round ({rounds} rounds)",
        cpu * 60.0 / elapsed,
        cpu * 1000.0 / rounds.max(1.0)
    );
    println!("rss: {rss_end:.0} MB at the end, {rss_max:.0} MB at most (sampled each interval)");
    println!(
        "round: {:.2} s on average, {round_max:.2} s at most (sampled each interval)",
        round_seconds / rounds.max(1.0)
    );
    println!(
        "records at moved commits left for a later round: {}",
        delta("freshwatch_group_first_unread_deferred_total")
    );
    for kind in [
        "offset_fetch",
        "find_coordinator",
        "list_groups",
        "describe_group",
        "list_offsets",
        "fetch",
        "metadata",
        "describe_configs",
    ] {
        let requests = delta(&format!(
            "freshwatch_group_watch_requests_total{{kind=\"{kind}\"}}"
        ));
        println!(
            "requests per round, {kind}: {:.1}",
            requests / rounds.max(1.0)
        );
    }
    drop(cluster);
}
