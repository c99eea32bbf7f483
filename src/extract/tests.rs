use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{FeedMode, TopicMatcher};

const ARRIVAL_MS: i64 = 1_764_547_200_000;

fn extractor(split: Option<SplitRule>, timestamp: TimestampRule) -> Extractor {
    let feed = FeedConfig {
        name: Arc::from("f"),
        topics: TopicMatcher::Exact("t".into()),
        split,
        timestamp,
        warn_after: Duration::from_secs(60),
        critical_after: Duration::from_secs(120),
        expected: vec![],
        mode: FeedMode::Consume,
        max_keys: 10,
    };
    Extractor::new(&feed, 300_000)
}

fn json(pointer: &str) -> json::JsonPointer {
    json::JsonPointer::parse(pointer).unwrap()
}

fn record(payload: &str) -> OwnedRecord {
    OwnedRecord {
        partition: 17,
        key: Some(b"key-1".to_vec()),
        payload: Some(payload.as_bytes().to_vec()),
        headers: vec![
            ("tenant".into(), b"acme".to_vec()),
            ("ts".into(), b"1764547100000".to_vec()),
        ],
        timestamp_ms: Some(ARRIVAL_MS - 5_000),
    }
}

#[test]
fn split_values_come_from_the_configured_place() {
    let payload = r#"{"tenant_id":"acme","n":42,"b":true,"esc":"a\"b"}"#;
    let cases = [
        (SplitRule::Key, &b"key-1"[..]),
        (SplitRule::Partition, b"17"),
        (SplitRule::Header("tenant".into()), b"acme"),
        (SplitRule::Json(json("/tenant_id")), b"acme"),
        (SplitRule::Json(json("/n")), b"42"),
        (SplitRule::Json(json("/b")), b"true"),
        (SplitRule::Json(json("/esc")), b"a\"b"),
    ];
    let source = record(payload);
    for (rule, expected) in cases {
        let extracted = extractor(Some(rule.clone()), TimestampRule::Record)
            .extract(&source, ARRIVAL_MS)
            .unwrap();
        assert_eq!(extracted.split.as_bytes(), expected, "{rule:?}");
    }
    let mut zero = record(payload);
    zero.partition = 0;
    let extracted = extractor(Some(SplitRule::Partition), TimestampRule::Record)
        .extract(&zero, ARRIVAL_MS)
        .unwrap();
    assert_eq!(extracted.split.as_bytes(), b"0");
}

#[test]
fn event_times_come_from_the_configured_place() {
    let cases = [
        (
            r#"{"at":"2025-12-01T00:00:00.123Z"}"#,
            TimestampRule::Json(json("/at")),
            ARRIVAL_MS + 123,
        ),
        (
            r#"{"at":1764547200}"#,
            TimestampRule::Json(json("/at")),
            ARRIVAL_MS,
        ),
        (
            r#"{"at":1764547200123}"#,
            TimestampRule::Json(json("/at")),
            ARRIVAL_MS + 123,
        ),
        (
            r#"{"at":"1764547200123"}"#,
            TimestampRule::Json(json("/at")),
            ARRIVAL_MS + 123,
        ),
        ("{}", TimestampRule::Header("ts".into()), 1_764_547_100_000),
        ("{}", TimestampRule::Record, ARRIVAL_MS - 5_000),
        ("{}", TimestampRule::Arrival, ARRIVAL_MS),
    ];
    for (payload, rule, expected) in cases {
        let source = record(payload);
        let extracted = extractor(None, rule.clone())
            .extract(&source, ARRIVAL_MS)
            .unwrap();
        assert_eq!(extracted.event_ms, expected, "{payload} {rule:?}");
        assert!(!extracted.clamped_future);
    }
}

