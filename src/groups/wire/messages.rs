//! The requests the group watcher's own client sends, and their answers: ApiVersions,
//! FindCoordinator, OffsetFetch (one group per request up to v5; many from v8, KIP-709),
//! ListOffsets and OffsetCommit (for benchmarks and tests). Only the versions listed in
//! [`SPOKEN`] are written and read; the highest one both sides speak is used.

use std::collections::HashMap;

use super::codec::{Decoder, Encoder};
use super::WireError;

pub const FETCH: i16 = 1;
pub const LIST_OFFSETS: i16 = 2;
pub const OFFSET_COMMIT: i16 = 8;
pub const OFFSET_FETCH: i16 = 9;
pub const FIND_COORDINATOR: i16 = 10;
pub const API_VERSIONS: i16 = 18;

/// The versions this client speaks, per API: classic (non-flexible) encodings, and OffsetFetch
/// v8, the first that names many groups in one request.
const SPOKEN: [(i16, &[i16]); 5] = [
    (FETCH, &[4]),
    (LIST_OFFSETS, &[1, 2, 3, 4, 5]),
    (OFFSET_COMMIT, &[2, 3, 4, 5]),
    (OFFSET_FETCH, &[1, 2, 3, 4, 5, 8]),
    (FIND_COORDINATOR, &[0, 1, 2]),
];

/// The version of each API used on one connection; `None` where the broker speaks none of ours.
#[derive(Debug, Clone, Copy, Default)]
pub struct Versions {
    pub fetch: Option<i16>,
    pub list_offsets: Option<i16>,
    pub offset_commit: Option<i16>,
    pub offset_fetch: Option<i16>,
    pub find_coordinator: Option<i16>,
}

impl Versions {
    /// The highest version of each API both sides speak, from an ApiVersions v0 answer.
    pub fn negotiate(answer: &[u8]) -> Result<Versions, WireError> {
        let mut decoder = Decoder::new(answer);
        let code = decoder.i16()?;
        if code != 0 {
            return Err(WireError::Broker {
                api: "ApiVersions",
                code,
            });
        }
        let mut ranges: HashMap<i16, (i16, i16)> = HashMap::new();
        for _ in 0..decoder.array_len()? {
            let key = decoder.i16()?;
            let min = decoder.i16()?;
            let max = decoder.i16()?;
            ranges.insert(key, (min, max));
        }
        let pick = |api: i16| -> Option<i16> {
            let (min, max) = ranges.get(&api)?;
            let spoken = SPOKEN.iter().find(|(key, _)| *key == api)?.1;
            spoken
                .iter()
                .rev()
                .copied()
                .find(|version| (*min..=*max).contains(version))
        };
        Ok(Versions {
            fetch: pick(FETCH),
            list_offsets: pick(LIST_OFFSETS),
            offset_commit: pick(OFFSET_COMMIT),
            offset_fetch: pick(OFFSET_FETCH),
            find_coordinator: pick(FIND_COORDINATOR),
        })
    }
}

/// Whether a request of this API and version uses the flexible (KIP-482) encoding and headers.
pub fn flexible(api: i16, version: i16) -> bool {
    api == OFFSET_FETCH && version >= 6
}

/// A coordinator as FindCoordinator names it.
pub struct Coordinator {
    pub node_id: i32,
}

pub fn find_coordinator_request(version: i16, group_id: &str) -> Vec<u8> {
    let mut encoder = Encoder::default();
    encoder.string(group_id);
    if version >= 1 {
        encoder.i8(0); // key type: group
    }
    encoder.bytes
}

pub fn find_coordinator_answer(version: i16, answer: &[u8]) -> Result<Coordinator, WireError> {
    let mut decoder = Decoder::new(answer);
    if version >= 1 {
        decoder.i32()?; // throttle
    }
    let code = decoder.i16()?;
    if version >= 1 {
        decoder.nullable_string()?;
    }
    let node_id = decoder.i32()?;
    if code != 0 {
        return Err(WireError::Broker {
            api: "FindCoordinator",
            code,
        });
    }
    Ok(Coordinator { node_id })
}

