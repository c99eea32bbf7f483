//! Per record: which series it belongs to (the split value) and its event time.
//!
//! This is the hot path. Nothing here allocates for the common case: split values borrow from
//! the record, JSON fields are found by a forward scan ([`json::find`]) rather than a parse.

pub mod json;
mod rules;
pub mod timestamp;

use std::borrow::Cow;

pub use rules::{SplitRule, TimestampRule};

/// The parts of a Kafka record extraction reads, independent of rdkafka so tests and benches can
/// build records directly.
pub trait Record {
    fn partition(&self) -> i32;
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    /// The value of the first header called `name`.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Kafka record timestamp, unix ms.
    fn timestamp_ms(&self) -> Option<i64>;
}

/// Why a record did not refresh its feed. [`RecordError::reason`] is the `reason` label of
/// `freshwatch_record_errors_total`, so the set is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no payload")]
    MissingPayload,
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(json::JsonError),
    #[error("split value is missing")]
    MissingSplit,
    #[error("split value is not a string, number or boolean")]
    InvalidSplit,
    #[error("split value is longer than max_key_bytes")]
    SplitTooLong,
    #[error("timestamp is missing")]
    MissingTimestamp,
    #[error("timestamp is invalid: {0}")]
    InvalidTimestamp(timestamp::TimestampError),
}

impl RecordError {
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::MissingPayload => "missing_payload",
            RecordError::InvalidJson(_) => "invalid_json",
            RecordError::MissingSplit => "missing_split",
            RecordError::InvalidSplit => "invalid_split",
            RecordError::SplitTooLong => "split_too_long",
            RecordError::MissingTimestamp => "missing_timestamp",
            RecordError::InvalidTimestamp(_) => "invalid_timestamp",
        }
    }

    /// Every reason, so the metric can be pre-registered at zero.
    pub const REASONS: [&'static str; 8] = [
        "missing_payload",
        "invalid_json",
        "missing_split",
        "invalid_split",
        "split_too_long",
        "missing_timestamp",
        "invalid_timestamp",
        FUTURE_TIMESTAMP_REASON,
    ];
}

/// Counted, but not an error: the record still refreshes its feed at arrival time.
pub const FUTURE_TIMESTAMP_REASON: &str = "future_timestamp";

/// A split value: borrowed from the record where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitValue<'a> {
    /// Unsplit feed.
    Whole,
    Borrowed(&'a [u8]),
    Owned(String),
    Partition {
        digits: [u8; 11],
        len: u8,
    },
}

impl SplitValue<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SplitValue::Whole => b"",
            SplitValue::Borrowed(bytes) => bytes,
            SplitValue::Owned(text) => text.as_bytes(),
            SplitValue::Partition { digits, len } => &digits[..usize::from(*len)],
        }
    }

    fn partition(partition: i32) -> Self {
        let mut digits = [0u8; 11];
        let mut len = 0;
        let negative = partition < 0;
        let mut value = partition.unsigned_abs();
        let mut reversed = [0u8; 10];
        loop {
            reversed[len] = b'0' + (value % 10) as u8;
            len += 1;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        let mut out = 0;
        if negative {
            digits[0] = b'-';
            out = 1;
        }
        for position in (0..len).rev() {
            digits[out] = reversed[position];
            out += 1;
        }
        SplitValue::Partition {
            digits,
            len: out as u8,
        }
    }
}

/// What a record contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted<'a> {
    pub split: SplitValue<'a>,
    pub event_ms: i64,
    /// The event time was too far in the future and was replaced by the arrival time.
    pub clamped_future: bool,
}

/// The extraction rules of one feed.
#[derive(Debug, Clone)]
pub struct Extractor {
    split: Option<SplitRule>,
    timestamp: TimestampRule,
    max_future_skew_ms: i64,
    max_key_bytes: usize,
}

impl Extractor {
    /// `config::FeedConfig::extractor` builds one from a feed's config.
    pub fn new(
        split: Option<SplitRule>,
        timestamp: TimestampRule,
        max_key_bytes: usize,
        max_future_skew_ms: i64,
    ) -> Self {
        Extractor {
            split,
            timestamp,
            max_future_skew_ms,
            max_key_bytes,
        }
    }

