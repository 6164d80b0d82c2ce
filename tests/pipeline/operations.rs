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
            "image {n} processed exactly once (a deferred AVIF reads the kept source)"
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
    // Every decode and width waited for a CPU permit, timed by step: the decode and the
    // WebP widths in the first, the AVIF widths in the later one.
    for (stage, at_least) in [("core_wait_first", 2.0), ("core_wait_later", 1.0)] {
        let waits = sample(
            &text,
            &format!(r#"image_stage_duration_seconds_count{{stage="{stage}"}}"#),
        );
        assert!(waits >= Some(at_least), "{stage}: {waits:?}\n{text}");
    }
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
    let api = pipeline.app.metrics_url.clone();
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
            "image {n} processed exactly once (a deferred AVIF reads the kept source)"
        );
    }
}

/// The value of the sample `name` (with its labels, if any) in a metrics page.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn the_api_reports_what_waits_for_images_and_how_fresh_results_are() {
    let mut pipeline = spawn_pipeline_without_processor().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;
    let metrics = pipeline.app.metrics_url.clone();
    // No processor: the product waits, and the oldest wait grows, whatever consumers say.
    poll_until(
        "the api to report the waiting product and its age",
        Duration::from_secs(30),
        || async {
            let text = pipeline.app.text_of(&metrics).await;
            match (
                sample(&text, "images_pending_products"),
                sample(&text, "images_oldest_pending_seconds"),
            ) {
                (Some(1.0), Some(age)) if age > 0.0 => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    pipeline.start_processor().await;
    pipeline.wait_until_processed(&id).await;
    let text = poll_until(
        "the wait to end and the result's freshness to be observed",
        Duration::from_secs(30),
        || async {
            let text = pipeline.app.text_of(&metrics).await;
            // Once each: the product shown (its WebP), then its ladder complete (its AVIF).
            match (
                sample(&text, "images_pending_products"),
                sample(&text, "pipeline_freshness_seconds_count"),
                sample(&text, "pipeline_ladder_freshness_seconds_count"),
            ) {
                (Some(0.0), Some(1.0), Some(1.0)) => Ok(text),
                other => Err(other),
            }
        },
    )
    .await;
    for (line, wanted) in [
        (
            r#"outbox_publish_latency_seconds_count{stream="events"}"#,
            1.0,
        ),
        (
            r#"outbox_publish_latency_seconds_count{stream="products"}"#,
            1.0,
        ),
        (r#"dependency_up{dependency="postgres"}"#, 1.0),
        (r#"dependency_up{dependency="kafka"}"#, 1.0),
    ] {
        assert!(
            sample(&text, line).is_some_and(|v| v >= wanted),
            "{line} at least {wanted}: {text}"
        );
    }
    let processor = pipeline.processor_metrics().await;
    for line in [
        r#"dependency_up{dependency="kafka"} 1"#,
        r#"dependency_up{dependency="object_store"} 1"#,
    ] {
        assert!(processor.contains(line), "{line}: {processor}");
    }
}
