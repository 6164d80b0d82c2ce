//! Dead letters: list them, and redrive them to the product-events topic.
//!
//! `list` reads the whole dead-letter topic without joining a group, so it changes nothing.
//! `redrive` reads from where the last redrive stopped (its own consumer group), republishes
//! each record's value and event headers (without the retry bookkeeping) to the main topic,
//! and commits once the broker acknowledged; running it twice never redrives a record twice.

use std::{collections::HashMap, io::Write, time::Duration};

use events::headers;
use platform::kafka::KafkaSettings;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};

use crate::job::RawRecord;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Assigns every partition of `topic` at `start` offsets and calls `each` for every record
/// up to the high watermarks as they were at the start.
fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    start: impl Fn(i32, i64) -> i64,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        let from = start(partition, low).max(low);
        if from < high {
            remaining.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "timed out reading {topic}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        each(&message)?;
        if let Some(high) = remaining.get(&message.partition()) {
            if message.offset() + 1 >= *high {
                remaining.remove(&message.partition());
            }
        }
    }
    Ok(())
}

fn base_consumer(kafka: &KafkaSettings, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(kafka
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?)
}

/// Writes one JSON line per dead letter.
pub async fn list(kafka: &KafkaSettings, out: &mut impl Write) -> anyhow::Result<()> {
    let topic = kafka.topics().image_dead_letters();
    let kafka = kafka.clone();
    let lines = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let consumer = base_consumer(&kafka, &format!("dlq-list-{}", std::process::id()))?;
        let mut lines = Vec::new();
        read_to_end(
            &consumer,
            &topic,
            |_, low| low,
            |message| {
                let raw = RawRecord::of(message);
                let line = serde_json::json!({
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "product_id": raw.key.as_deref().map(String::from_utf8_lossy),
                    "event_type": raw.header(headers::CE_TYPE),
                    "event_id": raw.header(headers::CE_ID),
                    "reason": raw.header(headers::ERROR),
                    "kind": raw.header(headers::ERROR_KIND),
                    "attempts": raw.header(headers::ATTEMPT),
                    "origin": format!(
                        "{}/{}/{}",
                        raw.header(headers::ORIGIN_TOPIC).unwrap_or_default(),
                        raw.header(headers::ORIGIN_PARTITION).unwrap_or_default(),
                        raw.header(headers::ORIGIN_OFFSET).unwrap_or_default()
                    ),
                    "first_failure_at": raw.header(headers::FIRST_FAILURE_AT),
                });
                lines.push(line.to_string());
                Ok(())
            },
        )?;
        Ok(lines)
    })
    .await??;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Republishes the dead letters not redriven yet; returns how many.
pub async fn redrive(kafka: &KafkaSettings, group: &str) -> anyhow::Result<usize> {
    let topics = kafka.topics();
    let source = topics.image_dead_letters();
    let target = topics.product_events();
    let producer: FutureProducer = kafka.producer(platform::kafka::DELIVERY_TIMEOUT)?;
    let consumer = base_consumer(kafka, group)?;
    let (consumer, records) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut committed = HashMap::new();
        let metadata = consumer.fetch_metadata(Some(&source), TIMEOUT)?;
        let mut list = TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                list.add_partition(&source, p.id());
            }
        }
        for element in consumer.committed_offsets(list, TIMEOUT)?.elements() {
            if let Offset::Offset(offset) = element.offset() {
                committed.insert(element.partition(), offset);
            }
        }
        let mut records = Vec::new();
        read_to_end(
            &consumer,
            &source,
            |p, low| *committed.get(&p).unwrap_or(&low),
            |message| {
                records.push((
                    message.partition(),
                    message.offset(),
                    RawRecord::of(message),
                ));
                Ok(())
            },
        )?;
        Ok((consumer, records))
    })
    .await??;
    let mut offsets = TopicPartitionList::new();
    for (partition, offset, raw) in &records {
        let mut headers = raw.event_headers();
        // So the processor knows the record may be older than its product's latest state.
        headers.push((
            headers::REDRIVEN_AT.to_owned(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into_bytes(),
        ));
        let headers = platform::kafka::owned_headers(headers);
        let mut record = FutureRecord::to(&target)
            .payload(&raw.value)
            .headers(headers);
        if let Some(key) = &raw.key {
            record = record.key(key);
        }
        producer
            .send(record, Timeout::After(TIMEOUT))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("Failed to redrive {partition}/{offset}: {e}"))?;
        offsets.add_partition_offset(
            &topics.image_dead_letters(),
            *partition,
            Offset::Offset(offset + 1),
        )?;
    }
    if !records.is_empty() {
        consumer.commit(&offsets, CommitMode::Sync)?;
    }
    Ok(records.len())
}
