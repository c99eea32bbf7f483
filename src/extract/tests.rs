use proptest::prelude::*;

use super::*;

/// 2025-12-01T00:00:00Z: when freshwatch reads the record.
const ARRIVAL_MS: i64 = 1_764_547_200_000;
const MAX_FUTURE_SKEW_MS: i64 = 5 * 60_000;

/// The default `max_key_bytes`.
const MAX_KEY_BYTES: usize = 256;

fn extractor(split: Option<SplitRule>, timestamp: TimestampRule) -> Extractor {
    Extractor::new(split, timestamp, MAX_KEY_BYTES, MAX_FUTURE_SKEW_MS)
}

fn pointer(text: &str) -> json::JsonPointer {
    json::JsonPointer::parse(text).expect("valid pointer")
}

fn json_split(at: &str) -> Option<SplitRule> {
    Some(SplitRule::Json(pointer(at)))
}

fn json_time(at: &str) -> TimestampRule {
    TimestampRule::Json(pointer(at))
}

/// A record on partition 17 with key `key-1`, headers `tenant: acme` and a millisecond `ts`,
/// written 5 s before it is read.
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

fn split_of(rule: SplitRule, record: &OwnedRecord) -> Vec<u8> {
    extractor(Some(rule), TimestampRule::Record)
        .extract(record, ARRIVAL_MS)
        .unwrap_or_else(|error| panic!("{error}"))
        .split
        .as_bytes()
        .to_vec()
}

fn event_ms_of(rule: TimestampRule, record: &OwnedRecord) -> i64 {
    let extracted = extractor(None, rule)
        .extract(record, ARRIVAL_MS)
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(!extracted.clamped_future);
    extracted.event_ms
}

fn reason_of(
    split: Option<SplitRule>,
    timestamp: TimestampRule,
    record: &OwnedRecord,
) -> &'static str {
    match extractor(split, timestamp).extract(record, ARRIVAL_MS) {
        Ok(extracted) => panic!("expected an error, got {extracted:?}"),
        Err(error) => error.reason(),
    }
}

#[test]
fn an_unsplit_feed_puts_every_record_in_one_series() {
    let source = record("{}");
    let extracted = extractor(None, TimestampRule::Record)
        .extract(&source, ARRIVAL_MS)
        .unwrap();
    assert_eq!(extracted.split, SplitValue::Whole);
    assert_eq!(extracted.split.as_bytes(), b"");
}

#[test]
fn a_json_split_reads_strings_decoded_and_numbers_and_booleans_literally() {
    let source = record(
        r#"{"tenant_id":"acme","n":42,"f":-1.5e3,"yes":true,"no":false,"esc":"a\"b\u00e9","meta":{"region":"eu"},"list":["x","y"]}"#,
    );
    let cases: [(&str, &[u8]); 9] = [
        ("/tenant_id", b"acme"),
        ("/n", b"42"),
        ("/f", b"-1.5e3"),
        ("/yes", b"true"),
        ("/no", b"false"),
        ("/esc", "a\"b\u{e9}".as_bytes()),
        ("/meta/region", b"eu"),
        ("/list/1", b"y"),
        ("/list/0", b"x"),
    ];
    for (at, expected) in cases {
        assert_eq!(
            split_of(SplitRule::Json(pointer(at)), &source),
            expected,
            "{at}"
        );
    }
}

#[test]
fn a_header_split_uses_the_header_bytes_as_they_are() {
    let mut source = record("{}");
    source.headers.push(("raw".into(), vec![0xff, 0x00, 0x41]));
    assert_eq!(
        split_of(SplitRule::Header("tenant".into()), &source),
        b"acme"
    );
    assert_eq!(
        split_of(SplitRule::Header("raw".into()), &source),
        [0xff, 0x00, 0x41]
    );
}

#[test]
fn the_first_of_two_headers_with_the_same_name_wins() {
    let mut source = record("{}");
    source.headers.push(("tenant".into(), b"globex".to_vec()));
    assert_eq!(
        split_of(SplitRule::Header("tenant".into()), &source),
        b"acme"
    );
}

#[test]
fn a_key_split_uses_the_record_key_bytes() {
    assert_eq!(split_of(SplitRule::Key, &record("{}")), b"key-1");
    let mut binary_key = record("{}");
    binary_key.key = Some(vec![0x00, 0xff, b'k']);
    assert_eq!(split_of(SplitRule::Key, &binary_key), [0x00, 0xff, b'k']);
}

