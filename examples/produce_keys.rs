//! Produces `N` records to a topic, each with its own key (`tenant-0000000` ...), for the
//! cardinality benchmark (`bench/cardinality.sh`). Usage: `produce_keys BROKERS TOPIC N`.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(topic), Some(count)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: produce_keys BROKERS TOPIC N");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("N is a number");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    for index in 0..count {
        let key = format!("tenant-{index:07}");
        let payload = format!("{{\"n\":{index}}}");
        let mut record = BaseRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .timestamp(now_ms);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    // Queue full: let deliveries drain.
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(600))
        .expect("every record delivered");
}
