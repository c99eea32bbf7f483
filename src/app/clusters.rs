//! The Kafka clusters in the pipeline: each with its own source and knowledge, so one that does
//! not answer blinds only its own feeds.
//!
//! Each cluster's [`Knowledge`] applies the one rule to that cluster's partitions; a feed's
//! sight is its own cluster's verdict, never another's. The state store and the replicas are
//! shared by all clusters, so those facts reach every cluster's knowledge.

use super::*;
use crate::knowledge::{PartitionKey, ReadThrough};

/// One cluster as the pipeline runs it.
pub(super) struct ClusterRun {
    pub(super) name: Arc<str>,
    /// `[[cluster]]` configs label what concerns a cluster; a `[kafka]` config stays unlabelled.
    pub(super) labelled: bool,
    pub(super) source: SourceHandle,
    pub(super) knowledge: Arc<Knowledge>,
}

impl ClusterRun {
    /// The `cluster` label of its alerts: none for the one cluster of a `[kafka]` config.
    pub(super) fn labels(&self) -> Vec<(&'static str, String)> {
        if self.labelled {
            vec![("cluster", self.name.to_string())]
        } else {
            Vec::new()
        }
    }

    /// Its name in the state store's keys: `None` keeps a `[kafka]` config's keys as they were.
    pub(super) fn store_scope(&self) -> Option<&str> {
        self.labelled.then_some(&*self.name)
    }

    /// Down past `grace_ms` (`Some(true)`), answering (`Some(false)`), or not known yet
    /// (starting, or down within the grace).
    pub(super) fn source_down(&self, grace_ms: i64, now_ms: i64) -> Option<bool> {
        let status = &self.source.status;
        let unreachable_since_ms = status.unreachable_since_ms.load(Ordering::Relaxed);
        if status.reachable.load(Ordering::Relaxed) {
            Some(false)
        } else if unreachable_since_ms != 0 && now_ms - unreachable_since_ms >= grace_ms {
            Some(true)
        } else {
            None
        }
    }
}

/// Every cluster, and which one each feed is on.
pub(super) struct Clusters {
    pub(super) runs: Vec<ClusterRun>,
    /// Per feed (by index), its cluster (an index into `runs`).
    pub(super) feed_cluster: Vec<usize>,
}

impl Clusters {
    /// Each feed's sight from its own cluster's knowledge; the unread partitions of all.
    pub(super) fn assess(&self, now_ms: i64) -> Assessment {
        let assessments: Vec<Assessment> = self
            .runs
            .iter()
            .map(|run| run.knowledge.assess(now_ms))
            .collect();
        merge_assessments(assessments, &self.feed_cluster)
    }

    /// `freshwatch_cluster_feeds_unknown`: per cluster, its feeds that cannot be judged now.
    pub(super) fn export(&self, metrics: &crate::metrics::ClusterMetrics, assessment: &Assessment) {
        for (cluster, run) in self.runs.iter().enumerate() {
            let unknown = assessment
                .feeds
                .iter()
                .zip(&self.feed_cluster)
                .filter(|(feed, &on)| on == cluster && matches!(feed.sight, Sight::Blind(_)))
                .count();
            metrics
                .feeds_unknown
                .get_or_create(&crate::metrics::ClusterLabels {
                    cluster: run.name.to_string(),
                })
                .set(i64::try_from(unknown).unwrap_or(i64::MAX));
        }
    }

    /// The feeds of cluster `cluster` that `assessment` holds blind for `cause`.
    pub(super) fn held_count(
        &self,
        assessment: &Assessment,
        cluster: usize,
        cause: crate::knowledge::Blindness,
    ) -> usize {
        assessment
            .feeds
            .iter()
            .zip(&self.feed_cluster)
            .filter(|(feed, &on)| {
                on == cluster && matches!(feed.sight, Sight::Blind(blindness) if blindness == cause)
            })
            .count()
    }

    pub(super) fn observe_flushed(&self, taken_at_ms: i64) {
        for run in &self.runs {
            run.knowledge.observe_flushed(taken_at_ms);
        }
    }

    pub(super) fn observe_store_failure(&self, at_ms: i64) {
        for run in &self.runs {
            run.knowledge.observe_store_failure(at_ms);
        }
    }

