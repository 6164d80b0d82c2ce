use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use system_tests::{
    images::ImageServer,
    pipeline::{Pipeline, spawn_pipeline},
    poll::poll_until,
};

/// The dead letters of the pipeline's topics, as `image-processor dlq list` prints them.
async fn dead_letters(pipeline: &Pipeline) -> Vec<Value> {
    let mut out = Vec::new();
    image_processor::dlq::list(&pipeline.kafka, &mut out)
        .await
        .expect("the dead-letter topic reads");
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls the dead-letter topic until it holds `count` records.
async fn wait_for_dead_letters(pipeline: &Pipeline, count: usize) -> Vec<Value> {
    poll_until(
        &format!("{count} dead letter(s)"),
        Duration::from_secs(60),
        || async {
            let letters = dead_letters(pipeline).await;
            if letters.len() >= count {
                Ok(letters)
            } else {
                Err(letters)
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_404_fails_only_its_own_image_at_once_without_retries() {
    let pipeline = spawn_pipeline().await;
    let images = &pipeline.images;
    let urls = vec![
        images.url("/img/chelsea.png"),
        images.url("/missing.jpg"),
        images.url("/img/rocket.jpg"),
    ];
    let id = pipeline.create_product(&urls).await;

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "partly_failed", "{product:#}");
    assert_eq!(product["images"][0]["status"], "compressed");
    assert_eq!(product["images"][1]["status"], "failed");
    assert!(
        product["images"][1]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{product:#}"
    );
    assert_eq!(product["images"][2]["status"], "compressed");
    assert!(product["compressed_product_images"][0].is_string());
    assert!(
        product["compressed_product_images"][1].is_null(),
        "a failed image has no compressed URL"
    );
    assert!(product["compressed_product_images"][2].is_string());
    assert_eq!(
        images.hits("/missing.jpg"),
        1,
        "a permanent failure is not retried"
    );
}

#[tokio::test]
async fn a_server_that_fails_twice_then_succeeds_is_compressed_after_retries() {
    let pipeline = spawn_pipeline().await;
    let path = "/flaky/2/coffee.png";
    let id = pipeline.create_product(&[pipeline.images.url(path)]).await;

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done", "{product:#}");
    assert_eq!(
        pipeline.images.hits(path),
        3,
        "two failures and the success"
    );
    assert!(dead_letters(&pipeline).await.is_empty());
}

#[tokio::test]
async fn a_server_that_always_fails_ends_in_the_dead_letter_topic_and_a_failed_status() {
    let pipeline = spawn_pipeline().await;
    let ok = pipeline.images.url("/img/rocket.jpg");
    let failing = pipeline.images.url("/fail/coffee.png");
    let id = pipeline.create_product(&[ok, failing]).await;

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "partly_failed", "{product:#}");
    assert_eq!(
        product["images"][0]["status"], "compressed",
        "the healthy image is not held back"
    );
    let reason = product["images"][1]["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("503"),
        "{reason}"
    );
    assert_eq!(
        pipeline.images.hits("/fail/coffee.png"),
        3,
        "one try and two retries"
    );

    let letters = wait_for_dead_letters(&pipeline, 1).await;
    let letter = &letters[0];
    assert_eq!(letter["product_id"], id.as_str());
    assert_eq!(letter["event_type"], "com.catalog.product.created.v1");
    assert_eq!(letter["attempts"], "3");
    assert_eq!(letter["kind"], "transient");
    assert!(
        letter["reason"].as_str().unwrap().contains("503"),
        "{letter}"
    );
    assert_eq!(
        letter["origin"],
        format!("{}/0/0", pipeline.kafka.topics().product_events())
    );
    assert!(letter["first_failure_at"].is_string());
}

#[tokio::test]
async fn a_redrive_from_the_dead_letter_topic_processes_the_product() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/fail/chelsea.png")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "failed");
    wait_for_dead_letters(&pipeline, 1).await;

    pipeline.images.heal();
    let group = format!("{}.dlq-redrive", pipeline.processor_settings.group);
    let redriven = image_processor::dlq::redrive(&pipeline.kafka, &group)
        .await
        .unwrap();
    assert_eq!(redriven, 1);
    let product = pipeline
        .wait_for(
            &id,
            "the redriven image to be compressed",
            Duration::from_secs(60),
            |p| p["processing_status"] == "done",
        )
        .await;
    assert!(product["compressed_product_images"][0].is_string());
    assert_eq!(
        image_processor::dlq::redrive(&pipeline.kafka, &group)
            .await
            .unwrap(),
        0,
        "a second redrive sends nothing again"
    );
}

#[tokio::test]
async fn a_redrive_of_a_deleted_products_event_stores_nothing() {
    let pipeline = spawn_pipeline().await;
    let path = "/fail/chelsea.png";
    let id = pipeline.create_product(&[pipeline.images.url(path)]).await;
    pipeline.wait_until_processed(&id).await;
    wait_for_dead_letters(&pipeline, 1).await;
    let response = pipeline.app.delete(&format!("/products/{id}")).await;
    assert_eq!(response.status(), 204);
    pipeline.wait_until_deleted_in_storage(&id).await;

    pipeline.images.heal();
    let hits = pipeline.images.hits(path);
    let group = format!("{}.dlq-redrive", pipeline.processor_settings.group);
    let redriven = image_processor::dlq::redrive(&pipeline.kafka, &group)
        .await
        .unwrap();
    assert_eq!(redriven, 1);
    pipeline
        .wait_for_processor_metric(
            "the redriven event to be dropped",
            r#"jobs_superseded_total{outcome="product_deleted"} 1"#,
        )
        .await;
    assert_eq!(pipeline.images.hits(path), hits, "nothing was downloaded");
    assert!(!pipeline.storage_dir.join("products").join(&id).exists());
}

#[tokio::test]
async fn a_redirect_to_an_address_outside_the_allowed_networks_is_refused_and_never_fetched() {
    let pipeline = spawn_pipeline().await;
    // 127.0.0.2 is loopback too, but only 127.0.0.1/32 is allowed in the tests.
    let inside = ImageServer::start("127.0.0.2").await;
    let target = inside.url("/img/rocket.jpg");
    let redirect = pipeline.images.url(&format!("/redirect?to={target}"));
    let id = pipeline.create_product(&[redirect]).await;

    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "failed");
    let reason = product["images"][0]["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("refused") && reason.contains("127.0.0.2"),
        "{reason}"
    );
    assert_eq!(
        inside.hits("/img/rocket.jpg"),
        0,
        "the refused address was never contacted"
    );
    assert_eq!(
        pipeline.images.hits("/redirect"),
        1,
        "a refusal is not retried"
    );
}

#[tokio::test]
async fn bytes_that_are_not_an_image_fail_permanently() {
    let pipeline = spawn_pipeline().await;
    let id = pipeline
        .create_product(&[pipeline.images.url("/garbage")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "failed");
    assert!(
        product["images"][0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("not an image")
    );
}

#[tokio::test]
async fn an_unreadable_record_is_dead_lettered_and_the_next_one_is_processed() {
    let pipeline = spawn_pipeline().await;
    let producer: FutureProducer = pipeline.kafka.producer(Duration::from_secs(10)).unwrap();
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&pipeline.kafka.topics().product_events())
                .key("garbage")
                .payload(&b"\x00\xffnot json"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("the garbage record is written");

    let id = pipeline
        .create_product(&[pipeline.images.url("/img/rocket.jpg")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done");

    let letters = wait_for_dead_letters(&pipeline, 1).await;
    assert_eq!(letters[0]["product_id"], "garbage");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unreadable"),
        "{}",
        letters[0]
    );
    assert_eq!(letters[0]["kind"], "permanent");
}

#[tokio::test]
async fn a_processor_that_crashes_mid_message_processes_it_after_restart() {
    let mut pipeline = spawn_pipeline().await;
    let path = "/slow/rocket.jpg"; // the first request hangs
    let id = pipeline.create_product(&[pipeline.images.url(path)]).await;
    let images = &pipeline.images;
    poll_until(
        "the processor to start downloading",
        Duration::from_secs(30),
        || async {
            match images.hits(path) {
                0 => Err(0),
                hits => Ok(hits),
            }
        },
    )
    .await;
    pipeline.processor.take().unwrap().crash().await;
    let product: Value = pipeline.app.product(&id).await;
    assert_eq!(product["processing_status"], "pending");

    pipeline.start_processor().await;
    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done");
    assert_eq!(pipeline.images.hits(path), 2);
}

#[tokio::test]
async fn the_projector_skips_an_event_it_can_never_apply_and_goes_on() {
    let pipeline = spawn_pipeline().await;
    let producer: FutureProducer = pipeline.kafka.producer(Duration::from_secs(10)).unwrap();
    let envelope = events::Envelope::new(events::EventType::ImagesCompressed, "/test", "abc");
    let headers = platform::kafka::owned_headers(envelope.headers());
    let payload = br#"{"product_id":"abc","image_revision":1,"images":[]}"#;
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&pipeline.kafka.topics().images_compressed())
                .key("abc")
                .payload(&payload[..])
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("the poison event is written");

    let id = pipeline
        .create_product(&[pipeline.images.url("/img/rocket.jpg")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(
        product["processing_status"], "done",
        "the projector went past the poison event"
    );
}

#[tokio::test]
async fn an_event_whose_product_id_is_not_a_number_is_dead_lettered_not_stored() {
    let pipeline = spawn_pipeline().await;
    let producer: FutureProducer = pipeline.kafka.producer(Duration::from_secs(10)).unwrap();
    let envelope = events::Envelope::new(events::EventType::ProductCreated, "/test", "../escape");
    let headers = platform::kafka::owned_headers(envelope.headers());
    let payload = serde_json::json!({
        "product_id": "../escape", "user_id": "1", "image_revision": 1,
        "product_images": [pipeline.images.url("/img/rocket.jpg")]
    })
    .to_string();
    producer
        .send(
            FutureRecord::<str, str>::to(&pipeline.kafka.topics().product_events())
                .key("../escape")
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("the record is written");

    let letters = wait_for_dead_letters(&pipeline, 1).await;
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a number"),
        "{}",
        letters[0]
    );
    assert_eq!(
        pipeline.images.hits("/img/rocket.jpg"),
        0,
        "nothing was fetched for it"
    );
}

#[tokio::test]
async fn a_dry_run_or_a_filtered_redrive_moves_nothing_but_what_it_names() {
    let pipeline = spawn_pipeline().await;
    let first = pipeline
        .create_product(&[pipeline.images.url("/fail/chelsea.png")])
        .await;
    let second = pipeline
        .create_product(&[pipeline.images.url("/fail/coffee.png")])
        .await;
    for id in [&first, &second] {
        pipeline.wait_until_processed(id).await;
    }
    wait_for_dead_letters(&pipeline, 2).await;
    pipeline.images.heal();
    let group = format!("{}.dlq-redrive", pipeline.processor_settings.group);
    let redrive = |options: image_processor::dlq::RedriveOptions| {
        let (kafka, group) = (pipeline.kafka.clone(), group.clone());
        async move {
            let mut out = Vec::new();
            let done = image_processor::dlq::redrive_with(&kafka, &group, &options, &mut out)
                .await
                .unwrap();
            (done, String::from_utf8(out).unwrap())
        }
    };

    // A dry run lists both and sends nothing: the position stays.
    let options = |args: &[&str]| image_processor::dlq::RedriveOptions::parse(args).unwrap();
    let (dry, listed) = redrive(options(&["--dry-run"])).await;
    assert_eq!((dry.sent, dry.skipped), (2, 0));
    assert!(listed.contains(&format!("product {first}")), "{listed}");
    // A filtered redrive sends only the product it names, and leaves the position too.
    let (one, _) = redrive(options(&[
        "--product",
        &first,
        "--rate",
        "10",
        "--page",
        "1",
    ]))
    .await;
    assert_eq!((one.sent, one.skipped), (1, 1));
    pipeline
        .wait_for(
            &first,
            "the redriven product",
            Duration::from_secs(60),
            |p| p["processing_status"] == "done",
        )
        .await;
    assert_eq!(
        pipeline.app.product(&second).await["processing_status"],
        "failed",
        "the other product was not redriven"
    );
    // An unfiltered redrive then takes both from the start, in pages, and remembers it.
    let (all, progress) = redrive(options(&["--page", "1"])).await;
    assert_eq!((all.sent, all.skipped), (2, 0));
    assert_eq!(
        progress.lines().count(),
        2,
        "one progress line per page: {progress}"
    );
    assert_eq!(redrive(options(&[])).await.0.sent, 0);
}
