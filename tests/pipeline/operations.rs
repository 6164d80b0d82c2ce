use std::time::Duration;

use serde_json::Value;
use system_tests::{
    pipeline::{Pipeline, spawn_pipeline, spawn_pipeline_without_processor},
    poll::poll_until,
};

/// How many of `ids` have `processing_status` equal to `status`.
async fn count_with_status(pipeline: &Pipeline, ids: &[String], status: &str) -> usize {
    let mut count = 0;
    for id in ids {
        let product: Value = pipeline.app.product(id).await;
        count += usize::from(product["processing_status"] == status);
    }
    count
}

/// Waits until at least one of `ids` is processed.
async fn wait_for_one_done(pipeline: &Pipeline, ids: &[String]) {
    poll_until(
        "the first product to be processed",
        Duration::from_secs(60),
        || async {
            match count_with_status(pipeline, ids, "done").await {
                0 => Err(0),
                done => Ok(done),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_graceful_stop_mid_load_loses_nothing_and_processes_nothing_twice() {
    let mut pipeline = spawn_pipeline().await;
    // Several times what the processor takes in at once (IMAGE_JOBS_IN_FLIGHT), so the stop
    // comes with records in flight and others not yet taken.
    let count = 24;
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(
            pipeline
                .create_product(&[pipeline.images.url(&format!("/delayed/{n}/coffee.png"))])
                .await,
        );
    }
    // Stop (as on SIGTERM) once some, but not all, products are done.
    wait_for_one_done(&pipeline, &ids).await;
    pipeline.processor.take().unwrap().stop().await;
    let pending = count_with_status(&pipeline, &ids, "pending").await;
    assert!(pending > 0, "the stop came mid-load");

    pipeline.start_processor().await;
    for id in &ids {
        let product = pipeline.wait_until_processed(id).await;
        assert_eq!(product["processing_status"], "done", "{product:#}");
    }
    for n in 0..count {
        assert_eq!(
            pipeline.images.hits(&format!("/delayed/{n}/coffee.png")),
            1,
            "image {n} processed exactly once"
        );
    }
}

#[tokio::test]
async fn the_processor_reports_health_readiness_and_metrics() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[
            pipeline.images.url("/img/rocket.jpg"),
            pipeline.images.url("/missing.png"),
        ])
        .await;
    pipeline.wait_until_processed(&id).await;
    let base = format!("http://{}", pipeline.processor_http.unwrap());
    for probe in ["/healthz", "/readyz"] {
        let response = pipeline
            .app
            .http
            .get(format!("{base}{probe}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{probe}");
    }
    let text = pipeline.app.text_of(&format!("{base}/metrics")).await;
    assert!(
        text.contains(r#"images_total{outcome="compressed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"images_total{outcome="failed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"image_stage_duration_seconds_count{stage="download"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn both_consumer_groups_report_their_lag_per_partition() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;
    pipeline.wait_until_processed(&id).await;
    let topics = pipeline.kafka.topics();
    let processor = format!("http://{}/metrics", pipeline.processor_http.unwrap());
    let api = pipeline.app.url("/metrics");
    for (url, line) in [
        (
            processor,
            format!(
                r#"consumer_lag{{topic="{}",partition="0"}} 0"#,
                topics.product_events()
            ),
        ),
        (
            api,
            format!(
                r#"projector_consumer_lag{{topic="{}",partition="0"}} 0"#,
                topics.images_compressed()
            ),
        ),
    ] {
        // Refreshed every 10 s; caught up once the product is processed.
        poll_until(&line, Duration::from_secs(30), || async {
            let text = pipeline.app.text_of(&url).await;
            if text.contains(&line) {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;
    }
}

#[tokio::test]
async fn sigterm_mid_load_drains_the_processor_without_loss_or_repeats() {
    // The real binary this time, driven by its environment, stopped by a real SIGTERM.
    let mut pipeline = spawn_pipeline_without_processor().await;
    let mut child = pipeline.spawn_processor_process();

    // Several times what the processor takes in at once (IMAGE_JOBS_IN_FLIGHT), so the stop
    // comes with records in flight and others not yet taken.
    let count = 24;
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(
            pipeline
                .create_product(&[pipeline.images.url(&format!("/delayed/{n}/chelsea.png"))])
                .await,
        );
    }
    wait_for_one_done(&pipeline, &ids).await;
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "the processor exits cleanly on SIGTERM: {exit}"
    );
    let pending = count_with_status(&pipeline, &ids, "pending").await;
    assert!(pending > 0, "the signal came mid-load");

    pipeline.start_processor().await;
    for id in &ids {
        assert_eq!(
            pipeline.wait_until_processed(id).await["processing_status"],
            "done"
        );
    }
    for n in 0..count {
        assert_eq!(
            pipeline.images.hits(&format!("/delayed/{n}/chelsea.png")),
            1,
            "image {n} processed exactly once"
        );
    }
}
