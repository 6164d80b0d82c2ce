//! The processor's own small HTTP server: `/healthz` (alive), `/readyz` (the broker and the
//! object store answer, and no consumer is stalled) and `/metrics`, for probes and
//! Prometheus.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use platform::kafka::watchdog::Trouble;
use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use crate::{metrics::ProcessorMetrics, worker::Worker};

#[handler]
fn healthz() -> Response {
    Response::builder()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

#[handler]
async fn readyz(worker: Data<&Arc<Worker>>) -> Response {
    let producer = worker.producer.clone();
    let broker = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
    });
    let storage = tokio::time::timeout(Duration::from_secs(2), worker.storage.check());
    let (broker, storage) = tokio::join!(broker, storage);
    let mut problems = Vec::new();
    if !matches!(broker, Ok(Ok(()))) {
        problems.push("the Kafka broker does not answer".to_owned());
    }
    if !matches!(storage, Ok(Ok(()))) {
        problems.push("the object store does not answer".to_owned());
    }
    for (consumer, trouble) in worker.health.troubles() {
        problems.push(match trouble {
            Trouble::Stuck => format!(
                "consumer {consumer} made no progress with records waiting (rejoining its group)"
            ),
            Trouble::Blind => {
                format!("consumer {consumer} cannot read its group's offsets from the broker")
            }
        });
    }
    if problems.is_empty() {
        Response::builder()
            .content_type("application/json")
            .body(r#"{"status":"ok"}"#)
    } else {
        let body = serde_json::json!({
            "type": "urn:catalog:problem:unavailable",
            "title": "Service Unavailable",
            "status": 503,
            "detail": problems.join("; "),
        });
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .content_type("application/problem+json")
            .body(body.to_string())
    }
}

#[handler]
fn metrics(metrics: Data<&Arc<ProcessorMetrics>>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    worker: Arc<Worker>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .data(worker.metrics.clone())
        .data(worker);
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let bound = *acceptor.local_addr()[0]
        .as_socket_addr()
        .ok_or_else(|| anyhow::anyhow!("no socket address"))?;
    tracing::info!(addr = %bound, "Health and metrics listening.");
    tokio::spawn(async move {
        let served = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async move { shutdown.cancelled().await },
                Some(Duration::from_secs(2)),
            )
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "The health server failed.");
        }
    });
    Ok(bound)
}
