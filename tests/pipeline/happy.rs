use std::time::Duration;

use serde_json::json;
use system_tests::{
    images::sample,
    pipeline::{Pipeline, spawn_pipeline, spawn_pipeline_tuned},
};

#[tokio::test]
async fn a_new_products_images_end_up_compressed_and_downloadable() {
    let pipeline = spawn_pipeline().await;
    let sources = ["coffee.png", "rocket.jpg"];
    let urls: Vec<String> = sources
        .iter()
        .map(|s| pipeline.images.url(&format!("/img/{s}")))
        .collect();
    let id = pipeline.create_product(&urls).await;

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done", "{product:#}");
    let compressed = product["compressed_product_images"].as_array().unwrap();
    assert_eq!(compressed.len(), 2);
    for (i, source) in sources.iter().enumerate() {
        let url = compressed[i].as_str().expect("a compressed URL");
        let response = pipeline.app.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(
            image::guess_format(&bytes).unwrap(),
            image::ImageFormat::WebP,
            "{url}"
        );
        let decoded = image::load_from_memory(&bytes).expect("a valid image");
        assert!(decoded.width() > 0 && decoded.height() > 0);
        let original = sample(source).len();
        assert!(
            bytes.len() < original,
            "{source}: {} bytes compressed vs {original} original",
            bytes.len()
        );
        assert_eq!(product["images"][i]["status"], "compressed");
        assert_eq!(product["images"][i]["bytes_before"], original);
        assert_eq!(product["images"][i]["bytes_after"], bytes.len());
        assert_eq!(product["images"][i]["format"], "image/webp");
    }
}

#[tokio::test]
async fn new_images_are_processed_again_under_a_new_revision() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;
    pipeline.wait_until_processed(&id).await;

    let response = pipeline
        .app
        .patch(
            &format!("/products/{id}"),
            &serde_json::json!({"product_images": [pipeline.images.url("/img/astronaut.png")]}),
        )
        .await;
    let patched: serde_json::Value = response.json().await.unwrap();
    assert_eq!(patched["processing_status"], "pending");
    assert_eq!(patched["image_revision"], 2);

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done");
    let url = product["compressed_product_images"][0].as_str().unwrap();
    assert!(url.contains("/r2/"), "the new revision's object: {url}");
    assert_eq!(pipeline.images.hits("/img/astronaut.png"), 1);
}

/// The image a product's download hangs on until the test releases it.
const HANGING: &str = "/slow/rocket.jpg";

/// A pipeline with one product whose image download has started and hangs; returns the
/// product's id.
async fn with_a_hanging_download() -> (Pipeline, String) {
    // Longer than the tests wait for other products: they cannot be processed after the
    // hanging download gave up, only beside it.
    let pipeline = spawn_pipeline_tuned(|s| s.fetch.total_timeout = Duration::from_secs(300)).await;
    let id = pipeline
        .create_product(&[pipeline.images.url(HANGING)])
        .await;
    pipeline
        .images
        .wait_for_hits("the first product's download to start", HANGING, 1)
        .await;
    (pipeline, id)
}

/// Creates one product per image path, then waits until each is processed and done.
async fn other_products_are_processed(pipeline: &Pipeline, images: &[&str]) {
    let mut ids = Vec::new();
    for image in images {
        ids.push(pipeline.create_product(&[pipeline.images.url(image)]).await);
    }
    for id in &ids {
        let product = pipeline.wait_until_processed(id).await;
        assert_eq!(product["processing_status"], "done", "{product:#}");
    }
}

#[tokio::test]
async fn a_hanging_image_server_does_not_hold_up_other_products() {
    let (pipeline, stuck) = with_a_hanging_download().await;

    other_products_are_processed(&pipeline, &["/img/chelsea.png", "/img/coffee.png"]).await;
    assert_eq!(
        pipeline.app.product(&stuck).await["processing_status"],
        "pending",
        "the first product still waits for its image"
    );

    pipeline.images.release();
    let product = pipeline.wait_until_processed(&stuck).await;
    assert_eq!(product["processing_status"], "done", "{product:#}");
    assert_eq!(
        pipeline.images.hits(HANGING),
        1,
        "downloaded once, no retry"
    );
}

#[tokio::test]
async fn a_products_next_event_waits_for_its_first_while_other_products_go_on() {
    let (pipeline, busy) = with_a_hanging_download().await;
    // Its second event must wait for the first; the consumer takes in what follows it.
    pipeline
        .app
        .patch(
            &format!("/products/{busy}"),
            &json!({"product_images": [pipeline.images.url("/img/coffee.png")]}),
        )
        .await;
    other_products_are_processed(&pipeline, &["/img/chelsea.png", "/img/astronaut.png"]).await;
    assert_eq!(
        pipeline.images.hits("/img/coffee.png"),
        0,
        "the product's second event has not started"
    );

    pipeline.images.release();
    pipeline.wait_until_revision_done(&busy, 2).await;
    assert_eq!(
        pipeline.images.hits(HANGING),
        1,
        "downloaded once, no retry"
    );
}
