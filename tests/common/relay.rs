//! A relay between two topics, as a service or MirrorMaker 2 would run one.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Message;

use super::{now_ms, producer};

/// A relay in consumer group `relay` on `from_brokers`: copies every record of `from` to `to` on
/// `to_brokers` with its key and timestamp, committing as it goes. While `paused` it neither
/// reads nor commits (a stalled consumer); `copied` is the newest timestamp it copied.
pub struct Relay {
    pub paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub copied: Arc<AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(
        from_brokers: &str,
        from: &'static str,
        to_brokers: &str,
        to: &'static str,
    ) -> Relay {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", from_brokers)
            .set("group.id", "relay")
            .set("auto.offset.reset", "earliest")
            // A restarted relay takes its partitions back within seconds, as a deployment would.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[from]).unwrap();
        let producer = producer(to_brokers);
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let copied = Arc::new(AtomicI64::new(0));
        let (paused_flag, stop_flag, copied_ts) = (paused.clone(), stop.clone(), copied.clone());
        let thread = std::thread::spawn(move || {
            let mut last_commit = Instant::now();
            while !stop_flag.load(Ordering::Relaxed) {
                if paused_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    let timestamp = message.timestamp().to_millis().unwrap_or_else(now_ms);
                    let mut record = BaseRecord::to(to)
                        .payload(message.payload().unwrap_or_default())
                        .timestamp(timestamp);
                    if let Some(key) = message.key() {
                        record = record.key(key);
                    }
                    let _ = producer.send(record);
                    producer.poll(Duration::ZERO);
                    copied_ts.fetch_max(timestamp, Ordering::Relaxed);
                }
                if last_commit.elapsed() >= Duration::from_millis(300) {
                    let _ = producer.flush(Duration::from_secs(5));
                    let _ = consumer.commit_consumer_state(CommitMode::Async);
                    last_commit = Instant::now();
                }
            }
            let _ = producer.flush(Duration::from_secs(5));
        });
        Relay {
            paused,
            stop,
            copied,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
