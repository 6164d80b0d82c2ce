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

/// The size of an AVIF file's picture, decoded (with libaom, through the `avif` crate).
fn avif_size(bytes: &[u8]) -> (u32, u32) {
    let decoded = avif::decode(bytes).unwrap_or_else(|e| panic!("an AVIF file: {e}"));
    (decoded.width, decoded.height)
}

#[tokio::test]
async fn a_photo_gets_the_whole_ladder_in_both_formats_with_srcsets_and_placeholders() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/coffee-2560x1600.jpg")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    let image = &product["images"][0];
    assert_eq!(image["status"], "compressed", "{product:#}");
    assert_eq!(
        (
            image["source_width"].as_u64(),
            image["source_height"].as_u64()
        ),
        (Some(2560), Some(1600))
    );

    let variants = image["variants"].as_array().expect("variants");
    let listed: Vec<(&str, u64, u64)> = variants
        .iter()
        .map(|v| {
            (
                v["format"].as_str().unwrap(),
                v["width"].as_u64().unwrap(),
                v["height"].as_u64().unwrap(),
            )
        })
        .collect();
    let ladder = [
        (320, 200),
        (640, 400),
        (960, 600),
        (1280, 800),
        (1600, 1000),
    ];
    let expected: Vec<(&str, u64, u64)> = ["image/avif", "image/webp"]
        .into_iter()
        .flat_map(|format| ladder.map(|(w, h)| (format, w, h)))
        .collect();
    assert_eq!(listed, expected, "ordered by format, then width");

    for variant in variants {
        let url = variant["url"].as_str().unwrap();
        let response = pipeline.app.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{url}: an object never changes"
        );
        assert_eq!(
            response.headers()["content-type"],
            variant["format"].as_str().unwrap()
        );
        let bytes = response.bytes().await.unwrap();
        assert_eq!(variant["bytes"], bytes.len(), "{url}");
        // HEAD, as CDNs and link checkers ask: the same headers, no body.
        let head = pipeline.app.http.head(url).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {url}");
        assert_eq!(
            head.headers()["content-type"],
            variant["format"].as_str().unwrap()
        );
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            bytes.len().to_string(),
            "HEAD {url}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {url}: no body"
        );
        let declared = (
            variant["width"].as_u64().unwrap() as u32,
            variant["height"].as_u64().unwrap() as u32,
        );
        match variant["format"].as_str().unwrap() {
            "image/webp" => {
                let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP)
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                assert_eq!((decoded.width(), decoded.height()), declared, "{url}");
            }
            "image/avif" => assert_eq!(avif_size(&bytes), declared, "{url}"),
            other => panic!("unexpected format {other}"),
        }
    }

    // The seed's single URL and the image's size fields describe the largest WebP.
    let largest_webp = &variants[9];
    assert_eq!(product["compressed_product_images"][0], largest_webp["url"]);
    assert_eq!(image["compressed_url"], largest_webp["url"]);
    assert_eq!(
        (image["width"].clone(), image["height"].clone()),
        (json!(1600), json!(1000))
    );
    assert_eq!(image["bytes_after"], largest_webp["bytes"]);

    // Each srcset lists exactly that format's URLs, by width.
    for format in ["image/avif", "image/webp"] {
        let want: Vec<String> = variants
            .iter()
            .filter(|v| v["format"] == format)
            .map(|v| format!("{} {}w", v["url"].as_str().unwrap(), v["width"]))
            .collect();
        assert_eq!(image["srcset"][format], want.join(", "), "{format}");
    }

    let hash = base64_decode(image["thumbhash"].as_str().expect("a thumbhash"));
    let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("a ThumbHash");
    assert!(
        (ratio - 1.6).abs() <= 0.2,
        "ThumbHash aspect ratio {ratio}, photo 1.6"
    );
    let colour = image["dominant_color"].as_str().expect("a dominant colour");
    assert!(
        colour.len() == 7
            && colour.starts_with('#')
            && colour[1..].chars().all(|c| c.is_ascii_hexdigit()),
        "{colour}"
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{text:?} is not standard base64: {e}"))
}

#[tokio::test]
async fn new_images_are_processed_again_under_a_new_revision() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;
    let first = pipeline.wait_until_processed(&id).await;
    let first_url = first["compressed_product_images"][0]
        .as_str()
        .unwrap()
        .to_owned();

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
    assert_ne!(url, first_url, "the new image's own object");
    assert_eq!(
        product["images"][0]["source_width"], 512,
        "astronaut.png is 512 wide"
    );
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
