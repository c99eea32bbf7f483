//! Which feeds read which topic, and the rate-limited log of records that refreshed nothing.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::config::{FeedConfig, FeedMode, TopicMatcher};
use crate::extract::Extractor;
use crate::model::FeedIndex;

/// Which feeds read a topic, cached per topic name.
pub(super) struct Router {
    pub(super) feeds: Vec<(TopicMatcher, Extractor)>,
    routes: HashMap<String, Vec<FeedIndex>>,
    /// The topic of the previous record and its feeds: consecutive records mostly share a
    /// topic, so most records cost a short compare instead of hashing the name.
    pub(super) last: (String, Vec<FeedIndex>),
}

impl Router {
    pub(super) fn new(feeds: &[FeedConfig], max_future_skew_ms: i64) -> Self {
        Router {
            feeds: feeds
                .iter()
                .map(|feed| {
                    // A tail-mode feed is read by the TailSource: it matches no topic here.
                    let topics = match feed.mode {
                        FeedMode::Consume => feed.topics.clone(),
                        FeedMode::Tail => TopicMatcher::Exact(String::new()),
                    };
                    (topics, feed.extractor(max_future_skew_ms))
                })
                .collect(),
            routes: HashMap::new(),
            last: (String::new(), Vec::new()),
        }
    }

    /// Points `last` at `topic`'s feeds.
    pub(super) fn select(&mut self, topic: &str) {
        if self.last.0 != topic {
            let feeds = &self.feeds;
            let matching = self.routes.entry(topic.to_owned()).or_insert_with(|| {
                feeds
                    .iter()
                    .enumerate()
                    .filter(|(_, (matcher, _))| matcher.matches(topic))
                    .map(|(index, _)| index as FeedIndex)
                    .collect()
            });
            self.last = (topic.to_owned(), matching.clone());
        }
    }

    /// Topics to subscribe to: the exact names plus every known topic a regex matches.
    pub(super) fn subscription(&self, known_topics: &[String]) -> BTreeSet<String> {
        let mut topics = BTreeSet::new();
        for (matcher, _) in &self.feeds {
            match matcher {
                TopicMatcher::Exact(name) if name.is_empty() => {}
                TopicMatcher::Exact(name) => {
                    topics.insert(name.clone());
                }
                TopicMatcher::Regex(regex) => topics.extend(
                    known_topics
                        .iter()
                        .filter(|topic| regex.is_match(topic))
                        .cloned(),
                ),
            }
        }
        topics
    }

    pub(super) fn has_regex(&self) -> bool {
        self.feeds
            .iter()
            .any(|(matcher, _)| matches!(matcher, TopicMatcher::Regex(_)))
    }
}

/// Logs at most one line per (feed, reason) per interval, with the count it held back.
pub(super) struct RateLimitedLog {
    interval: Duration,
    last: HashMap<(FeedIndex, &'static str), (Instant, u64)>,
}

impl RateLimitedLog {
    pub(super) fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            last: HashMap::new(),
        }
    }

    pub(super) fn record_error(
        &mut self,
        feed: FeedIndex,
        feed_name: &str,
        error: &crate::extract::RecordError,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let reason = error.reason();
        let now = Instant::now();
        let entry = self
            .last
            .entry((feed, reason))
            .or_insert((now - self.interval, 0));
        if now.duration_since(entry.0) < self.interval {
            entry.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut entry.1);
        entry.0 = now;
        tracing::warn!(
            feed = feed_name,
            reason,
            %error,
            topic,
            partition,
            offset,
            suppressed,
            "record did not refresh its feed"
        );
    }
}
