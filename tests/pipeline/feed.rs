//! The change feed as a downstream team sees it: the compacted products topic, read with a
//! stock client from the beginning, holds what the API shows for every product, in commit
//! order, whoever relays and whatever crashes.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};
use system_tests::{
    feed::{FeedRecord, outbox_states, read_all, wait_until_feed_matches_api},
    pipeline::{Pipeline, spawn_pipeline, test_kafka},
    process::{api_binary, free_port, kill_9, wait_until_ready},
    spawn_app_on,
};

/// Processing and publishing settle within this.
const SETTLE: Duration = Duration::from_secs(60);

/// The ce_ids of `key`'s records in topic order, each once (delivery is at least once).
fn ids_on_topic(records: &[FeedRecord], key: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    records
        .iter()
        .filter(|r| r.key == key)
        .map(|r| r.headers["ce_id"].clone())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Every state record the outbox holds for `ids` is on the topic, in the outbox's order
/// (which is commit order), with the same value.
async fn assert_outbox_order_on_topic(
    pipeline_app: &system_tests::TestApp,
    records: &[FeedRecord],
    ids: &[String],
) {
    for id in ids {
        let written = outbox_states(pipeline_app, id).await;
        let written_ids: Vec<String> = written.iter().map(|(ce_id, _)| ce_id.clone()).collect();
        assert_eq!(ids_on_topic(records, id), written_ids, "product {id}");
        for (ce_id, value) in &written {
            let record = records
                .iter()
                .find(|r| &r.headers["ce_id"] == ce_id)
                .unwrap();
            assert_eq!(&record.value, value, "record {ce_id} of product {id}");
        }
    }
}

async fn patch(pipeline: &Pipeline, id: &str, change: Value) {
    let response = pipeline
        .app
        .patch(&format!("/products/{id}"), &change)
        .await;
    assert_eq!(response.status(), 200, "{change}");
}

async fn delete(pipeline: &Pipeline, id: &str) {
    let response = pipeline.app.delete(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 204, "deleting {id}");
}

#[tokio::test]
async fn the_topic_read_from_the_beginning_equals_what_the_api_shows() {
    let pipeline = spawn_pipeline().await;
    let image = |name: &str, tag: &str| pipeline.images.url(&format!("/img/{name}?{tag}"));
    let create = |name: &str, tag: &str| pipeline.create_product_from(image(name, tag));
    let kept = create("rocket.jpg", "kept").await;
    let renamed = create("chelsea.png", "renamed").await;
    let described = create("coffee.png", "described").await;
    let repriced = create("rocket.jpg", "repriced").await;
    let reimaged = create("rocket.jpg", "old").await;
    let failed = pipeline
        .create_product_from(pipeline.images.url("/missing.jpg"))
        .await;
    let deleted = create("astronaut.png", "deleted").await;
    let deleted_at_once = create("coffee.png", "gone").await;
    delete(&pipeline, &deleted_at_once).await;
    patch(&pipeline, &renamed, json!({"product_name": "Renamed"})).await;
    patch(
        &pipeline,
        &described,
        json!({"product_description": "New words."}),
    )
    .await;
    patch(&pipeline, &repriced, json!({"product_price": 1234.56})).await;
    pipeline.wait_until_processed(&reimaged).await;
    patch(
        &pipeline,
        &reimaged,
        json!({"product_images": [image("chelsea.png", "new1"), image("coffee.png", "new2")]}),
    )
    .await;
    pipeline.wait_until_processed(&deleted).await;
    delete(&pipeline, &deleted).await;
    let ids = [
        &kept,
        &renamed,
        &described,
        &repriced,
        &reimaged,
        &failed,
        &deleted,
        &deleted_at_once,
    ]
    .map(|id| id.to_string());
    for id in &ids[..6] {
        let product = pipeline.wait_until_processed(id).await;
        assert_ne!(product["processing_status"], "pending", "{id}");
    }
    assert_eq!(
        pipeline.app.product(&reimaged).await["processing_status"],
        "done"
    );
    assert_eq!(
        pipeline.app.product(&failed).await["processing_status"],
        "failed"
    );

    let records = wait_until_feed_matches_api(&pipeline.app, &pipeline.kafka, &ids, SETTLE).await;

    // What a subscriber sees for each kind of change, in order.
    let values_of = |id: &str| -> Vec<Option<Value>> {
        records
            .iter()
            .filter(|r| r.key == id)
            .map(|r| r.value.clone())
            .collect()
    };
    let first = values_of(&renamed)[0].clone().unwrap();
    assert_eq!(first["processing_status"], "pending", "the create");
    assert!(
        values_of(&renamed)
            .iter()
            .any(|v| v.as_ref().is_some_and(|v| v["product_name"] == "Renamed"))
    );
    let reimaged_values = values_of(&reimaged);
    assert!(
        reimaged_values.iter().any(|v| v
            .as_ref()
            .is_some_and(|v| v["image_revision"] == 2 && v["processing_status"] == "pending")),
        "the new image list, pending: {reimaged_values:#?}"
    );
    assert_eq!(values_of(&deleted).last(), Some(&None), "a tombstone last");
    assert_eq!(values_of(&deleted_at_once).last(), Some(&None));

    // Every record is a CloudEvent of the state type about its key.
    for record in &records {
        assert_eq!(record.headers["ce_type"], "com.catalog.product.state.v1");
        assert_eq!(record.headers["ce_subject"], record.key);
        assert_eq!(record.headers["ce_source"], "/catalog/api");
        assert_eq!(
            record.headers.get("content-type").map(String::as_str),
            record.value.as_ref().map(|_| "application/json"),
            "a tombstone has no content type"
        );
    }
    assert_outbox_order_on_topic(&pipeline.app, &records, &ids).await;
}

#[tokio::test]
async fn with_two_replicas_relaying_one_products_records_keep_commit_order() {
    let pipeline = spawn_pipeline().await;
    let second = spawn_app_on(pipeline.app.database_url.clone(), |s| {
        s.kafka = Some(pipeline.kafka.clone());
        s.projector_group = format!("projector-{}", uuid::Uuid::new_v4().simple());
        s.outbox_poll = Duration::from_millis(200);
    })
    .await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/rocket.jpg?order")])
        .await;
    // Four writers, each patching through both replicas in turn, while both relays publish
    // and the projector applies the image result.
    let writers = (0..4).map(|writer| {
        let bases = [pipeline.app.base.clone(), second.base.clone()];
        let http = pipeline.app.http.clone();
        let id = id.clone();
        tokio::spawn(async move {
            for i in 0..12 {
                let response = http
                    .patch(format!("{}/products/{id}", bases[i % 2]))
                    .json(&json!({
                        "product_name": format!("writer {writer} patch {i}"),
                        "product_price": 1 + writer * 100 + i,
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    pipeline.wait_until_processed(&id).await;
    let ids = [id.clone()];
    let records = wait_until_feed_matches_api(&pipeline.app, &pipeline.kafka, &ids, SETTLE).await;
    let states = outbox_states(&pipeline.app, &id).await;
    assert!(
        states.len() >= 50,
        "create, 48 patches, the projection: {}",
        states.len()
    );
    assert_outbox_order_on_topic(&pipeline.app, &records, &ids).await;
    // Both replicas did publish.
    let db = pipeline.app.db().await;
    let unpublished: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unpublished, 0);
}

#[tokio::test]
async fn a_kill_9_of_the_api_between_commit_and_publish_loses_no_state_record() {
    // The api binary, with a broker address where nothing listens: every change it commits
    // stays in the outbox, unpublished, until it is killed.
    let pipeline_kafka = test_kafka(&system_tests::pipeline::brokers());
    let mut unreachable = pipeline_kafka.clone();
    unreachable.brokers = format!("127.0.0.1:{}", free_port());
    let database_url = system_tests::create_database().await;
    let reader = spawn_app_on(database_url.clone(), |_| {}).await;
    let (mut api, base) = api_binary(&database_url, &unreachable);
    let http = reader.http.clone();
    wait_until_ready(&http, &base).await;
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{base}{path}")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let user = post(
        "/users",
        json!({"username": "killed", "email": "killed@example.com"}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = post(
            "/products",
            json!({
                "user_id": user["user_id"], "product_name": format!("p{i}"), "product_price": 3,
                "product_images": [format!("https://images.example.com/{i}.jpg")],
            }),
        )
        .await;
        ids.push(created["product_id"].as_str().unwrap().to_owned());
    }
    let patched = http
        .patch(format!("{base}/products/{}", ids[1]))
        .json(&json!({"product_name": "patched"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let deleted = http
        .delete(format!("{base}/products/{}", ids[2]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    kill_9(&mut api);
    let db = reader.db().await;
    let waiting: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND event_type = $1",
            &[&events::EventType::ProductState.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        waiting, 7,
        "5 creates, a patch and a delete, committed and not published"
    );

    // Another replica, with the broker, publishes them all.
    let relay = spawn_app_on(database_url, |s| {
        s.kafka = Some(pipeline_kafka.clone());
        s.projector_group = format!("projector-{}", uuid::Uuid::new_v4().simple());
        s.outbox_poll = Duration::from_millis(200);
    })
    .await;
    let records = wait_until_feed_matches_api(&relay, &pipeline_kafka, &ids, SETTLE).await;
    assert_outbox_order_on_topic(&relay, &records, &ids).await;
    assert_eq!(
        read_all(&pipeline_kafka, &pipeline_kafka.topics().products())
            .await
            .iter()
            .rfind(|r| r.key == ids[2])
            .map(|r| r.value.clone()),
        Some(None),
        "the deleted product ends in a tombstone"
    );
}

#[tokio::test]
async fn a_products_next_change_is_published_without_waiting_for_the_poll() {
    // No poll to fall back on: every record must go out on its commit's wake-up, including
    // a change committed while the relay was publishing the product's previous one.
    let kafka = test_kafka(&system_tests::pipeline::brokers());
    let app = system_tests::spawn_app_with(|s| {
        s.kafka = Some(kafka.clone());
        s.projector_group = format!("projector-{}", uuid::Uuid::new_v4().simple());
        s.outbox_poll = Duration::from_secs(3600);
    })
    .await;
    let user = app.create_user("quick").await;
    let id = app.create_product(&user, "quick 0", 1.0).await;
    for i in 1..=30 {
        let response = app
            .patch(
                &format!("/products/{id}"),
                &json!({"product_name": format!("quick {i}")}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let ids = [id];
    let records = wait_until_feed_matches_api(&app, &kafka, &ids, SETTLE).await;
    assert_outbox_order_on_topic(&app, &records, &ids).await;
}
