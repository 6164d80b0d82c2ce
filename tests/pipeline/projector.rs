use api::projector::{Applied, Reached};
use events::{ImageDetails, ImageOutcome, ImageResult, ImageVariant, ImagesCompressed};
use serde_json::{Value, json};
use system_tests::{TestApp, spawn_app};

/// A fresh app with a product of `owner`'s, and a pool on its database for the projector.
async fn a_product_of(owner: &str) -> (TestApp, String, api::db::Pool) {
    let app = spawn_app().await;
    let user = app.create_user(owner).await;
    let id = app.create_product(&user, "Lamp", 1.0).await;
    let pool = api::db::pool(&api::db::DatabaseSettings::for_url(&app.database_url)).unwrap();
    (app, id, pool)
}

/// Applies `event` as an event of its own (a new id).
async fn apply_new(pool: &api::db::Pool, event: &ImagesCompressed) -> Applied {
    api::projector::apply(pool, uuid::Uuid::new_v4(), event)
        .await
        .unwrap()
}

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

/// A result that shows the product and completes its ladder at once.
fn both() -> Reached {
    Reached {
        shown: true,
        complete: true,
    }
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_applied_once_and_stale_revisions_are_ignored() {
    let (app, id, pool) = a_product_of("alice").await;
    let event_id = uuid::Uuid::new_v4();

    let first = api::projector::apply(&pool, event_id, &compressed(&id, 1, "https://cdn/a.webp"))
        .await
        .unwrap();
    assert_eq!(
        first,
        api::projector::Applied::Updated {
            version: 2,
            reached: both(),
        }
    );
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
    let stale = apply_new(&pool, &compressed(&id, 1, "https://cdn/late.webp")).await;
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
    let (app, id, pool) = a_product_of("bob").await;
    let done = apply_new(&pool, &compressed(&id, 1, "https://cdn/a.webp")).await;
    assert_eq!(
        done,
        api::projector::Applied::Updated {
            version: 2,
            reached: both(),
        }
    );

    // A redrive of an old dead letter for the same revision fails this time.
    let mut failed = compressed(&id, 1, "unused");
    failed.images[0].outcome = ImageOutcome::Failed;
    failed.images[0].details.compressed_url = None;
    failed.images[0].details.failure_reason = Some("HTTP 404 from the image server".into());
    let late = apply_new(&pool, &failed).await;
    assert_eq!(late, api::projector::Applied::KeptBetter);
    let product = app.product(&id).await;
    assert_eq!(
        product["compressed_product_images"],
        json!(["https://cdn/a.webp"])
    );
    assert_eq!(product["images"][0]["status"], "compressed");
}

/// The first step of image 0 (the WebP ladder, AVIF pending), or with `avif` its whole ladder.
fn step(product_id: &str, avif: bool) -> ImagesCompressed {
    let variant = |format: &str, extension: &str| ImageVariant {
        url: format!("https://cdn/640.{extension}"),
        format: format.into(),
        width: 640,
        height: 480,
        bytes: 100,
    };
    let mut event = compressed(product_id, 1, "https://cdn/640.webp");
    let details = &mut event.images[0].details;
    details.variants = vec![variant("image/webp", "webp")];
    if avif {
        details.variants.insert(0, variant("image/avif", "avif"));
    } else {
        details.pending_formats = vec!["image/avif".into()];
    }
    event
}

#[tokio::test]
async fn the_webp_shows_first_the_avif_joins_it_and_a_late_first_step_never_takes_it_away() {
    let (app, id, pool) = a_product_of("carol").await;

    // The first step: visible (done, with its WebP), its ladder still growing.
    let first = apply_new(&pool, &step(&id, false)).await;
    assert_eq!(
        first,
        Applied::Updated {
            version: 2,
            reached: Reached {
                shown: true,
                complete: false
            }
        }
    );
    let product = app.product(&id).await;
    assert_eq!(product["processing_status"], "done");
    assert_eq!(
        product["compressed_product_images"],
        json!(["https://cdn/640.webp"])
    );
    let image = &product["images"][0];
    assert_eq!(image["pending_formats"], json!(["image/avif"]));
    assert_eq!(
        image["srcset"],
        json!({"image/webp": "https://cdn/640.webp 640w"})
    );

    // The same first step again changes nothing.
    assert_eq!(
        apply_new(&pool, &step(&id, false)).await,
        Applied::KeptBetter
    );

    // The second step completes the ladder.
    let second = apply_new(&pool, &step(&id, true)).await;
    assert_eq!(
        second,
        Applied::Updated {
            version: 3,
            reached: Reached {
                shown: false,
                complete: true
            }
        }
    );
    let image = app.product(&id).await["images"][0].clone();
    assert!(image.get("pending_formats").is_none(), "{image}");
    assert_eq!(
        image["srcset"]["image/avif"], "https://cdn/640.avif 640w",
        "{image}"
    );

    // A first step arriving late (a redrive, a retry that found the first step stored)
    // never replaces the whole ladder.
    assert_eq!(
        apply_new(&pool, &step(&id, false)).await,
        Applied::KeptBetter
    );
    let image = app.product(&id).await["images"][0].clone();
    assert_eq!(
        image["srcset"]["image/avif"], "https://cdn/640.avif 640w",
        "{image}"
    );
}

#[tokio::test]
async fn an_avif_that_cannot_be_made_leaves_the_webp_shown_with_the_reason() {
    let (app, id, pool) = a_product_of("dave").await;
    apply_new(&pool, &step(&id, false)).await;
    // What the processor sends when the AVIF fails for good: the first step, its pending
    // format moved to the failed ones.
    let mut given_up = step(&id, false);
    let details = &mut given_up.images[0].details;
    details.pending_formats.clear();
    details.failed_formats.insert(
        "image/avif".into(),
        "AVIF encoding failed: out of memory".into(),
    );
    let applied = apply_new(&pool, &given_up).await;
    assert_eq!(
        applied,
        Applied::Updated {
            version: 3,
            reached: Reached {
                shown: false,
                complete: true
            }
        }
    );
    let product = app.product(&id).await;
    assert_eq!(product["processing_status"], "done");
    let image = &product["images"][0];
    assert_eq!(image["status"], "compressed");
    assert_eq!(image["compressed_url"], "https://cdn/640.webp");
    assert_eq!(
        image["failed_formats"],
        json!({"image/avif": "AVIF encoding failed: out of memory"})
    );
    assert!(image.get("pending_formats").is_none(), "{image}");
}

#[tokio::test]
async fn a_redrive_that_brings_back_an_image_given_up_on_completes_the_revision_only_once() {
    let (app, id, pool) = a_product_of("erin").await;
    let mut gave_up = compressed(&id, 1, "unused");
    gave_up.images[0] = ImageResult::failed(
        0,
        "https://images.example.com/a.jpg",
        "gave up after 4 attempts: timeout",
    );
    // Given up on: the revision is shown and complete, once.
    assert_eq!(
        apply_new(&pool, &gave_up).await,
        Applied::Updated {
            version: 2,
            reached: both(),
        }
    );
    // Redriven hours later: its first step, then its AVIF. The image shows, but the
    // revision reached neither moment again.
    let nothing = Reached::default();
    assert_eq!(
        apply_new(&pool, &step(&id, false)).await,
        Applied::Updated {
            version: 3,
            reached: nothing,
        }
    );
    assert_eq!(
        apply_new(&pool, &step(&id, true)).await,
        Applied::Updated {
            version: 4,
            reached: nothing,
        }
    );
    let image = app.product(&id).await["images"][0].clone();
    assert_eq!(image["status"], "compressed", "{image}");
    assert_eq!(
        image["srcset"]["image/avif"], "https://cdn/640.avif 640w",
        "{image}"
    );
}
