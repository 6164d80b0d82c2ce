//! One trace follows a product from the HTTP request through the outbox relay, Kafka and the
//! image-processor to the projector, and into a subscriber of the change feed. Its own test binary: it installs the process-wide
//! tracer, with an in-memory exporter.

use std::time::Duration;

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::{Value, json};
use system_tests::{
    pipeline::{Pipeline, spawn_pipeline},
    poll::poll_until,
};

/// The process-wide tracer, exporting to memory; spans are exported while the guard lives.
fn install_tracer() -> (InMemorySpanExporter, platform::telemetry::Telemetry) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (
        exporter,
        platform::telemetry::install("system-test", provider),
    )
}

/// Creates a product of a new user with `image`, as a request of the client's trace `trace`;
/// returns its id.
async fn post_traced(pipeline: &Pipeline, trace: &str, image: &str) -> String {
    let user = pipeline.app.create_user("tracer").await;
    let response = pipeline
        .app
        .http
        .post(pipeline.app.url("/products"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({
            "user_id": user, "product_name": "Traced", "product_price": 1,
            "product_images": [pipeline.images.url(image)]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["product_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn one_trace_follows_a_product_from_the_request_to_the_projector() {
    let (exporter, _telemetry) = install_tracer();
    let pipeline = spawn_pipeline().await;
    // The client's own trace: everything downstream must join it.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let id = post_traced(&pipeline, trace, "/img/rocket.jpg").await;
    pipeline.wait_until_processed(&id).await;

    let topics = pipeline.kafka.topics();
    let expected = [
        "POST /products".to_owned(),
        "postgres insert product".to_owned(),
        format!("{} publish", topics.product_events()),
        format!("{} publish", topics.products()),
        format!("{} process", topics.product_events()),
        "fetch".to_owned(),
        "compress".to_owned(),
        "decode".to_owned(),
        "resize".to_owned(),
        "encode".to_owned(),
        "store".to_owned(),
        format!("{} process", topics.images_compressed()),
        "postgres apply images".to_owned(),
    ];
    let trace_id = TraceId::from_hex(trace).unwrap();
    let what = format!("spans {expected:?} in trace {trace}");
    poll_until(&what, Duration::from_secs(20), || async {
        let names: Vec<String> = exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .filter(|span| span.span_context.trace_id() == trace_id)
            .map(|span| span.name.to_string())
            .collect();
        if expected.iter().all(|name| names.contains(name)) {
            Ok(())
        } else {
            Err(names)
        }
    })
    .await;

    // A subscriber of the change feed joins the same trace from the record's headers.
    let records = system_tests::feed::read_all(&pipeline.kafka, &topics.products()).await;
    let traced: Vec<_> = records
        .iter()
        .filter(|r| r.key == id)
        .map(|r| r.headers.get("traceparent").cloned().unwrap_or_default())
        .collect();
    assert!(
        traced.first().is_some_and(|t| t.contains(trace)),
        "the create's state record carries the request's trace: {traced:?}"
    );
}

#[tokio::test]
async fn a_slow_freshness_bucket_leads_to_its_trace() {
    let (_exporter, _telemetry) = install_tracer();
    let pipeline = spawn_pipeline().await;
    let trace = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    let id = post_traced(&pipeline, trace, "/img/chelsea.png").await;
    pipeline.wait_until_processed(&id).await;
    // The projector observes the freshness after its transaction commits, a moment after
    // the product shows as processed.
    let metrics = pipeline.app.metrics_url.clone();
    let text = poll_until(
        "the freshness to be observed",
        Duration::from_secs(20),
        || async {
            let text = pipeline.app.text_of(&metrics).await;
            if text.contains("pipeline_freshness_seconds_count 1") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    let exemplar = format!(r#"# {{trace_id="{trace}"}}"#);
    assert!(
        text.lines()
            .any(|l| l.starts_with("pipeline_freshness_seconds_bucket") && l.contains(&exemplar)),
        "a freshness bucket carries the request's trace id as its exemplar: {text}"
    );
}
