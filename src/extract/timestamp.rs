//! Turns a field value into unix milliseconds.
//!
//! Text may be RFC 3339 (`2025-11-24T00:00:00Z`, offsets, fractions, lowercase `t`/`z`, or a
//! space instead of `T`) or a decimal number. A number's unit is inferred from its magnitude
//! (see [`infer_unit`]). An all-digit integer takes a fast path that touches neither floats nor
//! chrono, since unix-millisecond fields are the common case on the hot path.

use std::borrow::Cow;

/// Why a value is not a usable timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampError {
    Empty,
    Unparseable,
    OutOfRange,
}

impl std::fmt::Display for TimestampError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            TimestampError::Empty => "empty timestamp",
            TimestampError::Unparseable => "unparseable timestamp",
            TimestampError::OutOfRange => "timestamp before 1970 or after 9999",
        })
    }
}

impl std::error::Error for TimestampError {}

/// The unit a bare number is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericUnit {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

/// `|n| < 1e11` → seconds (1e11 s is the year 5138); `< 1e14` → milliseconds (1e11 ms is
/// 1973-03-03, so any modern ms value is above it); `< 1e17` → microseconds; else nanoseconds.
pub fn infer_unit(value: f64) -> NumericUnit {
    let magnitude = value.abs();
    if magnitude < 1e11 {
        NumericUnit::Seconds
    } else if magnitude < 1e14 {
        NumericUnit::Milliseconds
    } else if magnitude < 1e17 {
        NumericUnit::Microseconds
    } else {
        NumericUnit::Nanoseconds
    }
}

/// 9999-12-31T23:59:59.999Z
const MAX_MS: i64 = 253_402_300_799_999;

fn in_range(millis: i64) -> Result<i64, TimestampError> {
    if (0..=MAX_MS).contains(&millis) {
        Ok(millis)
    } else {
        Err(TimestampError::OutOfRange)
    }
}

fn integer_to_ms(value: i64) -> Result<i64, TimestampError> {
    let millis = match infer_unit(value as f64) {
        NumericUnit::Seconds => value.checked_mul(1000).ok_or(TimestampError::OutOfRange)?,
        NumericUnit::Milliseconds => value,
        NumericUnit::Microseconds => value.div_euclid(1000),
        NumericUnit::Nanoseconds => value.div_euclid(1_000_000),
    };
    in_range(millis)
}

fn float_to_ms(value: f64) -> Result<i64, TimestampError> {
    if !value.is_finite() {
        return Err(TimestampError::Unparseable);
    }
    let millis = match infer_unit(value) {
        NumericUnit::Seconds => value * 1000.0,
        NumericUnit::Milliseconds => value,
        NumericUnit::Microseconds => value / 1000.0,
        NumericUnit::Nanoseconds => value / 1_000_000.0,
    }
    .floor();
    if millis < i64::MIN as f64 || millis > i64::MAX as f64 {
        return Err(TimestampError::OutOfRange);
    }
    in_range(millis as i64)
}

/// A decimal number: integer fast path, else a float.
fn parse_number(text: &str) -> Result<i64, TimestampError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|byte| byte.is_ascii_digit())
    {
        let value: i64 = text.parse().map_err(|_| TimestampError::Unparseable)?;
        return integer_to_ms(value);
    }
    let looks_numeric = text
        .bytes()
        .all(|byte| byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E'));
    if !looks_numeric {
        return Err(TimestampError::Unparseable);
    }
    let value: f64 = text.parse().map_err(|_| TimestampError::Unparseable)?;
    float_to_ms(value)
}

/// Parses RFC 3339 or a decimal number.
pub fn parse_timestamp_text(text: &str) -> Result<i64, TimestampError> {
    let trimmed = text.trim_matches(|character: char| character.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Err(TimestampError::Empty);
    }
    let first = trimmed.as_bytes()[0];
    let is_date = trimmed.len() >= 10 && trimmed.as_bytes().get(4) == Some(&b'-');
    if !is_date && (first.is_ascii_digit() || first == b'-' || first == b'.') {
        return parse_number(trimmed);
    }
    parse_rfc3339(trimmed)
}

fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    let bytes = text.as_bytes();
    let normalized: Cow<'_, str> = match bytes.get(10) {
        Some(b' ' | b't') => {
            let mut owned = text.to_owned();
            owned.replace_range(10..11, "T");
            Cow::Owned(owned)
        }
        _ => Cow::Borrowed(text),
    };
    let normalized = match normalized.strip_suffix('z') {
        Some(without_zone) => Cow::Owned(format!("{without_zone}Z")),
        None => normalized,
    };
    let parsed = chrono::DateTime::parse_from_rfc3339(&normalized)
        .map_err(|_| TimestampError::Unparseable)?;
    in_range(parsed.timestamp_millis())
}

/// The same for raw bytes (headers); non-UTF-8 is unparseable.
pub fn parse_timestamp_bytes(bytes: &[u8]) -> Result<i64, TimestampError> {
    let text = std::str::from_utf8(bytes).map_err(|_| TimestampError::Unparseable)?;
    parse_timestamp_text(text)
}

/// For the literal text of a JSON number.
pub fn parse_timestamp_number(literal: &str) -> Result<i64, TimestampError> {
    if literal.is_empty() {
        return Err(TimestampError::Empty);
    }
    parse_number(literal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AT_MS: i64 = 1_764_547_200_123; // 2025-12-01T00:00:00.123Z

    #[test]
    fn rfc3339_in_its_common_spellings() {
        for text in [
            "2025-12-01T00:00:00.123Z",
            "2025-12-01t00:00:00.123z",
            "2025-12-01 00:00:00.123Z",
            "2025-12-01T02:00:00.123+02:00",
            "  2025-12-01T00:00:00.123456Z\n",
        ] {
            assert_eq!(parse_timestamp_text(text), Ok(AT_MS), "{text}");
        }
    }

    #[test]
    fn numbers_are_read_in_the_unit_their_magnitude_implies() {
        assert_eq!(parse_timestamp_text("1764547200"), Ok(1_764_547_200_000));
        assert_eq!(parse_timestamp_text("1764547200.123"), Ok(AT_MS));
        assert_eq!(parse_timestamp_text("1764547200123"), Ok(AT_MS));
        assert_eq!(parse_timestamp_text("1764547200123456"), Ok(AT_MS));
        assert_eq!(parse_timestamp_text("1764547200123456789"), Ok(AT_MS));
        assert_eq!(parse_timestamp_number("1.764547200123e12"), Ok(AT_MS));
        assert_eq!(infer_unit(99_999_999_999.0), NumericUnit::Seconds);
        assert_eq!(infer_unit(1e11), NumericUnit::Milliseconds);
        assert_eq!(infer_unit(1e14), NumericUnit::Microseconds);
        assert_eq!(infer_unit(1e17), NumericUnit::Nanoseconds);
        assert_eq!(parse_timestamp_bytes(b"1764547200123"), Ok(AT_MS));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(parse_timestamp_text(""), Err(TimestampError::Empty));
        assert_eq!(parse_timestamp_text("   "), Err(TimestampError::Empty));
        for text in [
            "abc",
            "yesterday",
            "12:00",
            "2025-13-01T00:00:00Z",
            "1e",
            "NaN",
            "inf",
        ] {
            assert_eq!(
                parse_timestamp_text(text),
                Err(TimestampError::Unparseable),
                "{text}"
            );
        }
        assert_eq!(parse_timestamp_text("-5"), Err(TimestampError::OutOfRange));
        assert_eq!(
            parse_timestamp_text("1969-12-31T23:59:59Z"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            parse_timestamp_bytes(&[0xff, 0xfe]),
            Err(TimestampError::Unparseable)
        );
    }

    proptest! {
        #[test]
        fn every_spelling_round_trips(millis in 0i64..=MAX_MS) {
            let time = chrono::DateTime::from_timestamp_millis(millis).unwrap();
            let text = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            prop_assert_eq!(parse_timestamp_text(&text), Ok(millis));
            if (100_000_000_000..100_000_000_000_000).contains(&millis) {
                prop_assert_eq!(parse_timestamp_text(&millis.to_string()), Ok(millis));
            }
            let whole_seconds = millis / 1000;
            if whole_seconds < 100_000_000_000 {
                prop_assert_eq!(
                    parse_timestamp_number(&whole_seconds.to_string()),
                    Ok(whole_seconds * 1000)
                );
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_timestamp_text(&text);
        }
    }
}