/// An empty split value would be a series `Tracker::restore` cannot tell from an unsplit feed's
/// (so it would be forgotten at every restart): it is refused as missing instead.
#[test]
fn an_empty_split_value_is_refused_as_missing() {
    // A split feed's series need a non-empty value: the empty key is the unsplit feed's, and a
    // series keyed "" could not be told apart from it when state is restored.
    let mut empty_key = record(r#"{"tenant_id":""}"#);
    empty_key.key = Some(Vec::new());
    empty_key.headers.push(("region".into(), Vec::new()));
    for rule in [
        SplitRule::Key,
        SplitRule::Json(pointer("/tenant_id")),
        SplitRule::Header("region".into()),
    ] {
        let error = extractor(Some(rule.clone()), TimestampRule::Arrival)
            .extract(&empty_key, ARRIVAL_MS)
            .unwrap_err();
        assert_eq!(error.reason(), "missing_split", "{rule:?}");
    }
}

#[test]
fn a_partition_split_uses_the_partition_number_in_decimal() {
    for partition in [0, 7, 17, 100, 2_147_483_647] {
        let mut source = record("{}");
        source.partition = partition;
        assert_eq!(
            split_of(SplitRule::Partition, &source),
            partition.to_string().as_bytes(),
            "partition {partition}"
        );
    }
}

#[test]
fn a_json_timestamp_may_be_rfc3339_text() {
    let cases = [
        (r#"{"at":"2025-12-01T00:00:00Z"}"#, ARRIVAL_MS),
        (r#"{"at":"2025-12-01T00:00:00.123Z"}"#, ARRIVAL_MS + 123),
        (r#"{"at":"2025-12-01T02:00:00+02:00"}"#, ARRIVAL_MS),
        (r#"{"at":"2025-12-01 00:00:01Z"}"#, ARRIVAL_MS + 1_000),
        (
            r#"{"meta":{"at":"2025-11-30T23:59:59Z"}}"#,
            ARRIVAL_MS - 1_000,
        ),
    ];
    for (payload, expected) in cases {
        let rule = if payload.contains("meta") {
            json_time("/meta/at")
        } else {
            json_time("/at")
        };
        assert_eq!(event_ms_of(rule, &record(payload)), expected, "{payload}");
    }
}

#[test]
fn a_json_timestamp_number_is_unix_time_with_its_unit_inferred() {
    let cases = [
        (r#"{"at":1764547200}"#, ARRIVAL_MS),
        (r#"{"at":1764547200.5}"#, ARRIVAL_MS + 500),
        (r#"{"at":1764547200123}"#, ARRIVAL_MS + 123),
        (r#"{"at":1764547200123456}"#, ARRIVAL_MS + 123),
        (r#"{"at":1764547200123456789}"#, ARRIVAL_MS + 123),
        (r#"{"at":"1764547200123"}"#, ARRIVAL_MS + 123),
        (r#"{"at":"1764547200"}"#, ARRIVAL_MS),
    ];
    for (payload, expected) in cases {
        assert_eq!(
            event_ms_of(json_time("/at"), &record(payload)),
            expected,
            "{payload}"
        );
    }
}

#[test]
fn a_header_timestamp_is_read_from_its_text() {
    let mut source = record("{}");
    assert_eq!(
        event_ms_of(TimestampRule::Header("ts".into()), &source),
        1_764_547_100_000
    );
    source
        .headers
        .push(("iso".into(), b"2025-11-30T00:00:00Z".to_vec()));
    assert_eq!(
        event_ms_of(TimestampRule::Header("iso".into()), &source),
        ARRIVAL_MS - 86_400_000
    );
}

#[test]
fn the_record_rule_uses_the_kafka_timestamp_and_arrival_uses_the_read_time() {
    let source = record("not even json");
    assert_eq!(
        event_ms_of(TimestampRule::Record, &source),
        ARRIVAL_MS - 5_000
    );
    assert_eq!(event_ms_of(TimestampRule::Arrival, &source), ARRIVAL_MS);
    let bare = OwnedRecord::default();
    assert_eq!(event_ms_of(TimestampRule::Arrival, &bare), ARRIVAL_MS);
}

#[test]
fn a_record_without_a_payload_is_missing_payload_for_json_rules() {
    let no_payload = OwnedRecord {
        timestamp_ms: Some(ARRIVAL_MS),
        ..OwnedRecord::default()
    };
    assert_eq!(
        reason_of(json_split("/tenant_id"), TimestampRule::Record, &no_payload),
        "missing_payload"
    );
    assert_eq!(
        reason_of(None, json_time("/at"), &no_payload),
        "missing_payload"
    );
}

#[test]
fn a_payload_that_is_not_json_is_invalid_json() {
    for payload in [r#"{"tenant_id":"#, "not json", r#"{"tenant_id" "acme"}"#] {
        assert_eq!(
            reason_of(
                json_split("/tenant_id"),
                TimestampRule::Record,
                &record(payload)
            ),
            "invalid_json",
            "{payload}"
        );
    }
    assert_eq!(
        reason_of(None, json_time("/at"), &record(r#"{"at":"#)),
        "invalid_json"
    );
}

#[test]
fn a_split_field_that_is_absent_is_missing_split() {
    assert_eq!(
        reason_of(
            json_split("/tenant_id"),
            TimestampRule::Record,
            &record(r#"{"other":"acme"}"#)
        ),
        "missing_split"
    );
    assert_eq!(
        reason_of(
            json_split("/meta/tenant"),
            TimestampRule::Record,
            &record(r#"{"meta":"flat"}"#)
        ),
        "missing_split"
    );
}

#[test]
fn a_split_value_that_is_null_an_object_or_an_array_is_invalid_split() {
    for payload in [
        r#"{"tenant_id":{"name":"acme"}}"#,
        r#"{"tenant_id":["acme"]}"#,
        r#"{"tenant_id":null}"#,
    ] {
        assert_eq!(
            reason_of(
                json_split("/tenant_id"),
                TimestampRule::Record,
                &record(payload)
            ),
            "invalid_split",
            "{payload}"
        );
    }
}

#[test]
fn a_timestamp_field_that_is_absent_is_missing_timestamp() {
    assert_eq!(
        reason_of(None, json_time("/at"), &record(r#"{"tenant_id":"acme"}"#)),
        "missing_timestamp"
    );
    assert_eq!(
        reason_of(None, json_time("/at"), &record(r#"{"at":null}"#)),
        "missing_timestamp"
    );
}

#[test]
fn a_timestamp_that_is_not_a_time_is_invalid_timestamp() {
    for payload in [
        r#"{"at":"yesterday"}"#,
        r#"{"at":""}"#,
        r#"{"at":[1764547200]}"#,
        r#"{"at":{"s":1764547200}}"#,
        r#"{"at":true}"#,
        r#"{"at":-1764547200}"#,
        r#"{"at":"2025-13-45T99:00:00Z"}"#,
    ] {
        assert_eq!(
            reason_of(None, json_time("/at"), &record(payload)),
            "invalid_timestamp",
            "{payload}"
        );
    }
}

#[test]
fn a_missing_header_is_missing_split_or_missing_timestamp() {
    let source = record("{}");
    assert_eq!(
        reason_of(
            Some(SplitRule::Header("region".into())),
            TimestampRule::Record,
            &source
        ),
        "missing_split"
    );
    assert_eq!(
        reason_of(None, TimestampRule::Header("produced_at".into()), &source),
        "missing_timestamp"
    );
}

#[test]
fn garbage_bytes_in_a_timestamp_header_are_invalid_timestamp() {
    let mut source = record("{}");
    source.headers = vec![("ts".into(), vec![0xff, 0xfe])];
    assert_eq!(
        reason_of(None, TimestampRule::Header("ts".into()), &source),
        "invalid_timestamp"
    );
    source.headers = vec![("ts".into(), b"yesterday".to_vec())];
    assert_eq!(
        reason_of(None, TimestampRule::Header("ts".into()), &source),
        "invalid_timestamp"
    );
}

#[test]
fn a_record_without_a_kafka_timestamp_is_missing_timestamp_under_the_record_rule() {
    let mut source = record("{}");
    source.timestamp_ms = None;
    assert_eq!(
        reason_of(None, TimestampRule::Record, &source),
        "missing_timestamp"
    );
    // librdkafka reports "no timestamp" as -1.
    source.timestamp_ms = Some(-1);
    assert_eq!(
        reason_of(None, TimestampRule::Record, &source),
        "missing_timestamp"
    );
}

#[test]
fn a_record_without_a_key_is_missing_split_under_the_key_rule() {
    let mut source = record("{}");
    source.key = None;
    assert_eq!(
        reason_of(Some(SplitRule::Key), TimestampRule::Record, &source),
        "missing_split"
    );
}

#[test]
fn a_timestamp_beyond_max_future_skew_is_clamped_to_arrival() {
    let extractor = extractor(None, json_time("/at"));
    let far = record(&format!(r#"{{"at":{}}}"#, ARRIVAL_MS + 3_600_000));
    let extracted = extractor.extract(&far, ARRIVAL_MS).unwrap();
    assert_eq!(extracted.event_ms, ARRIVAL_MS);
    assert!(extracted.clamped_future);

    let just_over = record(&format!(
        r#"{{"at":{}}}"#,
        ARRIVAL_MS + MAX_FUTURE_SKEW_MS + 1
    ));
    let extracted = extractor.extract(&just_over, ARRIVAL_MS).unwrap();
    assert_eq!(
        (extracted.event_ms, extracted.clamped_future),
        (ARRIVAL_MS, true)
    );
}

#[test]
fn a_timestamp_within_max_future_skew_is_kept() {
    let extractor = extractor(None, json_time("/at"));
    for ahead_ms in [1, 60_000, MAX_FUTURE_SKEW_MS] {
        let near = record(&format!(r#"{{"at":{}}}"#, ARRIVAL_MS + ahead_ms));
        let extracted = extractor.extract(&near, ARRIVAL_MS).unwrap();
        assert_eq!(
            (extracted.event_ms, extracted.clamped_future),
            (ARRIVAL_MS + ahead_ms, false),
            "{ahead_ms} ms ahead"
        );
    }
}

#[test]
fn a_future_kafka_timestamp_is_clamped_too() {
    let mut source = record("{}");
    source.timestamp_ms = Some(ARRIVAL_MS + 86_400_000);
    let extracted = extractor(Some(SplitRule::Key), TimestampRule::Record)
        .extract(&source, ARRIVAL_MS)
        .unwrap();
    assert_eq!(extracted.event_ms, ARRIVAL_MS);
    assert!(extracted.clamped_future);
    assert_eq!(extracted.split.as_bytes(), b"key-1");
}

#[test]
fn every_reason_is_a_registered_metric_label() {
    let errors = [
        RecordError::MissingPayload,
        RecordError::InvalidJson(json::JsonError::Syntax { offset: 0 }),
        RecordError::MissingSplit,
        RecordError::InvalidSplit,
        RecordError::SplitTooLong,
        RecordError::MissingTimestamp,
        RecordError::InvalidTimestamp(timestamp::TimestampError::Unparseable),
    ];
    for error in &errors {
        assert!(
            RecordError::REASONS.contains(&error.reason()),
            "{} not in REASONS",
            error.reason()
        );
    }
    assert!(RecordError::REASONS.contains(&FUTURE_TIMESTAMP_REASON));
    assert_eq!(FUTURE_TIMESTAMP_REASON, "future_timestamp");
    let mut distinct: Vec<&str> = RecordError::REASONS.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), errors.len() + 1, "no duplicates, no extras");
}

/// Every split rule paired with every timestamp rule, over the fields the strategies fill.
fn every_extractor() -> Vec<Extractor> {
    let splits = [
        None,
        json_split("/tenant_id"),
        json_split("/a/0/b"),
        Some(SplitRule::Header("tenant".into())),
        Some(SplitRule::Key),
        Some(SplitRule::Partition),
    ];
    let timestamps = [
        json_time("/at"),
        json_time("/a/0/b"),
        TimestampRule::Header("ts".into()),
        TimestampRule::Record,
        TimestampRule::Arrival,
    ];
    let mut extractors = Vec::new();
    for split in &splits {
        for timestamp in &timestamps {
            extractors.push(extractor(split.clone(), timestamp.clone()));
        }
    }
    extractors
}

proptest! {
    #[test]
    fn arbitrary_payload_and_header_bytes_never_panic_any_extractor(
        payload in prop::collection::vec(any::<u8>(), 0..200),
        header in prop::collection::vec(any::<u8>(), 0..40),
        partition in any::<i32>(),
        timestamp_ms in prop::option::of(any::<i64>()),
        arrival_ms in any::<i64>(),
    ) {
        let record = OwnedRecord {
            partition,
            key: Some(header.clone()),
            payload: Some(payload),
            headers: vec![("ts".into(), header.clone()), ("tenant".into(), header)],
            timestamp_ms,
        };
        for extractor in every_extractor() {
            if let Ok(extracted) = extractor.extract(&record, arrival_ms) {
                prop_assert!(!extracted.clamped_future || extracted.event_ms == arrival_ms);
            }
        }
    }

    #[test]
    fn json_like_garbage_never_panics_any_extractor(
        payload in r#"[{}\[\]":,0-9a-z_\\. \-+eE]{0,120}"#,
        header in "[0-9:TZ.+ \\-]{0,30}",
    ) {
        let record = OwnedRecord {
            partition: 3,
            key: Some(header.as_bytes().to_vec()),
            payload: Some(payload.into_bytes()),
            headers: vec![("ts".into(), header.as_bytes().to_vec())],
            timestamp_ms: Some(ARRIVAL_MS),
        };
        for extractor in every_extractor() {
            let _ = extractor.extract(&record, ARRIVAL_MS);
        }
    }

    #[test]
    fn truncated_valid_documents_never_panic_any_extractor(cut in 0usize..80) {
        let document = r#"{"tenant_id":"ac\"me","at":"2025-12-01T00:00:00Z","a":[{"b":1764547200}]}"#;
        let record = OwnedRecord {
            payload: Some(document.as_bytes()[..cut.min(document.len())].to_vec()),
            ..record("{}")
        };
        for extractor in every_extractor() {
            let _ = extractor.extract(&record, ARRIVAL_MS);
        }
    }

    #[test]
    fn any_partition_splits_to_its_decimal_text(partition in any::<i32>()) {
        let mut source = record("{}");
        source.partition = partition;
        prop_assert_eq!(
            split_of(SplitRule::Partition, &source),
            partition.to_string().into_bytes()
        );
    }
}

#[test]
fn a_split_value_longer_than_max_key_bytes_is_refused_and_counted() {
    let mut long = record("{}");
    long.key = Some(vec![b'k'; 257]);
    let refused = extractor(Some(SplitRule::Key), TimestampRule::Record)
        .extract(&long, ARRIVAL_MS)
        .map(|_| ())
        .expect_err("257 bytes > 256");
    assert_eq!(refused.reason(), "split_too_long");
    long.key = Some(vec![b'k'; 256]);
    assert!(extractor(Some(SplitRule::Key), TimestampRule::Record)
        .extract(&long, ARRIVAL_MS)
        .is_ok());
}

#[test]
fn an_audit_id_is_read_in_the_same_pass_and_agrees_with_reading_it_alone() {
    let record =
        record(r#"{"order_id":"o-7","tenant":"acme","ts":1764547100000,"extra":"\u00e9"}"#);
    let json = extractor(json_split("/tenant"), json_time("/ts"));
    let id = SplitRule::Json(pointer("/order_id"));
    let (extracted, found) = json.extract_with_id(&record, ARRIVAL_MS, &id).unwrap();
    assert_eq!(extracted.split.as_bytes(), b"acme");
    assert_eq!(extracted.event_ms, 1_764_547_100_000);
    assert_eq!(found.unwrap().as_bytes(), b"o-7");
    assert_eq!(value_of(&id, &record).unwrap().as_bytes(), b"o-7");
    // A missing id is the id's error, not the record's: the feed still counts it.
    let missing = SplitRule::Json(pointer("/nope"));
    let (extracted, found) = json.extract_with_id(&record, ARRIVAL_MS, &missing).unwrap();
    assert_eq!(extracted.split.as_bytes(), b"acme");
    assert_eq!(found, Err(RecordError::MissingSplit));
    // Other rules read it on its own, with the same answer.
    let by_key = extractor(Some(SplitRule::Key), TimestampRule::Record);
    let (_, found) = by_key.extract_with_id(&record, ARRIVAL_MS, &id).unwrap();
    assert_eq!(found.unwrap().as_bytes(), b"o-7");
}
