//! Scale figures for BENCHMARKS.md: memory per tracked series at 1M split keys (on a feed with
//! `thresholds = "learned"`, so each series carries its cadence summary), evaluation tick
//! time with 1M series of which 1% cross a threshold, the consume rate while `/metrics` is
//! scraped back to back, and with a real Redis the state flush rate (into an empty store, then
//! over what the first flush stored) and a replica's reload (whole, then of 1,000 changes).
//!
//! `cargo run --release --example scale -- [KEYS] [REDIS_URL]` (bench/scale.sh starts Redis);
//! `SCALE_THRESHOLDS=fixed` measures a fixed-threshold feed instead, `SCALE_THRESHOLDS=learned_by_hour`
//! a learned feed with `learn_by_hour = true` (each key also keeps its own hours of the day).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freshwatch::config::FeedConfig;
use freshwatch::evaluate::Evaluator;
use freshwatch::model::Status;
use freshwatch::state::{ChangeCursor, RedisStore, SeriesRecord};
use freshwatch::tracker::Tracker;

const NOW_MS: i64 = 1_764_547_200_000;
const WARN_MS: i64 = 60_000;

fn feed(keys: usize) -> FeedConfig {
    let thresholds = std::env::var("SCALE_THRESHOLDS").unwrap_or_else(|_| "learned".into());
    let learning = match thresholds.as_str() {
        "fixed" => "",
        "learned_by_hour" => "thresholds = \"learned\"\nwarn_after_min = \"10s\"\ncritical_after_min = \"20s\"\nlearn_by_hour = true",
        _ => "thresholds = \"learned\"\nwarn_after_min = \"10s\"\ncritical_after_min = \"20s\"",
    };
    let text = format!(
        r#"
        [kafka]
        brokers = "localhost:9092"
        [[feed]]
        name = "profiles"
        topic = "t"
        split_by = "key"
        warn_after = "{WARN_MS}ms"
        critical_after = "{}ms"
        max_keys = {keys}
        {learning}
        "#,
        2 * WARN_MS
    );
    let config = freshwatch::config::parse(&text, std::path::Path::new("scale.toml"), &|_| None)
        .expect("valid config");
    config.feeds[0].clone()
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
    println!(
        "thresholds {}",
        std::env::var("SCALE_THRESHOLDS").unwrap_or_else(|_| "learned".into())
    );

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
        // Two records: every series of the learned feed holds a gap in its cadence summary.
        tracker.observe(0, name.as_bytes(), last_seen - 30_000);
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

    // No read snapshot is kept (reads walk the table in place): the table is the one copy.
    let tracker = Arc::new(Mutex::new(tracker));
    if std::env::var_os("SCALE_MEMORY_ONLY").is_some() {
        return;
    }
    scrape_while_consuming(&tracker, &evaluator, keys);

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
        // A fixed feed's series carry no summary: its flush writes none.
        let learned = feeds[0].learning.is_some();
        let mut one_gap = freshwatch::cadence::Cadence::default();
        one_gap.learn(30_000, 20);
        let records: Vec<SeriesRecord> = (0..keys)
            .map(|index| SeriesRecord {
                feed: Arc::from("profiles"),
                key: key(index).into_bytes(),
                last_seen_ms: Some(NOW_MS - 1_000),
                status: Some((Status::Ok, NOW_MS)),
                cadence: learned.then_some(one_gap),
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
        // Again, every series moved on and learned another gap: each summary now meets a
        // stored one.
        let mut two_gaps = one_gap;
        two_gaps.learn(90_000, 20);
        let moved: Vec<SeriesRecord> = records
            .iter()
            .map(|record| SeriesRecord {
                last_seen_ms: Some(NOW_MS),
                cadence: learned.then_some(two_gaps),
                ..record.clone()
            })
            .collect();
        let started = Instant::now();
        for chunk in moved.chunks(10_000) {
            store.write(chunk, None).await.expect("flush");
        }
        let elapsed = started.elapsed();
        println!(
            "redis_flush_over_stored_updates_per_s {:.0}",
            keys as f64 / elapsed.as_secs_f64()
        );
        replica_reload(&store, &records).await;
    });
}

/// Records applied per tracker lock, as the source does.
const BATCH: usize = 2048;