    pub(super) fn observe_store_success(&self, at_ms: i64) {
        for run in &self.runs {
            run.knowledge.observe_store_success(at_ms);
        }
    }

    /// A thread the process cannot run without died: nothing read counts any more.
    pub(super) fn observe_source_failure(&self, at_ms: i64) {
        for run in &self.runs {
            run.knowledge.observe_source_failure(at_ms);
        }
    }

    /// Whether what other replicas read on some cluster is unknown now.
    pub(super) fn peers_unknown(&self, now_ms: i64) -> bool {
        self.runs
            .iter()
            .any(|run| run.knowledge.peers_unknown(now_ms))
    }

    /// Whether any cluster's consumer group had committed offsets before this process did.
    pub(super) fn group_had_commits(&self) -> bool {
        self.runs
            .iter()
            .any(|run| run.source.status.group_had_commits.load(Ordering::Relaxed))
    }

    /// Every cluster's assigned partitions (a topic is read on one cluster only).
    pub(super) fn assignment(&self) -> Vec<(String, i32)> {
        self.runs
            .iter()
            .flat_map(|run| {
                run.source
                    .status
                    .assignment
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .clone()
            })
            .collect()
    }

    /// Commits each cluster's positions on its own consumer.
    pub(super) fn commit(&self, positions: &crate::tracker::Positions) {
        for run in &self.runs {
            run.source.commit(positions);
        }
    }

    /// What this replica tells the others of cluster `cluster`'s partitions.
    pub(super) fn shared_reads(
        &self,
        cluster: usize,
        now_ms: i64,
    ) -> Vec<(PartitionKey, ReadThrough)> {
        self.runs[cluster].knowledge.shared_reads(now_ms)
    }
}

/// One assessment from each cluster's (every feed at its place in each): a feed's sight is its
/// own cluster's, never another's; the unread partitions are all clusters'.
fn merge_assessments(assessments: Vec<Assessment>, feed_cluster: &[usize]) -> Assessment {
    let feeds = feed_cluster
        .iter()
        .enumerate()
        .map(|(feed, &cluster)| assessments[cluster].feeds[feed])
        .collect();
    let mut unowned: Vec<(PartitionKey, i64)> = assessments
        .into_iter()
        .flat_map(|assessment| assessment.unowned)
        .collect();
    unowned.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Assessment { feeds, unowned }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::TopicMatcher;
    use crate::knowledge::Blindness;

    /// A cluster's knowledge of two feeds, `orders` (0) and `payments` (1), the feed not on it
    /// reading no topic (as [`crate::config::Config::for_cluster`] leaves it).
    fn cluster_knowledge(own: usize) -> Knowledge {
        let feeds = ["orders", "payments"]
            .iter()
            .enumerate()
            .map(|(index, topic)| {
                let topic = if index == own { *topic } else { "" };
                (TopicMatcher::Exact(topic.to_owned()), FeedMode::Consume)
            })
            .collect();
        Knowledge::new(feeds, 10_000, 6_000, 500)
    }

    fn read_through(knowledge: &Knowledge, topic: &str, at_ms: i64) {
        knowledge.observe_metadata(at_ms, HashMap::from([(topic.to_owned(), 1)]));
        knowledge.observe_assignment(at_ms, &[(topic.to_owned(), 0)]);
        knowledge.observe_reads([((topic.to_owned(), 0), Some(at_ms))]);
    }

    #[test]
    fn a_cluster_that_does_not_answer_blinds_only_its_own_feeds() {
        let eu = cluster_knowledge(0);
        let dr = cluster_knowledge(1);
        read_through(&eu, "orders", 1_000);
        read_through(&dr, "payments", 1_000);
        dr.observe_source_failure(1_500);
        let merged = merge_assessments(vec![eu.assess(2_000), dr.assess(2_000)], &[0, 1]);
        assert_eq!(merged.feeds[0].sight, Sight::Known { through_ms: 1_000 });
        assert_eq!(
            merged.feeds[1].sight,
            Sight::Blind(Blindness::SourceDown),
            "dr's feed is held by dr's outage"
        );
        // eu's view of dr's feed (it reads no topic there) says nothing about it.
        assert!(matches!(
            eu.assess(2_000).feeds[1].sight,
            Sight::Known { .. }
        ));
    }
}
