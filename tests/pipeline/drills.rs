//! Fault drills against real processes: the broker frozen mid-burst, the api started while
//! the broker is away. Each states its recovery bound and asserts nothing is lost.

use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::{
    broker::OwnBroker,
    pipeline::{Pipeline, spawn_pipeline_with, test_kafka},
};

/// How long the broker stays frozen: the fault itself, not a wait for something.
const BROKER_PAUSE: Duration = Duration::from_secs(20);
/// Every product is compressed within this of the broker's return.
const RECOVERY: Duration = Duration::from_secs(60);

const SOURCES: [&str; 4] = ["rocket.jpg", "chelsea.png", "coffee.png", "astronaut.png"];

async fn create_burst(pipeline: &Pipeline, count: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let source = SOURCES[i % SOURCES.len()];
        let url = pipeline.images.url(&format!("/img/{source}?{tag}{i}"));
        ids.push(pipeline.create_product(&[url]).await);
    }
    ids
}

async fn wait_all_done(pipeline: &Pipeline, ids: &[String], since: Instant, bound: Duration) {
    for id in ids {
        let left = bound.saturating_sub(since.elapsed());
        let product: Value = pipeline
            .wait_for(
                id,
                &format!("compressed within {bound:?} of the broker's return"),
                left,
                |p| p["processing_status"] == "done",
            )
            .await;
        assert!(product["compressed_product_images"][0].is_string());
    }
}

#[tokio::test]
async fn a_burst_is_processed_within_a_minute_of_a_20_second_broker_pause() {
    let broker = OwnBroker::start().await;
    let mut kafka = test_kafka(&broker.brokers);
    kafka.partitions = 3;
    let mut pipeline = spawn_pipeline_with(kafka).await;
    let warm = create_burst(&pipeline, 1, "warm").await;
    wait_all_done(&pipeline, &warm, Instant::now(), RECOVERY).await;

    // A burst: the broker freezes while its events are being published and consumed …
    let mut ids = create_burst(&pipeline, 12, "before").await;
    broker.pause();
    // … and the api goes on taking products meanwhile (the outbox holds their events).
    ids.extend(create_burst(&pipeline, 12, "during").await);
    tokio::time::sleep(BROKER_PAUSE).await;
    broker.unpause();
    let back = Instant::now();

    wait_all_done(&pipeline, &ids, back, RECOVERY).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn the_api_starts_and_takes_writes_while_the_broker_is_away() {
    let mut broker = OwnBroker::start().await;
    broker.kill();
    let started = Instant::now();
    let mut pipeline = spawn_pipeline_with(test_kafka(&broker.brokers)).await;
    // Ready on the database alone, within seconds.
    let ready = pipeline.app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the api took {:?} to start without its broker",
        started.elapsed()
    );
    let ids = create_burst(&pipeline, 3, "away").await;

    broker.resume().await;
    let back = Instant::now();
    wait_all_done(&pipeline, &ids, back, RECOVERY).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn the_api_started_while_the_broker_is_frozen_is_ready_at_once() {
    let broker = OwnBroker::start().await;
    broker.pause();
    let kafka = test_kafka(&broker.brokers);
    let app = tokio::time::timeout(
        Duration::from_secs(15),
        system_tests::spawn_app_with(move |s| s.kafka = Some(kafka)),
    )
    .await
    .expect("the api starts within 15 s while its broker is frozen");
    assert_eq!(app.get("/readyz").await.status(), 200);
    let user = app.create_user("frozen").await;
    app.create_product(&user, "written while frozen", 1.0).await;
    broker.unpause();
}
