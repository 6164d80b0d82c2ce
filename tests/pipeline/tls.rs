//! Kafka over TLS: a broker of the test's own behind a TLS front (tansu speaks no TLS), the
//! clients configured as for a managed cluster (`KAFKA_SECURITY_PROTOCOL=ssl`,
//! `KAFKA_SSL_CA_FILE`, a client certificate). The front only speaks TLS, so whatever gets
//! through went encrypted.

use std::time::Duration;

use platform::kafka::{ClientCertificate, KafkaSecurity, KafkaSettings, SecurityProtocol};
use rdkafka::producer::FutureRecord;
use system_tests::{
    broker::OwnBroker,
    pipeline::{spawn_pipeline_with, test_kafka},
    process::free_port,
    tls::{TestPki, TlsFront},
};

/// A broker behind a TLS front presenting `pki`'s server certificate; with
/// `require_client_certificate`, the front also demands one from `pki`'s CA.
async fn broker_behind_tls(
    pki: &TestPki,
    require_client_certificate: bool,
) -> (OwnBroker, TlsFront) {
    let front_port = free_port();
    let broker = OwnBroker::start_behind(front_port).await;
    let upstream = format!("127.0.0.1:{}", broker.port).parse().unwrap();
    let front = TlsFront::start(
        front_port,
        upstream,
        pki.server_config(require_client_certificate),
    );
    (broker, front)
}

fn tls_settings(broker: &OwnBroker, ca: &TestPki, client: Option<&TestPki>) -> KafkaSettings {
    KafkaSettings {
        security: KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            sasl: None,
            ca_file: Some(ca.ca_file.clone()),
            client_certificate: client.map(|pki| ClientCertificate {
                cert_file: pki.client_cert_file.clone(),
                key_file: pki.client_key_file.clone(),
            }),
        },
        ..test_kafka(&broker.brokers)
    }
}

/// Sends one record with a short delivery timeout: Ok once the broker acknowledged it.
async fn send_one(kafka: &KafkaSettings) -> Result<(), String> {
    let producer = kafka.producer(Duration::from_secs(5)).unwrap();
    let topic = kafka.topics().product_events();
    producer
        .send(
            FutureRecord::<str, str>::to(&topic).key("1").payload("{}"),
            Duration::from_secs(5),
        )
        .await
        .map(drop)
        .map_err(|(error, _)| error.to_string())
}

/// Creates the topic, then sends one record to it.
async fn create_and_send(kafka: &KafkaSettings) -> Result<(), String> {
    kafka
        .ensure_topics(&[kafka.topics().product_events()])
        .await
        .map_err(|e| format!("{e:#}"))?;
    send_one(kafka).await
}

#[tokio::test]
async fn the_whole_pipeline_runs_over_tls_with_a_client_certificate() {
    let pki = TestPki::new();
    let (broker, front) = broker_behind_tls(&pki, true).await;
    let mut pipeline = spawn_pipeline_with(tls_settings(&broker, &pki, Some(&pki))).await;

    let id = pipeline
        .create_product(&[pipeline.images.url("/img/rocket.jpg")])
        .await;
    let product = pipeline.wait_until_processed(&id).await;
    assert_eq!(product["processing_status"], "done", "{product:#}");
    assert!(product["compressed_product_images"][0].is_string());

    // The operators' command reads over TLS too.
    let mut out = Vec::new();
    image_processor::dlq::list(&pipeline.kafka, &mut out)
        .await
        .expect("dlq list reads the dead-letter topic over TLS");
    assert!(
        out.is_empty(),
        "no dead letters: {}",
        String::from_utf8_lossy(&out)
    );

    assert!(front.handshakes() > 0);
    assert_eq!(front.failed_handshakes(), 0);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_broker_certificate_from_an_untrusted_ca_gets_no_records() {
    let pki = TestPki::new();
    let (broker, front) = broker_behind_tls(&pki, false).await;
    let other_ca = TestPki::new();

    let refused = send_one(&tls_settings(&broker, &other_ca, None)).await;
    assert!(
        refused.is_err(),
        "delivered to a broker it should not trust"
    );
    assert_eq!(front.handshakes(), 0, "no handshake completed");
    assert!(
        front.failed_handshakes() > 0,
        "the client tried and gave up"
    );

    // The same client trusting the right CA delivers: the failure was the certificate.
    create_and_send(&tls_settings(&broker, &pki, None))
        .await
        .expect("delivered with the right CA");
}

#[tokio::test]
async fn a_broker_that_requires_a_client_certificate_refuses_a_client_without_one() {
    let pki = TestPki::new();
    let (broker, front) = broker_behind_tls(&pki, true).await;

    let refused = send_one(&tls_settings(&broker, &pki, None)).await;
    assert!(refused.is_err(), "delivered without a client certificate");
    assert_eq!(front.handshakes(), 0, "no handshake completed");

    create_and_send(&tls_settings(&broker, &pki, Some(&pki)))
        .await
        .expect("delivered with the client certificate");
}
