//! Stored images nobody refers to are deleted: all of a deleted product's, and a product's
//! earlier revisions once the new revision is processed. Storage is a directory here, so
//! the test looks at the files themselves.

use std::{path::Path, time::Duration};

use serde_json::json;
use system_tests::{
    pipeline::{Pipeline, spawn_pipeline, spawn_pipeline_tuned},
    poll::poll_until,
};

/// The stored images under `products/<id>/`, as `r<revision>/<index>` (each a directory of
/// variants, none of them empty), sorted.
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
