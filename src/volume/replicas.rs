//! Every replica's record counts, summed: each replica counts only the records it reads, so a
//! feed's rate is the sum of every live replica's increases.
//!
//! Each replica publishes its own cumulative counts through the state store (with the knowledge
//! it shares, every `ha.reload_interval`) and reads the others'. [`ReplicaCounts`] turns those
//! per-replica counts into one monotone count per feed and key: the sum of every replica's
//! increases since it was first seen. A replica's first report only sets its starting point (its
//! history is not a burst), a count that went back (the replica restarted) counts from zero, and a
//! replica that stopped adds nothing more.

use std::collections::HashMap;

use super::FeedCounts;

/// One feed's series: the feed as a whole (`None`) or one key.
type SeriesName = (usize, Option<String>);

/// The own replica's source name.
pub const OWN: &str = "";

/// The summed counts, and what each replica reported last.
#[derive(Debug, Default)]
pub struct ReplicaCounts {
    last: HashMap<String, HashMap<SeriesName, u64>>,
    summed: HashMap<SeriesName, u64>,
    /// Per feed, its keys in the order first reported (own keys first).
    keys: HashMap<usize, Vec<String>>,
}

impl ReplicaCounts {
    /// Takes one replica's cumulative counts (by feed index).
    pub fn take(&mut self, source: &str, counts: &HashMap<usize, FeedCounts>) {
        let first_report = !self.last.contains_key(source);
        let last = self.last.entry(source.to_owned()).or_default();
        for (&feed, feed_counts) in counts {
            let series = std::iter::once((None, feed_counts.total)).chain(
                feed_counts
                    .keys
                    .iter()
                    .map(|(key, records)| (Some(key.clone()), *records)),
            );
            for (key, records) in series {
                if let Some(key) = &key {
                    let known = self.keys.entry(feed).or_default();
                    if !self.summed.contains_key(&(feed, Some(key.clone()))) {
                        known.push(key.clone());
                    }
                }
                let name = (feed, key);
                let increase = match last.get(&name) {
                    Some(&before) => records.checked_sub(before).unwrap_or(records),
                    None if first_report => 0,
                    None => records,
                };
                *self.summed.entry(name.clone()).or_default() += increase;
                last.insert(name, records);
            }
        }
    }

    /// A replica that stopped: its counts are no longer followed.
    pub fn forget(&mut self, source: &str) {
        self.last.remove(source);
    }

    /// The summed counts of the feeds in `own` (the feeds this replica judges).
    pub fn summed(&self, own: &HashMap<usize, FeedCounts>) -> HashMap<usize, FeedCounts> {
        own.iter()
            .map(|(&feed, own_counts)| {
                let count = |key: Option<&String>| {
                    self.summed
                        .get(&(feed, key.cloned()))
                        .copied()
                        .unwrap_or_default()
                };
                let keys = self
                    .keys
                    .get(&feed)
                    .map(|keys| {
                        keys.iter()
                            .map(|key| (key.clone(), count(Some(key))))
                            .collect()
                    })
                    .unwrap_or_default();
                let summed = FeedCounts {
                    total: count(None),
                    keys,
                    keys_left_out: own_counts.keys_left_out,
                };
                (feed, summed)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: u64, keys: &[(&str, u64)]) -> HashMap<usize, FeedCounts> {
        HashMap::from([(
            0,
            FeedCounts {
                total,
                keys: keys.iter().map(|(key, n)| (key.to_string(), *n)).collect(),
                keys_left_out: 0,
            },
        )])
    }

    #[test]
    fn the_sum_follows_every_replicas_increases_and_never_goes_back() {
        let mut replicas = ReplicaCounts::default();
        replicas.take(OWN, &counts(100, &[("acme", 100)]));
        replicas.take("b", &counts(5_000, &[("globex", 5_000)]));
        let own = counts(0, &[]);
        assert_eq!(
            replicas.summed(&own)[&0].total,
            0,
            "first reports are starts"
        );

        replicas.take(OWN, &counts(160, &[("acme", 160)]));
        replicas.take("b", &counts(5_040, &[("globex", 5_040)]));
        let summed = replicas.summed(&own);
        assert_eq!(summed[&0].total, 100, "60 here and 40 there");
        assert_eq!(
            summed[&0].keys,
            vec![("acme".to_owned(), 60), ("globex".to_owned(), 40)]
        );

        // b restarts (its count starts again), then stops; a new replica c joins.
        replicas.take("b", &counts(10, &[("globex", 10)]));
        replicas.forget("b");
        replicas.take("c", &counts(900, &[]));
        replicas.take("c", &counts(920, &[]));
        assert_eq!(replicas.summed(&own)[&0].total, 130);
    }
}
