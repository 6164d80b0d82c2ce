//! Measures the change feed's publishing latency against a running stack (`make run`): the
//! time from a change's commit to its state record on the products topic. Run it with
//! `scripts/measure-feed-latency.sh [COUNT]`.
//!
//! It creates a user and a product, then patches the product COUNT times, one after another;
//! a consumer assigned to the end of the products topic waits for each state. Per change it
//! records, on this machine's one clock:
//! - relay: the record's timestamp (set by the api's producer when it sends) minus `ce_time`
//!   (taken in the change's transaction, just before commit): commit to publish;
//! - on topic: when this consumer received the record minus the `PATCH` response, an upper
//!   bound of what a subscriber polling the topic waits after the API answered.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use serde_json::{Value, json};

fn millis_since_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(50);
    let base = format!(
        "http://{}",
        std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into())
    );
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let prefix = std::env::var("KAFKA_TOPIC_PREFIX").unwrap_or_else(|_| "catalog.".into());
    let topic = format!("{prefix}products");
    let http = system_tests::auth::seller_client().build()?;

    let name = format!(
        "feed-latency-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let user: Value = http
        .post(format!("{base}/users"))
        .json(&json!({"username": name, "email": format!("{name}@example.com")}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let created: Value = http
        .post(format!("{base}/products"))
        .json(&json!({
            "user_id": user["user_id"], "product_name": "latency 0", "product_price": 1,
            "product_images": ["https://images.example.com/latency.jpg"],
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["product_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("feed-latency-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(&topic, partition.id(), Offset::End)?;
    }
    anyhow::ensure!(
        assignment.count() > 0,
        "no topic {topic}: is `make run` up?"
    );
    consumer.assign(&assignment)?;
    // Let the assignment take effect before the first change.
    let _ = consumer.poll(Duration::from_millis(500));

    let (mut relay, mut on_topic) = (Vec::new(), Vec::new());
    for i in 1..=count {
        let wanted = format!("latency {i}");
        let response = http
            .patch(format!("{base}/products/{id}"))
            .json(&json!({"product_name": wanted}))
            .send()
            .await?
            .error_for_status()?;
        let answered = Instant::now();
        drop(response);
        let deadline = answered + Duration::from_secs(30);
        loop {
            anyhow::ensure!(Instant::now() < deadline, "no record for {wanted} in 30 s");
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message?;
            let received = Instant::now();
            let value: Option<Value> = message.payload().map(serde_json::from_slice).transpose()?;
            if message.key() != Some(id.as_bytes())
                || value.as_ref().map(|v| v["product_name"].as_str()) != Some(Some(&wanted))
            {
                continue;
            }
            let ce_time = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_time").and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.timestamp_micros() as f64 / 1000.0)
                .unwrap_or_else(millis_since_epoch);
            let sent = message.timestamp().to_millis().unwrap_or_default() as f64;
            relay.push((sent - ce_time).max(0.0));
            on_topic.push(received.duration_since(answered).as_secs_f64() * 1000.0);
            break;
        }
    }
    let _ = http.delete(format!("{base}/products/{id}")).send().await;
    for (what, values) in [
        ("commit to publish (relay)", &mut relay),
        ("PATCH answered to record received", &mut on_topic),
    ] {
        values.sort_by(f64::total_cmp);
        println!(
            "{what}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} changes)",
            percentile(values, 0.5),
            percentile(values, 0.95),
            values[values.len() - 1],
            values.len()
        );
    }
    Ok(())
}
