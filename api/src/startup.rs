//! Builds the application from settings and runs it until a shutdown token fires. Tests use
//! the same path with port 0 and their own database.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use poem::{
    EndpointExt, Route, Server,
    endpoint::StaticFilesEndpoint,
    listener::{Acceptor, Listener, TcpListener},
    middleware::CatchPanic,
};
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::{
    cache::ProductCache,
    db,
    error::problem_response,
    metrics::ApiMetrics,
    middleware::{AllowedMethods, access_log, allow_header, limit_body},
    outbox::{OutboxSignal, prune::Pruner, relay::Relay},
    projector::Projector,
    routes::{self, AppState},
    settings::Settings,
};

/// A bound, migrated, ready-to-run api.
pub struct Application {
    cache: ProductCache,
    background: Vec<Background>,
    acceptor: poem::listener::TcpAcceptor,
    addr: SocketAddr,
    app: poem::endpoint::BoxEndpoint<'static>,
    shutdown_grace: Duration,
}

impl Application {
    /// Connects to PostgreSQL, applies migrations and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        db::migrate(&pool).await?;
        let cache = match &settings.cache {
            Some(cache) => ProductCache::connect(cache.clone())?,
            None => ProductCache::disabled(),
        };
        let metrics = ApiMetrics::new(&cache.stats());
        let state = AppState {
            pool: pool.clone(),
            max_images_per_product: settings.max_images_per_product,
            outbox: OutboxSignal::default(),
            cache: cache.clone(),
            metrics: metrics.clone(),
        };
        let mut background = vec![Background::Pruner(Pruner {
            pool: pool.clone(),
            settings: settings.prune.clone(),
            metrics: metrics.clone(),
        })];
        if let Some(kafka) = &settings.kafka {
            let topics = kafka.topics();
            kafka
                .ensure_topics(&[topics.product_events(), topics.images_compressed()])
                .await?;
            let relay = Relay {
                pool: pool.clone(),
                producer: kafka.producer(Duration::from_secs(15))?,
                topic: topics.product_events(),
                poll_interval: settings.outbox_poll,
                batch_size: 100,
                signal: state.outbox.clone(),
                metrics: metrics.clone(),
            };
            background.push(Background::Relay(relay));
            let consumer = kafka.consumer(&settings.projector_group)?;
            consumer
                .subscribe(&[&topics.images_compressed()])
                .context("Failed to subscribe the projector")?;
            background.push(Background::Projector(Projector {
                pool,
                consumer: Arc::new(consumer),
                cache: cache.clone(),
                metrics,
            }));
        }
        let acceptor = TcpListener::bind(settings.addr)
            .into_acceptor()
            .await
            .with_context(|| format!("Failed to listen on {}", settings.addr))?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("The listener has no socket address")?;
        let app = endpoint(
            state,
            settings.max_body_bytes,
            settings.serve_images_from.clone(),
        );
        Ok(Self {
            cache,
            background,
            acceptor,
            addr,
            app,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// The cache's counters (hits, misses, Redis errors, database loads).
    pub fn cache_stats(&self) -> std::sync::Arc<crate::cache::CacheStats> {
        self.cache.stats()
    }

    /// The cache, for tests that force an interleaving.
    pub fn cache(&self) -> ProductCache {
        self.cache.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish within the
    /// grace period.
    pub async fn run_until(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks: Vec<_> = self
            .background
            .into_iter()
            .map(|task| {
                let name = task.name();
                let handle = tokio::spawn(task.run(shutdown.clone()));
                (name, handle)
            })
            .collect();
        tracing::info!(
            addr = %self.addr,
            docs = format!("http://{}/docs", self.addr),
            "API listening."
        );
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                self.app,
                {
                    let shutdown = shutdown.clone();
                    async move { shutdown.cancelled().await }
                },
                Some(self.shutdown_grace),
            )
            .await;
        // The server only returns on shutdown (or failure): stop the background tasks too.
        shutdown.cancel();
        for (name, handle) in tasks {
            match handle.await {
                Ok(()) => tracing::info!(task = name, "Background task finished."),
                Err(error) => tracing::error!(task = name, %error, "Background task panicked."),
            }
        }
        served
    }
}

/// A long-running task of the api besides HTTP.
enum Background {
    Relay(Relay),
    Projector(Projector),
    Pruner(Pruner),
}

impl Background {
    fn name(&self) -> &'static str {
        match self {
            Self::Relay(_) => "outbox-relay",
            Self::Projector(_) => "projector",
            Self::Pruner(_) => "pruner",
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        match self {
            Self::Relay(relay) => relay.run(shutdown).await,
            Self::Projector(projector) => projector.run(shutdown).await,
            Self::Pruner(pruner) => pruner.run(shutdown).await,
        }
    }
}

/// The whole HTTP application: API, spec, docs page, local images and the shared middleware.
pub fn endpoint(
    state: AppState,
    max_body_bytes: usize,
    images_dir: Option<std::path::PathBuf>,
) -> poem::endpoint::BoxEndpoint<'static> {
    let metrics = state.metrics.clone();
    with_middleware(routes(state, images_dir), max_body_bytes, metrics)
}

/// The routes without the shared middleware (benchmarks add a baseline route to them).
pub fn routes(state: AppState, images_dir: Option<std::path::PathBuf>) -> Route {
    let metrics = state.metrics.clone();
    let api = routes::api(state);
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let mut route = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/metrics", poem::get(render_metrics).data(metrics));
    if let Some(dir) = images_dir {
        // Compressed images stored in a local directory (IMAGE_STORAGE_URL=file://…), so
        // their public URLs work without a separate file server.
        route = route.nest("/images", StaticFilesEndpoint::new(dir));
    }
    let allowed = AllowedMethods::from_openapi(&api.spec());
    route.nest(
        "/",
        api.around(move |ep, req| allow_header(ep, req, allowed.clone())),
    )
}

/// The middleware every route gets: body limit, panic guard, problem responses, access log.
pub fn with_middleware(
    route: Route,
    max_body_bytes: usize,
    metrics: Arc<ApiMetrics>,
) -> poem::endpoint::BoxEndpoint<'static> {
    route
        .around(move |ep, req| limit_body(ep, req, max_body_bytes))
        .with(CatchPanic::new())
        .catch_all_error(|error| async move { problem_response(error) })
        .around(move |ep, req| access_log(ep, req, metrics.clone()))
        .boxed()
}

/// `/metrics` in the Prometheus text format.
#[poem::handler]
fn render_metrics(metrics: poem::web::Data<&Arc<ApiMetrics>>) -> poem::Response {
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// The OpenAPI document as JSON, as `/openapi.json` serves it.
pub fn openapi_json() -> String {
    let pool = db::pool(&db::DatabaseSettings::for_url(
        "postgres://localhost/unused",
    ))
    .expect("a static URL parses");
    routes::api(AppState {
        pool,
        max_images_per_product: 10,
        outbox: OutboxSignal::default(),
        cache: ProductCache::disabled(),
        metrics: ApiMetrics::new(&Default::default()),
    })
    .spec()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// `api/openapi.json` is what client developers generate SDKs from; it must be the
    /// document the code serves. `make openapi` rewrites it.
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = super::openapi_json() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "api/openapi.json differs from the code; run `make openapi` and commit"
        );
    }
}
