//! The processor's own small HTTP server: `/healthz` (alive), `/readyz` (the broker and the
//! object store answer, and no consumer is stalled) and `/metrics`, for probes and
//! Prometheus.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use platform::kafka::watchdog::Trouble;
use poem::{
    EndpointExt, Response, Route, Server,
    endpoint::BoxEndpoint,
    get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    web::Data,
};
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
    // The consumers' state as the request found it: the broker and storage checks below can
    // take seconds, and a stall that a rejoin clears meanwhile must still be reported.
    let troubles = worker.health.troubles();
    let broker = platform::kafka::check_broker(worker.producer.clone());
    let storage = tokio::time::timeout(Duration::from_secs(2), worker.storage.check());
    let (broker, storage) = tokio::join!(broker, storage);
    let mut problems = Vec::new();
    if broker.is_err() {
        problems.push("the Kafka broker does not answer".to_owned());
    }
    if !matches!(storage, Ok(Ok(()))) {
        problems.push("the object store does not answer".to_owned());
    }
    for (consumer, trouble) in troubles {
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
        .content_type(platform::metrics::CONTENT_TYPE)
        .body(metrics.render())
}

/// The health and metrics server, bound and not yet serving.
pub struct HealthServer {
    acceptor: TcpAcceptor,
    app: BoxEndpoint<'static>,
    addr: SocketAddr,
}

/// Binds `addr` for `/healthz`, `/readyz` and `/metrics` of `worker`.
pub async fn bind(addr: SocketAddr, worker: Arc<Worker>) -> anyhow::Result<HealthServer> {
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .data(worker.metrics.clone())
        .data(worker)
        .boxed();
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .ok_or_else(|| anyhow::anyhow!("no socket address"))?;
    Ok(HealthServer {
        acceptor,
        app,
        addr,
    })
}

impl HealthServer {
    /// The address bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`; a request in flight then has two seconds to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(addr = %self.addr, "Health and metrics listening.");
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                self.app,
                async move { shutdown.cancelled().await },
                Some(Duration::from_secs(2)),
            )
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "The health server failed.");
        }
    }
}
