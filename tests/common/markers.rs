//! Transaction markers written by hand: Tansu 0.6 stores control batches but does not route
//! `EndTxn`, so librdkafka's transactional producer cannot commit against it. A commit marker
//! sent as a raw `Produce` lands in the log as a real broker's coordinator would write it: one
//! offset that every consumer skips.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Batch attributes: transactional (bit 4) and control (bit 5).
const CONTROL_TRANSACTIONAL: i16 = 0x30;
/// Control record type of a commit marker (0 is abort).
const COMMIT: i16 = 1;

/// Appends one transaction commit marker to `topic`/`partition` through the Kafka protocol
/// (`Produce` v3, acks=all); panics with the broker's error code if it refuses.
pub fn produce_commit_marker(brokers: &str, topic: &str, partition: i32, timestamp_ms: i64) {
    let batch = control_batch(COMMIT, timestamp_ms);
    let mut body = Vec::new();
    body.extend(0i16.to_be_bytes()); // api key: Produce
    body.extend(3i16.to_be_bytes()); // api version
    body.extend(1i32.to_be_bytes()); // correlation id
    put_string(&mut body, "freshwatch-test");
    body.extend((-1i16).to_be_bytes()); // transactional id: null
    body.extend((-1i16).to_be_bytes()); // acks: all
    body.extend(10_000i32.to_be_bytes()); // timeout
    body.extend(1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.extend(1i32.to_be_bytes()); // one partition
    body.extend(partition.to_be_bytes());
    body.extend((batch.len() as i32).to_be_bytes());
    body.extend(&batch);
    let mut stream = TcpStream::connect(brokers).expect("broker accepts a connection");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut answer).unwrap();
    // correlation id, topics count, topic name, partitions count, partition index, error code.
    let name_end = 4 + 4 + 2 + topic.len();
    let error_at = name_end + 4 + 4;
    let error_code = i16::from_be_bytes([answer[error_at], answer[error_at + 1]]);
    assert_eq!(error_code, 0, "the broker refused the commit marker");
}

/// A v2 record batch holding one control record.
fn control_batch(kind: i16, timestamp_ms: i64) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend(0i16.to_be_bytes()); // version
    key.extend(kind.to_be_bytes());
    let mut value = Vec::new();
    value.extend(0i16.to_be_bytes()); // version
    value.extend(0i32.to_be_bytes()); // coordinator epoch
    let mut record = Vec::new();
    record.push(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, key.len() as i64);
    record.extend(&key);
    put_varint(&mut record, value.len() as i64);
    record.extend(&value);
    put_varint(&mut record, 0); // headers
                                // Everything the CRC covers: from the attributes to the end.
    let mut checked = Vec::new();
    checked.extend(CONTROL_TRANSACTIONAL.to_be_bytes());
    checked.extend(0i32.to_be_bytes()); // last offset delta
    checked.extend(timestamp_ms.to_be_bytes()); // base timestamp
    checked.extend(timestamp_ms.to_be_bytes()); // max timestamp
    checked.extend((-1i64).to_be_bytes()); // producer id
    checked.extend((-1i16).to_be_bytes()); // producer epoch
    checked.extend((-1i32).to_be_bytes()); // base sequence
    checked.extend(1i32.to_be_bytes()); // records
    put_varint(&mut checked, record.len() as i64);
    checked.extend(&record);
    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // base offset: the broker assigns it
    batch.extend(((4 + 1 + 4 + checked.len()) as i32).to_be_bytes()); // batch length
    batch.extend((-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c(&checked).to_be_bytes());
    batch.extend(&checked);
    batch
}

fn put_string(buffer: &mut Vec<u8>, text: &str) {
    buffer.extend((text.len() as i16).to_be_bytes());
    buffer.extend(text.as_bytes());
}

/// Zig-zag varint, as record fields are encoded.
fn put_varint(buffer: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buffer.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buffer.push(zigzag as u8);
}

/// CRC-32C (Castagnoli), bit by bit: a few bytes per test, no table needed.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
