//! Watched consumer groups from outside: commit as a group, read `/api/v1/groups`, and the
//! pages about one group.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::receiver::WebhookReceiver;
use super::FreshwatchProcess;

/// Commits `offset` on `topic` partition 0 as `group_id`, without joining (an `assign()`
/// consumer, as Flink's).
pub fn commit_as(brokers: &str, group_id: &str, topic: &str, offset: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

pub async fn group_view(
    freshwatch: &FreshwatchProcess,
    group: &str,
    topic: &str,
) -> Option<serde_json::Value> {
    let response = reqwest::get(format!("{}/api/v1/groups", freshwatch.base_url))
        .await
        .ok()?;
    let views: Vec<serde_json::Value> = response.json().await.ok()?;
    views
        .into_iter()
        .find(|view| view["group"] == group && view["topic"] == topic)
}

/// `(status, severity, summary)` of every page about `group`'s `alertname`.
pub fn group_pages(
    receiver: &WebhookReceiver,
    alertname: &str,
    group: &str,
) -> Vec<(String, String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|request| {
            request.json["alertname"] == alertname
                && request.json["dedup_key"]
                    .as_str()
                    .is_some_and(|key| key.contains(&format!("/{alertname}/{group}/")))
        })
        .map(|request| {
            let text = |field: &str| request.json[field].as_str().unwrap_or_default().to_owned();
            (text("status"), text("severity"), text("summary"))
        })
        .collect()
}
