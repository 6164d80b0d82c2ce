//! Two steps per image: the WebP ladder is published first, the AVIF follows, and a second
//! step that fails never hides the first.

use std::{path::PathBuf, time::Duration};

use image_processor::{content::ContentStore, settings::LaterStep, storage::Storage, transform};
use serde_json::json;
use system_tests::{
    feed::read_all,
    images::sample,
    pipeline::{Pipeline, spawn_pipeline, spawn_pipeline_tuned},
};

/// Where the processor stores the variants of sample `name` (in the test's storage folder).
fn content_dir(pipeline: &Pipeline, name: &str) -> PathBuf {
    let settings = &pipeline.processor_settings;
    let storage = Storage::from_url(&settings.storage_url, &settings.public_base_url).unwrap();
    let store = ContentStore::new(storage, settings.gc_epoch, &settings.transform);
    let content = ContentStore::content_id(&store.digest(&sample(name)), store.epoch_now());
    let key = ContentStore::key(&content, "manifest.json");
    pipeline.storage_dir.join(key).parent().unwrap().to_owned()
}

/// Makes every AVIF variant of sample `name` impossible to store (a folder where its file
/// would go: the local store cannot write over it); returns the folders.
fn block_avif(pipeline: &Pipeline, name: &str) -> Vec<PathBuf> {
    let decoded = image::load_from_memory(&sample(name)).unwrap();
    let dir = content_dir(pipeline, name);
    let blocked: Vec<PathBuf> = transform::ladder(
        decoded.width(),
        decoded.height(),
        &pipeline.processor_settings.transform.widths,
    )
    .into_iter()
    .map(|(width, _)| dir.join(format!("{width}.avif")))
    .collect();
    for folder in &blocked {
        std::fs::create_dir_all(folder.join("blocked")).unwrap();
    }
    blocked
}