/// One group's part of an OffsetFetch: the topics and how many partitions each.
pub struct OffsetFetchGroup<'a> {
    pub group_id: &'a str,
    pub topics: &'a [(String, i32)],
}

/// One partition's answer: (partition, committed offset, error code).
pub type PartitionOffset = (i32, i64, i16);

/// One group's committed offsets as answered: its error, and per topic its partitions'.
#[derive(Debug, Default)]
pub struct GroupOffsets {
    pub group_id: String,
    pub error: i16,
    pub topics: Vec<(String, Vec<PartitionOffset>)>,
}

/// An OffsetFetch naming `groups`: exactly one below v8.
pub fn offset_fetch_request(version: i16, groups: &[OffsetFetchGroup<'_>]) -> Vec<u8> {
    let mut encoder = Encoder::default();
    if version < 8 {
        debug_assert_eq!(groups.len(), 1, "one group per request below v8");
        let group = &groups[0];
        encoder.string(group.group_id);
        encoder.array_len(Some(group.topics.len()));
        for (topic, partitions) in group.topics {
            encoder.string(topic);
            encoder.array_len(Some(usize::try_from(*partitions).unwrap_or(0)));
            for partition in 0..*partitions {
                encoder.i32(partition);
            }
        }
        return encoder.bytes;
    }
    encoder.compact_array_len(Some(groups.len()));
    for group in groups {
        encoder.compact_string(group.group_id);
        encoder.compact_array_len(Some(group.topics.len()));
        for (topic, partitions) in group.topics {
            encoder.compact_string(topic);
            encoder.compact_array_len(Some(usize::try_from(*partitions).unwrap_or(0)));
            for partition in 0..*partitions {
                encoder.i32(partition);
            }
            encoder.no_tags();
        }
        encoder.no_tags();
    }
    encoder.i8(0); // require_stable: no; a pending transaction's commit is not waited for
    encoder.no_tags();
    encoder.bytes
}

/// The groups an OffsetFetch answer tells of. Below v8 the one group has no id in the answer:
/// it is `asked`.
pub fn offset_fetch_answer(
    version: i16,
    asked: &str,
    answer: &[u8],
) -> Result<Vec<GroupOffsets>, WireError> {
    let mut decoder = Decoder::new(answer);
    if version >= 3 {
        decoder.i32()?; // throttle
    }
    if version < 8 {
        let mut group = GroupOffsets {
            group_id: asked.to_owned(),
            ..GroupOffsets::default()
        };
        for _ in 0..decoder.array_len()? {
            let topic = decoder.string()?.to_owned();
            let mut partitions = Vec::new();
            for _ in 0..decoder.array_len()? {
                let partition = decoder.i32()?;
                let offset = decoder.i64()?;
                if version >= 5 {
                    decoder.i32()?; // leader epoch
                }
                decoder.nullable_string()?;
                let code = decoder.i16()?;
                partitions.push((partition, offset, code));
            }
            group.topics.push((topic, partitions));
        }
        if version >= 2 {
            group.error = decoder.i16()?;
        }
        return Ok(vec![group]);
    }
    let mut groups = Vec::new();
    for _ in 0..decoder.compact_array_len()? {
        let mut group = GroupOffsets {
            group_id: decoder.compact_string()?.to_owned(),
            ..GroupOffsets::default()
        };
        for _ in 0..decoder.compact_array_len()? {
            let topic = decoder.compact_string()?.to_owned();
            let mut partitions = Vec::new();
            for _ in 0..decoder.compact_array_len()? {
                let partition = decoder.i32()?;
                let offset = decoder.i64()?;
                decoder.i32()?; // leader epoch
                decoder.compact_nullable_string()?;
                let code = decoder.i16()?;
                decoder.skip_tags()?;
                partitions.push((partition, offset, code));
            }
            decoder.skip_tags()?;
            group.topics.push((topic, partitions));
        }
        group.error = decoder.i16()?;
        decoder.skip_tags()?;
        groups.push(group);
    }
    Ok(groups)
}

/// ListOffsets' special timestamps.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// A ListOffsets for `partitions` (topic, its partitions) at `timestamp`, read_committed like
/// the fetcher (from v2: below, the high watermark).
pub fn list_offsets_request(
    version: i16,
    partitions: &[(&str, Vec<i32>)],
    timestamp: i64,
) -> Vec<u8> {
    let mut encoder = Encoder::default();
    encoder.i32(-1); // replica id: a client
    if version >= 2 {
        encoder.i8(1); // read_committed
    }
    encoder.array_len(Some(partitions.len()));
    for (topic, indexes) in partitions {
        encoder.string(topic);
        encoder.array_len(Some(indexes.len()));
        for partition in indexes {
            encoder.i32(*partition);
            if version >= 4 {
                encoder.i32(-1); // current leader epoch: not checked
            }
            encoder.i64(timestamp);
        }
    }
    encoder.bytes
}

/// The offsets a ListOffsets answer gives, per (topic, partition); a partition answered with
/// an error is left out (its last reading stands).
pub fn list_offsets_answer(
    version: i16,
    answer: &[u8],
    into: &mut HashMap<(String, i32), i64>,
) -> Result<(), WireError> {
    let mut decoder = Decoder::new(answer);
    if version >= 2 {
        decoder.i32()?; // throttle
    }
    for _ in 0..decoder.array_len()? {
        let topic = decoder.string()?;
        for _ in 0..decoder.array_len()? {
            let partition = decoder.i32()?;
            let code = decoder.i16()?;
            decoder.i64()?; // timestamp
            let offset = decoder.i64()?;
            if version >= 4 {
                decoder.i32()?; // leader epoch
            }
            if code == 0 && offset >= 0 {
                into.insert((topic.to_owned(), partition), offset);
            }
        }
    }
    Ok(())
}

/// A commit as an outsider (generation -1, no member): what an admin tool's reset does.
pub fn offset_commit_request(
    version: i16,
    group_id: &str,
    offsets: &[(String, Vec<(i32, i64)>)],
) -> Vec<u8> {
    let mut encoder = Encoder::default();
    encoder.string(group_id);
    encoder.i32(-1); // generation
    encoder.string(""); // member id
    if version <= 4 {
        encoder.i64(-1); // retention: the broker's
    }
    encoder.array_len(Some(offsets.len()));
    for (topic, partitions) in offsets {
        encoder.string(topic);
        encoder.array_len(Some(partitions.len()));
        for (partition, offset) in partitions {
            encoder.i32(*partition);
            encoder.i64(*offset);
            encoder.i16(-1); // null metadata
        }
    }
    encoder.bytes
}

/// The first error an OffsetCommit answer reports, if any.
pub fn offset_commit_answer(version: i16, answer: &[u8]) -> Result<(), WireError> {
    let mut decoder = Decoder::new(answer);
    if version >= 3 {
        decoder.i32()?; // throttle
    }
    for _ in 0..decoder.array_len()? {
        decoder.string()?;
        for _ in 0..decoder.array_len()? {
            decoder.i32()?;
            let code = decoder.i16()?;
            if code != 0 {
                return Err(WireError::Broker {
                    api: "OffsetCommit",
                    code,
                });
            }
        }
    }
    Ok(())
}

/// The name of a Kafka error code this client meets, for messages people read.
pub fn error_name(code: i16) -> &'static str {
    match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        69 => "GROUP_ID_NOT_FOUND",
        _ => "see the Kafka protocol's error codes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v8_offset_fetch_answer_tells_each_group_apart() {
        let mut encoder = Encoder::default();
        encoder.i32(0); // throttle
        encoder.compact_array_len(Some(2));
        for (group, code) in [("a", 0i16), ("b", 30)] {
            encoder.compact_string(group);
            encoder.compact_array_len(Some(1));
            encoder.compact_string("orders");
            encoder.compact_array_len(Some(1));
            encoder.i32(0);
            encoder.i64(42);
            encoder.i32(-1);
            encoder.compact_array_len(None);
            encoder.i16(0);
            encoder.no_tags();
            encoder.no_tags();
            encoder.i16(code);
            encoder.no_tags();
        }
        encoder.no_tags();
        let groups = offset_fetch_answer(8, "", &encoder.bytes).expect("decoded");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].group_id, "a");
        assert_eq!(groups[0].topics[0].1, vec![(0, 42, 0)]);
        assert_eq!(groups[1].error, 30);
    }
}
