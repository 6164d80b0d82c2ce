//! The object store's S3 path against a real S3 protocol server (moto, started per test):
//! the store operations the processor relies on, and a product's whole way through the
//! processor binary with `IMAGE_STORAGE_URL=s3://…`.

use std::time::Duration;

use futures_util::TryStreamExt;
use image_processor::{
    content::{ContentStore, Found, Manifest, StoredVariant},
    storage::Storage,
    transform::TransformSettings,
};
use object_store::{Attribute, ObjectStore, ObjectStoreExt, path::Path};
use system_tests::{
    pipeline::spawn_pipeline_without_processor, poll::poll_until, process::ChildGuard, s3::S3Server,
};

const DAY: Duration = Duration::from_secs(86_400);

async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("the bucket lists");
    keys.sort();
    keys
}

fn manifest() -> Manifest {
    Manifest {
        source_width: 640,
        source_height: 427,
        thumbhash: "D9cFHYQsd2ZweZd1h4iIdnZwbQfX".into(),
        dominant_color: "#082647".into(),
        variants: vec![StoredVariant {
            format: "image/webp".into(),
            width: 640,
            height: 427,
            bytes: 3,
            file: "640.webp".into(),
        }],
    }
}

#[tokio::test]
async fn conditional_writes_listing_head_copies_and_deletes_work_on_s3() {
    let server = S3Server::start().await;
    server.create_bucket("catalog").await;
    let s3 = server.store("catalog");
    let storage = Storage::from_store(s3.clone(), "store", "https://images.example.com");
    let content = ContentStore::new(storage.clone(), DAY, &TransformSettings::default());
    let other = ContentStore::new(storage.clone(), DAY, &TransformSettings::default());
    storage.check().await.expect("the store answers");

    // Conditional create (If-None-Match: *): one claim per cleanup round.
    assert!(content.claim_cleanup(7).await.unwrap());
    assert!(
        !other.claim_cleanup(7).await.unwrap(),
        "a second claim of round 7 is refused by the server"
    );
    assert!(other.claim_cleanup(8).await.unwrap());
    assert_eq!(keys(s3.as_ref(), "store/gc").await, ["store/gc/8"]);

    // Writes keep their content type and cache headers.
    let digest = content.digest(b"photo");
    let now = content.epoch_now();
    let old = ContentStore::content_id(&digest, now - 2);
    content
        .put_variant(&old, "640.webp", vec![1, 2, 3], "image/webp")
        .await
        .unwrap();
    content.put_manifest(&old, &manifest()).await.unwrap();
    let variant = Path::from(format!("store/{}", ContentStore::key(&old, "640.webp")));
    let stored = s3.get(&variant).await.expect("the variant is stored");
    assert_eq!(
        stored
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("image/webp")
    );
    assert_eq!(
        stored
            .attributes
            .get(&Attribute::CacheControl)
            .map(|v| v.as_ref()),
        Some("public, max-age=31536000, immutable")
    );
    // Content two epochs old is copied server-side into this epoch, headers and all.
    let fresh = ContentStore::content_id(&digest, now);
    assert_eq!(
        content.find(&digest).await.unwrap(),
        Some((fresh.clone(), manifest(), Found::Copied))
    );
    let copied = Path::from(format!("store/{}", ContentStore::key(&fresh, "640.webp")));
    let copied = s3.get(&copied).await.expect("the copy is stored");
    assert_eq!(
        copied
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("image/webp")
    );
    assert_eq!(copied.bytes().await.unwrap().as_ref(), [1, 2, 3]);

    // References, HEAD of the deletion marker, and deletes by revision.
    content.refer("5", 1, 0, &old).await.unwrap();
    content.refer("5", 2, 0, &fresh).await.unwrap();
    let state = storage.stored_state("5").await.unwrap();
    assert!(!state.deleted);
    assert_eq!(state.newest_revision, Some(2));
    assert_eq!(storage.delete_images("5", Some(2)).await.unwrap(), 1);
    assert_eq!(
        keys(s3.as_ref(), "store/products/5").await,
        [format!("store/products/5/r2/0/{fresh}")]
    );
    storage.mark_deleted("5").await.unwrap();
    assert!(storage.stored_state("5").await.unwrap().deleted);
    assert_eq!(storage.delete_images("5", None).await.unwrap(), 1);
    assert!(keys(s3.as_ref(), "store/products/5").await.is_empty());

    // Content no reference names goes once old enough; referenced content stays.
    content.refer("6", 1, 0, &fresh).await.unwrap();
    let deleted = content.collect_garbage(now + 3).await.unwrap();
    assert!(deleted >= 2, "the unreferenced old set went: {deleted}");
    let set = |content: &str| format!("store/{}", ContentStore::key(content, ""));
    let set = |content: &str| set(content).trim_end_matches('/').to_owned();
    assert!(keys(s3.as_ref(), &set(&old)).await.is_empty());
    assert!(!keys(s3.as_ref(), &set(&fresh)).await.is_empty());
}

#[tokio::test]
async fn a_product_is_compressed_into_s3_served_from_it_and_deleted_from_it() {
    let server = S3Server::start().await;
    server.create_bucket("catalog").await;
    let s3 = server.store("catalog");
    let pipeline = spawn_pipeline_without_processor().await;
    let public = format!("{}/catalog/images", server.endpoint);
    let mut command = pipeline.processor_command(None);
    command
        .env("IMAGE_STORAGE_URL", "s3://catalog/images")
        .env("IMAGE_PUBLIC_BASE_URL", &public)
        .envs(server.env());
    let _processor = ChildGuard(command.spawn().expect("the image-processor binary starts"));

    let id = pipeline
        .create_product(&[pipeline.images.url("/img/rocket.jpg")])
        .await;
    let product = pipeline.wait_until_revision_done(&id, 1).await;
    let url = product["compressed_product_images"][0].as_str().unwrap();
    // Public reads go through a CDN or a bucket policy in production; here the bucket is
    // private, so the object behind the public URL is read with the client.
    let key = url
        .strip_prefix(&format!("{public}/"))
        .unwrap_or_else(|| panic!("{url} is under {public}"));
    let image = s3
        .get(&Path::from(format!("images/{key}")))
        .await
        .expect("the compressed image is in the bucket");
    assert_eq!(
        image
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("image/webp")
    );
    let bytes = image.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert!(
        !keys(s3.as_ref(), &format!("images/products/{id}"))
            .await
            .is_empty()
    );

    assert_eq!(
        pipeline
            .app
            .delete(&format!("/products/{id}"))
            .await
            .status(),
        204
    );
    let marker = Path::from(format!("images/deleted-products/{id}"));
    poll_until(
        "the deletion to reach the bucket",
        Duration::from_secs(60),
        || async {
            let references = keys(s3.as_ref(), &format!("images/products/{id}")).await;
            match s3.head(&marker).await {
                Ok(_) if references.is_empty() => Ok(()),
                other => Err(format!("{other:?}, references {references:?}")),
            }
        },
    )
    .await;
}