    /// Reads the split value and event time of `record`, read at `arrival_ms`.
    pub fn extract<'a, R: Record>(
        &self,
        record: &'a R,
        arrival_ms: i64,
    ) -> Result<Extracted<'a>, RecordError> {
        let (event_ms, split) = match (&self.split, &self.timestamp) {
            // Both from the payload: one scan finds both.
            (Some(SplitRule::Json(split_pointer)), TimestampRule::Json(time_pointer)) => {
                let payload = record.payload().ok_or(RecordError::MissingPayload)?;
                let [time, split] = json::find_each(payload, [time_pointer, split_pointer])
                    .map_err(RecordError::InvalidJson)?;
                (json_time(time)?, non_empty(json_split(split)?)?)
            }
            _ => (
                self.event_time(record, arrival_ms)?,
                self.split_value(record)?,
            ),
        };
        self.finish(split, event_ms, arrival_ms)
    }

    /// [`Extractor::extract`], and the value of `id` (an audit's record id) beside it: when
    /// all three come from the payload, in the one scan.
    #[allow(clippy::type_complexity)]
    pub fn extract_with_id<'a, R: Record>(
        &self,
        record: &'a R,
        arrival_ms: i64,
        id: &SplitRule,
    ) -> Result<(Extracted<'a>, Result<SplitValue<'a>, RecordError>), RecordError> {
        if let (
            Some(SplitRule::Json(split_pointer)),
            TimestampRule::Json(time_pointer),
            SplitRule::Json(id_pointer),
        ) = (&self.split, &self.timestamp, id)
        {
            let payload = record.payload().ok_or(RecordError::MissingPayload)?;
            // The id is compared as bytes: its UTF-8 check is skipped.
            let [time, split, id] =
                json::find_each_raw(payload, [time_pointer, split_pointer, id_pointer], 1 << 2)
                    .map_err(RecordError::InvalidJson)?;
            let event_ms = json_time(time)?;
            let extracted = self.finish(non_empty(json_split(split)?)?, event_ms, arrival_ms)?;
            return Ok((extracted, json_split(id).and_then(non_empty)));
        }
        let extracted = self.extract(record, arrival_ms)?;
        Ok((extracted, value_of(id, record).and_then(non_empty)))
    }

    fn finish<'a>(
        &self,
        split: SplitValue<'a>,
        event_ms: i64,
        arrival_ms: i64,
    ) -> Result<Extracted<'a>, RecordError> {
        if split.as_bytes().len() > self.max_key_bytes {
            return Err(RecordError::SplitTooLong);
        }
        let clamped_future = event_ms > arrival_ms.saturating_add(self.max_future_skew_ms);
        Ok(Extracted {
            split,
            event_ms: if clamped_future { arrival_ms } else { event_ms },
            clamped_future,
        })
    }

    fn split_value<'a, R: Record>(&self, record: &'a R) -> Result<SplitValue<'a>, RecordError> {
        let Some(rule) = &self.split else {
            return Ok(SplitValue::Whole);
        };
        non_empty(value_of(rule, record)?)
    }

    fn event_time<R: Record>(&self, record: &R, arrival_ms: i64) -> Result<i64, RecordError> {
        match &self.timestamp {
            TimestampRule::Arrival => Ok(arrival_ms),
            TimestampRule::Record => record
                .timestamp_ms()
                .filter(|&millis| millis >= 0)
                .ok_or(RecordError::MissingTimestamp),
            TimestampRule::Header(name) => {
                let value = record.header(name).ok_or(RecordError::MissingTimestamp)?;
                timestamp::parse_timestamp_bytes(value).map_err(RecordError::InvalidTimestamp)
            }
            TimestampRule::Json(pointer) => {
                let payload = record.payload().ok_or(RecordError::MissingPayload)?;
                json_time(json::find(payload, pointer).map_err(RecordError::InvalidJson)?)
            }
        }
    }
}

/// A split rule's value in `record` (also an audit's id): borrowed where it can be.
pub fn value_of<'a, R: Record>(
    rule: &SplitRule,
    record: &'a R,
) -> Result<SplitValue<'a>, RecordError> {
    match rule {
        SplitRule::Key => record
            .key()
            .map(SplitValue::Borrowed)
            .ok_or(RecordError::MissingSplit),
        SplitRule::Partition => Ok(SplitValue::partition(record.partition())),
        SplitRule::Header(name) => record
            .header(name)
            .map(SplitValue::Borrowed)
            .ok_or(RecordError::MissingSplit),
        SplitRule::Json(pointer) => {
            let payload = record.payload().ok_or(RecordError::MissingPayload)?;
            json_split(json::find(payload, pointer).map_err(RecordError::InvalidJson)?)
        }
    }
}

/// An empty value is refused as missing: the empty key belongs to unsplit feeds.
fn non_empty(value: SplitValue<'_>) -> Result<SplitValue<'_>, RecordError> {
    if value.as_bytes().is_empty() {
        return Err(RecordError::MissingSplit);
    }
    Ok(value)
}

/// The split value a JSON field gives: strings, numbers and booleans by their text.
fn json_split(found: Option<json::JsonScalar<'_>>) -> Result<SplitValue<'_>, RecordError> {
    match found {
        None => Err(RecordError::MissingSplit),
        Some(json::JsonScalar::String(Cow::Borrowed(text))) => {
            Ok(SplitValue::Borrowed(text.as_bytes()))
        }
        Some(json::JsonScalar::String(Cow::Owned(text))) => Ok(SplitValue::Owned(text)),
        Some(json::JsonScalar::Number(literal)) => Ok(SplitValue::Borrowed(literal.as_bytes())),
        Some(json::JsonScalar::Raw(bytes)) => Ok(SplitValue::Borrowed(bytes)),
        Some(json::JsonScalar::Bool(true)) => Ok(SplitValue::Borrowed(b"true")),
        Some(json::JsonScalar::Bool(false)) => Ok(SplitValue::Borrowed(b"false")),
        Some(json::JsonScalar::Null | json::JsonScalar::Object | json::JsonScalar::Array) => {
            Err(RecordError::InvalidSplit)
        }
    }
}

/// The event time a JSON field gives: RFC 3339 text or a unix number.
fn json_time(found: Option<json::JsonScalar<'_>>) -> Result<i64, RecordError> {
    match found {
        None | Some(json::JsonScalar::Null) => Err(RecordError::MissingTimestamp),
        Some(json::JsonScalar::String(text)) => {
            timestamp::parse_timestamp_text(&text).map_err(RecordError::InvalidTimestamp)
        }
        Some(json::JsonScalar::Number(literal)) => {
            timestamp::parse_timestamp_number(literal).map_err(RecordError::InvalidTimestamp)
        }
        Some(_) => Err(RecordError::InvalidTimestamp(
            timestamp::TimestampError::Unparseable,
        )),
    }
}

/// A record built in memory, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct OwnedRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl Record for OwnedRecord {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_slice())
    }
    fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
}

#[cfg(test)]
mod tests;
