//! The extraction rules a feed is configured with: which series a record belongs to and where
//! its event time comes from.
//!
//! They live here, not in `config`, because they are extraction's vocabulary: `config` parses the
//! TOML into them, and the extractor runs them, so the dependency points one way
//! (`config` → `extract`).

use super::json::JsonPointer;

/// How a topic is split into feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitRule {
    Json(JsonPointer),
    Header(String),
    Key,
    Partition,
}

/// Where a record's event time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampRule {
    Json(JsonPointer),
    Header(String),
    Record,
    Arrival,
}

impl TimestampRule {
    /// Whether extraction needs the payload parsed as JSON.
    pub fn needs_json(&self) -> bool {
        matches!(self, TimestampRule::Json(_))
    }
}
