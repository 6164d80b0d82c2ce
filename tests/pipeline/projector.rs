use events::{ImageDetails, ImageOutcome, ImageResult, ImagesCompressed};
use serde_json::{Value, json};
use system_tests::spawn_app;

fn compressed(product_id: &str, revision: i32, url: &str) -> ImagesCompressed {
    ImagesCompressed {
        product_id: product_id.to_owned(),
        image_revision: revision,
        images: vec![ImageResult {
            index: 0,
            source_url: "https://images.example.com/a.jpg".into(),
            outcome: ImageOutcome::Compressed,
            details: ImageDetails {
                compressed_url: Some(url.to_owned()),
                bytes_before: Some(1000),
                bytes_after: Some(100),
                width: Some(10),
                height: Some(10),
                format: Some("image/webp".into()),
                ..ImageDetails::default()
            },
        }],
    }
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_applied_once_and_stale_revisions_are_ignored() {
    let app = spawn_app().await;
    let user = app.create_user("alice").await;
    let id = app.create_product(&user, "Lamp", 1.0).await;
    let pool = api::db::pool(&api::db::DatabaseSettings::for_url(&app.database_url)).unwrap();
    let event_id = uuid::Uuid::new_v4();

    let first = api::projector::apply(&pool, event_id, &compressed(&id, 1, "https://cdn/a.webp"))
        .await
        .unwrap();
    assert_eq!(first, api::projector::Applied::Updated { version: 2 });
    // Redelivered, even with other content: nothing changes.
    let again = api::projector::apply(
        &pool,
        event_id,
        &compressed(&id, 1, "https://cdn/other.webp"),
    )
    .await
    .unwrap();
    assert_eq!(again, api::projector::Applied::Duplicate);
    let product: Value = app
        .get(&format!("/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        product["compressed_product_images"],
        json!(["https://cdn/a.webp"])
    );
    assert_eq!(product["processing_status"], "done");

    // New images: a late result for revision 1 must not touch revision 2.
    app.patch(
        &format!("/products/{id}"),
        &json!({"product_images": ["https://images.example.com/b.jpg"]}),
    )
    .await;
    let stale = api::projector::apply(
        &pool,
        uuid::Uuid::new_v4(),
        &compressed(&id, 1, "https://cdn/late.webp"),
    )
    .await
    .unwrap();
    assert_eq!(stale, api::projector::Applied::StaleRevision { current: 2 });
    let product: Value = app
        .get(&format!("/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(product["compressed_product_images"], json!([null]));
    assert_eq!(product["processing_status"], "pending");
}

#[tokio::test]
async fn a_late_failure_never_replaces_a_compressed_image() {
    let app = spawn_app().await;
    let user = app.create_user("bob").await;
    let id = app.create_product(&user, "Lamp", 1.0).await;
    let pool = api::db::pool(&api::db::DatabaseSettings::for_url(&app.database_url)).unwrap();
    let done = api::projector::apply(
        &pool,
        uuid::Uuid::new_v4(),
        &compressed(&id, 1, "https://cdn/a.webp"),
    )
    .await
    .unwrap();
    assert_eq!(done, api::projector::Applied::Updated { version: 2 });

    // A redrive of an old dead letter for the same revision fails this time.
    let mut failed = compressed(&id, 1, "unused");
    failed.images[0].outcome = ImageOutcome::Failed;
    failed.images[0].details.compressed_url = None;
    failed.images[0].details.failure_reason = Some("HTTP 404 from the image server".into());
    let late = api::projector::apply(&pool, uuid::Uuid::new_v4(), &failed)
        .await
        .unwrap();
    assert_eq!(late, api::projector::Applied::KeptBetter);
    let product = app.product(&id).await;
    assert_eq!(
        product["compressed_product_images"],
        json!(["https://cdn/a.webp"])
    );
    assert_eq!(product["images"][0]["status"], "compressed");
}
