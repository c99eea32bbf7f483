//! Extract + track throughput on one core, per split kind, against a naive baseline
//! (`serde_json::Value` parse plus a `HashMap<String, _>` with a fresh `String` per record).
//!
//! `cargo bench --bench hot_path`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use freshwatch::cadence::Learning;
use freshwatch::config::{FeedConfig, FeedMode, SplitRule, TimestampRule, TopicMatcher};
use freshwatch::extract::json::JsonPointer;
use freshwatch::extract::{Extractor, OwnedRecord};
use freshwatch::schedule::WeekClock;
use freshwatch::tracker::Tracker;

const RECORDS: usize = 10_000;
const TENANTS: usize = 10_000;
const BASE_MS: i64 = 1_764_547_200_000;

fn feed(split: Option<SplitRule>, timestamp: TimestampRule) -> FeedConfig {
    FeedConfig {
        name: Arc::from("profiles"),
        topics: TopicMatcher::Exact("cdp.profile-updates".into()),
        split,
        timestamp,
        warn_after: Duration::from_secs(1800),
        critical_after: Duration::from_secs(7200),
        expected: vec![],
        mode: FeedMode::Consume,
        max_keys: 1_000_000,
        max_key_bytes: 256,
        hold: Duration::ZERO,
        rollup_after: 20,
        windows: Vec::new(),
        learning: None,
    }
}

/// A realistic ~300-byte external profile update; the tenant is not the first field.
fn profile_update(index: usize, rfc3339_time: bool) -> Vec<u8> {
    let at = BASE_MS + index as i64;
    let updated_at = if rfc3339_time {
        format!("\"{}\"", freshwatch::clock::rfc3339(at))
    } else {
        at.to_string()
    };
    format!(
        r#"{{"profile_id":"p-{index:08}","email":"user{index}@example.com","name":"Zoë \"Z\" Müller","source":"crm-sync","locale":"de-DE","ip":"203.0.113.7","consent":{{"email":true,"sms":false}},"attributes":{{"plan":"pro","country":"DE","score":{score},"tags":["a","b"]}},"tenant_id":"tenant-{tenant:05}","updated_at":{updated_at},"version":3}}"#,
        score = index % 97,
        tenant = index % TENANTS,
    )
    .into_bytes()
}

fn records(rfc3339_time: bool) -> Vec<OwnedRecord> {
    (0..RECORDS)
        .map(|index| OwnedRecord {
            partition: (index % 12) as i32,
            key: Some(format!("tenant-{:05}", index % TENANTS).into_bytes()),
            payload: Some(profile_update(index, rfc3339_time)),
            headers: vec![
                (
                    "tenant".into(),
                    format!("tenant-{:05}", index % TENANTS).into_bytes(),
                ),
                (
                    "ts".into(),
                    (BASE_MS + index as i64).to_string().into_bytes(),
                ),
            ],
            timestamp_ms: Some(BASE_MS + index as i64),
        })
        .collect()
}

/// Extract and track every record once; keys are already known (steady state).
fn run(extractor: &Extractor, tracker: &mut Tracker, batch: &[OwnedRecord]) -> usize {
    let mut tracked = 0;
    for record in batch {
        if let Ok(extracted) = extractor.extract(record, BASE_MS) {
            if tracker
                .observe(0, extracted.split.as_bytes(), extracted.event_ms)
                .is_some()
            {
                tracked += 1;
            }
        }
    }
    tracked
}

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
    let json_feed = || {
        feed(
            Some(SplitRule::Json(JsonPointer::parse("/tenant_id").unwrap())),
            TimestampRule::Json(JsonPointer::parse("/updated_at").unwrap()),
        )
    };
    bench_scenario(criterion, "json_split_unix_ms", json_feed(), &with_millis);
    bench_scenario(criterion, "json_split_rfc3339", json_feed(), &with_rfc3339);
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
    use freshwatch::audit::{AuditTrack, Side};
    use freshwatch::config::AuditConfig;
    let batch = records(false);
    let config = feed(
        Some(SplitRule::Json(JsonPointer::parse("/tenant_id").unwrap())),
        TimestampRule::Json(JsonPointer::parse("/updated_at").unwrap()),
    );
    let extractor = config.extractor(300_000);
    let mut tracker = Tracker::new(std::slice::from_ref(&config), BASE_MS);
    let audit = AuditConfig {
        pipeline: Arc::from("profiles"),
        from: Arc::from("profiles"),
        to: Arc::from("cdp"),
        id: SplitRule::Json(JsonPointer::parse("/profile_id").unwrap()),
        bucket: Duration::from_secs(60),
        grace: Duration::from_secs(300),
        max_listed: 100,
    };
    let mut track = AuditTrack::new(audit.clone(), 0, 1);
    let mut offset = 0i64;
    let mut run_audited = |tracker: &mut Tracker| {
        let mut counted = 0;
        for record in &batch {
            if let Ok((extracted, id)) = extractor.extract_with_id(record, BASE_MS, &audit.id) {
                tracker.observe(0, extracted.split.as_bytes(), extracted.event_ms);
                if let Ok(id) = id {
                    offset += 1;
                    counted += usize::from(track.count(
                        Side::Upstream,
                        extracted.event_ms,
                        id.as_bytes(),
                        "cdp.profile-updates",
                        record.partition,
                        offset,
                    ));
                }
            }
        }
        counted
    };
    assert_eq!(
        run_audited(&mut tracker),
        batch.len(),
        "every record counted"
    );
    let mut group = criterion.benchmark_group("extract_track");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("json_split_unix_ms_audited/records", |bencher| {
        bencher.iter(|| black_box(run_audited(&mut tracker)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hot_path, learning, audit
}
criterion_main!(benches);
