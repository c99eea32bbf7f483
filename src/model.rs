//! Domain types shared along the pipeline: which series a record belongs to and how it is judged.

use std::fmt;

/// Index of a configured `[[feed]]`, in config order.
pub type FeedIndex = u32;

/// One tracked series: a feed, or one split value of a split feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId {
    pub feed: FeedIndex,
    pub index: u32,
}

/// A series' verdict. The numbers are the values of `freshwatch_feed_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum Status {
    #[default]
    Ok = 0,
    Warning = 1,
    Critical = 2,
    /// Expected, but no record ever arrived within `critical_after` of watching it.
    NeverSeen = 3,
    /// freshwatch cannot tell yet (no data and still within `critical_after` of watching it).
    Unknown = 4,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::Warning,
        Status::Critical,
        Status::NeverSeen,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::NeverSeen => "never_seen",
            Status::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    pub fn gauge_value(self) -> i64 {
        self as i64
    }

    /// The alert severity this status pages with, if any.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Status::Warning => Some(Severity::Warning),
            Status::Critical | Status::NeverSeen => Some(Severity::Critical),
            Status::Ok | Status::Unknown => None,
        }
    }

    /// How stale-looking a status is, for "stalest first" ordering.
    pub fn rank(self) -> u8 {
        match self {
            Status::NeverSeen => 4,
            Status::Critical => 3,
            Status::Warning => 2,
            Status::Unknown => 1,
            Status::Ok => 0,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Alert severity, the `severity` label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An alert about freshwatch's own condition rather than a feed's staleness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemAlert {
    pub alertname: &'static str,
    pub severity: Severity,
    /// Extra labels, e.g. `feed`.
    pub labels: Vec<(&'static str, String)>,
    pub summary: String,
    /// `false` resolves it.
    pub firing: bool,
    /// When the condition began, unix ms.
    pub since_ms: i64,
}

impl SystemAlert {
    /// Stable across restarts, like a feed's.
    pub fn dedup_key(&self) -> String {
        let labels: Vec<&str> = self
            .labels
            .iter()
            .map(|(_, value)| value.as_str())
            .collect();
        format!("freshwatch/system/{}/{}", self.alertname, labels.join("/"))
    }
}

/// The `alertname`s that more than one part of freshwatch speaks of: the parts that raise them
/// and the sinks that treat some specially (a data-loss alert goes through silences).
pub mod alertname {
    /// A group behind in time or stalled.
    pub const LAGGING: &str = "ConsumerGroupLagging";
    /// A group without committed offsets on a topic that holds records.
    pub const MISSING: &str = "ConsumerGroupMissing";
    /// Unread records about to expire.
    pub const LOSS_IMMINENT: &str = "DataLossImminent";
    /// Unread records that expired.
    pub const LOST: &str = "DataLost";
    /// Groups freshwatch cannot read past `blind_after`.
    pub const GROUPS_BLIND: &str = "FreshwatchGroupsBlind";
    /// A feed's volume below its `min_rate`.
    pub const FEED_VOLUME_DROP: &str = "FeedVolumeDrop";
}
