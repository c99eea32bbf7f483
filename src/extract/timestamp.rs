//! TEMPORARY STUB (to be replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampError {
    Empty,
    Unparseable,
    OutOfRange,
}
impl std::fmt::Display for TimestampError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for TimestampError {}
pub fn parse_timestamp_text(text: &str) -> Result<i64, TimestampError> {
    let t = text.trim();
    if let Ok(n) = t.parse::<f64>() {
        return parse_timestamp_number(&n.to_string());
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| TimestampError::Unparseable)
}
pub fn parse_timestamp_bytes(bytes: &[u8]) -> Result<i64, TimestampError> {
    parse_timestamp_text(std::str::from_utf8(bytes).map_err(|_| TimestampError::Unparseable)?)
}
pub fn parse_timestamp_number(literal: &str) -> Result<i64, TimestampError> {
    let n: f64 = literal.parse().map_err(|_| TimestampError::Unparseable)?;
    Ok(if n.abs() < 1e11 {
        (n * 1000.0) as i64
    } else {
        n as i64
    })
}
