//! Scale figures for BENCHMARKS.md: memory per tracked series at 1M split keys, evaluation tick
//! time with 1M series of which 1% cross a threshold, and the state flush rate to a real Redis.
//!
//! `cargo run --release --example scale -- [KEYS] [REDIS_URL]` (bench/scale.sh starts Redis).

use std::sync::Arc;
use std::time::{Duration, Instant};

use freshwatch::config::{FeedConfig, FeedMode, SplitRule, TimestampRule, TopicMatcher};
use freshwatch::evaluate::Evaluator;
use freshwatch::model::Status;
use freshwatch::state::{RedisStore, SeriesRecord};
use freshwatch::tracker::Tracker;

const NOW_MS: i64 = 1_764_547_200_000;
const WARN_MS: i64 = 60_000;

fn feed(keys: usize) -> FeedConfig {
    FeedConfig {
        name: Arc::from("profiles"),
        topics: TopicMatcher::Exact("t".into()),
        split: Some(SplitRule::Key),
        timestamp: TimestampRule::Record,
        warn_after: Duration::from_millis(WARN_MS as u64),
        critical_after: Duration::from_millis(2 * WARN_MS as u64),
        expected: vec![],
        mode: FeedMode::Consume,
        max_keys: keys,
        max_key_bytes: 256,
        hold: Duration::ZERO,
        rollup_after: 20,
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn key(index: usize) -> String {
    format!("tenant-{index:010}")
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let keys: usize = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let redis_url = arguments.next();
    let feeds = [feed(keys)];

    // Memory: RSS growth per series beyond the key bytes.
    let before = rss_bytes();
    let mut tracker = Tracker::new(&feeds, NOW_MS - 10 * WARN_MS);
    let crossing = keys / 100;
    let mut key_bytes = 0usize;
    for index in 0..keys {
        let name = key(index);
        key_bytes += name.len();
        let last_seen = if index < crossing {
            NOW_MS - WARN_MS
        } else {
            NOW_MS - 1_000
        };
        tracker.observe(0, name.as_bytes(), last_seen);
    }
    let mut evaluator = Evaluator::new(&feeds);
    let first_tick = Instant::now();
    evaluator.tick(&mut tracker, NOW_MS - 1_000);
    let first_tick = first_tick.elapsed();
    let after = rss_bytes();
    let per_series = (after.saturating_sub(before) as f64 - key_bytes as f64) / keys as f64;
    println!("series {keys}");
    println!("rss_growth_bytes {}", after.saturating_sub(before));
    println!("key_bytes {key_bytes}");
    println!("bytes_per_series_beyond_key {per_series:.1}");
    println!("first_tick_ms {:.1}", first_tick.as_secs_f64() * 1000.0);

    // Tick with 1% crossing, and with none.
    let started = Instant::now();
    let transitions = evaluator.tick(&mut tracker, NOW_MS);
    let crossing_tick = started.elapsed();
    assert_eq!(transitions.len(), crossing);
    println!(
        "tick_ms_1pct_crossing {:.3}",
        crossing_tick.as_secs_f64() * 1000.0
    );
    let started = Instant::now();
    let transitions = evaluator.tick(&mut tracker, NOW_MS + 1);
    let idle_tick = started.elapsed();
    assert!(transitions.is_empty());
    println!(
        "tick_ms_none_crossing {:.3}",
        idle_tick.as_secs_f64() * 1000.0
    );

    // State flush to a real Redis, as the flush loop writes after a burst.
    let Some(redis_url) = redis_url else {
        println!("redis_flush skipped (no REDIS_URL)");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = RedisStore::connect(&redis_url, "freshwatch-bench")
            .await
            .expect("redis");
        let records: Vec<SeriesRecord> = (0..keys)
            .map(|index| SeriesRecord {
                feed: Arc::from("profiles"),
                key: key(index).into_bytes(),
                last_seen_ms: Some(NOW_MS - 1_000),
                status: Some((Status::Ok, NOW_MS)),
            })
            .collect();
        let started = Instant::now();
        for chunk in records.chunks(10_000) {
            store.write(chunk, None).await.expect("flush");
        }
        let elapsed = started.elapsed();
        println!(
            "redis_flush_updates_per_s {:.0}",
            keys as f64 / elapsed.as_secs_f64()
        );
    });
}