#[test]
fn bad_records_map_to_their_reasons() {
    let json_split = || Some(SplitRule::Json(json("/tenant_id")));
    let json_time = || TimestampRule::Json(json("/at"));
    let cases: Vec<(Option<SplitRule>, TimestampRule, OwnedRecord, &str)> = vec![
        (
            json_split(),
            TimestampRule::Arrival,
            OwnedRecord::default(),
            "missing_payload",
        ),
        (
            json_split(),
            TimestampRule::Record,
            record(r#"{"tenant_id":"#),
            "invalid_json",
        ),
        (
            json_split(),
            TimestampRule::Record,
            record(r#"{"other":1}"#),
            "missing_split",
        ),
        (
            json_split(),
            TimestampRule::Record,
            record(r#"{"tenant_id":{"a":1}}"#),
            "invalid_split",
        ),
        (
            json_split(),
            TimestampRule::Record,
            record(r#"{"tenant_id":null}"#),
            "invalid_split",
        ),
        (None, json_time(), record(r#"{"x":1}"#), "missing_timestamp"),
        (
            None,
            json_time(),
            record(r#"{"at":"yesterday"}"#),
            "invalid_timestamp",
        ),
        (
            None,
            json_time(),
            record(r#"{"at":[1]}"#),
            "invalid_timestamp",
        ),
        (
            Some(SplitRule::Header("region".into())),
            TimestampRule::Record,
            record("{}"),
            "missing_split",
        ),
        (
            None,
            TimestampRule::Header("ts".into()),
            OwnedRecord {
                headers: vec![("ts".into(), vec![0xff, 0xfe])],
                ..OwnedRecord::default()
            },
            "invalid_timestamp",
        ),
        (
            None,
            TimestampRule::Record,
            OwnedRecord::default(),
            "missing_timestamp",
        ),
        (
            Some(SplitRule::Key),
            TimestampRule::Arrival,
            OwnedRecord::default(),
            "missing_split",
        ),
    ];
    for (split, timestamp, record, reason) in cases {
        let error = extractor(split, timestamp)
            .extract(&record, ARRIVAL_MS)
            .unwrap_err();
        assert_eq!(error.reason(), reason, "{error}");
        assert!(RecordError::REASONS.contains(&reason));
    }
    assert!(RecordError::REASONS.contains(&FUTURE_TIMESTAMP_REASON));
}

#[test]
fn far_future_event_times_are_clamped_to_arrival_and_near_ones_kept() {
    let extractor = extractor(None, TimestampRule::Json(json("/at")));
    let far = record(&format!(r#"{{"at":{}}}"#, ARRIVAL_MS + 3_600_000));
    let extracted = extractor.extract(&far, ARRIVAL_MS).unwrap();
    assert_eq!(
        (extracted.event_ms, extracted.clamped_future),
        (ARRIVAL_MS, true)
    );
    let near = record(&format!(r#"{{"at":{}}}"#, ARRIVAL_MS + 60_000));
    let extracted = extractor.extract(&near, ARRIVAL_MS).unwrap();
    assert_eq!(
        (extracted.event_ms, extracted.clamped_future),
        (ARRIVAL_MS + 60_000, false)
    );
}

proptest! {
    #[test]
    fn arbitrary_payloads_and_headers_never_panic(payload in prop::collection::vec(any::<u8>(), 0..120), header in prop::collection::vec(any::<u8>(), 0..20)) {
        let record = OwnedRecord {
            partition: 1,
            key: Some(header.clone()),
            payload: Some(payload),
            headers: vec![("ts".into(), header.clone()), ("tenant".into(), header)],
            timestamp_ms: None,
        };
        for (split, timestamp) in [
            (Some(SplitRule::Json(json("/tenant_id"))), TimestampRule::Json(json("/at"))),
            (Some(SplitRule::Header("tenant".into())), TimestampRule::Header("ts".into())),
            (Some(SplitRule::Key), TimestampRule::Record),
        ] {
            let _ = extractor(split, timestamp).extract(&record, ARRIVAL_MS);
        }
    }
}
