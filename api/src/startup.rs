//! Builds the application from settings and runs it until a shutdown token fires. Tests use
//! the same path with port 0 and their own database.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use platform::{dependencies::DependencyChecks, supervise::Task};
use poem::{EndpointExt, Route, endpoint::StaticFilesEndpoint, middleware::CatchPanic};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::{
    auth::Auth,
    cache::ProductCache,
    db,
    error::problem_response,
    metrics::ApiMetrics,
    middleware::{AllowedMethods, access_log, allow_header, deadline, limit_body},
    outbox::{OutboxSignal, prune::Pruner, relay::Relay},
    products::pending::PendingImages,
    projector::Projector,
    routes::{self, AppState},
    server::{self, HttpSettings},
    settings::Settings,
};

/// A bound, migrated, ready-to-run api.
pub struct Application {
    cache: ProductCache,
    background: Vec<Task>,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    metrics_listener: tokio::net::TcpListener,
    metrics_addr: SocketAddr,
    app: poem::endpoint::BoxEndpoint<'static>,
    http: HttpSettings,
    shutdown_grace: Duration,
    metrics: Arc<ApiMetrics>,
}

impl Application {
    /// Connects to PostgreSQL, applies migrations and binds the listener. Kafka is not
    /// needed to start: its topics are created in the background once the broker answers,
    /// and the outbox holds the events meanwhile.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        db::migrate(&pool).await?;
        let cache = match &settings.cache {
            Some(cache) => ProductCache::connect(cache.clone())?,
            None => ProductCache::disabled(),
        };
        let metrics = ApiMetrics::new(&cache.stats());
        let Some(auth_settings) = settings.auth.clone() else {
            anyhow::bail!(
                "AUTH_ISSUER is not set: name the OpenID Connect issuer whose access tokens \
                 the api trusts (`make run` starts a local one; the README says how to use \
                 another)"
            );
        };
        let auth = Auth::new(
            auth_settings,
            metrics.auth_keys.clone(),
            metrics.auth_refusals.clone(),
        )?;
        let keys = auth.verifier.keys().clone();
        let state = AppState {
            pool: pool.clone(),
            max_images_per_product: settings.max_images_per_product,
            outbox: OutboxSignal::default(),
            cache: cache.clone(),
            metrics: metrics.clone(),
            consumers: Default::default(),
            auth,
        };
        let pruner = Pruner {
            pool: pool.clone(),
            settings: settings.prune.clone(),
            metrics: metrics.clone(),
        };
        let mut checks = DependencyChecks::new(metrics.dependency_up.clone()).with("postgres", {
            let pool = pool.clone();
            move || {
                let pool = pool.clone();
                async move {
                    // Every connection busy serving requests: the database answers them, and
                    // waiting for one would report a full pool as an unreachable database.
                    let status = pool.status();
                    if status.available == 0 && status.size >= status.max_size {
                        return anyhow::Ok(());
                    }
                    pool.get().await?.query_one("SELECT 1", &[]).await?;
                    anyhow::Ok(())
                }
            }
        });
        if settings.cache.is_some() {
            let cache = cache.clone();
            checks = checks.with("redis", move || {
                let cache = cache.clone();
                async move { cache.ping().await }
            });
        }
        let mut background = cache.tasks();
        background.push(Task::new("auth-keys", move |shutdown| {
            keys.clone().keep_fresh(shutdown)
        }));
        background.push(Task::new("pruner", move |shutdown| {
            pruner.clone().run(shutdown)
        }));
        if let Some(kafka) = &settings.kafka {
            let topics = kafka.topics();
            let relay = Relay {
                pool: pool.clone(),
                producer: kafka.producer(platform::kafka::DELIVERY_TIMEOUT)?,
                topics: topics.clone(),
                poll_interval: settings.outbox_poll,
                batch_size: 100,
                signal: state.outbox.clone(),
                metrics: metrics.clone(),
            };
            let producer = relay.producer.clone();
            checks = checks.with("kafka", move || {
                platform::kafka::check_broker(producer.clone())
            });
            background.push(Task::new("outbox-relay", move |shutdown| {
                relay.clone().run(shutdown)
            }));
            let projector = Projector {
                pool: pool.clone(),
                kafka: kafka.clone(),
                group: settings.projector_group.clone(),
                stall_after: settings.consumer_stall_after,
                health: state.consumers.clone(),
                create_topics: vec![
                    topics.product_events(),
                    topics.products(),
                    topics.images_compressed(),
                ],
                topic: topics.images_compressed(),
                cache: cache.clone(),
                metrics: metrics.clone(),
            };
            background.push(Task::new("projector", move |shutdown| {
                projector.clone().run(shutdown)
            }));
        }
        let pending = PendingImages {
            pool: pool.clone(),
            metrics: metrics.clone(),
        };
        background.push(Task::new("pending-images", move |shutdown| {
            pending.clone().run(shutdown)
        }));
        background.push(Task::new("dependency-checks", move |shutdown| {
            checks.clone().run(shutdown)
        }));
        for task in &background {
            let _ = metrics
                .task_panics
                .get_or_create(&platform::supervise::TaskLabels {
                    task: task.name().to_owned(),
                });
        }
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.addr))?;
        let addr = listener
            .local_addr()
            .context("The listener has no socket address")?;
        let metrics_listener = tokio::net::TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| {
                format!(
                    "Failed to listen on {} (METRICS_ADDR)",
                    settings.metrics_addr
                )
            })?;
        let metrics_addr = metrics_listener
            .local_addr()
            .context("The metrics listener has no socket address")?;
        let app = endpoint(
            state,
            settings.max_body_bytes,
            settings.http.request_timeout,
            settings.serve_images_from.clone(),
        );
        Ok(Self {
            cache,
            background,
            listener,
            addr,
            metrics_listener,
            metrics_addr,
            app,
            http: settings.http.clone(),
            shutdown_grace: settings.shutdown_grace,
            metrics,
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

    /// Where `/metrics` is served (useful with port 0).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish within the
    /// grace period. Background tasks run supervised: one that panics is restarted.
    pub async fn run_until(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks: Vec<_> = self
            .background
            .into_iter()
            .map(|task| {
                tokio::spawn(task.supervised(shutdown.clone(), self.metrics.task_panics.clone()))
            })
            .collect();
        let metrics_server = tokio::spawn(serve_metrics(
            self.metrics_listener,
            self.metrics.clone(),
            shutdown.clone(),
        ));
        tracing::info!(
            addr = %self.addr,
            docs = format!("http://{}/docs", self.addr),
            metrics = format!("http://{}/metrics", self.metrics_addr),
            "API listening."
        );
        let served = server::serve(
            self.listener,
            self.app,
            self.http,
            shutdown.clone(),
            self.shutdown_grace,
        )
        .await;
        // The server only returns on shutdown (or failure): stop the background tasks too.
        shutdown.cancel();
        for task in tasks {
            task.await.ok();
        }
        if let Ok(Err(error)) = metrics_server.await {
            tracing::warn!(%error, "The metrics server failed.");
        }
        served
    }
}

/// The whole HTTP application: API, spec, docs page, local images and the shared middleware.
pub fn endpoint(
    state: AppState,
    max_body_bytes: usize,
    request_timeout: Duration,
    images_dir: Option<std::path::PathBuf>,
) -> poem::endpoint::BoxEndpoint<'static> {
    let metrics = state.metrics.clone();
    with_middleware(
        routes(state, images_dir),
        max_body_bytes,
        request_timeout,
        metrics,
    )
}

