//! The processor, assembled once: `main.rs` and the tests build and run the same
//! [`Application`].

use std::{net::SocketAddr, sync::Arc};

use platform::{dependencies::DependencyChecks, kafka::KafkaSettings};
use tokio_util::sync::CancellationToken;

use crate::{
    http::{self, HealthServer},
    settings::Settings,
    worker::{self, Worker},
};

/// A built processor with its health server bound, ready to run.
pub struct Application {
    worker: Arc<Worker>,
    health: HealthServer,
    kafka: KafkaSettings,
    group: String,
}

impl Application {
    /// Builds the worker (object store, producer, fetcher) and binds the health server.
    /// The broker is not needed to start: the consumers wait for it, and readiness says so.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let worker = Worker::build(settings)?;
        let health = http::bind(settings.http_addr, worker.clone()).await?;
        Ok(Self {
            worker,
            health,
            kafka: settings.kafka.clone(),
            group: settings.group.clone(),
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn health_addr(&self) -> SocketAddr {
        self.health.addr()
    }

    /// Consumes and serves until `shutdown` (jobs in hand finish first). The consumers
    /// ending for any other reason stop the health server too: nothing outlives the run.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let checks = dependency_checks(&self.worker);
        let consumers = async {
            let consumed =
                worker::run(self.worker, &self.kafka, &self.group, shutdown.clone()).await;
            shutdown.cancel();
            consumed
        };
        let ((), (), consumed) = tokio::join!(
            self.health.run(shutdown.clone()),
            checks.run(shutdown.clone()),
            consumers
        );
        consumed
    }
}

/// What `dependency_up` reports: the broker and the object store, as readiness checks them.
fn dependency_checks(worker: &Arc<Worker>) -> DependencyChecks {
    let producer = worker.producer.clone();
    let storage = worker.clone();
    DependencyChecks::new(worker.metrics.dependency_up.clone())
        .with("kafka", move || {
            platform::kafka::check_broker(producer.clone())
        })
        .with("object_store", move || {
            let worker = storage.clone();
            async move { worker.storage.check().await }
        })
}