/// Each WebP variant's file and when it was last written.
fn webp_files(dir: &PathBuf) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "webp"))
        .map(|p| {
            let written = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, written)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn the_webp_ladder_is_published_before_the_avif_and_both_steps_reach_the_feed() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/coffee.png")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    let image = &product["images"][0];
    assert_eq!(image["status"], "compressed", "{product:#}");
    let formats: Vec<&str> = image["srcset"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(formats, ["image/avif", "image/webp"]);

    // The results, in the order the projector applied them: the first step with only WebP
    // variants and the AVIF pending, then the whole ladder.
    let topic = pipeline.kafka.topics().images_compressed();
    let results: Vec<serde_json::Value> = read_all(&pipeline.kafka, &topic)
        .await
        .into_iter()
        .filter(|r| r.key == id)
        .map(|r| r.value.expect("a result"))
        .collect();
    assert_eq!(results.len(), 2, "{results:#?}");
    let first = &results[0]["images"][0];
    assert_eq!(first["pending_formats"], json!(["image/avif"]), "{first:#}");
    assert!(
        first["variants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["format"] == "image/webp"),
        "{first:#}"
    );
    assert_eq!(first["compressed_url"], image["compressed_url"]);
    let second = &results[1]["images"][0];
    assert!(second.get("pending_formats").is_none(), "{second:#}");
    assert_eq!(second["variants"], image["variants"]);

    // The change feed saw the product shown with its WebP before it saw the AVIF.
    let feed = read_all(&pipeline.kafka, &pipeline.kafka.topics().products()).await;
    let states: Vec<&serde_json::Value> = feed
        .iter()
        .filter(|r| r.key == id)
        .filter_map(|r| r.value.as_ref())
        .collect();
    let shown_first = states
        .iter()
        .position(|s| s["images"][0]["pending_formats"] == json!(["image/avif"]))
        .expect("a state with the WebP shown and the AVIF pending");
    assert_eq!(states[shown_first]["processing_status"], "done");
    assert!(states[shown_first]["compressed_product_images"][0].is_string());
    let complete = states
        .iter()
        .position(|s| s["images"][0]["srcset"].get("image/avif").is_some())
        .expect("a state with the AVIF");
    assert!(shown_first < complete);
}

#[tokio::test]
async fn a_deferred_second_step_is_made_from_the_later_topic_after_the_webp_shows() {
    let pipeline = spawn_pipeline_tuned(|s| s.later_step = LaterStep::Deferred).await;
    let urls = [
        pipeline.images.url("/img/coffee.png"),
        pipeline.images.url("/img/rocket.jpg"),
    ];
    let id = pipeline.create_product(&urls).await;
    let product = pipeline.wait_until_processed(&id).await;
    for image in product["images"].as_array().unwrap() {
        assert_eq!(image["status"], "compressed", "{product:#}");
        assert!(image.get("pending_formats").is_none(), "{product:#}");
        assert!(image["srcset"].get("image/avif").is_some(), "{product:#}");
    }

    // The job that showed the WebP handed both images to the later topic in one record.
    let topics = pipeline.kafka.topics();
    let later: Vec<_> = read_all(&pipeline.kafka, &topics.image_later())
        .await
        .into_iter()
        .filter(|r| r.key == id)
        .collect();
    assert_eq!(later.len(), 1, "{later:#?}");
    let headers = &later[0].headers;
    assert_eq!(headers["x-step"], "later");
    assert_eq!(headers["x-images"], "0,1");
    let kept: Vec<&str> = headers["x-sources"].split(',').collect();
    assert_eq!(kept.len(), 2, "{headers:?}");
    assert!(
        kept[0].starts_with("0:") && kept[1].starts_with("1:"),
        "{headers:?}"
    );
    assert_eq!(headers["x-attempt"], "1");
    assert_eq!(headers["ce_type"], "com.catalog.product.created.v1");
    assert_eq!(headers["x-origin-topic"], topics.product_events());

    // Each image's first step once, with the AVIF pending, and the whole ladder after it:
    // the later consumer does not publish the first step again.
    let results: Vec<serde_json::Value> = read_all(&pipeline.kafka, &topics.images_compressed())
        .await
        .into_iter()
        .filter(|r| r.key == id)
        .map(|r| r.value.expect("a result"))
        .collect();
    for index in [0, 1] {
        let of_image: Vec<&serde_json::Value> = results
            .iter()
            .flat_map(|r| r["images"].as_array().unwrap())
            .filter(|i| i["index"] == index)
            .collect();
        assert_eq!(of_image.len(), 2, "{results:#?}");
        assert_eq!(of_image[0]["pending_formats"], json!(["image/avif"]));
        assert!(of_image[1].get("pending_formats").is_none());
        assert_eq!(
            of_image[1]["variants"],
            product["images"][index]["variants"]
        );
    }

    // The later consumer read the kept sources instead of downloading them again (cleanup
    // deletes them once the epoch is over).
    for (path, name) in [
        ("/img/coffee.png", "coffee.png"),
        ("/img/rocket.jpg", "rocket.jpg"),
    ] {
        assert_eq!(pipeline.images.hits(path), 1, "{path} downloaded once");
        let dir = content_dir(&pipeline, name);
        assert!(dir.join("manifest.json").exists(), "{}", dir.display());
        assert!(dir.join("source").exists(), "{}", dir.display());
    }
}

#[tokio::test]
async fn an_avif_that_cannot_be_stored_is_retried_alone_while_the_webp_shows() {
    let pipeline = spawn_pipeline_tuned(|s| {
        s.retry_delays = vec![Duration::from_secs(3), Duration::from_secs(30)];
    })
    .await;
    let blocked = block_avif(&pipeline, "coffee.png");
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/coffee.png")])
        .await;

    let shown = pipeline
        .wait_for(&id, "the WebP to show", Duration::from_secs(60), |p| {
            p["processing_status"] == "done"
        })
        .await;
    let image = &shown["images"][0];
    assert_eq!(image["pending_formats"], json!(["image/avif"]), "{shown:#}");
    assert!(shown["compressed_product_images"][0].is_string());
    let webp = webp_files(&content_dir(&pipeline, "coffee.png"));
    assert!(!webp.is_empty());
    pipeline
        .wait_for_processor_metric("the AVIF's retry", "retries_total{level=\"1\"} 1")
        .await;
    for folder in &blocked {
        std::fs::remove_dir_all(folder).unwrap();
    }

    let product = pipeline.wait_until_processed(&id).await;
    let image = &product["images"][0];
    assert!(image["srcset"].get("image/avif").is_some(), "{product:#}");
    assert!(image.get("failed_formats").is_none(), "{product:#}");
    assert_eq!(
        webp_files(&content_dir(&pipeline, "coffee.png")),
        webp,
        "the retry made only the AVIF: the WebP files were not written again"
    );
}

#[tokio::test]
async fn an_avif_that_never_stores_is_dead_lettered_and_the_webp_stays_with_the_reason() {
    let pipeline = spawn_pipeline().await;
    block_avif(&pipeline, "coffee.png");
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/coffee.png")])
        .await;

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done", "{product:#}");
    let image = &product["images"][0];
    assert_eq!(image["status"], "compressed");
    assert!(product["compressed_product_images"][0].is_string());
    let reason = image["failed_formats"]["image/avif"]
        .as_str()
        .unwrap_or_else(|| panic!("the AVIF's reason: {product:#}"));
    assert!(reason.contains("storing the image failed"), "{reason}");
    assert!(image["srcset"].get("image/avif").is_none(), "{product:#}");
    assert!(image["srcset"].get("image/webp").is_some(), "{product:#}");
    let metrics = pipeline.processor_metrics().await;
    assert!(
        metrics.contains("dead_letters_total{outcome=\"transient\"} 1"),
        "{metrics}"
    );
}
