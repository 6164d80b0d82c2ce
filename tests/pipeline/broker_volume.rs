//! The local broker stays fast as it fills. tansu keeps record headers in an SQLite table
//! that every fetch reads; without the index the stack gives it (scripts/tansu-index.py) a
//! fetch's cost grows with every header ever written, and at some 32,000 of our records
//! the broker stopped answering (issue 22). This writes 20,000 records carrying as many
//! headers as our events do and compares the cost of fetching the newest records at the
//! start and at the end.

use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use system_tests::broker::OwnBroker;

const RECORDS: usize = 20_000;
/// Records fetched per measurement, the newest of the topic.
const WINDOW: i64 = 200;

/// The headers of one of our events: CloudEvents attributes and trace context.
fn headers(i: usize) -> OwnedHeaders {
    let id = format!("{i:08}-7c1e-4b7a-9a57-1f2e3d4c5b6a");
    let time = format!("2026-12-04T12:{:02}:{:02}Z", (i / 60) % 60, i % 60);
    let subject = format!("products/{i}");
    let fields: [(&str, &str); 12] = [
        ("ce_specversion", "1.0"),
        ("ce_id", &id),
        ("ce_source", "/catalog/api"),
        ("ce_type", "com.example.catalog.product.created.v1"),
        ("ce_time", &time),
        ("ce_subject", &subject),
        (
            "ce_dataschema",
            "https://example.com/schemas/product-created.v1.json",
        ),
        ("content-type", "application/json"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "catalog=1"),
        ("ce_partitionkey", &subject),
        ("ce_revision", "1"),
    ];
    fields
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        })
}

async fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let payload = vec![b'x'; 300];
    for chunk in range.collect::<Vec<_>>().chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        let sends = chunk.iter().zip(&keys).map(|(i, key)| {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(&payload)
                .headers(headers(*i));
            producer.send(record, Duration::from_secs(60))
        });
        for sent in futures_util::future::join_all(sends).await {
            sent.map_err(|(error, _)| error)
                .expect("the broker takes the record");
        }
    }
}

/// The median time, over five tries, from asking for the `WINDOW` newest records of the
/// topic to having them all.
fn fetch_cost(brokers: &str, topic: &str, end: i64) -> Duration {
    let mut costs: Vec<Duration> = (0..5)
        .map(|_| {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("group.id", "volume-probe")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let mut wanted = TopicPartitionList::new();
            wanted
                .add_partition_offset(topic, 0, Offset::Offset(end - WINDOW))
                .unwrap();
            // Metadata and the connection first, so only the fetches are timed.
            consumer
                .fetch_watermarks(topic, 0, Duration::from_secs(30))
                .unwrap();
            let start = Instant::now();
            consumer.assign(&wanted).unwrap();
            let mut last = -1;
            while last < end - 1 {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the broker answers a fetch within a minute"
                );
                if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                    last = message.expect("a record").offset();
                }
            }
            start.elapsed()
        })
        .collect();
    costs.sort();
    costs[costs.len() / 2]
}

#[tokio::test]
async fn fetching_the_newest_records_costs_the_same_after_20_000_records() {
    let broker = OwnBroker::start().await;
    let topic = "volume";
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    system_tests::pipeline::test_kafka(&broker.brokers)
        .ensure_topics(&[topic.to_owned()])
        .await
        .expect("the topic is created");

    let first = 1_000;
    produce(&producer, topic, 0..first).await;
    let brokers = broker.brokers.clone();
    let early = tokio::task::spawn_blocking(move || fetch_cost(&brokers, topic, first as i64))
        .await
        .unwrap();

    produce(&producer, topic, first..RECORDS).await;
    let brokers = broker.brokers.clone();
    let late = tokio::task::spawn_blocking(move || fetch_cost(&brokers, topic, RECORDS as i64))
        .await
        .unwrap();

    eprintln!(
        "fetching the newest {WINDOW} records: {early:?} at {first} records, {late:?} at {RECORDS}"
    );
    // Half a tick of slack: both are a few tens of milliseconds with the index.
    assert!(
        late <= early * 2 + Duration::from_millis(50),
        "fetch cost grew with the data: {early:?} at {first} records, {late:?} at {RECORDS}"
    );
}