/// The routes without the shared middleware (benchmarks add a baseline route to them).
pub fn routes(state: AppState, images_dir: Option<std::path::PathBuf>) -> Route {
    let auth = state.auth.clone();
    let api = routes::api(state);
    let docs = crate::docs::endpoint(
        &api.swagger_ui_html(),
        &api.spec(),
        auth.verifier.settings(),
        api.swagger_ui(),
    );
    let spec = api.spec_endpoint();
    let mut route = Route::new().at("/openapi.json", spec).nest("/docs", docs);
    if let Some(dir) = images_dir {
        // Compressed images stored in a local directory (IMAGE_STORAGE_URL=file://…), so
        // their public URLs work without a separate file server. A stored object never
        // changes (a new image gets a new key), so browsers and CDNs may keep it for good,
        // as object storage is told for S3; a 404 is not cached.
        let images = StaticFilesEndpoint::new(dir.join("images"))
            .before(|mut req| async move {
                // HEAD is GET without the body (RFC 9110 §9.3.2), which CDNs and link
                // checkers ask; the endpoint answers GET only. The server leaves the body
                // out of the answer to a HEAD.
                if req.method() == poem::http::Method::HEAD {
                    req.set_method(poem::http::Method::GET);
                }
                Ok(req)
            })
            .after(|response| async move {
                let mut response = response?;
                if response.status().is_success() {
                    response.headers_mut().insert(
                        poem::http::header::CACHE_CONTROL,
                        poem::http::HeaderValue::from_static("public, max-age=31536000, immutable"),
                    );
                }
                Ok(response)
            });
        route = route.nest("/images", images);
    }
    let allowed = AllowedMethods::from_openapi(&api.spec());
    route.nest(
        "/",
        api.around(move |ep, req| allow_header(ep, req, allowed.clone()))
            .data(auth),
    )
}

/// The middleware every route gets: body limit, panic guard, problem responses, request
/// timeout (reading the body included), access log.
pub fn with_middleware(
    route: Route,
    max_body_bytes: usize,
    request_timeout: Duration,
    metrics: Arc<ApiMetrics>,
) -> poem::endpoint::BoxEndpoint<'static> {
    route
        .around(move |ep, req| limit_body(ep, req, max_body_bytes))
        .with(CatchPanic::new())
        .catch_all_error({
            let refusals = metrics.auth_refusals.clone();
            move |error: poem::Error| {
                // A protected route without a bearer token, refused by poem-openapi before
                // the checker (which counts every other refusal) runs.
                if error.status() == poem::http::StatusCode::UNAUTHORIZED
                    && !error.is_from_response()
                {
                    refusals
                        .get_or_create(&crate::auth::ReasonLabels { reason: "missing" })
                        .inc();
                }
                async move { problem_response(error) }
            }
        })
        .around(move |ep, req| deadline(ep, req, request_timeout))
        .around(move |ep, req| access_log(ep, req, metrics.clone()))
        .boxed()
}

/// Serves `/metrics` on `listener` until `shutdown`.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<ApiMetrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Route::new().at("/metrics", poem::get(render_metrics).data(metrics));
    poem::Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener)?)
        .run_with_graceful_shutdown(
            app,
            shutdown.cancelled_owned(),
            Some(Duration::from_secs(1)),
        )
        .await
}

/// `/metrics` in the OpenMetrics text format.
#[poem::handler]
fn render_metrics(metrics: poem::web::Data<&Arc<ApiMetrics>>) -> poem::Response {
    poem::Response::builder()
        .content_type(platform::metrics::CONTENT_TYPE)
        .body(metrics.render())
}
