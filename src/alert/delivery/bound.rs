//! The bound on what a notification sink holds while it cannot deliver.
//!
//! A sink that is down for hours during an incident storm would otherwise queue every change of
//! every key, in memory and in its outbox, without end. Past its `max_queued`, a sink keeps only
//! the newest state of each dedup key: a trigger followed by its resolve is dropped, the resolve
//! stays. The last state of a key is never dropped, so a page that should go out still goes out,
//! and what is kept stays in queue order. What is held is then at most `max_queued`, or one entry
//! per dedup key when more keys than that are pending (the keys themselves are bounded by
//! `max_keys`).

use std::collections::{HashMap, VecDeque};

/// Which entries of `queue` to drop, in ascending order: none while it holds at most
/// `max_queued`; past it, every entry with a newer entry of the same dedup key behind it.
pub(super) fn superseded_past_bound<T>(
    queue: &VecDeque<T>,
    max_queued: usize,
    dedup_key: impl Fn(&T) -> &str,
) -> Vec<usize> {
    if queue.len() <= max_queued {
        return Vec::new();
    }
    let mut newest: HashMap<&str, usize> = HashMap::with_capacity(queue.len());
    for (index, entry) in queue.iter().enumerate() {
        newest.insert(dedup_key(entry), index);
    }
    queue
        .iter()
        .enumerate()
        .filter(|(index, entry)| newest.get(dedup_key(entry)) != Some(index))
        .map(|(index, _)| index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(queue: &[(&'static str, &'static str)], max_queued: usize) -> Vec<&'static str> {
        let queue: VecDeque<(&str, &str)> = queue.iter().copied().collect();
        let dropped = superseded_past_bound(&queue, max_queued, |(key, _)| key);
        queue
            .iter()
            .enumerate()
            .filter(|(index, _)| !dropped.contains(index))
            .map(|(_, (_, state))| *state)
            .collect()
    }

    #[test]
    fn up_to_max_queued_every_notification_is_kept() {
        let queue = [("a", "a:critical"), ("a", "a:ok"), ("b", "b:warning")];
        assert_eq!(kept(&queue, 3), ["a:critical", "a:ok", "b:warning"]);
    }

    #[test]
    fn past_max_queued_only_the_newest_state_of_each_key_is_kept_in_queue_order() {
        let queue = [
            ("a", "a:warning"),
            ("b", "b:critical"),
            ("a", "a:critical"),
            ("c", "c:critical"),
            ("b", "b:ok"),
        ];
        assert_eq!(
            kept(&queue, 4),
            ["a:critical", "c:critical", "b:ok"],
            "b's trigger is superseded by its resolve; every key keeps its last state"
        );
    }

    #[test]
    fn the_last_state_of_a_key_is_never_dropped_even_past_the_bound() {
        let queue = [("a", "a"), ("b", "b"), ("c", "c")];
        assert_eq!(
            kept(&queue, 1),
            ["a", "b", "c"],
            "more keys than max_queued: one each, none silently dropped"
        );
    }
}
