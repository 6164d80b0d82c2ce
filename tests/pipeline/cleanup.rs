//! Stored images nobody refers to are deleted: a deleted product's references, a product's
//! earlier revisions' once the new revision is processed, and then the content no reference
//! names. Identical bytes are stored once. Storage is a directory here, so the tests look at
//! the files themselves.

use std::{path::Path, time::Duration};

use serde_json::json;
use system_tests::{
    pipeline::{Pipeline, spawn_pipeline, spawn_pipeline_tuned},
    poll::poll_until,
};

/// The stored references under `products/<id>/`, as `r<revision>/<index>` (each a
/// directory holding the name of the content that image shows), sorted.
fn stored(pipeline: &Pipeline, id: &str) -> Vec<String> {
    let dir = pipeline.storage_dir.join("products").join(id);
    let mut files = Vec::new();
    for revision in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(revision.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if std::fs::read_dir(&path)
                .into_iter()
                .flatten()
                .next()
                .is_none()
            {
                continue;
            }
            let relative = path.strip_prefix(&dir).unwrap_or(Path::new(""));
            files.push(relative.display().to_string());
        }
    }
    files.sort();
    files
}

async fn wait_for_files(pipeline: &Pipeline, id: &str, what: &str, want: &[&str]) {
    poll_until(what, Duration::from_secs(30), || async {
        let files = stored(pipeline, id);
        if files == want { Ok(()) } else { Err(files) }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_product_deletes_its_stored_images() {
    let pipeline = spawn_pipeline().await;
    let images = [
        pipeline.images.url("/img/chelsea.png"),
        pipeline.images.url("/img/rocket.jpg"),
    ];
    let id = pipeline.create_product(&images).await;
    let kept = pipeline.create_product(&images[..1]).await;
    pipeline.wait_until_processed(&id).await;
    pipeline.wait_until_processed(&kept).await;
    assert_eq!(stored(&pipeline, &id), ["r1/0", "r1/1"]);

    let response = pipeline.app.delete(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 204);
    pipeline.wait_until_deleted_in_storage(&id).await;
    assert_eq!(stored(&pipeline, &id), Vec::<String>::new());
    assert!(
        !pipeline.storage_dir.join("products").join(&id).exists(),
        "its emptied directory goes too"
    );
    assert_eq!(
        stored(&pipeline, &kept),
        ["r1/0"],
        "another product's images stay"
    );
}

#[tokio::test]
async fn a_new_revisions_images_replace_the_earlier_revisions_in_storage() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;
    pipeline.wait_until_processed(&id).await;
    assert_eq!(stored(&pipeline, &id), ["r1/0"]);

    pipeline
        .app
        .patch(
            &format!("/products/{id}"),
            &json!({"product_images": [
                pipeline.images.url("/img/astronaut.png"),
                pipeline.images.url("/img/coffee.png"),
            ]}),
        )
        .await;
    pipeline.wait_until_revision_done(&id, 2).await;
    wait_for_files(
        &pipeline,
        &id,
        "revision 1's image to be deleted",
        &["r2/0", "r2/1"],
    )
    .await;
}

/// A pipeline whose one retry comes 4 to 8 s after a failure: time enough for the product
/// to change before it.
async fn with_a_late_retry() -> Pipeline {
    spawn_pipeline_tuned(|s| s.retry_delays = vec![Duration::from_secs(8)]).await
}

async fn wait_for_first_failure(pipeline: &Pipeline, path: &str) {
    poll_until(
        "the first download to fail",
        Duration::from_secs(30),
        || async {
            match pipeline.images.hits(path) {
                0 => Err(0),
                n => Ok(n),
            }
        },
    )
    .await;
}

async fn wait_for_superseded(pipeline: &Pipeline, reason: &str) {
    pipeline
        .wait_for_processor_metric(
            &format!("the late retry to be dropped ({reason})"),
            &format!("jobs_superseded_total{{outcome=\"{reason}\"}} 1"),
        )
        .await;
}

#[tokio::test]
async fn a_retry_that_comes_after_its_product_was_deleted_stores_nothing() {
    let pipeline = with_a_late_retry().await;
    let path = "/flaky/1/chelsea.png"; // 503 once, then the image
    let id = pipeline.create_product(&[pipeline.images.url(path)]).await;
    wait_for_first_failure(&pipeline, path).await;

    let response = pipeline.app.delete(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 204);
    wait_for_superseded(&pipeline, "product_deleted").await;
    assert_eq!(
        pipeline.images.hits(path),
        1,
        "the retry downloaded nothing"
    );
    assert!(
        !pipeline.storage_dir.join("products").join(&id).exists(),
        "nothing was stored for the deleted product"
    );
}

#[tokio::test]
async fn a_retry_of_replaced_images_stores_nothing_beside_the_new_ones() {
    let pipeline = with_a_late_retry().await;
    let path = "/flaky/1/chelsea.png";
    let id = pipeline.create_product(&[pipeline.images.url(path)]).await;
    wait_for_first_failure(&pipeline, path).await;

    pipeline
        .app
        .patch(
            &format!("/products/{id}"),
            &json!({"product_images": [pipeline.images.url("/img/coffee.png")]}),
        )
        .await;
    wait_for_superseded(&pipeline, "newer_revision").await;
    pipeline.wait_until_revision_done(&id, 2).await;
    assert_eq!(
        pipeline.images.hits(path),
        1,
        "the retry downloaded nothing"
    );
    assert_eq!(stored(&pipeline, &id), ["r2/0"]);
}

#[tokio::test]
async fn a_retry_that_was_running_when_its_product_was_deleted_removes_what_it_stored() {
    let pipeline = spawn_pipeline().await;
    let path = "/flaky-slow/1/chelsea.png"; // 503, then hangs until released
    let id = pipeline.create_product(&[pipeline.images.url(path)]).await;
    pipeline
        .images
        .wait_for_hits("the retry's download to start", path, 2)
        .await;

    // Deleted while the retry downloads: its check before starting saw nothing.
    let response = pipeline.app.delete(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 204);
    pipeline.wait_until_deleted_in_storage(&id).await;
    pipeline.images.release();
    pipeline
        .wait_for_processor_metric(
            "the retry to be dropped after storing",
            r#"jobs_superseded_total{outcome="product_deleted"} 1"#,
        )
        .await;
    assert_eq!(stored(&pipeline, &id), Vec::<String>::new());
    assert!(
        !pipeline.storage_dir.join("products").join(&id).exists(),
        "what the retry stored is gone"
    );
}

/// The content folder (`images/<digest>/<epoch>` in the store) a variant URL points into.
fn content_dir(pipeline: &Pipeline, url: &str) -> std::path::PathBuf {
    let (_, key) = url.split_once("/images/").expect("a stored image's URL");
    let (dir, _file) = key.rsplit_once('/').expect("a file in a content folder");
    pipeline.storage_dir.join("images").join(dir)
}

#[tokio::test]
async fn identical_bytes_are_processed_once_for_every_product_that_uses_them() {
    let pipeline = spawn_pipeline().await;
    // The same bytes under two URLs.
    let first = pipeline
        .create_product(&[pipeline.images.url("/photo/1/rocket.jpg")])
        .await;
    let first = pipeline.wait_until_processed(&first).await;
    let second = pipeline
        .create_product(&[pipeline.images.url("/photo/2/rocket.jpg")])
        .await;
    let second = pipeline.wait_until_processed(&second).await;
    assert_eq!(second["processing_status"], "done", "{second:#}");
    assert_eq!(
        first["images"][0]["variants"], second["images"][0]["variants"],
        "both show the same stored objects"
    );
    assert_eq!(
        first["images"][0]["thumbhash"],
        second["images"][0]["thumbhash"]
    );
    // Fetched twice (the bytes must be read to be recognised), compressed once.
    assert_eq!(pipeline.images.hits("/photo/2/rocket.jpg"), 1);
    let metrics = pipeline.processor_metrics().await;
    assert!(
        metrics.contains("images_total{outcome=\"compressed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("images_total{outcome=\"reused\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn content_no_product_refers_to_is_deleted_and_shared_content_stays() {
    // Epochs of one second: content nobody refers to goes three seconds after it was made.
    let pipeline = spawn_pipeline_tuned(|settings| {
        settings.gc_epoch = Duration::from_secs(1);
        settings.gc_interval = Duration::from_millis(200);
    })
    .await;
    let shared = pipeline.images.url("/img/rocket.jpg");
    let own = pipeline.images.url("/img/chelsea.png");
    let deleted = pipeline.create_product(&[shared.clone(), own]).await;
    let deleted = pipeline.wait_until_processed(&deleted).await;
    let kept = pipeline.create_product(&[shared]).await;
    let kept = pipeline.wait_until_processed(&kept).await;
    let shared_url = kept["compressed_product_images"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let own_dir = content_dir(
        &pipeline,
        deleted["compressed_product_images"][1].as_str().unwrap(),
    );
    assert!(own_dir.exists());

    let id = deleted["product_id"].as_str().unwrap();
    pipeline.app.delete(&format!("/products/{id}")).await;
    poll_until(
        "the deleted product's own content to be cleaned up",
        Duration::from_secs(30),
        || async {
            if own_dir.exists() {
                Err(own_dir.display().to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
    // The kept product's image, which the deleted one shared, is still served.
    let response = pipeline.app.http.get(&shared_url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{shared_url}");
    assert!(content_dir(&pipeline, &shared_url).exists());
    pipeline
        .wait_for_processor_metric(
            "the cleanup to be counted",
            "stored_images_deleted_total{outcome=\"unreferenced\"}",
        )
        .await;
}
