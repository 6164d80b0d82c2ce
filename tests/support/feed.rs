//! The change feed as a subscriber sees it: the products topic read from the beginning with a
//! stock client (librdkafka, no consumer group: partitions assigned from their start), and
//! the state records the outbox holds, to compare the two.

use std::{collections::BTreeMap, time::Duration};

use platform::kafka::KafkaSettings;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use serde_json::Value;

use crate::{TestApp, poll::poll_until};

/// One record of the products topic.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    pub key: String,
    /// `None` for a tombstone.
    pub value: Option<Value>,
    pub headers: BTreeMap<String, String>,
}

/// Every record of `topic`, partition by partition from the beginning to the end it has now.
pub async fn read_all(kafka: &KafkaSettings, topic: &str) -> Vec<FeedRecord> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_all_blocking(&kafka, &topic))
        .await
        .expect("the reader does not panic")
}

fn read_all_blocking(kafka: &KafkaSettings, topic: &str) -> Vec<FeedRecord> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", format!("feed-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("the topic's metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut records = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .expect("the partition's watermarks");
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).expect("assigned");
        loop {
            let message = consumer
                .poll(TIMEOUT)
                .expect("records up to the high watermark arrive")
                .expect("a record, not an error");
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            records.push(FeedRecord {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                value: message
                    .payload()
                    .map(|p| serde_json::from_slice(p).expect("a state value is JSON")),
                headers,
            });
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    records
}

/// The last value per key: what a subscriber that read the topic from the beginning holds
/// (`None`: the last record is a tombstone).
pub fn last_values(records: &[FeedRecord]) -> BTreeMap<String, Option<Value>> {
    records
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect()
}

/// What the API shows for each of `ids`: the product, or `None` when it answers 404.
pub async fn api_view(app: &TestApp, ids: &[String]) -> BTreeMap<String, Option<Value>> {
    let mut view = BTreeMap::new();
    for id in ids {
        let response = app.get(&format!("/products/{id}")).await;
        let shown = match response.status().as_u16() {
            200 => Some(response.json().await.expect("a product")),
            404 => None,
            other => panic!("GET /products/{id} answered {other}"),
        };
        view.insert(id.clone(), shown);
    }
    view
}

/// Waits until the topic, read from the beginning, holds for each of `ids` exactly what the
/// API shows; returns the records.
pub async fn wait_until_feed_matches_api(
    app: &TestApp,
    kafka: &KafkaSettings,
    ids: &[String],
    within: Duration,
) -> Vec<FeedRecord> {
    let topic = kafka.topics().products();
    poll_until(
        "the products topic to hold what the API shows",
        within,
        || async {
            let records = read_all(kafka, &topic).await;
            let last = last_values(&records);
            let shown = api_view(app, ids).await;
            let differing: Vec<_> = ids
                .iter()
                .filter(|id| last.get(*id) != shown.get(*id))
                .map(|id| (id.clone(), last.get(id).cloned(), shown.get(id).cloned()))
                .collect();
            if differing.is_empty() {
                Ok(records)
            } else {
                Err(differing)
            }
        },
    )
    .await
}

/// The state records of `product_id` in the outbox, in the order they were written:
/// `(ce_id, value)`, the value `None` for a tombstone.
pub async fn outbox_states(app: &TestApp, product_id: &str) -> Vec<(String, Option<Value>)> {
    let db = app.db().await;
    db.query(
        "SELECT event_id::text, payload FROM outbox \
         WHERE product_id = $1 AND event_type = $2 ORDER BY id",
        &[
            &product_id.parse::<i64>().unwrap(),
            &events::EventType::ProductState.as_str(),
        ],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| {
        let value: Value = row.get(1);
        (row.get(0), (!value.is_null()).then_some(value))
    })
    .collect()
}
