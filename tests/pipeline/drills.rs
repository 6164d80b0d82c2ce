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

#[tokio::test]
async fn a_consumer_that_stops_making_progress_is_reported_and_recreated() {
    let pipeline = system_tests::pipeline::spawn_pipeline_tuned(|s| {
        s.jobs_in_flight = 1;
        s.stall_after = Duration::from_secs(3);
        // The hanging download below must outlast the stall limit, not its own timeout.
        s.fetch.total_timeout = Duration::from_secs(300);
    })
    .await;
    // The image server holds the first request for /slow/… until the test ends: the only
    // slot stays busy and the next product waits behind it, unconsumed.
    let stuck = pipeline
        .create_product(&[pipeline.images.url("/slow/rocket.jpg")])
        .await;
    let waiting = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;

    // Readiness names the stalled consumer from the moment it is noticed …
    let health = format!("http://{}/readyz", pipeline.processor_http.unwrap());
    let http = pipeline.app.http.clone();
    let unready = tokio::spawn(async move {
        system_tests::poll::poll_until(
            "readiness to name the stalled consumer",
            Duration::from_secs(60),
            || async {
                let response = http.get(&health).send().await.map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                if status == 503 && body.contains("consumer main made no progress") {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            },
        )
        .await
    });
    // … it is counted …
    pipeline
        .wait_for_processor_metric(
            "the stall to be counted",
            r#"consumer_stalls_total{consumer="main"} 1"#,
        )
        .await;
    unready.await.unwrap();
    // … and the recreated consumer takes both products again from the committed offset.
    let since = Instant::now();
    wait_all_done(&pipeline, &[stuck, waiting], since, RECOVERY).await;
}
