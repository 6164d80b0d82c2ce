use std::time::Duration;

use serde_json::Value;
use system_tests::pipeline::spawn_pipeline;

#[tokio::test]
async fn a_graceful_stop_mid_load_loses_nothing_and_processes_nothing_twice() {
    let mut pipeline = spawn_pipeline().await;
    let count = 8;
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(
            pipeline
                .create_product(&[pipeline.images.url(&format!("/delayed/{n}/coffee.png"))])
                .await,
        );
    }
    // Stop (as on SIGTERM) once some, but not all, products are done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = 0;
        for id in &ids {
            let product: Value = pipeline
                .app
                .get(&format!("/products/{id}"))
                .await
                .json()
                .await
                .unwrap();
            done += usize::from(product["processing_status"] == "done");
        }
        if done >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 60 s for the first product"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pipeline.processor.take().unwrap().stop().await;
    let mut pending = 0;
    for id in &ids {
        let product: Value = pipeline
            .app
            .get(&format!("/products/{id}"))
            .await
            .json()
            .await
            .unwrap();
        pending += usize::from(product["processing_status"] == "pending");
    }
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
    let text = pipeline
        .app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
