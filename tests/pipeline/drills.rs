//! Fault drills against real processes: the broker frozen mid-burst, the api started while
//! the broker is away. Each states its recovery bound and asserts nothing is lost.

use std::time::{Duration, Instant};

use system_tests::{
    broker::OwnBroker,
    pipeline::{Pipeline, spawn_pipeline_with, test_kafka},
    poll::hold_for,
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
    pipeline
        .wait_all_compressed(ids, since, bound, bound, "the broker's return")
        .await;
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
    let during = create_burst(&pipeline, 12, "during").await;
    // The fault lasts BROKER_PAUSE; all along, none of the products written meanwhile can
    // have been processed, or the broker was not really frozen.
    hold_for(
        "the frozen broker keeping the products written meanwhile pending",
        BROKER_PAUSE,
        || async {
            for id in &during {
                let product = pipeline.app.product(id).await;
                if product["processing_status"] != "pending" {
                    return Err(product);
                }
            }
            Ok(())
        },
    )
    .await;
    ids.extend(during);
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

fn api_process(pipeline: &Pipeline) -> (std::process::Child, String) {
    system_tests::process::api_binary(&pipeline.app.database_url, &pipeline.kafka)
}

fn kill_9(child: &mut std::process::Child) {
    system_tests::process::kill_9(child);
}

/// Every product the database holds.
async fn stored_products(pipeline: &Pipeline) -> Vec<String> {
    let db = pipeline.app.db().await;
    db.query("SELECT id FROM products ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, i64>(0).to_string())
        .collect()
}

#[tokio::test]
async fn a_kill_9_of_the_api_mid_burst_loses_no_committed_product() {
    // The pipeline's own api relays and projects; a second api, the real binary on the same
    // database and topics, takes the burst and is killed in the middle of it.
    let pipeline = system_tests::pipeline::spawn_pipeline().await;
    let (mut api, base) = api_process(&pipeline);
    let http = pipeline.app.http.clone();
    system_tests::process::wait_until_ready(&http, &base).await;
    let user = pipeline.app.create_user("burst").await;
    let posts = (0..40).map(|i| {
        let (http, base) = (http.clone(), base.clone());
        let image = pipeline
            .images
            .url(&format!("/img/{}?kill{i}", SOURCES[i % SOURCES.len()]));
        let body = serde_json::json!({
            "user_id": user, "product_name": format!("burst {i}"), "product_price": 5,
            "product_images": [image]
        });
        tokio::spawn(async move {
            http.post(format!("{base}/products"))
                .json(&body)
                .send()
                .await
        })
    });
    let posts: Vec<_> = posts.collect();
    // Killed once some products are committed and others still on their way.
    system_tests::poll::poll_until(
        "some products to be committed",
        Duration::from_secs(30),
        || async {
            match stored_products(&pipeline).await.len() {
                n if n >= 5 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;
    kill_9(&mut api);
    for post in posts {
        let _answered_or_cut = post.await.unwrap();
    }

    let stored = stored_products(&pipeline).await;
    assert!(!stored.is_empty());
    wait_all_done(&pipeline, &stored, Instant::now(), RECOVERY).await;
}

#[tokio::test]
async fn a_frozen_broker_fails_the_processors_readiness_while_the_api_takes_writes_and_reports_their_age()
 {
    let broker = OwnBroker::start().await;
    let pipeline =
        system_tests::pipeline::spawn_pipeline_tuned_with(test_kafka(&broker.brokers), |s| {
            s.stall_after = Duration::from_secs(3)
        })
        .await;
    let warm = create_burst(&pipeline, 1, "warm").await;
    wait_all_done(&pipeline, &warm, Instant::now(), RECOVERY).await;

    broker.pause();
    // The api takes a write meanwhile; its event waits in the outbox.
    let waiting = create_burst(&pipeline, 1, "frozen").await;
    assert_eq!(pipeline.app.get("/readyz").await.status(), 200);
    // The processor counts the silence as no progress: readiness names it …
    let readiness = format!("http://{}/readyz", pipeline.processor_http.unwrap());
    let http = pipeline.app.http.clone();
    system_tests::poll::poll_until(
        "the processor's readiness to name the silent broker",
        Duration::from_secs(60),
        || async {
            let response = http
                .get(&readiness)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status == 503 && body.contains("cannot read its group's offsets") {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    // … and the api reports how old its oldest unpublished event is.
    let metrics = pipeline.app.metrics_url.clone();
    system_tests::poll::poll_until(
        "the api to report the outbox backlog's age",
        Duration::from_secs(30),
        || async {
            let text = pipeline.app.text_of(&metrics).await;
            let age = text
                .lines()
                .find_map(|line| line.strip_prefix("outbox_oldest_age_seconds "))
                .and_then(|value| value.trim().parse::<f64>().ok());
            match age {
                Some(age) if age >= 1.0 => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    assert_eq!(pipeline.app.get("/readyz").await.status(), 200);

    broker.unpause();
    let back = Instant::now();
    wait_all_done(&pipeline, &waiting, back, RECOVERY).await;
    system_tests::poll::poll_until("the processor to be ready again", RECOVERY, || async {
        match http.get(&readiness).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}
