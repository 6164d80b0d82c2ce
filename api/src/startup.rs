//! Builds the application from settings and runs it until a shutdown token fires. Tests use
//! the same path with port 0 and their own database.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use poem::{
    EndpointExt, Route, Server,
    listener::{Acceptor, Listener, TcpListener},
    middleware::CatchPanic,
};
use tokio_util::sync::CancellationToken;

use crate::{
    db,
    error::problem_response,
    middleware::{access_log, limit_body},
    routes::{self, AppState},
    settings::Settings,
};

/// A bound, migrated, ready-to-run api.
pub struct Application {
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
        let state = AppState {
            pool,
            max_images_per_product: settings.max_images_per_product,
        };
        let acceptor = TcpListener::bind(settings.addr)
            .into_acceptor()
            .await
            .with_context(|| format!("Failed to listen on {}", settings.addr))?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("The listener has no socket address")?;
        Ok(Self {
            acceptor,
            addr,
            app: endpoint(state, settings.max_body_bytes),
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish within the
    /// grace period.
    pub async fn run_until(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(
            addr = %self.addr,
            docs = format!("http://{}/docs", self.addr),
            "API listening."
        );
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                self.app,
                async move { shutdown.cancelled().await },
                Some(self.shutdown_grace),
            )
            .await
    }
}

/// The whole HTTP application: API, spec, docs page and the shared middleware.
pub fn endpoint(state: AppState, max_body_bytes: usize) -> poem::endpoint::BoxEndpoint<'static> {
    let api = routes::api(state);
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api)
        .around(move |ep, req| limit_body(ep, req, max_body_bytes))
        .with(CatchPanic::new())
        .catch_all_error(|error| async move { problem_response(error) })
        .around(access_log)
        .boxed()
}

/// The OpenAPI document as JSON, as `/openapi.json` serves it.
pub fn openapi_json() -> String {
    let pool = db::pool(&db::DatabaseSettings {
        url: "postgres://localhost/unused".into(),
        pool_size: 1,
        acquire_timeout: Duration::from_secs(1),
    })
    .expect("a static URL parses");
    routes::api(AppState {
        pool,
        max_images_per_product: 10,
    })
    .spec()
}
