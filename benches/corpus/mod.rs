//! The records and feeds the hot-path benchmarks share with `examples/audit_cost.rs`, which
//! counts the same work's instructions under callgrind (repeatable on a loaded machine).

use std::sync::Arc;
use std::time::Duration;

use freshwatch::audit::{AuditTrack, Side};
use freshwatch::config::{
    AuditConfig, FeedConfig, FeedMode, SplitRule, TimestampRule, TopicMatcher,
};
use freshwatch::extract::json::JsonPointer;
use freshwatch::extract::{Extractor, OwnedRecord};
use freshwatch::tracker::Tracker;

pub const RECORDS: usize = 10_000;
pub const TENANTS: usize = 10_000;
pub const BASE_MS: i64 = 1_764_547_200_000;

pub fn feed(split: Option<SplitRule>, timestamp: TimestampRule) -> FeedConfig {
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
pub fn profile_update(index: usize, rfc3339_time: bool) -> Vec<u8> {
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

pub fn records(rfc3339_time: bool) -> Vec<OwnedRecord> {
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
pub fn run(extractor: &Extractor, tracker: &mut Tracker, batch: &[OwnedRecord]) -> usize {
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

/// The JSON split feed of the profile updates, its time a JSON field too.
pub fn json_feed() -> FeedConfig {
    feed(
        Some(SplitRule::Json(JsonPointer::parse("/tenant_id").unwrap())),
        TimestampRule::Json(JsonPointer::parse("/updated_at").unwrap()),
    )
}

/// The JSON split path with a completeness audit on top: the feed as an audit's upstream side,
/// the id a JSON field, as the source runs it.
pub struct Audited {
    pub extractor: Extractor,
    pub tracker: Tracker,
    pub audit: AuditConfig,
    pub track: AuditTrack,
    offset: i64,
}

impl Audited {
    pub fn new() -> Audited {
        let config = json_feed();
        let audit = AuditConfig {
            pipeline: Arc::from("profiles"),
            from: Arc::from("profiles"),
            to: Arc::from("cdp"),
            id: SplitRule::Json(JsonPointer::parse("/profile_id").unwrap()),
            bucket: Duration::from_secs(60),
            grace: Duration::from_secs(300),
            max_listed: 100,
        };
        Audited {
            extractor: config.extractor(300_000),
            tracker: Tracker::new(std::slice::from_ref(&config), BASE_MS),
            track: AuditTrack::new(audit.clone(), 0, 1),
            audit,
            offset: 0,
        }
    }

    /// Extracts, tracks and counts every record once; how many were counted.
    pub fn run(&mut self, batch: &[OwnedRecord]) -> usize {
        let mut counted = 0;
        for record in batch {
            let Ok((extracted, id)) =
                self.extractor
                    .extract_with_id(record, BASE_MS, &self.audit.id)
            else {
                continue;
            };
            self.tracker
                .observe(0, extracted.split.as_bytes(), extracted.event_ms);
            if let Ok(id) = id {
                self.offset += 1;
                counted += usize::from(self.track.count(
                    Side::Upstream,
                    extracted.event_ms,
                    id.as_bytes(),
                    "cdp.profile-updates",
                    record.partition,
                    self.offset,
                ));
            }
        }
        counted
    }
}