/// Consumes (observes records for every key in turn, a batch per lock, as the source thread
/// does) for a few seconds, alone and then while another thread renders `/metrics` back to back.
fn scrape_while_consuming(tracker: &Arc<Mutex<Tracker>>, evaluator: &Evaluator, keys: usize) {
    // `scraped`: the table the other thread renders; the consumer's own, or a copy of it (the
    // same work on another core without sharing a lock: what the CPUs cost, not the lock).
    let run = |scraped: Option<&Arc<Mutex<Tracker>>>| -> (f64, u64) {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let scraper = scraped.map(|scraped| {
            let snapshots = Arc::new(freshwatch::snapshot::Snapshots::new(scraped.clone()));
            let mut registry = prometheus_client::registry::Registry::default();
            let clock: freshwatch::clock::SharedClock = Arc::new(freshwatch::clock::SystemClock);
            let _metrics = freshwatch::metrics::Metrics::register(
                &mut registry,
                snapshots,
                evaluator.rules().to_vec().into(),
                clock,
                // Every series per key: what rendering all of them costs.
                usize::MAX,
            );
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let text = freshwatch::metrics::render(&registry);
                    assert!(text.len() > keys * 4 * 50, "every series rendered");
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        let names: Vec<Vec<u8>> = (0..keys).map(|index| key(index).into_bytes()).collect();
        let started = Instant::now();
        let mut records = 0u64;
        let mut next = 0usize;
        while started.elapsed() < Duration::from_secs(6) {
            let mut table = tracker.lock().unwrap();
            for _ in 0..BATCH {
                table.observe(0, &names[next], NOW_MS + records as i64);
                next = (next + 1) % keys;
                records += 1;
            }
        }
        let rate = records as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        if let Some(scraper) = scraper {
            scraper.join().expect("scraper");
        }
        (rate, scrapes.load(Ordering::Relaxed))
    };
    let other = {
        let mut copy = Tracker::new(&[feed(keys)], NOW_MS);
        for index in 0..keys {
            copy.observe(0, key(index).as_bytes(), NOW_MS);
        }
        Arc::new(Mutex::new(copy))
    };
    // Alternated, so warm-up and other load fall on every side.
    let (mut alone, mut scraped, mut beside, mut scrapes) = (0.0, 0.0, 0.0, 0);
    for _ in 0..2 {
        alone += run(None).0 / 2.0;
        let (rate, count) = run(Some(tracker));
        scraped += rate / 2.0;
        scrapes += count;
        beside += run(Some(&other)).0 / 2.0;
    }
    let change = |rate: f64| (rate / alone - 1.0) * 100.0;
    println!("consume_records_per_s_alone {alone:.0}");
    println!(
        "consume_records_per_s_while_scraping {scraped:.0} ({scrapes} full scrapes back to back)"
    );
    println!(
        "consume_rate_change_while_scraping_pct {:.1}",
        change(scraped)
    );
    println!(
        "consume_rate_change_while_rendering_another_table_pct {:.1} (no shared lock: the cost of the other core's work)",
        change(beside)
    );
}

/// A follower's reload: the first reads the feed whole, later ones only what changed.
async fn replica_reload(store: &RedisStore, records: &[SeriesRecord]) {
    let feeds = [Arc::<str>::from("profiles")];
    let mut cursors = vec![ChangeCursor::default()];
    let started = Instant::now();
    let whole = store
        .load_changed(&feeds, &mut cursors)
        .await
        .expect("reload");
    println!(
        "replica_reload_whole_ms {:.0} ({} series)",
        started.elapsed().as_secs_f64() * 1000.0,
        whole.len()
    );
    let changes: Vec<SeriesRecord> = records
        .iter()
        .step_by(records.len() / 1_000)
        .take(1_000)
        .map(|record| SeriesRecord {
            last_seen_ms: record.last_seen_ms.map(|millis| millis + 1),
            ..record.clone()
        })
        .collect();
    store.write(&changes, None).await.expect("write changes");
    let started = Instant::now();
    let changed = store
        .load_changed(&feeds, &mut cursors)
        .await
        .expect("reload");
    assert_eq!(changed.len(), changes.len());
    println!(
        "replica_reload_1000_changes_ms {:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
