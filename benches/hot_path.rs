//! Extract + track throughput on one core, per split kind, against a naive baseline
//! (`serde_json::Value` parse plus a `HashMap<String, _>` with a fresh `String` per record).
//!
//! `cargo bench --bench hot_path`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use freshwatch::cadence::Learning;
use freshwatch::config::{FeedConfig, SplitRule, TimestampRule};
use freshwatch::extract::OwnedRecord;
use freshwatch::schedule::WeekClock;
use freshwatch::tracker::Tracker;

mod corpus;
use corpus::{feed, records, run, BASE_MS, TENANTS};

fn bench_scenario(
    criterion: &mut Criterion,
    name: &str,
    config: FeedConfig,
    batch: &[OwnedRecord],
) {
    let bytes: usize = batch
        .iter()
        .map(|record| record.payload.as_ref().map_or(0, Vec::len))
        .sum();
    let extractor = config.extractor(300_000);
    let mut tracker = Tracker::new(std::slice::from_ref(&config), BASE_MS);
    assert_eq!(
        run(&extractor, &mut tracker, batch),
        batch.len(),
        "{name}: every record tracks"
    );
    let mut group = criterion.benchmark_group("extract_track");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function(format!("{name}/records"), |bencher| {
        bencher.iter(|| black_box(run(&extractor, &mut tracker, batch)))
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("{name}/bytes"), |bencher| {
        bencher.iter(|| black_box(run(&extractor, &mut tracker, batch)))
    });
    group.finish();
}

/// The naive way, for comparison: whatever `naive_extract` does per record (a `serde_json::Value`
/// parse for JSON), then a `HashMap<String, _>` keyed by a fresh `String` per record.
fn naive_baseline(
    criterion: &mut Criterion,
    name: &str,
    batch: &[OwnedRecord],
    naive_extract: impl Fn(&OwnedRecord) -> Option<(String, i64)>,
) {
    let mut group = criterion.benchmark_group("extract_track");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let mut map: HashMap<String, (i64, u64)> = HashMap::new();
    group.bench_function(format!("{name}/records"), |bencher| {
        bencher.iter_batched_ref(
            || (),
            |()| {
                for record in batch {
                    let Some((key, at)) = naive_extract(record) else {
                        continue;
                    };
                    let entry = map.entry(key).or_insert((i64::MIN, 0));
                    entry.0 = entry.0.max(at);
                    entry.1 += 1;
                }
                black_box(map.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn naive_json(record: &OwnedRecord) -> Option<(String, i64)> {
    let payload = record.payload.as_deref().unwrap_or_default();
    let value = serde_json::from_slice::<serde_json::Value>(payload).ok()?;
    let tenant = value.pointer("/tenant_id")?.as_str()?;
    let at = match value.pointer("/updated_at") {
        Some(serde_json::Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| time.timestamp_millis())
            .unwrap_or(0),
        Some(serde_json::Value::Number(number)) => number.as_i64().unwrap_or(0),
        _ => 0,
    };
    Some((tenant.to_string(), at))
}

fn naive_key(record: &OwnedRecord) -> Option<(String, i64)> {
    let key = String::from_utf8_lossy(record.key.as_deref()?).into_owned();
    Some((key, record.timestamp_ms?))
}

fn naive_header(record: &OwnedRecord) -> Option<(String, i64)> {
    let (_, value) = record.headers.iter().find(|(name, _)| name == "tenant")?;
    Some((
        String::from_utf8_lossy(value).into_owned(),
        record.timestamp_ms?,
    ))
}

fn naive_unsplit(record: &OwnedRecord) -> Option<(String, i64)> {
    Some((String::new(), record.timestamp_ms?))
}

fn hot_path(criterion: &mut Criterion) {
    let with_millis = records(false);
    let with_rfc3339 = records(true);
    bench_scenario(
        criterion,
        "record_timestamp",
        feed(None, TimestampRule::Record),
        &with_millis,
    );
    bench_scenario(
        criterion,
        "header_split",
        feed(
            Some(SplitRule::Header("tenant".into())),
            TimestampRule::Record,
        ),
        &with_millis,
    );
    bench_scenario(
        criterion,
        "key_split",
        feed(Some(SplitRule::Key), TimestampRule::Record),
        &with_millis,
    );
    bench_scenario(
        criterion,
        "json_split_unix_ms",
        corpus::json_feed(),
        &with_millis,
    );
    bench_scenario(
        criterion,
        "json_split_rfc3339",
        corpus::json_feed(),
        &with_rfc3339,
    );
    naive_baseline(
        criterion,
        "naive_record_timestamp",
        &with_millis,
        naive_unsplit,
    );
    naive_baseline(criterion, "naive_header_split", &with_millis, naive_header);
    naive_baseline(criterion, "naive_key_split", &with_millis, naive_key);
    naive_baseline(criterion, "naive_json_unix_ms", &with_millis, naive_json);
    naive_baseline(criterion, "naive_json_rfc3339", &with_rfc3339, naive_json);
}

/// Tracking alone with every record moving its series' last-seen a second on, so each one is a
/// gap learned: fixed, learned, and learned by hour (the per-feed hours on top).
fn learning(criterion: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..TENANTS)
        .map(|tenant| format!("tenant-{tenant:05}").into_bytes())
        .collect();
    let learned = Learning {
        min_gaps: 20,
        min_span_ms: freshwatch::cadence::WARM_UP_SPAN_MS,
        warn_floor_ms: 60_000,
        critical_floor_ms: 300_000,
        by_hour: None,
    };
    let by_hour = Learning {
        by_hour: Some(WeekClock {
            timezone: chrono_tz::Europe::Berlin,
        }),
        ..learned
    };
    let mut group = criterion.benchmark_group("track_gaps");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for (name, learning) in [
        ("fixed", None),
        ("learned", Some(learned)),
        ("learned_by_hour", Some(by_hour)),
    ] {
        let config = FeedConfig {
            learning,
            ..feed(Some(SplitRule::Key), TimestampRule::Record)
        };
        let mut tracker = Tracker::new(std::slice::from_ref(&config), BASE_MS);
        let mut round = 0_i64;
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                round += 1;
                // A second per round: an hour boundary every 3,600 rounds, as in real traffic.
                let at_ms = BASE_MS + round * 1_000;
                for key in &keys {
                    black_box(tracker.observe(0, key, at_ms));
                }
            })
        });
    }
    group.finish();
}

/// The JSON split path with a completeness audit on top (`[[pipeline.audit]]`, the feed as its
/// upstream side, the id a JSON field): what auditing adds per record.
fn audit(criterion: &mut Criterion) {
    let batch = records(false);
    let mut audited = corpus::Audited::new();
    assert_eq!(audited.run(&batch), batch.len(), "every record counted");
    let mut group = criterion.benchmark_group("extract_track");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("json_split_unix_ms_audited/records", |bencher| {
        bencher.iter(|| black_box(audited.run(&batch)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hot_path, learning, audit
}
criterion_main!(benches);
